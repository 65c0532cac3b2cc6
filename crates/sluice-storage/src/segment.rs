//! One segment: a `.log` file of entry frames and its three index files.
//!
//! A segment is written only at its end, by one writer at a time (the [`Log`](crate::Log)
//! serializes them). Readers see only what the writer has *published* in [`SegmentMeta`]: the
//! bytes are written first, the new size and index records are published after, so a reader
//! never parses a half-written frame.
//!
//! A sealed segment keeps its files open only while the shared cache does (`segment_files.rs`):
//! every method that needs them asks [`Segment::files`], which reopens a cold segment.

use std::fs::{self, File, OpenOptions};
use std::io::{IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::{Bytes, BytesMut};

use crate::cache::SegmentCache;
use crate::entry::Entry;
use crate::error::{Result, StorageError};
use crate::format::{self, ENTRY_HEADER_LEN, EntryHeader, FrameError, SEGMENT_HEADER_LEN, SegmentHeader};
use crate::index::{IndexFile, IndexKind, position_record, u32_at};
use crate::segment_files::{Handle, IndexSummary, Indexes, SegmentFiles};

/// Payloads up to this size are copied into the batch buffer next to their headers; larger
/// ones are handed to `writev` in place. Copying small payloads keeps a batch of many small
/// entries down to one contiguous buffer and one syscall; big ones are not worth a copy.
const COALESCE_MAX_BYTES: usize = 8 * 1024;
/// `writev` takes at most this many buffers per call (Linux `IOV_MAX`).
const IOV_MAX: usize = 1024;
/// Recovery and rebuild scans read the file in chunks of this size.
const SCAN_CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// A read asks for at least this much, so small budgets still make one syscall, not several.
const MIN_READ_BYTES: u64 = 64 * 1024;
/// A per-thread read buffer larger than this is released after use rather than kept.
const MAX_POOLED_READ_BYTES: usize = 64 * 1024 * 1024;

/// Numbers segments for the cache, which serves every log of a data directory.
static SEGMENT_IDS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static READ_BUFFER: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
}

/// The file names of a segment whose first index is `base`.
#[derive(Debug, Clone)]
pub(crate) struct SegmentPaths {
    pub log: PathBuf,
    pub index: PathBuf,
    pub offsets: PathBuf,
    pub times: PathBuf,
}

impl SegmentPaths {
    pub fn new(dir: &Path, base: u64) -> SegmentPaths {
        let stem = format!("{base:020}");
        SegmentPaths {
            log: dir.join(format!("{stem}.log")),
            index: dir.join(format!("{stem}.index")),
            offsets: dir.join(format!("{stem}.offindex")),
            times: dir.join(format!("{stem}.timeindex")),
        }
    }

    pub(crate) fn all(&self) -> [&Path; 4] {
        [&self.log, &self.index, &self.offsets, &self.times]
    }
}

/// What a segment's readers may see, and the writer's bookkeeping: all kept in memory, so it
/// is there whether the segment's files are open or not. Lock order: the segment's files
/// ([`Segment::files`]) are taken before its meta, and its meta before its indexes.
#[derive(Debug)]
pub(crate) struct SegmentMeta {
    /// Bytes of valid, published data (header included).
    pub size: u64,
    /// Index after the last entry; `base_index` when empty.
    pub next_index: u64,
    /// Term of entry `next_index - 1`; meaningless when empty.
    pub last_term: u64,
    /// Position of the last position record, for the sparseness rule.
    pub last_indexed_pos: u64,
    /// The ends of the offset and time indexes; updated with every change to them.
    pub summary: IndexSummary,
}

/// How a scan of frames ended.
#[derive(Debug)]
pub(crate) struct ScanEnd {
    /// Position after the last good frame.
    pub pos: u64,
    /// Index after the last good frame.
    pub next_index: u64,
    /// Term of the last good frame, if any was seen.
    pub last_term: Option<u64>,
    /// The first bad frame, if the scan stopped at one before `until`.
    pub error: Option<(u64, FrameError)>,
}

/// Reusable buffers for building one `writev`.
#[derive(Debug, Default)]
pub(crate) struct WriteScratch {
    buf: Vec<u8>,
    pieces: Vec<Piece>,
    positions: Vec<(u64, u64)>,
}

#[derive(Debug, Clone, Copy)]
enum Piece {
    Scratch(usize, usize),
    Payload(usize),
}

/// One segment file with its indexes.
pub(crate) struct Segment {
    pub base_index: u64,
    pub created_ms: i64,
    pub paths: SegmentPaths,
    /// This segment's key in `cache`.
    pub(crate) id: u64,
    pub(crate) cache: Arc<SegmentCache>,
    handle: Mutex<Handle>,
    /// Set by [`Segment::delete`]: a cold segment is not reopened after it.
    pub(crate) deleted: AtomicBool,
    meta: RwLock<SegmentMeta>,
    /// Mirrors the header's SEALED flag as it is on disk.
    sealed: AtomicBool,
    /// Bumped by every truncation, so a reader that raced one does not mistake the rewritten
    /// bytes for corruption.
    generation: AtomicU64,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment").field("log", &self.paths.log).field("meta", &self.meta).finish_non_exhaustive()
    }
}

/// Where a new segment goes and how its position index is sized.
pub(crate) struct NewSegment<'a> {
    pub dir: &'a Path,
    pub base: u64,
    pub created_ms: i64,
    pub max_segment_bytes: u64,
    pub interval: u32,
}

impl Segment {
    /// Creates an empty segment, open for good (it is about to be appended to).
    pub fn create(new: &NewSegment<'_>, cache: &Arc<SegmentCache>) -> Result<Segment> {
        let NewSegment { dir, base, created_ms, max_segment_bytes, interval } = *new;
        let paths = SegmentPaths::new(dir, base);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&paths.log)
            .map_err(StorageError::io("create segment", &paths.log))?;
        let header = SegmentHeader { base_index: base, created_ms, sealed: false };
        (&file).write_all(&header.encode()).map_err(StorageError::io("write", &paths.log))?;
        // Indexes start small and double as they fill: their blocks are allocated up front (see
        // `space::allocate`), and a partition that is written little should cost little disk.
        let capacity = position_capacity(max_segment_bytes, interval).min(INITIAL_INDEX_RECORDS);
        let pos = IndexFile::create(&paths.index, IndexKind::Position, base, capacity)?;
        let offsets = IndexFile::create(&paths.offsets, IndexKind::Offset, base, INITIAL_INDEX_RECORDS)?;
        let times = IndexFile::create(&paths.times, IndexKind::Time, base, INITIAL_INDEX_RECORDS)?;
        let meta = SegmentMeta::new(SEGMENT_HEADER_LEN as u64, base, 0, 0);
        Segment::from_parts(paths, file, header, meta, Indexes { pos, offsets, times }, cache)
    }

    /// Builds a segment from an opened file after recovery (or creation) has settled its size
    /// and indexes. It starts pinned: recovery releases the sealed ones once it has checked them.
    /// Its `.log` descriptor counts as holding writes not yet durable until the first fdatasync
    /// through it, unless the header says sealed (fdatasynced before the flag was written): a
    /// file recovered after a crash may hold what the crashed process wrote and the disk has not.
    pub fn from_parts(
        paths: SegmentPaths,
        file: File,
        header: SegmentHeader,
        mut meta: SegmentMeta,
        indexes: Indexes,
        cache: &Arc<SegmentCache>,
    ) -> Result<Segment> {
        meta.summary = IndexSummary::of(&indexes);
        let files = SegmentFiles::new(&paths, file, indexes, cache, header.sealed)?;
        Ok(Segment {
            base_index: header.base_index,
            created_ms: header.created_ms,
            paths,
            id: SEGMENT_IDS.fetch_add(1, Ordering::Relaxed),
            cache: Arc::clone(cache),
            handle: Mutex::new(Handle::Pinned(Arc::new(files))),
            deleted: AtomicBool::new(false),
            meta: RwLock::new(meta),
            sealed: AtomicBool::new(header.sealed),
            generation: AtomicU64::new(0),
        })
    }

    pub(crate) fn handle(&self) -> MutexGuard<'_, Handle> {
        self.handle.lock().expect("segment handle lock poisoned")
    }

    pub fn meta(&self) -> RwLockReadGuard<'_, SegmentMeta> {
        self.meta.read().expect("segment lock poisoned")
    }

    pub fn meta_mut(&self) -> RwLockWriteGuard<'_, SegmentMeta> {
        self.meta.write().expect("segment lock poisoned")
    }

    /// Appends `entries` (contiguous, starting at this segment's next index) with as few
    /// `writev` calls as the batch allows, then publishes them. On a failed write the file is cut
    /// back to its previous size, so the segment is unchanged; if even that fails the error is
    /// [`StorageError::Failed`].
    pub fn append(&self, entries: &[Entry], scratch: &mut WriteScratch, interval: u32) -> Result<()> {
        let files = self.live_files()?;
        let file = self.live_log_file(&files)?;
        let (size, next_index, last_indexed) = {
            let m = self.meta();
            (m.size, m.next_index, m.last_indexed_pos)
        };
        assert_eq!(entries.first().map(|e| e.index), Some(next_index), "append must continue the segment");
        let new_size = self.build_batch(entries, scratch, size, next_index, last_indexed, interval);
        let written = write_batch(&file, entries, scratch);
        // Even a failed write may have changed the file (it is cut back below).
        files.log.mark_dirty();
        if let Err(e) = written {
            return Err(self.roll_back(&file, size, e));
        }
        let mut m = self.meta_mut();
        let mut idx = files.indexes_mut();
        for &(index, pos) in &scratch.positions {
            let rec = position_record(rel(self.base_index, index), u32::try_from(pos).expect("positions are 32-bit"));
            if let Err(e) = idx.pos.push(&rec) {
                let len = idx.pos.len() - (idx.pos.len().min(scratch.positions.len()));
                idx.pos.truncate(len);
                drop((idx, m));
                return Err(self.roll_back(&file, size, e));
            }
            m.last_indexed_pos = pos;
        }
        let last = entries.last().expect("non-empty batch");
        m.size = new_size;
        m.next_index = last.index + 1;
        m.last_term = last.term;
        idx.pos.set_covered(new_size);
        Ok(())
    }

    /// Lays out headers and small payloads in `scratch.buf`, notes which large payloads go in
    /// place, and which entries get a position record. Returns the segment size after the batch.
    fn build_batch(
        &self,
        entries: &[Entry],
        s: &mut WriteScratch,
        size: u64,
        next: u64,
        mut last_indexed: u64,
        interval: u32,
    ) -> u64 {
        s.buf.clear();
        s.pieces.clear();
        s.positions.clear();
        let mut pos = size;
        let mut open = 0;
        for (i, e) in entries.iter().enumerate() {
            debug_assert_eq!(e.index, next + i as u64, "entries must be contiguous");
            if e.index == self.base_index || pos - last_indexed >= u64::from(interval) {
                s.positions.push((e.index, pos));
                last_indexed = pos;
            }
            EntryHeader::for_payload(e.index, e.term, &e.payload).encode_into(&mut s.buf);
            if e.payload.len() <= COALESCE_MAX_BYTES {
                s.buf.extend_from_slice(&e.payload);
            } else {
                s.pieces.push(Piece::Scratch(open, s.buf.len()));
                s.pieces.push(Piece::Payload(i));
                open = s.buf.len();
            }
            pos += (ENTRY_HEADER_LEN + e.payload.len()) as u64;
        }
        if open < s.buf.len() {
            s.pieces.push(Piece::Scratch(open, s.buf.len()));
        }
        pos
    }

    fn roll_back(&self, file: &File, size: u64, cause: impl Into<CauseError>) -> StorageError {
        let cause = match cause.into() {
            CauseError::Io(e) => StorageError::io("append to", &self.paths.log)(e),
            CauseError::Storage(e) => e,
        };
        match file.set_len(size) {
            Ok(()) => cause,
            Err(e) => StorageError::Failed {
                path: self.paths.log.clone(),
                reason: format!("{cause}; then cutting the partial write failed: {e}"),
            },
        }
    }

    /// Reads entries `start..end` of this segment into `out` while `budget` (payload bytes)
    /// lasts; the first entry of the whole read is taken even if it alone exceeds the budget.
    /// Returns `true` when the budget stopped the read.
    pub fn read(
        &self,
        start: u64,
        end: u64,
        budget: &mut usize,
        out: &mut Vec<Entry>,
        max_entry: u32,
        interval: u32,
    ) -> Result<bool> {
        let generation = self.generation.load(Ordering::Acquire);
        let Some(files) = self.files()? else {
            return Ok(false); // deleted since the caller listed it: the caller sees it gone
        };
        let Some(file) = self.log_file(&files)? else { return Ok(false) };
        let Some((mut pos, mut expected, limit, end)) = self.read_plan(&files, start, end) else {
            return Ok(false);
        };
        // Sparse index: the wanted entry is at most one interval (plus one frame) past `pos`.
        let slack = u64::from(interval) + 2 * ENTRY_HEADER_LEN as u64;
        let mut min_want = 0u64;
        while expected < end && pos < limit {
            let want = (limit - pos).min((*budget as u64).saturating_add(slack).max(MIN_READ_BYTES).max(min_want));
            let Some(buf) = self.read_exact_or_short(&file, pos, want)? else {
                return Ok(false); // the segment shrank under us: a racing truncation
            };
            let mut p = 0usize;
            while expected < end {
                // Stop before a frame the budget cannot take, without reading or checking it.
                if !out.is_empty()
                    && buf.len() - p >= ENTRY_HEADER_LEN
                    && EntryHeader::decode(&buf[p..]).len as usize > *budget
                {
                    return Ok(true);
                }
                match format::check_frame(&buf[p..], expected, max_entry) {
                    Ok(h) => {
                        let frame_end = p + h.frame_len() as usize;
                        if expected >= start {
                            if !out.is_empty() && h.len as usize > *budget {
                                return Ok(true);
                            }
                            *budget = budget.saturating_sub(h.len as usize);
                            out.push(Entry {
                                index: h.index,
                                term: h.term,
                                payload: buf.slice(p + ENTRY_HEADER_LEN..frame_end),
                            });
                        }
                        p = frame_end;
                        expected += 1;
                    }
                    // The chunk ended inside a frame that the published size says is whole:
                    // read again from the frame's start, at least the whole frame.
                    Err(FrameError::Truncated) if pos + (buf.len() as u64) < limit => {
                        min_want = frame_need(&buf[p..]) as u64;
                        break;
                    }
                    Err(e) if self.generation.load(Ordering::Acquire) != generation => {
                        tracing::debug!(path = %self.paths.log.display(), "read raced a truncation: {e}");
                        return Ok(false);
                    }
                    Err(e) => return Err(StorageError::corrupt(&self.paths.log, pos + p as u64, e.to_string())),
                }
            }
            pos += p as u64;
        }
        Ok(false)
    }

    /// Where to start reading for `start`, where to stop, and the clamped end index.
    fn read_plan(&self, files: &SegmentFiles, start: u64, end: u64) -> Option<(u64, u64, u64, u64)> {
        let m = self.meta();
        let idx = files.indexes();
        if start >= m.next_index || start < self.base_index || start >= end || idx.pos.is_empty() {
            return None;
        }
        let end = end.min(m.next_index);
        let start_rel = start - self.base_index;
        let floor = idx.pos.partition_point(|r| u64::from(u32_at(r, 0)) <= start_rel) - 1;
        let rec = idx.pos.record(floor);
        let end_rel = end - self.base_index;
        let ceil = idx.pos.partition_point(|r| u64::from(u32_at(r, 0)) < end_rel);
        let limit = if ceil < idx.pos.len() { u64::from(u32_at(idx.pos.record(ceil), 4)) } else { m.size };
        Some((u64::from(u32_at(rec, 4)), self.base_index + u64::from(u32_at(rec, 0)), limit, end))
    }

    /// Reads `len` bytes at `pos` with one `pread` (more only if the kernel returns less);
    /// `None` if the file ended first. The bytes come from a per-thread buffer that is reused
    /// once the caller has dropped every slice of the previous read, so a reader that keeps up
    /// touches the same warm memory instead of page-faulting a fresh allocation each time.
    fn read_exact_or_short(&self, file: &File, pos: u64, len: u64) -> Result<Option<Bytes>> {
        let len = usize::try_from(len).expect("read size fits in memory");
        READ_BUFFER.with_borrow_mut(|pool| {
            pool.clear();
            pool.reserve(len);
            pool.resize(len, 0);
            let mut filled = 0;
            while filled < len {
                match file.read_at(&mut pool[filled..], pos + filled as u64) {
                    Ok(0) => return Ok(None),
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(StorageError::io("read", &self.paths.log)(e)),
                }
            }
            let bytes = pool.split_to(len).freeze();
            if pool.capacity() > MAX_POOLED_READ_BYTES {
                *pool = BytesMut::new();
            }
            Ok(Some(bytes))
        })
    }

    /// The byte position of entry `index`, which must be in this segment.
    fn position_of(&self, files: &SegmentFiles, file: &File, index: u64, max_entry: u32) -> Result<u64> {
        let (start_pos, start_index, size) = {
            let m = self.meta();
            let idx = files.indexes();
            let rel = index - self.base_index;
            let floor = idx.pos.partition_point(|r| u64::from(u32_at(r, 0)) <= rel) - 1;
            let rec = idx.pos.record(floor);
            (u64::from(u32_at(rec, 4)), self.base_index + u64::from(u32_at(rec, 0)), m.size)
        };
        let mut found = None;
        let end = scan_file(file, &self.paths.log, start_pos, start_index, size, max_entry, |h, pos| {
            if h.index == index {
                found = Some(pos);
            }
            Ok(())
        })?;
        match (found, end.error) {
            (Some(pos), _) => Ok(pos),
            (None, Some((pos, e))) => Err(StorageError::corrupt(&self.paths.log, pos, e.to_string())),
            (None, None) => Err(StorageError::corrupt(&self.paths.log, end.pos, format!("entry {index} not found"))),
        }
    }

    /// Drops entries `index..` (which must be inside this segment, after its first entry is
    /// allowed to be equal: then the segment becomes empty). The segment is the log's last one
    /// from here on, so its files stay open for the appends to come.
    pub fn truncate_from(&self, index: u64, max_entry: u32) -> Result<()> {
        let files = self.pin()?;
        let file = self.live_log_file(&files)?;
        let cut = if index == self.base_index {
            SEGMENT_HEADER_LEN as u64
        } else {
            self.position_of(&files, &file, index, max_entry)?
        };
        let prev_term = if index > self.base_index { self.term_in(&files, &file, index - 1, max_entry)? } else { 0 };
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut m = self.meta_mut();
        let mut idx = files.indexes_mut();
        let cut_back = file.set_len(cut);
        files.log.mark_dirty();
        cut_back.map_err(StorageError::io("truncate", &self.paths.log))?;
        let rel_cut = index - self.base_index;
        let keep = idx.pos.partition_point(|r| u64::from(u32_at(r, 0)) < rel_cut);
        idx.pos.truncate(keep);
        m.last_indexed_pos = if keep == 0 { 0 } else { u64::from(u32_at(idx.pos.record(keep - 1), 4)) };
        let keep_offsets = idx.offsets.partition_point(|r| u64::from(u32_at(r, 8)) < rel_cut);
        let first_dropped_offset =
            (keep_offsets < idx.offsets.len()).then(|| crate::index::u64_at(idx.offsets.record(keep_offsets), 0));
        idx.offsets.truncate(keep_offsets);
        if let Some(dropped) = first_dropped_offset {
            let keep_times = idx.times.partition_point(|r| crate::index::u64_at(r, 8) < dropped);
            idx.times.truncate(keep_times);
        }
        m.size = cut;
        m.next_index = index;
        m.last_term = prev_term;
        m.summary = IndexSummary::of(&idx);
        idx.pos.set_covered(cut);
        Ok(())
    }

    /// The term of entry `index` in this segment, read from its frame header; `None` if the
    /// segment was deleted since the caller found it.
    pub fn term_at(&self, index: u64, max_entry: u32) -> Result<Option<u64>> {
        let Some(files) = self.files()? else { return Ok(None) };
        let Some(file) = self.log_file(&files)? else { return Ok(None) };
        self.term_in(&files, &file, index, max_entry).map(Some)
    }

    fn term_in(&self, files: &SegmentFiles, file: &File, index: u64, max_entry: u32) -> Result<u64> {
        let pos = self.position_of(files, file, index, max_entry)?;
        let mut raw = [0u8; ENTRY_HEADER_LEN];
        file.read_exact_at(&mut raw, pos).map_err(StorageError::io("read", &self.paths.log))?;
        Ok(EntryHeader::decode(&raw).term)
    }

    /// Whether the header's SEALED flag is set on disk.
    pub fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }

    /// Makes a rolled segment complete on disk and says so: indexes written back, trimmed and
    /// fsynced, data fdatasynced, and only then the SEALED flag written and fdatasynced. Runs
    /// off the append path (from `Log::sync`). A failed fsync is [`StorageError::Failed`].
    pub fn seal(&self) -> Result<()> {
        let files = self.live_files()?;
        {
            let mut idx = files.indexes_mut();
            idx.pos.seal()?;
            idx.offsets.seal()?;
            idx.times.seal()?;
        }
        let file = self.live_log_file(&files)?;
        files.log.sync_data(&file).map_err(|e| self.fatal("fdatasync while sealing", &e))?;
        self.write_sealed_flag(true)
    }

    /// Rewrites the header with the SEALED flag set or cleared, durably. A separate handle is
    /// needed: the segment's own is opened for appending, and Linux appends every write to such
    /// a handle whatever its offset.
    pub fn write_sealed_flag(&self, sealed: bool) -> Result<()> {
        let header = SegmentHeader { base_index: self.base_index, created_ms: self.created_ms, sealed };
        let file =
            OpenOptions::new().write(true).open(&self.paths.log).map_err(StorageError::io("open", &self.paths.log))?;
        file.write_all_at(&header.encode(), 0).map_err(|e| self.fatal("writing the header", &e))?;
        file.sync_data().map_err(|e| self.fatal("fdatasync of the header", &e))?;
        self.sealed.store(sealed, Ordering::Release);
        Ok(())
    }

    fn fatal(&self, what: &str, e: &std::io::Error) -> StorageError {
        StorageError::Failed { path: self.paths.log.clone(), reason: format!("{what}: {e}") }
    }

    /// Deletes the files of a segment that is not open (see [`Segment::delete`] for one that is).
    pub fn delete_files(paths: &SegmentPaths) -> Result<()> {
        for path in paths.all() {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io("delete", path)(e)),
            }
        }
        Ok(())
    }

    /// Opens an existing segment: its file, header, and position index (see `recover`).
    pub fn open_file(paths: SegmentPaths, base: u64) -> Result<Option<(SegmentPaths, File, SegmentHeader)>> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&paths.log)
            .map_err(StorageError::io("open segment", &paths.log))?;
        let size = file.metadata().map_err(StorageError::io("stat", &paths.log))?.len();
        let mut raw = [0u8; SEGMENT_HEADER_LEN];
        let header = if size >= SEGMENT_HEADER_LEN as u64 {
            file.read_exact_at(&mut raw, 0).map_err(StorageError::io("read", &paths.log))?;
            SegmentHeader::decode(&raw)
        } else {
            Err(format!("file is {size} bytes, shorter than its header"))
        };
        match header {
            Ok(h) if h.base_index == base => Ok(Some((paths, file, h))),
            Ok(h) => Err(StorageError::corrupt(
                &paths.log,
                8,
                format!("header says base index {}, file name says {base}", h.base_index),
            )),
            Err(_) if size <= SEGMENT_HEADER_LEN as u64 => Ok(None),
            Err(reason) => Err(StorageError::corrupt(&paths.log, 0, reason)),
        }
    }
}

impl SegmentMeta {
    pub fn new(size: u64, next_index: u64, last_term: u64, last_indexed_pos: u64) -> SegmentMeta {
        SegmentMeta { size, next_index, last_term, last_indexed_pos, summary: IndexSummary::default() }
    }
}

/// Writes a batch laid out by `build_batch` with as few `writev` calls as `IOV_MAX` allows.
fn write_batch(mut file: &File, entries: &[Entry], s: &WriteScratch) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = s
        .pieces
        .iter()
        .map(|p| match *p {
            Piece::Scratch(a, b) => IoSlice::new(&s.buf[a..b]),
            Piece::Payload(i) => IoSlice::new(&entries[i].payload),
        })
        .collect();
    let mut rest: &mut [IoSlice<'_>] = &mut slices;
    while !rest.is_empty() {
        let n = rest.len().min(IOV_MAX);
        let written = file.write_vectored(&rest[..n])?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, written);
    }
    Ok(())
}

/// Scans the frames of `file` from `(pos, index)` up to byte `until`, calling `f` with each good
/// frame's header and position, and stops at the first bad one. Reads in large chunks.
pub(crate) fn scan_file(
    file: &File,
    path: &Path,
    mut pos: u64,
    mut index: u64,
    until: u64,
    max_entry: u32,
    mut f: impl FnMut(&EntryHeader, u64) -> Result<()>,
) -> Result<ScanEnd> {
    let mut last_term = None;
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_start = pos;
    while pos < until {
        let avail = &buf[(pos - buf_start) as usize..];
        match format::check_frame(avail, index, max_entry) {
            Ok(h) => {
                f(&h, pos)?;
                last_term = Some(h.term);
                pos += h.frame_len();
                index += 1;
            }
            Err(FrameError::Truncated) if buf_start + (buf.len() as u64) < until => {
                let need = frame_need(avail) as u64;
                let want = (until - pos).min(need.max(SCAN_CHUNK_BYTES as u64));
                if want < need {
                    return Ok(ScanEnd {
                        pos,
                        next_index: index,
                        last_term,
                        error: Some((pos, FrameError::Truncated)),
                    });
                }
                buf.resize(want as usize, 0);
                file.read_exact_at(&mut buf, pos).map_err(StorageError::io("read", path))?;
                buf_start = pos;
            }
            Err(e) => return Ok(ScanEnd { pos, next_index: index, last_term, error: Some((pos, e)) }),
        }
    }
    Ok(ScanEnd { pos, next_index: index, last_term, error: None })
}

/// Bytes of the next frame (header + payload) if `buf` holds its header, else a header's worth.
fn frame_need(buf: &[u8]) -> usize {
    if buf.len() >= ENTRY_HEADER_LEN {
        ENTRY_HEADER_LEN + EntryHeader::decode(buf).len as usize
    } else {
        ENTRY_HEADER_LEN
    }
}

/// The records a new segment's indexes have room for before they first grow.
pub(crate) const INITIAL_INDEX_RECORDS: usize = 256;

/// A position index never needs more records than this (one per `interval` bytes, plus one).
pub(crate) fn position_capacity(max_segment_bytes: u64, interval: u32) -> usize {
    usize::try_from(max_segment_bytes / u64::from(interval) + 2).unwrap_or(usize::MAX)
}

pub(crate) fn rel(base: u64, index: u64) -> u32 {
    u32::try_from(index - base).expect("segments hold fewer than 2^32 entries")
}

pub(crate) enum CauseError {
    Io(std::io::Error),
    Storage(StorageError),
}

impl From<std::io::Error> for CauseError {
    fn from(e: std::io::Error) -> Self {
        CauseError::Io(e)
    }
}

impl From<StorageError> for CauseError {
    fn from(e: StorageError) -> Self {
        CauseError::Storage(e)
    }
}
