//! [`LivenessDriver`]: the loop that sends this node's heartbeats and decides, group by group,
//! whether openraft's ticker runs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use openraft::metrics::{RaftDataMetrics, RaftServerMetrics};
use openraft::type_config::alias::WatchReceiverOf;

use super::Liveness;
use super::rebalance::{self, Transfer};
use crate::transport::pb;
use crate::transport::{GroupStateMachine, PeerClients, RaftRegistry};
use crate::typ::{NodeId, PartitionConfig, Raft, StoredMembership};

/// Timings of the liveness loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessConfig {
    /// How often heartbeats go out and groups are checked. A node is considered down after the
    /// [`Liveness`] timeout, which should be several intervals.
    pub interval: Duration,
    /// How long the follower ranked `n` in a leaderless group waits after the one ranked `n - 1`
    /// before it may campaign: long enough for one election to finish and be heard of.
    pub campaign_stagger: Duration,
    /// A group's preferred leader takes leadership back once it has been live this long
    /// (`None`: never; see [`crate::liveness`]'s rebalancing).
    pub rebalance_after: Option<Duration>,
}

/// How many leadership transfers one round may start: rebalancing moves groups a few at a time.
const TRANSFERS_PER_ROUND: usize = 8;

/// Every this many rounds the driver looks at every group, not only the changed and hot ones.
const FULL_SCAN_ROUNDS: u64 = 10;

/// Heartbeats a leader sends, one per full scan, once its commit index stopped moving. With the
/// ticker off nothing else would tell a follower that missed the last commit update (its
/// message lost, or dropped while the stream was busy) that the entries it holds are
/// committed: it would not apply them until the next write. Three, in case one is lost too.
const SETTLE_HEARTBEATS: u8 = 3;

/// Settle heartbeats one full scan may send: after a restart every group has just committed
/// (its election's entry), and thousands of heartbeats at once would delay the round's node
/// heartbeats. Those over the budget go out at later scans.
const SETTLE_PER_SCAN: usize = 64;

/// How many entries a voter may be behind its leader's log and still count as caught up: the
/// pipeline of a partition under load (batches on their way, fsyncs in progress) is a few dozen.
pub(crate) const IN_SYNC_LAG: u64 = 64;

/// What a round decided to do once it has looked at every group.
struct Actions<SM: GroupStateMachine> {
    heartbeat: Vec<Raft<SM>>,
    /// Groups whose campaign starts now: they stand for election at once.
    elect: Vec<(u64, Raft<SM>)>,
    transfer: Vec<(u64, Raft<SM>, NodeId)>,
}

/// A managed group as the driver tracks it between rounds.
pub(super) struct Tracked<SM: GroupStateMachine> {
    pub(super) raft: Raft<SM>,
    /// The group's state, vote and membership.
    metrics: ServerMetricsWatch,
    /// Its log and commit positions, read at full scans while it leads.
    data: DataMetricsWatch,
    /// The commit index the last full scan saw, while leading.
    commit_seen: Option<u64>,
    /// Settle heartbeats still to send for `commit_seen` (see [`SETTLE_HEARTBEATS`]).
    settle_left: u8,
    /// Whether `state`, `term` and `voters` have been read yet.
    read: bool,
    state: ServerState,
    pub(super) term: u64,
    pub(super) voters: Vec<NodeId>,
    membership: Arc<StoredMembership>,
    /// The leadership transfer this node started, while it leads.
    pub(super) transfer: Option<Transfer>,
    /// The ticker setting last given to openraft (`None`: never set by the driver).
    ticking: Option<bool>,
    /// Since when no live node has claimed the group (while this node follows it).
    leaderless_since: Option<Instant>,
    /// Marks the group dirty whenever its state, vote or membership changes.
    watcher: tokio::task::JoinHandle<()>,
}

impl<SM: GroupStateMachine> Drop for Tracked<SM> {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

type ServerMetricsWatch = WatchReceiverOf<PartitionConfig, RaftServerMetrics<PartitionConfig>>;
type DataMetricsWatch = WatchReceiverOf<PartitionConfig, RaftDataMetrics<PartitionConfig>>;

impl<SM: GroupStateMachine> Tracked<SM> {
    fn new(group: u64, raft: Raft<SM>, dirty: &Arc<Mutex<HashSet<u64>>>) -> Tracked<SM> {
        let mut changes = raft.server_metrics();
        let dirty = Arc::clone(dirty);
        // Ends when the group shuts down (the sender goes) or stops being tracked (aborted).
        let watcher = tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                dirty.lock().expect("dirty set poisoned").insert(group);
            }
        });
        let metrics = raft.server_metrics();
        let membership = Arc::clone(&metrics.borrow_watched().membership_config);
        let voters = membership.membership().voter_ids().collect();
        Tracked {
            data: raft.data_metrics(),
            commit_seen: None,
            settle_left: 0,
            raft,
            metrics,
            read: false,
            state: ServerState::Follower,
            term: 0,
            voters,
            membership,
            transfer: None,
            ticking: None,
            leaderless_since: None,
            watcher,
        }
    }

    /// Whether the group needs looking at every round: its ticker runs (a campaign), it has no
    /// leader, or its leadership is being handed over.
    fn hot(&self) -> bool {
        self.ticking == Some(true) || self.leaderless_since.is_some() || self.transfer.is_some()
    }

    /// Re-reads the group's state; says whether it changed since the last call. Reading the
    /// watched value is a read lock and a few compares; the voters are copied only when the
    /// membership changed (a new `Arc`).
    fn refresh(&mut self) -> bool {
        let m = self.metrics.borrow_watched();
        let term = m.vote.leader_id.term;
        let membership_changed = !Arc::ptr_eq(&m.membership_config, &self.membership);
        if self.read && m.state == self.state && term == self.term && !membership_changed {
            return false;
        }
        self.state = m.state;
        self.term = term;
        if membership_changed {
            self.membership = Arc::clone(&m.membership_config);
            self.voters = m.membership_config.membership().voter_ids().collect();
        }
        self.read = true;
        true
    }

    /// At a full scan, while leading: whether to send a settle heartbeat now — the commit index
    /// has not moved since the last full scan, which saw it move, and `may_send` (the scan's
    /// budget allows one).
    fn settle(&mut self, may_send: bool) -> bool {
        let committed = self.data.borrow_watched().cluster_committed.as_ref().map(|c| c.index());
        if committed != self.commit_seen {
            self.commit_seen = committed;
            self.settle_left = SETTLE_HEARTBEATS;
            return false;
        }
        if self.settle_left == 0 || !may_send {
            return false;
        }
        self.settle_left -= 1;
        true
    }

    /// While leading: whether every other voter is live and at most [`IN_SYNC_LAG`] entries
    /// behind this leader's log (read at full scans, for the under-replicated count).
    fn in_sync(&self, liveness: &Liveness) -> bool {
        let data = self.data.borrow_watched();
        let last = data.last_log.as_ref().map_or(0, |l| l.index());
        let Some(replication) = data.replication.as_ref() else { return true };
        self.voters.iter().filter(|&&v| v != liveness.node_id()).all(|v| {
            let matched = replication.get(v).and_then(|m| m.as_ref().map(|id| id.index));
            liveness.is_live(*v) && matched.is_some_and(|m| m + IN_SYNC_LAG >= last)
        })
    }

    fn tick(&mut self, on: bool) {
        if self.ticking != Some(on) {
            self.raft.runtime_config().tick(on);
            self.ticking = Some(on);
        }
    }
}

/// Sends this node's heartbeats and turns managed groups' tickers on and off (see the module
/// documentation of [`crate::liveness`]). An idle round costs a few atomic loads per group.
pub struct LivenessDriver<SM: GroupStateMachine> {
    liveness: Arc<Liveness>,
    registry: Arc<RaftRegistry<SM>>,
    clients: PeerClients,
    /// Every other node of the cluster: id and peer address.
    peers: Vec<(NodeId, String)>,
    peer_ids: Vec<NodeId>,
    /// Groups left to openraft's own timers (the controller group).
    unmanaged: Vec<u64>,
    config: LivenessConfig,
    groups: HashMap<u64, Tracked<SM>>,
    /// The registry generation `groups` reflects.
    registry_generation: Option<u64>,
    /// The liveness view as of the last round: generation, live peers, settled.
    view: (u64, Vec<NodeId>, bool),
    /// The groups this node leads and claims, with their terms, in group order.
    led: BTreeMap<u64, u64>,
    /// Grows whenever `led` changes; heartbeats carry it.
    claims_version: u64,
    /// Groups whose Raft state changed since they were last looked at (see [`Tracked::new`]).
    dirty: Arc<Mutex<HashSet<u64>>>,
    /// Groups looked at every round ([`Tracked::hot`]); every running campaign is among them.
    hot: HashSet<u64>,
    /// Rounds run; every [`FULL_SCAN_ROUNDS`]th looks at every group.
    rounds: u64,
    /// Per peer, the claims version it said it holds: heartbeats to it leave the claims out
    /// while that is current. A restarted peer holds none, says so, and gets them next round.
    acked: HashMap<NodeId, u64>,
}

impl<SM: GroupStateMachine> LivenessDriver<SM> {
    /// A driver for the groups in `registry`, except `unmanaged`, heartbeating to `peers`
    /// (node id and peer address; this node may be among them and is skipped).
    pub fn new(
        liveness: Arc<Liveness>,
        registry: Arc<RaftRegistry<SM>>,
        clients: PeerClients,
        peers: Vec<(NodeId, String)>,
        unmanaged: Vec<u64>,
        config: LivenessConfig,
    ) -> LivenessDriver<SM> {
        let me = liveness.node_id();
        let peers: Vec<(NodeId, String)> = peers.into_iter().filter(|(id, _)| *id != me).collect();
        let peer_ids = peers.iter().map(|(id, _)| *id).collect();
        LivenessDriver {
            liveness,
            registry,
            clients,
            peers,
            peer_ids,
            unmanaged,
            config,
            groups: HashMap::new(),
            registry_generation: None,
            view: (0, Vec::new(), false),
            claims_version: 0,
            acked: HashMap::new(),
            led: BTreeMap::new(),
            dirty: Arc::default(),
            hot: HashSet::new(),
            rounds: 0,
        }
    }

    /// Runs rounds every interval until `stop` resolves.
    pub async fn run(mut self, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = &mut stop => return,
            }
            let groups_changed = self.sync_groups();
            let actions = self.check_groups(groups_changed);
            for raft in actions.heartbeat {
                if let Err(e) = raft.trigger().heartbeat().await {
                    tracing::debug!("heartbeat to a restarted or stale peer: {e}");
                }
            }
            for (group, raft) in actions.elect {
                if let Err(e) = raft.trigger().elect(true).await {
                    tracing::debug!(group, "starting an election: {e}");
                }
            }
            for (group, raft, to) in actions.transfer {
                tracing::info!(group, to, "handing leadership back to the preferred leader");
                if let Err(e) = raft.trigger().transfer_leader(to).await {
                    tracing::debug!(group, "leadership transfer: {e}");
                }
            }
            self.send_heartbeats().await;
            if self.liveness.is_stopping(self.liveness.node_id()) {
                self.liveness.note_stopping_announced();
            }
        }
    }

    /// Tracks the registry's groups (only when it changed); says whether it did.
    fn sync_groups(&mut self) -> bool {
        let generation = self.registry.generation();
        if self.registry_generation == Some(generation) {
            return false;
        }
        self.registry_generation = Some(generation);
        let hosted: HashMap<u64, Raft<SM>> =
            self.registry.groups().into_iter().filter(|(g, _)| !self.unmanaged.contains(g)).collect();
        self.groups.retain(|g, _| hosted.contains_key(g));
        self.hot.retain(|g| hosted.contains_key(g));
        for (group, raft) in hosted {
            let dirty = &self.dirty;
            self.groups.entry(group).or_insert_with(|| Tracked::new(group, raft, dirty));
        }
        true
    }

    /// The groups to look at this round: all of them when the view of the cluster or the set
    /// of groups changed, a peer restarted, or every [`FULL_SCAN_ROUNDS`]th round (rebalancing
    /// is checked then); otherwise only those whose Raft state changed and the hot ones. An
    /// idle broker leading thousands of groups so touches none of them most rounds: reading
    /// every group's state every round cost it half its idle CPU.
    fn groups_to_check(&mut self, everything: bool) -> (Vec<u64>, bool) {
        self.rounds += 1;
        let dirty = std::mem::take(&mut *self.dirty.lock().expect("dirty set poisoned"));
        let full = self.rounds.is_multiple_of(FULL_SCAN_ROUNDS);
        if everything || full {
            self.led.retain(|g, _| self.groups.contains_key(g));
            return (self.groups.keys().copied().collect(), full);
        }
        let mut visit: HashSet<u64> = dirty.into_iter().filter(|g| self.groups.contains_key(g)).collect();
        visit.extend(self.hot.iter().copied());
        (visit.into_iter().collect(), false)
    }

    /// Sets tickers, collects this node's claims, and returns what to do next: the leaders
    /// that should send a Raft heartbeat now (to a follower that restarted, so it learns its
    /// leader and catches up, or to a peer still claiming the group in an older term, so that
    /// one steps down), and the groups to hand to their preferred leader.
    fn check_groups(&mut self, groups_changed: bool) -> Actions<SM> {
        let view = (self.liveness.generation(), self.liveness.live_peers(), self.liveness.settled(&self.peer_ids));
        let view_changed = view != self.view;
        self.view = view;
        let restarted = self.liveness.take_restarted();
        let (visit, full_scan) = self.groups_to_check(view_changed || groups_changed || !restarted.is_empty());
        let mut actions = Actions { heartbeat: Vec::new(), elect: Vec::new(), transfer: Vec::new() };
        let running = self.hot.iter().filter_map(|g| self.groups.get(g));
        let running = running.filter(|t| t.ticking == Some(true) && t.state != ServerState::Leader).count();
        let mut campaigns = Campaigns { running, started: Vec::new() };
        let mut led_changed = false;
        let mut settle_budget = SETTLE_PER_SCAN;
        let stopping = self.liveness.is_stopping(self.liveness.node_id());
        let mut under_replicated = 0u32;
        for group in visit {
            let Some(t) = self.groups.get_mut(&group) else { continue };
            let changed = t.refresh();
            let mut claim = None;
            match t.state {
                ServerState::Leader => {
                    // A leader needs no ticker: followers hear of it through node heartbeats.
                    t.tick(false);
                    t.leaderless_since = None;
                    if !rebalance::abandoned(&self.liveness, &self.config, t) {
                        claim = Some(t.term);
                    }
                    let restarted = t.voters.iter().any(|v| restarted.contains(v));
                    let stale = (changed || view_changed)
                        && self.liveness.claimed_leader(group).is_some_and(|c| c.term < t.term);
                    // Full scans come at a steady pace, which settle heartbeats are counted in.
                    let settle = full_scan && t.settle(settle_budget > 0);
                    settle_budget -= usize::from(settle);
                    if restarted || stale || settle {
                        actions.heartbeat.push(t.raft.clone());
                    }
                    if full_scan && !t.in_sync(&self.liveness) {
                        under_replicated += 1;
                    }
                    // A stopping node hands its groups over itself (`handover.rs`).
                    if !stopping
                        && actions.transfer.len() < TRANSFERS_PER_ROUND
                        && let Some(to) = rebalance::due(&self.liveness, &self.config, group, t)
                    {
                        t.transfer = Some(Transfer { to, started: Instant::now(), term: t.term });
                        actions.transfer.push((group, t.raft.clone(), to));
                    }
                }
                ServerState::Shutdown => {}
                // A stopping node stands for no election: it would have to hand the group over
                // again at once.
                _ if stopping => {
                    t.transfer = None;
                    t.leaderless_since = None;
                    campaigns.set(t, false);
                }
                _ if changed || view_changed || t.leaderless_since.is_some() => {
                    t.transfer = None;
                    follow(&self.liveness, &self.config, self.view.2, group, t, &mut campaigns);
                }
                _ => {}
            }
            if t.hot() {
                self.hot.insert(group);
            } else {
                self.hot.remove(&group);
            }
            led_changed |= match claim {
                Some(term) => self.led.insert(group, term) != Some(term),
                None => self.led.remove(&group).is_some(),
            };
        }
        actions.elect = campaigns.started;
        if full_scan {
            self.liveness.update_own_resources(|r| r.under_replicated = under_replicated);
        }
        if led_changed {
            self.claims_version += 1;
        }
        actions
    }

    /// Sends this node's heartbeat to every peer at once; each is bounded by the interval, so a
    /// dead peer delays the next round by at most that. A peer that holds the current claims
    /// gets a heartbeat without them.
    async fn send_heartbeats(&mut self) {
        let version = self.claims_version;
        let own = self.liveness.resources(self.liveness.node_id());
        let brief = pb::NodeHeartbeatRequest {
            from: self.liveness.node_id(),
            incarnation: self.liveness.incarnation(),
            led_groups: Vec::new(),
            led_terms: Vec::new(),
            claims_version: version,
            disk_full: own
                .disk_full
                .map(|d| pb::DiskFull { free_bytes: d.free_bytes, threshold_bytes: d.threshold_bytes }),
            max_replicas: own.max_replicas,
            claims_omitted: true,
            offline_replicas: own.offline_replicas,
            stopping: self.liveness.is_stopping(self.liveness.node_id()),
            under_replicated: own.under_replicated,
        };
        // The lists are built only when some peer does not hold this version.
        let needs_claims = self.peers.iter().any(|(peer, _)| self.acked.get(peer) != Some(&version));
        let full = needs_claims.then(|| {
            let (led_groups, led_terms) = self.led.iter().map(|(&g, &t)| (g, t)).unzip();
            pb::NodeHeartbeatRequest { led_groups, led_terms, claims_omitted: false, ..brief.clone() }
        });
        let (this, interval) = (&*self, self.config.interval);
        let sends = this.peers.iter().map(|(peer, addr)| {
            let beat = match &full {
                Some(full) if this.acked.get(peer) != Some(&version) => full.clone(),
                _ => brief.clone(),
            };
            async move {
                let sent = match this.clients.raft_client(*peer, addr) {
                    Ok(mut client) => tokio::time::timeout(interval, client.node_heartbeat(beat))
                        .await
                        .map_err(|_elapsed| format!("no answer within {interval:?}")),
                    Err(e) => Err(e),
                };
                match sent {
                    Ok(Ok(ack)) => Some((*peer, ack.into_inner())),
                    Ok(Err(status)) => {
                        tracing::trace!(peer, "node heartbeat failed: {status}");
                        None
                    }
                    Err(e) => {
                        tracing::trace!(peer, "node heartbeat failed: {e}");
                        None
                    }
                }
            }
        });
        let acks = futures_util::future::join_all(sends).await;
        for (peer, ack) in acks.into_iter().flatten() {
            if ack.claims_current {
                self.acked.insert(peer, version);
            } else {
                self.acked.remove(&peer);
            }
        }
    }
}

/// A follower's ticker (and so its election timer) runs only while no live node claims the
/// group at this node's term or later, and then only from its turn on.
fn follow<SM: GroupStateMachine>(
    liveness: &Liveness,
    config: &LivenessConfig,
    settled: bool,
    group: u64,
    t: &mut Tracked<SM>,
    campaigns: &mut Campaigns<SM>,
) {
    let led = liveness.claimed_leader(group).is_some_and(|c| c.term >= t.term);
    // A replica that is no voter — a new partition's, before its leader reached it — cannot
    // win: a campaign slot given to it would never come back, and enough of them starved the
    // preferred leaders' campaigns of every slot.
    let voter = t.voters.contains(&liveness.node_id());
    if led || !settled || !voter {
        t.leaderless_since = None;
        campaigns.set(t, false);
        return;
    }
    let since = *t.leaderless_since.get_or_insert_with(Instant::now);
    // A stopping node is about to go: the others campaign as if it were gone already.
    let live: Vec<NodeId> =
        t.voters.iter().copied().filter(|&v| liveness.is_live(v) && !liveness.is_stopping(v)).collect();
    let preferred = liveness.preferred_leader(group);
    let rank = campaign_rank(group, liveness.node_id(), &live, preferred);
    // While a live preferred leader keeps winning groups (a cluster restarting, a broker
    // returning), it is working through its campaigns a few dozen at a time and will come to
    // this one: the others' turns count from its latest win, not from when the group lost its
    // leader. Otherwise they won thousands of its groups first, and each went back to it by a
    // second election (rebalancing): twice the elections, on a machine already short of CPU.
    let preferred_busy =
        preferred.filter(|&p| rank > 0 && live.contains(&p)).and_then(|p| liveness.claims_changed_at(p));
    let turn = since.max(preferred_busy.unwrap_or(since)) + config.campaign_stagger * rank;
    // A new group (term 0) needs no push: its preferred leader's openraft elects as it
    // initializes the group, and a second election now would compete with that one.
    if campaigns.set(t, Instant::now() >= turn) && t.term > 0 {
        campaigns.started.push((group, t.raft.clone()));
    }
}

/// How many groups one node campaigns for at once. Every vote costs each voter an fsync; when
/// hundreds of groups elect together (a cluster forming, a broker dying) on a busy machine, the
/// votes queue behind each other past the election timeout, candidates give up and start over
/// in a new term, and nobody wins. A bounded number of campaigns at a time finish quickly and
/// make room for the next.
const MAX_CAMPAIGNS: usize = 32;

/// The campaigns (followers with their ticker on) running on this node.
struct Campaigns<SM: GroupStateMachine> {
    running: usize,
    /// The campaigns this round started. Each stands for election now (a pre-vote first, which
    /// a live leader's followers refuse, so a healthy leader is never deposed) rather than after
    /// openraft's randomized election timeout: the turns (`campaign_stagger` apart) already keep
    /// a group's voters from campaigning together, and waiting out the timeout made every new
    /// topic and every restart wait most of a second per batch of campaigns. The ticker stays
    /// on as a fallback.
    started: Vec<(u64, Raft<SM>)>,
}

impl<SM: GroupStateMachine> Campaigns<SM> {
    /// Turns `t`'s ticker on or off; on only if a campaign slot is free (otherwise the group
    /// stays leaderless and asks again next round). Says whether this started its campaign.
    fn set(&mut self, t: &mut Tracked<SM>, on: bool) -> bool {
        let was = t.ticking == Some(true);
        if on && !was {
            if self.running >= MAX_CAMPAIGNS {
                return false;
            }
            self.running += 1;
        } else if !on && was {
            self.running = self.running.saturating_sub(1);
        }
        t.tick(on);
        on && !was
    }
}

/// Where `node` stands among `live` voters in the order they campaign for `group`: the
/// preferred leader first if it is live, then by a hash of group and node, so each group has its
/// own order and a dead leader's groups spread over the survivors.
fn campaign_rank(group: u64, node: NodeId, live: &[NodeId], preferred: Option<NodeId>) -> u32 {
    let preferred = preferred.filter(|p| live.contains(p));
    let key = |n: NodeId| (Some(n) != preferred, mix(group ^ mix(n)));
    let mine = key(node);
    live.iter().filter(|&&v| v != node && key(v) < mine).count() as u32
}

/// SplitMix64's finalizer: a cheap, well-spread 64-bit mix.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::campaign_rank;

    #[test]
    fn every_live_voter_has_its_own_rank() {
        for group in 0..100 {
            for preferred in [None, Some(2), Some(9)] {
                let mut ranks: Vec<u32> =
                    [1, 2, 3].iter().map(|&n| campaign_rank(group, n, &[1, 2, 3], preferred)).collect();
                ranks.sort_unstable();
                assert_eq!(ranks, [0, 1, 2], "group {group}");
            }
            assert_eq!(campaign_rank(group, 2, &[1, 2, 3], Some(2)), 0, "the live preferred leader is first");
        }
    }

    #[test]
    fn first_campaigners_spread_over_nodes() {
        let mut firsts = [0u32; 3];
        for group in 0..300 {
            let first =
                [1u64, 2].into_iter().find(|&n| campaign_rank(group, n, &[1, 2], Some(3)) == 0).expect("a first");
            firsts[first as usize] += 1;
        }
        assert!(firsts[1] > 100 && firsts[2] > 100, "first campaigners {firsts:?}");
    }
}
