//! A group's retries and dead letters as replicated state (docs/adr/0012-retries.md): its retry
//! policy, the table of messages waiting for another attempt (`sluice_common::retry`), and its
//! dead-letter queue's bookkeeping — the producer id and sequences of the entries reserved and
//! not yet written, and the redrive and purge cursors. Pure: records in, state out; planning
//! what a request implies is `settle`.

use std::collections::BTreeMap;

use sluice_common::retry::{Backoff, Place, RetryChange, RetryPolicy, RetryTable};
use sluice_proto::internal::group_record::Change;
use sluice_proto::internal::{self, GroupRecord, retry_change};
use sluice_proto::v1;

use super::{Group, record};

/// The most bytes of a consumer's reason kept with a retry or a dead letter.
pub(crate) const MAX_REASON_BYTES: usize = 256;

/// A group's policy: how it retries, and whether it consumes in key order.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct GroupPolicy {
    /// Backoff and attempts.
    pub retry: RetryPolicy,
    /// A nacked message blocks its key.
    pub key_ordered: bool,
}

// The policy's floats are checked finite by `RetryPolicy::validate` before any record holds
// them, so equality is an equivalence on every stored policy.
impl Eq for GroupPolicy {}

/// A dead letter reserved: it left the retry state, and its DLQ entry is to be written with
/// sequence `sequence` of the group's DLQ producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reserved {
    /// The original message.
    pub place: Place,
    /// Deliveries it had.
    pub attempts: u32,
    /// When it first failed.
    pub first_failure_ms: u64,
    /// When it last failed (was rejected, or its last attempt nacked).
    pub last_failure_ms: u64,
    /// Why, bounded.
    pub reason: String,
    /// Its key's hash in a key-ordered group.
    pub key: Option<u64>,
}

/// The group's dead-letter queue, as far as the group keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadLetters {
    /// The idempotent producer id its entries are written with (-1: none yet).
    pub producer_id: i64,
    /// The sequence the next reservation takes.
    pub next_sequence: i32,
    /// The first sequence written under `producer_id`, as its sequence 0 (see
    /// `DeadLetterCursors.sequence_base`).
    pub sequence_base: i32,
    /// Reserved, not yet written, by sequence.
    pub pending: BTreeMap<i32, Reserved>,
    /// Written, by place (with their sequence), until the group commits past the place: a
    /// settle of the message's first delivery repeated (its answer was lost) or replayed (from
    /// an uncommitted position) must not dead-letter it again.
    pub written: BTreeMap<Place, i32>,
    /// The DLQ offset the next redrive reads from.
    pub redrive_offset: u64,
    /// Entries before this offset are purged.
    pub purge_offset: u64,
}

impl DeadLetters {
    /// Whether the message at `place` is dead-lettered and its group has not committed past
    /// it yet.
    pub fn holds(&self, place: &Place) -> bool {
        self.written.contains_key(place) || self.pending.values().any(|r| r.place == *place)
    }

    /// Forgets the written entries of `topic`/`partition` below `committed`.
    pub fn committed(&mut self, topic: &str, partition: u32, committed: u64) {
        self.written.retain(|p, _| !(p.topic == topic && p.partition == partition && p.offset < committed));
    }
}

impl Default for DeadLetters {
    fn default() -> DeadLetters {
        DeadLetters {
            producer_id: -1,
            next_sequence: 0,
            sequence_base: 0,
            pending: BTreeMap::new(),
            written: BTreeMap::new(),
            redrive_offset: 0,
            purge_offset: 0,
        }
    }
}

/// A group's retry state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct GroupRetries {
    /// Set by the first member naming one, or by an operator; `None`: the default applies.
    pub policy: Option<GroupPolicy>,
    /// Messages waiting for another attempt.
    pub table: RetryTable,
    /// The dead-letter queue's bookkeeping.
    pub dlq: DeadLetters,
}

impl GroupRetries {
    /// The policy in force.
    pub fn policy(&self) -> GroupPolicy {
        self.policy.clone().unwrap_or_default()
    }

    /// Nothing waits and nothing is to be written: the group may be deleted.
    pub fn is_idle(&self) -> bool {
        self.table.is_empty() && self.dlq.pending.is_empty()
    }

    pub(super) fn cursors_record(&self) -> internal::DeadLetterCursors {
        internal::DeadLetterCursors {
            producer_id: self.dlq.producer_id,
            next_sequence: self.dlq.next_sequence,
            redrive_offset: self.dlq.redrive_offset,
            purge_offset: self.dlq.purge_offset,
            sequence_base: self.dlq.sequence_base,
        }
    }
}

impl Group {
    /// Applies a retry or dead-letter record.
    pub(super) fn apply_retry(&mut self, change: &Change) {
        let r = &mut self.retries;
        match change {
            Change::RetryPolicy(p) => r.policy = Some(policy_from_record(p)),
            Change::Retry(c) => {
                if let Some(change) = change_from_record(c) {
                    r.table.apply(&change);
                }
            }
            Change::DeadLetter(d) => {
                let place = Place { topic: d.topic.clone(), partition: d.partition, offset: d.offset };
                // The atomic step: out of the retry state (its key's next is due) and reserved.
                r.table.apply(&RetryChange::Done { place: place.clone(), at_ms: d.last_failure_ms });
                let reserved = Reserved {
                    place,
                    attempts: d.attempts,
                    first_failure_ms: d.first_failure_ms,
                    last_failure_ms: d.last_failure_ms,
                    reason: d.reason.clone(),
                    key: d.key_hash,
                };
                r.dlq.pending.insert(d.sequence, reserved);
                r.dlq.next_sequence = r.dlq.next_sequence.max(d.sequence.wrapping_add(1));
                r.dlq.producer_id = d.producer_id;
            }
            Change::DeadLetterWritten(w) => {
                if let Some(written) = r.dlq.pending.remove(&w.sequence) {
                    r.dlq.written.insert(written.place, w.sequence);
                }
            }
            Change::DeadLetterCursors(c) => {
                r.dlq.producer_id = c.producer_id;
                r.dlq.next_sequence = c.next_sequence;
                r.dlq.redrive_offset = c.redrive_offset;
                r.dlq.purge_offset = c.purge_offset;
                r.dlq.sequence_base = c.sequence_base;
            }
            _ => {}
        }
    }

    /// The records that rebuild its retry state, for a checkpoint: the policy, the DLQ cursors,
    /// the reservations (before the table: each removes its place from the table), the table.
    pub(super) fn retry_records(&self, name: &str) -> Vec<GroupRecord> {
        let r = &self.retries;
        let mut out = Vec::new();
        if let Some(p) = &r.policy {
            out.push(record(name, Change::RetryPolicy(policy_to_record(p))));
        }
        if r.dlq != DeadLetters::default() {
            out.push(record(name, Change::DeadLetterCursors(r.cursors_record())));
        }
        for (sequence, d) in &r.dlq.pending {
            out.push(record(name, Change::DeadLetter(reserved_record(*sequence, r.dlq.producer_id, d))));
        }
        for (place, &sequence) in &r.dlq.written {
            let d = Reserved {
                place: place.clone(),
                attempts: 0,
                first_failure_ms: 0,
                last_failure_ms: 0,
                reason: String::new(),
                key: None,
            };
            out.push(record(name, Change::DeadLetter(reserved_record(sequence, r.dlq.producer_id, &d))));
            out.push(record(name, Change::DeadLetterWritten(internal::DeadLetterWritten { sequence })));
        }
        for (place, e) in r.table.iter() {
            let change = match e.due_ms {
                None => RetryChange::Park { place: place.clone(), key: e.key.unwrap_or_default() },
                Some(due_ms) => RetryChange::Retry {
                    place: place.clone(),
                    attempt: e.attempt,
                    due_ms,
                    key: e.key,
                    failed_ms: e.first_failure_ms,
                    reason: e.reason.clone(),
                },
            };
            out.push(record(name, Change::Retry(change_to_record(&change))));
        }
        out
    }
}

/// A reservation as its record.
pub(super) fn reserved_record(sequence: i32, producer_id: i64, d: &Reserved) -> internal::DeadLetterReserved {
    internal::DeadLetterReserved {
        topic: d.place.topic.clone(),
        partition: d.place.partition,
        offset: d.place.offset,
        sequence,
        producer_id,
        attempts: d.attempts,
        first_failure_ms: d.first_failure_ms,
        last_failure_ms: d.last_failure_ms,
        reason: d.reason.clone(),
        key_hash: d.key,
    }
}

/// A table change as its record.
pub(crate) fn change_to_record(change: &RetryChange) -> internal::RetryChange {
    let (place, c) = match change {
        RetryChange::Retry { place, attempt, due_ms, key, failed_ms, reason } => {
            let due = internal::RetryDue {
                attempt: *attempt,
                due_ms: *due_ms,
                key_hash: *key,
                failed_ms: *failed_ms,
                reason: reason.clone(),
            };
            (place, retry_change::Change::Retry(due))
        }
        RetryChange::Park { place, key } => (place, retry_change::Change::ParkKey(*key)),
        RetryChange::Done { place, at_ms } => (place, retry_change::Change::DoneAtMs(*at_ms)),
    };
    internal::RetryChange {
        topic: place.topic.clone(),
        partition: place.partition,
        offset: place.offset,
        change: Some(c),
    }
}

/// A record as a table change; `None` for a record without one (written by a newer broker).
pub(crate) fn change_from_record(r: &internal::RetryChange) -> Option<RetryChange> {
    let place = Place { topic: r.topic.clone(), partition: r.partition, offset: r.offset };
    Some(match r.change.as_ref()? {
        retry_change::Change::Retry(d) => RetryChange::Retry {
            place,
            attempt: d.attempt,
            due_ms: d.due_ms,
            key: d.key_hash,
            failed_ms: d.failed_ms,
            reason: d.reason.clone(),
        },
        retry_change::Change::ParkKey(key) => RetryChange::Park { place, key: *key },
        retry_change::Change::DoneAtMs(at_ms) => RetryChange::Done { place, at_ms: *at_ms },
    })
}

/// The conversions of a policy to and from one of the two generated `RetryPolicy` messages
/// (the record's and the client protocol's), which have the same shape. Reading, a missing
/// backoff takes the default's, and max_attempts 0 the default's.
macro_rules! policy_conversions {
    ($to:ident, $from:ident, $proto:ident) => {
        pub(crate) fn $to(p: &GroupPolicy) -> $proto::RetryPolicy {
            let backoff = match &p.retry.backoff {
                Backoff::Exponential { initial_ms, multiplier, max_ms, jitter } => {
                    $proto::retry_policy::Backoff::Exponential($proto::ExponentialBackoff {
                        initial_ms: *initial_ms,
                        multiplier: *multiplier,
                        max_ms: *max_ms,
                        jitter: *jitter,
                    })
                }
                Backoff::Ladder(steps) => {
                    $proto::retry_policy::Backoff::Ladder($proto::LadderBackoff { steps_ms: steps.clone() })
                }
            };
            $proto::RetryPolicy {
                backoff: Some(backoff),
                max_attempts: p.retry.max_attempts,
                key_ordered: p.key_ordered,
            }
        }

        pub(crate) fn $from(r: &$proto::RetryPolicy) -> GroupPolicy {
            let default = RetryPolicy::default();
            let backoff = match &r.backoff {
                Some($proto::retry_policy::Backoff::Exponential(e)) => Backoff::Exponential {
                    initial_ms: e.initial_ms,
                    multiplier: e.multiplier,
                    max_ms: e.max_ms,
                    jitter: e.jitter,
                },
                Some($proto::retry_policy::Backoff::Ladder(l)) => Backoff::Ladder(l.steps_ms.clone()),
                None => default.backoff,
            };
            let max_attempts = if r.max_attempts == 0 { default.max_attempts } else { r.max_attempts };
            GroupPolicy { retry: RetryPolicy { backoff, max_attempts }, key_ordered: r.key_ordered }
        }
    };
}

policy_conversions!(policy_to_record, policy_from_record, internal);
policy_conversions!(policy_to_client, policy_from_client, v1);

/// `reason` cut to at most [`MAX_REASON_BYTES`], at a character boundary.
pub(crate) fn bounded_reason(reason: &str) -> String {
    let mut end = reason.len().min(MAX_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}
