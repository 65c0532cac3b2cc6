//! One anomaly instance and the evidence that shows it: the values, partitions, offsets and
//! event indexes a reader needs to find it in `history.jsonl`.

use serde::{Deserialize, Serialize};

use super::{AnomalyKind, RetryCheck};
use crate::history::{TxnOutcome, TxnValue};

/// One anomaly instance and its evidence. Event indexes are [`crate::history::Event::index`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Anomaly {
    /// An acknowledged value nobody read although later offsets of its partition were read.
    LostWrite {
        /// The value.
        value: String,
        /// Where it was acknowledged.
        partition: u32,
        /// Where it was acknowledged.
        offset: u64,
        /// The `ok` completion of its send.
        ack_event: u64,
        /// The highest offset anyone read in the partition.
        highest_read: u64,
    },
    /// An acknowledged value nobody ever read, above everything read in its partition.
    Unseen {
        /// The value.
        value: String,
        /// Where it was acknowledged.
        partition: u32,
        /// Where it was acknowledged.
        offset: u64,
        /// The `ok` completion of its send.
        ack_event: u64,
        /// The highest offset anyone read in the partition, if anything was.
        highest_read: Option<u64>,
    },
    /// A value seen at more than one place.
    Duplicate {
        /// The value.
        value: String,
        /// Every place it was acknowledged or read at, with the first event showing it.
        places: Vec<Place>,
    },
    /// A place seen with more than one value.
    InconsistentOffsets {
        /// The partition.
        partition: u32,
        /// The offset.
        offset: u64,
        /// Each value seen there, with the first event showing it.
        values: Vec<Sighting>,
    },
    /// A value whose send failed, read anyway.
    AbortedRead {
        /// The value.
        value: String,
        /// The `fail` completion of its send.
        fail_event: u64,
        /// Where it was read.
        partition: u32,
        /// Where it was read.
        offset: u64,
        /// The read that returned it.
        read_event: u64,
    },
    /// A consumer's read of a partition started below where its previous read ended.
    NonmonotonicPoll {
        /// The consumer process.
        process: u32,
        /// The partition.
        partition: u32,
        /// The offset the read should have started at.
        expected: u64,
        /// The offset it returned instead.
        got: u64,
        /// The event that set the expectation (the previous poll, or an assign).
        previous_event: u64,
        /// The poll that went backwards.
        event: u64,
    },
    /// A consumer's read of a partition jumped past offsets it never received.
    PollSkip {
        /// The consumer process.
        process: u32,
        /// The partition.
        partition: u32,
        /// The offset the read should have started at.
        expected: u64,
        /// The offset it returned instead.
        got: u64,
        /// The event that set the expectation (the previous poll, or an assign).
        previous_event: u64,
        /// The poll that skipped.
        event: u64,
    },
    /// A producer's acknowledged sends to one partition went backwards.
    NonmonotonicSend {
        /// The producer process.
        process: u32,
        /// The partition.
        partition: u32,
        /// The earlier send's value and offset.
        earlier_value: String,
        /// The earlier send's offset.
        earlier_offset: u64,
        /// The earlier send's `ok` completion.
        earlier_event: u64,
        /// The later send's value.
        later_value: String,
        /// The later send's (lower) offset.
        later_offset: u64,
        /// The later send's `ok` completion.
        later_event: u64,
    },
    /// An offset a group committed past that none of its members received.
    GroupLost {
        /// The group.
        group: String,
        /// The partition.
        partition: u32,
        /// The offset never delivered.
        offset: u64,
        /// The group's final committed offset in the partition.
        committed: u64,
        /// What the partition holds there, if anyone read it.
        value: Option<String>,
    },
    /// A member of a filtered group received a message its filter does not select.
    FilterLeak {
        /// The group.
        group: String,
        /// The partition.
        partition: u32,
        /// The offset.
        offset: u64,
        /// The message.
        value: String,
        /// The poll that returned it.
        event: u64,
    },
    /// Two or more replicas hold different values at one offset.
    ReplicaMismatch {
        /// The partition.
        partition: u32,
        /// The offset.
        offset: u64,
        /// (node, value) for every replica holding the offset.
        replicas: Vec<(u64, String)>,
    },
    /// A replica lacks an acknowledged value at an offset below its end.
    ReplicaMissing {
        /// The node.
        node: u64,
        /// The partition.
        partition: u32,
        /// The acknowledged offset.
        offset: u64,
        /// The acknowledged value.
        value: String,
        /// What the replica holds there instead (`None`: a hole).
        found: Option<String>,
        /// The replica's `node_log` event.
        event: u64,
    },
    /// A delayed message received before its delivery time, by more than the allowed skew.
    EarlyRelease {
        /// The value.
        value: String,
        /// Where it was read first.
        partition: u32,
        /// Where it was read first.
        offset: u64,
        /// Its delivery time, as sent (ms since the Unix epoch).
        deliver_at_ms: u64,
        /// When it was first received (ms since the Unix epoch, the runner's clock).
        received_ms: u64,
        /// The clock skew allowed, in ms.
        max_clock_skew_ms: u64,
        /// The poll that first returned it.
        event: u64,
    },
    /// An acknowledged delayed message, not cancelled, never received.
    LostDelayed {
        /// The value.
        value: String,
        /// Its id: the partition.
        partition: u32,
        /// Its id: the number.
        seq: u64,
        /// Its delivery time, as sent (ms since the Unix epoch).
        deliver_at_ms: u64,
        /// The `ok` completion of its send.
        ack_event: u64,
        /// The `ok` completion of a cancel that answered `AlreadyDelivered`, if one did.
        already_delivered_event: Option<u64>,
        /// When the consumers stopped reading (`DelayEnd`), if the history says.
        read_until_ms: Option<u64>,
    },
    /// A delayed message received although its cancel answered `Cancelled`.
    CancelledDelivered {
        /// The value.
        value: String,
        /// Where it was read.
        partition: u32,
        /// Where it was read.
        offset: u64,
        /// The cancel's `ok` completion.
        cancel_event: u64,
        /// The poll that first returned it.
        read_event: u64,
        /// When that poll returned (ms since the Unix epoch).
        received_ms: u64,
    },
    /// A value read that nobody sent.
    UnsentRead {
        /// The value.
        value: String,
        /// Where it was read first.
        partition: u32,
        /// Where it was read first.
        offset: u64,
        /// The poll that first returned it.
        event: u64,
    },
    /// A delayed message read with another delivery time than it was sent with (or none).
    DeliverAtMismatch {
        /// The value.
        value: String,
        /// Where it was read.
        partition: u32,
        /// Where it was read.
        offset: u64,
        /// The delivery time it was sent with.
        sent_ms: u64,
        /// The `sluice.deliver_at` property it was read with.
        read_ms: Option<u64>,
        /// The poll that returned it so.
        event: u64,
    },
    /// A value of a transaction that must have aborted, returned by a `read_committed` read.
    TxnAbortedRead {
        /// The transaction.
        label: String,
        /// How it ended.
        outcome: TxnOutcome,
        /// Its completion.
        end_event: u64,
        /// The value.
        value: String,
        /// Where it was read.
        topic: String,
        /// Where it was read.
        partition: u32,
        /// Where it was read.
        offset: u64,
        /// The read (a reader's poll or the final drain).
        read_event: u64,
    },
    /// A `read_committed` reader returned one value of a transaction and read past another
    /// without returning it.
    TornRead {
        /// The transaction.
        label: String,
        /// The reader.
        process: u32,
        /// A value it returned.
        seen: String,
        /// The poll that returned it.
        seen_event: u64,
        /// The value it never returned.
        missed: String,
        /// Where that value is.
        topic: String,
        /// Where that value is.
        partition: u32,
        /// Where that value is.
        offset: u64,
        /// An offset of that partition above it the reader returned.
        passed_offset: u64,
        /// The poll that returned it.
        passed_event: u64,
    },
    /// A transaction of unknown outcome seen in part: some of its values in the final
    /// `read_committed` drain (or returned by a reader), others not in the drain.
    TornFinal {
        /// The transaction.
        label: String,
        /// Its completion.
        end_event: u64,
        /// Its values seen.
        visible: Vec<String>,
        /// Its values missing from the final drain.
        missing: Vec<String>,
    },
    /// A transaction whose commit answered OK, with values missing from the final
    /// `read_committed` drain.
    LostCommit {
        /// The transaction.
        label: String,
        /// Its commit's completion.
        commit_event: u64,
        /// Whether a new instance of its id had fenced it before its commit was asked for (the
        /// commit should have been refused).
        fenced_first: bool,
        /// The values missing, with their places.
        missing: Vec<TxnValue>,
        /// How many of its values the drain holds.
        visible: u64,
    },
    /// A value at more than one place of the transactional topics.
    TxnDuplicate {
        /// The value.
        value: String,
        /// Every place it was read at, with the first event showing it.
        places: Vec<TxnPlace>,
    },
    /// A `read_committed` read of a value no transaction wrote, or not where it wrote it.
    TxnGarbage {
        /// The value.
        value: String,
        /// Where it was read.
        topic: String,
        /// Where it was read.
        partition: u32,
        /// Where it was read.
        offset: u64,
        /// The read.
        event: u64,
        /// Where its transaction wrote it, if one did.
        written_to: Option<(String, u32)>,
    },
    /// A source value not output exactly once among the committed data.
    NotExactlyOnce {
        /// The source value.
        source: String,
        /// Where it is in the source topic (`None`: not in the source drain).
        partition: Option<u32>,
        /// Where it is in the source topic.
        offset: Option<u64>,
        /// The group's final committed offset of that partition.
        committed: Option<u64>,
        /// Its outputs in the final `read_committed` drain.
        outputs: Vec<String>,
    },
    /// A partition's last stable offset still below an offset past the time allowed.
    StuckLso {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The last stable offset when the lag was first seen.
        lso: u64,
        /// The end (high watermark) then: every offset below it must become stable.
        end: u64,
        /// The sample that saw the lag.
        since_event: u64,
        /// The first sample past the time allowed, still below `end`.
        seen_event: u64,
        /// Its last stable offset.
        lso_then: u64,
        /// The time between the two samples, in ms.
        waited_ms: u64,
        /// The time allowed from the first (faults included), in ms.
        allowed_ms: u64,
    },
    /// A transaction still open at its coordinator when the wait after the run gave up.
    StuckTransaction {
        /// `"{transactional id} {state}"`, as listed.
        transaction: String,
        /// The `txn_end` event.
        event: u64,
        /// How long after the last heal the wait gave up, in ms (`None`: no fault).
        after_heal_ms: Option<u64>,
    },
    /// No transaction committed from `from_ms` to `to_ms` (since the run's start), a stretch
    /// with no fault active after each heal's allowance.
    Stalled {
        /// Where the stretch begins, ms since the run's start.
        from_ms: u64,
        /// Where it ends.
        to_ms: u64,
    },
    /// A retry workload finding: which check failed, for which message of which group.
    Retry {
        /// The check.
        check: RetryCheck,
        /// The group.
        group: String,
        /// The message.
        value: String,
        /// Where it was acknowledged.
        partition: u32,
        /// Where it was acknowledged.
        offset: u64,
        /// What was seen, with event indexes.
        detail: String,
    },
    /// An event the checker cannot interpret.
    Malformed {
        /// The event.
        event: u64,
        /// What is wrong with it.
        reason: String,
    },
}

/// Where a value of a transactional topic was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnPlace {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The offset.
    pub offset: u64,
    /// The first event showing it there.
    pub event: u64,
}

/// Where a value was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Place {
    /// The partition.
    pub partition: u32,
    /// The offset.
    pub offset: u64,
    /// The first event (ack or read) showing it there.
    pub event: u64,
}

/// A value seen at a place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sighting {
    /// The value.
    pub value: String,
    /// The first event (ack or read) showing it there.
    pub event: u64,
}

impl Anomaly {
    /// One line describing the instance and its evidence.
    pub fn describe(&self) -> String {
        match self {
            Anomaly::LostWrite { value, partition, offset, ack_event, highest_read } => format!(
                "{value:?} acked at p{partition}@{offset} (event {ack_event}) never read; p{partition} was read up to {highest_read}"
            ),
            Anomaly::Unseen { value, partition, offset, ack_event, highest_read } => format!(
                "{value:?} acked at p{partition}@{offset} (event {ack_event}) never read; highest read {highest_read:?}"
            ),
            Anomaly::Duplicate { value, places } => {
                let at: Vec<String> =
                    places.iter().map(|p| format!("p{}@{} (event {})", p.partition, p.offset, p.event)).collect();
                format!("{value:?} at {}", at.join(", "))
            }
            Anomaly::InconsistentOffsets { partition, offset, values } => {
                let seen: Vec<String> = values.iter().map(|s| format!("{:?} (event {})", s.value, s.event)).collect();
                format!("p{partition}@{offset} holds {}", seen.join(", "))
            }
            Anomaly::AbortedRead { value, fail_event, partition, offset, read_event } => {
                format!("{value:?} failed (event {fail_event}) but read at p{partition}@{offset} (event {read_event})")
            }
            Anomaly::NonmonotonicPoll { process, partition, expected, got, previous_event, event }
            | Anomaly::PollSkip { process, partition, expected, got, previous_event, event } => format!(
                "process {process} p{partition}: expected offset {expected} (after event {previous_event}), got {got} (event {event})"
            ),
            Anomaly::NonmonotonicSend {
                process,
                partition,
                earlier_value,
                earlier_offset,
                earlier_event,
                later_value,
                later_offset,
                later_event,
            } => format!(
                "process {process} p{partition}: {earlier_value:?}@{earlier_offset} (event {earlier_event}) then {later_value:?}@{later_offset} (event {later_event})"
            ),
            Anomaly::GroupLost { group, partition, offset, committed, value } => format!(
                "group {group} committed p{partition} to {committed} but never received offset {offset} ({value:?})"
            ),
            Anomaly::FilterLeak { group, partition, offset, value, event } => format!(
                "group {group} received p{partition}@{offset} {value:?} (event {event}), which its filter does not select"
            ),
            Anomaly::ReplicaMismatch { partition, offset, replicas } => {
                format!("p{partition}@{offset}: replicas hold {replicas:?}")
            }
            Anomaly::ReplicaMissing { node, partition, offset, value, found, event } => {
                let holds = found.as_ref().map_or_else(|| "nothing".to_owned(), |v| format!("{v:?}"));
                format!("node {node} p{partition}@{offset} (event {event}) holds {holds}, acked {value:?}")
            }
            Anomaly::EarlyRelease {
                value,
                partition,
                offset,
                deliver_at_ms,
                received_ms,
                max_clock_skew_ms,
                event,
            } => format!(
                "{value:?} due at {deliver_at_ms} received at {received_ms} ({} ms early, {max_clock_skew_ms} ms skew \
                 allowed) at p{partition}@{offset} (event {event})",
                deliver_at_ms.saturating_sub(*received_ms)
            ),
            Anomaly::LostDelayed {
                value,
                partition,
                seq,
                deliver_at_ms,
                ack_event,
                already_delivered_event,
                read_until_ms,
            } => {
                let cancel = already_delivered_event
                    .map_or_else(String::new, |e| format!(", a cancel answered already-delivered (event {e})"));
                let until = read_until_ms.map_or_else(
                    || "consumers' end unknown".to_owned(),
                    |until| {
                        format!("read until {} ms after it was due", i128::from(until) - i128::from(*deliver_at_ms))
                    },
                );
                format!(
                    "{value:?} acked as delayed {partition}-{seq} (event {ack_event}), due at {deliver_at_ms}{cancel}, never \
                     received; {until}"
                )
            }
            Anomaly::CancelledDelivered { value, partition, offset, cancel_event, read_event, received_ms } => format!(
                "{value:?} cancelled (event {cancel_event}) but read at p{partition}@{offset} (event {read_event}, at \
                 {received_ms})"
            ),
            Anomaly::UnsentRead { value, partition, offset, event } => {
                format!("{value:?} read at p{partition}@{offset} (event {event}) was never sent")
            }
            Anomaly::DeliverAtMismatch { value, partition, offset, sent_ms, read_ms, event } => format!(
                "{value:?} sent due at {sent_ms} read at p{partition}@{offset} (event {event}) with deliver_at {read_ms:?}"
            ),
            Anomaly::TxnAbortedRead { label, outcome, end_event, value, topic, partition, offset, read_event } => {
                format!(
                    "{value:?} of transaction {label} ({}, event {end_event}) read at {topic}/{partition}@{offset} (event \
                     {read_event})",
                    outcome.name()
                )
            }
            Anomaly::TornRead {
                label,
                process,
                seen,
                seen_event,
                missed,
                topic,
                partition,
                offset,
                passed_offset,
                passed_event,
            } => format!(
                "reader {process} returned {seen:?} of transaction {label} (event {seen_event}) and read {topic}/{partition} \
                 up to {passed_offset} (event {passed_event}) without returning {missed:?} at offset {offset}"
            ),
            Anomaly::TornFinal { label, end_event, visible, missing } => format!(
                "transaction {label} of unknown outcome (event {end_event}): {} of its values seen ({}), {} missing from the \
                 final drain ({})",
                visible.len(),
                first_few(visible),
                missing.len(),
                first_few(missing)
            ),
            Anomaly::LostCommit { label, commit_event, fenced_first, missing, visible } => {
                let at: Vec<String> =
                    missing.iter().map(|v| format!("{:?} in {}/{}", v.value, v.topic, v.partition)).collect();
                let fenced = if *fenced_first { " after a new instance had fenced it" } else { "" };
                format!(
                    "transaction {label} committed (event {commit_event}){fenced}, {visible} values visible, missing {}",
                    first_few(&at)
                )
            }
            Anomaly::TxnDuplicate { value, places } => {
                let at: Vec<String> = places
                    .iter()
                    .map(|p| format!("{}/{}@{} (event {})", p.topic, p.partition, p.offset, p.event))
                    .collect();
                format!("{value:?} at {}", at.join(", "))
            }
            Anomaly::TxnGarbage { value, topic, partition, offset, event, written_to } => match written_to {
                Some((t, p)) => {
                    format!("{value:?} read at {topic}/{partition}@{offset} (event {event}) was written to {t}/{p}")
                }
                None => format!("{value:?} read at {topic}/{partition}@{offset} (event {event}) was never written"),
            },
            Anomaly::NotExactlyOnce { source, partition, offset, committed, outputs } => {
                let at = match (partition, offset) {
                    (Some(p), Some(o)) => format!("p{p}@{o}"),
                    _ => "not in the source drain".to_owned(),
                };
                let expected = match (offset, committed) {
                    (Some(o), Some(c)) if o < c => 1,
                    _ => 0,
                };
                format!(
                    "source {source:?} ({at}, group committed {committed:?}) has {} outputs where {expected} is due: {}",
                    outputs.len(),
                    first_few(outputs)
                )
            }
            Anomaly::StuckLso {
                topic,
                partition,
                lso,
                end,
                since_event,
                seen_event,
                lso_then,
                waited_ms,
                allowed_ms,
            } => {
                format!(
                    "{topic}/{partition}: last stable offset {lso} below end {end} (event {since_event}) was still {lso_then} \
                     {waited_ms} ms later (event {seen_event}); {allowed_ms} ms allowed"
                )
            }
            Anomaly::StuckTransaction { transaction, event, after_heal_ms } => {
                let after = after_heal_ms.map_or_else(String::new, |ms| format!(", {ms} ms after the last heal"));
                format!(
                    "transaction {transaction} still open at its coordinator when the wait gave up (event {event}{after})"
                )
            }
            Anomaly::Stalled { from_ms, to_ms } => format!(
                "no transaction committed from {:.1} s to {:.1} s, with no fault active (heal allowances aside)",
                *from_ms as f64 / 1000.0,
                *to_ms as f64 / 1000.0
            ),
            Anomaly::Retry { check: _, group, value, partition, offset, detail } => {
                format!("group {group}: {value:?} (p{partition}@{offset}) {detail}")
            }
            Anomaly::Malformed { event, reason } => format!("event {event}: {reason}"),
        }
    }

    /// The kind this instance is counted under.
    pub fn kind(&self) -> AnomalyKind {
        match self {
            Anomaly::LostWrite { .. } => AnomalyKind::LostWrite,
            Anomaly::Unseen { .. } => AnomalyKind::Unseen,
            Anomaly::Duplicate { .. } => AnomalyKind::Duplicate,
            Anomaly::InconsistentOffsets { .. } => AnomalyKind::InconsistentOffsets,
            Anomaly::AbortedRead { .. } => AnomalyKind::AbortedRead,
            Anomaly::NonmonotonicPoll { .. } => AnomalyKind::NonmonotonicPoll,
            Anomaly::PollSkip { .. } => AnomalyKind::PollSkip,
            Anomaly::NonmonotonicSend { .. } => AnomalyKind::NonmonotonicSend,
            Anomaly::GroupLost { .. } => AnomalyKind::GroupLost,
            Anomaly::FilterLeak { .. } => AnomalyKind::FilterLeak,
            Anomaly::ReplicaMismatch { .. } | Anomaly::ReplicaMissing { .. } => AnomalyKind::Divergence,
            Anomaly::EarlyRelease { .. } => AnomalyKind::EarlyRelease,
            Anomaly::LostDelayed { .. } => AnomalyKind::LostDelayed,
            Anomaly::CancelledDelivered { .. } => AnomalyKind::CancelledDelivered,
            Anomaly::UnsentRead { .. } | Anomaly::DeliverAtMismatch { .. } | Anomaly::TxnGarbage { .. } => {
                AnomalyKind::GarbageRead
            }
            Anomaly::TxnAbortedRead { .. } => AnomalyKind::AbortedRead,
            Anomaly::TornRead { .. } | Anomaly::TornFinal { .. } => AnomalyKind::Torn,
            Anomaly::LostCommit { .. } => AnomalyKind::LostCommit,
            Anomaly::TxnDuplicate { .. } => AnomalyKind::Duplicate,
            Anomaly::NotExactlyOnce { .. } => AnomalyKind::NotExactlyOnce,
            Anomaly::StuckLso { .. } => AnomalyKind::StuckLso,
            Anomaly::StuckTransaction { .. } => AnomalyKind::StuckTransaction,
            Anomaly::Stalled { .. } => AnomalyKind::Stalled,
            Anomaly::Retry { check, .. } => check.kind(),
            Anomaly::Malformed { .. } => AnomalyKind::Malformed,
        }
    }
}

/// Up to five items, comma-separated, and how many more.
fn first_few(items: &[String]) -> String {
    let shown: Vec<&str> = items.iter().take(5).map(String::as_str).collect();
    let more = items.len().saturating_sub(shown.len());
    if more > 0 { format!("{}, and {more} more", shown.join(", ")) } else { shown.join(", ") }
}
