//! The retry state of one consumer group (docs/adr/0012-retries.md): which messages wait for
//! another attempt, when, and — in a key-ordered group — which wait behind an earlier message
//! of their key. Pure: it changes only by [`RetryTable::apply`]ing a [`RetryChange`], whose
//! times are in the change, so every replica replaying the same changes holds the same table.
//! The `plan_*` methods decide what a settle implies without changing anything.
//!
//! A message is referred to by its place — topic, partition, offset — never copied.

use std::collections::{BTreeMap, BTreeSet};

use super::policy::RetryPolicy;

/// Where a message is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Place {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The offset.
    pub offset: u64,
}

/// A key's queue: its messages of one partition waiting in offset order.
type KeyQueue = (String, u32, u64);

/// One message waiting for its next attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryEntry {
    /// The attempt its next delivery is (the first delivery is attempt 1).
    pub attempt: u32,
    /// When it may be delivered, or `None` while it waits behind an earlier message of its key.
    pub due_ms: Option<u64>,
    /// Its key's hash in a key-ordered group.
    pub key: Option<u64>,
    /// When it first failed (0 for a message parked before it was ever attempted).
    pub first_failure_ms: u64,
    /// Why it last failed, as the consumer said (bounded by the caller).
    pub reason: String,
}

/// A change to the table, as a group record carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryChange {
    /// Attempt `attempt` of the message is due at `due_ms`: a nack of the attempt before it.
    Retry {
        /// The message.
        place: Place,
        /// The attempt its next delivery is.
        attempt: u32,
        /// When that delivery may happen.
        due_ms: u64,
        /// Its key's hash in a key-ordered group.
        key: Option<u64>,
        /// When the nack was taken.
        failed_ms: u64,
        /// Why, as the consumer said.
        reason: String,
    },
    /// The message waits, unattempted, behind the earlier messages of its key.
    Park {
        /// The message.
        place: Place,
        /// Its key's hash.
        key: u64,
    },
    /// The message is done — acknowledged, or moved to the dead-letter queue — at `at_ms`: it
    /// leaves the table, and the next message waiting behind it for its key is due at `at_ms`.
    Done {
        /// The message.
        place: Place,
        /// When.
        at_ms: u64,
    },
}

/// What a nack implies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NackPlan {
    /// Write this change: the message is retried.
    Retry(RetryChange),
    /// The message used its last attempt: it goes to the dead-letter queue (then [`RetryChange::Done`]).
    DeadLetter {
        /// Attempts it was delivered.
        attempts: u32,
        /// When it first failed.
        first_failure_ms: u64,
    },
    /// The nack is of an attempt already settled (a repeat, or a delivery that lost its lease):
    /// nothing changes.
    Stale,
}

/// The retry state of one group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryTable {
    entries: BTreeMap<Place, RetryEntry>,
    /// Entries with a due time, by it.
    due: BTreeSet<(u64, Place)>,
    /// Key-ordered groups: the offsets in the table of each key of each partition.
    keys: BTreeMap<KeyQueue, BTreeSet<u64>>,
}

impl RetryTable {
    /// An empty table.
    pub fn new() -> RetryTable {
        RetryTable::default()
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every waiting message, by place.
    pub fn iter(&self) -> impl Iterator<Item = (&Place, &RetryEntry)> {
        self.entries.iter()
    }

    /// The message at `place`, if it waits.
    pub fn get(&self, place: &Place) -> Option<&RetryEntry> {
        self.entries.get(place)
    }

    /// What a nack of attempt `attempt` of the message at `place`, at `now_ms`, implies under
    /// `policy`. `key` is its key's hash in a key-ordered group; `spread` picks the jitter.
    pub fn plan_nack(
        &self,
        place: &Place,
        attempt: u32,
        now_ms: u64,
        reason: &str,
        key: Option<u64>,
        (policy, spread): (&RetryPolicy, u64),
    ) -> NackPlan {
        let known = self.entries.get(place);
        let expected = known.map_or(1, |e| e.attempt);
        if attempt != expected || known.is_some_and(|e| e.due_ms.is_none()) {
            return NackPlan::Stale;
        }
        let first_failure_ms = known.map(|e| e.first_failure_ms).filter(|&f| f > 0).unwrap_or(now_ms);
        if policy.exhausted(attempt) {
            return NackPlan::DeadLetter { attempts: attempt, first_failure_ms };
        }
        let due_ms = now_ms.saturating_add(policy.delay_ms(attempt, spread));
        let key = known.map_or(key, |e| e.key);
        let change = RetryChange::Retry {
            place: place.clone(),
            attempt: attempt + 1,
            due_ms,
            key,
            failed_ms: now_ms,
            reason: reason.to_owned(),
        };
        NackPlan::Retry(change)
    }

    /// What an ack of attempt `attempt` of the message at `place`, at `now_ms`, implies: a
    /// [`RetryChange::Done`] for a message in the table at that attempt; nothing for a first
    /// delivery (its commit settles it) or a stale attempt.
    pub fn plan_ack(&self, place: &Place, attempt: u32, now_ms: u64) -> Option<RetryChange> {
        let entry = self.entries.get(place)?;
        (entry.attempt == attempt && entry.due_ms.is_some())
            .then(|| RetryChange::Done { place: place.clone(), at_ms: now_ms })
    }

    /// What a consumer of a key-ordered group parking the message at `place` (behind an earlier
    /// message of `key`) implies: nothing if it is in the table already.
    pub fn plan_park(&self, place: &Place, key: u64) -> Option<RetryChange> {
        (!self.entries.contains_key(place)).then(|| RetryChange::Park { place: place.clone(), key })
    }

    /// Whether `key` of `topic`/`partition` has messages in the table: a consumer of a
    /// key-ordered group parks the key's later messages instead of processing them.
    pub fn key_blocked(&self, topic: &str, partition: u32, key: u64) -> bool {
        self.keys.contains_key(&(topic.to_owned(), partition, key))
    }

    /// The keys of `topic`/`partition` with messages in the table.
    pub fn blocked_keys(&self, topic: &str, partition: u32) -> Vec<u64> {
        let from = (topic.to_owned(), partition, 0);
        self.keys
            .range(from..)
            .take_while(|((t, p, _), _)| t == topic && *p == partition)
            .map(|((_, _, k), _)| *k)
            .collect()
    }

    /// The messages due at `now_ms`, earliest first, at most `max`, for which `wanted` is true
    /// (e.g. the partitions a member owns), with the attempt each is.
    pub fn due(&self, now_ms: u64, max: usize, wanted: impl Fn(&Place) -> bool) -> Vec<(Place, u32)> {
        self.due
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .filter(|(_, place)| wanted(place))
            .take(max)
            .map(|(_, place)| (place.clone(), self.entries[place].attempt))
            .collect()
    }

    /// The earliest due time in the table.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.due.first().map(|(at, _)| *at)
    }

    /// Applies `change` (as replayed from the group's records).
    pub fn apply(&mut self, change: &RetryChange) {
        match change {
            RetryChange::Retry { place, attempt, due_ms, key, failed_ms, reason } => {
                let first_failure_ms = self.entries.get(place).map(|e| e.first_failure_ms).filter(|&f| f > 0);
                let entry = RetryEntry {
                    attempt: *attempt,
                    due_ms: Some(*due_ms),
                    key: *key,
                    first_failure_ms: first_failure_ms.unwrap_or(*failed_ms),
                    reason: reason.clone(),
                };
                self.insert(place, entry);
            }
            RetryChange::Park { place, key } => {
                let entry = RetryEntry {
                    attempt: 1,
                    due_ms: None,
                    key: Some(*key),
                    first_failure_ms: 0,
                    reason: String::new(),
                };
                self.insert(place, entry);
            }
            RetryChange::Done { place, at_ms } => self.remove(place, *at_ms),
        }
    }

    fn insert(&mut self, place: &Place, entry: RetryEntry) {
        if let Some(old) = self.entries.get(place).and_then(|e| e.due_ms) {
            self.due.remove(&(old, place.clone()));
        }
        if let Some(key) = entry.key {
            self.keys.entry((place.topic.clone(), place.partition, key)).or_default().insert(place.offset);
        }
        let parked_behind = entry.due_ms.is_none() && self.head_of(place, entry.key) != Some(place.offset);
        let due_ms = match entry.due_ms {
            Some(at) => Some(at),
            // A parked message whose key has nothing before it is due at once: the consumer
            // parked it behind a message that has since been settled.
            None if !parked_behind => Some(0),
            None => None,
        };
        if let Some(at) = due_ms {
            self.due.insert((at, place.clone()));
        }
        self.entries.insert(place.clone(), RetryEntry { due_ms, ..entry });
    }

    fn remove(&mut self, place: &Place, at_ms: u64) {
        let Some(entry) = self.entries.remove(place) else { return };
        if let Some(at) = entry.due_ms {
            self.due.remove(&(at, place.clone()));
        }
        let Some(key) = entry.key else { return };
        let queue = (place.topic.clone(), place.partition, key);
        let Some(offsets) = self.keys.get_mut(&queue) else { return };
        offsets.remove(&place.offset);
        let Some(&next) = offsets.first() else {
            self.keys.remove(&queue);
            return;
        };
        let next = Place { offset: next, ..place.clone() };
        if let Some(e) = self.entries.get_mut(&next)
            && e.due_ms.is_none()
        {
            e.due_ms = Some(at_ms);
            self.due.insert((at_ms, next));
        }
    }

    /// The lowest offset in the table for `place`'s key, if it has one.
    fn head_of(&self, place: &Place, key: Option<u64>) -> Option<u64> {
        let queue = (place.topic.clone(), place.partition, key?);
        self.keys.get(&queue).and_then(|o| o.first().copied())
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
