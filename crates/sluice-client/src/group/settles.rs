//! The pure bookkeeping of a member's per-message outcomes (docs/RETRIES.md): the settles
//! waiting to be sent to the coordinator, the retries `poll` handed out and not settled yet,
//! and, in a key-ordered group, the keys whose messages must be parked.
//!
//! Settles are batched: `ack`, `nack` and `reject` only note them here; they are sent in one
//! `SettleMessages` before the member commits a position (a commit must never pass a message
//! whose nack the coordinator has not stored: the message would be lost) and before each poll
//! of due retries (so the coordinator's blocked keys include the member's own nacks).

use std::collections::{BTreeMap, BTreeSet};

use crate::record::ConsumedRecord;
use crate::retries::{Settle, SettleOutcome, key_hash};
use crate::topic_partition::TopicPartition;

/// A member's settles and blocked keys.
#[derive(Debug, Default)]
pub(crate) struct SettleBook {
    key_ordered: bool,
    /// Not sent yet, in the order they were made.
    pending: Vec<Settle>,
    /// Retries `poll` returned and the application has not settled: the attempt each was.
    open: BTreeMap<(TopicPartition, u64), u32>,
    /// Key-ordered groups: per partition, the key hashes whose later messages are parked.
    blocked: BTreeMap<TopicPartition, BTreeSet<u64>>,
}

/// What to do with a record a fetch returned, in a key-ordered group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Hand it to the application.
    Return,
    /// Its key is blocked: parked (a settle is pending), not returned.
    Parked,
    /// Its key already has a record in this batch: the application could nack that one, so
    /// this one and the rest of its partition's batch are fetched again by the next poll.
    Defer,
}

impl SettleBook {
    pub(crate) fn new(key_ordered: bool) -> SettleBook {
        SettleBook { key_ordered, ..SettleBook::default() }
    }

    /// `poll` returned this retry: it is open until settled (or implicitly acked).
    pub(crate) fn delivered_retry(&mut self, record: &ConsumedRecord) {
        self.open.insert((tp_of(record), record.offset()), record.attempt());
    }

    /// Notes the application's outcome for `record`. An ack of a first delivery needs no
    /// settle: committing past it settles it. A retry's does, at attempt 1 too (a parked
    /// message released in a key-ordered group, a redriven dead letter): it leaves the retry
    /// state only so.
    pub(crate) fn settle(&mut self, record: &ConsumedRecord, outcome: SettleOutcome, reason: String) {
        let tp = tp_of(record);
        let retry = self.open.remove(&(tp.clone(), record.offset())).is_some();
        if outcome == SettleOutcome::Ack && record.attempt() <= 1 && !retry {
            return;
        }
        let hash = self.hash_of(record);
        if let (SettleOutcome::Nack { .. }, Some(hash)) = (&outcome, hash) {
            // Blocked at once, not only once the coordinator says so: the next fetched message
            // of the key must not overtake this one.
            self.blocked.entry(tp.clone()).or_default().insert(hash);
        }
        self.pending.push(settle_of(record, outcome, reason, hash));
    }

    /// The application has finished with every retry `poll` returned: those it did not
    /// settle are acked.
    pub(crate) fn finish_retries(&mut self) {
        for ((tp, offset), attempt) in std::mem::take(&mut self.open) {
            self.pending.push(Settle {
                topic: tp.topic().to_owned(),
                partition: tp.partition(),
                offset,
                attempt,
                outcome: SettleOutcome::Ack,
                reason: String::new(),
                key_hash: None,
            });
        }
    }

    /// Decides for each record of a fetched batch, in order, whether it is returned; parked
    /// ones get a pending PARK settle. Outside key-ordered groups every record is returned.
    pub(crate) fn admit(&mut self, records: &[ConsumedRecord]) -> Vec<Admit> {
        let mut seen: BTreeMap<TopicPartition, BTreeSet<u64>> = BTreeMap::new();
        let mut deferred: BTreeSet<TopicPartition> = BTreeSet::new();
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            let (tp, hash) = (tp_of(record), self.hash_of(record));
            let admit = match hash {
                _ if deferred.contains(&tp) => Admit::Defer,
                None => Admit::Return,
                Some(h) if self.blocked.get(&tp).is_some_and(|b| b.contains(&h)) => Admit::Parked,
                Some(h) if !seen.entry(tp.clone()).or_default().insert(h) => Admit::Defer,
                Some(_) => Admit::Return,
            };
            match admit {
                Admit::Parked => self.pending.push(settle_of(record, SettleOutcome::Park, String::new(), hash)),
                Admit::Defer => {
                    deferred.insert(tp);
                }
                Admit::Return => {}
            }
            out.push(admit);
        }
        out
    }

    /// The coordinator's blocked keys of the owned partitions, as `PollRetries` answered them
    /// after every pending settle was sent; nacks made since stay blocked.
    pub(crate) fn set_blocked(&mut self, owned: &[TopicPartition], blocked: Vec<(String, u32, Vec<u64>)>) {
        self.blocked.retain(|tp, _| !owned.contains(tp));
        for (topic, partition, hashes) in blocked {
            self.blocked.entry(TopicPartition::new(topic, partition)).or_default().extend(hashes);
        }
        for s in &self.pending {
            if let (SettleOutcome::Nack { .. }, Some(h)) = (&s.outcome, s.key_hash) {
                self.blocked.entry(TopicPartition::new(s.topic.clone(), s.partition)).or_default().insert(h);
            }
        }
    }

    /// Every settle not sent yet, out of the book.
    #[cfg(test)]
    pub(crate) fn take_pending(&mut self) -> Vec<Settle> {
        std::mem::take(&mut self.pending)
    }

    /// The first `max` settles to send, left in the book until [`SettleBook::sent`] says they
    /// were stored: a send that fails, or is cancelled half-way (a dropped `poll`), loses none.
    pub(crate) fn next_to_send(&self, max: usize) -> Vec<Settle> {
        self.pending.iter().take(max).cloned().collect()
    }

    /// The first `n` settles were stored by the coordinator.
    pub(crate) fn sent(&mut self, n: usize) {
        self.pending.drain(..n.min(self.pending.len()));
    }

    /// A retry whose message could not be fetched: straight to the dead-letter queue.
    pub(crate) fn push_missing(&mut self, tp: &TopicPartition, offset: u64, attempt: u32, reason: String) {
        let (topic, partition) = (tp.topic().to_owned(), tp.partition());
        let outcome = SettleOutcome::Reject;
        self.pending.push(Settle { topic, partition, offset, attempt, outcome, reason, key_hash: None });
    }

    /// Learned from the group's policy when the member joins.
    pub(crate) fn set_key_ordered(&mut self, key_ordered: bool) {
        self.key_ordered = key_ordered;
    }

    pub(crate) fn key_ordered(&self) -> bool {
        self.key_ordered
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The member gave up `tp`: its unsent settles are dropped (the coordinator would refuse
    /// them; the messages are delivered again to the next owner from the committed position,
    /// or as the retries the coordinator still holds).
    pub(crate) fn forget(&mut self, tp: &TopicPartition) {
        self.pending.retain(|s| !(s.topic == tp.topic() && s.partition == tp.partition()));
        self.open.retain(|(t, _), _| t != tp);
        self.blocked.remove(tp);
    }

    fn hash_of(&self, record: &ConsumedRecord) -> Option<u64> {
        self.key_ordered.then(|| record.key().map(|k| key_hash(k))).flatten()
    }
}

fn tp_of(record: &ConsumedRecord) -> TopicPartition {
    TopicPartition::new(record.topic(), record.partition())
}

fn settle_of(record: &ConsumedRecord, outcome: SettleOutcome, reason: String, key_hash: Option<u64>) -> Settle {
    Settle {
        topic: record.topic().to_owned(),
        partition: record.partition(),
        offset: record.offset(),
        attempt: record.attempt(),
        outcome,
        reason,
        key_hash,
    }
}

#[cfg(test)]
#[path = "settles_tests.rs"]
mod tests;
