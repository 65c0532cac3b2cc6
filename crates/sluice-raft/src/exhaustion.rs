//! Which resource a partition replica's storage ran out of, if any.
//!
//! openraft stops a group on any storage error. Most are failures the broker must stop on (a
//! failed fsync: docs/DURABILITY.md), but running out of disk space, file descriptors or memory
//! is not: the write failed cleanly (the log cut it back), nothing stored is in doubt, and the
//! replica can start again once the resource is back. The log store and the state machine note
//! such errors here, and the broker reads the note when the group stops.

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};

use sluice_storage::StorageError;

/// A resource a replica ran out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// ENOSPC.
    DiskSpace,
    /// EMFILE or ENFILE: the process's or the system's open-file limit.
    FileDescriptors,
    /// ENOMEM.
    Memory,
}

/// Set by a replica's storage when an operation fails for want of a resource; shared with the
/// broker, which reads it when the replica's group stops.
#[derive(Debug, Default)]
pub struct Exhaustion(AtomicU8);

impl Exhaustion {
    /// Notes `e` if it says a resource ran out; returns it unchanged.
    pub fn note(&self, e: io::Error) -> io::Error {
        if let Some(what) = exhausted(&e) {
            self.0.store(what as u8 + 1, Ordering::Release);
        }
        e
    }

    /// The resource noted last, if any.
    pub fn get(&self) -> Option<Exhausted> {
        match self.0.load(Ordering::Acquire) {
            1 => Some(Exhausted::DiskSpace),
            2 => Some(Exhausted::FileDescriptors),
            3 => Some(Exhausted::Memory),
            _ => None,
        }
    }
}

/// Notes `e` in `flag`, if there is one.
pub(crate) fn note(flag: Option<&Exhaustion>, e: io::Error) -> io::Error {
    match flag {
        Some(flag) => flag.note(e),
        None => e,
    }
}

/// The resource `e` says ran out. A failed fsync is never one, whatever its errno: it stops the
/// log for good ([`StorageError::Failed`]), and its error carries no errno.
fn exhausted(e: &io::Error) -> Option<Exhausted> {
    // A storage error converted to `io::Error` keeps its kind but not its errno: look inside.
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<StorageError>());
    let errno = match inner {
        Some(StorageError::Io { source, .. }) => source.raw_os_error(),
        Some(_) => return None,
        None => e.raw_os_error(),
    };
    match (errno, e.kind()) {
        (Some(28), _) | (_, io::ErrorKind::StorageFull) => Some(Exhausted::DiskSpace),
        (Some(23 | 24), _) => Some(Exhausted::FileDescriptors),
        (Some(12), _) | (_, io::ErrorKind::OutOfMemory) => Some(Exhausted::Memory),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(errno: i32) -> io::Error {
        let source = io::Error::from_raw_os_error(errno);
        StorageError::Io { op: "append to", path: "/d/0.log".into(), source }.into()
    }

    #[test]
    fn running_out_of_space_files_or_memory_is_noted_and_other_errors_are_not() {
        for (e, want) in [
            (storage(28), Some(Exhausted::DiskSpace)),
            (storage(24), Some(Exhausted::FileDescriptors)),
            (io::Error::from_raw_os_error(23), Some(Exhausted::FileDescriptors)),
            (storage(12), Some(Exhausted::Memory)),
            (storage(5), None),
            (
                StorageError::Failed { path: "/d".into(), reason: "fdatasync: No space left on device".into() }.into(),
                None,
            ),
        ] {
            let flag = Exhaustion::default();
            let text = e.to_string();
            assert_eq!(flag.note(e).to_string(), text, "returned unchanged");
            assert_eq!(flag.get(), want, "{text}");
        }
    }
}
