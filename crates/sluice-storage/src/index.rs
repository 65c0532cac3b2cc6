//! Index files: fixed-size records behind a 32-byte header, memory-mapped (memmap2).
//!
//! ```text
//! index header (32 bytes)
//! 0        4         6        8             16             24
//! | magic  | version | kind   | base_index  | len          | covered      |
//! | "SLIX" | u16 = 1 | u16    | u64         | u64 records  | u64          |
//!
//! kind 1, position: 8-byte records  | rel_index u32 | position u32 |            (sparse)
//! kind 2, offset:  16-byte records  | base_offset u64 | rel_index u32 | count u32 | (one per batch)
//! kind 3, time:    16-byte records  | max_timestamp_ms i64 | base_offset u64 |    (sparse, rising)
//! ```
//!
//! `rel_index` is relative to the segment's base index. `covered` is, for the position index,
//! the segment length it describes: a sealed segment whose length differs has a stale index.
//! Files are preallocated and grown by doubling, so `len` (not the file size) says how many
//! records are valid. Index files are derived data: they are never fsynced on the append path;
//! after a crash they are validated against the log and rebuilt or trimmed.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

use crate::error::{Result, StorageError};

const MAGIC: [u8; 4] = *b"SLIX";
const VERSION: u16 = 1;
/// Length of an index file's header.
pub const HEADER_LEN: usize = 32;

/// Which index a file holds; stored in its header so a misnamed file is caught.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    /// Entry index → byte position in the segment (sparse).
    Position = 1,
    /// Message offset → entry (one record per indexed batch).
    Offset = 2,
    /// Max timestamp → message offset (sparse, strictly rising timestamps).
    Time = 3,
}

impl IndexKind {
    /// Bytes per record.
    pub const fn record_len(self) -> usize {
        match self {
            IndexKind::Position => 8,
            IndexKind::Offset | IndexKind::Time => 16,
        }
    }
}

/// One memory-mapped index file.
pub struct IndexFile {
    path: PathBuf,
    file: File,
    map: MmapMut,
    kind: IndexKind,
    len: usize,
}

impl std::fmt::Debug for IndexFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexFile").field("path", &self.path).field("len", &self.len).finish()
    }
}

impl IndexFile {
    /// Creates (or replaces) an empty index with room for `capacity` records.
    pub fn create(path: &Path, kind: IndexKind, base_index: u64, capacity: usize) -> Result<IndexFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(StorageError::io("create index", path))?;
        let size = HEADER_LEN + capacity.max(1) * kind.record_len();
        crate::space::allocate(&file, size as u64).map_err(StorageError::io("allocate index", path))?;
        let map = map(&file, path)?;
        let mut index = IndexFile { path: path.to_owned(), file, map, kind, len: 0 };
        index.map[..4].copy_from_slice(&MAGIC);
        index.map[4..6].copy_from_slice(&VERSION.to_le_bytes());
        index.map[6..8].copy_from_slice(&(kind as u16).to_le_bytes());
        index.map[8..16].copy_from_slice(&base_index.to_le_bytes());
        index.set_len_field(0);
        index.set_covered(0);
        Ok(index)
    }

    /// Opens an existing index. `Ok(None)` means missing; `Err(reason)` means present but not
    /// trustworthy (wrong kind, segment, version or length) so the caller should rebuild it.
    pub fn open(path: &Path, kind: IndexKind, base_index: u64) -> Result<Option<IndexFile>, String> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot open: {e}")),
        };
        let size = file.metadata().map_err(|e| format!("cannot stat: {e}"))?.len() as usize;
        if size < HEADER_LEN + kind.record_len() {
            return Err(format!("{size} bytes is shorter than a header and one record"));
        }
        let map = map(&file, path).map_err(|e| e.to_string())?;
        let field = |at: usize| u64::from_le_bytes(map[at..at + 8].try_into().expect("8 bytes"));
        if map[..4] != MAGIC {
            return Err("bad magic".into());
        }
        let version = u16::from_le_bytes([map[4], map[5]]);
        let found_kind = u16::from_le_bytes([map[6], map[7]]);
        if version != VERSION || found_kind != kind as u16 || field(8) != base_index {
            return Err(format!(
                "header says version {version}, kind {found_kind}, base {}; expected {VERSION}, {}, {base_index}",
                field(8),
                kind as u16
            ));
        }
        let len = usize::try_from(field(16)).unwrap_or(usize::MAX);
        if len > (size - HEADER_LEN) / kind.record_len() {
            return Err(format!("header claims {len} records; the file holds fewer"));
        }
        Ok(Some(IndexFile { path: path.to_owned(), file, map, kind, len }))
    }

    /// Number of valid records.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no valid records.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The header's `covered` field.
    pub fn covered(&self) -> u64 {
        u64::from_le_bytes(self.map[24..32].try_into().expect("8 bytes"))
    }

    /// Sets the header's `covered` field.
    pub fn set_covered(&mut self, covered: u64) {
        self.map[24..32].copy_from_slice(&covered.to_le_bytes());
    }

    /// The raw bytes of record `i`; `i` must be below `len()`.
    pub fn record(&self, i: usize) -> &[u8] {
        assert!(i < self.len, "index record {i} out of {} in {}", self.len, self.path.display());
        let at = HEADER_LEN + i * self.kind.record_len();
        &self.map[at..at + self.kind.record_len()]
    }

    /// Appends one record, growing the file (doubling) when full.
    pub fn push(&mut self, record: &[u8]) -> Result<()> {
        debug_assert_eq!(record.len(), self.kind.record_len());
        let at = HEADER_LEN + self.len * self.kind.record_len();
        if at + record.len() > self.map.len() {
            self.grow((self.map.len() - HEADER_LEN) * 2 + record.len())?;
        }
        self.map[at..at + record.len()].copy_from_slice(record);
        // The length is published after the record, so a crash never exposes an unwritten one.
        self.set_len_field(self.len + 1);
        Ok(())
    }

    /// Keeps the first `len` records and drops the rest.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.set_len_field(len);
        }
    }

    /// First `i` in `0..len()` for which `pred(record(i))` is false, given that `pred` is true
    /// for a prefix of the records (binary search).
    pub fn partition_point(&self, mut pred: impl FnMut(&[u8]) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.record(mid)) { lo = mid + 1 } else { hi = mid }
        }
        lo
    }

    /// Writes the mapping back to the file and waits for it (msync), without trimming.
    pub fn flush(&self) -> Result<()> {
        self.map.flush().map_err(StorageError::io("msync index", &self.path))
    }

    /// Writes the mapping back and trims the file to its records: done when a segment is sealed
    /// so that a sealed segment's indexes are complete on disk and take no spare room.
    pub fn seal(&mut self) -> Result<()> {
        self.map.flush().map_err(StorageError::io("msync index", &self.path))?;
        let exact = (HEADER_LEN + self.len.max(1) * self.kind.record_len()) as u64;
        // Pages of the old mapping past the new end would fault if touched; none is touched
        // before the mapping is replaced just below.
        self.file.set_len(exact).map_err(StorageError::io("trim index", &self.path))?;
        self.map = map(&self.file, &self.path)?;
        self.file.sync_data().map_err(StorageError::io("fdatasync index", &self.path))
    }

    fn grow(&mut self, capacity_bytes: usize) -> Result<()> {
        self.map.flush_async().map_err(StorageError::io("msync index", &self.path))?;
        let size = (HEADER_LEN + capacity_bytes) as u64;
        crate::space::allocate(&self.file, size).map_err(StorageError::io("grow index", &self.path))?;
        self.map = map(&self.file, &self.path)?;
        Ok(())
    }

    fn set_len_field(&mut self, len: usize) {
        self.len = len;
        self.map[16..24].copy_from_slice(&(len as u64).to_le_bytes());
    }
}

#[allow(unsafe_code)]
fn map(file: &File, path: &Path) -> Result<MmapMut> {
    // SAFETY: memmap2 requires that no one else resizes or writes the file while it is mapped.
    // The file lives in a log directory guarded by its LOCK file, and within this process only
    // the owning `IndexFile` touches it; it shrinks the file only after dropping the mapping.
    unsafe { MmapMut::map_mut(file) }.map_err(StorageError::io("mmap index", path))
}

/// Reads little-endian integers out of a record.
pub fn u32_at(record: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(record[at..at + 4].try_into().expect("4 bytes"))
}

/// Reads a little-endian u64 out of a record.
pub fn u64_at(record: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(record[at..at + 8].try_into().expect("8 bytes"))
}

/// Position record: entry `rel_index` (relative to the segment base) starts at `position`.
pub fn position_record(rel_index: u32, position: u32) -> [u8; 8] {
    let mut r = [0u8; 8];
    r[..4].copy_from_slice(&rel_index.to_le_bytes());
    r[4..].copy_from_slice(&position.to_le_bytes());
    r
}

/// Offset record: the batch in entry `rel_index` holds `count` messages from `base_offset`.
pub fn offset_record(base_offset: u64, rel_index: u32, count: u32) -> [u8; 16] {
    let mut r = [0u8; 16];
    r[..8].copy_from_slice(&base_offset.to_le_bytes());
    r[8..12].copy_from_slice(&rel_index.to_le_bytes());
    r[12..].copy_from_slice(&count.to_le_bytes());
    r
}

/// Time record: messages before `base_offset` in this segment are all older than `max_ts`.
pub fn time_record(max_timestamp_ms: i64, base_offset: u64) -> [u8; 16] {
    let mut r = [0u8; 16];
    r[..8].copy_from_slice(&max_timestamp_ms.to_le_bytes());
    r[8..].copy_from_slice(&base_offset.to_le_bytes());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_reopens_and_rejects_wrong_headers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        let mut idx = IndexFile::create(&path, IndexKind::Position, 100, 2).unwrap();
        for i in 0..1000u32 {
            idx.push(&position_record(i, i * 10)).unwrap();
        }
        idx.set_covered(12345);
        assert_eq!(idx.partition_point(|r| u32_at(r, 0) <= 500), 501);
        drop(idx);
        let idx = IndexFile::open(&path, IndexKind::Position, 100).unwrap().unwrap();
        assert_eq!(idx.len(), 1000);
        assert_eq!(idx.covered(), 12345);
        assert_eq!(u32_at(idx.record(999), 4), 9990);
        drop(idx);
        assert!(IndexFile::open(&path, IndexKind::Offset, 100).is_err());
        assert!(IndexFile::open(&path, IndexKind::Position, 101).is_err());
        assert!(IndexFile::open(&dir.path().join("none"), IndexKind::Position, 1).unwrap().is_none());
    }

    #[test]
    fn seal_trims_to_exact_size_and_push_after_seal_regrows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.index");
        let mut idx = IndexFile::create(&path, IndexKind::Offset, 0, 64).unwrap();
        idx.push(&offset_record(0, 0, 5)).unwrap();
        idx.push(&offset_record(5, 1, 5)).unwrap();
        idx.seal().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), (HEADER_LEN + 32) as u64);
        idx.push(&offset_record(10, 2, 1)).unwrap();
        idx.truncate(2);
        assert_eq!(idx.len(), 2);
        assert_eq!(u64_at(idx.record(1), 0), 5);
    }
}
