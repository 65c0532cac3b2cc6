//! Disk space: how much a file system has free, and reserving blocks for a file up front.

use std::fs::File;
use std::io;
use std::path::Path;

/// A file system's size and free space, as `statvfs(3)` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes available to unprivileged users (what a full disk leaves a broker run as root,
    /// too: the root reserve is the operator's, not ours).
    pub free_bytes: u64,
    /// The file system's size in bytes.
    pub total_bytes: u64,
}

/// The space of the file system holding `path`.
pub fn disk_space(path: &Path) -> io::Result<DiskSpace> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(DiskSpace {
        free_bytes: stat.f_bavail.saturating_mul(stat.f_frsize),
        total_bytes: stat.f_blocks.saturating_mul(stat.f_frsize),
    })
}

/// Makes `file` `len` bytes long with every block allocated. A memory-mapped file must not have
/// holes: on a full disk, writing through the map to a hole faults the process (SIGBUS) instead
/// of failing a call. A file system that cannot preallocate falls back to a sparse `set_len`.
pub(crate) fn allocate(file: &File, len: u64) -> io::Result<()> {
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => file.set_len(len),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temp_dir_has_a_size_and_some_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let space = disk_space(dir.path()).unwrap();
        assert!(space.total_bytes > 0 && space.free_bytes <= space.total_bytes, "{space:?}");
        assert!(disk_space(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn allocate_grows_a_file_to_the_length_asked() {
        let dir = tempfile::tempdir().unwrap();
        let file =
            File::options().read(true).write(true).create(true).truncate(true).open(dir.path().join("f")).unwrap();
        allocate(&file, 12_288).unwrap();
        assert_eq!(file.metadata().unwrap().len(), 12_288);
        allocate(&file, 20_000).unwrap();
        assert_eq!(file.metadata().unwrap().len(), 20_000);
    }
}
