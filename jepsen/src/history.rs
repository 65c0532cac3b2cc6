//! The history of a run: every client operation recorded when it is invoked and when it
//! completes, plus the faults and the final reads, one JSON object per line
//! (`history.jsonl` in the run directory). The checker reads nothing else, so a history
//! written by hand (the checker's own tests) is checked exactly as a real one.
//!
//! Completion types follow Jepsen: `ok` (it happened), `fail` (it certainly did not happen)
//! and `info` (unknown: a timeout or a lost connection; a send may or may not have been
//! written).
//!
//! Per-partition data are lists of `(partition, …)` pairs rather than maps: JSON object keys
//! are strings, which serde's tagged enums cannot read back as numbers.

use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};

mod retry;

pub use self::retry::{DeadLetter, Fate, KEYS, RetryAction, RetryGroup, RetryRead, fate_of, key_of};

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the history (0, 1, 2, …): the order events were recorded in.
    pub index: u64,
    /// Nanoseconds since the run started (monotonic).
    pub time_ns: u64,
    /// The client process the operation belongs to (a producer, a group member, a reader);
    /// `u32::MAX` for the runner itself (faults, final reads), `u32::MAX - 1` for the
    /// runner's probes (`crate::probe`).
    pub process: u32,
    /// Invocation or completion.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// What was done, and (on completion) what came of it.
    pub op: Op,
    /// Why an operation completed `fail` or `info`, as the client reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether an event starts an operation or says how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The operation starts.
    Invoke,
    /// It happened.
    Ok,
    /// It certainly did not happen.
    Fail,
    /// Unknown whether it happened.
    Info,
}

/// The operations of the workload. A completion repeats its invocation's operation with the
/// results filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum Op {
    /// Produce one unique `value` (its partition is chosen by the producer). On `ok`:
    /// where it was written — for `acks` `leader` and `none`, only the partition (such an
    /// answer comes before the commit, so there is no offset to hold the broker to).
    Send {
        /// Unique in the whole run.
        value: String,
        /// The partition it was acknowledged in.
        partition: Option<u32>,
        /// The offset it was acknowledged at.
        offset: Option<u64>,
        /// The producer's acknowledgement level; absent (`all`) in histories from before
        /// producers had levels.
        #[serde(default)]
        acks: AckLevel,
    },
    /// One poll of a consumer (group member or assign-mode reader). On `ok`: per partition,
    /// the (offset, value) pairs returned, in order.
    Poll {
        /// The group the consumer is a member of; `None` for an assign-mode reader.
        group: Option<String>,
        /// Per partition (ascending), what the poll returned.
        reads: Vec<(u32, Vec<(u64, String)>)>,
    },
    /// A consumer's partitions changed (a group rebalance, or an assign-mode seek): later
    /// polls of these partitions may legitimately restart from another offset.
    Assign {
        /// The group, for a member.
        group: Option<String>,
        /// The partitions it owns from now on.
        partitions: Vec<u32>,
        /// Where it will read each from next, per partition (ascending).
        positions: Vec<(u32, u64)>,
    },
    /// A group member commits offsets (the next offset to read, per partition).
    Commit {
        /// The group.
        group: String,
        /// (partition, next offset to read), ascending.
        offsets: Vec<(u32, u64)>,
    },
    /// A fault starts or heals (process `u32::MAX`, kinds `info`).
    Fault {
        /// The fault's name, e.g. `kill`, `pause`, `partition-leader`.
        name: String,
        /// `start` or `heal`.
        phase: String,
        /// Nodes it affects.
        nodes: Vec<u64>,
    },
    /// The final drain: everything partition `partition` holds, read from its start after
    /// every fault healed.
    FinalRead {
        /// The partition.
        partition: u32,
        /// Every (offset, value), in order.
        reads: Vec<(u64, String)>,
    },
    /// One node's local copy of a partition, read from its data directory after the run.
    NodeLog {
        /// The node.
        node: u64,
        /// The partition.
        partition: u32,
        /// Every (offset, value) it holds, in order.
        entries: Vec<(u64, String)>,
    },
    /// A group's members consume with a tag filter (recorded once by the runner, before any
    /// member joins): they must receive exactly the messages whose tag ([`tag_of`]) is one of
    /// `tags`.
    Subscribe {
        /// The group.
        group: String,
        /// The tags its filter selects.
        tags: Vec<String>,
    },
    /// The group's committed offsets after the run, from its coordinator.
    FinalCommitted {
        /// The group.
        group: String,
        /// (partition, committed offset), ascending.
        offsets: Vec<(u32, u64)>,
    },
    /// The delay workload's parameters, recorded once by the runner (`ok`) before anything is
    /// sent: what the checker needs to judge delivery times.
    DelaySetup {
        /// How far a broker's wall clock may be from the runner's, in ms: the bound of the
        /// clock fault when it is in the schedule, 0 otherwise. A leader releases a message
        /// when *its* clock reaches the delivery time, so by the runner's clock a release may
        /// come this much early (or, after a leader whose clock ran ahead, this much late).
        max_clock_skew_ms: u64,
        /// How long after the latest delivery time (plus the skew) the consumers read at least.
        grace_ms: u64,
        /// Delivery times are drawn from `now + 0..=max_delay_ms`.
        max_delay_ms: u64,
        /// The share of acknowledged messages the canceller picks, in percent.
        cancel_percent: u32,
    },
    /// Produce one unique delayed `value`, due at `deliver_at_ms`. On `ok`: its delayed id
    /// (`partition`, `seq`); it has no offset until it is released.
    DelaySend {
        /// Unique in the whole run (also its key).
        value: String,
        /// When it is due, in ms since the Unix epoch by the runner's clock.
        deliver_at_ms: u64,
        /// The partition that acknowledged it.
        partition: Option<u32>,
        /// Its number among the partition's delayed messages.
        seq: Option<u64>,
    },
    /// Cancel the delayed message sent as `value`, by its id. On `ok`: what the partition
    /// answered. `info`: unknown whether the cancel took effect.
    Cancel {
        /// The message's value.
        value: String,
        /// Its id: the partition.
        partition: u32,
        /// Its id: the number.
        seq: u64,
        /// The answer, on `ok`.
        outcome: Option<CancelResult>,
    },
    /// One poll of a delay workload consumer (every partition, from the earliest offset). On
    /// `ok`: when the poll returned, by the runner's wall clock, and every record it returned.
    DelayPoll {
        /// When the poll returned, in ms since the Unix epoch.
        received_ms: Option<u64>,
        /// The records, in the order returned.
        reads: Vec<DelayRead>,
    },
    /// The delay workload's consumers stopped (recorded once by the runner, `ok`).
    DelayEnd {
        /// When, in ms since the Unix epoch by the runner's clock.
        at_ms: u64,
        /// How many acknowledged messages the runner still expected and had not received.
        missing: u64,
    },
    /// The retry workload's parameters, recorded once by the runner (`ok`) before anything is
    /// sent: its groups and their policy (a ladder of waits, no jitter), what the checker
    /// needs to judge attempts and due times.
    RetrySetup {
        /// The groups consuming the topic.
        groups: Vec<RetryGroup>,
        /// The wait after attempt `n` is `ladder_ms[n - 1]` (the last one beyond).
        ladder_ms: Vec<u64>,
        /// Deliveries before a message goes to the dead-letter queue.
        max_attempts: u32,
        /// How far a coordinator's wall clock may be from the runner's, in ms (as for the
        /// delay workload): a retry may come this much early by the runner's clock.
        max_clock_skew_ms: u64,
    },
    /// One poll of a retry workload member. On `ok`: every record it returned, with its
    /// attempt and what the member did with it (acks, nacks and rejects go to the coordinator
    /// with the member's next settles).
    RetryPoll {
        /// The member's group.
        group: String,
        /// The records, in the order returned.
        reads: Vec<RetryRead>,
    },
    /// The retry workload's members stopped (recorded once by the runner, `ok`).
    RetryEnd {
        /// Messages whose fate the members had not seen through, per the runner's count.
        unresolved: u64,
    },
    /// A group's dead-letter queue, read whole after the members stopped (runner, `ok`).
    DeadLetters {
        /// The group.
        group: String,
        /// Every entry, by offset.
        entries: Vec<DeadLetter>,
    },
    /// The txn workload's parameters, recorded once by the runner (`ok`) before anything is
    /// written.
    TxnSetup {
        /// The topics transactions write to. The first is the one the runner's probes write to
        /// and whose node copies are recorded (`node_log`).
        topics: Vec<String>,
        /// Partitions of each of them.
        partitions: u32,
        /// The processor's input topic (plain writes).
        source: String,
        /// Its partitions.
        source_partitions: u32,
        /// The processor's consumer group.
        group: String,
        /// The transaction timeout every producer registers, in ms.
        timeout_ms: u64,
        /// How much longer than `timeout_ms + 1 s` an offset may stay above a partition's last
        /// stable offset while no fault is active, in ms.
        lso_allowance_ms: u64,
        /// The same after a fault heals (recovery: restarts, elections, coordinator failover,
        /// markers retried), in ms.
        heal_allowance_ms: u64,
    },
    /// A transactional producer instance is registered (InitTransactions): `ok` once it fenced
    /// any older instance of the id and aborted what it left open; `info` if that failed.
    TxnInit {
        /// The transactional id.
        transactional_id: String,
    },
    /// One transaction: invoked with what it will write (and, for the processor, the source
    /// offsets it commits), completed with its outcome: `ok` committed, `fail` certainly not
    /// committed (aborted, abandoned, fenced, failed before its commit was asked for), `info`
    /// unknown (its commit was asked for and did not answer OK).
    Txn {
        /// Unique in the run: `w{writer}-{n}` or, for the processor, `x-{n}`.
        label: String,
        /// What the workload meant to do with it.
        plan: TxnPlan,
        /// Every value it writes, with its place; values are unique in the run.
        values: Vec<TxnValue>,
        /// (source partition, next offset) committed for the processor's group with it.
        offsets: Vec<(u32, u64)>,
        /// How it ended, on completion.
        outcome: Option<TxnOutcome>,
    },
    /// One poll of a `read_committed` reader. On `ok`: every record returned, in order.
    TxnPoll {
        /// The records.
        reads: Vec<TxnRead>,
    },
    /// One look at the transactional topics' offsets (`describe_topic`): per partition that
    /// answered, its last stable offset and its end (high watermark).
    TxnLso {
        /// The partitions that answered, on `ok`.
        partitions: Vec<LsoSample>,
    },
    /// The end of the txn workload's clients (recorded once by the runner, `ok`, before the
    /// final drains).
    TxnEnd {
        /// Whether the processor caught up with its source before it was stopped.
        caught_up: bool,
        /// Whether every partition's last stable offset reached its end, and no transaction of
        /// the workload was open, before the drains.
        settled: bool,
        /// What was still unsettled when the wait gave up.
        unsettled: Vec<String>,
        /// Of it, the transactions of the workload still open at their coordinator
        /// (`"{transactional id} {state}"`).
        #[serde(default)]
        open: Vec<String>,
    },
    /// The final drain of one partition, read whole from its start (runner, `ok`).
    TxnDrain {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// `read_committed` (true) or `read_uncommitted`.
        committed: bool,
        /// The end offset read up to (last stable offset, or high watermark).
        end: u64,
        /// Every (offset, value) returned, in order.
        reads: Vec<(u64, String)>,
    },
    /// The processor's group's committed offsets of its source topic after the run (runner,
    /// `ok`).
    TxnOffsets {
        /// The group.
        group: String,
        /// (partition, committed offset), ascending; a partition never committed is absent.
        offsets: Vec<(u32, u64)>,
    },
}

/// A producer's acknowledgement level (`sluice_client::Acks`): what an `ok` send promises,
/// and so which of its losses the checker may call an anomaly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckLevel {
    /// Acknowledged once committed (replicated to a majority and fsynced): `ok` gives the
    /// offset, and the message must never be lost.
    #[default]
    All,
    /// Acknowledged once the partition's leader queued it in its log: `ok` gives no offset,
    /// and the message may be lost with that leader (never duplicated: idempotence is on).
    Leader,
    /// Never acknowledged: `ok` means it is on its way to the leader. It may be lost; it is
    /// never resent, so it is never duplicated either.
    None,
}

impl AckLevel {
    /// Every level, in report order.
    pub const ALL: [AckLevel; 3] = [AckLevel::All, AckLevel::Leader, AckLevel::None];

    /// Its name in the history and the report.
    pub fn name(self) -> &'static str {
        match self {
            AckLevel::All => "all",
            AckLevel::Leader => "leader",
            AckLevel::None => "none",
        }
    }

    /// Whether an `ok` of it says where the message is: only a committed write has an offset
    /// that can be compared with what is read.
    pub fn has_offset(self) -> bool {
        self == AckLevel::All
    }
}

/// What the txn workload meant to do with a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnPlan {
    /// Commit it.
    Commit,
    /// Write its records, then abort it.
    Abort,
    /// Write its records, then drop the producer without ending it (a producer of its own
    /// transactional id, never used again): its coordinator must abort it at its timeout.
    Abandon,
    /// Write its records, register a new instance of the same transactional id (which fences
    /// this one and aborts the transaction), then ask the old instance to commit.
    Fence,
    /// The processor drops itself mid-transaction (records and offsets written) and is
    /// replaced: the new instance fences the old one and aborts the transaction.
    Crash,
}

/// How a transaction ended, as far as its producer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnOutcome {
    /// Its commit answered OK.
    Committed,
    /// Its abort answered OK (its commit was never asked for).
    Aborted,
    /// Dropped on purpose, never ended by its producer.
    Abandoned,
    /// Its instance was fenced before its commit was asked for (a producer call answered
    /// PRODUCER_FENCED, or a new instance of its id registered first).
    Fenced,
    /// A call failed before its commit was asked for, and no abort answered OK.
    Failed,
    /// Its commit was asked for and did not answer OK: it may commit or abort.
    Unknown,
}

impl TxnOutcome {
    /// Whether it certainly never commits: its commit was never asked for, or its instance
    /// had been fenced before.
    pub fn must_abort(self) -> bool {
        matches!(self, TxnOutcome::Aborted | TxnOutcome::Abandoned | TxnOutcome::Fenced | TxnOutcome::Failed)
    }

    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            TxnOutcome::Committed => "committed",
            TxnOutcome::Aborted => "aborted",
            TxnOutcome::Abandoned => "abandoned",
            TxnOutcome::Fenced => "fenced",
            TxnOutcome::Failed => "failed",
            TxnOutcome::Unknown => "unknown",
        }
    }
}

/// One value a transaction writes, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnValue {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The value, unique in the run.
    pub value: String,
}

/// One record a `read_committed` reader returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRead {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The offset.
    pub offset: u64,
    /// The value.
    pub value: String,
}

/// One partition's offsets, as `describe_topic` gave them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LsoSample {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// Its last stable offset: `read_committed` readers see nothing at or above it.
    pub lso: u64,
    /// Its end (high watermark).
    pub end: u64,
}

/// What cancelling a delayed message answered (`sluice_client::CancelOutcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelResult {
    /// It will never be delivered.
    Cancelled,
    /// It was released (appended) before the cancel, and is delivered exactly once.
    AlreadyDelivered,
}

/// One record a delay workload consumer received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelayRead {
    /// Where: the partition.
    pub partition: u32,
    /// Where: the offset.
    pub offset: u64,
    /// Its value.
    pub value: String,
    /// Its `sluice.deliver_at` property, if it has one that is a number.
    pub deliver_at_ms: Option<u64>,
}

impl Op {
    /// Whether the operation belongs to the txn workload.
    pub fn is_txn(&self) -> bool {
        matches!(
            self,
            Op::TxnSetup { .. }
                | Op::TxnInit { .. }
                | Op::Txn { .. }
                | Op::TxnPoll { .. }
                | Op::TxnLso { .. }
                | Op::TxnEnd { .. }
                | Op::TxnDrain { .. }
                | Op::TxnOffsets { .. }
        )
    }

    /// Whether the operation belongs to the retry workload.
    pub fn is_retry(&self) -> bool {
        matches!(self, Op::RetrySetup { .. } | Op::RetryPoll { .. } | Op::RetryEnd { .. } | Op::DeadLetters { .. })
    }

    /// Whether the operation belongs to the delay workload.
    pub fn is_delay(&self) -> bool {
        matches!(
            self,
            Op::DelaySetup { .. }
                | Op::DelaySend { .. }
                | Op::Cancel { .. }
                | Op::DelayPoll { .. }
                | Op::DelayEnd { .. }
        )
    }
}

/// Which workload a run drives (`run --workload`), and so which checks its history gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    /// The message log: producers, consumer groups, assign-mode readers, the final drain.
    #[default]
    Log,
    /// Delayed messages: sent with a delivery time, some cancelled, read once released.
    Delay,
    /// Transactions: writers committing, aborting, abandoning and fencing transactions over
    /// two topics, a consume-transform-produce processor, `read_committed` readers.
    Txn,
    /// Retries: group members acking, nacking and rejecting by each message's fate, in an
    /// unordered and a key-ordered group; the dead-letter queues read after.
    Retry,
}

impl WorkloadKind {
    /// The workload a history comes from: `delay` if it holds any delay operation, `txn` if
    /// it holds any transaction operation.
    pub fn of(events: &[Event]) -> WorkloadKind {
        if events.iter().any(|e| e.op.is_delay()) {
            WorkloadKind::Delay
        } else if events.iter().any(|e| e.op.is_txn()) {
            WorkloadKind::Txn
        } else if events.iter().any(|e| e.op.is_retry()) {
            WorkloadKind::Retry
        } else {
            WorkloadKind::Log
        }
    }

    /// Its command-line name.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Log => "log",
            WorkloadKind::Delay => "delay",
            WorkloadKind::Txn => "txn",
            WorkloadKind::Retry => "retry",
        }
    }
}

impl std::fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Appends events to a history file as they happen, numbering them.
#[derive(Debug)]
pub struct Recorder<W: Write> {
    out: W,
    next: u64,
    started: std::time::Instant,
}

impl<W: Write> Recorder<W> {
    /// A recorder writing to `out`, with time 0 now.
    pub fn new(out: W) -> Recorder<W> {
        Recorder { out, next: 0, started: std::time::Instant::now() }
    }

    /// Records one event and returns its index.
    pub fn record(&mut self, process: u32, kind: Kind, op: Op) -> io::Result<u64> {
        self.record_error(process, kind, op, None)
    }

    /// Records one event with the error the client reported, and returns its index.
    pub fn record_error(&mut self, process: u32, kind: Kind, op: Op, error: Option<String>) -> io::Result<u64> {
        let index = self.next;
        let time_ns = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let event = Event { index, time_ns, process, kind, op, error };
        serde_json::to_writer(&mut self.out, &event)?;
        self.out.write_all(b"\n")?;
        self.next += 1;
        Ok(index)
    }

    /// Flushes what is buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Reads a history written by a [`Recorder`] (or by hand); a malformed line is an error
/// naming its line number.
pub fn read(input: impl BufRead) -> io::Result<Vec<Event>> {
    let mut events = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let event = serde_json::from_str(&line)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("history line {}: {e}", n + 1)))?;
        events.push(event);
    }
    Ok(events)
}

/// The tag producers give the value `"{process}-{n}"`: `t{n mod 4}`, so a filter's matches can
/// be told from the value alone. `None` for a value not made that way — the runner's probes
/// (`probe-<n>`) are sent untagged.
pub fn tag_of(value: &str) -> Option<String> {
    let (process, n) = value.split_once('-')?;
    process.parse::<u32>().ok()?;
    Some(format!("t{}", n.parse::<u64>().ok()? % 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_json_lines() {
        let mut recorder = Recorder::new(Vec::new());
        let send = Op::Send { value: "v1".into(), partition: None, offset: None, acks: AckLevel::All };
        recorder.record(0, Kind::Invoke, send).unwrap();
        let done = Op::Send { value: "v1".into(), partition: Some(2), offset: Some(7), acks: AckLevel::All };
        recorder.record(0, Kind::Ok, done.clone()).unwrap();
        let reads = vec![(2, vec![(7, "v1".to_owned())])];
        recorder.record(1, Kind::Ok, Op::Poll { group: Some("g".into()), reads }).unwrap();
        let buffer = recorder.out;
        let text = String::from_utf8(buffer.clone()).unwrap();
        assert!(text.lines().next().unwrap().contains(r#""type":"invoke""#), "{text}");
        assert!(text.contains(r#""f":"send""#), "{text}");
        let events = read(&buffer[..]).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!((events[1].index, events[1].kind, &events[1].op), (1, Kind::Ok, &done));
    }

    #[test]
    fn a_send_records_its_level_and_one_without_a_level_is_at_all() {
        let leader = Op::Send { value: "0-1".into(), partition: Some(3), offset: None, acks: AckLevel::Leader };
        let mut recorder = Recorder::new(Vec::new());
        recorder.record(0, Kind::Ok, leader.clone()).unwrap();
        let text = String::from_utf8(recorder.out).unwrap();
        assert!(text.contains(r#""acks":"leader""#), "{text}");
        assert_eq!(read(text.as_bytes()).unwrap()[0].op, leader);
        // A line written before levels existed.
        let old = r#"{"index":0,"time_ns":0,"process":0,"type":"ok","op":{"f":"send","value":"0-2","partition":1,"offset":4}}"#;
        let op = &read(old.as_bytes()).unwrap()[0].op;
        assert_eq!(op, &Op::Send { value: "0-2".into(), partition: Some(1), offset: Some(4), acks: AckLevel::All });
        assert!(AckLevel::All.has_offset() && !AckLevel::Leader.has_offset() && !AckLevel::None.has_offset());
    }

    #[test]
    fn delay_events_round_trip_and_mark_a_delay_history() {
        let mut recorder = Recorder::new(Vec::new());
        let send =
            Op::DelaySend { value: "0-1".into(), deliver_at_ms: 1_700_000_000_500, partition: Some(2), seq: Some(9) };
        recorder.record(0, Kind::Ok, send.clone()).unwrap();
        let cancel =
            Op::Cancel { value: "0-1".into(), partition: 2, seq: 9, outcome: Some(CancelResult::AlreadyDelivered) };
        recorder.record(2, Kind::Ok, cancel.clone()).unwrap();
        let record = DelayRead { partition: 2, offset: 4, value: "0-1".into(), deliver_at_ms: Some(1_700_000_000_500) };
        let poll = Op::DelayPoll { received_ms: Some(1_700_000_000_510), reads: vec![record] };
        recorder.record(3, Kind::Ok, poll.clone()).unwrap();
        let buffer = recorder.out;
        let text = String::from_utf8(buffer.clone()).unwrap();
        assert!(text.contains(r#""f":"delay_send""#) && text.contains(r#""outcome":"already_delivered""#), "{text}");
        let events = read(&buffer[..]).unwrap();
        assert_eq!([&events[0].op, &events[1].op, &events[2].op], [&send, &cancel, &poll]);
        assert_eq!(WorkloadKind::of(&events), WorkloadKind::Delay);
        assert_eq!(WorkloadKind::of(&events[..0]), WorkloadKind::Log);
    }

    #[test]
    fn txn_events_round_trip_and_mark_a_txn_history() {
        let mut recorder = Recorder::new(Vec::new());
        let value = TxnValue { topic: "txn-a".into(), partition: 2, value: "w0-1-0".into() };
        let txn = Op::Txn {
            label: "w0-1".into(),
            plan: TxnPlan::Fence,
            values: vec![value],
            offsets: vec![(0, 7)],
            outcome: Some(TxnOutcome::Fenced),
        };
        recorder.record(0, Kind::Fail, txn.clone()).unwrap();
        let record = TxnRead { topic: "txn-b".into(), partition: 1, offset: 4, value: "w0-0-3".into() };
        let poll = Op::TxnPoll { reads: vec![record] };
        recorder.record(5, Kind::Ok, poll.clone()).unwrap();
        let lso = Op::TxnLso { partitions: vec![LsoSample { topic: "txn-a".into(), partition: 0, lso: 3, end: 9 }] };
        recorder.record(6, Kind::Ok, lso.clone()).unwrap();
        let buffer = recorder.out;
        let text = String::from_utf8(buffer.clone()).unwrap();
        assert!(text.contains(r#""plan":"fence""#) && text.contains(r#""outcome":"fenced""#), "{text}");
        let events = read(&buffer[..]).unwrap();
        assert_eq!([&events[0].op, &events[1].op, &events[2].op], [&txn, &poll, &lso]);
        assert_eq!(WorkloadKind::of(&events), WorkloadKind::Txn);
        assert!(TxnOutcome::Fenced.must_abort() && !TxnOutcome::Unknown.must_abort());
        assert!(!TxnOutcome::Committed.must_abort() && TxnOutcome::Failed.must_abort());
    }

    #[test]
    fn a_malformed_line_is_reported_with_its_number() {
        let text = "{\"index\":0}\n";
        let e = read(text.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("history line 1"), "{e}");
    }
}
