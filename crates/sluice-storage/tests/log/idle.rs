//! A log's `.log` descriptors closed while idle: an idle log holds none (counted in
//! `/proc/self/fd`), then appends, reads and recovers as before; a busy log never reopens its
//! file; a file with writes not yet fsynced stays open; and appends, reads and flusher syncs
//! racing the closer lose nothing acknowledged.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use sluice_storage::{Entry, Flusher, LockMode, Log, LogConfig, SegmentCache};

use super::support::{SetOnDrop, append_in_batches, assert_holds, copy_dir, entries, open, small_config};

/// How long a file may go unused before the closer in these tests closes it.
const IDLE: Duration = Duration::from_millis(50);
/// How long a test waits for the closer before it calls a file stuck open.
const PATIENCE: Duration = Duration::from_secs(10);

fn idle_cache() -> Arc<SegmentCache> {
    Arc::new(SegmentCache::with_idle_close(1024, Some(IDLE)))
}

/// [`small_config`] without a `LOCK` descriptor, as a broker opens its logs.
fn held_config() -> LogConfig {
    LogConfig { lock: LockMode::Held, ..small_config() }
}

fn open_idle(dir: &Path, config: &LogConfig, cache: &Arc<SegmentCache>) -> Log {
    Log::open_with(dir, config.clone(), Arc::clone(cache)).unwrap_or_else(|e| panic!("opening {}: {e}", dir.display()))
}

/// Descriptors this process holds on files under `dir`, from `/proc/self/fd`.
fn descriptors_under(dir: &Path) -> Vec<PathBuf> {
    let dir = fs::canonicalize(dir).expect("canonical dir");
    fs::read_dir("/proc/self/fd")
        .expect("list /proc/self/fd")
        .filter_map(|item| fs::read_link(item.ok()?.path()).ok())
        .filter(|p| p.starts_with(&dir))
        .collect()
}

/// Waits until the process holds `want` descriptors under `dir`; panics after [`PATIENCE`].
fn wait_for_descriptors(dir: &Path, want: usize) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let held = descriptors_under(dir);
        if held.len() == want {
            return;
        }
        assert!(Instant::now() < deadline, "still open after {PATIENCE:?}, want {want}: {held:?}");
        thread::sleep(IDLE / 5);
    }
}

/// Checks that a synced log left idle closes every descriptor, and that it then appends, reads
/// and syncs through reopened files; a copy of its directory taken as a crash would leave it
/// (after the last sync) recovers every synced entry.
#[test]
fn given_a_log_idle_past_the_threshold_it_holds_no_descriptor_and_then_works_as_before() {
    let (dir, crashed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cache = idle_cache();
    let log = open_idle(dir.path(), &held_config(), &cache);
    let mut all = entries(1..300, 1);
    append_in_batches(&log, &all, 20);
    log.sync().expect("sync");
    assert!(log.segment_count() > 3, "needs sealed segments too, got {}", log.segment_count());
    assert!(!dir.path().join("LOCK").exists(), "a held log takes no LOCK file");
    wait_for_descriptors(dir.path(), 0);
    assert!(cache.stats().idle_closed >= 1);

    let more = entries(300..400, 1);
    append_in_batches(&log, &more, 20);
    all.extend(more);
    assert!(cache.stats().idle_reopened >= 1, "the append reopened the active segment's file");
    assert_holds(&log, &all);
    assert_eq!(log.sync().expect("sync after reopening"), Some(399));
    copy_dir(dir.path(), crashed.path());
    assert_holds(&open(crashed.path(), &small_config()), &all);
    wait_for_descriptors(dir.path(), 0);
    drop(log);
}

/// Checks that a log with a `LOCK` of its own keeps that one descriptor while idle, and nothing
/// else.
#[test]
fn given_a_log_with_its_own_lock_when_idle_it_holds_the_lock_alone() {
    let dir = tempfile::tempdir().unwrap();
    let cache = idle_cache();
    let log = open_idle(dir.path(), &small_config(), &cache);
    append_in_batches(&log, &entries(1..50, 1), 10);
    log.sync().expect("sync");
    wait_for_descriptors(dir.path(), 1);
    assert_eq!(descriptors_under(dir.path()), vec![fs::canonicalize(dir.path().join("LOCK")).unwrap()]);
}

/// Checks that a file holding appends not yet fsynced is never closed, however long it sits
/// unused, and closes once a sync made them durable.
#[test]
fn given_appends_not_yet_synced_the_file_stays_open_until_a_sync() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(SegmentCache::with_idle_close(1024, None)); // swept by hand only
    let log = open_idle(dir.path(), &held_config(), &cache);
    log.sync().expect("sync the new log");
    log.append(&entries(1..5, 1)).expect("append");
    for _ in 0..5 {
        cache.close_idle();
    }
    assert_eq!(descriptors_under(dir.path()).len(), 1, "unsynced appends keep the file open");
    log.sync().expect("sync");
    assert_eq!(cache.close_idle(), 0, "the sync was a use: one more sweep first");
    assert_eq!(cache.close_idle(), 1);
    assert!(descriptors_under(dir.path()).is_empty());
    assert_eq!(log.sync().expect("a sync with nothing to do"), Some(4));
    assert!(descriptors_under(dir.path()).is_empty(), "nothing to sync opens nothing");
}

/// Checks that a log written more often than the idle time never has its file closed and
/// reopened: the busy path pays no reopen.
#[test]
fn given_a_busy_log_its_appends_never_reopen_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // Longer than elsewhere, so that a loaded machine's late wake-ups stay well inside it.
    let idle = Duration::from_millis(200);
    let cache = Arc::new(SegmentCache::with_idle_close(1024, Some(idle)));
    let config = LogConfig { max_segment_bytes: 64 << 20, ..held_config() };
    let log = open_idle(dir.path(), &config, &cache);
    let start = Instant::now();
    let mut next = 1;
    while start.elapsed() < 5 * idle {
        log.append(&entries(next..next + 10, 1)).expect("append");
        next += 10;
        log.sync().expect("sync");
        thread::sleep(Duration::from_millis(2));
    }
    let stats = cache.stats();
    assert_eq!((stats.idle_closed, stats.idle_reopened), (0, 0), "{stats:?}");
    wait_for_descriptors(dir.path(), 0);
    log.append(&entries(next..next + 1, 1)).expect("append after idling");
    assert_eq!(cache.stats().idle_reopened, 1);
}

/// Entries the racing writer appends.
const RACE_ENTRIES: u64 = 3_000;

/// Checks that appends, reads and group-commit syncs racing a closer that sweeps without pause
/// lose nothing: every read returns correct entries, every sync the flusher acknowledged
/// survives a crash-style reopen, and files were really closed and reopened meanwhile.
#[test]
fn given_appends_reads_and_syncs_racing_the_idle_closer_nothing_acknowledged_is_lost() {
    let (dir, crashed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cache = Arc::new(SegmentCache::with_idle_close(4 * 4, Some(Duration::from_millis(1))));
    let log = Arc::new(open_idle(dir.path(), &held_config(), &cache));
    let flusher = Flusher::start("idle-race", 2);
    let all = entries(1..RACE_ENTRIES + 1, 1);
    let (done, acked) = (AtomicBool::new(false), AtomicU64::new(0));
    thread::scope(|s| {
        s.spawn(|| sweep_until(&cache, &done));
        s.spawn(|| read_until(&log, &all, &done));
        let _stop = SetOnDrop(&done);
        for (i, batch) in all.chunks(7).enumerate() {
            log.append(batch).expect("append");
            if i % 3 == 0 {
                flusher.flush(&log).expect("flush");
                acked.store(batch.last().expect("batch").index, Ordering::Release);
            }
            if i % 50 == 0 {
                thread::sleep(Duration::from_millis(3)); // long enough for files to close
            }
        }
    });
    let acked = acked.load(Ordering::Acquire);
    copy_dir(dir.path(), crashed.path());
    let recovered = open(crashed.path(), &small_config());
    assert!(recovered.last_id().is_some_and(|l| l.index >= acked), "acked {acked}, got {:?}", recovered.last_id());
    assert_holds(&recovered, &all[..recovered.last_id().expect("entries").index as usize]);
    assert_holds(&log, &all);
    let stats = cache.stats();
    assert!(stats.idle_closed > 0 && stats.idle_reopened > 0, "the race never closed a file: {stats:?}");
}

fn sweep_until(cache: &SegmentCache, done: &AtomicBool) {
    while !done.load(Ordering::Acquire) {
        cache.close_idle();
        thread::yield_now();
    }
}

/// Reads ranges below the log's last entry until `done`, checking each against `all`.
fn read_until(log: &Log, all: &[Entry], done: &AtomicBool) {
    let mut at = 1u64;
    while !done.load(Ordering::Acquire) {
        let Some(last) = log.last_id() else { continue };
        at = if at >= last.index { 1 } else { at };
        let got = log.read(at, last.index + 1, 4_000).expect("read");
        assert!(!got.is_empty(), "nothing read at {at} of {}", last.index);
        for e in &got {
            assert_eq!(e, &all[e.index as usize - 1], "entry {}", e.index);
        }
        assert_eq!(got[0].index, at, "a read starts where asked");
        at = got.last().expect("entries").index + 1;
    }
}
