//! Idempotent-producer state (docs/ARCHITECTURE.md, D6): per producer id, its epoch and the last few batches it
//! wrote, so a batch retried after a timeout or a leader change is recognised and not written
//! twice. Updated only by apply, so every replica decides the same.
//!
//! The table is bounded (docs/adr/0007-producer-expiry.md). Its clock is the *partition clock*:
//! the latest time a leader stamped into a produce command ([`ProducerTable::advance`]), never
//! moving back, so every replica reads the same time at the same log position. A producer that
//! wrote nothing for `producer_id_expiration_ms` of that clock is forgotten (as Kafka expires
//! producer ids); a new producer id is refused while the table holds `max_producers` ids.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use sluice_common::record::ProducerStamp;

/// How long a producer may be idle before it is forgotten, by default: 7 days, as Kafka's
/// `transactional.id.expiration.ms` / `producer.id.expiration.ms`.
pub const DEFAULT_PRODUCER_ID_EXPIRATION_MS: u64 = 7 * 24 * 3_600_000;
/// The most producer ids a partition tracks, by default. An entry costs about 300 bytes of
/// memory and 99 bytes of snapshot (docs/DURABILITY.md, "Bounded producer state"), so a full
/// table is about 3 MiB of memory and 1 MiB of snapshot per partition replica.
pub const DEFAULT_MAX_PRODUCERS: u32 = 10_000;

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
    /// The partition clock when it last wrote, in ms (0: before the partition had a clock).
    pub last_active_ms: u64,
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
    /// A producer id the table does not hold (never written here, or its state expired), with a
    /// batch that does not start its sequence: the batches before it were not written.
    UnknownProducer,
    /// A producer id the table does not hold, and the table is full.
    TooManyProducers {
        /// The cap in force.
        limit: usize,
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
            Check::UnknownProducer => Some(format!(
                "{who} is not known to this partition (it never wrote here, or it was idle past \
                 producer_id_expiration_ms) and its batch starts at sequence {got}, not 0: the batches before \
                 it were not written, and nothing was written; start again from sequence 0 under a new \
                 producer id (the SDK does)"
            )),
            Check::TooManyProducers { limit } => Some(format!(
                "producer id {id} is new and the partition already tracks {limit} idempotent producer ids \
                 (max_producers_per_partition)"
            )),
        }
    }
}

/// Every producer's state in one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerTable {
    pub(crate) producers: BTreeMap<i64, ProducerEntry>,
    /// `(last_active_ms, producer_id)` of every producer, oldest first: expiry pops its front.
    by_activity: BTreeSet<(u64, i64)>,
    /// The partition clock, in ms: the latest leader time applied (0: none yet).
    clock_ms: u64,
}

impl ProducerTable {
    /// A table as a snapshot holds it: `producers` with their last-activity times, and the
    /// partition clock.
    pub(crate) fn from_parts(producers: BTreeMap<i64, ProducerEntry>, clock_ms: u64) -> ProducerTable {
        let by_activity = producers.iter().map(|(id, p)| (p.last_active_ms, *id)).collect();
        ProducerTable { producers, by_activity, clock_ms }
    }

    /// The partition clock, in ms (0 until a leader stamped a produce command).
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// Moves the partition clock to `now_ms` (a leader's time, carried in the command being
    /// applied; an earlier time, from a leader whose clock lags, leaves it where it is) and
    /// forgets every producer idle for at least `expiration_ms` of it. Returns how many went.
    pub fn advance(&mut self, now_ms: u64, expiration_ms: u64) -> usize {
        if self.clock_ms == 0 && now_ms > 0 {
            // Producers recorded before the partition had a clock (by an older broker, or by
            // unstamped commands) count as active from the first time it reads.
            self.producers.values_mut().for_each(|p| p.last_active_ms = now_ms);
            self.by_activity = self.producers.keys().map(|id| (now_ms, *id)).collect();
        }
        self.clock_ms = self.clock_ms.max(now_ms);
        let Some(cutoff) = self.clock_ms.checked_sub(expiration_ms) else { return 0 };
        let mut expired = 0;
        while let Some(&(at, id)) = self.by_activity.first() {
            if at > cutoff {
                break;
            }
            self.by_activity.pop_first();
            self.producers.remove(&id);
            expired += 1;
        }
        expired
    }

    /// Decides what to do with a batch stamped `stamp` holding `count` messages, when the table
    /// may hold at most `max_producers` ids, under the current rule (tests' shorthand).
    #[cfg(test)]
    pub fn check(&self, stamp: &ProducerStamp, count: u32, max_producers: usize) -> Check {
        self.check_under(stamp, count, max_producers, true)
    }

    /// Decides what to do with a batch stamped `stamp` holding `count` messages, when the table
    /// may hold at most `max_producers` ids, under the rule of its entry: `from_zero` (tag 9,
    /// see `LeaderStamp::from_zero`) or the earlier one, which took an unknown producer or a new
    /// epoch at any sequence. A log is replayed under the rules it was first applied with.
    pub fn check_under(&self, stamp: &ProducerStamp, count: u32, max_producers: usize, from_zero: bool) -> Check {
        let Some(entry) = self.producers.get(&stamp.producer_id) else {
            // A producer's first batch here starts at 0. Accepting a later one would let it
            // overtake earlier batches that were refused (a leader that was not ready yet), which
            // could then never be written: a gap the producer would take for a duplicate.
            if from_zero && stamp.base_sequence != 0 {
                return Check::UnknownProducer;
            }
            if self.producers.len() >= max_producers {
                return Check::TooManyProducers { limit: max_producers };
            }
            return Check::Accept;
        };
        if stamp.epoch < entry.epoch {
            return Check::Fenced { current: entry.epoch };
        }
        if stamp.epoch > entry.epoch {
            // A new epoch starts its sequence afresh, at 0, for the same reason.
            return if !from_zero || stamp.base_sequence == 0 {
                Check::Accept
            } else {
                Check::OutOfOrder { expected: 0 }
            };
        }
        if let Some(dup) = entry.recent.iter().find(|b| b.base_sequence == stamp.base_sequence && b.count == count) {
            return Check::Duplicate(*dup);
        }
        // A transaction marker moves the epoch and empties the window: the epoch's first batch
        // starts at sequence 0.
        let expected = entry.recent.back().map_or(0, |last| last.base_sequence.wrapping_add(last.count as i32));
        match stamp.base_sequence.cmp(&expected) {
            std::cmp::Ordering::Equal => Check::Accept,
            std::cmp::Ordering::Greater => Check::OutOfOrder { expected },
            std::cmp::Ordering::Less => Check::Older { expected },
        }
    }

    /// Records an accepted batch, active at the partition clock.
    pub fn record(&mut self, stamp: &ProducerStamp, count: u32, base_offset: u64) {
        let written = WrittenBatch { base_sequence: stamp.base_sequence, count, base_offset };
        let (id, now) = (stamp.producer_id, self.clock_ms);
        let entry = self.producers.entry(id).or_insert_with(|| {
            self.by_activity.insert((now, id));
            ProducerEntry { epoch: stamp.epoch, recent: VecDeque::new(), last_active_ms: now }
        });
        if entry.last_active_ms != now {
            self.by_activity.remove(&(entry.last_active_ms, id));
            self.by_activity.insert((now, id));
            entry.last_active_ms = now;
        }
        if stamp.epoch != entry.epoch {
            entry.epoch = stamp.epoch;
            entry.recent.clear();
        }
        if entry.recent.len() == DEDUP_WINDOW {
            entry.recent.pop_front();
        }
        entry.recent.push_back(written);
    }

    /// Moves `producer_id` to `epoch` (a transaction marker's), with no batch of it written
    /// yet: a later write at an older epoch is fenced, one at `epoch` starts at sequence 0. A
    /// producer already at `epoch` or later is left alone.
    pub fn bump(&mut self, producer_id: i64, epoch: i16) {
        let now = self.clock_ms;
        let entry = self.producers.entry(producer_id).or_insert_with(|| {
            self.by_activity.insert((now, producer_id));
            ProducerEntry { epoch, recent: VecDeque::new(), last_active_ms: now }
        });
        if entry.epoch < epoch {
            entry.epoch = epoch;
            entry.recent.clear();
        }
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

    /// No cap.
    const ANY: usize = usize::MAX;

    fn stamp(epoch: i16, seq: i32) -> ProducerStamp {
        ProducerStamp { producer_id: 7, epoch, base_sequence: seq }
    }

    fn of(producer_id: i64, seq: i32) -> ProducerStamp {
        ProducerStamp { producer_id, epoch: 0, base_sequence: seq }
    }

    #[test]
    fn retries_in_the_window_are_duplicates_gaps_are_refused_and_old_epochs_fenced() {
        let mut t = ProducerTable::default();
        assert_eq!(t.check(&stamp(0, 0), 3, ANY), Check::Accept);
        t.record(&stamp(0, 0), 3, 100);
        assert_eq!(t.check(&stamp(0, 3), 2, ANY), Check::Accept);
        t.record(&stamp(0, 3), 2, 103);
        assert_eq!(
            t.check(&stamp(0, 0), 3, ANY),
            Check::Duplicate(WrittenBatch { base_sequence: 0, count: 3, base_offset: 100 })
        );
        assert_eq!(t.check(&stamp(0, 9), 1, ANY), Check::OutOfOrder { expected: 5 });
        assert_eq!(t.check(&stamp(1, 0), 1, ANY), Check::Accept);
        t.record(&stamp(1, 0), 1, 105);
        assert_eq!(t.check(&stamp(0, 5), 1, ANY), Check::Fenced { current: 1 });
        for i in 1..=DEDUP_WINDOW as i32 + 1 {
            t.record(&stamp(1, i), 1, 105 + i as u64);
        }
        assert_eq!(t.producers[&7].recent.len(), DEDUP_WINDOW);
        assert_eq!(t.check(&stamp(1, 0), 1, ANY), Check::Older { expected: DEDUP_WINDOW as i32 + 2 });
    }

    #[test]
    fn a_lower_sequence_is_older_a_higher_one_a_gap_and_each_refusal_says_which() {
        let mut t = ProducerTable::default();
        t.record(&stamp(0, 0), 3, 100);
        t.record(&stamp(0, 3), 2, 103);
        // A retry must repeat base sequence and count: 3 with one record is not the batch 3..=4.
        let older = t.check(&stamp(0, 3), 1, ANY);
        assert_eq!(older, Check::Older { expected: 5 });
        assert_eq!(t.check(&stamp(0, 1), 1, ANY), Check::Older { expected: 5 }, "inside a written batch");
        let message = older.refusal(&stamp(0, 3)).unwrap();
        assert!(message.starts_with("producer 7 epoch 0: out of order: expected sequence 5, got 3, which is older"));
        assert!(message.contains("not a retry of one of the producer's last 5 batches"), "{message}");
        let gap = t.check(&stamp(0, 9), 1, ANY);
        assert_eq!(gap, Check::OutOfOrder { expected: 5 });
        let message = gap.refusal(&stamp(0, 9)).unwrap();
        assert!(message.contains("expected sequence 5, got 9, which is ahead"), "{message}");
        assert!(message.contains("sequences 5 to 8 are missing"), "{message}");
        let fenced = Check::Fenced { current: 2 }.refusal(&stamp(1, 5)).unwrap();
        assert_eq!(fenced, "producer 7 epoch 1 is fenced by epoch 2");
        assert_eq!(t.check(&stamp(0, 5), 1, ANY).refusal(&stamp(0, 5)), None);
    }

    #[test]
    fn a_producer_the_partition_does_not_know_or_a_new_epoch_starts_at_sequence_0() {
        let mut t = ProducerTable::default();
        // Its batch 0 was refused (the leader was not ready) and batch 3 came after it.
        let unknown = t.check(&stamp(0, 3), 2, ANY);
        assert_eq!(unknown, Check::UnknownProducer);
        let message = unknown.refusal(&stamp(0, 3)).unwrap();
        assert!(message.contains("producer 7 epoch 0 is not known to this partition"), "{message}");
        assert!(message.contains("starts at sequence 3, not 0"), "{message}");
        assert_eq!(t.check(&stamp(0, 0), 3, ANY), Check::Accept);
        t.record(&stamp(0, 0), 3, 100);
        assert_eq!(t.check(&stamp(0, 3), 2, ANY), Check::Accept, "known now: in sequence");
        assert_eq!(t.check(&stamp(1, 4), 1, ANY), Check::OutOfOrder { expected: 0 }, "a new epoch starts at 0");
        assert_eq!(t.check(&stamp(1, 0), 1, ANY), Check::Accept);
        assert_eq!(t.check_under(&stamp(2, 4), 1, ANY, false), Check::Accept, "the rule before: any sequence");
        assert_eq!(t.check_under(&of(8, 3), 1, ANY, false), Check::Accept, "the rule before: any sequence");
    }

    #[test]
    fn a_producer_idle_for_the_expiration_is_forgotten_at_the_same_clock_reading_everywhere() {
        let mut t = ProducerTable::default();
        t.advance(1_000, 100);
        t.record(&of(1, 0), 1, 0);
        t.advance(1_050, 100);
        t.record(&of(2, 0), 1, 1);
        assert_eq!(t.advance(1_099, 100), 0, "producer 1 was idle 99 ms");
        assert_eq!(t.advance(1_100, 100), 1, "producer 1 was idle 100 ms");
        assert_eq!((t.len(), t.producers.contains_key(&2)), (1, true));
        assert_eq!(t.check(&of(1, 7), 1, ANY), Check::UnknownProducer, "a forgotten id is unknown");
        assert_eq!(t.check(&of(1, 0), 1, ANY), Check::Accept, "a forgotten id starts afresh, at 0");

        tracing::info!("--- a leader whose clock lags does not move the clock back");
        assert_eq!(t.advance(500, 100), 0);
        assert_eq!(t.clock_ms(), 1_100);
        t.record(&of(2, 1), 1, 2);
        assert_eq!(t.producers[&2].last_active_ms, 1_100, "writing keeps a producer active");
        assert_eq!(t.advance(1_180, 100), 0, "producer 2 wrote 80 ms ago");
        assert_eq!(t.advance(1_200, 100), 1);
        assert!(t.is_empty() && t.by_activity.is_empty());
    }

    #[test]
    fn a_full_table_refuses_new_ids_only_until_one_expires() {
        let mut t = ProducerTable::default();
        t.advance(10, 1_000);
        t.record(&of(1, 0), 1, 0);
        t.advance(20, 1_000);
        t.record(&of(2, 0), 1, 1);
        assert_eq!(t.check(&of(3, 0), 1, 2), Check::TooManyProducers { limit: 2 });
        assert_eq!(t.check(&of(1, 1), 1, 2), Check::Accept, "a known producer carries on");
        assert_eq!(t.check(&ProducerStamp { producer_id: 2, epoch: 1, base_sequence: 0 }, 1, 2), Check::Accept);
        assert_eq!(t.check(&of(3, 0), 1, 3), Check::Accept, "under a higher cap");
        t.advance(1_010, 1_000);
        assert_eq!(t.check(&of(3, 0), 1, 2), Check::Accept, "producer 1 expired and made room");
    }

    #[test]
    fn producers_recorded_before_the_clock_count_as_active_from_its_first_reading() {
        let mut t = ProducerTable::default();
        t.record(&of(1, 0), 1, 0);
        t.record(&of(2, 0), 1, 1);
        assert_eq!(t.producers[&1].last_active_ms, 0);
        assert_eq!(t.advance(10_000, 100), 0, "not idle since the epoch");
        assert_eq!(t.producers[&1].last_active_ms, 10_000);
        assert_eq!(t.advance(10_100, 100), 2);
    }
}
