//! What keeps two processes (or two handles) out of one log directory: a `LOCK` file per log
//! ([`DirLock`]), or, when the opener protects a whole data directory with one lock of its own,
//! a claim in this process that holds no descriptor ([`LockMode::Held`]).

use std::collections::HashSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::error::{Result, StorageError};

/// How a [`Log`](crate::Log) keeps others out of its directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LockMode {
    /// The log takes a [`DirLock`] on `<dir>/LOCK` and holds it (one descriptor) while open:
    /// another process, or another handle in this one, is refused. For standalone users.
    #[default]
    PerLog,
    /// The opener already keeps other processes out, with one [`DirLock`] on a directory above
    /// (a broker locks its data directory): the log takes no file and holds no descriptor. A
    /// second handle on the same directory in this process is still refused, by a claim in
    /// memory. A broker hosting thousands of replicas saves a descriptor per replica.
    Held,
}

/// The lock a [`Log`](crate::Log) holds for as long as it is open.
#[derive(Debug)]
pub(crate) enum LogLock {
    File { _held: DirLock },
    Claim { _held: Claim },
}

impl LogLock {
    pub fn acquire(dir: &Path, mode: LockMode) -> Result<LogLock> {
        match mode {
            LockMode::PerLog => DirLock::acquire(dir).map(|l| LogLock::File { _held: l }),
            LockMode::Held => Claim::acquire(dir).map(|c| LogLock::Claim { _held: c }),
        }
    }
}

/// A directory claimed by an open log in this process; released on drop.
#[derive(Debug)]
pub(crate) struct Claim {
    key: PathBuf,
}

impl Claim {
    fn claimed() -> &'static Mutex<HashSet<PathBuf>> {
        static CLAIMED: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
        CLAIMED.get_or_init(Mutex::default)
    }

    /// Claims `dir` (which must exist), or fails with [`StorageError::Locked`]. Keyed by the
    /// canonical path, so two spellings of one directory are one claim.
    fn acquire(dir: &Path) -> Result<Claim> {
        let key = std::fs::canonicalize(dir).map_err(StorageError::io("resolve", dir))?;
        let mut claimed = Claim::claimed().lock().expect("claims lock poisoned");
        if !claimed.insert(key.clone()) {
            return Err(StorageError::Locked { path: dir.to_owned() });
        }
        Ok(Claim { key })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        Claim::claimed().lock().expect("claims lock poisoned").remove(&self.key);
    }
}

/// An exclusive `flock` on `<dir>/LOCK`, held for as long as this value lives. The kernel drops
/// it when the process dies, so a crash never leaves a stale lock behind.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Takes the lock or fails at once with [`StorageError::Locked`].
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join("LOCK");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(StorageError::io("open", &path))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file, path }),
            Err(TryLockError::WouldBlock) => Err(StorageError::Locked { path: dir.to_owned() }),
            Err(TryLockError::Error(e)) => Err(StorageError::io("flock", &path)(e)),
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Unlock explicitly instead of relying on the close: a flock belongs to the open file,
        // which a child forked by another thread (say, spawning a process) shares until it execs
        // or exits, so the close alone could leave the directory locked after the log is gone.
        if let Err(e) = self._file.unlock() {
            tracing::warn!(path = %self.path.display(), "unlocking: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_in_one_process_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let err = DirLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(err, StorageError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("in use"), "{err}");
        drop(first);
        DirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn a_held_directory_is_claimed_once_without_a_file_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = LogLock::acquire(dir.path(), LockMode::Held).unwrap();
        let other_spelling = dir.path().join(".");
        let err = LogLock::acquire(&other_spelling, LockMode::Held).unwrap_err();
        assert!(matches!(err, StorageError::Locked { .. }), "{err}");
        assert!(!dir.path().join("LOCK").exists(), "a held directory gets no LOCK file");
        drop(first);
        drop(LogLock::acquire(dir.path(), LockMode::Held).unwrap());
    }
}
