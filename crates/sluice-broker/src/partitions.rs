//! The partition replicas a broker hosts: one Raft group each, started when the controller
//! assigns the partition to this broker and stopped (its data deleted) when its topic is.
//!
//! The broker reconciles what it runs with what the metadata says whenever the metadata
//! changes. A new partition's preferred leader initializes its group with the assigned replicas
//! as voters and the others learn it from there; each initializes the same membership itself if
//! nothing reaches it, so a group forms without coordination even when a broker is down.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use sluice_controller::{HostedPartition, Metadata};
use sluice_raft::partition::delay::LaneShared;
use sluice_raft::partition::{LogStart, Stable};
use sluice_raft::typ::{LeaderReadBarrier, Node, Raft, RaftConfig, ServerState, WatchReceiver};
use sluice_raft::{
    Exhausted, Exhaustion, FsmHandle, GroupNetworkFactory, Liveness, NodeStateMachine, PartitionLogStore,
    PartitionStateMachine, PeerClients, RaftRegistry,
};
use sluice_storage::{FlushPolicy, Flusher, LockMode, Log, LogConfig, Retention, SegmentCache};
use tokio::sync::{mpsc, watch};

use crate::controller::BrokerStateMachine;
use crate::delays::Delays;
use crate::disk::DiskState;
use crate::fail_stop::{FailStop, OnExhaustion};
use crate::parked::Parked;

/// The longest a replica of a new partition waits for its live preferred leader to initialize
/// the group before it initializes the group itself.
const INITIALIZE_FALLBACK_MAX: Duration = Duration::from_secs(30);

/// How many partition groups one reconciliation starts at once.
const STARTS_AT_ONCE: usize = 64;

/// One hosted partition replica.
struct Hosted {
    raft: Raft<BrokerStateMachine>,
    log: Arc<Log>,
    dir: PathBuf,
    /// The state machine's watches, subscribed before openraft took it: reading them never
    /// goes through the state machine's task.
    high_watermark: watch::Receiver<u64>,
    log_start: watch::Receiver<LogStart>,
    stable: watch::Receiver<Stable>,
    /// Whether, as leader, it may serve reads yet.
    read_barrier: LeaderReadBarrier,
    /// What the releaser reads of its delay lane.
    lane: Option<Arc<LaneShared>>,
}

/// The partition groups this broker runs.
pub struct Partitions {
    node_id: u64,
    dir: PathBuf,
    registry: Arc<RaftRegistry<BrokerStateMachine>>,
    clients: PeerClients,
    flusher: Arc<Flusher>,
    /// Keeps the sealed segments of every log under `dir` open, within one bound.
    segment_cache: Arc<SegmentCache>,
    raft_config: Arc<RaftConfig>,
    liveness: Arc<Liveness>,
    /// Active segments roll once this old (`LogConfig::max_segment_age`).
    segment_roll: Duration,
    /// Told when a group stops on a fatal error; `None` outside a broker.
    fail_stop: Option<FailStop>,
    hosted: Mutex<HashMap<u64, Arc<Hosted>>>,
    /// Tries to start a group that failed (each is tried again later).
    failed_starts: AtomicU64,
    /// How many groups the metadata assigned here at the last reconciliation.
    assigned: AtomicU64,
    /// Groups stopped because their storage ran out of a resource (`parked.rs`).
    parked: Parked,
    /// Where a group that ran out of a resource asks to be parked (the reconcile loop parks it).
    park_requests: mpsc::UnboundedSender<(u64, Exhausted)>,
    /// The free-space guard's latest check; `None` outside a broker (always room).
    disk: Option<watch::Receiver<DiskState>>,
    /// Where replicas keep delayed messages; `None`: they refuse them.
    delays: Option<Arc<Delays>>,
}

impl Partitions {
    /// Partition data goes under `dir`; every log there shares `flusher`. Groups start with
    /// openraft's ticker off: the node's liveness driver turns it on when a group needs an
    /// election (see `sluice_raft::liveness`), and `liveness` tells where other groups' leaders are.
    pub fn new(
        node_id: u64,
        dir: PathBuf,
        registry: Arc<RaftRegistry<BrokerStateMachine>>,
        clients: PeerClients,
        flusher: Arc<Flusher>,
        raft_config: RaftConfig,
        liveness: Arc<Liveness>,
    ) -> (Partitions, mpsc::UnboundedReceiver<(u64, Exhausted)>) {
        let raft_config = Arc::new(RaftConfig { enable_tick: false, ..raft_config });
        let (park_requests, parked_groups) = mpsc::unbounded_channel();
        let hosted = Mutex::new(HashMap::new());
        let segment_roll = LogConfig::default().max_segment_age.expect("the default rolls by age");
        let fail_stop = None;
        // Until the first reconciliation says which groups are assigned here, those it hosted
        // before are: a restarted broker reports them offline until they run again, so that a
        // rolling restart does not take it for caught up before its replicas even started.
        let hosted_before = std::fs::read_dir(&dir).map_or(0, |entries| {
            entries.filter_map(Result::ok).filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).count() as u64
        });
        let partitions = Partitions {
            node_id,
            dir,
            registry,
            clients,
            flusher,
            segment_cache: Arc::new(SegmentCache::default()),
            raft_config,
            liveness,
            segment_roll,
            fail_stop,
            hosted,
            failed_starts: AtomicU64::new(0),
            assigned: AtomicU64::new(hosted_before),
            parked: Parked::default(),
            park_requests,
            disk: None,
            delays: None,
        };
        partitions.report_offline();
        (partitions, parked_groups)
    }

    /// Replicas keep delayed messages in `delays`.
    pub fn with_delays(self, delays: Arc<Delays>) -> Partitions {
        Partitions { delays: Some(delays), ..self }
    }

    /// The delay store and release timing, if replicas keep delayed messages.
    pub fn delays(&self) -> Option<&Arc<Delays>> {
        self.delays.as_ref()
    }

    /// What the releaser reads of hosted group `group_id`'s delay lane.
    pub fn delay_lane(&self, group_id: u64) -> Option<Arc<LaneShared>> {
        self.hosted.lock().expect("hosted lock").get(&group_id).and_then(|h| h.lane.clone())
    }

    /// Restarts a replica stopped by ENOSPC only when `disk` says there is room.
    pub(crate) fn with_disk(self, disk: watch::Receiver<DiskState>) -> Partitions {
        Partitions { disk: Some(disk), ..self }
    }

    /// Stops the replica of `group_id`, which ran out of `reason`, keeping its data; the
    /// reconcile loop starts it again once the resource is back (see [`Partitions::reconcile`]).
    /// Its peers elect another leader meanwhile, or go on without this follower.
    pub(crate) async fn park(&self, group_id: u64, reason: Exhausted) {
        let parked = |h: &Hosted| self.parked.park(group_id, h.dir.clone(), reason, std::time::Instant::now());
        self.take_down(group_id, parked).await;
        self.report_offline();
    }

    /// Assigned groups not running here (parked, failing to start, or not started yet).
    pub fn offline_count(&self) -> u64 {
        let hosted = self.hosted.lock().expect("hosted lock").len() as u64;
        self.assigned.load(Ordering::Relaxed).saturating_sub(hosted)
    }

    /// Tells peers, through node heartbeats, how many assigned groups are not running here.
    fn report_offline(&self) {
        let offline = u32::try_from(self.offline_count()).unwrap_or(u32::MAX);
        self.liveness.update_own_resources(|r| r.offline_replicas = offline);
    }

    /// Broker `node`'s disk state, capacity and offline replicas: this broker's own as last
    /// found, a peer's as its heartbeats say (see [`Liveness::resources`]).
    pub fn resources_of(&self, node: u64) -> sluice_raft::liveness::Resources {
        self.liveness.resources(node)
    }

    /// Whether broker `node` is stopping (a controlled shutdown), as this broker knows.
    pub fn is_stopping(&self, node: u64) -> bool {
        self.liveness.is_stopping(node)
    }

    /// Deletes the data of parked groups no longer assigned here (their topic was deleted):
    /// deleting a topic is how an operator frees a full disk.
    fn forget_unassigned_parked(&self, wanted: &HashSet<u64>) {
        for (group, dir) in self.parked.forget_unless(|g| wanted.contains(&g)) {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::error!(group, dir = %dir.display(), "deleting a removed partition's data: {e}");
            }
        }
    }

    /// Whether some replica waits for disk space to start again.
    pub(crate) fn any_parked_for_disk(&self) -> bool {
        self.parked.any_waiting_for_disk()
    }

    /// The shared cache of sealed segments' open files: its use, for the metrics.
    pub fn segment_cache_stats(&self) -> sluice_storage::CacheStats {
        self.segment_cache.stats()
    }

    /// How many replicas wait for a resource to start again.
    pub fn parked_count(&self) -> usize {
        self.parked.len()
    }

    /// Rolls the active segment of logs opened from now on once it is `age` old (retention
    /// deletes whole sealed segments only).
    pub fn with_segment_roll(self, age: Duration) -> Partitions {
        Partitions { segment_roll: age, ..self }
    }

    /// Reports every group started from now on that stops on a fatal error to `fail_stop`.
    pub(crate) fn with_fail_stop(self, fail_stop: FailStop) -> Partitions {
        Partitions { fail_stop: Some(fail_stop), ..self }
    }

    /// The Raft group of partition group `group_id`, if hosted here.
    pub fn raft(&self, group_id: u64) -> Option<Raft<BrokerStateMachine>> {
        self.hosted.lock().expect("hosted lock").get(&group_id).map(|h| h.raft.clone())
    }

    /// The log of partition group `group_id`, if hosted here.
    pub fn log(&self, group_id: u64) -> Option<Arc<Log>> {
        self.hosted.lock().expect("hosted lock").get(&group_id).map(|h| Arc::clone(&h.log))
    }

    /// Whether broker `node`'s disk is below its free-space threshold: this broker's own as its
    /// guard last found, a live peer's as its heartbeats say.
    pub fn disk_full(&self, node: u64) -> Option<sluice_raft::liveness::DiskFull> {
        self.liveness.resources(node).disk_full
    }

    /// Whether broker `node` is live, as this broker's node heartbeats say.
    pub fn is_live(&self, node: u64) -> bool {
        self.liveness.is_live(node)
    }

    /// The leader of partition group `group_id` and its term, as this broker knows it: itself
    /// if it leads the group, else the live broker claiming it in the highest term. Any group of
    /// the cluster, hosted here or not. A replica here that heard from a leader, or voted for a
    /// candidate, in a later term than any claim names that one: right after a leadership
    /// transfer (a broker stopping) the new leader's claim takes a heartbeat to arrive, and the
    /// old leader's clients are sent on at once.
    pub fn leader_of(&self, group_id: u64) -> Option<(u64, u64)> {
        let claimed = self.liveness.claimed_leader(group_id).map(|c| (c.node_id, c.term));
        let Some(raft) = self.raft(group_id) else { return claimed };
        let metrics = raft.metrics();
        let m = metrics.borrow_watched();
        if m.state == ServerState::Leader {
            return Some((self.node_id, m.current_term));
        }
        let voted = Some(m.vote.leader_id.voted_for).filter(|&v| v != 0 && v != self.node_id);
        let local = m.current_leader.filter(|&l| l != self.node_id).or(voted);
        let local = local.filter(|&l| self.liveness.is_live(l)).map(|l| (l, m.vote.leader_id.term));
        match (claimed, local) {
            (Some(c), Some(l)) if l.1 > c.1 => Some(l),
            (None, local) => local,
            _ => claimed,
        }
    }

    /// The high watermark watch of partition group `group_id`, if hosted here.
    pub fn high_watermark(&self, group_id: u64) -> Option<watch::Receiver<u64>> {
        self.hosted.lock().expect("hosted lock").get(&group_id).map(|h| h.high_watermark.clone())
    }

    /// Whether this broker leads partition group `group_id` and its high watermark covers
    /// everything committed before it became leader (see [`LeaderReadBarrier`]), waiting up to
    /// `within` for it.
    pub async fn leader_caught_up_within(&self, group_id: u64, within: Duration) -> bool {
        let hosted = self.hosted.lock().expect("hosted lock").get(&group_id).cloned();
        match hosted {
            Some(h) => h.read_barrier.wait_caught_up(&h.raft, within).await,
            None => false,
        }
    }

    /// The log start watch of partition group `group_id`, if hosted here.
    pub fn log_start(&self, group_id: u64) -> Option<watch::Receiver<LogStart>> {
        self.hosted.lock().expect("hosted lock").get(&group_id).map(|h| h.log_start.clone())
    }

    /// The last stable offset and aborted ranges watch of hosted group `group_id`
    /// (docs/TRANSACTIONS.md), if hosted here.
    pub fn stable(&self, group_id: u64) -> Option<watch::Receiver<Stable>> {
        self.hosted.lock().expect("hosted lock").get(&group_id).map(|h| h.stable.clone())
    }

    /// The group ids hosted here.
    pub fn group_ids(&self) -> Vec<u64> {
        self.hosted.lock().expect("hosted lock").keys().copied().collect()
    }

    /// How many tries to start a partition group have failed since the broker started (a
    /// group whose directory is still locked, a full disk); each failed group is tried again.
    pub fn failed_starts(&self) -> u64 {
        self.failed_starts.load(Ordering::Relaxed)
    }

    /// Starts the groups `metadata` assigns to this broker and are not running, and stops (and
    /// deletes) those running that it no longer assigns. Returns whether every group it tried to
    /// start did.
    pub async fn reconcile(&self, metadata: &FsmHandle<Metadata>) -> bool {
        let (wanted, addrs) = metadata.read(|m| {
            let wanted = m.partitions_of(sluice_common::NodeId(self.node_id));
            let addrs: BTreeMap<u64, String> = m.brokers().map(|b| (b.node_id.0, b.raft_addr.clone())).collect();
            (wanted, addrs)
        });
        // Sets: a broker may host thousands of groups.
        let running: HashSet<u64> = self.group_ids().into_iter().collect();
        let wanted_ids: HashSet<u64> = wanted.iter().map(|p| p.group_id).collect();
        self.assigned.store(wanted_ids.len() as u64, Ordering::Relaxed);
        self.report_offline();
        // The futures are made up front (they do nothing until polled): a stream mapping over a
        // borrowing iterator is not `Send` for the compiler's higher-ranked lifetime check.
        let starts: Vec<_> = wanted
            .iter()
            .filter(|p| !running.contains(&p.group_id))
            .map(|p| self.try_start(p, &addrs, metadata))
            .collect();
        // Starting a replica waits on the disk (an fdatasync and a directory fsync on open, the
        // vote and the first entry on a new group), not the CPU: groups start many at a time,
        // so that their fsyncs share journal commits. One at a time, 10,000 replicas took a
        // minute to come back after a restart.
        let started: Vec<bool> = futures_util::stream::iter(starts).buffer_unordered(STARTS_AT_ONCE).collect().await;
        let all_started = started.iter().all(|&ok| ok);
        self.update_retention(metadata, &wanted);
        self.report_offline();
        self.forget_unassigned_parked(&wanted_ids);
        for gid in running.into_iter().filter(|g| !wanted_ids.contains(g)) {
            // The data goes while the group is still listed: unlisting first let a caller see
            // the group gone with its files still there. The stopped log writes nothing more,
            // and its open files may be unlinked.
            self.take_down(gid, |h| {
                if let Err(e) = std::fs::remove_dir_all(&h.dir) {
                    tracing::error!(dir = %h.dir.display(), "deleting a removed partition's data: {e}");
                }
                if let Some(Err(e)) = self.delays.as_ref().map(|d| d.delete_group(gid)) {
                    tracing::error!(group = gid, "deleting a removed partition's delayed messages: {e}");
                }
            })
            .await;
        }
        all_started
    }

    /// Hands every running replica's log its topic's retention as the metadata has it now, so a
    /// retention altered while the topic runs applies from the next retention pass.
    fn update_retention(&self, metadata: &FsmHandle<Metadata>, wanted: &[HostedPartition]) {
        // Read first, set after: the metadata lock is never held together with `hosted`'s.
        let retentions: Vec<(u64, Retention)> =
            metadata.read(|m| wanted.iter().map(|p| (p.group_id, retention_of(m, p))).collect());
        let hosted = self.hosted.lock().expect("hosted lock");
        for (gid, retention) in retentions {
            if let Some(h) = hosted.get(&gid).filter(|h| h.log.retention() != retention) {
                tracing::info!(group = gid, ?retention, "the topic's retention changed");
                h.log.set_retention(retention);
            }
        }
    }

    /// Starts group `p` unless it is parked and not due; says whether it runs now.
    async fn try_start(
        &self,
        p: &HostedPartition,
        addrs: &BTreeMap<u64, String>,
        metadata: &FsmHandle<Metadata>,
    ) -> bool {
        let disk = self.disk.as_ref().map(|d| *d.borrow());
        let parked = self.parked.may_start(p.group_id, disk.as_ref(), std::time::Instant::now());
        if parked == Some(false) {
            return false;
        }
        let (retention, policy) = metadata.read(|m| (retention_of(m, p), flush_policy_of(m, p)));
        match self.start_group(p, addrs, retention, policy).await {
            Ok(()) if parked.is_some() => {
                self.parked.started(p.group_id);
                tracing::info!(topic = %p.topic, partition = p.partition.0, "restarted after running out of a resource");
                true
            }
            Ok(()) => true,
            Err(e) => {
                tracing::error!(topic = %p.topic, partition = p.partition.0, "starting partition group (will retry): {e}");
                self.failed_starts.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Stops the hosted group `group_id`, if there is one, runs `stopped` on it while it is
    /// still listed (a group stays listed until it has stopped and its data is dealt with),
    /// then unlists it.
    async fn take_down(&self, group_id: u64, stopped: impl FnOnce(&Hosted)) {
        let hosted = self.hosted.lock().expect("hosted lock").get(&group_id).cloned();
        let Some(h) = hosted else { return };
        self.registry.remove(group_id);
        self.liveness.set_preferred_leader(group_id, None);
        stop(&h).await;
        stopped(&h);
        self.hosted.lock().expect("hosted lock").remove(&group_id);
        // Ours was the last handle to the log (see `stop`): dropping it closes the log.
        drop(h);
    }

    async fn start_group(
        &self,
        p: &HostedPartition,
        addrs: &BTreeMap<u64, String>,
        retention: Retention,
        policy: FlushPolicy,
    ) -> io::Result<()> {
        let dir = self.dir.join(format!("{}-{}.g{}", p.topic, p.partition.0, p.group_id));
        // No lock file per log: the broker's lock on its data directory keeps other processes
        // out, and this broker opens a partition's directory once at a time (a restart waits
        // for the previous log to close, see `stop`; the log's claim in memory refuses a second
        // handle if that wait ran out).
        let config = LogConfig {
            retention,
            max_segment_age: Some(self.segment_roll),
            lock: LockMode::Held,
            ..LogConfig::default()
        };
        let (log, sm) = {
            let (dir, cache) = (dir.clone(), Arc::clone(&self.segment_cache));
            let (delays, group) = (self.delays.clone(), p.group_id);
            // Opening reads and fsyncs: off the runtime's threads, so that other starts proceed.
            tokio::task::spawn_blocking(move || -> io::Result<_> {
                let log = Arc::new(Log::open_with(&dir, config, cache)?);
                let mut sm = PartitionStateMachine::open(Arc::clone(&log))?;
                if let Some(delays) = delays {
                    sm = sm.with_delays(delays.lane(group)?);
                }
                Ok((log, sm))
            })
            .await
            .map_err(io::Error::other)??
        };
        let lane = sm.delays().map(|l| l.shared());
        let exhaustion = Arc::new(Exhaustion::default());
        let sm = sm.noting_exhaustion(Arc::clone(&exhaustion));
        let (high_watermark, log_start, stable) = (sm.high_watermark(), sm.log_start(), sm.stable());
        let store = PartitionLogStore::new(Arc::clone(&log), Arc::clone(&self.flusher))
            .with_flush_policy(policy)
            .retaining(log_start.clone())
            .noting_exhaustion(Arc::clone(&exhaustion));
        // Snapshots sent from here carry the retained entries read from the log, and those
        // received are staged in it (docs/adr/0006-snapshot-catch-up.md).
        let mut network = GroupNetworkFactory::new(p.group_id, self.clients.clone()).with_log(Arc::clone(&log));
        if let Some(delays) = &self.delays {
            // ... and the partition's pending delayed messages (docs/adr/0009-delayed-messages.md).
            network = network.with_delays(Arc::clone(delays.store()));
        }
        let raft = Raft::new(self.node_id, self.group_config(policy), network, store, NodeStateMachine::Partition(sm))
            .await
            .map_err(io::Error::other)?;
        if let Some(fail_stop) = &self.fail_stop {
            let (requests, group_id) = (self.park_requests.clone(), p.group_id);
            let park = Box::new(move |reason| {
                // Fails only once the broker is stopping, when nothing restarts groups anyway.
                let _ = requests.send((group_id, reason));
            });
            let name = format!("partition group {} ({}-{})", p.group_id, p.topic, p.partition.0);
            fail_stop.watch(name, &raft, Some(OnExhaustion { flag: exhaustion, park }));
        }
        self.liveness.set_preferred_leader(p.group_id, p.replicas.first().map(|r| r.0));
        self.registry.insert_log(p.group_id, Arc::clone(&log));
        self.registry.insert(p.group_id, raft.clone());
        let fallback = Duration::from_millis(2 * self.raft_config.election_timeout_max);
        if let Err(e) = initialize(self.node_id, &self.liveness, &raft, p, addrs, fallback).await {
            // Undone, so that the next try starts afresh: a group left running would keep its
            // log's directory locked, and every later try would fail on the lock.
            self.registry.remove(p.group_id);
            self.liveness.set_preferred_leader(p.group_id, None);
            if let Err(e) = raft.shutdown().await {
                tracing::warn!(group = p.group_id, "shutting down a partition group that failed to start: {e}");
            }
            return Err(e);
        }
        tracing::info!(topic = %p.topic, partition = p.partition.0, group = p.group_id, "hosting partition");
        self.hosted.lock().expect("hosted lock").insert(
            p.group_id,
            Arc::new(Hosted {
                raft,
                log,
                dir,
                high_watermark,
                log_start,
                stable,
                read_barrier: Default::default(),
                lane,
            }),
        );
        Ok(())
    }

    /// The Raft config of a group under `policy`. A replica under a relaxed policy can come back
    /// from an OS crash with less log than it acknowledged; its leader must then search for the
    /// match again and resend, which openraft treats as a bug unless `allow_log_reversion` is set.
    fn group_config(&self, policy: FlushPolicy) -> Arc<RaftConfig> {
        match policy {
            FlushPolicy::EveryAppend => Arc::clone(&self.raft_config),
            FlushPolicy::Interval(_) => {
                Arc::new(RaftConfig { allow_log_reversion: Some(true), ..(*self.raft_config).clone() })
            }
        }
    }

    /// Stops every group, keeping its data.
    pub async fn shutdown(&self) {
        let all: Vec<(u64, Arc<Hosted>)> = self.hosted.lock().expect("hosted lock").drain().collect();
        for (gid, h) in all {
            self.registry.remove(gid);
            stop(&h).await;
        }
    }

    /// Where partition data lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn retention_of(m: &Metadata, p: &HostedPartition) -> Retention {
    let config = m.topic(p.topic.as_str()).map(|t| t.config.clone());
    Retention {
        max_age: config.as_ref().and_then(|c| c.retention_ms).map(Duration::from_millis),
        max_bytes: config.and_then(|c| c.retention_bytes),
    }
}

/// The topic's flush policy: fsync before every acknowledgement unless it sets an interval.
fn flush_policy_of(m: &Metadata, p: &HostedPartition) -> FlushPolicy {
    FlushPolicy::from_interval_ms(m.topic(p.topic.as_str()).and_then(|t| t.config.flush_interval_ms))
}

/// Makes `raft` a member of its group. A new partition's preferred leader (its first replica)
/// initializes the group with the assigned replicas as voters, which in openraft also starts its
/// election at once; the others learn the membership from it when it replicates. They initialize
/// it too (the same membership) only if nothing reached them within `fallback` while the
/// preferred leader is down, or within [`INITIALIZE_FALLBACK_MAX`] however it is. Every replica
/// initializing at once made all three campaign in the same term, split the vote, and left a new
/// topic leaderless for an election timeout. Restarts find the group initialized.
async fn initialize(
    node_id: u64,
    liveness: &Arc<Liveness>,
    raft: &Raft<BrokerStateMachine>,
    p: &HostedPartition,
    addrs: &BTreeMap<u64, String>,
    fallback: Duration,
) -> io::Result<()> {
    if raft.is_initialized().await.map_err(io::Error::other)? {
        return Ok(());
    }
    let voters: BTreeMap<u64, Node> =
        p.replicas.iter().map(|r| (r.0, Node { addr: addrs.get(&r.0).cloned().unwrap_or_default() })).collect();
    let (group, preferred) = (p.group_id, p.replicas.first().map(|r| r.0));
    let init = async move |raft: &Raft<BrokerStateMachine>| {
        if let Err(e) = raft.initialize(voters).await {
            tracing::debug!(group, "partition group already initialized elsewhere: {e}");
        }
    };
    if preferred == Some(node_id) {
        init(raft).await;
        return Ok(());
    }
    let (raft, liveness) = (raft.clone(), Arc::clone(liveness));
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(fallback).await;
            // A stopped group answers with an error: nothing to do then either.
            if !matches!(raft.is_initialized().await, Ok(false)) {
                return;
            }
            // A live preferred leader starting thousands of groups may take a while to come to
            // this one; initializing here then would only elect a leader that hands over later.
            let preferred_live = preferred.is_some_and(|p| liveness.is_live(p));
            if !preferred_live || started.elapsed() >= INITIALIZE_FALLBACK_MAX {
                break;
            }
        }
        tracing::info!(group, "no leader reached this replica of a new partition: initializing it here");
        init(&raft).await;
    });
    Ok(())
}

/// Shuts the group down and waits (bounded) until its log is closed everywhere it was shared.
async fn stop(h: &Hosted) {
    if let Err(e) = h.raft.shutdown().await {
        tracing::warn!(dir = %h.dir.display(), "partition group shutdown: {e}");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // The state machine and the log store hold the log until openraft's tasks have ended.
    while Arc::strong_count(&h.log) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
