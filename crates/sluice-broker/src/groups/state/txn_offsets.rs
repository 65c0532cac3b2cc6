//! Offsets committed as part of a transaction (docs/TRANSACTIONS.md, exactly-once
//! consume-transform-produce): pending per producer until the transaction ends, then committed
//! with it or dropped. While a partition has a pending offset, `FetchOffsets` for it answers
//! CONCURRENT_TRANSACTIONS (retriable): a consumer taking the partition over must not start from
//! an offset the transaction is about to move (Kafka's KIP-447).
//!
//! The transaction coordinator sends both (`WriteTxnOffsets` under the transactional id's
//! turn, so never after the transaction ended; `EndTxnOffsets` as the group's marker), so the
//! group trusts them as it trusts its own records.

use std::collections::BTreeMap;

use sluice_proto::internal::group_record::Change;
use sluice_proto::internal::{self, GroupRecord};
use sluice_proto::{ErrorCode, v1};

use super::{Committed, Coordinated, Group, GroupError, record, validate_group_id};

/// One producer's pending offsets in a group, by (topic, partition).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct PendingTxn {
    epoch: i32,
    offsets: BTreeMap<(String, u32), Committed>,
}

impl Group {
    /// Applies a transaction's offsets record or its end.
    pub(super) fn apply_txn(&mut self, change: &Change) {
        match change {
            Change::TxnOffsets(t) => {
                let offsets = t.offsets.iter().map(|o| ((o.topic.clone(), o.partition), committed(o))).collect();
                self.txn_offsets.insert(t.producer_id, PendingTxn { epoch: t.epoch, offsets });
            }
            Change::TxnOffsetsEnded(e) => {
                let Some(pending) = self.txn_offsets.remove(&e.producer_id) else { return };
                if e.commit {
                    for ((topic, partition), c) in pending.offsets {
                        self.offsets.insert((String::new(), topic, partition), c);
                    }
                }
            }
            _ => {}
        }
    }

    /// The producer whose transaction holds an offset of `topic`/`partition` pending, if any.
    pub(super) fn pending_on(&self, topic: &str, partition: u32) -> Option<i64> {
        let key = (topic.to_owned(), partition);
        self.txn_offsets.iter().find(|(_, p)| p.offsets.contains_key(&key)).map(|(pid, _)| *pid)
    }

    /// Records that rebuild the pending offsets (for a checkpoint).
    pub(super) fn txn_records(&self, name: &str) -> Vec<GroupRecord> {
        let offsets = |p: &PendingTxn| {
            p.offsets.iter().map(|((topic, partition), c)| offset_record(topic, *partition, c)).collect()
        };
        let to_record = |(pid, p): (&i64, &PendingTxn)| {
            record(
                name,
                Change::TxnOffsets(internal::TxnOffsets { producer_id: *pid, epoch: p.epoch, offsets: offsets(p) }),
            )
        };
        self.txn_offsets.iter().map(to_record).collect()
    }
}

impl Coordinated {
    /// The record adding `offsets` to producer `producer_id`'s pending ones in `group` (those
    /// of an older epoch, a transaction that ended without its end reaching the group, are
    /// replaced). Creates the group if need be.
    pub fn txn_offsets(
        &self,
        group: &str,
        (producer_id, epoch): (i64, i32),
        offsets: &[v1::OffsetToCommit],
        now_ms: i64,
    ) -> Result<Vec<GroupRecord>, GroupError> {
        validate_group_id(group)?;
        if offsets.is_empty() {
            return Err(GroupError::new(ErrorCode::InvalidRequest, "a transactional commit names no offsets"));
        }
        let mut all: BTreeMap<(String, u32), internal::OffsetCommit> = BTreeMap::new();
        let earlier = self.groups.get(group).and_then(|g| g.txn_offsets.get(&producer_id)).filter(|p| p.epoch == epoch);
        for ((topic, partition), c) in earlier.into_iter().flat_map(|p| &p.offsets) {
            all.insert((topic.clone(), *partition), offset_record(topic, *partition, c));
        }
        for o in offsets {
            let commit = internal::OffsetCommit {
                topic: o.topic.clone(),
                partition: o.partition,
                offset: o.offset,
                metadata: o.metadata.clone(),
                commit_timestamp_ms: now_ms,
                instance_id: String::new(),
            };
            all.insert((o.topic.clone(), o.partition), commit);
        }
        let change = internal::TxnOffsets { producer_id, epoch, offsets: all.into_values().collect() };
        Ok(vec![record(group, Change::TxnOffsets(change))])
    }

    /// The record ending producer `producer_id`'s pending offsets in `group`; none if it has
    /// none (a retried end, or a transaction that committed no offsets here).
    pub fn end_txn_offsets(&self, group: &str, producer_id: i64, commit: bool) -> Vec<GroupRecord> {
        let pending = self.groups.get(group).is_some_and(|g| g.txn_offsets.contains_key(&producer_id));
        if !pending {
            return Vec::new();
        }
        vec![record(group, Change::TxnOffsetsEnded(internal::TxnOffsetsEnded { producer_id, commit }))]
    }

    /// CONCURRENT_TRANSACTIONS if a partition `req` asks for has an offset pending in a
    /// transaction of `group`.
    pub(super) fn refuse_unstable(&self, req: &v1::FetchOffsetsRequest) -> Result<(), GroupError> {
        let Some(g) = self.groups.get(&req.group).filter(|g| !g.txn_offsets.is_empty()) else { return Ok(()) };
        if req.instance_id.is_some() {
            return Ok(()); // a broadcast member's own offsets are never transactional
        }
        let wanted: Vec<(String, u32)> = if req.partitions.is_empty() {
            g.txn_offsets.values().flat_map(|p| p.offsets.keys().cloned()).collect()
        } else {
            req.partitions.iter().flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.clone(), *p))).collect()
        };
        for (topic, partition) in wanted {
            if let Some(pid) = g.pending_on(&topic, partition) {
                let message = format!(
                    "the offset of {topic}/{partition} in group {} is part of producer {pid}'s open transaction; \
                     retry once it ends",
                    req.group
                );
                return Err(GroupError::new(ErrorCode::ConcurrentTransactions, message));
            }
        }
        Ok(())
    }
}

fn committed(o: &internal::OffsetCommit) -> Committed {
    Committed { offset: o.offset, metadata: o.metadata.clone(), commit_timestamp_ms: o.commit_timestamp_ms }
}

fn offset_record(topic: &str, partition: u32, c: &Committed) -> internal::OffsetCommit {
    internal::OffsetCommit {
        topic: topic.to_owned(),
        partition,
        offset: c.offset,
        metadata: c.metadata.clone(),
        commit_timestamp_ms: c.commit_timestamp_ms,
        instance_id: String::new(),
    }
}
