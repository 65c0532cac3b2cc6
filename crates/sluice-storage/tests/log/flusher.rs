//! Group commit: many logs sharing one `Flusher`, appended to and flushed from several threads;
//! requests after `stop()`; and what `Log::sync` reports.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use sluice_storage::{EntryId, Flusher, Log, StorageError};

use super::support::{SetOnDrop, assert_holds, entries, entry, open, small_config};

const LOGS: usize = 8;
const THREADS: u64 = 4;
const ROUNDS: u64 = 40;

/// A log shared by the appender threads, with the next index to append (appends to one log must
/// be contiguous, so a thread holds the lock while it appends, but not while it flushes).
struct Shared {
    log: Arc<Log>,
    next: Mutex<u64>,
}

/// Appends a batch to a log chosen per round, then waits for the flusher to make it durable.
fn append_and_flush(flusher: &Flusher, logs: &[Shared], thread: u64) {
    for round in 0..ROUNDS {
        let shared = &logs[((thread * 3 + round) % LOGS as u64) as usize];
        let last = {
            let mut next = shared.next.lock().expect("next-index lock");
            let batch = entries(*next..*next + 1 + round % 5, 1);
            shared.log.append(&batch).expect("append");
            *next += batch.len() as u64;
            *next - 1
        };
        flusher.flush(&shared.log).unwrap_or_else(|e| panic!("flush {}: {e}", shared.log.dir().display()));
        let synced = shared.log.synced_index();
        assert!(synced >= Some(last), "flush returned with {synced:?} durable, before {last}");
    }
}

/// Checks that appenders on several threads flushing eight logs through one flusher all succeed,
/// that each log ends fully durable, and that the data reads back after reopening.
#[test]
fn given_many_logs_and_threads_flush_should_make_every_append_durable() {
    let dirs: Vec<_> = (0..LOGS).map(|_| tempfile::tempdir().expect("temp dir")).collect();
    let config = small_config();
    let logs: Vec<Shared> =
        dirs.iter().map(|d| Shared { log: Arc::new(open(d.path(), &config)), next: Mutex::new(1) }).collect();
    let mut flusher = Flusher::start("test", 3);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (flusher, logs) = (&flusher, &logs);
            s.spawn(move || append_and_flush(flusher, logs, t));
        }
    });
    for shared in &logs {
        let last = shared.log.last_id().map(|l| l.index);
        assert_eq!(last, Some(*shared.next.lock().expect("lock") - 1));
        assert_eq!(shared.log.synced_index(), last, "{}", shared.log.dir().display());
        assert_eq!(shared.log.sync().expect("sync"), last);
    }
    flusher.stop();
    for (shared, dir) in logs.into_iter().zip(&dirs) {
        let last = shared.log.last_id().expect("appended").index;
        drop(shared);
        assert_holds(&open(dir.path(), &config), &entries(1..last + 1, 1));
    }
}

/// Checks that after `stop()` a flush fails at once with an error naming the log and saying the
/// flusher has stopped, for both `flush` and `request`.
#[test]
fn given_a_stopped_flusher_requests_should_fail_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = Arc::new(open(dir.path(), &small_config()));
    log.append(&entries(1..4, 1)).expect("append");
    let mut flusher = Flusher::start("stopping", 1);
    flusher.flush(&log).expect("flush while running");
    flusher.stop();
    flusher.stop();
    let err = flusher.flush(&log).expect_err("flush after stop");
    assert!(matches!(&err, StorageError::Failed { path, reason } if path == dir.path() && reason.contains("stopped")));
    let msg = err.to_string();
    assert!(msg.contains("flusher has stopped") && msg.contains(&dir.path().display().to_string()), "{msg}");
    let (tx, rx) = mpsc::channel();
    flusher.request(&log, Box::new(move |r| tx.send(r).expect("send")));
    assert!(matches!(rx.try_recv().expect("called at once"), Err(StorageError::Failed { .. })));
    assert_eq!(log.sync().expect("the log itself still syncs"), Some(3));
}

/// Checks that `Log::sync` returns the last durable index: none for an empty log, the last entry
/// after appends and truncation, the purge point once everything is purged.
#[test]
fn given_appends_truncation_and_purge_sync_should_return_the_last_index() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path(), &small_config());
    assert_eq!((log.sync().expect("sync"), log.synced_index()), (None, None));
    log.append(&entries(1..101, 1)).expect("append");
    assert_eq!(log.synced_index(), None, "an append alone is not durable");
    assert_eq!((log.sync().expect("sync"), log.synced_index()), (Some(100), Some(100)));
    log.truncate_from(60).expect("truncate");
    assert_eq!(log.synced_index(), Some(59), "truncation lowers what is durable");
    log.append(&[entry(60, 2, 10)]).expect("append");
    assert_eq!(log.sync().expect("sync"), Some(60));
    log.purge_to(EntryId::new(200, 3)).expect("purge beyond the end");
    assert_eq!((log.sync().expect("sync"), log.synced_index()), (Some(200), Some(200)));
}

/// Syncs `log` in a loop until `done` is set (bounded: a fast sync takes about a microsecond).
fn sync_until_done(log: &Log, done: &AtomicBool) {
    for _ in 0..50_000_000 {
        if done.load(Ordering::Acquire) {
            return;
        }
        log.sync().expect("sync");
    }
}

/// Checks that a sync racing a truncation never leaves `synced_index` above the log's end: a
/// sync that read the end before the truncation must not publish it after (the entries now at
/// those indexes were never fsynced).
#[test]
fn given_syncs_racing_truncations_synced_index_should_never_pass_the_last_entry() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path(), &small_config());
    log.append(&entries(1..60, 1)).expect("append");
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        let (log, done) = (&log, &done);
        s.spawn(move || sync_until_done(log, done));
        let _stop_syncer = SetOnDrop(done);
        for round in 0..200u64 {
            log.append(&(60..100).map(|i| entry(i, round + 2, 50)).collect::<Vec<_>>()).expect("append");
            for _ in 0..round % 50 {
                thread::yield_now(); // vary how far the syncer gets before the truncation
            }
            log.truncate_from(60).expect("truncate");
            // Syncs are serialized, so once this one returns, any sync that began before the
            // truncation has finished too.
            log.sync().expect("sync");
            assert_eq!(log.synced_index(), Some(59), "round {round}: synced_index passed the last entry");
        }
    });
}
