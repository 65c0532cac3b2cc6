//! [`Log`]: a directory of segments holding one Raft log.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::cache::SegmentCache;
use crate::clock::{Clock, SystemClock};
use crate::config::{LogConfig, Retention};
use crate::entry::{Entry, EntryId};
use crate::error::{Result, StorageError};
use crate::format::ENTRY_HEADER_LEN;
use crate::lock::LogLock;
use crate::offsets::SecondaryCheck;
use crate::recovery::open_segment;
use crate::segment::{NewSegment, Segment, SegmentPaths, WriteScratch};
use crate::state_file::{read_state_file, sync_dir, write_state_file};

/// Name of the state file that records the purge point.
pub(crate) const PURGED_FILE: &str = "purged";

/// A segmented, CRC-checked log of Raft entries in one directory.
///
/// - **Writes** (`append`, `truncate_from`, `purge_to`) are serialized by one internal lock;
///   `append` returns once the bytes are in the operating system, *not* once they are durable.
/// - **Durability** comes from [`Log::sync`], usually driven by a shared
///   [`Flusher`](crate::Flusher) so that one fsync covers many appends and many logs.
/// - **Reads** run concurrently with writes and see only entries whose append has returned.
///   A read that races `truncate_from` returns entries from before or after the truncation,
///   each CRC-checked.
/// - After a failed fsync the log refuses all further work ([`StorageError::Failed`]): the
///   kernel may have dropped the dirty pages, so a later fsync could report success for data
///   that is gone. The process must restart and recover from what is on disk.
/// - **Open files**: the active segment (and any rolled past but not yet sealed) keeps its index
///   maps for good; sealed segments are opened when read and kept open by a shared
///   [`SegmentCache`], which closes the least recently used ones beyond its bound. Any
///   segment's `.log` descriptor closes once unused for the cache's idle time and holding
///   nothing not yet synced, and reopens on the next append, read or sync; with
///   [`LockMode::Held`](crate::LockMode::Held) an idle log holds no descriptor at all.
pub struct Log {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    /// What retention may delete: `config.retention` at first, changed by
    /// [`Log::set_retention`] when its topic's settings change while the log is open.
    pub(crate) retention: Mutex<Retention>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) cache: Arc<SegmentCache>,
    writer: Mutex<Writer>,
    /// Serializes secondary-index updates with each other and with truncation and purging.
    pub(crate) index_lock: Mutex<()>,
    shared: RwLock<Shared>,
    /// Held for the whole of a sync, so a second caller cannot return before the first
    /// caller's fsync has finished.
    sync_lock: Mutex<()>,
    /// One past the highest index known durable (0: none).
    synced_end: AtomicU64,
    failed: OnceLock<String>,
    _lock: LogLock,
}

#[derive(Default)]
pub(crate) struct Writer {
    scratch: WriteScratch,
    /// The active segment has bytes (or a truncation) not yet fsynced.
    active_dirty: bool,
    /// Files were created or deleted since the directory was last fsynced.
    dir_dirty: bool,
    /// Number of truncations so far, so that a sync can tell whether one ran during its fsync.
    truncations: u64,
    /// Segments rolled past but not yet sealed; the next sync seals them, oldest first.
    unsealed: Vec<Arc<Segment>>,
}

pub(crate) struct Shared {
    pub segments: Vec<Arc<Segment>>,
    pub purged: Option<EntryId>,
    /// The last entry held in a segment.
    pub last: Option<EntryId>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("dir", &self.dir).field("last", &self.last_id()).finish()
    }
}

impl Log {
    /// Opens (or creates) the log in `dir`, recovering from a crash if there was one. Sealed
    /// segments are cached in the process's default [`SegmentCache`].
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Log> {
        Log::open_with_clock(dir, config, Arc::new(SystemClock))
    }

    /// Like [`Log::open`], with the cache that keeps sealed segments open: share one among the
    /// logs of a data directory, as the [`Flusher`](crate::Flusher) is shared.
    pub fn open_with(dir: impl AsRef<Path>, config: LogConfig, cache: Arc<SegmentCache>) -> Result<Log> {
        Log::open_in(dir.as_ref(), config, Arc::new(SystemClock), cache)
    }

    /// Like [`Log::open`], with the clock used for segment age and retention.
    pub fn open_with_clock(dir: impl AsRef<Path>, config: LogConfig, clock: Arc<dyn Clock>) -> Result<Log> {
        Log::open_in(dir.as_ref(), config, clock, SegmentCache::process_default())
    }

    fn open_in(dir: &Path, config: LogConfig, clock: Arc<dyn Clock>, cache: Arc<SegmentCache>) -> Result<Log> {
        config.validate()?;
        let dir = dir.to_owned();
        fs::create_dir_all(&dir).map_err(StorageError::io("create directory", &dir))?;
        let lock = LogLock::acquire(&dir, config.lock)?;
        let purged = read_state_file(&dir, PURGED_FILE)?.map(|b| decode_entry_id(&b, &dir)).transpose()?;
        let bases = list_segments(&dir)?;
        let (segments, unsealed) = open_segments(&dir, &bases, &config, purged, &cache)?;
        let last = last_entry(&segments);
        if let Some(tail) = segments.last() {
            // Whatever survived in the page cache is made durable before anyone relies on it.
            let files = tail.live_files()?;
            let file = tail.live_log_file(&files)?;
            files.log.sync_data(&file).map_err(StorageError::io("fdatasync", &tail.paths.log))?;
        }
        sync_dir(&dir)?;
        let synced_end = last.or(purged).map_or(0, |l| l.index + 1);
        tracing::debug!(dir = %dir.display(), segments = segments.len(), ?last, ?purged, "opened log");
        Ok(Log {
            dir,
            retention: Mutex::new(config.retention.clone()),
            config,
            clock,
            cache,
            writer: Mutex::new(Writer { unsealed, ..Writer::default() }),
            index_lock: Mutex::new(()),
            shared: RwLock::new(Shared { segments, purged, last }),
            sync_lock: Mutex::new(()),
            synced_end: AtomicU64::new(synced_end),
            failed: OnceLock::new(),
            _lock: lock,
        })
    }

    /// The directory the log lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration the log was opened with (its retention may have changed since: see
    /// [`Log::retention`]).
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// The cache that keeps this log's sealed segments open.
    pub fn segment_cache(&self) -> &Arc<SegmentCache> {
        &self.cache
    }

    /// The last entry's position, or the purge point when every entry has been purged; `None`
    /// for a log that has never held an entry.
    pub fn last_id(&self) -> Option<EntryId> {
        let s = self.shared();
        s.last.or(s.purged)
    }

    /// The position up to which entries have been purged, if any.
    pub fn purged_id(&self) -> Option<EntryId> {
        self.shared().purged
    }

    /// The first index that may be read: one past the purge point, or the first segment's base.
    pub fn first_index(&self) -> u64 {
        let s = self.shared();
        match (s.purged, s.segments.first()) {
            (Some(p), _) => p.index + 1,
            (None, Some(seg)) => seg.base_index,
            (None, None) => 0,
        }
    }

    /// The highest index known to be durable (fsynced), if any.
    pub fn synced_index(&self) -> Option<u64> {
        self.synced_end.load(Ordering::Acquire).checked_sub(1)
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.shared().segments.len()
    }

    /// Total bytes of all segment files.
    pub fn size_bytes(&self) -> u64 {
        self.segments().iter().map(|s| s.meta().size).sum()
    }

    /// Appends `entries`, which must be contiguous and follow the last entry (or, for a log that
    /// has never held one, may start anywhere). The batch is written with as few `writev` calls
    /// as it allows, rolling segments as they fill or age. A failed write leaves the log as it
    /// was. Returns once the data is in the operating system; call [`Log::sync`] (or use a
    /// [`Flusher`](crate::Flusher)) for durability.
    pub fn append(&self, entries: &[Entry]) -> Result<()> {
        let Some(first) = entries.first() else { return Ok(()) };
        self.check_failed()?;
        let mut w = self.writer();
        self.check_batch(entries)?;
        let max_segment = self.config.max_segment_bytes;
        let mut rest = entries;
        while !rest.is_empty() {
            let seg = self.active_segment(&mut w, rest[0].index)?;
            let (size, count) = {
                let m = seg.meta();
                (m.size, m.next_index - seg.base_index)
            };
            let fit = fitting(rest, size, count, max_segment);
            if fit == 0 {
                self.roll(&mut w, rest[0].index)?;
                continue;
            }
            let result = seg.append(&rest[..fit], &mut w.scratch, self.config.index_interval_bytes);
            result.map_err(|e| self.fail_if_fatal(e))?;
            w.active_dirty = true;
            self.shared_mut().last = Some(rest[fit - 1].id());
            rest = &rest[fit..];
        }
        tracing::trace!(first = first.index, count = entries.len(), "appended");
        Ok(())
    }

    fn check_batch(&self, entries: &[Entry]) -> Result<()> {
        let expected = self.last_id().map(|l| l.index + 1);
        for (i, e) in entries.iter().enumerate() {
            let want = expected.unwrap_or(entries[0].index) + i as u64;
            if e.index != want {
                return Err(StorageError::NotContiguous { expected: want, got: e.index });
            }
            if e.payload.len() > self.config.max_entry_bytes as usize {
                return Err(StorageError::EntryTooLarge {
                    index: e.index,
                    len: e.payload.len(),
                    max: self.config.max_entry_bytes,
                });
            }
        }
        Ok(())
    }

    /// The segment the next entry (`index`) goes to, creating or rolling one when needed.
    fn active_segment(&self, w: &mut Writer, index: u64) -> Result<Arc<Segment>> {
        let active = self.shared().segments.last().cloned();
        match active {
            None => self.roll(w, index),
            Some(seg) => {
                let (next, empty) = {
                    let m = seg.meta();
                    (m.next_index, m.next_index == seg.base_index)
                };
                if empty && next != index {
                    // An empty segment left by recovery, at the wrong base for this append.
                    self.shared_mut().segments.pop();
                    seg.delete()?;
                    w.dir_dirty = true;
                    return self.roll(w, index);
                }
                assert_eq!(next, index, "append must continue the active segment");
                let age_ms =
                    self.config.max_segment_age.map_or(i64::MAX, |a| i64::try_from(a.as_millis()).unwrap_or(i64::MAX));
                if !empty && self.clock.now_ms().saturating_sub(seg.created_ms) >= age_ms {
                    return self.roll(w, index);
                }
                // A sealed segment becomes the one appended to again after a truncation or a
                // back-fill: appends must find its files open.
                seg.pin()?;
                Ok(seg)
            }
        }
    }

    /// Starts a new segment at `base`. The old one is sealed by the next [`Log::sync`], off the
    /// append path: a roll never waits for the disk.
    fn roll(&self, w: &mut Writer, base: u64) -> Result<Arc<Segment>> {
        if let Some(old) = self.shared().segments.last().cloned() {
            if old.is_sealed() {
                // Sealed once, then reopened by a truncation: until it is sealed again, recovery
                // must treat it as possibly torn, so the stale flag goes first.
                old.write_sealed_flag(false).map_err(|e| self.fail_if_fatal(e))?;
            }
            w.unsealed.push(old);
        }
        let new = NewSegment {
            dir: &self.dir,
            base,
            created_ms: self.clock.now_ms(),
            max_segment_bytes: self.config.max_segment_bytes,
            interval: self.config.index_interval_bytes,
        };
        let seg = Arc::new(Segment::create(&new, &self.cache)?);
        self.shared_mut().segments.push(Arc::clone(&seg));
        w.dir_dirty = true;
        w.active_dirty = true;
        tracing::debug!(dir = %self.dir.display(), base, "rolled to a new segment");
        Ok(seg)
    }

    /// Reads entries `start..end` while their payloads fit in `max_bytes`; at least one entry is
    /// returned when `start` exists, however large. Entries past the last are simply absent.
    /// Each payload is a slice of one read buffer per segment visited: no per-entry copy.
    pub fn read(&self, start: u64, end: u64, max_bytes: usize) -> Result<Vec<Entry>> {
        let (segments, end) = {
            let s = self.shared();
            let first = match (s.purged, s.segments.first()) {
                (Some(p), _) => p.index + 1,
                (None, Some(seg)) => seg.base_index,
                (None, None) => return Ok(Vec::new()),
            };
            if start < first {
                return Err(StorageError::Purged { index: start, first });
            }
            let end = end.min(s.last.map_or(0, |l| l.index + 1));
            let segs: Vec<_> = s.segments.iter().filter(|seg| seg.base_index < end).cloned().collect();
            (segs, end)
        };
        let mut out = Vec::new();
        let mut budget = max_bytes;
        let from = segments.partition_point(|seg| seg.base_index <= start).saturating_sub(1);
        for seg in &segments[from..] {
            let want = start.max(seg.base_index);
            if want >= end {
                break;
            }
            let before = out.len();
            let full = seg.read(
                want,
                end,
                &mut budget,
                &mut out,
                self.config.max_entry_bytes,
                self.config.index_interval_bytes,
            )?;
            let reached = out.last().is_some_and(|e| e.index + 1 >= seg.meta().next_index);
            if full || !reached || out.len() == before {
                break; // budget spent, or the segment changed under us: never return a gap
            }
        }
        if out.is_empty() {
            // A purge may have deleted the segments listed above before they were read.
            let first = self.first_index();
            if start < first {
                return Err(StorageError::Purged { index: start, first });
            }
        }
        Ok(out)
    }

    /// The entry at `index`, if the log holds it.
    pub fn entry(&self, index: u64) -> Result<Option<Entry>> {
        Ok(self.read(index, index.saturating_add(1), 0)?.into_iter().next())
    }

    /// The term of entry `index`, if the log holds it (or it is the purge point).
    pub fn term_of(&self, index: u64) -> Result<Option<u64>> {
        let seg = {
            let s = self.shared();
            if let Some(l) = s.last.filter(|l| l.index == index) {
                return Ok(Some(l.term));
            }
            if let Some(p) = s.purged.filter(|p| p.index == index) {
                return Ok(Some(p.term));
            }
            if s.purged.is_some_and(|p| index < p.index) || s.last.is_none_or(|l| index > l.index) {
                return Ok(None);
            }
            let i = s.segments.partition_point(|seg| seg.base_index <= index);
            match i.checked_sub(1) {
                Some(i) => Arc::clone(&s.segments[i]),
                None => return Ok(None),
            }
        };
        // `None`: the segment was purged or truncated away since it was found.
        seg.term_at(index, self.config.max_entry_bytes)
    }

    /// Removes entries `index..` (a Raft log conflict). Durable at the next [`Log::sync`].
    pub fn truncate_from(&self, index: u64) -> Result<()> {
        self.check_failed()?;
        let mut w = self.writer();
        let _index_guard = self.index_lock.lock().expect("index lock poisoned");
        let mut s = self.shared_mut();
        if let Some(p) = s.purged.filter(|p| index <= p.index) {
            return Err(StorageError::Purged { index, first: p.index + 1 });
        }
        if s.last.is_none_or(|l| index > l.index) {
            return Ok(());
        }
        // Newest first, so a crash part-way leaves a contiguous prefix of segments.
        while let Some(seg) = s.segments.pop_if(|seg| seg.base_index >= index) {
            seg.delete()?;
            w.dir_dirty = true;
        }
        // Only a segment that holds `index` is cut. When `index` was the base of a segment just
        // deleted, the one before ends at `index - 1` and stays whole: looking `index` up in it
        // would fail ("not found") after the later segments were already gone.
        if let Some(seg) = s.segments.last().filter(|seg| index < seg.meta().next_index) {
            seg.truncate_from(index, self.config.max_entry_bytes).map_err(|e| self.fail_if_fatal(e))?;
        }
        w.active_dirty = true;
        w.truncations += 1;
        let active = s.segments.last().cloned();
        w.unsealed.retain(|u| {
            s.segments.iter().any(|seg| Arc::ptr_eq(seg, u)) && !active.as_ref().is_some_and(|a| Arc::ptr_eq(a, u))
        });
        s.last = last_entry(&s.segments);
        self.synced_end.fetch_min(index, Ordering::AcqRel);
        tracing::debug!(dir = %self.dir.display(), index, "truncated");
        Ok(())
    }

    /// Discards entries up to and including `upto` (Raft purge after a snapshot, or retention).
    /// The purge point is recorded durably first; whole segments at or below it are then deleted.
    /// `upto` may lie beyond the last entry (after installing a snapshot): the log is then empty
    /// and the next append must be `upto.index + 1`.
    pub fn purge_to(&self, upto: EntryId) -> Result<()> {
        self.check_failed()?;
        let mut w = self.writer();
        let _index_guard = self.index_lock.lock().expect("index lock poisoned");
        if self.shared().purged.is_some_and(|p| p.index >= upto.index) {
            return Ok(());
        }
        write_state_file(&self.dir, PURGED_FILE, &encode_entry_id(upto))
            .map_err(|e| self.fail(format!("recording purge point: {e}")))?;
        let removed: Vec<Arc<Segment>> = {
            let mut s = self.shared_mut();
            s.purged = Some(upto);
            let n = s.segments.iter().take_while(|seg| seg.meta().next_index <= upto.index + 1).count();
            if s.last.is_some_and(|l| l.index <= upto.index) {
                s.last = None;
            }
            s.segments.drain(..n).collect()
        };
        for seg in &removed {
            seg.delete()?;
        }
        w.unsealed.retain(|u| !removed.iter().any(|r| Arc::ptr_eq(r, u)));
        w.dir_dirty |= !removed.is_empty();
        self.synced_end.fetch_max(upto.index + 1, Ordering::AcqRel);
        tracing::debug!(dir = %self.dir.display(), ?upto, segments = removed.len(), "purged");
        Ok(())
    }

    /// Makes every append, truncation and purge that returned before this call durable, and
    /// returns the highest durable index. Concurrent callers share the work; a failed fsync
    /// stops the log for good (see [`Log`]).
    pub fn sync(&self) -> Result<Option<u64>> {
        self.check_failed()?;
        let _sync = self.sync_lock.lock().expect("sync lock poisoned");
        let (unsealed, active, dir_dirty, end, truncations) = {
            let mut w = self.writer();
            let s = self.shared();
            let active = if w.active_dirty { s.segments.last().cloned() } else { None };
            let end = s.last.or(s.purged).map_or(0, |l| l.index + 1);
            let dirty = (std::mem::take(&mut w.unsealed), active, w.dir_dirty, end, w.truncations);
            w.active_dirty = false;
            w.dir_dirty = false;
            dirty
        };
        self.seal_all(unsealed)?;
        // `None`: truncated away since; the truncation keeps this sync from publishing `end`.
        // The descriptor may have been closed while idle: it is reopened (the same inode), and
        // the fdatasync writes back whatever the inode holds dirty (see `log_file.rs`). A reopen
        // that fails (out of descriptors) leaves the segment to the next sync.
        if let Some(seg) = active
            && let Some(files) = seg.files()?
            && let Some(file) = seg.log_file(&files).inspect_err(|_| self.writer().active_dirty = true)?
        {
            let synced = files.log.sync_data(&file);
            synced.map_err(|e| self.fail(format!("fdatasync {}: {e}", seg.paths.log.display())))?;
        }
        if dir_dirty {
            sync_dir(&self.dir).map_err(|e| self.fail(e.to_string()))?;
        }
        // A truncation during the fsync lowered `synced_end`, and new, unsynced entries may
        // already sit at the truncated indexes: publishing the `end` read before it would claim
        // them durable. So publish under the writer lock, and only if no truncation ran; else
        // report what is known durable (the next sync publishes the rest).
        let w = self.writer();
        if w.truncations != truncations {
            return Ok(self.synced_index());
        }
        self.synced_end.fetch_max(end, Ordering::AcqRel);
        drop(w);
        Ok(end.checked_sub(1))
    }

    /// Seals rolled segments, oldest first. One deleted meanwhile (truncated or purged away)
    /// is skipped; one that cannot be sealed for another reason goes back on the list.
    fn seal_all(&self, unsealed: Vec<Arc<Segment>>) -> Result<()> {
        for (i, seg) in unsealed.iter().enumerate() {
            match seg.seal() {
                Ok(()) => self.cool(seg),
                Err(e @ StorageError::Failed { .. }) => return Err(self.fail_if_fatal(e)),
                Err(_) if !self.shared().segments.iter().any(|s| Arc::ptr_eq(s, seg)) => {}
                Err(e) => {
                    let mut w = self.writer();
                    let rest = unsealed[i..].iter().cloned();
                    w.unsealed.splice(0..0, rest);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Hands a segment just sealed to the cache, unless it is the active one again (truncated
    /// back to) or gone. Checked under the log's lock, which a purge or truncation takes to
    /// unlist a segment before deleting it: so a deleted segment never lands in the cache.
    fn cool(&self, seg: &Arc<Segment>) {
        let s = self.shared();
        let listed = s.segments.iter().any(|other| Arc::ptr_eq(other, seg));
        let active = s.segments.last().is_some_and(|last| Arc::ptr_eq(last, seg));
        if listed && !active {
            seg.unpin();
        }
    }

    pub(crate) fn segments(&self) -> Vec<Arc<Segment>> {
        self.shared().segments.clone()
    }

    pub(crate) fn shared(&self) -> RwLockReadGuard<'_, Shared> {
        self.shared.read().expect("log lock poisoned")
    }

    pub(crate) fn shared_mut(&self) -> RwLockWriteGuard<'_, Shared> {
        self.shared.write().expect("log lock poisoned")
    }

    pub(crate) fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().expect("log writer lock poisoned")
    }

    pub(crate) fn check_failed(&self) -> Result<()> {
        match self.failed.get() {
            Some(reason) => Err(StorageError::Failed { path: self.dir.clone(), reason: reason.clone() }),
            None => Ok(()),
        }
    }

    /// Marks the log failed for good and returns the error to report.
    pub(crate) fn fail(&self, reason: String) -> StorageError {
        tracing::error!(dir = %self.dir.display(), "log stopped: {reason}");
        let reason = self.failed.get_or_init(|| reason).clone();
        StorageError::Failed { path: self.dir.clone(), reason }
    }

    fn fail_if_fatal(&self, e: StorageError) -> StorageError {
        match e {
            StorageError::Failed { reason, .. } => self.fail(reason),
            other => other,
        }
    }
}

/// How many of `entries` fit into a segment now holding `size` bytes and `count` entries.
pub(crate) fn fitting(entries: &[Entry], mut size: u64, count: u64, max_segment: u64) -> usize {
    let mut n = 0;
    for e in entries {
        let frame = (ENTRY_HEADER_LEN + e.payload.len()) as u64;
        if size + frame > max_segment || count + n as u64 >= u64::from(u32::MAX) {
            break;
        }
        size += frame;
        n += 1;
    }
    n
}

fn last_entry(segments: &[Arc<Segment>]) -> Option<EntryId> {
    segments.iter().rev().find_map(|seg| {
        let m = seg.meta();
        (m.next_index > seg.base_index).then(|| EntryId::new(m.next_index - 1, m.last_term))
    })
}

/// Base indexes of the segment files in `dir`, ascending. Leftover temporary files and index
/// files without a segment are removed.
fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut bases = Vec::new();
    let mut strays = Vec::new();
    for item in fs::read_dir(dir).map_err(StorageError::io("list", dir))? {
        let item = item.map_err(StorageError::io("list", dir))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((stem, ext)) = name.split_once('.') else { continue };
        let base = (stem.len() == 20).then(|| stem.parse::<u64>().ok()).flatten();
        match (base, ext) {
            (Some(base), "log") => bases.push(base),
            (Some(base), "index" | "offindex" | "timeindex") => strays.push((base, item.path())),
            (_, "tmp") => strays.push((u64::MAX, item.path())),
            _ => {}
        }
    }
    bases.sort_unstable();
    for (base, path) in strays {
        if base == u64::MAX || bases.binary_search(&base).is_err() {
            tracing::info!(path = %path.display(), "removing a file left by an interrupted operation");
            fs::remove_file(&path).map_err(StorageError::io("delete", &path))?;
        }
    }
    Ok(bases)
}

/// Segments opened at start-up: all of them, and those rolled past but not sealed before the
/// process stopped.
type Opened = (Vec<Arc<Segment>>, Vec<Arc<Segment>>);

/// Opens every segment, finishing a purge a crash interrupted, checking that the segments follow
/// one another without gaps and that their offset and time indexes are valid, and dropping
/// segments after a torn one. Each sealed segment but the last is closed once checked.
fn open_segments(
    dir: &Path,
    bases: &[u64],
    config: &LogConfig,
    purged: Option<EntryId>,
    cache: &Arc<SegmentCache>,
) -> Result<Opened> {
    let purged_end = purged.map_or(0, |p| p.index + 1);
    let (mut segments, mut unsealed) = (Vec::<Arc<Segment>>::new(), Vec::new());
    let mut secondary = SecondaryCheck::default();
    for (i, &base) in bases.iter().enumerate() {
        let next_base = bases.get(i + 1).copied();
        if next_base.is_some_and(|next| next <= purged_end) {
            tracing::info!(base, "finishing an interrupted purge");
            Segment::delete_files(&SegmentPaths::new(dir, base))?;
            continue;
        }
        let Some(rec) = open_segment(dir, base, config, next_base.is_none(), cache)? else {
            drop_segments(dir, &bases[i..])?;
            break;
        };
        let seg = Arc::new(rec.segment);
        if let Some(prev) = segments.last() {
            let expected = prev.meta().next_index;
            if expected != base {
                let why = format!("segment starts at {base} but the previous one ends before {expected}");
                return Err(StorageError::corrupt(&seg.paths.log, 0, why));
            }
        }
        if next_base.is_none() && seg.meta().next_index <= purged_end && seg.base_index < purged_end {
            seg.delete()?;
            continue;
        }
        let last = next_base.is_none() || rec.cut;
        secondary.check(&seg, &rec.secondary)?;
        if !last && !seg.is_sealed() {
            unsealed.push(Arc::clone(&seg));
        }
        if !last && seg.is_sealed() {
            seg.release();
        }
        segments.push(seg);
        if rec.cut && !bases[i + 1..].is_empty() {
            drop_segments(dir, &bases[i + 1..])?;
            break;
        }
    }
    Ok((segments, unsealed))
}

/// Deletes segments that follow a torn one (newest first): they hold only entries written after
/// the last sync, none of which was durable.
fn drop_segments(dir: &Path, bases: &[u64]) -> Result<()> {
    for &base in bases.iter().rev() {
        tracing::warn!(base, "dropping a segment that follows a torn one");
        Segment::delete_files(&SegmentPaths::new(dir, base))?;
    }
    Ok(())
}

pub(crate) fn encode_entry_id(id: EntryId) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&id.index.to_le_bytes());
    b[8..].copy_from_slice(&id.term.to_le_bytes());
    b
}

pub(crate) fn decode_entry_id(b: &[u8], dir: &Path) -> Result<EntryId> {
    if b.len() != 16 {
        return Err(StorageError::corrupt(dir.join(PURGED_FILE), 0, format!("{} bytes, expected 16", b.len())));
    }
    let index = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    let term = u64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
    Ok(EntryId::new(index, term))
}
