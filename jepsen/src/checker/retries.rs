//! The retry workload's checks (docs/RETRIES.md): what a group owes each acknowledged message
//! given its fate ([`fate_of`]), judged from every delivery the members recorded and the
//! dead-letter queues read after the run. Times are the runner's monotonic event times.
//!
//! - **Attempts** (`retry-attempts`): every delivery's attempt is 1 to `max_attempts`.
//! - **Never early** (`early-retry`): a delivery of attempt `n ≥ 2` is received no earlier than
//!   the start of the first poll that delivered attempt `n - 1` plus the wait after it, less
//!   the allowed clock skew. The coordinator makes it due at its nack (after that poll) plus
//!   the wait, or at a lease's end plus the wait, both later. A retry whose previous attempt
//!   no recorded poll returned (a poll abandoned at its time limit) is counted, not judged.
//! - **Never lost** (`lost-retry`): every acknowledged message is delivered to each group; one
//!   failing once is delivered again.
//! - **The dead-letter queue holds exactly what exhausted its attempts**: every message failing
//!   always or rejected is in it (`dlq-missing`); nothing else is, and each entry carries its
//!   message's value and origin, and for a message failing always `max_attempts` attempts
//!   (`dlq-unexpected`; a message failing once may be dead-lettered by lease expiries, which the
//!   reason says); none is there twice (`dlq-duplicate`) unless the group was delivered it
//!   afresh (attempt 1, a replay from an uncommitted position) after dead-lettering it.
//! - **Key order** (`key-order`, key-ordered groups): after a member nacks a message (not its
//!   last attempt), no later message of its key and partition is delivered by a poll begun
//!   after that nack, until the message itself is delivered again. The runner's probes (sent
//!   without a key) are not ordered, and a nack of a fresh delivery of a message dead-lettered
//!   already holds nothing back (the coordinator ignores it: no second dead letter).

use std::collections::{BTreeMap, HashMap};

use super::Found;
use super::index::Index;
use crate::history::{DeadLetter, Event, Fate, Kind, Op, RetryAction, RetryGroup, fate_of, key_of};
use crate::report::{Anomaly, Lateness, RetryCheck, RetryGroupStats, RetryStats};
use crate::workload::PROBE_PROCESS;

/// The reason of a dead letter written because leases ran out (the coordinator's).
const LEASE_EXPIRED: &str = "lease expired";

/// One record a member received.
#[derive(Debug, Clone, Copy)]
struct Delivery {
    /// The poll's `ok` event.
    event: u64,
    /// When the poll began and returned (ns since the run's start).
    invoked_ns: u64,
    received_ns: u64,
    partition: u32,
    offset: u64,
    attempt: u32,
    action: RetryAction,
}

/// What the history says of one group.
#[derive(Debug, Default)]
struct GroupHistory<'a> {
    deliveries: HashMap<&'a str, Vec<Delivery>>,
    dead: HashMap<&'a str, Vec<&'a DeadLetter>>,
    dead_total: u64,
}

/// The setup the checks judge by.
#[derive(Debug, Default)]
struct Setup {
    groups: Vec<RetryGroup>,
    ladder_ms: Vec<u64>,
    max_attempts: u32,
    skew_ns: u64,
}

impl Setup {
    /// The wait after attempt `attempt`, in ns.
    fn wait_ns(&self, attempt: u32) -> u64 {
        let i = (attempt.max(1) as usize - 1).min(self.ladder_ms.len().saturating_sub(1));
        self.ladder_ms.get(i).copied().unwrap_or(0) * 1_000_000
    }
}

/// Runs the retry checks; the workload's figures.
pub(super) fn check(events: &[Event], index: &Index<'_>, found: &mut Found) -> RetryStats {
    let (setup, groups, unresolved) = gather(events);
    let mut stats = RetryStats {
        max_attempts: setup.max_attempts,
        ladder_ms: setup.ladder_ms.clone(),
        max_clock_skew_ms: setup.skew_ns / 1_000_000,
        unresolved,
        ..RetryStats::default()
    };
    let acked: Vec<(&str, u32, u64)> = index
        .sends
        .iter()
        .filter_map(|s| s.acks.first().map(|&(partition, offset, _)| (s.value, partition, offset)))
        .collect();
    stats.acked = acked.len() as u64;
    let empty = GroupHistory::default();
    for group in &setup.groups {
        let history = groups.get(group.name.as_str()).unwrap_or(&empty);
        let mut g = RetryGroupStats { group: group.name.clone(), key_ordered: group.key_ordered, ..Default::default() };
        let judge = Judge { setup: &setup, group: &group.name, history, index };
        let mut lateness = Vec::new();
        for &place in &acked {
            judge.attempts_and_times(place, found, &mut g, &mut lateness);
            judge.seen_through(place, found);
            judge.dead_letters(place, found, &mut g);
        }
        judge.unsent_dead_letters(found);
        if group.key_ordered {
            judge.key_order(found);
        }
        count(history, &mut g);
        lateness.sort_unstable();
        g.lateness = (!lateness.is_empty()).then(|| Lateness {
            min_ms: lateness[0],
            p50_ms: super::delays::percentile(&lateness, 50),
            p99_ms: super::delays::percentile(&lateness, 99),
            max_ms: lateness[lateness.len() - 1],
        });
        stats.groups.push(g);
    }
    stats
}

/// The setup, each group's deliveries and dead letters, and `RetryEnd`'s count.
fn gather(events: &[Event]) -> (Setup, HashMap<&str, GroupHistory<'_>>, Option<u64>) {
    let mut setup = Setup::default();
    let mut groups: HashMap<&str, GroupHistory<'_>> = HashMap::new();
    let mut invoked: HashMap<u32, u64> = HashMap::new();
    let mut unresolved = None;
    for event in events {
        match (&event.op, event.kind) {
            (Op::RetrySetup { groups, ladder_ms, max_attempts, max_clock_skew_ms }, _) => {
                setup = Setup {
                    groups: groups.clone(),
                    ladder_ms: ladder_ms.clone(),
                    max_attempts: *max_attempts,
                    skew_ns: max_clock_skew_ms.saturating_mul(1_000_000),
                };
            }
            (Op::RetryPoll { .. }, Kind::Invoke) => {
                invoked.insert(event.process, event.time_ns);
            }
            (Op::RetryPoll { group, reads }, Kind::Ok) => {
                let invoked_ns = invoked.get(&event.process).copied().unwrap_or(event.time_ns);
                let history = groups.entry(group.as_str()).or_default();
                for r in reads {
                    let delivery = Delivery {
                        event: event.index,
                        invoked_ns,
                        received_ns: event.time_ns,
                        partition: r.partition,
                        offset: r.offset,
                        attempt: r.attempt,
                        action: r.action,
                    };
                    history.deliveries.entry(r.value.as_str()).or_default().push(delivery);
                }
            }
            (Op::DeadLetters { group, entries }, _) => {
                let history = groups.entry(group.as_str()).or_default();
                history.dead_total += entries.len() as u64;
                for entry in entries {
                    history.dead.entry(entry.value.as_str()).or_default().push(entry);
                }
            }
            (Op::RetryEnd { unresolved: u }, _) => unresolved = Some(*u),
            _ => {}
        }
    }
    (setup, groups, unresolved)
}

/// The figures of one group that need no judging.
fn count(history: &GroupHistory<'_>, g: &mut RetryGroupStats) {
    let mut by_attempt: BTreeMap<u32, u64> = BTreeMap::new();
    for d in history.deliveries.values().flatten() {
        *by_attempt.entry(d.attempt).or_default() += 1;
        match d.action {
            RetryAction::Nack => g.nacks += 1,
            RetryAction::Reject => g.rejects += 1,
            RetryAction::Ack => {}
        }
    }
    g.deliveries = by_attempt.into_iter().collect();
    g.dead_letters = history.dead_total;
}

/// One group's checks.
struct Judge<'h, 'a> {
    setup: &'h Setup,
    group: &'h str,
    history: &'h GroupHistory<'a>,
    index: &'h Index<'a>,
}

/// An acknowledged message: its value and place.
type Acked<'a> = (&'a str, u32, u64);

impl Judge<'_, '_> {
    fn finding(&self, check: RetryCheck, (value, partition, offset): Acked<'_>, detail: String) -> Anomaly {
        Anomaly::Retry { check, group: self.group.to_owned(), value: value.to_owned(), partition, offset, detail }
    }

    fn deliveries(&self, value: &str) -> &[Delivery] {
        self.history.deliveries.get(value).map_or(&[], Vec::as_slice)
    }

    /// Attempt numbers in range, and no retry before its time; the lateness of each retry.
    fn attempts_and_times(
        &self,
        acked: Acked<'_>,
        found: &mut Found,
        g: &mut RetryGroupStats,
        lateness: &mut Vec<i64>,
    ) {
        let deliveries = self.deliveries(acked.0);
        for d in deliveries {
            if d.attempt == 0 || d.attempt > self.setup.max_attempts {
                let detail = format!("delivered as attempt {} (event {})", d.attempt, d.event);
                found.push(self.finding(RetryCheck::Attempts, acked, detail));
            }
            if d.attempt < 2 {
                continue;
            }
            let before = deliveries
                .iter()
                .filter(|p| p.attempt == d.attempt - 1 && p.invoked_ns < d.received_ns)
                .min_by_key(|p| p.invoked_ns);
            let Some(before) = before else {
                g.unanchored_retries += 1;
                continue;
            };
            let due_ns = before.invoked_ns + self.setup.wait_ns(before.attempt);
            let late_ns = i128::from(d.received_ns) - i128::from(due_ns);
            lateness.push(i64::try_from(late_ns / 1_000_000).unwrap_or(i64::MAX));
            if d.received_ns + self.setup.skew_ns < due_ns {
                let detail = format!(
                    "attempt {} received at {:.3} s (event {}), {} ms before attempt {} (polled from {:.3} s, event {}) \
                     plus its {} ms wait",
                    d.attempt,
                    secs(d.received_ns),
                    d.event,
                    (due_ns - d.received_ns) / 1_000_000,
                    before.attempt,
                    secs(before.invoked_ns),
                    before.event,
                    self.setup.wait_ns(before.attempt) / 1_000_000
                );
                found.push(self.finding(RetryCheck::Early, acked, detail));
            }
        }
    }

    /// Every message delivered; one failing once, delivered again.
    fn seen_through(&self, acked: Acked<'_>, found: &mut Found) {
        let deliveries = self.deliveries(acked.0);
        if deliveries.is_empty() {
            found.push(self.finding(RetryCheck::Lost, acked, "never delivered".to_owned()));
        } else if fate_of(acked.0) == Fate::FailOnce && !deliveries.iter().any(|d| d.attempt >= 2) {
            let dead = self.history.dead.contains_key(acked.0);
            if !dead {
                let detail = format!("nacked at attempt 1 (event {}), never delivered again", deliveries[0].event);
                found.push(self.finding(RetryCheck::Lost, acked, detail));
            }
        }
    }

    /// The message's dead letters: there if its fate says so, right, and not duplicated.
    fn dead_letters(&self, acked: Acked<'_>, found: &mut Found, g: &mut RetryGroupStats) {
        let (value, partition, offset) = acked;
        let fate = fate_of(value);
        let entries = self.history.dead.get(value).map_or(&[][..], Vec::as_slice);
        let meant = matches!(fate, Fate::FailAlways | Fate::Reject);
        let deliveries = self.deliveries(value);
        if meant && entries.is_empty() {
            let highest = deliveries.iter().map(|d| d.attempt).max();
            let detail = format!("not in the dead-letter queue (highest attempt delivered: {highest:?})");
            found.push(self.finding(RetryCheck::DlqMissing, acked, detail));
        }
        for e in entries {
            let lease = e.reason == LEASE_EXPIRED;
            let wrong = if fate == Fate::Ok || (fate == Fate::FailOnce && !lease) {
                Some(format!(
                    "dead-lettered (offset {}, reason {:?}) though it was to be processed",
                    e.offset, e.reason
                ))
            } else if e.origin != Some((partition, offset)) {
                Some(format!("dead letter at offset {} names origin {:?}", e.offset, e.origin))
            } else if fate == Fate::FailAlways && e.attempts != Some(self.setup.max_attempts) {
                Some(format!("dead letter at offset {} says {:?} attempts", e.offset, e.attempts))
            } else {
                None
            };
            if let Some(detail) = wrong {
                found.push(self.finding(RetryCheck::DlqUnexpected, acked, detail));
            }
        }
        // A dead-lettering decision (a reject, a nack of the last attempt), then fresh
        // deliveries after it: each may dead-letter the message once more.
        let first_dead = deliveries
            .iter()
            .filter(|d| {
                d.action == RetryAction::Reject
                    || (d.action == RetryAction::Nack && d.attempt >= self.setup.max_attempts)
            })
            .map(|d| d.received_ns)
            .min();
        let fresh = first_dead.map_or(0, |t| deliveries.iter().filter(|d| d.attempt == 1 && d.invoked_ns > t).count());
        let allowed = 1 + fresh;
        if entries.len() > 1 {
            g.redelivered_dead_letters += (entries.len() - 1).min(fresh) as u64;
        }
        if entries.len() > allowed {
            let offsets: Vec<u64> = entries.iter().map(|e| e.offset).collect();
            let detail =
                format!("dead-lettered {} times (offsets {offsets:?}), {fresh} fresh deliveries after", entries.len());
            found.push(self.finding(RetryCheck::DlqDuplicate, acked, detail));
        }
    }

    /// Dead letters of values no acknowledged send explains: never sent, or whose send failed.
    fn unsent_dead_letters(&self, found: &mut Found) {
        for (value, entries) in &self.history.dead {
            let send = self.index.by_value.get(value).map(|&i| &self.index.sends[i]);
            let why = match send {
                None => "never sent",
                Some(s) if s.fail.is_some() => "its send failed",
                Some(_) => continue,
            };
            let (partition, offset) = entries[0].origin.unwrap_or((u32::MAX, u64::MAX));
            let detail = format!("in the dead-letter queue (offset {}), but {why}", entries[0].offset);
            found.push(self.finding(RetryCheck::DlqUnexpected, (value, partition, offset), detail));
        }
    }

    /// Whether the member's action on `d` sends its message to the dead-letter queue.
    fn dead_lettering(&self, d: &Delivery) -> bool {
        d.action == RetryAction::Reject || (d.action == RetryAction::Nack && d.attempt >= self.setup.max_attempts)
    }

    /// No later message of a key delivered while an earlier one waits for its retry.
    fn key_order(&self, found: &mut Found) {
        let mut by_key: HashMap<(u32, String), Vec<(&str, &Delivery)>> = HashMap::new();
        // The runner's probes are sent without a key: nothing orders them.
        let probe = |v: &str| self.index.by_value.get(v).is_some_and(|&i| self.index.sends[i].process == PROBE_PROCESS);
        for (value, deliveries) in self.history.deliveries.iter().filter(|(v, _)| !probe(v)) {
            for d in deliveries {
                by_key.entry((d.partition, key_of(value))).or_default().push((value, d));
            }
        }
        for list in by_key.values() {
            for &(value, nack) in list {
                if nack.action != RetryAction::Nack || nack.attempt >= self.setup.max_attempts {
                    continue;
                }
                // A fresh delivery of a message dead-lettered already: its nack is stale (no
                // second dead letter) and holds nothing back.
                let dead_before =
                    list.iter().any(|(v, d)| *v == value && d.received_ns < nack.received_ns && self.dead_lettering(d));
                if dead_before {
                    continue;
                }
                let until = list
                    .iter()
                    .filter(|(v, d)| *v == value && d.received_ns > nack.received_ns)
                    .map(|(_, d)| d.received_ns)
                    .min()
                    .unwrap_or(u64::MAX);
                let overtaking = list
                    .iter()
                    .find(|(_, d)| d.offset > nack.offset && d.invoked_ns > nack.received_ns && d.received_ns < until);
                if let Some((later, d)) = overtaking {
                    let detail = format!(
                        "nacked at attempt {} (event {}), and {later:?} (offset {}, same key) delivered (event {}) before \
                         it came back",
                        nack.attempt, nack.event, d.offset, d.event
                    );
                    found.push(self.finding(RetryCheck::KeyOrder, (value, nack.partition, nack.offset), detail));
                }
            }
        }
    }
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

#[cfg(test)]
mod tests;
