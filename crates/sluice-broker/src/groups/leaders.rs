//! [`Leaders`]: which partitions of an internal topic (`__consumer_offsets`, `__txn`) this
//! broker leads, and the coordinator it runs for each — shared by consumer groups and
//! transactions.
//!
//! A task per hosted partition watches the partition's Raft metrics: on becoming leader in a
//! term it starts a new coordinator (the caller's `start`, which also begins loading it); on
//! losing the leadership it retires it. The watch wakes only when the group's Raft state
//! changes. A slower loop notices partitions this broker starts hosting (the topic is created,
//! or the broker restarts).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_raft::typ::{Raft, ServerState, WatchReceiver};
use tokio::sync::RwLock;
use tokio::task::JoinHandle;

use super::context::Context;
use crate::controller::BrokerStateMachine;

/// How often the broker looks for partitions it started hosting.
const DISCOVER_INTERVAL: Duration = Duration::from_millis(200);

/// A coordinator for one partition and one term.
pub(crate) trait Led: Send + Sync + 'static {
    /// The Raft term it leads in.
    fn term(&self) -> u64;
    /// The partition number.
    fn partition(&self) -> u32;
    /// It stopped serving (a write found it was not leader after all).
    fn is_retired(&self) -> bool;
    /// Leadership moved on: stop serving, for good.
    fn retire(&self);
}

/// Starts a coordinator for `(group id, partition, term)` over `raft`, sharing the partition's
/// `gate` with the coordinators of other terms.
pub(crate) type Start<C> =
    Box<dyn Fn((u64, u32, u64), &Raft<BrokerStateMachine>, Arc<RwLock<()>>) -> Arc<C> + Send + Sync>;

/// One partition's coordinator, if this broker leads it.
struct Slot<C> {
    /// Shared by the coordinators of successive terms: a load holds it exclusively.
    gate: Arc<RwLock<()>>,
    current: Option<Arc<C>>,
}

/// The coordinators of one internal topic on this broker, by partition (Raft group id).
pub(crate) struct Leaders<C> {
    topic: &'static str,
    slots: Mutex<HashMap<u64, Slot<C>>>,
    start: Start<C>,
}

impl<C: Led> Leaders<C> {
    pub fn new(topic: &'static str, start: Start<C>) -> Leaders<C> {
        Leaders { topic, slots: Mutex::new(HashMap::new()), start }
    }

    /// The coordinator of partition (Raft group) `gid`, if this broker runs one.
    pub fn current(&self, gid: u64) -> Option<Arc<C>> {
        self.slots.lock().expect("slots lock").get(&gid).and_then(|s| s.current.clone())
    }

    /// Every coordinator this broker runs.
    pub fn all(&self) -> Vec<Arc<C>> {
        self.slots.lock().expect("slots lock").values().filter_map(|s| s.current.clone()).collect()
    }

    /// Watches every partition of the topic hosted here, until `ctx.stop`.
    pub async fn run(self: Arc<Self>, ctx: Arc<Context>) {
        let mut stop = ctx.stop.clone();
        let mut watching: HashMap<u64, JoinHandle<()>> = HashMap::new();
        let mut tick = tokio::time::interval(DISCOVER_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            watching.retain(|_, task| !task.is_finished());
            let hosted: Vec<(u64, u32)> = ctx.controller.metadata().read(|m| {
                m.topic(self.topic)
                    .map_or_else(Vec::new, |t| (0u32..).zip(&t.partitions).map(|(i, p)| (p.group_id, i)).collect())
            });
            for (gid, partition) in hosted {
                if let (None, Some(raft)) = (watching.get(&gid), ctx.partitions.raft(gid)) {
                    let task = Arc::clone(&self).watch(gid, partition, raft, ctx.stop.clone());
                    watching.insert(gid, tokio::spawn(task));
                }
            }
        }
        for task in watching.into_values() {
            let _ = task.await;
        }
        let slots: Vec<Slot<C>> = self.slots.lock().expect("slots lock").drain().map(|(_, s)| s).collect();
        slots.iter().filter_map(|s| s.current.as_ref()).for_each(|c| c.retire());
    }

    /// Follows the Raft role of partition `gid` until its group stops here.
    async fn watch(
        self: Arc<Self>,
        gid: u64,
        partition: u32,
        raft: Raft<BrokerStateMachine>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut metrics = raft.metrics();
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
        let slot = slots.entry(gid).or_insert_with(|| Slot { gate: Arc::default(), current: None });
        // A coordinator of this term that retired itself (a write found it was not leader
        // after all) is replaced all the same.
        if slot.current.as_ref().is_some_and(|c| c.term() == term && !c.is_retired()) {
            return;
        }
        if let Some(old) = slot.current.take() {
            old.retire();
        }
        let gate = Arc::clone(&slot.gate);
        slot.current = Some((self.start)((gid, partition, term), raft, gate));
        tracing::info!(partition, term, topic = self.topic, "leading a partition of an internal topic: loading it");
    }

    /// This broker no longer leads `gid`.
    fn resign(&self, gid: u64) {
        let old = self.slots.lock().expect("slots lock").get_mut(&gid).and_then(|s| s.current.take());
        if let Some(c) = old {
            tracing::info!(
                partition = c.partition(),
                term = c.term(),
                topic = self.topic,
                "no longer coordinating a partition"
            );
            c.retire();
        }
    }
}
