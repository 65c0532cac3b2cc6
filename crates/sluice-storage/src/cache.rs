//! [`SegmentCache`]: a bounded set of sealed segments kept open, shared by every log of a data
//! directory.
//!
//! A broker hosts thousands of partition replicas, each with many sealed segments. Keeping every
//! segment's `.log` descriptor and three index maps open would exhaust the descriptor limit and
//! `vm.max_map_count` long before the disk is full. So only the active segment of each log (and
//! segments rolled past but not yet sealed) stay open for good; a sealed segment is opened when
//! it is read and kept here, least recently used first out, until colder ones push it out.
//!
//! The cache holds the only lasting strong reference to a sealed segment's open files; the
//! segment holds a weak one, and a reader holds a strong one for as long as it reads. So an
//! eviction never pulls files from under a reader: they close when the last reader lets go.
//!
//! The cache also owns the data directory's [`IdleCloser`]: every segment's `.log` descriptor,
//! the active segment's included, is closed once it has gone unused for the idle time
//! ([`DEFAULT_IDLE_CLOSE`], 10 s) and holds nothing not yet durable, and reopened by the next
//! append, read or fsync. So an idle replica holds no descriptor at all, only index maps.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::idle::{DEFAULT_IDLE_CLOSE, IdleCloser};
use crate::log_file::LogFile;
use crate::segment_files::SegmentFiles;

/// Files one cached segment holds open: the `.log` descriptor (at most: it closes when idle)
/// and the maps of its `.index`, `.offindex` and `.timeindex` files (a map keeps its file open in
/// the kernel and counts against `vm.max_map_count`).
pub const FILES_PER_SEGMENT: usize = 4;

/// The default bound on files held open by a [`SegmentCache`]: 1,024 files, 256 segments.
pub const DEFAULT_MAX_OPEN_FILES: usize = 1024;

/// A bounded, least-recently-used set of open sealed segments (see the module doc). Share one
/// per data directory, like the [`Flusher`](crate::Flusher), through
/// [`Log::open_with`](crate::Log::open_with).
pub struct SegmentCache {
    max_open_files: usize,
    lru: Mutex<Lru>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    idle: IdleCloser,
}

/// What a [`SegmentCache`] holds and has done, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Files held open now: [`FILES_PER_SEGMENT`] per cached segment. A reader that is still
    /// using an evicted segment keeps its files open a little longer, uncounted.
    pub open_files: usize,
    /// The bound on `open_files`.
    pub max_open_files: usize,
    /// Reads of a sealed segment that found it open.
    pub hits: u64,
    /// Reads of a sealed segment that had to open it (each one reopen).
    pub misses: u64,
    /// Segments closed to make room.
    pub evictions: u64,
    /// `.log` descriptors closed for going unused for the idle time (any segment's).
    pub idle_closed: u64,
    /// `.log` descriptors reopened after such a close, by an append, read or fsync.
    pub idle_reopened: u64,
}

#[derive(Default)]
struct Lru {
    /// Segment id → its open files and the tick of its last use.
    entries: HashMap<u64, (Arc<SegmentFiles>, u64)>,
    /// Tick of last use → segment id; the first entry is the coldest.
    order: BTreeMap<u64, u64>,
    tick: u64,
}

impl std::fmt::Debug for SegmentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentCache").field("stats", &self.stats()).finish()
    }
}

impl Default for SegmentCache {
    fn default() -> Self {
        SegmentCache::new(DEFAULT_MAX_OPEN_FILES)
    }
}

impl SegmentCache {
    /// A cache holding at most `max_open_files` files open, that is `max_open_files / 4`
    /// segments. Zero keeps nothing: every read of a sealed segment opens it and closes it after.
    /// `.log` descriptors close after [`DEFAULT_IDLE_CLOSE`] unused.
    pub fn new(max_open_files: usize) -> SegmentCache {
        SegmentCache::with_idle_close(max_open_files, Some(DEFAULT_IDLE_CLOSE))
    }

    /// Like [`SegmentCache::new`], closing any segment's `.log` descriptor once it has gone
    /// unused for between `idle` and twice that (`None`: only when [`SegmentCache::close_idle`]
    /// is called). Files holding writes not yet fdatasynced stay open.
    pub fn with_idle_close(max_open_files: usize, idle: Option<Duration>) -> SegmentCache {
        SegmentCache {
            max_open_files,
            lru: Mutex::new(Lru::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            idle: IdleCloser::new(idle),
        }
    }

    /// How long a `.log` descriptor may go unused before it closes; `None`: only on request.
    pub fn idle_close(&self) -> Option<Duration> {
        self.idle.idle()
    }

    /// Closes the `.log` descriptors unused since the previous sweep, now (a thread does this
    /// every idle interval); returns how many it closed. For tests and tools: a file needs two
    /// sweeps without a use in between to close.
    pub fn close_idle(&self) -> usize {
        self.idle.sweep()
    }

    /// The cache that [`Log::open`](crate::Log::open) and
    /// [`Log::open_with_clock`](crate::Log::open_with_clock) use: one per process, with the
    /// default bound, so that logs opened without a cache of their own are still bounded together.
    pub fn process_default() -> Arc<SegmentCache> {
        static DEFAULT: OnceLock<Arc<SegmentCache>> = OnceLock::new();
        Arc::clone(DEFAULT.get_or_init(|| Arc::new(SegmentCache::default())))
    }

    /// What the cache holds and has done.
    pub fn stats(&self) -> CacheStats {
        let (idle_closed, idle_reopened) = self.idle.counts();
        CacheStats {
            idle_closed,
            idle_reopened,
            open_files: self.lock().entries.len() * FILES_PER_SEGMENT,
            max_open_files: self.max_open_files,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }

    /// Closes every cached segment (those in use close when their readers are done).
    pub fn clear(&self) {
        let dropped: Vec<_> = {
            let mut lru = self.lock();
            lru.order.clear();
            lru.entries.drain().map(|(_, (files, _))| files).collect()
        };
        self.evictions.fetch_add(dropped.len() as u64, Ordering::Relaxed);
        drop(dropped); // closed outside the lock: munmap and close are system calls
    }

    /// Records a use of segment `id`, whose files are `files`: it becomes the most recently
    /// used, and is added if absent. Returns the segments evicted to make room, for the caller
    /// to drop once it holds no lock (closing them is a system call per file).
    pub(crate) fn admit(&self, id: u64, files: &Arc<SegmentFiles>) -> Vec<Arc<SegmentFiles>> {
        let max_segments = self.max_open_files / FILES_PER_SEGMENT;
        let mut lru = self.lock();
        lru.tick += 1;
        let tick = lru.tick;
        if let Some((_, old_tick)) = lru.entries.insert(id, (Arc::clone(files), tick)) {
            lru.order.remove(&old_tick);
        }
        lru.order.insert(tick, id);
        let mut evicted = Vec::new();
        while lru.entries.len() > max_segments {
            let (_, coldest) = lru.order.pop_first().expect("every entry is ordered");
            evicted.extend(lru.entries.remove(&coldest).map(|(files, _)| files));
        }
        drop(lru);
        self.evictions.fetch_add(evicted.len() as u64, Ordering::Relaxed);
        evicted
    }

    /// Forgets segment `id` (deleted, or open for good again). Returns its files, for the
    /// caller to drop once it holds no lock.
    pub(crate) fn remove(&self, id: u64) -> Option<Arc<SegmentFiles>> {
        let mut lru = self.lock();
        let (files, tick) = lru.entries.remove(&id)?;
        lru.order.remove(&tick);
        Some(files)
    }

    pub(crate) fn count_hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// Closes `file` whenever it goes unused for the idle time.
    pub(crate) fn watch_idle(&self, file: &Arc<LogFile>) {
        self.idle.watch(file);
    }

    pub(crate) fn count_reopen(&self) {
        self.idle.count_reopen();
    }

    pub(crate) fn count_miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, Lru> {
        self.lru.lock().expect("segment cache lock poisoned")
    }
}
