//! [`Coordinator`]: the groups of one `__consumer_offsets` partition, on the broker leading it,
//! for one Raft term.
//!
//! Every change follows one path: under the group's lock, the request is checked against the
//! state and turned into records without changing anything; the records are written through
//! the partition's Raft log as one batch; once committed they are applied to the state (the
//! same `apply` that replays the log on load); only then is the request answered. So the state
//! never holds what the log does not, and the log's order of records is the order of decisions.
//!
//! A write whose outcome is unknown (it timed out, or Raft failed) may still commit later, so
//! the state can no longer be trusted to match the log: the coordinator reloads, as a new one
//! would. The partition's *gate* (shared by the coordinators of successive terms) is held
//! shared by every write and exclusively by a load or a checkpoint, so neither ever misses a
//! write in flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sluice_proto::internal::GroupRecord;
use sluice_proto::internal::group_record::Change;
use sluice_proto::{Error, ErrorCode};
use sluice_raft::Reply;
use sluice_raft::partition::{PartitionCommand, WriteError, write};
use sluice_raft::typ::Raft;
use tokio::sync::{OwnedMutexGuard, OwnedRwLockReadGuard, RwLock, watch};
use tokio::time::Instant;

use super::context::{Context, now_ms};
use super::records::encode_batch;
use super::retries::RetryRuntime;
use super::skipped::SkipCounts;
use super::state::{Coordinated, GroupError};
use super::timers::{Deadline, MemberKey, Timers};
use super::{checkpoint, load, retention, retries};
use crate::controller::BrokerStateMachine;

/// The longest a group write waits for its commit before the request is answered `TIMEOUT`.
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How soon removing an expired member is tried again after its write failed.
const EXPIRE_RETRY: Duration = Duration::from_secs(1);

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

/// A group's turn to change: the partition's gate held shared and the group's lock held.
pub(super) struct Turn<'a> {
    coordinator: &'a Coordinator,
    group: String,
    held: Option<OwnedMutexGuard<()>>,
    _gate: OwnedRwLockReadGuard<()>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut locks = self.coordinator.locks.lock().expect("group locks");
        // Two holders — the map and this turn's guard — mean no one else waits for the lock.
        let idle = locks.get(&self.group).is_some_and(|l| Arc::strong_count(l) == 2);
        if idle {
            locks.remove(&self.group);
        }
        drop(self.held.take());
    }
}

/// The groups of one offsets partition on its leader, for one term.
pub(super) struct Coordinator {
    pub ctx: Arc<Context>,
    /// The partition's Raft group id.
    pub group_id: u64,
    /// The partition number.
    pub partition: u32,
    /// The Raft term this broker leads it in.
    pub term: u64,
    pub raft: Raft<BrokerStateMachine>,
    /// Shared by every write; exclusive for a load or a checkpoint (see the module doc).
    pub gate: Arc<RwLock<()>>,
    phase: watch::Sender<Phase>,
    state: Mutex<Coordinated>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub timers: Timers,
    /// Records applied since the last checkpoint (replayed ones included).
    pub since_checkpoint: AtomicU64,
    /// A checkpoint is being written.
    pub checkpointing: AtomicBool,
    /// The timer and retention tasks run (started by the first load).
    timers_started: AtomicBool,
    /// What the groups' filters skipped, as members report it.
    pub skipped: SkipCounts,
    /// Leases, the hand-out clock and wake-ups of retries (not replicated).
    pub retries: RetryRuntime,
}

impl Coordinator {
    pub fn new(
        ctx: Arc<Context>,
        (group_id, partition, term): (u64, u32, u64),
        raft: Raft<BrokerStateMachine>,
        gate: Arc<RwLock<()>>,
    ) -> Coordinator {
        Coordinator {
            ctx,
            group_id,
            partition,
            term,
            raft,
            gate,
            phase: watch::Sender::new(Phase::Loading),
            state: Mutex::new(Coordinated::new()),
            locks: Mutex::new(HashMap::new()),
            timers: Timers::default(),
            since_checkpoint: AtomicU64::new(0),
            checkpointing: AtomicBool::new(false),
            timers_started: AtomicBool::new(false),
            skipped: SkipCounts::default(),
            retries: RetryRuntime::default(),
        }
    }

    /// The state, for reading or (by load and write only) applying.
    pub fn state(&self) -> MutexGuard<'_, Coordinated> {
        self.state.lock().expect("coordinator state")
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// A watch of the phase (the timer task and the loader end when it turns `Retired`).
    pub fn phases(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// Leadership moved on: stop serving, for good.
    pub fn retire(&self) {
        self.phase.send_replace(Phase::Retired);
    }

    /// Ok when serving; `COORDINATOR_LOADING` or `NOT_COORDINATOR` otherwise.
    pub fn ready(&self, group: &str) -> Result<(), Error> {
        match self.phase() {
            Phase::Active => Ok(()),
            Phase::Loading => Err(Error::new(
                ErrorCode::CoordinatorLoading,
                format!(
                    "broker {} is loading the groups of {}/{} (it just became their coordinator); retry shortly",
                    self.ctx.node_id,
                    super::OFFSETS_TOPIC,
                    self.partition
                ),
            )),
            Phase::Retired => {
                Err(self.ctx.not_coordinator(group, self.ctx.partitions.leader_of(self.group_id).map(|l| l.0)))
            }
        }
    }

    /// Waits for `group`'s turn to change; fails if the coordinator stopped serving meanwhile.
    pub async fn turn(&self, group: &str) -> Result<Turn<'_>, Error> {
        self.ready(group)?;
        let gate = Arc::clone(&self.gate).read_owned().await;
        let lock = {
            let mut locks = self.locks.lock().expect("group locks");
            Arc::clone(locks.entry(group.to_owned()).or_default())
        };
        let held = lock.lock_owned().await;
        let turn = Turn { coordinator: self, group: group.to_owned(), held: Some(held), _gate: gate };
        // A reload may have run while this waited.
        self.ready(group)?;
        Ok(turn)
    }

    /// Writes `records` of `group` as one batch and applies them once committed; returns the
    /// batch's base offset. The caller holds the group's [`Turn`] (or the gate exclusively).
    pub async fn write(self: &Arc<Self>, group: &str, records: &[GroupRecord]) -> Result<u64, Error> {
        if records.is_empty() {
            return Ok(0);
        }
        let batch = encode_batch(records, now_ms());
        let command = PartitionCommand::produce(&batch);
        drop(batch);
        let outcome = tokio::time::timeout(WRITE_TIMEOUT, write(&self.raft, command)).await;
        let what = format!("{}/{}", super::OFFSETS_TOPIC, self.partition);
        match outcome {
            Ok(Ok(Reply::Appended { base_offset, .. })) => {
                self.apply(records);
                Ok(base_offset)
            }
            // Refused by the state machine: nothing was written, so the state still matches.
            Ok(Ok(other)) => Err(Error::new(
                ErrorCode::Internal,
                format!("{what} refused the group records of {group:?}: {other:?}; retry"),
            )),
            Ok(Err(WriteError::NotLeader { leader })) => {
                self.retire();
                Err(self.ctx.not_coordinator(group, leader))
            }
            Ok(Err(e)) => {
                self.reload();
                Err(Error::new(
                    ErrorCode::Unavailable,
                    format!("{what}: writing the records of {group:?} failed: {e}; retry"),
                ))
            }
            Err(_elapsed) => {
                self.reload();
                Err(Error::new(
                    ErrorCode::Timeout,
                    format!(
                        "{what}: the records of {group:?} were not committed within {WRITE_TIMEOUT:?} (too few \
                         replicas may be live); they may still be: retry"
                    ),
                ))
            }
        }
    }

    /// Applies committed records, and starts a checkpoint when enough have been written.
    fn apply(self: &Arc<Self>, records: &[GroupRecord]) {
        self.state().apply_batch(records);
        self.retries.applied(records);
        let n = records.len() as u64;
        let checkpointed = matches!(records.first().and_then(|r| r.change.as_ref()), Some(Change::Checkpoint(_)));
        if checkpointed {
            self.since_checkpoint.store(0, Ordering::Relaxed);
            return;
        }
        let since = self.since_checkpoint.fetch_add(n, Ordering::Relaxed) + n;
        if since >= self.ctx.config.checkpoint_interval_records && !self.checkpointing.swap(true, Ordering::AcqRel) {
            tokio::spawn(checkpoint::run(Arc::clone(self)));
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
            tracing::warn!(partition = self.partition, "group write outcome unknown: reloading the groups");
            tokio::spawn(load::run(Arc::clone(self)));
        }
    }

    /// Installs freshly replayed state and serves it: every member gets a full session from now
    /// (timers are not replicated).
    pub fn install(self: &Arc<Self>, replayed: Coordinated, since_checkpoint: u64) {
        let now = Instant::now();
        let members = replayed.members();
        *self.state() = replayed;
        self.since_checkpoint.store(since_checkpoint, Ordering::Relaxed);
        self.timers.clear_all();
        for m in members {
            let ms = |ms: u32| Duration::from_millis(u64::from(ms));
            let member = (m.group, m.member_id);
            if m.revoking {
                self.timers.set(Deadline::Rebalance, member.clone(), now + ms(m.rebalance_timeout_ms));
            }
            self.timers.set(Deadline::Session, member, now + ms(m.session_timeout_ms));
        }
        let installed = self.phase.send_if_modified(|p| {
            let loading = *p == Phase::Loading;
            if loading {
                *p = Phase::Active;
            }
            loading
        });
        if installed && !self.timers_started.swap(true, Ordering::AcqRel) {
            tokio::spawn(Arc::clone(self).run_timers());
            tokio::spawn(retention::run(Arc::clone(self)));
            retries::start(self);
        }
        self.retries.installed();
    }

    /// Removes members whose deadlines passed, until the coordinator retires.
    async fn run_timers(self: Arc<Self>) {
        let mut phases = self.phases();
        let far = || Instant::now() + Duration::from_secs(3600);
        loop {
            let next = self.timers.next().unwrap_or_else(far);
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                () = self.timers.earlier() => continue,
                _ = phases.wait_for(|p| *p == Phase::Retired) => return,
            }
            for member in self.timers.take_due(Instant::now()) {
                self.expire(member).await;
            }
        }
    }

    /// Removes `member` (its deadline passed) through the log.
    async fn expire(self: &Arc<Self>, (group, member_id): MemberKey) {
        let Ok(turn) = self.turn(&group).await else { return };
        let records = self.state().expire(&group, &member_id, &|t| self.ctx.partition_count(t));
        if records.is_empty() {
            return;
        }
        match self.write(&group, &records).await {
            Ok(_) => tracing::info!(group, member_id, "group member expired and removed"),
            Err(e) => {
                tracing::warn!(group, member_id, "removing an expired member failed, retrying: {}", e.message);
                self.timers.set(Deadline::Session, (group, member_id), Instant::now() + EXPIRE_RETRY);
            }
        }
        drop(turn);
    }
}

/// A state refusal as a client error.
pub(super) fn refused(e: GroupError) -> Error {
    Error::new(e.code, e.message)
}
