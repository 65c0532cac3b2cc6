//! The retry workload (`run --workload retry`; docs/RETRIES.md): messages that fail, are
//! retried after the group's backoff, or go to the dead-letter queue, in an unordered and a
//! key-ordered group, all recorded for the checker's retry checks (`crate::checker`,
//! `retries.rs`).
//!
//! - **Producers** (process ids `0..producers`): the log workload's producers, every send at
//!   `all` and with a key from a small set ([`key_of`](crate::history::key_of)), so that each
//!   partition holds several keys.
//! - **Members** (the next `members` process ids in each group, `member.rs`): group consumers
//!   of `{group}-retry` (unordered) and `{group}-ordered` (key-ordered), both with the policy
//!   [`RetryConfig`] names. Each treats a message by its fate
//!   ([`fate_of`](crate::history::fate_of)): most are acked, some nacked once, some nacked
//!   at every attempt, some rejected; every poll is recorded (`retry_poll`) with each record's
//!   attempt and what the member did.
//!
//! The producers stop at the end of the run; the members go on while the runner heals the
//! cluster, until every acknowledged message has been seen through by each group (processed,
//! or its last nack or reject made) or the grace has passed (`RetryEnd`). Then the runner
//! reads each group's dead-letter queue whole (`DeadLetters`), retrying until it holds every
//! message expected there or the grace has passed, and the topic itself (`FinalRead`, for the
//! write checks).

mod dead_letters;
mod member;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sluice_client::{Backoff, RetryPolicy};
use tokio::time::Instant;

use super::{
    History, PROBE_PROCESS, RUNNER_PROCESS, SharedRecorder, Task, Workload, WorkloadError, millis, stop_tasks,
};
use crate::history::{Fate, Kind, Op, RetryAction, RetryGroup, RetryRead, fate_of};

/// How often the drain looks at what has been seen through.
const DRAIN_CHECK: Duration = Duration::from_millis(200);

/// How often the drain says what it still waits for.
const DRAIN_REPORT: Duration = Duration::from_secs(5);

/// Once everything is seen through, the members poll on this long, so that their last
/// settles and commits go out and a retry handed out twice would be seen.
const SETTLE: Duration = Duration::from_secs(3);

/// The retry workload's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryConfig {
    /// Deliveries before a message goes to the dead-letter queue.
    pub max_attempts: u32,
    /// The wait after attempt `n`: `ladder_ms[n - 1]`, the last one beyond.
    pub ladder_ms: Vec<u64>,
    /// How long after the run the members and the dead-letter reads may take to see
    /// everything through before what is missing is given up.
    pub grace: Duration,
    /// How far a broker's wall clock may be from the runner's (the clock fault's bound), set
    /// by the runner.
    pub max_clock_skew: Duration,
}

impl Default for RetryConfig {
    fn default() -> RetryConfig {
        RetryConfig {
            max_attempts: 4,
            ladder_ms: vec![1_000, 2_000, 3_000],
            grace: Duration::from_secs(180),
            max_clock_skew: Duration::ZERO,
        }
    }
}

impl RetryConfig {
    /// Checks the settings, with the workload's producer and member counts.
    pub(super) fn validate(&self, producers: u32, members: u32) -> Result<(), WorkloadError> {
        let bad = |message: String| Err(WorkloadError::Config(message));
        if producers == 0 || members == 0 {
            return bad(format!("the retry workload needs producers and members, not {producers} and {members}"));
        }
        if u64::from(producers) + 2 * u64::from(members) >= u64::from(PROBE_PROCESS) {
            return bad(format!("producers + 2 × members must be below {PROBE_PROCESS}"));
        }
        self.policy().validate().map_err(|e| WorkloadError::Config(format!("retry policy: {e}")))
    }

    /// The policy both groups consume with.
    pub(super) fn policy(&self) -> RetryPolicy {
        RetryPolicy { backoff: Backoff::Ladder(self.ladder_ms.clone()), max_attempts: self.max_attempts }
    }
}

/// The groups of the retry workload: `{group}-retry` and the key-ordered `{group}-ordered`.
pub(super) fn groups(group: &str) -> [RetryGroup; 2] {
    [
        RetryGroup { name: format!("{group}-retry"), key_ordered: false },
        RetryGroup { name: format!("{group}-ordered"), key_ordered: true },
    ]
}

/// What the retry workload keeps between [`start`] and [`drain`].
#[derive(Debug, Default)]
pub(super) struct Retries {
    tracker: Arc<Mutex<Tracker>>,
    /// Tells the members to stop.
    stop: Arc<AtomicBool>,
    members: Mutex<Vec<Task>>,
}

/// What the processes have seen so far: what the drain waits for.
#[derive(Debug, Default)]
pub(super) struct Tracker {
    /// Acknowledged values.
    acked: HashSet<String>,
    /// Per group: the values whose fate the group's members have seen through.
    done: HashMap<String, HashSet<String>>,
    max_attempts: u32,
}

impl Tracker {
    pub(super) fn acked(&mut self, value: &str) {
        self.acked.insert(value.to_owned());
    }

    /// A member of `group` received `reads`.
    pub(super) fn received(&mut self, group: &str, reads: &[RetryRead]) {
        let max = self.max_attempts;
        let done = self.done.entry(group.to_owned()).or_default();
        for r in reads {
            let through = match (fate_of(&r.value), r.action) {
                (Fate::Ok, _) | (Fate::Reject, _) => true,
                (Fate::FailOnce, action) => action == RetryAction::Ack,
                (Fate::FailAlways, _) => r.attempt >= max,
            };
            if through {
                done.insert(r.value.clone());
            }
        }
    }

    /// Acknowledged messages some group has not seen through yet, over all groups.
    fn unresolved(&self, groups: &[RetryGroup]) -> u64 {
        let empty = HashSet::new();
        groups
            .iter()
            .map(|g| {
                let done = self.done.get(&g.name).unwrap_or(&empty);
                self.acked.iter().filter(|v| !done.contains(*v)).count() as u64
            })
            .sum()
    }

    /// The acknowledged values expected in the dead-letter queues: those failing always or
    /// rejected.
    fn dead(&self) -> HashSet<String> {
        self.acked.iter().filter(|v| matches!(fate_of(v), Fate::FailAlways | Fate::Reject)).cloned().collect()
    }
}

/// The tracker, even if a process panicked holding it.
pub(super) fn lock(tracker: &Mutex<Tracker>) -> MutexGuard<'_, Tracker> {
    tracker.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records the parameters and starts every process: returns the producers' tasks (done
/// shortly after `until`); the members' are kept for [`drain`].
pub(super) fn start(
    workload: &Workload,
    recorder: &SharedRecorder,
    until: Instant,
) -> Result<Vec<Task>, WorkloadError> {
    let config = &workload.config;
    let retry = &config.retry;
    let runner = History { recorder: Arc::clone(recorder), process: RUNNER_PROCESS };
    let groups = groups(&config.group);
    runner.record(
        Kind::Ok,
        Op::RetrySetup {
            groups: groups.to_vec(),
            ladder_ms: retry.ladder_ms.clone(),
            max_attempts: retry.max_attempts,
            max_clock_skew_ms: millis(retry.max_clock_skew),
        },
    )?;
    let state = &workload.retry;
    lock(&state.tracker).max_attempts = retry.max_attempts;
    let (mut tasks, mut members) = (Vec::new(), Vec::new());
    for (process, client) in (0u32..).zip(&workload.clients) {
        let history = History { recorder: Arc::clone(recorder), process };
        let (client, config) = (client.clone(), Arc::clone(config));
        if process < config.producers {
            let tracker = Arc::clone(&state.tracker);
            tasks.push(tokio::spawn(super::producer::run(client, history, config, until, Some(tracker))));
        } else {
            let group = groups[((process - config.producers) / config.members) as usize % 2].clone();
            let (tracker, stop) = (Arc::clone(&state.tracker), Arc::clone(&state.stop));
            members.push(tokio::spawn(member::run(client, history, config, group, tracker, stop)));
        }
    }
    *state.members.lock().unwrap_or_else(PoisonError::into_inner) = members;
    Ok(tasks)
}

/// Lets the members consume until every acknowledged message is seen through by each group
/// (and [`SETTLE`] more), or until the grace has passed; stops them and records `RetryEnd`;
/// then reads the dead-letter queues (`DeadLetters`) and the topic (`FinalRead`).
pub(super) async fn drain(workload: &Workload, history: &History, limit: Duration) -> Result<(), WorkloadError> {
    let state = &workload.retry;
    let config = &workload.config;
    let groups = groups(&config.group);
    let deadline = Instant::now() + config.retry.grace;
    let mut next_report = Instant::now() + DRAIN_REPORT;
    loop {
        let unresolved = lock(&state.tracker).unresolved(&groups);
        if unresolved == 0 {
            tokio::time::sleep(SETTLE).await;
            break;
        }
        if Instant::now() >= deadline {
            tracing::warn!(unresolved, "the grace for retries has passed; stopping the members");
            break;
        }
        if state.members.lock().unwrap_or_else(PoisonError::into_inner).iter().all(|m| m.is_finished()) {
            tracing::error!(unresolved, "every retry member stopped on its own");
            break;
        }
        if Instant::now() >= next_report {
            tracing::info!(unresolved, "waiting for the groups to see every message through");
            next_report += DRAIN_REPORT;
        }
        tokio::time::sleep(DRAIN_CHECK).await;
    }
    state.stop.store(true, Ordering::Relaxed);
    let members = std::mem::take(&mut *state.members.lock().unwrap_or_else(PoisonError::into_inner));
    let failure = stop_tasks(members, "a retry member").await;
    let unresolved = lock(&state.tracker).unresolved(&groups);
    tracing::info!(unresolved, "retry members stopped");
    history.record(Kind::Ok, Op::RetryEnd { unresolved })?;
    workload.check_history()?;
    let expected = lock(&state.tracker).dead();
    let read_until = Instant::now() + config.retry.grace;
    for group in &groups {
        let entries = dead_letters::read(&workload.admin, &group.name, &expected, read_until).await;
        history.record(Kind::Ok, Op::DeadLetters { group: group.name.clone(), entries })?;
    }
    super::drain::run(&workload.admin, history, config, Instant::now() + limit).await?;
    failure.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests;
