//! Sealed segments opened on demand through a bounded [`SegmentCache`]: reads and index look-ups
//! of evicted segments match those of cached ones, readers on many threads share one reopen, a
//! purge while segments are cached or being read, truncation back into a cold segment, and the
//! files a log with 200 sealed segments holds open, counted by the cache and by the kernel.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use sluice_storage::{Entry, EntryId, FILES_PER_SEGMENT, Log, LogConfig, SegmentCache, StorageError};

use super::support::{SetOnDrop, append_in_batches, assert_holds, entries, entry, len_for, payload, small_config};

/// A cache bound of two segments' files.
const TWO_SEGMENTS: usize = 2 * FILES_PER_SEGMENT;

fn open_cached(dir: &Path, config: &LogConfig, cache: &Arc<SegmentCache>) -> Log {
    Log::open_with(dir, config.clone(), Arc::clone(cache)).unwrap_or_else(|e| panic!("opening {}: {e}", dir.display()))
}

/// Writes entries `1..n` (indexing each as a batch of 2 messages stamped `index * 10`), syncs,
/// and reopens the log with `cache`, so every segment but the last starts cold.
fn sealed_log(dir: &Path, n: u64, cache: &Arc<SegmentCache>) -> (Log, Vec<Entry>) {
    let all = entries(1..n, 1);
    let log = open_cached(dir, &small_config(), cache);
    append_in_batches(&log, &all, 25);
    for e in &all {
        log.index_batch(e.index, 2 * (e.index - 1), 2, e.index as i64 * 10).expect("index batch");
    }
    log.sync().expect("sync");
    drop(log);
    (open_cached(dir, &small_config(), cache), all)
}

/// Files under `dir` this process holds open, as the kernel sees them: descriptors (from
/// `/proc/self/fd`) and memory-mapped files (from `/proc/self/maps`).
fn open_files_under(dir: &Path) -> (BTreeSet<PathBuf>, BTreeSet<PathBuf>) {
    let dir = fs::canonicalize(dir).expect("canonical dir");
    let under = |p: &Path| p.starts_with(&dir);
    let fds = fs::read_dir("/proc/self/fd")
        .expect("list /proc/self/fd")
        .filter_map(|item| fs::read_link(item.ok()?.path()).ok())
        .filter(|p| under(p))
        .collect();
    let maps = fs::read_to_string("/proc/self/maps")
        .expect("read /proc/self/maps")
        .lines()
        .filter_map(|line| line.find('/').map(|at| PathBuf::from(line[at..].trim_end_matches(" (deleted)"))))
        .filter(|p| under(p))
        .collect();
    (fds, maps)
}

/// Counts open files under `dir` as the cache does: descriptors plus mapped files.
fn open_file_count(dir: &Path) -> usize {
    let (fds, maps) = open_files_under(dir);
    fds.len() + maps.len()
}

/// Checks that a log whose sealed segments are evicted after every read returns the same
/// entries, term look-ups and offset and time look-ups as one that keeps them all cached.
#[test]
fn given_evicted_segments_when_read_again_should_return_what_cached_ones_return() {
    let (cold_dir, warm_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cold_cache = Arc::new(SegmentCache::new(0));
    let warm_cache = Arc::new(SegmentCache::new(1_000 * FILES_PER_SEGMENT));
    let (cold, all) = sealed_log(cold_dir.path(), 600, &cold_cache);
    let (warm, _) = sealed_log(warm_dir.path(), 600, &warm_cache);
    assert!(cold.segment_count() > 10, "needs many segments, got {}", cold.segment_count());
    assert_eq!(cold_cache.stats().open_files, 0, "nothing is cached after opening");
    for pass in 0..2 {
        assert_holds(&cold, &all);
        assert_holds(&warm, &all);
        for i in (1..600).step_by(7) {
            assert_eq!(cold.read(i, i + 40, 3_000).unwrap(), warm.read(i, i + 40, 3_000).unwrap(), "read from {i}");
            assert_eq!(cold.term_of(i).unwrap(), Some(1));
            assert_eq!(cold.find_offset(2 * i).map(|l| l.entry_index), Some(i + 1), "offset {}", 2 * i);
            assert_eq!(cold.find_offset(2 * i), warm.find_offset(2 * i));
            assert_eq!(cold.find_timestamp(i as i64 * 10), warm.find_timestamp(i as i64 * 10));
        }
        assert_eq!(cold.batches_between(50, 450), warm.batches_between(50, 450));
        assert_eq!(cold.indexed_end(), warm.indexed_end());
        let stats = cold_cache.stats();
        assert_eq!(stats.open_files, 0, "a zero bound keeps nothing open: pass {pass}");
        assert!(stats.misses > 100 && stats.hits == 0, "every cold read reopens: {stats:?}");
    }
    let warm_stats = warm_cache.stats();
    assert_eq!(warm_stats.open_files, (warm.segment_count() - 1) * FILES_PER_SEGMENT, "{warm_stats:?}");
    assert_eq!(warm_stats.misses, (warm.segment_count() - 1) as u64, "each sealed segment opened once");
    assert!(warm_stats.hits > warm_stats.misses, "{warm_stats:?}");
}

/// Checks that readers on four threads, each reading random ranges of a log whose cache holds one
/// segment, all read correct entries while segments are reopened and evicted under them.
#[test]
fn given_concurrent_readers_of_cold_segments_should_read_correct_entries() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(SegmentCache::new(FILES_PER_SEGMENT));
    let (log, _) = sealed_log(dir.path(), 1_000, &cache);
    thread::scope(|s| {
        for seed in 1..=4u64 {
            let log = &log;
            s.spawn(move || {
                let mut x = seed * 0x9E37_79B9;
                for _ in 0..400 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let start = 1 + x % 990;
                    let got = log.read(start, start + 10, usize::MAX).expect("read");
                    assert_eq!(got.len(), 10, "read from {start}");
                    for (e, i) in got.iter().zip(start..) {
                        assert_eq!((e.index, &e.payload[..]), (i, &payload(i, len_for(i))[..]));
                    }
                }
            });
        }
    });
    let stats = cache.stats();
    assert!(stats.open_files <= FILES_PER_SEGMENT, "{stats:?}");
    assert!(stats.misses > 0 && stats.evictions > 0, "{stats:?}");
    assert!(open_file_count(dir.path()) <= FILES_PER_SEGMENT + FILES_PER_SEGMENT + 1, "cached + active + LOCK");
}

/// Checks that purging cached segments closes them (the cache forgets them and the kernel sees
/// no file of theirs open), and that reads racing the purge return correct entries or `Purged`.
#[test]
fn given_segments_purged_while_cached_or_read_should_close_them_and_never_misread() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(SegmentCache::new(TWO_SEGMENTS));
    let (log, all) = sealed_log(dir.path(), 1_500, &cache);
    log.read(1, 2, 0).expect("read the first segment, caching it");
    assert_eq!(cache.stats().open_files, FILES_PER_SEGMENT);
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        let (log, done, all) = (&log, &done, &all);
        let reader = s.spawn(move || {
            let mut reads = 0;
            while !done.load(Ordering::Acquire) {
                let start = log.first_index();
                match log.read(start, start + 30, usize::MAX) {
                    Ok(got) => {
                        assert!(!got.is_empty(), "read from {start}");
                        assert!(
                            got.iter()
                                .zip(start..)
                                .all(|(e, i)| e.index == i && e.payload == all[i as usize - 1].payload)
                        );
                    }
                    Err(StorageError::Purged { .. }) => {}
                    Err(e) => panic!("read from {start}: {e}"),
                }
                reads += 1;
            }
            reads
        });
        let stop = SetOnDrop(done);
        for upto in (20..=1_200).step_by(20) {
            log.purge_to(EntryId::new(upto, 1)).expect("purge");
        }
        drop(stop);
        assert!(reader.join().expect("reader panicked") > 0);
    });
    let (fds, maps) = open_files_under(dir.path());
    let listed: BTreeSet<PathBuf> = fs::read_dir(dir.path()).unwrap().map(|i| i.unwrap().path()).collect();
    let listed: BTreeSet<PathBuf> = listed.iter().map(|p| fs::canonicalize(p).unwrap()).collect();
    assert!(fds.iter().chain(&maps).all(|p| listed.contains(p)), "a deleted file is still open: {fds:?} {maps:?}");
    assert!(cache.stats().open_files <= TWO_SEGMENTS);
    assert_holds(&log, &all[1_200..]);
}

/// Checks that a log with 200 sealed segments holds at most the cache's bound plus its active
/// segment and LOCK file open — after writing, after reopening, and after reading everything —
/// by the cache's count and by the kernel's.
#[test]
fn given_200_sealed_segments_the_log_should_hold_at_most_the_cache_bound_open() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(SegmentCache::new(4 * FILES_PER_SEGMENT));
    let config = LogConfig { max_segment_bytes: 8 * 1024, ..small_config() };
    let log = open_cached(dir.path(), &config, &cache);
    let all: Vec<Entry> = (1..=1_600).map(|i| entry(i, 1, 1_000)).collect();
    append_in_batches(&log, &all, 8);
    log.sync().expect("sync");
    assert!(log.segment_count() > 200, "{} segments", log.segment_count());
    let bound = cache.stats().max_open_files + FILES_PER_SEGMENT + 1;
    let check = |when: &str| {
        let stats = cache.stats();
        assert!(stats.open_files <= stats.max_open_files, "{when}: {stats:?}");
        let (fds, maps) = open_files_under(dir.path());
        assert!(fds.len() + maps.len() <= bound, "{when}: {} fds, {} maps: {fds:?} {maps:?}", fds.len(), maps.len());
        fds.len() + maps.len()
    };
    check("after writing");
    drop(log);
    let log = open_cached(dir.path(), &config, &cache);
    assert_eq!(check("after reopening"), FILES_PER_SEGMENT + 1, "only the active segment and LOCK");
    assert_holds(&log, &all);
    check("after reading everything");
    cache.clear();
    assert_eq!(check("after clearing the cache"), FILES_PER_SEGMENT + 1);
}

/// Checks that truncating back into a cold sealed segment reopens it for appending: the entries
/// before the cut remain, new ones follow, and both survive a reopen.
#[test]
fn given_a_cold_sealed_segment_when_truncated_into_should_take_appends_again() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(SegmentCache::new(0));
    let (log, all) = sealed_log(dir.path(), 600, &cache);
    log.truncate_from(250).expect("truncate into a cold segment");
    let new: Vec<Entry> = (250..400).map(|i| entry(i, 2, 300)).collect();
    log.append(&new).expect("append after truncating");
    let expected: Vec<Entry> = all[..249].iter().chain(&new).cloned().collect();
    assert_holds(&log, &expected);
    log.sync().expect("sync");
    drop(log);
    assert_holds(&open_cached(dir.path(), &small_config(), &cache), &expected);
}
