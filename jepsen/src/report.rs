//! What the checker found in a history: every anomaly counted in full with up to
//! [`EXAMPLES_PER_KIND`] examples each carrying its evidence (values, partitions, offsets,
//! event indexes), per-group delivery figures, availability per fault window, and operation
//! totals. Written as `report.json` next to the history, and summarised for a human by
//! [`Report::summary`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::history::WorkloadKind;

mod anomaly;
mod levels;
mod retry;

pub use anomaly::{Anomaly, Place, Sighting, TxnPlace};
pub use levels::{AckLevels, AllowedLoss, LOSS_EXAMPLES, LevelTotals};
pub use retry::{RetryCheck, RetryGroupStats, RetryStats};

/// How many examples of one anomaly kind a report keeps; the count is always complete.
pub const EXAMPLES_PER_KIND: usize = 20;

/// The result of checking one history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The workload the history comes from.
    #[serde(default)]
    pub workload: WorkloadKind,
    /// How many events the history held.
    pub events: u64,
    /// Per operation kind (`send`, `poll`, …): how many were invoked and how they ended.
    pub totals: Vec<OpTotals>,
    /// Every anomaly kind checked for (the workload's, [`AnomalyKind::checked_for`]), found
    /// or not (a kind with count 0 was checked and is clean), and any other kind found.
    pub anomalies: BTreeMap<AnomalyKind, Findings>,
    /// Per consumer group: what its members received, and what it committed at the end.
    pub groups: Vec<GroupStats>,
    /// How long the cluster went without acknowledging a send, per fault window and overall.
    pub availability: Availability,
    /// The sends by acknowledgement level, and the allowed losses of `leader` and `none`
    /// messages (`None` for a history whose sends are all at `all`, as every one from before
    /// levels existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acks: Option<AckLevels>,
    /// The delay workload's figures (`None` for a log history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<DelayStats>,
    /// The txn workload's figures (`None` for other histories).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn: Option<TxnStats>,
    /// The retry workload's figures (`None` for other histories).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryStats>,
}

/// What the txn workload did and saw: its transactions by outcome, what became visible, the
/// processor's progress and the partitions' last stable offsets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnStats {
    /// The transaction timeout, in ms.
    pub timeout_ms: u64,
    /// Transactions invoked (writers' and the processor's).
    pub transactions: u64,
    /// Whose commit answered OK.
    pub committed: u64,
    /// Whose abort answered OK.
    pub aborted: u64,
    /// Dropped on purpose, to be aborted by their timeout.
    pub abandoned: u64,
    /// Fenced by a new instance of their id before their commit was asked for.
    pub fenced: u64,
    /// Failed before their commit was asked for, with no abort answering OK.
    pub failed: u64,
    /// Whose commit was asked for without an OK (or that never completed).
    pub unknown: u64,
    /// Unknown ones the final drain shows committed (every value visible).
    pub unknown_committed: u64,
    /// Unknown ones the final drain shows aborted (no value visible).
    pub unknown_aborted: u64,
    /// Producer instances registered (InitTransactions invoked).
    pub instances: u64,
    /// Values the transactions wrote (or meant to).
    pub values: u64,
    /// Distinct values of transactions in the final `read_committed` drain.
    pub visible: u64,
    /// Records the `read_committed` readers returned during the run.
    pub reader_reads: u64,
    /// Values of transactions that must have aborted found in the final `read_uncommitted`
    /// drain: the aborted data is in the log, so the aborted-read check is not vacuous.
    pub aborted_in_log: u64,
    /// Values of transactions that must have aborted, in all.
    pub must_abort_values: u64,
    /// The processor's transactions.
    pub processor_transactions: u64,
    /// Values of its source topic, as drained.
    pub sources: u64,
    /// Of them, below the group's final committed offsets: each must have exactly one output.
    pub consumed: u64,
    /// Whether the exactly-once check could be made (the source, the outputs and the group's
    /// offsets all read at the end).
    pub exactly_once_checked: bool,
    /// Whether the processor had caught up with its source when it stopped.
    pub caught_up: Option<bool>,
    /// Last-stable-offset samples taken.
    pub lso_samples: u64,
    /// The longest an offset was seen to stay at or above its partition's last stable offset, in ms.
    pub longest_lso_lag_ms: u64,
    /// Whether every last stable offset reached its end, and no transaction was open, before
    /// the drains.
    pub settled: Option<bool>,
}

/// What the delay workload did and saw: its sends, cancels, receipts and how late they came.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelayStats {
    /// The clock skew allowed (`DelaySetup`), in ms.
    pub max_clock_skew_ms: u64,
    /// Delayed sends invoked.
    pub sent: u64,
    /// Acknowledged (given a delayed id).
    pub acked: u64,
    /// Certainly not written.
    pub failed: u64,
    /// Unknown (timed out, or a retriable error, or still unresolved at the end).
    pub unknown: u64,
    /// Cancels invoked.
    pub cancels: u64,
    /// Cancels that answered `Cancelled`.
    pub cancelled: u64,
    /// Cancels that answered `AlreadyDelivered`.
    pub already_delivered: u64,
    /// Cancels whose outcome is unknown.
    pub cancels_unknown: u64,
    /// Acknowledged messages that must be received: not cancelled, and not possibly cancelled.
    pub expected: u64,
    /// Distinct delayed messages received.
    pub received: u64,
    /// Records the consumers returned in all (a position is read again by each consumer and
    /// after a re-poll).
    pub reads: u64,
    /// How late the messages received came: per message, its first receipt less its delivery
    /// time, by the runner's clock (`None` if nothing was received).
    pub lateness: Option<Lateness>,
    /// When the consumers stopped (`DelayEnd`), ms since the Unix epoch.
    pub read_until_ms: Option<u64>,
    /// The latest delivery time of an acknowledged message, ms since the Unix epoch.
    pub latest_deliver_at_ms: Option<u64>,
}

/// A distribution of lateness, in ms (negative: received before the delivery time, which only
/// a broker clock ahead of the runner's may do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lateness {
    /// The earliest.
    pub min_ms: i64,
    /// The median.
    pub p50_ms: i64,
    /// The 99th percentile (nearest rank).
    pub p99_ms: i64,
    /// The latest.
    pub max_ms: i64,
}

/// The anomalies the checker looks for (see `notes/FAULTS.md` for their origin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnomalyKind {
    /// An acknowledged value at or below the highest offset read in its partition, never read.
    LostWrite,
    /// An acknowledged value above everything read in its partition, never read even by the
    /// final drain.
    Unseen,
    /// One value at two places (partition, offset).
    Duplicate,
    /// One place holding two values.
    InconsistentOffsets,
    /// A value whose send definitely failed was read (G1a).
    AbortedRead,
    /// A consumer read a partition backwards without a seek or rebalance in between.
    NonmonotonicPoll,
    /// A consumer skipped offsets of a partition without a seek or rebalance in between.
    PollSkip,
    /// A producer's later acknowledged send landed below an earlier one in the same partition.
    NonmonotonicSend,
    /// An offset below a group's final committed offset that no member of the group received
    /// (for a filtered group: a message its filter selects).
    GroupLost,
    /// A member of a filtered group received a message its filter does not select.
    FilterLeak,
    /// Replicas of a partition disagree, or one misses an acknowledged value below its end.
    Divergence,
    /// A delayed message received before its delivery time (less the allowed clock skew).
    EarlyRelease,
    /// An acknowledged delayed message never received although it was not cancelled (no cancel,
    /// or one that answered `AlreadyDelivered`).
    LostDelayed,
    /// A delayed message received although a cancel of it answered `Cancelled`.
    CancelledDelivered,
    /// A read that matches no send: a value never sent, or a delayed one carrying another
    /// delivery time than it was sent with.
    GarbageRead,
    /// A transaction's values seen only in part: by a `read_committed` reader that read past
    /// one of them without returning it while it returned another, or, for a transaction of
    /// unknown outcome, in the final `read_committed` drain.
    Torn,
    /// A transaction whose commit answered OK with a value missing from the final
    /// `read_committed` drain.
    LostCommit,
    /// The processor did not output a source value exactly once among the committed data:
    /// once if the group's final committed offset is past it, never otherwise.
    NotExactlyOnce,
    /// A partition's last stable offset stayed below an offset longer than the transaction
    /// timeout allows (plus 1 s and the allowance, extended past faults).
    StuckLso,
    /// A transaction of the workload still open (ongoing, or decided and not completed) at its
    /// coordinator when the wait after the run gave up.
    StuckTransaction,
    /// No transaction committed for a whole stretch with no fault active (after each heal's
    /// allowance) at least the transaction timeout plus the allowance long: the workload made
    /// no progress (a wedged coordinator, a full disk of the runner's machine, ...).
    Stalled,
    /// A retry delivered with an attempt number of 0 or above the policy's `max_attempts`.
    RetryAttempts,
    /// A retry received before its previous attempt's delivery plus the policy's wait for
    /// it (less the allowed clock skew).
    EarlyRetry,
    /// An acknowledged message a retry group never saw through (never delivered, or a
    /// message failing once never delivered again).
    LostRetry,
    /// A message that failed at every attempt or was rejected, missing from its group's
    /// dead-letter queue.
    DlqMissing,
    /// A dead letter of a message that was to be processed, or not matching its message.
    DlqUnexpected,
    /// A message dead-lettered twice by one group without a fresh delivery explaining it.
    DlqDuplicate,
    /// In a key-ordered group, a later message of a key delivered while an earlier one of the
    /// key waited for its retry.
    KeyOrder,
    /// An event the checker cannot interpret (e.g. an `ok` send without its offset): the
    /// history itself is broken, so the other verdicts may be incomplete.
    Malformed,
}

impl AnomalyKind {
    /// Every kind, in report order.
    pub const ALL: [AnomalyKind; 29] = [
        AnomalyKind::LostWrite,
        AnomalyKind::Unseen,
        AnomalyKind::Duplicate,
        AnomalyKind::InconsistentOffsets,
        AnomalyKind::AbortedRead,
        AnomalyKind::NonmonotonicPoll,
        AnomalyKind::PollSkip,
        AnomalyKind::NonmonotonicSend,
        AnomalyKind::GroupLost,
        AnomalyKind::FilterLeak,
        AnomalyKind::Divergence,
        AnomalyKind::EarlyRelease,
        AnomalyKind::LostDelayed,
        AnomalyKind::CancelledDelivered,
        AnomalyKind::GarbageRead,
        AnomalyKind::Torn,
        AnomalyKind::LostCommit,
        AnomalyKind::NotExactlyOnce,
        AnomalyKind::StuckLso,
        AnomalyKind::StuckTransaction,
        AnomalyKind::Stalled,
        AnomalyKind::RetryAttempts,
        AnomalyKind::EarlyRetry,
        AnomalyKind::LostRetry,
        AnomalyKind::DlqMissing,
        AnomalyKind::DlqUnexpected,
        AnomalyKind::DlqDuplicate,
        AnomalyKind::KeyOrder,
        AnomalyKind::Malformed,
    ];

    /// The kinds the log workload's history is checked for, in report order.
    pub const LOG: [AnomalyKind; 12] = [
        AnomalyKind::LostWrite,
        AnomalyKind::Unseen,
        AnomalyKind::Duplicate,
        AnomalyKind::InconsistentOffsets,
        AnomalyKind::AbortedRead,
        AnomalyKind::NonmonotonicPoll,
        AnomalyKind::PollSkip,
        AnomalyKind::NonmonotonicSend,
        AnomalyKind::GroupLost,
        AnomalyKind::FilterLeak,
        AnomalyKind::Divergence,
        AnomalyKind::Malformed,
    ];

    /// The kinds the delay workload's history is checked for, in report order: a message
    /// released twice is a `duplicate` (one value at two places), a failed send that is read an
    /// `aborted-read`.
    pub const DELAY: [AnomalyKind; 9] = [
        AnomalyKind::Duplicate,
        AnomalyKind::InconsistentOffsets,
        AnomalyKind::AbortedRead,
        AnomalyKind::Divergence,
        AnomalyKind::EarlyRelease,
        AnomalyKind::LostDelayed,
        AnomalyKind::CancelledDelivered,
        AnomalyKind::GarbageRead,
        AnomalyKind::Malformed,
    ];

    /// The kinds the txn workload's history is checked for, in report order: a value of a
    /// transaction that must have aborted read by a `read_committed` reader is an
    /// `aborted-read`; a value at two places a `duplicate`; a read of a value no transaction
    /// wrote (or in another partition) a `garbage-read`. The first topic's reads are in the
    /// write checks too (its probes and node copies): `inconsistent-offsets`, `divergence`.
    pub const TXN: [AnomalyKind; 12] = [
        AnomalyKind::AbortedRead,
        AnomalyKind::Torn,
        AnomalyKind::LostCommit,
        AnomalyKind::Duplicate,
        AnomalyKind::NotExactlyOnce,
        AnomalyKind::StuckLso,
        AnomalyKind::StuckTransaction,
        AnomalyKind::Stalled,
        AnomalyKind::GarbageRead,
        AnomalyKind::InconsistentOffsets,
        AnomalyKind::Divergence,
        AnomalyKind::Malformed,
    ];

    /// The kinds the retry workload's history is checked for, in report order: its sends and
    /// the final read of its topic go through the write and replica checks too.
    pub const RETRY: [AnomalyKind; 14] = [
        AnomalyKind::RetryAttempts,
        AnomalyKind::EarlyRetry,
        AnomalyKind::LostRetry,
        AnomalyKind::DlqMissing,
        AnomalyKind::DlqUnexpected,
        AnomalyKind::DlqDuplicate,
        AnomalyKind::KeyOrder,
        AnomalyKind::LostWrite,
        AnomalyKind::Unseen,
        AnomalyKind::Duplicate,
        AnomalyKind::InconsistentOffsets,
        AnomalyKind::AbortedRead,
        AnomalyKind::Divergence,
        AnomalyKind::Malformed,
    ];

    /// The kinds a history of `workload` is checked for.
    pub fn checked_for(workload: WorkloadKind) -> &'static [AnomalyKind] {
        match workload {
            WorkloadKind::Log => &AnomalyKind::LOG,
            WorkloadKind::Delay => &AnomalyKind::DELAY,
            WorkloadKind::Txn => &AnomalyKind::TXN,
            WorkloadKind::Retry => &AnomalyKind::RETRY,
        }
    }

    /// The kind's name as the report prints it (`lost-write`, …).
    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::LostWrite => "lost-write",
            AnomalyKind::Unseen => "unseen",
            AnomalyKind::Duplicate => "duplicate",
            AnomalyKind::InconsistentOffsets => "inconsistent-offsets",
            AnomalyKind::AbortedRead => "aborted-read",
            AnomalyKind::NonmonotonicPoll => "nonmonotonic-poll",
            AnomalyKind::PollSkip => "poll-skip",
            AnomalyKind::NonmonotonicSend => "nonmonotonic-send",
            AnomalyKind::GroupLost => "group-lost",
            AnomalyKind::FilterLeak => "filter-leak",
            AnomalyKind::Divergence => "divergence",
            AnomalyKind::EarlyRelease => "early-release",
            AnomalyKind::LostDelayed => "lost-delayed",
            AnomalyKind::CancelledDelivered => "cancelled-delivered",
            AnomalyKind::GarbageRead => "garbage-read",
            AnomalyKind::Torn => "torn",
            AnomalyKind::LostCommit => "lost-commit",
            AnomalyKind::NotExactlyOnce => "not-exactly-once",
            AnomalyKind::StuckLso => "stuck-lso",
            AnomalyKind::StuckTransaction => "stuck-transaction",
            AnomalyKind::Stalled => "stalled",
            AnomalyKind::RetryAttempts => "retry-attempts",
            AnomalyKind::EarlyRetry => "early-retry",
            AnomalyKind::LostRetry => "lost-retry",
            AnomalyKind::DlqMissing => "dlq-missing",
            AnomalyKind::DlqUnexpected => "dlq-unexpected",
            AnomalyKind::DlqDuplicate => "dlq-duplicate",
            AnomalyKind::KeyOrder => "key-order",
            AnomalyKind::Malformed => "malformed",
        }
    }
}

/// All instances of one anomaly kind: the full count, and the first few with evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Findings {
    /// How many instances were found.
    pub count: u64,
    /// The first [`EXAMPLES_PER_KIND`] of them.
    pub examples: Vec<Anomaly>,
}

impl Findings {
    /// Counts one instance, keeping it as an example while there is room.
    pub fn push(&mut self, anomaly: Anomaly) {
        self.count += 1;
        if self.examples.len() < EXAMPLES_PER_KIND {
            self.examples.push(anomaly);
        }
    }
}

/// How the operations of one kind ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpTotals {
    /// The operation kind, as in the history (`send`, `poll`, `fault`, …).
    pub op: String,
    /// Invocations.
    pub invoked: u64,
    /// `ok` completions.
    pub ok: u64,
    /// `fail` completions.
    pub fail: u64,
    /// `info` completions (outcome unknown).
    pub info: u64,
}

/// What one consumer group received.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStats {
    /// The group.
    pub group: String,
    /// Distinct (partition, offset) pairs its members received.
    pub delivered: u64,
    /// Deliveries beyond the first of the same (partition, offset): at-least-once redelivery,
    /// allowed.
    pub redeliveries: u64,
    /// Its final committed offset per partition (empty if the history has none).
    pub committed: Vec<(u32, u64)>,
}

/// Availability figures, from the times of `ok` send completions (at level `all`: an earlier
/// answer is no sign the cluster can commit).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Availability {
    /// The longest stretch of the run without an acknowledged send (from the first send's
    /// invocation to the last send's completion).
    pub longest_gap_ns: u64,
    /// When that stretch began (ns since the run started).
    pub longest_gap_from_ns: u64,
    /// One entry per fault, in the order they started.
    pub windows: Vec<FaultWindow>,
}

/// Availability during one fault, from its start to its heal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultWindow {
    /// The fault's name.
    pub name: String,
    /// The nodes it affected.
    pub nodes: Vec<u64>,
    /// When it started (ns since the run started).
    pub start_ns: u64,
    /// When it healed; `None` if the history never heals it.
    pub heal_ns: Option<u64>,
    /// The longest gap between successive acknowledged sends that overlaps the window.
    pub longest_gap_ns: u64,
    /// From the heal to the first acknowledged send after it; `None` if none came (or no heal).
    pub recovery_ns: Option<u64>,
    /// Sends completed `ok` inside the window.
    pub sends_ok: u64,
    /// Sends completed `fail` inside the window.
    pub sends_failed: u64,
    /// Sends completed `info` inside the window.
    pub sends_unknown: u64,
}

impl Report {
    /// Whether no anomaly of any kind was found.
    pub fn is_clean(&self) -> bool {
        self.anomalies.values().all(|f| f.count == 0)
    }

    /// How many instances of `kind` were found.
    pub fn count(&self, kind: AnomalyKind) -> u64 {
        self.anomalies.get(&kind).map_or(0, |f| f.count)
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // A report holds only strings, integers, lists and maps keyed by unit enum variants,
        // all of which serde_json can represent: failure here is a programming error.
        serde_json::to_string_pretty(self).expect("a report always serializes to JSON")
    }

    /// Reads a report written by [`Report::write_json`].
    pub fn from_json(text: &str) -> io::Result<Report> {
        serde_json::from_str(text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("report: {e}")))
    }

    /// Writes the report as JSON to `path` (conventionally `report.json` in the run directory).
    pub fn write_json(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, self.to_json() + "\n")
            .map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))
    }

    /// A summary readable at a glance: the verdict, counts per anomaly with a first example,
    /// send outcomes, per-group figures, and the availability table. `seed` is the run's
    /// schedule seed, printed so a failing run can be replayed.
    pub fn summary(&self, seed: Option<u64>) -> String {
        let mut out = String::new();
        let verdict = if self.is_clean() { "CLEAN" } else { "ANOMALIES FOUND" };
        let seed = seed.map_or_else(|| "none".to_owned(), |s| s.to_string());
        let _ = writeln!(out, "{verdict}  (seed {seed}, {} events)", self.events);
        self.write_ops(&mut out);
        if let Some(acks) = &self.acks {
            acks.write(&mut out);
        }
        if let Some(delay) = &self.delay {
            write_delay(&mut out, delay);
        }
        if let Some(txn) = &self.txn {
            write_txn(&mut out, txn);
        }
        if let Some(retry) = &self.retry {
            retry::write(&mut out, retry);
        }
        self.write_anomalies(&mut out);
        self.write_groups(&mut out);
        self.write_availability(&mut out);
        out
    }

    fn write_ops(&self, out: &mut String) {
        if let Some(send) = self.totals.iter().find(|t| t.op == "send") {
            let _ = writeln!(
                out,
                "sends: {} invoked, {} acknowledged, {} failed, {} unknown",
                send.invoked, send.ok, send.fail, send.info
            );
        }
        let _ = writeln!(out, "{:<16} {:>8} {:>8} {:>8} {:>8}", "op", "invoked", "ok", "fail", "info");
        for t in &self.totals {
            let _ = writeln!(out, "{:<16} {:>8} {:>8} {:>8} {:>8}", t.op, t.invoked, t.ok, t.fail, t.info);
        }
    }

    fn write_anomalies(&self, out: &mut String) {
        let _ = writeln!(out, "anomalies:");
        for (kind, findings) in &self.anomalies {
            let first = findings.examples.first().map(|a| format!("  e.g. {}", a.describe()));
            let _ = writeln!(out, "  {:<22} {:>6}{}", kind.name(), findings.count, first.unwrap_or_default());
        }
    }

    fn write_groups(&self, out: &mut String) {
        for g in &self.groups {
            let _ = writeln!(
                out,
                "group {}: {} delivered, {} redelivered, committed {:?}",
                g.group, g.delivered, g.redeliveries, g.committed
            );
        }
    }

    fn write_availability(&self, out: &mut String) {
        let a = &self.availability;
        let _ =
            writeln!(out, "longest gap without an ack: {} (from {})", ms(a.longest_gap_ns), ms(a.longest_gap_from_ns));
        if a.windows.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "{:<20} {:<10} {:>10} {:>10} {:>11} {:>11} {:>5} {:>5} {:>5}",
            "fault", "nodes", "start", "heal", "longest gap", "recovery", "ok", "fail", "info"
        );
        for w in &a.windows {
            let nodes = w.nodes.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
            let _ = writeln!(
                out,
                "{:<20} {:<10} {:>10} {:>10} {:>11} {:>11} {:>5} {:>5} {:>5}",
                w.name,
                nodes,
                ms(w.start_ns),
                w.heal_ns.map_or_else(|| "never".to_owned(), ms),
                ms(w.longest_gap_ns),
                w.recovery_ns.map_or_else(|| "none".to_owned(), ms),
                w.sends_ok,
                w.sends_failed,
                w.sends_unknown
            );
        }
    }
}

/// The delay workload's lines of the summary.
fn write_delay(out: &mut String, d: &DelayStats) {
    let _ = writeln!(
        out,
        "delayed sends: {} invoked, {} acknowledged, {} failed, {} unknown",
        d.sent, d.acked, d.failed, d.unknown
    );
    let _ = writeln!(
        out,
        "cancels: {} invoked, {} cancelled, {} already delivered, {} unknown",
        d.cancels, d.cancelled, d.already_delivered, d.cancels_unknown
    );
    let until = match (d.read_until_ms, d.latest_deliver_at_ms) {
        (Some(until), Some(latest)) => {
            format!("{} ms after the latest acknowledged deliver_at", i128::from(until) - i128::from(latest))
        }
        (Some(until), None) => format!("at {until} ms"),
        (None, _) => "(not recorded)".to_owned(),
    };
    let _ = writeln!(
        out,
        "received: {} distinct delayed messages ({} reads), {} expected; consumers stopped {until}",
        d.received, d.reads, d.expected
    );
    match d.lateness {
        Some(l) => {
            let _ = writeln!(
                out,
                "lateness (receipt - deliver_at): min {}ms, p50 {}ms, p99 {}ms, max {}ms; clock skew allowed {}ms",
                l.min_ms, l.p50_ms, l.p99_ms, l.max_ms, d.max_clock_skew_ms
            );
        }
        None => {
            let _ = writeln!(out, "lateness: nothing received; clock skew allowed {}ms", d.max_clock_skew_ms);
        }
    }
}

/// The txn workload's lines of the summary.
fn write_txn(out: &mut String, t: &TxnStats) {
    let _ = writeln!(
        out,
        "transactions: {} invoked, {} committed, {} aborted, {} abandoned, {} fenced, {} failed before commit, {} unknown \
         ({} resolved committed, {} aborted); {} producer instances; timeout {}ms",
        t.transactions,
        t.committed,
        t.aborted,
        t.abandoned,
        t.fenced,
        t.failed,
        t.unknown,
        t.unknown_committed,
        t.unknown_aborted,
        t.instances,
        t.timeout_ms
    );
    let _ = writeln!(
        out,
        "values: {} written, {} visible in the final read_committed drain, {} records read by the readers; aborted \
         values in the log (read_uncommitted): {} of {}",
        t.values, t.visible, t.reader_reads, t.aborted_in_log, t.must_abort_values
    );
    let caught_up = match t.caught_up {
        Some(true) => "caught up",
        Some(false) => "NOT caught up",
        None => "(end not recorded)",
    };
    let checked = if t.exactly_once_checked { "" } else { "; exactly-once NOT checked (a final read is missing)" };
    let _ = writeln!(
        out,
        "processor: {} transactions, {} source values, {} consumed (below the group's committed offsets), {caught_up}{checked}",
        t.processor_transactions, t.sources, t.consumed
    );
    let settled = match t.settled {
        Some(true) => "settled before the drains",
        Some(false) => "NOT settled before the drains",
        None => "(settling not recorded)",
    };
    let _ = writeln!(
        out,
        "last stable offsets: {} samples, longest lag {}ms, {settled}",
        t.lso_samples, t.longest_lso_lag_ms
    );
}

/// Nanoseconds as milliseconds with one decimal, e.g. `1234.5ms`.
fn ms(ns: u64) -> String {
    format!("{}.{}ms", ns / 1_000_000, (ns % 1_000_000) / 100_000)
}
