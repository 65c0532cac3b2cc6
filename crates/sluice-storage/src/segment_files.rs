//! A segment's open files — its `.log` descriptor and its three index maps — and when they are
//! open.
//!
//! - **Pinned**: the active segment, and segments rolled past but not yet sealed, hold their
//!   files for good: appends and sealing must not pay for reopening them. Their `.log`
//!   descriptor alone closes while unused ([`LogFile`], closed by the cache's idle closer) and
//!   reopens on the next use; the maps stay.
//! - **Cold**: a sealed segment holds only a weak reference. A read reopens the files (once,
//!   however many readers race: the segment's handle lock serializes them) and hands them to the
//!   [`SegmentCache`], which keeps the recently used ones open and closes the rest.
//!
//! What the log consults without reading a segment — its size, last entry, and the ends of its
//! offset and time indexes ([`IndexSummary`]) — lives in the segment's
//! [`SegmentMeta`](crate::segment::SegmentMeta), so that walking a log's segments opens nothing.

use std::fs::{File, OpenOptions};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

use crate::cache::SegmentCache;
use crate::error::{Result, StorageError};
use crate::index::{IndexFile, IndexKind, u64_at};
use crate::log_file::LogFile;
use crate::segment::{Segment, SegmentPaths};

/// The open files of one segment. Readers hold an `Arc` while they read, so neither an eviction
/// nor a deletion closes the files under them (a deleted segment is read from its unlinked file).
pub(crate) struct SegmentFiles {
    /// The `.log` file, opened for reading and appending (Linux appends every write to such a
    /// handle whatever its offset; reads use `pread`); closed while idle. Use it through
    /// [`Segment::log_file`].
    pub log: Arc<LogFile>,
    indexes: RwLock<Indexes>,
}

/// A segment's three index maps.
#[derive(Debug)]
pub(crate) struct Indexes {
    /// Sparse entry → position index.
    pub pos: IndexFile,
    /// Offset index (written at apply time by the state machine).
    pub offsets: IndexFile,
    /// Time index (written at apply time by the state machine).
    pub times: IndexFile,
}

/// Whether a segment's files are open for good or on demand (see the module doc).
pub(crate) enum Handle {
    Pinned(Arc<SegmentFiles>),
    Cold(Weak<SegmentFiles>),
}

/// The ends of a segment's offset and time indexes, kept in memory so that finding the segment
/// that holds an offset or a time, or where indexing stopped, opens no cold segment.
#[derive(Debug, Clone, Default)]
pub(crate) struct IndexSummary {
    /// The first offset record, if any.
    pub first_offset: Option<[u8; 16]>,
    /// The last offset record, if any.
    pub last_offset: Option<[u8; 16]>,
    /// The last (highest) timestamp in the time index, if any.
    pub last_time_ms: Option<i64>,
    /// The last answer to "the first offset indexed at or after entry `.0`": a log that was
    /// purged inside its first segment asks it for every fetch.
    pub first_offset_from: Option<(u64, Option<u64>)>,
}

impl IndexSummary {
    pub fn of(idx: &Indexes) -> IndexSummary {
        let record = |i: &IndexFile, k: usize| i.record(k).try_into().expect("16-byte records");
        let (o, t) = (&idx.offsets, &idx.times);
        IndexSummary {
            first_offset: (!o.is_empty()).then(|| record(o, 0)),
            last_offset: (!o.is_empty()).then(|| record(o, o.len() - 1)),
            last_time_ms: (!t.is_empty()).then(|| u64_at(t.record(t.len() - 1), 0) as i64),
            first_offset_from: None,
        }
    }
}

impl std::fmt::Debug for SegmentFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentFiles").field("log", &self.log).finish_non_exhaustive()
    }
}

impl SegmentFiles {
    /// The files of a segment, its `.log` file just opened (or created) at `paths.log`; the
    /// cache's idle closer watches that file from now on. `durable`: see [`LogFile::new`].
    pub fn new(
        paths: &SegmentPaths,
        file: File,
        indexes: Indexes,
        cache: &SegmentCache,
        durable: bool,
    ) -> Result<SegmentFiles> {
        let log = Arc::new(LogFile::new(&paths.log, file, durable).map_err(StorageError::io("stat", &paths.log))?);
        cache.watch_idle(&log);
        Ok(SegmentFiles { log, indexes: RwLock::new(indexes) })
    }

    /// Reopens a sealed segment that recovery validated at open. A missing or garbled index now
    /// means someone changed the directory under a running log: an error naming the file.
    fn reopen(paths: &SegmentPaths, base: u64, cache: &SegmentCache) -> Result<SegmentFiles> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&paths.log)
            .map_err(StorageError::io("open segment", &paths.log))?;
        let open = |path: &std::path::Path, kind| match IndexFile::open(path, kind, base) {
            Ok(Some(index)) => Ok(index),
            Ok(None) => Err(StorageError::io("open index", path)(std::io::ErrorKind::NotFound.into())),
            Err(reason) => Err(StorageError::corrupt(path, 0, reason)),
        };
        let indexes = Indexes {
            pos: open(&paths.index, IndexKind::Position)?,
            offsets: open(&paths.offsets, IndexKind::Offset)?,
            times: open(&paths.times, IndexKind::Time)?,
        };
        // Sealed: complete and fdatasynced before it went cold.
        SegmentFiles::new(paths, file, indexes, cache, true)
    }

    pub fn indexes(&self) -> RwLockReadGuard<'_, Indexes> {
        self.indexes.read().expect("segment index lock poisoned")
    }

    pub fn indexes_mut(&self) -> RwLockWriteGuard<'_, Indexes> {
        self.indexes.write().expect("segment index lock poisoned")
    }
}

impl Segment {
    /// The segment's open files, reopening them if the segment is cold; `None` once the segment
    /// was deleted (purged or truncated away) and no reader still holds them.
    pub fn files(&self) -> Result<Option<Arc<SegmentFiles>>> {
        let mut handle = self.handle();
        let files = match &*handle {
            Handle::Pinned(files) => return Ok(Some(Arc::clone(files))),
            Handle::Cold(_) if self.deleted.load(Ordering::Acquire) => return Ok(None),
            Handle::Cold(weak) => match weak.upgrade() {
                Some(files) => {
                    self.cache.count_hit();
                    files
                }
                None => {
                    self.cache.count_miss();
                    let files = Arc::new(SegmentFiles::reopen(&self.paths, self.base_index, &self.cache)?);
                    *handle = Handle::Cold(Arc::downgrade(&files));
                    files
                }
            },
        };
        // Admitted under the handle lock, so a deletion (which takes it too) cannot slip in
        // between and leave a deleted segment's files in the cache.
        let evicted = self.cache.admit(self.id, &files);
        drop(handle);
        drop(evicted);
        Ok(Some(files))
    }

    /// Like [`Segment::files`] for callers that exclude deletion (they hold the log's writer or
    /// index lock): a deleted segment is an error.
    pub fn live_files(&self) -> Result<Arc<SegmentFiles>> {
        self.files()?.ok_or_else(|| self.gone())
    }

    /// The `.log` descriptor of `files` (this segment's), reopened if it was closed while idle;
    /// `None` if the segment was deleted since `files` was taken and the descriptor was closed
    /// (a deleted segment's name may already mean a new segment: it is never reopened).
    /// Hold it only for one operation: while it is held it stays open.
    pub fn log_file(&self, files: &SegmentFiles) -> Result<Option<Arc<File>>> {
        match files.log.get(|| self.deleted.load(Ordering::SeqCst)) {
            Ok((file, reopened)) => {
                if reopened {
                    self.cache.count_reopen();
                }
                Ok(Some(file))
            }
            Err(_) if self.deleted.load(Ordering::Acquire) => Ok(None),
            Err(e) => Err(StorageError::io("reopen segment", &self.paths.log)(e)),
        }
    }

    /// Like [`Segment::log_file`] for callers that exclude deletion: a deleted segment is an
    /// error.
    pub fn live_log_file(&self, files: &SegmentFiles) -> Result<Arc<File>> {
        self.log_file(files)?.ok_or_else(|| self.gone())
    }

    /// Keeps the files open for good: the segment is (again) the one appended to.
    pub fn pin(&self) -> Result<Arc<SegmentFiles>> {
        let mut handle = self.handle();
        let files = match &*handle {
            Handle::Pinned(files) => return Ok(Arc::clone(files)),
            Handle::Cold(_) if self.deleted.load(Ordering::Acquire) => return Err(self.gone()),
            Handle::Cold(weak) => match weak.upgrade() {
                Some(files) => files,
                None => Arc::new(SegmentFiles::reopen(&self.paths, self.base_index, &self.cache)?),
            },
        };
        *handle = Handle::Pinned(Arc::clone(&files));
        let uncached = self.cache.remove(self.id);
        drop(handle);
        drop(uncached);
        Ok(files)
    }

    /// Hands a sealed segment's files to the cache, as its most recently used entry: what was
    /// just written is what followers and consumers read next.
    pub fn unpin(&self) {
        let mut handle = self.handle();
        let Handle::Pinned(files) = &*handle else { return };
        let files = Arc::clone(files);
        *handle = Handle::Cold(Arc::downgrade(&files));
        let evicted = self.cache.admit(self.id, &files);
        drop(handle);
        drop((files, evicted));
    }

    /// Closes a sealed segment's files without caching them (recovery validated them at open;
    /// nobody has asked to read them yet).
    pub fn release(&self) {
        let mut handle = self.handle();
        let Handle::Pinned(files) = &*handle else { return };
        let files = Arc::clone(files);
        *handle = Handle::Cold(Arc::downgrade(&files));
        drop(handle);
        drop(files);
    }

    /// Deletes the segment's files. Readers holding them keep reading the unlinked files;
    /// later reads find the segment gone.
    pub fn delete(&self) -> Result<()> {
        let old = {
            let mut handle = self.handle();
            self.deleted.store(true, Ordering::SeqCst);
            std::mem::replace(&mut *handle, Handle::Cold(Weak::new()))
        };
        let uncached = self.cache.remove(self.id);
        drop((old, uncached));
        Segment::delete_files(&self.paths)
    }

    fn gone(&self) -> StorageError {
        let why = std::io::Error::new(std::io::ErrorKind::NotFound, "the segment was deleted");
        StorageError::io("open segment", &self.paths.log)(why)
    }
}

impl Drop for Segment {
    /// A closed log's segments leave the cache with it, rather than hold files until evicted.
    fn drop(&mut self) {
        drop(self.cache.remove(self.id));
    }
}

#[cfg(test)]
mod tests;
