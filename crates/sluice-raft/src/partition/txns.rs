//! A partition's transactions (docs/TRANSACTIONS.md): which producers have a transaction open
//! here, the last stable offset (LSO) they hold back, and the ranges of aborted transactions a
//! `read_committed` fetch hides. Updated only by apply, so every replica decides the same; kept
//! in the partition snapshot.
//!
//! - A transactional batch of producer `p` at epoch `e` opens a transaction here (first offset:
//!   the batch's), or joins the one `p` has open at `e`.
//! - A *marker* (a control batch the coordinator writes, `sluice_common::record::marker`)
//!   carries the marker epoch `e + 1`. It closes `p`'s open transaction if that was opened at an
//!   older epoch; an abort records the range from its first offset to the marker's. A marker at
//!   or below the open transaction's epoch is from an earlier decision (a deposed coordinator's
//!   retry) and must not close a later transaction: it is refused. Either way the producer's
//!   epoch in the producer table becomes the marker epoch, so a late write of the ended
//!   transaction is fenced (Kafka's KIP-890: one epoch per transaction).
//! - The LSO is the first offset of the oldest open transaction, or the next offset if none is
//!   open: everything below it is decided.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// A transaction open in this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenTxn {
    /// The producer epoch it was opened at.
    pub epoch: i16,
    /// The offset of its first message here.
    pub first_offset: u64,
    /// The partition clock when it opened, in ms (for the age of the oldest open transaction).
    pub started_ms: u64,
}

/// The offsets of one aborted transaction in this partition, its marker included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedRange {
    /// The producer whose transaction it was.
    pub producer_id: i64,
    /// Its first message's offset.
    pub first_offset: u64,
    /// Its abort marker's offset.
    pub last_offset: u64,
}

/// What a marker did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerOutcome {
    /// It closed the producer's open transaction: the marker is written at the next offset.
    Closed(OpenTxn),
    /// No transaction of the producer is open here: nothing is written (the producer epoch
    /// still moves to the marker's).
    NothingOpen,
    /// The open transaction is at the marker's epoch or a later one: the marker is stale.
    Stale {
        /// The open transaction's epoch.
        open_epoch: i16,
    },
}

/// What a read at `read_committed` must not show: the LSO and the aborted ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stable {
    /// The last stable offset.
    pub offset: u64,
    /// Aborted ranges at or above the log start, by marker offset.
    pub aborted: Arc<[AbortedRange]>,
    /// Transactions open in the partition.
    pub open: usize,
    /// When the oldest of them began (the leader's clock, ms since the Unix epoch).
    pub oldest_open_ms: Option<u64>,
}

impl Stable {
    /// Whether a read at `read_committed` hides the batch at `base_offset` with this header:
    /// markers, and transactional batches of an aborted transaction.
    pub fn hides(&self, h: &sluice_common::record::BatchHeader, base_offset: u64) -> bool {
        if h.control {
            return true;
        }
        h.transactional
            && self.aborted.iter().any(|r| {
                r.producer_id == h.producer.producer_id && r.first_offset <= base_offset && base_offset <= r.last_offset
            })
    }
}

/// The transactions of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnIndex {
    open: BTreeMap<i64, OpenTxn>,
    /// `(first_offset, producer_id)` of every open transaction: the LSO is its first.
    by_first: BTreeSet<(u64, i64)>,
    /// Aborted ranges, by marker offset (markers are applied in offset order).
    aborted: VecDeque<AbortedRange>,
}

impl TxnIndex {
    /// An index holding `open` and `aborted` (as a snapshot stores them).
    pub(crate) fn from_parts(open: BTreeMap<i64, OpenTxn>, aborted: VecDeque<AbortedRange>) -> TxnIndex {
        let by_first = open.iter().map(|(p, t)| (t.first_offset, *p)).collect();
        TxnIndex { open, by_first, aborted }
    }

    /// The producer's open transaction here, if any.
    pub fn open_of(&self, producer_id: i64) -> Option<&OpenTxn> {
        self.open.get(&producer_id)
    }

    /// Every open transaction, by producer id.
    pub fn open(&self) -> &BTreeMap<i64, OpenTxn> {
        &self.open
    }

    /// The aborted ranges, by marker offset.
    pub fn aborted(&self) -> &VecDeque<AbortedRange> {
        &self.aborted
    }

    /// The last stable offset, when the next message would get `next_offset`.
    pub fn last_stable_offset(&self, next_offset: u64) -> u64 {
        self.by_first.first().map_or(next_offset, |(first, _)| *first)
    }

    /// Why a batch of producer `producer_id` at `epoch` may not be written, if it may not: a
    /// transactional batch while the producer's transaction here is open at another epoch, or
    /// a non-transactional one while it has one open at all.
    pub fn refusal(&self, producer_id: i64, epoch: i16, transactional: bool) -> Option<String> {
        let open = self.open.get(&producer_id)?;
        if !transactional {
            return Some(format!(
                "producer {producer_id} has a transaction open here (epoch {}); end it before writing outside it",
                open.epoch
            ));
        }
        (open.epoch != epoch).then(|| {
            format!(
                "producer {producer_id}'s transaction of epoch {} is still open here; epoch {epoch} cannot begin \
                 until its marker is written",
                open.epoch
            )
        })
    }

    /// Notes a transactional batch at `first_offset`: it opens a transaction unless the
    /// producer has one open (at the same epoch: [`TxnIndex::refusal`] was asked first).
    pub fn wrote(&mut self, producer_id: i64, epoch: i16, first_offset: u64, now_ms: u64) {
        if self.open.contains_key(&producer_id) {
            return;
        }
        self.open.insert(producer_id, OpenTxn { epoch, first_offset, started_ms: now_ms });
        self.by_first.insert((first_offset, producer_id));
    }

    /// Applies a marker of `producer_id` at `marker_epoch`, which, if it closes a transaction,
    /// is written at `marker_offset`.
    pub fn mark(&mut self, producer_id: i64, marker_epoch: i16, commit: bool, marker_offset: u64) -> MarkerOutcome {
        let Some(open) = self.open.get(&producer_id).copied() else { return MarkerOutcome::NothingOpen };
        if open.epoch >= marker_epoch {
            return MarkerOutcome::Stale { open_epoch: open.epoch };
        }
        self.open.remove(&producer_id);
        self.by_first.remove(&(open.first_offset, producer_id));
        if !commit {
            self.aborted.push_back(AbortedRange {
                producer_id,
                first_offset: open.first_offset,
                last_offset: marker_offset,
            });
        }
        MarkerOutcome::Closed(open)
    }

    /// Forgets aborted ranges wholly below `log_start_offset` (retention removed them).
    /// Returns whether any went.
    pub fn prune(&mut self, log_start_offset: u64) -> bool {
        let before = self.aborted.len();
        while self.aborted.front().is_some_and(|r| r.last_offset < log_start_offset) {
            self.aborted.pop_front();
        }
        self.aborted.len() != before
    }

    /// When the transaction holding the LSO began (the oldest: a partition's clock and offsets
    /// rise together), if one is open.
    pub fn oldest_started_ms(&self) -> Option<u64> {
        self.by_first.first().and_then(|(_, pid)| self.open.get(pid)).map(|t| t.started_ms)
    }

    /// The view a `read_committed` read needs.
    pub fn stable(&self, next_offset: u64) -> Stable {
        Stable {
            offset: self.last_stable_offset(next_offset),
            aborted: self.aborted.iter().copied().collect(),
            open: self.open.len(),
            oldest_open_ms: self.oldest_started_ms(),
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_common::record::{BatchBuilder, ProducerStamp, Record, parse_header};

    use super::*;

    #[test]
    fn the_lso_is_the_first_offset_of_the_oldest_open_transaction() {
        let mut t = TxnIndex::default();
        assert_eq!(t.last_stable_offset(10), 10);
        t.wrote(1, 0, 10, 5);
        t.wrote(2, 3, 12, 6);
        t.wrote(1, 0, 14, 7); // joins, does not move its first offset
        assert_eq!(t.last_stable_offset(20), 10);
        assert_eq!(
            t.mark(1, 1, true, 20),
            MarkerOutcome::Closed(OpenTxn { epoch: 0, first_offset: 10, started_ms: 5 })
        );
        assert_eq!(t.last_stable_offset(21), 12);
        assert!(matches!(t.mark(2, 4, false, 21), MarkerOutcome::Closed(_)));
        assert_eq!(t.last_stable_offset(22), 22);
        assert_eq!(
            t.aborted().iter().copied().collect::<Vec<_>>(),
            [AbortedRange { producer_id: 2, first_offset: 12, last_offset: 21 }]
        );
    }

    #[test]
    fn a_marker_at_or_below_the_open_epoch_is_stale_and_a_second_marker_finds_nothing_open() {
        let mut t = TxnIndex::default();
        t.wrote(7, 5, 0, 0);
        assert_eq!(t.mark(7, 5, false, 3), MarkerOutcome::Stale { open_epoch: 5 });
        assert_eq!(t.mark(7, 4, true, 3), MarkerOutcome::Stale { open_epoch: 5 });
        assert!(matches!(t.mark(7, 6, true, 3), MarkerOutcome::Closed(_)));
        assert_eq!(t.mark(7, 6, true, 4), MarkerOutcome::NothingOpen);
        assert!(t.aborted().is_empty());
    }

    #[test]
    fn writes_outside_or_across_an_open_transaction_are_refused() {
        let mut t = TxnIndex::default();
        assert_eq!(t.refusal(1, 0, false), None);
        t.wrote(1, 2, 0, 0);
        assert_eq!(t.refusal(1, 2, true), None);
        assert!(t.refusal(1, 3, true).unwrap().contains("epoch 2 is still open"));
        assert!(t.refusal(1, 2, false).unwrap().contains("has a transaction open"));
        assert_eq!(t.refusal(9, 0, false), None);
    }

    #[test]
    fn pruning_drops_ranges_below_the_log_start_and_reads_hide_aborted_batches_and_markers() {
        let mut t = TxnIndex::default();
        for (pid, first, marker) in [(1, 0, 4), (2, 5, 9), (1, 10, 12)] {
            t.wrote(pid, 0, first, 0);
            t.mark(pid, 1, false, marker);
            t = TxnIndex::from_parts(t.open().clone(), t.aborted().clone());
            // The next transaction of the same producer starts at the marker epoch.
            t.open.retain(|_, _| false);
        }
        assert!(!t.prune(4));
        assert!(t.prune(5));
        assert_eq!(t.aborted().len(), 2);
        let stable = t.stable(13);
        let header = |pid, txn: bool| {
            let mut b = BatchBuilder::new(ProducerStamp { producer_id: pid, epoch: 0, base_sequence: 0 }, 64)
                .transactional(txn);
            b.push(&Record::new("v", 1));
            parse_header(&b.finish()).unwrap()
        };
        assert!(stable.hides(&header(2, true), 6));
        assert!(!stable.hides(&header(2, false), 6), "not transactional");
        assert!(!stable.hides(&header(1, true), 6), "another producer's range");
        assert!(stable.hides(&header(1, true), 11));
        assert!(!stable.hides(&header(1, true), 13));
        let marker = parse_header(&sluice_common::record::marker::marker_batch(5, 1, true, 0)).unwrap();
        assert!(stable.hides(&marker, 0));
    }
}
