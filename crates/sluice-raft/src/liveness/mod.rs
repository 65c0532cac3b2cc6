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
//!   runs no election timer. Replication and commit propagation do not need the ticker, with
//!   one backstop: once a leader's commit index stops moving it sends three heartbeats, one per
//!   full scan of the driver, so a follower that missed the last commit update (its message
//!   lost) learns it without waiting for the next write.
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
mod handover;
mod rebalance;

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use driver::{LivenessConfig, LivenessDriver};
pub use handover::{HandOver, hand_over};

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
    /// This node's own resources, sent with every heartbeat.
    own: RwLock<Resources>,
    /// Set when this node begins a controlled shutdown (see [`hand_over`]).
    stopping: AtomicBool,
    /// Heartbeat rounds sent since `stopping` was set: peers have heard it once this moves.
    stopping_announced: tokio::sync::watch::Sender<u64>,
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
    /// The version of `claims`; `None` while they are unknown (a heartbeat left them out, and
    /// this node has not had them in the peer's current incarnation).
    claims_version: Option<u64>,
    /// Set when the incarnation changed; taken by the driver.
    restarted: bool,
    /// Group id → the term the peer leads it in.
    claims: HashMap<u64, u64>,
    /// When its claims last changed (or it was first heard).
    claims_changed: Instant,
    /// Its resources, as its latest heartbeat said.
    resources: Resources,
    /// Whether its latest heartbeat said it is stopping (a controlled shutdown).
    stopping: bool,
}

/// What a node's heartbeat says about its resources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// Its disk, when below the free-space threshold.
    pub disk_full: Option<DiskFull>,
    /// The most partition replicas it can host (0: not said).
    pub max_replicas: u32,
    /// Its assigned replicas not running.
    pub offline_replicas: u32,
    /// Groups it leads in which some voter is not caught up.
    pub under_replicated: u32,
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
            own: RwLock::new(Resources::default()),
            stopping: AtomicBool::new(false),
            stopping_announced: tokio::sync::watch::Sender::new(0),
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

    /// Records a heartbeat from `from`: it is live, and it leads exactly the groups `claims`
    /// returns, which is only called if `(incarnation, claims_version)` is new. `claims` is
    /// `None` when the heartbeat left the lists out. Returns whether this node now holds the
    /// peer's claims at that version (false asks the peer to send them).
    pub fn record(
        &self,
        from: NodeId,
        incarnation: u64,
        claims_version: u64,
        claims: Option<impl FnOnce() -> HashMap<u64, u64>>,
    ) -> bool {
        let mut peers = self.peers.write().expect("liveness lock poisoned");
        let now = Instant::now();
        let first = !peers.contains_key(&from);
        let peer = peers.entry(from).or_insert_with(|| PeerView {
            last_heard: now,
            live_since: now,
            incarnation,
            claims_version: None,
            // A peer first heard of counts as restarted: its groups may need to hear from their
            // leaders here to catch up.
            restarted: true,
            claims: HashMap::new(),
            claims_changed: now,
            resources: Resources::default(),
            stopping: false,
        });
        if now.duration_since(peer.last_heard) >= self.timeout || peer.incarnation != incarnation {
            peer.live_since = now;
        }
        peer.last_heard = now;
        if first {
            self.generation.fetch_add(1, Ordering::Release);
        }
        if peer.incarnation != incarnation {
            peer.restarted = true;
            peer.stopping = false;
            peer.incarnation = incarnation;
            peer.claims_version = None;
            peer.claims.clear();
            self.generation.fetch_add(1, Ordering::Release);
        }
        if peer.claims_version == Some(claims_version) {
            return true;
        }
        let Some(claims) = claims else { return false };
        peer.claims_version = Some(claims_version);
        peer.claims = claims();
        peer.claims_changed = now;
        self.generation.fetch_add(1, Ordering::Release);
        true
    }

    /// Records the resources a heartbeat from `from` reported (after [`Liveness::record`]).
    pub fn record_resources(&self, from: NodeId, resources: Resources) {
        let mut peers = self.peers.write().expect("liveness lock poisoned");
        if let Some(peer) = peers.get_mut(&from) {
            peer.resources = resources;
        }
    }

    /// Records whether a heartbeat from `from` said it is stopping (after [`Liveness::record`]).
    pub fn record_stopping(&self, from: NodeId, stopping: bool) {
        let mut peers = self.peers.write().expect("liveness lock poisoned");
        if let Some(peer) = peers.get_mut(&from)
            && peer.stopping != stopping
        {
            peer.stopping = stopping;
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    /// Marks this node as stopping: its heartbeats say so from the next round on, and its
    /// driver starts no campaign and hands no group back to it.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Whether `node` is stopping: this node since [`Liveness::set_stopping`], a peer while it is
    /// heard from and its heartbeats say so. A group is never handed to a stopping node.
    pub fn is_stopping(&self, node: NodeId) -> bool {
        if node == self.node_id {
            return self.stopping.load(Ordering::Acquire);
        }
        let peers = self.peers.read().expect("liveness lock poisoned");
        peers.get(&node).is_some_and(|p| p.stopping && p.last_heard.elapsed() < self.timeout)
    }

    /// Counts a heartbeat round sent while stopping (the driver calls it after each).
    pub(crate) fn note_stopping_announced(&self) {
        self.stopping_announced.send_modify(|rounds| *rounds += 1);
    }

    /// Waits, at most `bound`, until a heartbeat round saying this node is stopping has been
    /// sent to every peer (answered or not).
    pub(crate) async fn stopping_announced(&self, bound: Duration) {
        let mut rounds = self.stopping_announced.subscribe();
        let _ = tokio::time::timeout(bound, rounds.wait_for(|&r| r > 0)).await;
    }

    /// Changes this node's own resources, which its heartbeats carry from now on.
    pub fn update_own_resources(&self, update: impl FnOnce(&mut Resources)) {
        update(&mut self.own.write().expect("liveness lock poisoned"));
    }

    /// `node`'s resources: this node's as last set, a peer's as its latest heartbeat said (all
    /// zero if not heard from yet). A peer not heard from lately counts as not full: it is down,
    /// and takes no writes anyway.
    pub fn resources(&self, node: NodeId) -> Resources {
        if node == self.node_id {
            return *self.own.read().expect("liveness lock poisoned");
        }
        let peers = self.peers.read().expect("liveness lock poisoned");
        let Some(peer) = peers.get(&node) else { return Resources::default() };
        let heard_lately = peer.last_heard.elapsed() < self.timeout;
        Resources { disk_full: peer.resources.disk_full.filter(|_| heard_lately), ..peer.resources }
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

    /// When `node`'s claims last changed, if it is a peer heard from.
    pub fn claims_changed_at(&self, node: NodeId) -> Option<Instant> {
        let peers = self.peers.read().expect("liveness lock poisoned");
        peers.get(&node).map(|p| p.claims_changed)
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
    /// heard from with its claims, or a whole timeout has passed since this node started. Before that, a
    /// restarted node would mistake "not heard yet" for "no leader" and disrupt the cluster.
    pub fn settled(&self, peers: &[NodeId]) -> bool {
        if self.started.elapsed() >= self.timeout {
            return true;
        }
        let known = self.peers.read().expect("liveness lock poisoned");
        peers.iter().filter(|&&p| p != self.node_id).all(|p| known.get(p).is_some_and(|v| v.claims_version.is_some()))
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::Liveness;

    fn claims(pairs: &[(u64, u64)]) -> Option<impl FnOnce() -> HashMap<u64, u64>> {
        let map: HashMap<u64, u64> = pairs.iter().copied().collect();
        Some(move || map)
    }

    const NONE: Option<fn() -> HashMap<u64, u64>> = None;

    #[test]
    fn claims_left_out_count_only_once_held_at_that_version() {
        let l = Liveness::new(1, Duration::from_secs(60));
        assert!(!l.record(2, 7, 3, NONE), "a first heartbeat without claims cannot be current");
        assert!(l.is_live(2));
        assert!(!l.settled(&[1, 2]), "a peer whose claims are unknown leaves the view unsettled");
        assert_eq!(l.claimed_leader(10), None);

        assert!(l.record(2, 7, 3, claims(&[(10, 4)])));
        assert!(l.settled(&[1, 2]));
        assert_eq!(l.claimed_leader(10).map(|c| (c.node_id, c.term)), Some((2, 4)));
        let changed = l.claims_changed_at(2).expect("heard");
        assert!(l.record(2, 7, 3, NONE), "the same version, left out: still current");
        assert!(l.record(2, 7, 3, claims(&[(10, 4)])), "the same version again");
        assert_eq!(l.claims_changed_at(2), Some(changed), "an unchanged version is no change");
        assert!(!l.record(2, 7, 4, NONE), "a newer version left out is not held");
        assert_eq!(l.claimed_leader(10).map(|c| c.term), Some(4), "the older claims stand until the new arrive");

        assert!(!l.record(2, 8, 4, NONE), "a restarted peer's claims are unknown");
        assert_eq!(l.claimed_leader(10), None, "a restarted peer's old claims are forgotten");
        assert_eq!(l.take_restarted(), vec![2]);
        assert!(l.record(2, 8, 1, claims(&[(11, 5)])));
        assert!(l.claims_changed_at(2).expect("heard") > changed, "new claims are a change");
        assert_eq!(l.claimed_leader(11).map(|c| c.term), Some(5));
    }
}
