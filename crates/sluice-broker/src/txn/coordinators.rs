//! [`TxnCoordinators`]: which `__txn` partitions this broker leads, and their coordinators.
//!
//! A task per hosted `__txn` partition follows the partition's Raft role: on becoming leader
//! in a term it installs a new [`TxnCoordinator`] and loads it; on losing the leadership it
//! retires it. A slower loop notices partitions this broker starts hosting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_proto::{Error, ErrorCode};
use sluice_raft::typ::{Raft, ServerState, WatchReceiver};
use tokio::sync::RwLock;
use tokio::task::JoinHandle;

use super::TXN_TOPIC;
use super::checkback::CheckRegistry;
use super::config::TxnConfig;
use super::coordinator::{Phase, TxnCoordinator};
use super::load;
use crate::controller::BrokerStateMachine;
use crate::groups::context::Context;

/// How often the broker looks for `__txn` partitions it started hosting.
const DISCOVER_INTERVAL: Duration = Duration::from_millis(200);

/// One `__txn` partition's coordinator, if this broker leads it.
#[derive(Default)]
struct Slot {
    /// Shared by the coordinators of successive terms.
    gate: Arc<RwLock<()>>,
    current: Option<Arc<TxnCoordinator>>,
}

/// The transaction coordinators of this broker, by `__txn` partition (Raft group id).
pub(super) struct TxnCoordinators {
    pub ctx: Arc<Context>,
    pub config: TxnConfig,
    slots: Mutex<HashMap<u64, Slot>>,
    /// Producer group members connected for check-backs.
    pub checkers: Arc<CheckRegistry>,
}

impl TxnCoordinators {
    pub fn new(ctx: Arc<Context>, config: TxnConfig) -> TxnCoordinators {
        TxnCoordinators { ctx, config, slots: Mutex::new(HashMap::new()), checkers: Arc::default() }
    }

    /// Watches every `__txn` partition hosted here, until the broker stops.
    pub async fn run(self: Arc<Self>) {
        let mut stop = self.ctx.stop.clone();
        let mut watching: HashMap<u64, JoinHandle<()>> = HashMap::new();
        let mut tick = tokio::time::interval(DISCOVER_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            watching.retain(|_, task| !task.is_finished());
            let hosted: Vec<(u64, u32)> = self.ctx.controller.metadata().read(|m| {
                m.topic(TXN_TOPIC)
                    .map_or_else(Vec::new, |t| (0u32..).zip(&t.partitions).map(|(i, p)| (p.group_id, i)).collect())
            });
            for (gid, partition) in hosted {
                if let (None, Some(raft)) = (watching.get(&gid), self.ctx.partitions.raft(gid)) {
                    watching.insert(gid, tokio::spawn(Arc::clone(&self).watch(gid, partition, raft)));
                }
            }
        }
        for task in watching.into_values() {
            let _ = task.await;
        }
        let slots: Vec<Slot> = self.slots.lock().expect("slots lock").drain().map(|(_, s)| s).collect();
        slots.iter().filter_map(|s| s.current.as_ref()).for_each(|c| c.retire());
    }

    /// Follows the Raft role of `__txn` partition `gid` until its group stops here.
    async fn watch(self: Arc<Self>, gid: u64, partition: u32, raft: Raft<BrokerStateMachine>) {
        let mut metrics = raft.metrics();
        let mut stop = self.ctx.stop.clone();
        loop {
            let (state, term) = {
                let m = metrics.borrow_watched();
                (m.state, m.current_term)
            };
            match state {
                ServerState::Leader => self.lead(gid, partition, term, &raft),
                ServerState::Shutdown => break,
                _ => self.resign(gid),
            }
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { break },
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        self.resign(gid);
        self.slots.lock().expect("slots lock").remove(&gid);
    }

    /// This broker leads `gid` in `term`: a coordinator for that term, unless it has one.
    fn lead(&self, gid: u64, partition: u32, term: u64, raft: &Raft<BrokerStateMachine>) {
        let mut slots = self.slots.lock().expect("slots lock");
        let slot = slots.entry(gid).or_default();
        if slot.current.as_ref().is_some_and(|c| c.term == term && c.phase() != Phase::Retired) {
            return;
        }
        if let Some(old) = slot.current.take() {
            old.retire();
        }
        let ids = (gid, partition, term);
        let gate = Arc::clone(&slot.gate);
        let (ctx, checkers) = (Arc::clone(&self.ctx), Arc::clone(&self.checkers));
        let coordinator = Arc::new(TxnCoordinator::new(ctx, self.config.clone(), ids, raft.clone(), gate, checkers));
        slot.current = Some(Arc::clone(&coordinator));
        drop(slots);
        tracing::info!(partition, term, "leading a __txn partition: loading its transactions");
        tokio::spawn(load::run(coordinator));
    }

    /// This broker no longer leads `gid`.
    fn resign(&self, gid: u64) {
        let old = self.slots.lock().expect("slots lock").get_mut(&gid).and_then(|s| s.current.take());
        if let Some(c) = old {
            tracing::info!(partition = c.partition, term = c.term, "no longer coordinating a __txn partition");
            c.retire();
        }
    }

    /// The coordinator of transactional id `id` if this broker has one; otherwise the error to
    /// answer: `NOT_COORDINATOR` naming the coordinator it knows of, or `COORDINATOR_LOADING`.
    pub fn route(&self, id: &str) -> Result<Arc<TxnCoordinator>, Error> {
        let what = format!("transactional id {id:?}");
        let Some(home) = self.ctx.home_in(TXN_TOPIC, id) else {
            return Err(self.ctx.not_coordinator_of(&what, "FindTxnCoordinator", None));
        };
        let current = self.slots.lock().expect("slots lock").get(&home.group_id).and_then(|s| s.current.clone());
        if let Some(c) = current {
            c.ready(id)?;
            return Ok(c);
        }
        let leader = self.ctx.leader_of(&home);
        if leader == Some(self.ctx.node_id) {
            // Elected, and the watch has not caught up yet.
            let message = format!("broker {} is becoming the coordinator of {what}; retry shortly", self.ctx.node_id);
            return Err(Error::new(ErrorCode::CoordinatorLoading, message));
        }
        Err(self.ctx.not_coordinator_of(&what, "FindTxnCoordinator", leader))
    }

    /// The coordinators serving now.
    pub fn active(&self) -> Vec<Arc<TxnCoordinator>> {
        let slots = self.slots.lock().expect("slots lock");
        slots.values().filter_map(|s| s.current.clone()).filter(|c| c.phase() == Phase::Active).collect()
    }
}
