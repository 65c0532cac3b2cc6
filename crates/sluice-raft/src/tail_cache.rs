//! The entries a partition replica appended last, kept in memory for the readers that want them
//! next: on a leader the replication stream to each follower and the state machine, on a
//! follower its state machine. Served from here, such a read costs no `pread`, no CRC check and
//! no buffer: the entries share the bytes the append wrote.
//!
//! The cache always ends at the log's last entry (the store updates both in `append`,
//! `truncate_after` and `purge`, the only places the log changes) and holds a contiguous run of
//! at most [`TAIL_CACHE_BYTES`] of payload, but always the last append whole. A read that starts
//! before the cached run goes to the log.
//!
//! Memory is bounded for the whole process, not per replica alone: the caches together hold at
//! most [`TAIL_CACHE_TOTAL_BYTES`] beyond their last appends (a cache over it keeps only its
//! last append), and a cache not appended to for [`TAIL_CACHE_IDLE`] is emptied by a sweeper.
//! Otherwise a broker holding thousands of replicas kept a megabyte for each one ever written,
//! long after its readers had what they needed (3 GB per broker after producing to 1,000 of
//! 10,000 partitions), and an entry decoded from a replication message can keep the whole
//! message's buffer alive.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::typ::RaftEntry;

/// Payload bytes the cache keeps per partition replica. At 40 MB/s into one partition that is
/// the last ~25 ms of writes: enough for followers and the state machine, which trail the
/// appends by a round trip, and small enough for thousands of partitions.
pub const TAIL_CACHE_BYTES: usize = 1 << 20;

/// Payload bytes all caches of the process keep together, beyond each one's last append.
pub const TAIL_CACHE_TOTAL_BYTES: usize = 256 << 20;

/// A cache not appended to for this long is emptied: its readers caught up long ago, and later
/// reads (a follower that restarts, a consumer) go to the log.
pub const TAIL_CACHE_IDLE: Duration = Duration::from_secs(2);

/// How often the sweeper looks for idle caches.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Payload bytes held by every cache of the process.
static CACHED: AtomicUsize = AtomicUsize::new(0);

/// Every live cache, for the sweeper.
static CACHES: Mutex<Vec<Weak<Mutex<TailCache>>>> = Mutex::new(Vec::new());

/// Payload bytes all caches of the process hold now.
pub fn cached_bytes() -> usize {
    CACHED.load(Ordering::Relaxed)
}

/// A new cache, known to the sweeper (started with the first one).
pub(crate) fn registered() -> Arc<Mutex<TailCache>> {
    static SWEEPER: OnceLock<()> = OnceLock::new();
    SWEEPER.get_or_init(|| {
        let spawned = std::thread::Builder::new().name("tail-cache-sweeper".into()).spawn(sweep_forever);
        if let Err(e) = spawned {
            tracing::warn!("cannot start the tail cache sweeper: {e}; idle caches keep their entries");
        }
    });
    let cache = Arc::new(Mutex::new(TailCache::default()));
    CACHES.lock().expect("cache registry poisoned").push(Arc::downgrade(&cache));
    cache
}

fn sweep_forever() {
    loop {
        std::thread::sleep(SWEEP_EVERY);
        sweep(Instant::now());
    }
}

/// Empties the caches idle at `now`, and forgets the dropped ones.
fn sweep(now: Instant) {
    let live: Vec<Arc<Mutex<TailCache>>> = {
        let mut caches = CACHES.lock().expect("cache registry poisoned");
        caches.retain(|c| c.strong_count() > 0);
        caches.iter().filter_map(Weak::upgrade).collect()
    };
    for cache in live {
        let mut cache = cache.lock().expect("tail cache lock poisoned");
        if cache.last_push.is_some_and(|at| now.saturating_duration_since(at) >= TAIL_CACHE_IDLE) {
            cache.clear();
        }
    }
}

/// A contiguous run of the log's last entries, each with its payload size.
#[derive(Default)]
pub(crate) struct TailCache {
    entries: VecDeque<(RaftEntry, usize)>,
    bytes: usize,
    /// When entries were last pushed; `None` while empty.
    last_push: Option<Instant>,
}

impl TailCache {
    /// Adds entries just appended to the log. A run that does not follow the cached one (the
    /// first append after a restart or a snapshot) replaces it.
    pub(crate) fn push(&mut self, appended: Vec<(RaftEntry, usize)>) {
        self.push_within(appended, TAIL_CACHE_TOTAL_BYTES);
    }

    /// [`TailCache::push`], with the caches of the process holding at most `total` together.
    fn push_within(&mut self, appended: Vec<(RaftEntry, usize)>, total: usize) {
        let Some(first) = appended.first().map(|(e, _)| e.log_id.index) else { return };
        if self.end() != Some(first) {
            self.clear();
        }
        let last_append = appended.len();
        // One update of the process-wide count per append, not per entry.
        self.add(appended.iter().map(|(_, size)| size).sum());
        self.entries.extend(appended);
        self.last_push = Some(Instant::now());
        while (self.bytes > TAIL_CACHE_BYTES || cached_bytes() > total) && self.entries.len() > last_append {
            self.pop_front();
        }
    }

    /// Entries `start..end` while their payloads fit in `max_bytes` (at least one), if the
    /// cached run holds `start`; `None` sends the read to the log.
    pub(crate) fn get(&self, start: u64, end: u64, max_bytes: usize) -> Option<Vec<RaftEntry>> {
        let first = self.entries.front()?.0.log_id.index;
        let skip = usize::try_from(start.checked_sub(first)?).ok()?;
        if skip >= self.entries.len() {
            return None;
        }
        let mut out = Vec::new();
        let mut budget = max_bytes;
        for (entry, size) in self.entries.iter().skip(skip) {
            if entry.log_id.index >= end || (!out.is_empty() && *size > budget) {
                break;
            }
            budget = budget.saturating_sub(*size);
            out.push(entry.clone());
        }
        Some(out)
    }

    /// Forgets the entries from `index` on (the log truncated them).
    pub(crate) fn truncate_from(&mut self, index: u64) {
        while self.entries.back().is_some_and(|(e, _)| e.log_id.index >= index) {
            let (_, size) = self.entries.pop_back().expect("checked");
            self.remove(size);
        }
    }

    /// Forgets the entries up to and including `index` (the log purged them).
    pub(crate) fn purge_to(&mut self, index: u64) {
        while self.entries.front().is_some_and(|(e, _)| e.log_id.index <= index) {
            self.pop_front();
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.remove(self.bytes);
        self.last_push = None;
    }

    fn pop_front(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.remove(size);
        }
    }

    fn add(&mut self, size: usize) {
        self.bytes += size;
        CACHED.fetch_add(size, Ordering::Relaxed);
    }

    fn remove(&mut self, size: usize) {
        self.bytes -= size;
        CACHED.fetch_sub(size, Ordering::Relaxed);
    }

    /// The index after the last cached entry.
    fn end(&self) -> Option<u64> {
        self.entries.back().map(|(e, _)| e.log_id.index + 1)
    }
}

impl Drop for TailCache {
    fn drop(&mut self) {
        CACHED.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use openraft::EntryPayload;

    use super::*;
    use crate::typ::log_id;

    fn run(indexes: std::ops::Range<u64>, size: usize) -> Vec<(RaftEntry, usize)> {
        indexes.map(|i| (RaftEntry { log_id: log_id(1, i), payload: EntryPayload::Blank }, size)).collect()
    }

    fn indexes(entries: Option<Vec<RaftEntry>>) -> Option<Vec<u64>> {
        entries.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn reads_within_the_cached_run_are_served_and_others_go_to_the_log() {
        let mut cache = TailCache::default();
        cache.push(run(5..8, 10));
        cache.push(run(8..10, 10));
        assert_eq!(indexes(cache.get(6, 9, usize::MAX)), Some(vec![6, 7, 8]));
        assert_eq!(indexes(cache.get(8, 100, usize::MAX)), Some(vec![8, 9]));
        assert_eq!(indexes(cache.get(5, 10, 25)), Some(vec![5, 6]), "the byte budget holds");
        assert_eq!(indexes(cache.get(5, 10, 0)), Some(vec![5]), "at least one entry");
        assert_eq!(cache.get(4, 10, usize::MAX).map(|v| v.len()), None, "starts before the run");
        assert_eq!(cache.get(10, 12, usize::MAX).map(|v| v.len()), None, "past the end");
    }

    #[test]
    fn a_run_that_does_not_follow_replaces_the_cache() {
        let mut cache = TailCache::default();
        cache.push(run(5..8, 10));
        cache.push(run(20..22, 10));
        assert_eq!(cache.get(6, 8, usize::MAX).map(|v| v.len()), None);
        assert_eq!(indexes(cache.get(20, 22, usize::MAX)), Some(vec![20, 21]));
    }

    #[test]
    fn an_idle_cache_is_emptied_by_the_sweep_and_counts_no_more() {
        let cache = registered();
        cache.lock().unwrap().push(run(1..4, 1_000));
        assert!(cached_bytes() >= 3_000);
        sweep(Instant::now());
        assert_eq!(indexes(cache.lock().unwrap().get(1, 4, usize::MAX)), Some(vec![1, 2, 3]), "not idle yet");
        sweep(Instant::now() + TAIL_CACHE_IDLE);
        let emptied = cache.lock().unwrap();
        assert_eq!(emptied.get(1, 4, usize::MAX).map(|v| v.len()), None, "idle: reads go to the log");
        assert_eq!(emptied.bytes, 0);
    }

    #[test]
    fn over_the_process_budget_a_cache_keeps_its_last_append_only() {
        let mut cache = TailCache::default();
        cache.push(run(1..3, 10));
        // A budget the caches of the process are over, whatever else runs beside.
        cache.push_within(run(3..5, 10), 0);
        assert_eq!(cache.get(2, 5, usize::MAX).map(|v| v.len()), None);
        assert_eq!(indexes(cache.get(3, 5, usize::MAX)), Some(vec![3, 4]), "the last append whole");
        assert_eq!(cache.bytes, 20);
    }

    #[test]
    fn truncation_and_purge_forget_exactly_what_the_log_dropped() {
        let mut cache = TailCache::default();
        cache.push(run(1..10, 10));
        cache.truncate_from(7);
        assert_eq!(indexes(cache.get(5, 100, usize::MAX)), Some(vec![5, 6]));
        cache.push(run(7..9, 10));
        assert_eq!(indexes(cache.get(6, 100, usize::MAX)), Some(vec![6, 7, 8]));
        cache.purge_to(6);
        assert_eq!(cache.get(6, 100, usize::MAX).map(|v| v.len()), None);
        assert_eq!(indexes(cache.get(7, 100, usize::MAX)), Some(vec![7, 8]));
        assert_eq!(cache.bytes, 20);
    }

    #[test]
    fn the_cache_keeps_its_byte_bound_but_always_the_last_append() {
        let mut cache = TailCache::default();
        let big = TAIL_CACHE_BYTES / 2;
        cache.push(run(1..4, big));
        assert_eq!(indexes(cache.get(1, 10, usize::MAX)), Some(vec![1, 2, 3]), "one append is kept whole");
        cache.push(run(4..5, big));
        assert_eq!(cache.get(2, 10, usize::MAX).map(|v| v.len()), None);
        assert_eq!(indexes(cache.get(3, 10, usize::MAX)), Some(vec![3, 4]));
        assert!(cache.bytes <= TAIL_CACHE_BYTES);
    }
}
