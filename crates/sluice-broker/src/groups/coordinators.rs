//! [`Coordinators`]: which offsets partitions this broker leads, and their coordinators.
//!
//! A task per hosted `__consumer_offsets` partition watches the partition's Raft metrics: on
//! becoming leader in a term it installs a new [`Coordinator`] and loads it; on losing the
//! leadership it retires it. The watch wakes only when the group's Raft state changes. A slower
//! loop notices partitions this broker starts hosting (the topic is created, or the broker
//! restarts).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_proto::Error;
use sluice_raft::typ::{Raft, ServerState, WatchReceiver};
use tokio::sync::RwLock;
use tokio::task::JoinHandle;

use super::OFFSETS_TOPIC;
use super::context::{Context, check_group_id};
use super::coordinator::{Coordinator, Phase};
use super::load;
use crate::controller::BrokerStateMachine;

/// How often the broker looks for offsets partitions it started hosting.
const DISCOVER_INTERVAL: Duration = Duration::from_millis(200);

/// One offsets partition's coordinator, if this broker leads it.
#[derive(Default)]
struct Slot {
    /// Shared by the coordinators of successive terms (see `coordinator`'s module doc).
    gate: Arc<RwLock<()>>,
    current: Option<Arc<Coordinator>>,
}

/// The coordinators of this broker, by offsets partition (Raft group id).
pub(super) struct Coordinators {
    pub ctx: Arc<Context>,
    slots: Mutex<HashMap<u64, Slot>>,
}

impl Coordinators {
    pub fn new(ctx: Arc<Context>) -> Coordinators {
        Coordinators { ctx, slots: Mutex::new(HashMap::new()) }
    }

    /// Watches every offsets partition hosted here, until the broker stops.
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
            let offsets: Vec<(u64, u32)> = self.ctx.controller.metadata().read(|m| {
                m.topic(OFFSETS_TOPIC)
                    .map_or_else(Vec::new, |t| (0u32..).zip(&t.partitions).map(|(i, p)| (p.group_id, i)).collect())
            });
            for (gid, partition) in offsets {
                if watching.contains_key(&gid) {
                    continue;
                }
                if let Some(raft) = self.ctx.partitions.raft(gid) {
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

    /// Follows the Raft role of offsets partition `gid` until its group stops here.
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
        // A coordinator of this term that retired itself (a write found it was not leader
        // after all) is replaced all the same.
        if slot.current.as_ref().is_some_and(|c| c.term == term && c.phase() != Phase::Retired) {
            return;
        }
        if let Some(old) = slot.current.take() {
            old.retire();
        }
        let coordinator = Arc::new(Coordinator::new(
            Arc::clone(&self.ctx),
            (gid, partition, term),
            raft.clone(),
            Arc::clone(&slot.gate),
        ));
        slot.current = Some(Arc::clone(&coordinator));
        drop(slots);
        tracing::info!(partition, term, "leading an offsets partition: loading its groups");
        tokio::spawn(load::run(coordinator));
    }

    /// This broker no longer leads `gid`.
    fn resign(&self, gid: u64) {
        let old = self.slots.lock().expect("slots lock").get_mut(&gid).and_then(|s| s.current.take());
        if let Some(c) = old {
            tracing::info!(partition = c.partition, term = c.term, "no longer coordinating an offsets partition");
            c.retire();
        }
    }

    /// The coordinator of `group` if this broker has one; otherwise the error to answer:
    /// `INVALID_GROUP_ID`, or `NOT_COORDINATOR` naming the coordinator it knows of, or
    /// `COORDINATOR_LOADING` while it is becoming the coordinator itself.
    pub fn route(&self, group: &str) -> Result<Arc<Coordinator>, Error> {
        check_group_id(group)?;
        let Some(home) = self.ctx.home(group) else {
            return Err(self.ctx.not_coordinator(group, None));
        };
        let current = self.slots.lock().expect("slots lock").get(&home.group_id).and_then(|s| s.current.clone());
        match current {
            Some(c) => {
                c.ready(group)?;
                Ok(c)
            }
            None => {
                let leader = self.ctx.leader_of(&home);
                if leader == Some(self.ctx.node_id) {
                    // Elected, and the watch has not caught up yet.
                    return Err(Error::new(
                        sluice_proto::ErrorCode::CoordinatorLoading,
                        format!(
                            "broker {} is becoming the coordinator of group {group:?}; retry shortly",
                            self.ctx.node_id
                        ),
                    ));
                }
                Err(self.ctx.not_coordinator(group, leader))
            }
        }
    }

    /// The coordinators serving now.
    pub fn active(&self) -> Vec<Arc<Coordinator>> {
        let slots = self.slots.lock().expect("slots lock");
        slots.values().filter_map(|s| s.current.clone()).filter(|c| c.ready("").is_ok()).collect()
    }
}
