//! The history checker: reads a run's [`Event`]s and reports every anomaly Jepsen's Kafka
//! workload looks for (`notes/FAULTS.md`), with evidence, plus availability per fault window.
//! Pure code: no I/O, no clock; the same history always gives the same report.
//!
//! The checks, by family:
//! - `writes`: lost and unseen writes, duplicates, inconsistent offsets, aborted reads and
//!   nonmonotonic sends — everything decided by comparing acknowledgements with reads;
//! - `polls`: each consumer's successive reads of a partition, which must be contiguous
//!   unless an `assign` (rebalance or seek) came between;
//! - `groups`: offsets a group committed past without any member receiving them, messages a
//!   filtered group received that its filter does not select, and redelivery counts;
//! - `replicas`: the nodes' local logs compared with each other and with the acks;
//! - `availability`: gaps between acknowledged sends (at level `all`), per fault window;
//! - `levels`: the sends of each acknowledgement level, and the `leader` and `none` messages
//!   never read — losses those levels allow, counted and never reported as anomalies;
//! - `delays` (delay workload): delayed messages released early, lost, delivered after a
//!   successful cancel, or read with a value or delivery time nobody sent. Its sends and reads
//!   are in the index too, so the write checks report a message released twice (`duplicate`),
//!   two values at one offset, and a failed send that is read (`aborted-read`);
//! - `retries` (retry workload): attempts in range, no retry before its wait, every message
//!   seen through by each group, the dead-letter queues holding exactly the messages that
//!   exhausted their attempts (once each), key order in the key-ordered group. Its sends and
//!   its members' reads are in the index too, for the write checks;
//! - `txns` (txn workload): transactions seen in part (`torn`), values of aborted ones read
//!   (`aborted-read`), committed ones missing values (`lost-commit`), values at two places,
//!   the processor's outputs not exactly once, last stable offsets held back too long. The
//!   reads of its first topic (the one the runner's probes write to and whose node copies are
//!   recorded) are in the index too, for the write and replica checks.
//!
//! Every check runs on every history (a check finds nothing in the other workload's
//! operations); which kinds the report lists as checked depends on the workload
//! ([`WorkloadKind::of`]).

mod availability;
mod delays;
mod groups;
mod index;
mod levels;
mod polls;
mod replicas;
mod retries;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;
mod txns;
mod writes;

use std::collections::BTreeMap;

use crate::history::{Event, Kind, Op, WorkloadKind};
use crate::report::{Anomaly, AnomalyKind, Findings, OpTotals, Report};

/// Checks `events` (a whole history, in recorded order) and reports what it found.
pub fn check(events: &[Event]) -> Report {
    let workload = WorkloadKind::of(events);
    let mut found = Found::checking(AnomalyKind::checked_for(workload));
    let index = index::Index::build(events, &mut found);
    writes::check(&index, &mut found);
    polls::check(events, &mut found);
    let groups = groups::check(events, &index, &mut found);
    replicas::check(events, &index, &mut found);
    let availability = availability::measure(events, &mut found);
    let acks = levels::measure(events, &index);
    let delay = (workload == WorkloadKind::Delay).then(|| delays::check(events, &index, &mut found));
    let txn = (workload == WorkloadKind::Txn).then(|| txns::check(events, &index, &availability.windows, &mut found));
    let retry = (workload == WorkloadKind::Retry).then(|| retries::check(events, &index, &mut found));
    Report {
        workload,
        events: events.len() as u64,
        totals: totals(events),
        anomalies: found.0,
        groups,
        availability,
        acks,
        delay,
        txn,
        retry,
    }
}

/// The findings so far, one entry per [`AnomalyKind`] checked for (so a clean kind shows 0),
/// and one per other kind found.
#[derive(Debug)]
pub(crate) struct Found(BTreeMap<AnomalyKind, Findings>);

impl Found {
    /// No findings yet, of `kinds`.
    fn checking(kinds: &[AnomalyKind]) -> Found {
        Found(kinds.iter().map(|&k| (k, Findings::default())).collect())
    }

    /// Counts one instance, keeping it as evidence while there is room.
    pub fn push(&mut self, anomaly: Anomaly) {
        self.findings(anomaly.kind()).push(anomaly);
    }

    /// Counts `n` more instances of `kind` whose evidence is not kept (the examples are full).
    pub fn count_more(&mut self, kind: AnomalyKind, n: u64) {
        self.findings(kind).count += n;
    }

    fn findings(&mut self, kind: AnomalyKind) -> &mut Findings {
        self.0.entry(kind).or_default()
    }
}

/// The history's name for an operation kind.
fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Send { .. } => "send",
        Op::Poll { .. } => "poll",
        Op::Assign { .. } => "assign",
        Op::Commit { .. } => "commit",
        Op::Fault { .. } => "fault",
        Op::FinalRead { .. } => "final_read",
        Op::NodeLog { .. } => "node_log",
        Op::FinalCommitted { .. } => "final_committed",
        Op::Subscribe { .. } => "subscribe",
        Op::DelaySetup { .. } => "delay_setup",
        Op::DelaySend { .. } => "delay_send",
        Op::Cancel { .. } => "cancel",
        Op::DelayPoll { .. } => "delay_poll",
        Op::DelayEnd { .. } => "delay_end",
        Op::TxnSetup { .. } => "txn_setup",
        Op::TxnInit { .. } => "txn_init",
        Op::Txn { .. } => "txn",
        Op::TxnPoll { .. } => "txn_poll",
        Op::TxnLso { .. } => "txn_lso",
        Op::TxnEnd { .. } => "txn_end",
        Op::TxnDrain { .. } => "txn_drain",
        Op::TxnOffsets { .. } => "txn_offsets",
        Op::RetrySetup { .. } => "retry_setup",
        Op::RetryPoll { .. } => "retry_poll",
        Op::RetryEnd { .. } => "retry_end",
        Op::DeadLetters { .. } => "dead_letters",
    }
}

/// Invocations and completions per operation kind, in the order kinds first appear.
fn totals(events: &[Event]) -> Vec<OpTotals> {
    let mut totals: Vec<OpTotals> = Vec::new();
    for event in events {
        let name = op_name(&event.op);
        let i = match totals.iter().position(|t| t.op == name) {
            Some(i) => i,
            None => {
                totals.push(OpTotals { op: name.to_owned(), ..OpTotals::default() });
                totals.len() - 1
            }
        };
        let t = &mut totals[i];
        match event.kind {
            Kind::Invoke => t.invoked += 1,
            Kind::Ok => t.ok += 1,
            Kind::Fail => t.fail += 1,
            Kind::Info => t.info += 1,
        }
    }
    totals
}
