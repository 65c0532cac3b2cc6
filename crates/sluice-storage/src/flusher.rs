//! Group commit: one thread per data directory turns many logs' "make my appends durable"
//! requests into as few fsyncs as possible (docs/ARCHITECTURE.md, D3).
//!
//! A request means "every write this log accepted before now must be durable". The flusher
//! takes all requests queued while its previous round ran and fsyncs each distinct log once,
//! answering a log's requests as soon as its own fsync is done. So under load one fsync covers
//! every append queued before it, and a caller waits at most for the round in flight plus its
//! own log's place in the next one.
//!
//! A round fsyncs its logs one after another while that is quick, and shares the rest out to a
//! few long-lived helper threads once the round has taken [`SPREAD_AFTER`], or from its start
//! when the fsyncs of late say that it would (their moving average times the logs in the round).
//! Fsyncs of different files overlap in the device, which pays off when they are slow, but waking
//! threads costs more than a fast fsync (measured: 0.2 ms fsyncs, three logs a round, two shared
//! cores; handing every round out cut a 3-broker cluster's throughput by a third). With 4 ms
//! fsyncs, sharing out from the start instead of after the first fsync cut the p99 of a lightly
//! loaded 3-partition cluster from 15.3 to 8.8 ms (docs/BENCHMARKS.md, run G). Whichever thread
//! fsyncs a log answers its waiters.
//!
//! Logs under a relaxed [`FlushPolicy`](crate::FlushPolicy) do not wait: [`Flusher::sync_within`]
//! records a deadline instead, and the same thread fsyncs the log when the deadline comes (its
//! condition-variable wait is the timer: no thread or task per log). The deadline is set by the
//! first write after the log's last fsync and never pushed back by later ones, so under steady
//! writes the log is still fsynced once per interval.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Result, StorageError};
use crate::log::Log;

/// Called once the request's writes are durable, or with the error that stopped the log. It runs
/// on the flusher thread, so it must be quick (send on a channel, wake a task).
pub type FlushCallback = Box<dyn FnOnce(Result<()>) + Send>;

/// Told how long each log's fsync took, on the thread that ran it (so it must be quick): the
/// broker exports these as a histogram of the disk's latency.
pub type SyncObserver = Arc<dyn Fn(Duration) + Send + Sync>;

/// A round that has run this long shares its remaining fsyncs out to the helper threads.
pub const SPREAD_AFTER: Duration = Duration::from_millis(2);

/// A group-commit flusher shared by every log on one data directory.
pub struct Flusher {
    shared: Arc<Queue>,
    /// Tests set the fsync estimate through it.
    #[cfg(test)]
    syncer: Arc<Syncer>,
    thread: Option<JoinHandle<()>>,
}

struct Queue {
    state: Mutex<QueueState>,
    wake: Condvar,
}

#[derive(Default)]
struct QueueState {
    requests: Vec<(Arc<Log>, FlushCallback)>,
    /// Logs with writes to fsync by a deadline, by the address of their `Log` (stable while the
    /// `Weak` keeps the allocation). Weak, so a pending deadline never keeps a closed log open.
    deferred: HashMap<usize, (Weak<Log>, Instant)>,
    /// The earliest deadline in `deferred`: when the thread must wake up next.
    next_deadline: Option<Instant>,
    stopping: bool,
}

/// What one round fsyncs: logs with waiters, and logs whose deadline has come.
struct Round {
    requests: Vec<(Arc<Log>, FlushCallback)>,
    due: Vec<Arc<Log>>,
}

impl Flusher {
    /// Starts the flusher thread. `max_parallel_syncs` bounds how many logs are fsynced at once
    /// in a slow round (at least 1); the flusher keeps one helper thread for each beyond the first.
    pub fn start(name: &str, max_parallel_syncs: usize) -> Flusher {
        Flusher::start_observed(name, max_parallel_syncs, Arc::new(|_| {}))
    }

    /// Like [`Flusher::start`], and tells `observe` how long each fsync took.
    pub fn start_observed(name: &str, max_parallel_syncs: usize, observe: SyncObserver) -> Flusher {
        Flusher::start_spreading_after(name, max_parallel_syncs, SPREAD_AFTER, observe)
    }

    fn start_spreading_after(
        name: &str,
        max_parallel_syncs: usize,
        spread_after: Duration,
        observe: SyncObserver,
    ) -> Flusher {
        let shared = Arc::new(Queue { state: Mutex::new(QueueState::default()), wake: Condvar::new() });
        let queue = Arc::clone(&shared);
        let syncer = Arc::new(Syncer { observe, recent_us: AtomicU64::new(0) });
        let helpers = Helpers::start(name, max_parallel_syncs.max(1) - 1, spread_after, Arc::clone(&syncer));
        let thread = std::thread::Builder::new()
            .name(format!("flush-{name}"))
            .spawn(move || run(&queue, &helpers))
            .expect("spawning the flusher thread");
        Flusher {
            shared,
            #[cfg(test)]
            syncer,
            thread: Some(thread),
        }
    }

    /// Asks for everything `log` has accepted so far to be made durable; `done` is called when it
    /// is. After [`Flusher::stop`] the request fails at once.
    pub fn request(&self, log: &Arc<Log>, done: FlushCallback) {
        let mut q = self.shared.lock();
        if q.stopping {
            drop(q);
            done(Err(stopped(log)));
            return;
        }
        q.requests.push((Arc::clone(log), done));
        drop(q);
        self.shared.wake.notify_one();
    }

    /// Blocks until everything `log` has accepted so far is durable.
    pub fn flush(&self, log: &Arc<Log>) -> Result<()> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.request(log, Box::new(move |r| drop(tx.send(r))));
        rx.recv().expect("the flusher always completes a request")
    }

    /// Promises that everything `log` has accepted so far is fsynced within `within`, and returns
    /// at once. Cheap when a deadline is already pending for the log (the usual case under load):
    /// that earlier fsync covers these writes too. Nobody is told when the fsync has run; a
    /// failed one stops the log ([`StorageError::Failed`] from its next call). After
    /// [`Flusher::stop`] it fails at once.
    pub fn sync_within(&self, log: &Arc<Log>, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        let mut q = self.shared.lock();
        if q.stopping {
            return Err(stopped(log));
        }
        match q.deferred.entry(Arc::as_ptr(log) as usize) {
            Entry::Occupied(mut pending) if deadline < pending.get().1 => pending.get_mut().1 = deadline,
            Entry::Occupied(_) => return Ok(()),
            Entry::Vacant(slot) => {
                slot.insert((Arc::downgrade(log), deadline));
            }
        }
        if q.next_deadline.is_none_or(|next| deadline < next) {
            q.next_deadline = Some(deadline);
            drop(q);
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// Completes the queued requests, fsyncs every log with a pending deadline, and stops the
    /// thread.
    pub fn stop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            t.join().expect("flusher thread panicked");
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().expect("flusher lock poisoned")
    }
}

impl QueueState {
    /// Removes and returns the live logs whose deadline is at or before `now` (every one when
    /// `all`), and moves `next_deadline` to the earliest deadline left.
    fn take_due(&mut self, now: Instant, all: bool) -> Vec<Arc<Log>> {
        if !all && self.next_deadline.is_none_or(|next| next > now) {
            return Vec::new();
        }
        let mut due = Vec::new();
        self.deferred.retain(|_, (log, deadline)| {
            if !all && *deadline > now {
                return true;
            }
            // A log closed meanwhile needs nothing: its owner synced it or it was deleted.
            due.extend(log.upgrade());
            false
        });
        self.next_deadline = self.deferred.values().map(|(_, deadline)| *deadline).min();
        due
    }
}

fn run(queue: &Queue, helpers: &Helpers) {
    while let Some(next) = next_round(queue) {
        round(next, helpers);
    }
}

/// Waits until there are requests or a deadline has come; `None` once stopping with nothing
/// left to do.
fn next_round(queue: &Queue) -> Option<Round> {
    let mut q = queue.lock();
    loop {
        let now = Instant::now();
        let stopping = q.stopping;
        let due = q.take_due(now, stopping);
        if !q.requests.is_empty() || !due.is_empty() {
            return Some(Round { requests: std::mem::take(&mut q.requests), due });
        }
        if stopping {
            return None;
        }
        q = match q.next_deadline {
            Some(next) => {
                queue.wake.wait_timeout(q, next.saturating_duration_since(now)).expect("flusher lock poisoned").0
            }
            None => queue.wake.wait(q).expect("flusher lock poisoned"),
        };
    }
}

/// One group commit: fsync each distinct log once, answering its waiters as soon as it is done.
fn round(next: Round, helpers: &Helpers) {
    let started = Instant::now();
    let mut by_log: HashMap<*const Log, (Arc<Log>, Vec<FlushCallback>)> = HashMap::new();
    for (log, done) in next.requests {
        by_log.entry(Arc::as_ptr(&log)).or_insert_with(|| (log, Vec::new())).1.push(done);
    }
    for log in next.due {
        by_log.entry(Arc::as_ptr(&log)).or_insert_with(|| (log, Vec::new()));
    }
    let mut logs: Vec<LogWaiters> = by_log.into_values().collect();
    // Shared out from the start when the fsyncs of late are slow enough that doing them one
    // after another would take the round past `spread_after` anyway; else once it has.
    let predicted = helpers.syncer.recent().saturating_mul(logs.len() as u32);
    let mut spread = predicted >= helpers.spread_after;
    while !logs.is_empty() {
        spread |= started.elapsed() >= helpers.spread_after;
        if spread && logs.len() > 1 && helpers.count() > 0 {
            helpers.spread(logs);
            return;
        }
        // A partition's leader does not wait for the fsyncs of the partitions its broker follows.
        let (log, waiters) = logs.swap_remove(0);
        complete(&log, waiters, helpers.syncer.sync(&log));
    }
}

/// A log to fsync and the requests waiting for it.
type LogWaiters = (Arc<Log>, Vec<FlushCallback>);

/// Answers `waiters` with the outcome of `log`'s fsync.
fn complete(log: &Log, waiters: Vec<FlushCallback>, result: SyncResult) {
    for done in waiters {
        done(result.clone().map_err(|reason| StorageError::Failed { path: log.dir().to_owned(), reason }));
    }
}

/// An fsync's outcome: the reason it failed, to be wrapped for each waiter.
type SyncResult = std::result::Result<(), String>;

/// Runs fsyncs for the flusher thread and its helpers: reports each one's time and keeps a
/// moving average of them, from which a round predicts its own length.
struct Syncer {
    observe: SyncObserver,
    /// Exponentially weighted average of recent fsync times, in microseconds (weight 1/8).
    recent_us: AtomicU64,
}

impl Syncer {
    fn sync(&self, log: &Log) -> SyncResult {
        let started = Instant::now();
        let synced = log.sync();
        let took = started.elapsed();
        (self.observe)(took);
        let took_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        // Racy read-modify-write between threads: a lost update only skews an estimate.
        let recent = self.recent_us.load(Ordering::Relaxed);
        self.recent_us.store(recent - recent / 8 + took_us / 8, Ordering::Relaxed);
        synced.map(drop).map_err(|e| match e {
            // Wrapped in `Failed` again for each waiter: keep the reason, not the message around it.
            StorageError::Failed { reason, .. } => reason,
            other => other.to_string(),
        })
    }

    /// How long an fsync has taken of late.
    fn recent(&self) -> Duration {
        Duration::from_micros(self.recent_us.load(Ordering::Relaxed))
    }
}

/// Long-lived threads that fsync the logs a slow round hands them, and answer their waiters.
struct Helpers {
    spread_after: Duration,
    syncer: Arc<Syncer>,
    jobs: Option<mpsc::Sender<HelperJob>>,
    threads: Vec<JoinHandle<()>>,
}

/// Logs for one helper to fsync, and where to say that it has.
struct HelperJob {
    logs: Vec<LogWaiters>,
    done: mpsc::Sender<()>,
}

impl Helpers {
    fn start(name: &str, count: usize, spread_after: Duration, syncer: Arc<Syncer>) -> Helpers {
        let (jobs, queue) = mpsc::channel::<HelperJob>();
        let queue = Arc::new(Mutex::new(queue));
        let threads = (0..count)
            .map(|i| {
                let (queue, syncer) = (Arc::clone(&queue), Arc::clone(&syncer));
                std::thread::Builder::new()
                    .name(format!("flush-{name}-{}", i + 1))
                    .spawn(move || help(&queue, &syncer))
                    .expect("spawning a flusher helper thread")
            })
            .collect();
        Helpers { spread_after, syncer, jobs: Some(jobs), threads }
    }

    fn count(&self) -> usize {
        self.threads.len()
    }

    /// Fsyncs `logs` on this thread and the helpers at once, each answering its own logs'
    /// waiters; returns once all are done, so that a log is never fsynced by two rounds at once.
    fn spread(&self, mut logs: Vec<LogWaiters>) {
        let parts = logs.len().min(self.count() + 1);
        let chunk = logs.len().div_ceil(parts);
        let (done, finished) = mpsc::channel();
        let jobs = self.jobs.as_ref().expect("helpers run until the flusher thread ends");
        let mut handed = 0;
        while logs.len() > chunk {
            let job = HelperJob { logs: logs.split_off(logs.len() - chunk), done: done.clone() };
            jobs.send(job).expect("flusher helpers stopped early");
            handed += 1;
        }
        for (log, waiters) in logs {
            complete(&log, waiters, self.syncer.sync(&log));
        }
        for _ in 0..handed {
            finished.recv().expect("a flusher helper thread panicked");
        }
    }
}

impl Drop for Helpers {
    fn drop(&mut self) {
        drop(self.jobs.take());
        for t in self.threads.drain(..) {
            t.join().expect("flusher helper thread panicked");
        }
    }
}

fn help(queue: &Mutex<mpsc::Receiver<HelperJob>>, syncer: &Syncer) {
    loop {
        let job = queue.lock().expect("helper queue lock poisoned").recv();
        let Ok(job) = job else { return };
        for (log, waiters) in job.logs {
            complete(&log, waiters, syncer.sync(&log));
        }
        // The round waits for every part it handed out, so its receiver is still there.
        let _ = job.done.send(());
    }
}

fn stopped(log: &Log) -> StorageError {
    StorageError::Failed { path: log.dir().to_owned(), reason: "the flusher has stopped".into() }
}

#[cfg(test)]
mod tests {
    //! The relaxed path: writes are durable within the interval, not before it, and not later
    //! under steady writes; a stop fsyncs what is pending. Timings are generous (the machine may
    //! be busy), and every wait is bounded.

    use std::thread::sleep;

    use super::*;
    use crate::{Entry, LogConfig};

    const INTERVAL: Duration = Duration::from_millis(300);
    /// How late a due fsync may run on a busy machine before a test calls it missing.
    const SLACK: Duration = Duration::from_millis(700);

    fn open() -> (tempfile::TempDir, Arc<Log>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = Arc::new(Log::open(dir.path(), LogConfig::default()).expect("open log"));
        (dir, log)
    }

    fn append(log: &Log, index: u64) {
        log.append(&[Entry::new(index, 1, vec![7u8; 100])]).expect("append");
    }

    /// Polls (bounded by `limit`) until `log` has `index` durable; how long that took.
    fn wait_synced(log: &Log, index: u64, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if log.synced_index() >= Some(index) {
                return Some(start.elapsed());
            }
            sleep(Duration::from_millis(2));
        }
        None
    }

    #[test]
    fn given_a_slow_round_its_logs_are_shared_out_and_every_waiter_is_answered() {
        let logs: Vec<_> = (0..7).map(|_| open()).collect();
        // Spreading at once sends every round with more than one log through the helpers.
        let mut flusher = Flusher::start_spreading_after("test", 3, Duration::ZERO, Arc::new(|_| {}));
        let (tx, rx) = mpsc::channel();
        for (i, (_, log)) in logs.iter().enumerate() {
            append(log, 1);
            let tx = tx.clone();
            flusher.request(log, Box::new(move |r| tx.send((i, r)).expect("test receiver")));
        }
        let mut answered: Vec<usize> = (0..logs.len())
            .map(|_| {
                let (i, result) = rx.recv_timeout(INTERVAL + SLACK).expect("a request was never answered");
                result.expect("fsync");
                assert_eq!(logs[i].1.synced_index(), Some(1), "log {i} answered before it was durable");
                i
            })
            .collect();
        answered.sort_unstable();
        assert_eq!(answered, (0..logs.len()).collect::<Vec<_>>());
        flusher.stop();
    }

    /// Records on which thread each fsync ran, and holds the first one until released: the
    /// requests a test queues meanwhile then make the next round together.
    struct Gate {
        events: Arc<Mutex<Vec<String>>>,
        release: mpsc::Sender<()>,
    }

    impl Gate {
        fn new() -> (Gate, SyncObserver) {
            let events = Arc::new(Mutex::new(Vec::new()));
            let (release, gate) = mpsc::channel::<()>();
            let gate = Mutex::new(Some(gate));
            let recorded = Arc::clone(&events);
            let observe: SyncObserver = Arc::new(move |_| {
                let thread = std::thread::current().name().unwrap_or("?").to_owned();
                recorded.lock().unwrap().push(thread);
                if let Some(gate) = gate.lock().unwrap().take() {
                    gate.recv_timeout(INTERVAL + SLACK).expect("the test releases the first round");
                }
            });
            (Gate { events, release }, observe)
        }

        /// Requests an fsync of `first` and returns once the flusher is held inside it.
        fn hold(&self, flusher: &Flusher, first: &Arc<Log>) {
            append(first, 1);
            flusher.request(first, Box::new(|r| r.expect("fsync")));
            let start = Instant::now();
            while self.events.lock().unwrap().is_empty() {
                assert!(start.elapsed() < INTERVAL + SLACK, "the first round never fsynced");
                sleep(Duration::from_millis(1));
            }
        }

        /// Requests an fsync of each of `logs` (recording each answer), releases the first
        /// round, and waits for every answer.
        fn run_next_round(&self, flusher: &Flusher, logs: &[(tempfile::TempDir, Arc<Log>)]) {
            let (tx, rx) = mpsc::channel();
            for (_, log) in logs {
                append(log, 1);
                let (events, tx) = (Arc::clone(&self.events), tx.clone());
                let answer = move |r| {
                    events.lock().unwrap().push("answer".to_owned());
                    tx.send(r).expect("test receiver");
                };
                flusher.request(log, Box::new(answer));
            }
            self.release.send(()).expect("the first round waits");
            for _ in logs {
                rx.recv_timeout(INTERVAL + SLACK).expect("a request was never answered").expect("fsync");
            }
        }
    }

    #[test]
    fn given_a_round_of_several_logs_each_is_answered_once_its_own_fsync_is_done() {
        let logs: Vec<_> = (0..3).map(|_| open()).collect();
        let (gate, observe) = Gate::new();
        let flusher = Flusher::start_spreading_after("test", 1, SPREAD_AFTER, observe);
        gate.hold(&flusher, &logs[0].1);
        gate.run_next_round(&flusher, &logs[1..]);
        let events = gate.events.lock().unwrap().clone();
        assert_eq!(events, ["flush-test", "flush-test", "answer", "flush-test", "answer"]);
    }

    #[test]
    fn given_slow_fsyncs_of_late_a_round_shares_its_logs_out_from_the_start() {
        let logs: Vec<_> = (0..5).map(|_| open()).collect();
        let (gate, observe) = Gate::new();
        // A round never runs for an hour, so only the prediction from past fsyncs can spread it.
        let flusher = Flusher::start_spreading_after("test", 4, Duration::from_secs(3600), observe);
        flusher.syncer.recent_us.store(3_600_000_000, Ordering::Relaxed);
        gate.hold(&flusher, &logs[0].1);
        gate.run_next_round(&flusher, &logs[1..]);
        let events = gate.events.lock().unwrap().clone();
        let on_flusher = events.iter().filter(|e| *e == "flush-test").count();
        let on_helpers = events.iter().filter(|e| e.starts_with("flush-test-")).count();
        assert_eq!((on_flusher, on_helpers), (2, 3), "the held round, then one log each: {events:?}");
    }

    #[test]
    fn given_a_deadline_the_write_is_fsynced_when_it_comes_and_not_before() {
        let (_dir, log) = open();
        let flusher = Flusher::start("test", 1);
        append(&log, 1);
        flusher.sync_within(&log, INTERVAL).expect("sync_within");
        assert_eq!(log.synced_index(), None, "sync_within must not wait for an fsync");
        let took = wait_synced(&log, 1, INTERVAL + SLACK).expect("no fsync within the interval");
        assert!(took + Duration::from_millis(20) >= INTERVAL, "fsynced after {took:?}, before the deadline");
    }

    #[test]
    fn given_steady_writes_the_deadline_is_not_pushed_back() {
        let (_dir, log) = open();
        let flusher = Flusher::start("test", 1);
        let interval = Duration::from_millis(100);
        let start = Instant::now();
        let mut written: Vec<(u64, Instant)> = Vec::new();
        for index in 1..=25 {
            append(&log, index);
            flusher.sync_within(&log, interval).expect("sync_within");
            written.push((index, Instant::now()));
            sleep(Duration::from_millis(40));
            // Every write older than the interval (plus slack) must be durable by now.
            let old = written.iter().rev().find(|(_, at)| at.elapsed() > interval + SLACK);
            if let Some(&(old, _)) = old {
                assert!(log.synced_index() >= Some(old), "entry {old} not fsynced after {:?}", start.elapsed());
            }
        }
        assert!(log.synced_index() >= Some(10), "steady writes were never fsynced");
    }

    #[test]
    fn given_pending_deadlines_stop_fsyncs_them_and_later_calls_fail() {
        let (_dir, log) = open();
        let mut flusher = Flusher::start("test", 2);
        append(&log, 1);
        flusher.sync_within(&log, Duration::from_secs(3600)).expect("sync_within");
        assert_eq!(Arc::strong_count(&log), 1, "a pending deadline must not keep the log open");
        flusher.stop();
        assert_eq!(log.synced_index(), Some(1), "stop left a pending write unsynced");
        let err = flusher.sync_within(&log, INTERVAL).expect_err("after stop");
        assert!(err.to_string().contains("flusher has stopped"), "{err}");
    }

    #[test]
    fn given_a_closed_log_its_deadline_is_dropped_and_others_still_run() {
        let (_dir_a, closed) = open();
        let (_dir_b, open_log) = open();
        let flusher = Flusher::start("test", 1);
        append(&closed, 1);
        append(&open_log, 1);
        flusher.sync_within(&closed, Duration::from_millis(50)).expect("sync_within");
        flusher.sync_within(&open_log, Duration::from_millis(80)).expect("sync_within");
        drop(closed);
        assert!(wait_synced(&open_log, 1, INTERVAL + SLACK).is_some(), "the live log was not fsynced");
    }
}
