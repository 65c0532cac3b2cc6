//! [`LogFile`]: a segment's `.log` descriptor, closed while nobody uses it and reopened on
//! demand.
//!
//! A broker hosts thousands of replicas, most of them idle at any moment; a descriptor held by
//! each idle active segment would make the open-file limit, not the disk, bound how many
//! partitions a broker holds. So the [`IdleCloser`](crate::idle::IdleCloser) closes a `.log`
//! descriptor that went a whole sweep unused, and the next append, read or fsync reopens it.
//!
//! Closing loses nothing, and risks nothing for durability:
//!
//! - **Only a clean file is closed.** A descriptor with writes (or a truncation) not yet
//!   fdatasynced through [`LogFile::sync_data`] stays open, however long it sits unused. So a
//!   writeback error always finds the descriptor that wrote the data still open, and its next
//!   fdatasync reports it (DURABILITY.md: a failed fsync stops the log). Were a dirty file
//!   closed, the kernel could evict its inode after a failed writeback and forget the error,
//!   and an fdatasync through a reopened descriptor would then report success for lost data.
//! - **A reopen is the same file.** A segment deleted (truncated or purged away) is never
//!   reopened: its name may already mean a new segment at the same base, and a file system
//!   reuses a freed inode number at once, so only the segment's own "deleted" flag, checked
//!   after the open, can tell. The reopen also checks that the name still means the same inode
//!   (device and inode number), against a file replaced behind the log's back. Data lives in the
//!   page cache with the inode, not with a descriptor: an fdatasync through any descriptor of
//!   the inode writes back whatever is dirty.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A segment's `.log` file, open or closed (see the module doc).
pub(crate) struct LogFile {
    path: PathBuf,
    /// Device and inode of the file, so that a reopen can tell when the name has come to mean
    /// another file.
    identity: (u64, u64),
    /// The open descriptor; `None` once the idle closer closed it. Users clone the `Arc` for
    /// the length of one operation, so closing never pulls a descriptor from under one.
    open: Mutex<Option<Arc<File>>>,
    /// Set by every use, cleared by each sweep of the idle closer: a sweep that finds it clear
    /// knows the file went unused since the previous sweep.
    used: AtomicBool,
    /// Set after every change to the file, cleared just before each fdatasync (so a change
    /// racing the fdatasync leaves it set): the file may hold changes not yet durable.
    dirty: AtomicBool,
}

impl std::fmt::Debug for LogFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFile").field("path", &self.path).field("open", &self.lock().is_some()).finish()
    }
}

impl LogFile {
    /// Wraps `file`, just opened or created at `path`. `durable`: it holds nothing that may not
    /// be on disk yet (a sealed segment); otherwise it stays open until its first
    /// [`LogFile::sync_data`].
    pub fn new(path: &Path, file: File, durable: bool) -> io::Result<LogFile> {
        let meta = file.metadata()?;
        Ok(LogFile {
            path: path.to_owned(),
            identity: (meta.dev(), meta.ino()),
            open: Mutex::new(Some(Arc::new(file))),
            used: AtomicBool::new(true),
            dirty: AtomicBool::new(!durable),
        })
    }

    /// The open descriptor, reopening the file if it was closed; `true` with it when it was.
    /// `deleted` says whether the file's owner deleted it: checked after opening, because the
    /// owner sets it before unlinking, so a file opened after the unlink is caught. A deleted
    /// file, or a name now meaning another file, is `NotFound`.
    pub fn get(&self, deleted: impl Fn() -> bool) -> io::Result<(Arc<File>, bool)> {
        self.used.store(true, Ordering::Relaxed);
        let mut open = self.lock();
        if let Some(file) = &*open {
            return Ok((Arc::clone(file), false));
        }
        // Opened as at creation: reads use `pread`, and Linux appends every write to an
        // append-mode descriptor whatever its offset.
        let file = OpenOptions::new().read(true).append(true).open(&self.path)?;
        if deleted() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "the file was deleted"));
        }
        let meta = file.metadata()?;
        if (meta.dev(), meta.ino()) != self.identity {
            return Err(io::Error::new(io::ErrorKind::NotFound, "the file was replaced by another one"));
        }
        let file = Arc::new(file);
        *open = Some(Arc::clone(&file));
        Ok((file, true))
    }

    /// Notes a write or truncation through `get`'s descriptor, once it is done: until the next
    /// [`LogFile::sync_data`], the file is not closed.
    pub fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Fdatasyncs `file` (this file's descriptor, from `get`). Changes marked before the call
    /// are durable when it returns `Ok`.
    pub fn sync_data(&self, file: &File) -> io::Result<()> {
        self.dirty.store(false, Ordering::Release);
        let synced = file.sync_data();
        if synced.is_err() {
            self.mark_dirty();
        }
        synced
    }

    /// Takes the descriptor if the file went unused since the previous call and holds nothing
    /// that is not durable, for the caller to drop (closing it, unless a user still holds it for
    /// an operation in flight).
    pub fn take_if_idle(&self) -> Option<Arc<File>> {
        if self.used.swap(false, Ordering::Relaxed) || self.dirty.load(Ordering::Acquire) {
            return None;
        }
        self.lock().take()
    }

    /// Whether a descriptor is open.
    #[cfg(test)]
    pub fn is_open(&self) -> bool {
        self.lock().is_some()
    }

    fn lock(&self) -> MutexGuard<'_, Option<Arc<File>>> {
        self.open.lock().expect("log file lock poisoned")
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    use super::*;

    /// A new, empty file, as clean as a synced one.
    fn create(path: &Path) -> LogFile {
        let file = OpenOptions::new().read(true).append(true).create_new(true).open(path).unwrap();
        LogFile::new(path, file, true).unwrap()
    }

    #[test]
    fn an_unused_file_closes_on_the_second_sweep_and_reopens_with_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let log = create(&dir.path().join("a.log"));
        let (file, _) = log.get(|| false).unwrap();
        (&*file).write_all(b"written before closing").unwrap();
        log.mark_dirty();
        assert!(log.take_if_idle().is_none(), "used since the last sweep");
        assert!(log.take_if_idle().is_none(), "holds a write not yet durable");
        log.sync_data(&file).unwrap();
        drop(file);
        assert!(log.take_if_idle().is_some(), "unused for a whole sweep, and clean");
        assert!(!log.is_open());
        let (file, reopened) = log.get(|| false).unwrap();
        assert!(reopened);
        file.sync_data().unwrap();
        let mut buf = [0u8; 7];
        file.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"written");
        assert!(!log.get(|| false).unwrap().1, "stays open once reopened");
    }

    #[test]
    fn a_deleted_or_replaced_file_is_not_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let log = create(&path);
        log.take_if_idle();
        drop(log.take_if_idle());
        assert_eq!(log.get(|| true).unwrap_err().kind(), io::ErrorKind::NotFound, "deleted by its owner");
        // Held open, the old inode cannot be reused by the file created in its place.
        let old = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(log.get(|| false).unwrap_err().kind(), io::ErrorKind::NotFound, "gone");
        drop(create(&path));
        assert_eq!(log.get(|| false).unwrap_err().kind(), io::ErrorKind::NotFound, "another inode at the name");
        drop(old);
    }

    #[test]
    fn a_descriptor_in_use_survives_its_closing() {
        let dir = tempfile::tempdir().unwrap();
        let log = create(&dir.path().join("a.log"));
        let (held, _) = log.get(|| false).unwrap();
        log.take_if_idle();
        drop(log.take_if_idle());
        (&*held).write_all(b"still open").unwrap();
        assert_eq!(held.metadata().unwrap().len(), 10);
    }
}
