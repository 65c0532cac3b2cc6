//! Answering a produce before its commit (`ACKS_LEADER`, `ACKS_NONE`) without ever answering
//! one that its partition will refuse.
//!
//! Offsets and the idempotence check are decided when a batch is applied, after its commit. An
//! early answer comes before, so a batch the partition later refuses — above all one whose
//! sequence does not follow its producer's last, as happens to every batch after one that a
//! dying leader lost — would be acknowledged and silently dropped, and so would all that
//! follow it. So a leader answers an idempotent batch early only if its sequence follows the
//! last batch of that producer *this leader submitted in this term*: a leader never loses its
//! own entries within its term, so the batch will be applied in sequence unless the leader is
//! deposed (the loss `ACKS_LEADER` admits). The first batch of a producer in a term, and any
//! that does not follow, is written to completion instead (as `ACKS_ALL`), which checks it and
//! teaches the leader where the producer stands. Batches without a producer id are never
//! checked, and are answered early at once.

use std::collections::HashMap;
use std::sync::Arc;

use sluice_common::record::ProducerStamp;
use sluice_raft::partition::{PendingWrite, WriteError, submit};
use sluice_raft::typ::{Raft, WatchReceiver as _};

use crate::controller::BrokerStateMachine;

/// Producers tracked at most per partition; past it the partition's table starts afresh (each
/// producer's next batch is then written to completion once).
const MAX_TRACKED: usize = 65_536;

/// Where each producer's next batch must start, per partition, for it to be answered early.
#[derive(Default)]
pub(super) struct EarlyAnswers {
    /// Per partition (Raft group): its producers, behind a lock held across the check and the
    /// submit, so that batches reach the log in the order checked. One lock per partition: the
    /// early answers of different partitions do not wait for each other.
    partitions: std::sync::Mutex<HashMap<u64, Producers>>,
}

/// Partitions tracked at most: more than a broker hosts.
const MAX_PARTITIONS: usize = 100_000;

/// One partition's producers' next sequences.
type Producers = Arc<tokio::sync::Mutex<HashMap<i64, Next>>>;

/// A producer's next sequence on one partition, as its leader submitted it in `term`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Next {
    term: u64,
    epoch: i16,
    sequence: i64,
}

/// A batch that may be answered early: its partition's Raft group, producer stamp and size.
pub(super) struct EarlyBatch<'a> {
    pub group_id: u64,
    pub raft: &'a Raft<BrokerStateMachine>,
    pub producer: ProducerStamp,
    pub count: u32,
}

impl EarlyAnswers {
    /// Submits `command` if the batch may be answered early, and returns its pending write;
    /// `None` if it must be written to completion (see the module doc).
    pub async fn submit(
        &self,
        batch: &EarlyBatch<'_>,
        command: sluice_raft::Command,
    ) -> Option<Result<PendingWrite, WriteError>> {
        let p = batch.producer;
        if !p.is_idempotent() {
            return Some(submit(batch.raft, command).await);
        }
        let term = current_term(batch.raft);
        let producers = self.producers(batch.group_id);
        let mut next = producers.lock().await;
        let expected = Next { term, epoch: p.epoch, sequence: i64::from(p.base_sequence) };
        if next.get(&p.producer_id) != Some(&expected) {
            return None;
        }
        let submitted = submit(batch.raft, command).await;
        match &submitted {
            Ok(_) => {
                next.insert(p.producer_id, Next { sequence: expected.sequence + i64::from(batch.count), ..expected });
            }
            Err(_) => {
                next.remove(&p.producer_id);
            }
        }
        Some(submitted)
    }

    /// A batch written to completion was appended: the producer's next batch may be answered
    /// early if it follows.
    pub async fn appended(&self, batch: &EarlyBatch<'_>) {
        let p = batch.producer;
        if !p.is_idempotent() {
            return;
        }
        let term = current_term(batch.raft);
        let producers = self.producers(batch.group_id);
        let mut next = producers.lock().await;
        if next.len() >= MAX_TRACKED {
            next.clear();
        }
        let sequence = i64::from(p.base_sequence) + i64::from(batch.count);
        next.insert(p.producer_id, Next { term, epoch: p.epoch, sequence });
    }

    /// A batch answered early failed to commit: what follows it is checked again by a write to
    /// completion.
    pub async fn failed(&self, group_id: u64, producer: ProducerStamp) {
        if producer.is_idempotent() {
            self.producers(group_id).lock().await.remove(&producer.producer_id);
        }
    }

    /// The producers of partition `group_id`. Partitions answered early here stay in the table
    /// (deleted ones too) until it holds [`MAX_PARTITIONS`], when it starts afresh.
    fn producers(&self, group_id: u64) -> Producers {
        let mut partitions = self.partitions.lock().expect("early answers lock");
        if partitions.len() >= MAX_PARTITIONS && !partitions.contains_key(&group_id) {
            partitions.clear();
        }
        Arc::clone(partitions.entry(group_id).or_default())
    }
}

/// The term `raft` is in now.
fn current_term(raft: &Raft<BrokerStateMachine>) -> u64 {
    raft.metrics().borrow_watched().current_term
}
