//! The storage layer's error type. Every I/O error keeps its source and the path it concerns.

use std::io;
use std::path::PathBuf;

/// A `Result` whose error is [`StorageError`].
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// What went wrong in the storage layer. Variants are few and each says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An operating-system call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("open", "fdatasync", ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The error the operating system reported.
        #[source]
        source: io::Error,
    },
    /// A file holds bytes that fail validation where committed data must be intact.
    #[error("corrupt {} at byte {position}: {reason}; restore this replica from a peer", path.display())]
    Corrupt {
        /// The corrupt file.
        path: PathBuf,
        /// The byte position of the first bad byte or record.
        position: u64,
        /// What failed validation.
        reason: String,
    },
    /// Another process holds the directory's `LOCK` file, or another handle in this process has
    /// the log open.
    #[error("log directory {} is in use by another process or handle (its lock is held); stop it first", path.display())]
    Locked {
        /// The locked directory.
        path: PathBuf,
    },
    /// An entry is larger than the configured `max_entry_bytes`.
    #[error("entry {index} is {len} bytes; the limit (max_entry_bytes) is {max}")]
    EntryTooLarge {
        /// The entry's index.
        index: u64,
        /// Its payload length.
        len: usize,
        /// The configured limit.
        max: u32,
    },
    /// An appended entry does not directly follow the log's last entry.
    #[error("entry index {got} does not follow the log's last index (expected {expected})")]
    NotContiguous {
        /// The index the log expected next.
        expected: u64,
        /// The index that was offered.
        got: u64,
    },
    /// The requested index is at or below the purge point.
    #[error("entry {index} has been purged; the log starts at {first}")]
    Purged {
        /// The requested index.
        index: u64,
        /// The log's first remaining index.
        first: u64,
    },
    /// A secondary-index update breaks the index's ordering rules.
    #[error("offset index: {0}")]
    OffsetIndex(String),
    /// Entries staged to back-fill a log do not fit it (see [`crate::Backfill`]).
    #[error("back-fill: {0}")]
    Backfill(String),
    /// The configuration is invalid.
    #[error("invalid storage config: {0}")]
    Config(String),
    /// An earlier fsync failed. Its data may be lost, and retrying fsync could falsely report
    /// success, so the log refuses further work: restart the process to recover from disk.
    #[error("log {} stopped after a failed fsync ({reason}); restart the process", path.display())]
    Failed {
        /// The log directory.
        path: PathBuf,
        /// The original failure.
        reason: String,
    },
}

impl StorageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| StorageError::Io { op, path, source }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, position: u64, reason: impl Into<String>) -> Self {
        StorageError::Corrupt { path: path.into(), position, reason: reason.into() }
    }
}

impl From<StorageError> for io::Error {
    /// Callers whose interfaces speak `io::Error` (openraft's storage traits) keep the cause.
    fn from(e: StorageError) -> io::Error {
        let kind = match &e {
            StorageError::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
