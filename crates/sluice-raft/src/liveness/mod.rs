//! Node-level liveness and leadership claims: what lets thousands of partition groups sit idle
//! at no cost.
//!
//! openraft keeps each group alive with its own timers: every follower runs an election timer and
//! every leader sends a heartbeat per follower per interval, so a node hosting 1,000 idle
//! partitions spent ~40 % of a core on heartbeats alone (docs/adr/0004-quiescent-groups.md).
//! Instead, as CockroachDB's coalesced heartbeats and TiKV's hibernating regions do, one message
//! per node pair carries what all those heartbeats said:
//!
//! - Every node sends every other node a [`NodeHeartbeat`](crate::transport::pb::NodeHeartbeatRequest)
//!   each interval: its incarnation and the groups it leads, with their terms.
//! - Managed groups run with openraft's ticker off: a leader sends no heartbeats and a follower
//!   runs no election timer. Replication and commit propagation do not need the ticker.
//! - A follower turns its ticker (and so openraft's own election timer) on only while no live
//!   node claims its group at its term or later: the leader's node stopped being heard, or the
//!   leader lost leadership. Followers do so one after another, which avoids split votes: the
//!   group's preferred leader first (the controller spreads those over brokers), then the others
//!   in an order that differs per group (so survivors share a dead broker's leaderships).
//! - When a peer restarts (its incarnation changes), the leaders of groups it is in send it a
//!   heartbeat at once, so it learns its leaders and catches up without an election.
//!
//! - Leadership goes back to a group's preferred leader once that broker has been live for a
//!   while (`rebalance.rs`), so a broker that returns from a failure leads its share again.
//!
//! Safety is Raft's and untouched: this only decides when elections may start. The cost is one
//! small RPC per node pair per interval, whatever the number of groups; the claims also give
//! every broker the leader of every group in the cluster, which is what clients are routed by.
//!
//! [`Liveness`] is the shared view (fed by the peer service); [`LivenessDriver`] runs the loop.

mod driver;
mod rebalance;

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use driver::{LivenessConfig, LivenessDriver};

use crate::typ::NodeId;

/// This node's view of its peers: when each was last heard, in which incarnation, and which
/// groups it claims to lead.
pub struct Liveness {
    node_id: NodeId,
    incarnation: u64,
    timeout: Duration,
    started: Instant,
    peers: RwLock<HashMap<NodeId, PeerView>>,
    /// Grows whenever a peer's claims or incarnation change: the driver re-examines groups then.
    generation: AtomicU64,
    /// Each group's preferred leader, which campaigns first when the group has none.
    preferred: RwLock<HashMap<u64, NodeId>>,
    /// This node's own disk state, sent with every heartbeat.
    disk_full: RwLock<Option<DiskFull>>,
}

/// A node whose data directory has less free space than its threshold: partitions with a
/// replica on it refuse writes, so that no replica runs out of space mid-append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskFull {
    /// Free bytes (for unprivileged users) when last checked.
    pub free_bytes: u64,
    /// The threshold it is below.
    pub threshold_bytes: u64,
}

struct PeerView {
    last_heard: Instant,
    /// Since when the peer has been heard without a gap of `timeout`, in this incarnation.
    live_since: Instant,
    incarnation: u64,
    claims_version: u64,
    /// Set when the incarnation changed; taken by the driver.
    restarted: bool,
    /// Group id → the term the peer leads it in.
    claims: HashMap<u64, u64>,
    /// Its disk state, as its latest heartbeat said.
    disk_full: Option<DiskFull>,
}

/// A group's leader as claimed by a live node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The claiming node.
    pub node_id: NodeId,
    /// The term it claims leadership in.
    pub term: u64,
}

impl Liveness {
    /// The view of node `node_id`: a peer not heard from for `timeout` is considered down.
    pub fn new(node_id: NodeId, timeout: Duration) -> Liveness {
        Liveness {
            node_id,
            incarnation: new_incarnation(),
            timeout,
            started: Instant::now(),
            peers: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            preferred: RwLock::new(HashMap::new()),
            disk_full: RwLock::new(None),
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// This process's incarnation (differs on every start).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Records a heartbeat from `from`: it is live, and it leads exactly `claims`, which are
    /// only read if `(incarnation, claims_version)` is new.
    pub fn record(
        &self,
        from: NodeId,
        incarnation: u64,
        claims_version: u64,
        claims: impl FnOnce() -> HashMap<u64, u64>,
    ) {
        let mut peers = self.peers.write().expect("liveness lock poisoned");
        let now = Instant::now();
        if let Some(peer) = peers.get_mut(&from) {
            if now.duration_since(peer.last_heard) >= self.timeout || peer.incarnation != incarnation {
                peer.live_since = now;
            }
            peer.last_heard = now;
            if peer.incarnation == incarnation && peer.claims_version == claims_version {
                return;
            }
            peer.restarted |= peer.incarnation != incarnation;
            peer.incarnation = incarnation;
            peer.claims_version = claims_version;
            peer.claims = claims();
        } else {
            // A peer first heard of counts as restarted: its groups may need to hear from their
            // leaders here to catch up.
            let claims = claims();
            let view = PeerView {
                last_heard: now,
                live_since: now,
                incarnation,
                claims_version,
                restarted: true,
                claims,
                disk_full: None,
            };
            peers.insert(from, view);
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Records the disk state a heartbeat from `from` carried (after [`Liveness::record`]).
    pub fn record_disk(&self, from: NodeId, disk_full: Option<DiskFull>) {
        let mut peers = self.peers.write().expect("liveness lock poisoned");
        if let Some(peer) = peers.get_mut(&from) {
            peer.disk_full = disk_full;
        }
    }

    /// Sets this node's own disk state, which its heartbeats carry from now on.
    pub fn set_disk_full(&self, state: Option<DiskFull>) {
        *self.disk_full.write().expect("liveness lock poisoned") = state;
    }

    /// Whether `node`'s disk is below its threshold: this node's as last set, a live peer's as
    /// its latest heartbeat said. A peer not heard from lately counts as not full: it is down,
    /// and takes no writes anyway.
    pub fn disk_full(&self, node: NodeId) -> Option<DiskFull> {
        if node == self.node_id {
            return *self.disk_full.read().expect("liveness lock poisoned");
        }
        let peers = self.peers.read().expect("liveness lock poisoned");
        peers.get(&node).filter(|p| p.last_heard.elapsed() < self.timeout).and_then(|p| p.disk_full)
    }

    /// A number that grows whenever some peer's claims or incarnation change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The peers heard from within the timeout, in id order.
    pub fn live_peers(&self) -> Vec<NodeId> {
        let peers = self.peers.read().expect("liveness lock poisoned");
        let mut live: Vec<NodeId> =
            peers.iter().filter(|(_, p)| p.last_heard.elapsed() < self.timeout).map(|(&id, _)| id).collect();
        live.sort_unstable();
        live
    }

    /// Makes `node` the first to campaign for `group` whenever it has no leader and `node` is
    /// live (the controller spreads preferred leaders evenly over brokers); `None` forgets it.
    pub fn set_preferred_leader(&self, group: u64, node: Option<NodeId>) {
        let mut preferred = self.preferred.write().expect("liveness lock poisoned");
        match node {
            Some(node) => preferred.insert(group, node),
            None => preferred.remove(&group),
        };
    }

    /// The preferred leader of `group`, if one was set.
    pub fn preferred_leader(&self, group: u64) -> Option<NodeId> {
        self.preferred.read().expect("liveness lock poisoned").get(&group).copied()
    }

    /// Whether `node` was heard from within the timeout (this node always is).
    pub fn is_live(&self, node: NodeId) -> bool {
        if node == self.node_id {
            return true;
        }
        let peers = self.peers.read().expect("liveness lock poisoned");
        peers.get(&node).is_some_and(|p| p.last_heard.elapsed() < self.timeout)
    }

    /// How long `node` has been live without interruption (in its current incarnation); `None`
    /// if it is not live. This node has been live since it started.
    pub fn live_for(&self, node: NodeId) -> Option<Duration> {
        if node == self.node_id {
            return Some(self.started.elapsed());
        }
        let peers = self.peers.read().expect("liveness lock poisoned");
        let peer = peers.get(&node).filter(|p| p.last_heard.elapsed() < self.timeout)?;
        Some(peer.live_since.elapsed())
    }

    /// The live peer claiming `group` in the highest term, if any. This node's own leadership
    /// is not included: its Raft metrics say that.
    pub fn claimed_leader(&self, group: u64) -> Option<Claim> {
        let peers = self.peers.read().expect("liveness lock poisoned");
        peers
            .iter()
            .filter(|(_, p)| p.last_heard.elapsed() < self.timeout)
            .filter_map(|(&node_id, p)| p.claims.get(&group).map(|&term| Claim { node_id, term }))
            .max_by_key(|c| c.term)
    }

    /// Whether the view can be trusted to say a group has no leader: every one of `peers` has been
    /// heard from, or a whole timeout has passed since this node started. Before that, a
    /// restarted node would mistake "not heard yet" for "no leader" and disrupt the cluster.
    pub fn settled(&self, peers: &[NodeId]) -> bool {
        if self.started.elapsed() >= self.timeout {
            return true;
        }
        let known = self.peers.read().expect("liveness lock poisoned");
        peers.iter().filter(|&&p| p != self.node_id).all(|p| known.contains_key(p))
    }

    /// Peers whose incarnation changed since the last call: they restarted.
    pub fn take_restarted(&self) -> Vec<NodeId> {
        let mut peers = self.peers.write().expect("liveness lock poisoned");
        peers
            .iter_mut()
            .filter(|(_, p)| p.restarted)
            .map(|(&id, p)| {
                p.restarted = false;
                id
            })
            .collect()
    }
}

impl std::fmt::Debug for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Liveness").field("node_id", &self.node_id).field("incarnation", &self.incarnation).finish()
    }
}

/// A value that differs between two starts of this node: the clock's nanoseconds mixed with the
/// process id (two starts within one nanosecond would also need the same pid).
fn new_incarnation() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    (nanos as u64) ^ (u64::from(std::process::id()) << 40)
}
