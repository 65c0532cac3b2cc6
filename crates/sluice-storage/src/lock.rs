//! The `LOCK` file that keeps two processes (or two handles) out of one log directory.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};

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
}
