//! [`RaftRegistry`]: the Raft groups this node hosts, by group id, for the peer service to route
//! incoming RPCs to.
//!
//! Lookups clone the group's `Raft` handle (an `Arc`) out of a briefly held read lock: no lock
//! is ever held while a group works, so one slow group never delays another's RPCs.

use std::collections::HashMap;
use std::sync::RwLock;

use bytes::Bytes;
use openraft::storage::RaftStateMachine;

use crate::typ::{NodeId, PartitionConfig, Raft};

/// What a state machine must be for its group to be served by the peer transport: snapshots
/// travel as one `Bytes` value (partition snapshots are small metadata).
pub trait GroupStateMachine: RaftStateMachine<PartitionConfig, SnapshotData = Bytes> {}

impl<SM> GroupStateMachine for SM where SM: RaftStateMachine<PartitionConfig, SnapshotData = Bytes> {}

/// The Raft groups hosted on this node, by group id.
pub struct RaftRegistry<SM: GroupStateMachine> {
    node_id: NodeId,
    groups: RwLock<HashMap<u64, Raft<SM>>>,
}

impl<SM: GroupStateMachine> RaftRegistry<SM> {
    /// An empty registry of node `node_id`.
    pub fn new(node_id: NodeId) -> RaftRegistry<SM> {
        RaftRegistry { node_id, groups: RwLock::new(HashMap::new()) }
    }

    /// The node whose groups these are.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Starts routing RPCs for `group_id` to `raft`; returns the handle it replaces, if any.
    pub fn insert(&self, group_id: u64, raft: Raft<SM>) -> Option<Raft<SM>> {
        self.groups.write().expect("registry poisoned").insert(group_id, raft)
    }

    /// Stops routing new RPCs for `group_id` (they are answered `NotFound` from now on) and
    /// returns its handle. A `StreamAppend` stream already open keeps the handle it started with
    /// until the stream ends or the Raft shuts down; shutting the Raft down is the caller's
    /// business.
    pub fn remove(&self, group_id: u64) -> Option<Raft<SM>> {
        self.groups.write().expect("registry poisoned").remove(&group_id)
    }

    /// The Raft of `group_id`, if hosted here.
    pub fn get(&self, group_id: u64) -> Option<Raft<SM>> {
        self.groups.read().expect("registry poisoned").get(&group_id).cloned()
    }

    /// The hosted group ids, in no particular order.
    pub fn group_ids(&self) -> Vec<u64> {
        self.groups.read().expect("registry poisoned").keys().copied().collect()
    }
}
