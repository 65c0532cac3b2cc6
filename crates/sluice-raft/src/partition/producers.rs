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
    /// A gap in sequence numbers: a batch before this one is missing.
    OutOfOrder {
        /// The sequence expected next.
        expected: i32,
    },
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
        if stamp.base_sequence == expected { Check::Accept } else { Check::OutOfOrder { expected } }
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
        assert_eq!(t.check(&stamp(1, 0), 1), Check::OutOfOrder { expected: DEDUP_WINDOW as i32 + 2 });
    }
}
