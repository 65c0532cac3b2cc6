//! The delay workload (`run --workload delay`; docs/DELAYS.md): delayed messages sent with
//! unique values, some cancelled, every one read back when released, all recorded for the
//! checker's delay checks (`crate::checker`, `delays.rs`).
//!
//! - **Producers** (process ids `0..producers`, `send.rs`): idempotent producers sending unique
//!   values `"{process}-{n}"`, each also its key (which spreads them over the partitions), at a
//!   bounded rate, each due `uniform(0..=max_delay_ms)` ms after it is sent by the runner's
//!   clock. A send is recorded at invoke (`delay_send` with its value and `deliver_at_ms`) and
//!   when its delivery resolves: `ok` with its delayed id, `fail` or `info` as in the log
//!   workload (`outcome.rs`).
//! - **The canceller** (process `producers`, `cancel.rs`): picks `cancel_percent` % of the
//!   acknowledged messages not yet due and cancels each at a random time between its
//!   acknowledgement and shortly after it is due, so that some cancels race the release;
//!   recorded as `cancel`, `ok` with the answer (`Cancelled`, `AlreadyDelivered`) or `info`.
//! - **Consumers** (the next `readers` process ids, `consume.rs`): plain consumers assigned every
//!   partition from the earliest offset, recording every poll (`delay_poll`) with the runner's
//!   wall-clock time it returned and each record's place, value and `sluice.deliver_at`.
//!
//! The producers and the canceller stop at the end of the run. The consumers read on while the
//! runner heals the cluster, until [`drain`] stops them: once every message the workload
//! expects (acknowledged, not cancelled, not possibly cancelled) has arrived and everything
//! sent is due, or once the grace has passed since the latest acknowledged delivery time plus
//! the clock skew allowed (and since the drain began). The runner records the parameters
//! first (`DelaySetup`) and the consumers' end last (`DelayEnd`).

mod cancel;
mod consume;
mod send;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::{
    History, PROBE_PROCESS, RUNNER_PROCESS, SharedRecorder, Task, Workload, WorkloadError, millis, stop_tasks,
};
use crate::history::{Kind, Op};

/// The latest delivery time a send may ask for, from now: far below the brokers' limit.
pub const MAX_DELAY_MS: u64 = 3_600_000;

/// Once every expected message has arrived, the consumers read on this long after the latest
/// delivery time of any send, so that a second release of a message would be seen.
const SETTLE: Duration = Duration::from_secs(3);

/// How often the drain looks at what has arrived.
const DRAIN_CHECK: Duration = Duration::from_millis(100);

/// How often the drain says what it still waits for.
const DRAIN_REPORT: Duration = Duration::from_secs(5);

/// The delay workload's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelayConfig {
    /// Delivery times are drawn uniformly from `now + 0..=max_delay_ms`, at most
    /// [`MAX_DELAY_MS`].
    pub max_delay_ms: u64,
    /// The share of acknowledged messages not yet due that are cancelled, in percent (0–100).
    pub cancel_percent: u32,
    /// How long the consumers read on past the latest acknowledged delivery time (plus
    /// `max_clock_skew`), and past the start of the drain, before messages still missing are
    /// given up as lost.
    pub grace: Duration,
    /// How far a broker's wall clock may be from the runner's: the clock fault's bound when
    /// the schedule has it (`crate::schedule::max_clock_skew`), set by the runner. A message
    /// may be released this much early or, after a leader whose clock ran ahead, late.
    pub max_clock_skew: Duration,
    /// Seeds the delivery times and the canceller's choices.
    pub seed: u64,
}

impl Default for DelayConfig {
    fn default() -> DelayConfig {
        DelayConfig {
            max_delay_ms: 5_000,
            cancel_percent: 20,
            grace: Duration::from_secs(30),
            max_clock_skew: Duration::ZERO,
            seed: 0,
        }
    }
}

impl DelayConfig {
    /// Checks the settings, with the workload's producer and reader counts.
    pub(super) fn validate(&self, producers: u32, readers: u32) -> Result<(), WorkloadError> {
        let bad = |message: String| Err(WorkloadError::Config(message));
        if producers == 0 || readers == 0 {
            return bad(format!(
                "the delay workload needs at least one producer and one reader, not {producers} and {readers}"
            ));
        }
        if u64::from(producers) + 1 + u64::from(readers) >= u64::from(PROBE_PROCESS) {
            return bad(format!("producers + 1 + readers must be below {PROBE_PROCESS}"));
        }
        if self.cancel_percent > 100 {
            return bad(format!("cancel_percent must be 0 to 100, not {}", self.cancel_percent));
        }
        if self.max_delay_ms > MAX_DELAY_MS {
            return bad(format!("max_delay_ms must be at most {MAX_DELAY_MS}, not {}", self.max_delay_ms));
        }
        Ok(())
    }

    /// The parameters as the history records them.
    fn setup(&self) -> Op {
        Op::DelaySetup {
            max_clock_skew_ms: millis(self.max_clock_skew),
            grace_ms: millis(self.grace),
            max_delay_ms: self.max_delay_ms,
            cancel_percent: self.cancel_percent,
        }
    }
}

/// What the delay workload keeps between [`start`] and [`drain`].
#[derive(Debug, Default)]
pub(super) struct Delays {
    tracker: Arc<Mutex<Tracker>>,
    /// Tells the consumers to stop.
    stop: Arc<AtomicBool>,
    consumers: Mutex<Vec<Task>>,
}

/// What the processes have seen so far: what the drain waits for.
#[derive(Debug, Default)]
struct Tracker {
    /// Acknowledged messages, by value, with their delivery times, less those a cancel may
    /// have taken (answered `Cancelled`, or ended unknown).
    expected: HashMap<String, u64>,
    /// Every value received.
    received: HashSet<String>,
    /// The latest delivery time of any send invoked.
    latest_due_ms: u64,
    /// The latest delivery time of an acknowledged send.
    latest_acked_due_ms: u64,
}

impl Tracker {
    fn invoked(&mut self, due_ms: u64) {
        self.latest_due_ms = self.latest_due_ms.max(due_ms);
    }

    fn acked(&mut self, value: &str, due_ms: u64) {
        self.expected.insert(value.to_owned(), due_ms);
        self.latest_acked_due_ms = self.latest_acked_due_ms.max(due_ms);
    }

    /// A cancel of `value` answered `Cancelled`, or may have taken effect.
    fn not_expected(&mut self, value: &str) {
        self.expected.remove(value);
    }

    fn received<'a>(&mut self, values: impl IntoIterator<Item = &'a str>) {
        self.received.extend(values.into_iter().map(str::to_owned));
    }

    /// How many expected messages have not arrived.
    fn missing(&self) -> u64 {
        self.expected.keys().filter(|v| !self.received.contains(*v)).count() as u64
    }
}

/// The tracker, even if a process panicked holding it.
fn lock(tracker: &Mutex<Tracker>) -> MutexGuard<'_, Tracker> {
    tracker.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The runner's wall clock, in ms since the Unix epoch: what delivery times and receipts are
/// given in.
fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The monotonic instant at wall-clock time `at_ms` (now, if it has passed).
fn instant_at(at_ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(at_ms.saturating_sub(now_ms()))
}

/// Records the parameters and starts every process: returns the producers' and the
/// canceller's tasks (done shortly after `until`); the consumers' are kept for [`drain`].
pub(super) fn start(
    workload: &Workload,
    recorder: &SharedRecorder,
    until: Instant,
) -> Result<Vec<Task>, WorkloadError> {
    let config = &workload.config;
    let runner = History { recorder: Arc::clone(recorder), process: RUNNER_PROCESS };
    runner.record(Kind::Ok, config.delay.setup())?;
    let delays = &workload.delay;
    let (acked_tx, acked_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut acked_rx = Some(acked_rx);
    let (mut tasks, mut consumers) = (Vec::new(), Vec::new());
    for (process, client) in (0u32..).zip(&workload.clients) {
        let history = History { recorder: Arc::clone(recorder), process };
        let (client, config, tracker) = (client.clone(), Arc::clone(config), Arc::clone(&delays.tracker));
        if process < config.producers {
            tasks.push(tokio::spawn(send::run(client, history, config, until, tracker, acked_tx.clone())));
        } else if let Some(acked) = acked_rx.take() {
            tasks.push(tokio::spawn(cancel::run(client, history, config, until, tracker, acked)));
        } else {
            consumers.push(tokio::spawn(consume::run(client, history, config, tracker, Arc::clone(&delays.stop))));
        }
    }
    *delays.consumers.lock().unwrap_or_else(PoisonError::into_inner) = consumers;
    Ok(tasks)
}

/// Lets the consumers read until everything expected has arrived (and everything sent is due,
/// and [`SETTLE`] more), or until the grace has passed; then stops them and records
/// `DelayEnd`. Fails if the history could not be written.
pub(super) async fn drain(workload: &Workload, history: &History) -> Result<(), WorkloadError> {
    let delays = &workload.delay;
    let config = &workload.config.delay;
    let latest_acked = lock(&delays.tracker).latest_acked_due_ms;
    let deadline_ms = latest_acked.saturating_add(millis(config.max_clock_skew)).max(now_ms()) + millis(config.grace);
    let mut next_report = Instant::now() + DRAIN_REPORT;
    loop {
        let (missing, latest_due) = {
            let tracker = lock(&delays.tracker);
            (tracker.missing(), tracker.latest_due_ms)
        };
        let now = now_ms();
        if missing == 0 && now >= latest_due.saturating_add(millis(SETTLE)) {
            break;
        }
        if now >= deadline_ms {
            tracing::warn!(missing, "the grace for delayed messages has passed; stopping the consumers");
            break;
        }
        if delays.consumers.lock().unwrap_or_else(PoisonError::into_inner).iter().all(|c| c.is_finished()) {
            tracing::error!(missing, "every delay consumer stopped on its own");
            break;
        }
        if Instant::now() >= next_report {
            let left = Duration::from_millis(deadline_ms.saturating_sub(now));
            tracing::info!(missing, "waiting for delayed messages (giving up in {left:?})");
            next_report += DRAIN_REPORT;
        }
        tokio::time::sleep(DRAIN_CHECK).await;
    }
    delays.stop.store(true, Ordering::Relaxed);
    let consumers = std::mem::take(&mut *delays.consumers.lock().unwrap_or_else(PoisonError::into_inner));
    let failure = stop_tasks(consumers, "a delay consumer").await;
    let missing = lock(&delays.tracker).missing();
    tracing::info!(missing, "delay consumers stopped");
    history.record(Kind::Ok, Op::DelayEnd { at_ms: now_ms(), missing })?;
    workload.check_history()?;
    failure.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests;
