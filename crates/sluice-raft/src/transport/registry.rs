//! [`RaftRegistry`]: the Raft groups this node hosts, by group id, for the peer service to route
//! incoming RPCs to.
//!
//! Lookups clone the group's `Raft` handle (an `Arc`) out of a briefly held read lock: no lock
//! is ever held while a group works, so one slow group never delays another's RPCs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;
use openraft::storage::RaftStateMachine;
use sluice_storage::Log;

use crate::liveness::Liveness;
use crate::typ::{NodeId, PartitionConfig, Raft};

/// What a state machine must be for its group to be served by the peer transport: snapshots
/// travel as one `Bytes` value (partition snapshots are small metadata).
pub trait GroupStateMachine: RaftStateMachine<PartitionConfig, SnapshotData = Bytes> {}

impl<SM> GroupStateMachine for SM where SM: RaftStateMachine<PartitionConfig, SnapshotData = Bytes> {}

/// The Raft groups hosted on this node, by group id.
pub struct RaftRegistry<SM: GroupStateMachine> {
    node_id: NodeId,
    groups: RwLock<HashMap<u64, Raft<SM>>>,
    /// The logs of the partition groups, where received retained entries are staged.
    logs: RwLock<HashMap<u64, Arc<Log>>>,
    /// Grows on every insert and remove.
    generation: AtomicU64,
    /// Where incoming node heartbeats are recorded, once the node runs a liveness driver.
    liveness: OnceLock<Arc<Liveness>>,
    /// Woken on every insert, for RPCs waiting for their group to start here.
    inserted: tokio::sync::Notify,
}

impl<SM: GroupStateMachine> RaftRegistry<SM> {
    /// An empty registry of node `node_id`.
    pub fn new(node_id: NodeId) -> RaftRegistry<SM> {
        RaftRegistry {
            node_id,
            groups: RwLock::new(HashMap::new()),
            logs: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            liveness: OnceLock::new(),
            inserted: tokio::sync::Notify::new(),
        }
    }

    /// The node whose groups these are.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Starts routing RPCs for `group_id` to `raft`; returns the handle it replaces, if any.
    pub fn insert(&self, group_id: u64, raft: Raft<SM>) -> Option<Raft<SM>> {
        let replaced = self.groups.write().expect("registry poisoned").insert(group_id, raft);
        self.generation.fetch_add(1, Ordering::Release);
        self.inserted.notify_waiters();
        replaced
    }

    /// Stops routing new RPCs for `group_id` (they are answered `NotFound` from now on) and
    /// returns its handle. A `StreamAppend` stream already open keeps the handle it started with
    /// until the stream ends or the Raft shuts down; shutting the Raft down is the caller's
    /// business.
    pub fn remove(&self, group_id: u64) -> Option<Raft<SM>> {
        self.logs.write().expect("registry poisoned").remove(&group_id);
        let removed = self.groups.write().expect("registry poisoned").remove(&group_id);
        self.generation.fetch_add(1, Ordering::Release);
        removed
    }

    /// Records the log of partition group `group_id`: the retained entries a snapshot for it
    /// carries are staged there. Forgotten by [`RaftRegistry::remove`].
    pub fn insert_log(&self, group_id: u64, log: Arc<Log>) {
        self.logs.write().expect("registry poisoned").insert(group_id, log);
    }

    /// The log of partition group `group_id`, if it is hosted here.
    pub fn log(&self, group_id: u64) -> Option<Arc<Log>> {
        self.logs.read().expect("registry poisoned").get(&group_id).cloned()
    }

    /// A number that grows whenever a group is inserted or removed.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Every hosted group with its Raft, in no particular order.
    pub fn groups(&self) -> Vec<(u64, Raft<SM>)> {
        self.groups.read().expect("registry poisoned").iter().map(|(&id, raft)| (id, raft.clone())).collect()
    }

    /// The Raft of `group_id`, if hosted here.
    pub fn get(&self, group_id: u64) -> Option<Raft<SM>> {
        self.groups.read().expect("registry poisoned").get(&group_id).cloned()
    }

    /// The Raft of `group_id`, waiting up to `within` for it to start here if it is not hosted
    /// yet: the replicas of a new partition start on every broker at about the same time, and a
    /// vote request that arrives first would otherwise fail and leave its candidate waiting out
    /// an election timeout.
    pub async fn get_within(&self, group_id: u64, within: std::time::Duration) -> Option<Raft<SM>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // Registered before looking, so that an insert in between is not missed.
            let inserted = self.inserted.notified();
            if let Some(raft) = self.get(group_id) {
                return Some(raft);
            }
            if tokio::time::timeout_at(deadline, inserted).await.is_err() {
                return None;
            }
        }
    }

    /// Records incoming node heartbeats in `liveness` from now on. Only the first call counts.
    pub fn set_liveness(&self, liveness: Arc<Liveness>) {
        let _ = self.liveness.set(liveness);
    }

    /// Where node heartbeats go, if anywhere.
    pub fn liveness(&self) -> Option<&Arc<Liveness>> {
        self.liveness.get()
    }

    /// The hosted group ids, in no particular order.
    pub fn group_ids(&self) -> Vec<u64> {
        self.groups.read().expect("registry poisoned").keys().copied().collect()
    }
}
