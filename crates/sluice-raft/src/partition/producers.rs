//! Idempotent-producer state (docs/ARCHITECTURE.md, D6): per producer id, its epoch and the last
//! few batches it wrote, so a batch retried after a timeout or a leader change is recognised and
//! not written twice. Updated only by apply, so every replica decides the same.

use std::collections::{BTreeMap, VecDeque};

use sluice_common::record::ProducerStamp;

/// Batches remembered per producer: a producer may have this many batches in flight and still
/// have every retry recognised (Kafka's `max.in.flight.requests.per.connection` limit).
pub const DEDUP_WINDOW: usize = 5;

/// One batch a producer wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrittenBatch {
    /// First sequence number of the batch.
    pub base_sequence: i32,
    /// Messages in it.
    pub count: u32,
    /// Offset its first message was given.
    pub base_offset: u64,
}

/// What a producer has written lately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    /// The producer's current epoch.
    pub epoch: i16,
    /// Its last batches, oldest first, at most [`DEDUP_WINDOW`].
    pub recent: VecDeque<WrittenBatch>,
}

/// The decision for an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Write it.
    Accept,
    /// Already written at this offset: acknowledge again, write nothing.
    Duplicate(WrittenBatch),
    /// An older epoch of this producer: a zombie, fenced off.
    Fenced {
        /// The epoch now in force.
        current: i16,
    },
    /// A sequence ahead of the expected one: the batches between are missing.
    OutOfOrder {
        /// The sequence expected next.
        expected: i32,
    },
    /// A sequence behind the expected one that retries none of the remembered batches (same base
    /// sequence and count): it repeats sequences already written, or overlaps them.
    Older {
        /// The sequence expected next.
        expected: i32,
    },
}

impl Check {
    /// Why a batch stamped `stamp` is refused, for the producer; `None` if it is not.
    pub fn refusal(&self, stamp: &ProducerStamp) -> Option<String> {
        let (id, epoch, got) = (stamp.producer_id, stamp.epoch, stamp.base_sequence);
        let who = format!("producer {id} epoch {epoch}");
        match *self {
            Check::Accept | Check::Duplicate(_) => None,
            Check::Fenced { current } => Some(format!("{who} is fenced by epoch {current}")),
            Check::OutOfOrder { expected } => Some(format!(
                "{who}: out of order: expected sequence {expected}, got {got}, which is ahead: the batches \
                 holding sequences {expected} to {} are missing and nothing was written; resend from sequence \
                 {expected}",
                got - 1
            )),
            Check::Older { expected } => Some(format!(
                "{who}: out of order: expected sequence {expected}, got {got}, which is older: it is not a retry \
                 of one of the producer's last {DEDUP_WINDOW} batches to this partition (a retry repeats a \
                 batch's base sequence and record count; earlier batches are no longer remembered), so its \
                 sequences were already written and nothing was written again; do not resend it"
            )),
        }
    }
}

/// Every producer's state in one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerTable {
    pub(crate) producers: BTreeMap<i64, ProducerEntry>,
}

impl ProducerTable {
    /// Decides what to do with a batch stamped `stamp` holding `count` messages.
    pub fn check(&self, stamp: &ProducerStamp, count: u32) -> Check {
        let Some(entry) = self.producers.get(&stamp.producer_id) else { return Check::Accept };
        if stamp.epoch < entry.epoch {
            return Check::Fenced { current: entry.epoch };
        }
        if stamp.epoch > entry.epoch {
            return Check::Accept; // a new epoch starts its sequence afresh
        }
        if let Some(dup) = entry.recent.iter().find(|b| b.base_sequence == stamp.base_sequence && b.count == count) {
            return Check::Duplicate(*dup);
        }
        let last = entry.recent.back().expect("an entry always holds a batch");
        let expected = last.base_sequence.wrapping_add(last.count as i32);
        match stamp.base_sequence.cmp(&expected) {
            std::cmp::Ordering::Equal => Check::Accept,
            std::cmp::Ordering::Greater => Check::OutOfOrder { expected },
            std::cmp::Ordering::Less => Check::Older { expected },
        }
    }

    /// Records an accepted batch.
    pub fn record(&mut self, stamp: &ProducerStamp, count: u32, base_offset: u64) {
        let written = WrittenBatch { base_sequence: stamp.base_sequence, count, base_offset };
        let entry = self
            .producers
            .entry(stamp.producer_id)
            .or_insert_with(|| ProducerEntry { epoch: stamp.epoch, recent: VecDeque::new() });
        if stamp.epoch != entry.epoch {
            entry.epoch = stamp.epoch;
            entry.recent.clear();
        }
        if entry.recent.len() == DEDUP_WINDOW {
            entry.recent.pop_front();
        }
        entry.recent.push_back(written);
    }

    /// Number of producers tracked.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer is tracked.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(epoch: i16, seq: i32) -> ProducerStamp {
        ProducerStamp { producer_id: 7, epoch, base_sequence: seq }
    }

    #[test]
    fn retries_in_the_window_are_duplicates_gaps_are_refused_and_old_epochs_fenced() {
        let mut t = ProducerTable::default();
        assert_eq!(t.check(&stamp(0, 0), 3), Check::Accept);
        t.record(&stamp(0, 0), 3, 100);
        assert_eq!(t.check(&stamp(0, 3), 2), Check::Accept);
        t.record(&stamp(0, 3), 2, 103);
        assert_eq!(
            t.check(&stamp(0, 0), 3),
            Check::Duplicate(WrittenBatch { base_sequence: 0, count: 3, base_offset: 100 })
        );
        assert_eq!(t.check(&stamp(0, 9), 1), Check::OutOfOrder { expected: 5 });
        assert_eq!(t.check(&stamp(1, 0), 1), Check::Accept);
        t.record(&stamp(1, 0), 1, 105);
        assert_eq!(t.check(&stamp(0, 5), 1), Check::Fenced { current: 1 });
        for i in 1..=DEDUP_WINDOW as i32 + 1 {
            t.record(&stamp(1, i), 1, 105 + i as u64);
        }
        assert_eq!(t.producers[&7].recent.len(), DEDUP_WINDOW);
        assert_eq!(t.check(&stamp(1, 0), 1), Check::Older { expected: DEDUP_WINDOW as i32 + 2 });
    }

    #[test]
    fn a_lower_sequence_is_older_a_higher_one_a_gap_and_each_refusal_says_which() {
        let mut t = ProducerTable::default();
        t.record(&stamp(0, 0), 3, 100);
        t.record(&stamp(0, 3), 2, 103);
        // A retry must repeat base sequence and count: 3 with one record is not the batch 3..=4.
        let older = t.check(&stamp(0, 3), 1);
        assert_eq!(older, Check::Older { expected: 5 });
        assert_eq!(t.check(&stamp(0, 1), 1), Check::Older { expected: 5 }, "inside a written batch");
        let message = older.refusal(&stamp(0, 3)).unwrap();
        assert!(message.starts_with("producer 7 epoch 0: out of order: expected sequence 5, got 3, which is older"));
        assert!(message.contains("not a retry of one of the producer's last 5 batches"), "{message}");
        let gap = t.check(&stamp(0, 9), 1);
        assert_eq!(gap, Check::OutOfOrder { expected: 5 });
        let message = gap.refusal(&stamp(0, 9)).unwrap();
        assert!(message.contains("expected sequence 5, got 9, which is ahead"), "{message}");
        assert!(message.contains("sequences 5 to 8 are missing"), "{message}");
        let fenced = Check::Fenced { current: 2 }.refusal(&stamp(1, 5)).unwrap();
        assert_eq!(fenced, "producer 7 epoch 1 is fenced by epoch 2");
        assert_eq!(t.check(&stamp(0, 5), 1).refusal(&stamp(0, 5)), None);
    }
}
