//! [`TxnCoordinator`]: the transactional ids of one `__txn` partition, on the broker leading
//! it, for one Raft term.
//!
//! As for consumer groups (`groups::coordinator`), every change follows one path: under the
//! id's lock the request is planned against the table without changing it, the planned records
//! are written through the partition's Raft log as one batch, and once committed they are
//! applied (the same `apply` that replays the log on load). A decision's markers are written
//! only after the decision is applied, and the transaction completes only after every marker
//! is written (`finish`). A write whose outcome is unknown makes the coordinator reload, as a
//! new one would; the partition's gate (shared by the coordinators of successive terms) is
//! held shared by every write and exclusively by a load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sluice_proto::internal::TxnRecord;
use sluice_proto::{Error, ErrorCode};
use sluice_raft::Reply;
use sluice_raft::partition::{PartitionCommand, WriteError, write};
use sluice_raft::typ::Raft;
use tokio::sync::{OwnedMutexGuard, OwnedRwLockReadGuard, RwLock, watch};

use super::TXN_TOPIC;
use super::checkback::CheckRegistry;
use super::config::TxnConfig;
use super::records::encode_batch;
use super::state::{Markers, Planned, Producer, TxnLimits, TxnTable};
use super::{ids, load, markers};
use crate::controller::BrokerStateMachine;
use crate::groups::context::{Context, now_ms};

/// The longest a coordinator write waits for its commit before the request is answered
/// `TIMEOUT`.
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a coordinator stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Replaying the partition's records; requests are answered `COORDINATOR_LOADING`.
    Loading,
    /// Serving.
    Active,
    /// No longer the partition's leader (or its term ended): requests are answered
    /// `NOT_COORDINATOR`, and its tasks end.
    Retired,
}

/// A transactional id's turn to change: the partition's gate held shared and the id's lock.
pub(super) struct Turn {
    _id: OwnedMutexGuard<()>,
    _gate: OwnedRwLockReadGuard<()>,
}

/// The transactional ids of one `__txn` partition on its leader, for one term.
pub(super) struct TxnCoordinator {
    pub ctx: Arc<Context>,
    pub config: TxnConfig,
    /// The partition's Raft group id.
    pub group_id: u64,
    /// The partition number.
    pub partition: u32,
    /// The Raft term this broker leads it in.
    pub term: u64,
    pub raft: Raft<BrokerStateMachine>,
    /// Shared by every write; exclusive for a load.
    pub gate: Arc<RwLock<()>>,
    phase: watch::Sender<Phase>,
    table: Mutex<TxnTable>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The timer task runs (started by the first load).
    timers_started: AtomicBool,
    /// Producer group members connected to this broker, for check-backs.
    pub checkers: Arc<CheckRegistry>,
    /// Records applied since the last checkpoint (replayed ones included).
    pub since_checkpoint: AtomicU64,
    /// A checkpoint is being written.
    pub checkpointing: AtomicBool,
}

impl TxnCoordinator {
    pub fn new(
        ctx: Arc<Context>,
        config: TxnConfig,
        (group_id, partition, term): (u64, u32, u64),
        raft: Raft<BrokerStateMachine>,
        gate: Arc<RwLock<()>>,
        checkers: Arc<CheckRegistry>,
    ) -> TxnCoordinator {
        TxnCoordinator {
            ctx,
            config,
            group_id,
            partition,
            term,
            raft,
            gate,
            phase: watch::Sender::new(Phase::Loading),
            table: Mutex::new(TxnTable::new()),
            locks: Mutex::new(HashMap::new()),
            timers_started: AtomicBool::new(false),
            checkers,
            since_checkpoint: AtomicU64::new(0),
            checkpointing: AtomicBool::new(false),
        }
    }

    /// The coordinator's policy, from the configuration.
    pub fn limits(&self) -> TxnLimits {
        TxnLimits {
            max_open: self.config.max_open_transactions as usize,
            max_timeout_ms: self.config.max_timeout_ms,
            check_initial_ms: self.config.check_initial_backoff_ms,
            check_max_ms: self.config.check_max_backoff_ms,
            max_check_attempts: self.config.max_check_attempts,
        }
    }

    /// The table, for reading or (by load and write only) applying.
    pub fn table(&self) -> MutexGuard<'_, TxnTable> {
        self.table.lock().expect("coordinator table")
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    pub fn phases(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// Leadership moved on: stop serving, for good.
    pub fn retire(&self) {
        self.phase.send_replace(Phase::Retired);
    }

    /// Ok when serving; `COORDINATOR_LOADING` or `NOT_COORDINATOR` otherwise.
    pub fn ready(&self, id: &str) -> Result<(), Error> {
        match self.phase() {
            Phase::Active => Ok(()),
            Phase::Loading => Err(Error::new(
                ErrorCode::CoordinatorLoading,
                format!(
                    "broker {} is loading the transactions of {TXN_TOPIC}/{} (it just became their coordinator); \
                     retry shortly",
                    self.ctx.node_id, self.partition
                ),
            )),
            Phase::Retired => Err(self.not_coordinator(id, self.ctx.partitions.leader_of(self.group_id).map(|l| l.0))),
        }
    }

    fn not_coordinator(&self, id: &str, leader: Option<u64>) -> Error {
        self.ctx.not_coordinator_of(&format!("transactional id {id:?}"), "FindTxnCoordinator", leader)
    }

    /// Waits for `id`'s turn to change; fails if the coordinator stopped serving meanwhile.
    pub async fn turn(&self, id: &str) -> Result<Turn, Error> {
        self.ready(id)?;
        let gate = Arc::clone(&self.gate).read_owned().await;
        let lock = Arc::clone(self.locks.lock().expect("id locks").entry(id.to_owned()).or_default());
        let held = lock.lock_owned().await;
        self.ready(id)?;
        Ok(Turn { _id: held, _gate: gate })
    }

    /// Forgets the locks no one holds or waits for (called by the timer task now and then).
    pub fn prune_locks(&self) {
        self.locks.lock().expect("id locks").retain(|_, l| Arc::strong_count(l) > 1);
    }

    /// Writes `records` as one batch and applies them once committed; returns the batch's
    /// base offset (`None`: nothing to write). The caller holds the id's [`Turn`] (or the gate
    /// exclusively). Starts a checkpoint once enough records were written since the last.
    pub async fn write(self: &Arc<Self>, records: &[TxnRecord]) -> Result<Option<u64>, Error> {
        if records.is_empty() {
            return Ok(None);
        }
        let command = PartitionCommand::produce(&encode_batch(records, now_ms()));
        let outcome = tokio::time::timeout(WRITE_TIMEOUT, write(&self.raft, command)).await;
        let what = format!("{TXN_TOPIC}/{}", self.partition);
        let id = records[0].transactional_id.as_str();
        match outcome {
            Ok(Ok(Reply::Appended { base_offset, .. })) => {
                self.table().apply_batch(records);
                self.count_towards_checkpoint(records.len() as u64);
                Ok(Some(base_offset))
            }
            Ok(Ok(other)) => {
                Err(Error::new(ErrorCode::Internal, format!("{what} refused the records of {id:?}: {other:?}; retry")))
            }
            Ok(Err(WriteError::NotLeader { leader })) => {
                self.retire();
                Err(self.not_coordinator(id, leader))
            }
            Ok(Err(e)) => {
                self.reload();
                Err(Error::new(
                    ErrorCode::Unavailable,
                    format!("{what}: writing the records of {id:?} failed: {e}; retry"),
                ))
            }
            Err(_elapsed) => {
                self.reload();
                Err(Error::new(
                    ErrorCode::Timeout,
                    format!(
                        "{what}: the records of {id:?} were not committed within {WRITE_TIMEOUT:?} (too few replicas \
                         may be live); they may still be: retry"
                    ),
                ))
            }
        }
    }

    /// Counts `n` records written, and starts a checkpoint when there have been enough.
    fn count_towards_checkpoint(self: &Arc<Self>, n: u64) {
        let since = self.since_checkpoint.fetch_add(n, Ordering::Relaxed) + n;
        if since >= self.config.checkpoint_interval_records && !self.checkpointing.swap(true, Ordering::AcqRel) {
            tokio::spawn(super::checkpoint::run(Arc::clone(self)));
        }
    }

    /// The state may have missed a write that committed after all: load it again from the log.
    fn reload(self: &Arc<Self>) {
        let was_active = self.phase.send_if_modified(|p| {
            let active = *p == Phase::Active;
            if active {
                *p = Phase::Loading;
            }
            active
        });
        if was_active {
            tracing::warn!(partition = self.partition, "transaction write outcome unknown: reloading");
            tokio::spawn(load::run(Arc::clone(self)));
        }
    }

    /// Installs a freshly replayed table and serves it; the first install starts the timer
    /// task. Decided transactions left incomplete by an earlier coordinator are finished.
    pub fn install(self: &Arc<Self>, replayed: TxnTable, records: u64) {
        let pending = replayed.pending_markers();
        self.since_checkpoint.store(records, Ordering::Relaxed);
        *self.table() = replayed;
        self.phase.send_replace(Phase::Active);
        if !self.timers_started.swap(true, Ordering::AcqRel) {
            tokio::spawn(super::timers::run(Arc::clone(self)));
        }
        for (id, _) in pending {
            let coordinator = Arc::clone(self);
            tokio::spawn(async move {
                let Ok(turn) = coordinator.turn(&id).await else { return };
                if let Err(e) = coordinator.finish(&id).await {
                    tracing::info!(id, "completing a decided transaction: {}", e.message);
                }
                drop(turn);
            });
        }
    }

    /// Writes the markers of `id`'s decided transaction until every partition has one, then
    /// completes it; returns the producer's identity for its next transaction. The caller holds
    /// the id's turn.
    pub async fn finish(self: &Arc<Self>, id: &str) -> Result<Producer, Error> {
        let Some(pending) = self.decided(id) else {
            return Err(Error::new(ErrorCode::InvalidTxnState, format!("transactional id {id:?} has nothing decided")));
        };
        markers::write_all(self, &pending).await?;
        let mut fresh = None;
        loop {
            let planned = self.table().complete(id, now_ms() as u64, fresh).map_err(Error::from)?;
            match planned {
                Planned::NeedsProducerId => fresh = Some(ids::allocate(&self.ctx).await?),
                Planned::Plan(plan) => {
                    self.write(&plan.records).await?;
                    return plan.answer.map_err(Error::from);
                }
            }
        }
    }

    /// [`TxnCoordinator::finish`] for a producer waiting on its `EndTransaction`: answered once
    /// every marker is written, while the completion record is written behind the answer,
    /// still under `turn` (so the id's next request waits for it). If that write fails, the
    /// coordinator reloads, finds the transaction decided and completes it again with the same
    /// identity: planning is deterministic, except for a fresh producer id (epochs exhausted),
    /// which is therefore completed before answering.
    pub async fn finish_answering_early(self: &Arc<Self>, id: &str, turn: Turn) -> Result<Producer, Error> {
        let Some(pending) = self.decided(id) else {
            return Err(Error::new(ErrorCode::InvalidTxnState, format!("transactional id {id:?} has nothing decided")));
        };
        markers::write_all(self, &pending).await?;
        let planned = self.table().complete(id, now_ms() as u64, None).map_err(Error::from)?;
        let Planned::Plan(plan) = planned else {
            let answer = self.finish(id).await;
            drop(turn);
            return answer;
        };
        let answer = plan.answer.clone().map_err(Error::from)?;
        let (coordinator, id) = (Arc::clone(self), id.to_owned());
        tokio::spawn(async move {
            if let Err(e) = coordinator.write(&plan.records).await {
                tracing::info!(id, "completing a transaction after its answer: {}", e.message);
            }
            drop(turn);
        });
        Ok(answer)
    }

    /// The markers of `id`'s transaction if it is decided and not yet completed.
    fn decided(&self, id: &str) -> Option<Markers> {
        let table = self.table();
        table.pending_markers().into_iter().find_map(|(i, m)| (i == id).then_some(m))
    }
}
