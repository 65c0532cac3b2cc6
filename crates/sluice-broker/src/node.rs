//! [`Broker`]: one running broker — its peer (Raft) service and the groups it hosts, its client
//! API (with the consumer groups service) and its metrics endpoint.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use sluice_controller::CONTROLLER_GROUP_ID;
use sluice_raft::liveness::{HandOver, hand_over};
use sluice_raft::transport::{self, Faults, TcpIncoming};
use sluice_raft::{Liveness, LivenessConfig, LivenessDriver, PeerClients, RaftRegistry, TransportConfig};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use sluice_storage::{DirLock, Flusher, StorageError};

use crate::client::{self, ClientService};
use crate::config::{BrokerConfig, ConfigError};
use crate::controller::{BrokerStateMachine, ControllerGroup};
use crate::delays::{self, Delays};
use crate::disk::{self, DiskState};
use crate::fail_stop::{FailStop, GroupFailure};
use crate::groups::GroupsService;
use crate::metrics::{self, BrokerCollector, Exporter, RequestMetrics};
use crate::partitions::Partitions;
use crate::retention;
use crate::txn::TxnService;

/// How often the broker checks whether the metadata changed what it should host.
const RECONCILE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// At most this many logs are fsynced at once, by a group commit that has become slow (see `Flusher`).
const PARALLEL_SYNCS: usize = 4;

/// Why a broker could not start, or stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Binding the peer, client or metrics listener, or opening stored state, failed.
    #[error("starting broker: {0}")]
    Io(#[from] io::Error),
    /// Another broker process holds the data directory.
    #[error(
        "data directory {} is in use by another broker process (its LOCK is held); stop that broker or use another data_dir",
        .0.display()
    )]
    DataDirInUse(std::path::PathBuf),
    /// A Raft group of the broker stopped on a fatal error (its storage failed), so the broker
    /// stopped: restart it, and it recovers from what its disk holds.
    #[error("{0}; the broker stopped: restart it to recover from disk")]
    GroupFailed(GroupFailure),
}

/// A running broker.
pub struct Broker {
    config: BrokerConfig,
    raft_addr: SocketAddr,
    client_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    controller: Arc<ControllerGroup>,
    partitions: Arc<Partitions>,
    faults: Faults,
    /// Where its groups report a fatal stop (`fail_stop`).
    pub(crate) fail_stop: FailStop,
    stop: watch::Sender<bool>,
    /// What a controlled shutdown hands leadership over through.
    liveness: Arc<Liveness>,
    registry: Arc<RaftRegistry<BrokerStateMachine>>,
    tasks: Vec<JoinHandle<()>>,
    /// Keeps other broker processes out of `data_dir` for as long as this one runs. The one lock
    /// covers every partition log under it, which take none of their own (`LockMode::Held`):
    /// a descriptor per replica would bound how many replicas a broker holds.
    _data_lock: DirLock,
}

impl Broker {
    /// Starts a broker: binds its peer listener and joins (or forms) the controller group.
    pub async fn start(config: BrokerConfig) -> Result<Broker, StartError> {
        config.validate()?;
        let addr = config.raft_listen().expect("validated");
        let incoming = transport::bind(addr)?;
        Broker::start_on(config, incoming).await
    }

    /// Like [`Broker::start`], on a peer listener the caller bound (tests bind port 0 first);
    /// the client listener is bound on the configured address.
    pub async fn start_on(config: BrokerConfig, incoming: TcpIncoming) -> Result<Broker, StartError> {
        config.validate()?;
        let client_incoming = client::bind(config.client_listen().expect("validated"))?;
        Broker::start_on_listeners(config, incoming, client_incoming).await
    }

    /// Like [`Broker::start`], on a peer and a client listener the caller bound. The metrics
    /// endpoint, if configured, is bound here on `metrics_listen` (tests give port 0).
    pub async fn start_on_listeners(
        config: BrokerConfig,
        incoming: TcpIncoming,
        client_incoming: TcpIncoming,
    ) -> Result<Broker, StartError> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir)?;
        // First, before the controller's store or any partition log is opened.
        let data_lock = lock_data_dir(&config.data_dir)?;
        let raft_addr = incoming.local_addr()?;
        let client_addr = client_incoming.local_addr()?;
        // Bound before anything starts, so that an address in use fails the start cleanly.
        let metrics_listener = config.metrics_listen.map(metrics::bind).transpose()?;
        let metrics_addr = metrics_listener.as_ref().map(|l| l.local_addr()).transpose()?;
        let transport_config = TransportConfig::default();
        let registry = Arc::new(RaftRegistry::<BrokerStateMachine>::new(config.node_id));
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        let shutdown = wait_until_true(stopped.clone());
        let serve = transport::serve(incoming, Arc::clone(&registry), transport_config.clone(), shutdown);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!("peer service stopped: {e}");
            }
        }));
        let dial = config.peer_dial.clone().into_iter().collect();
        let clients = PeerClients::with_dial_overrides(config.node_id, transport_config, dial);
        let faults = clients.faults().clone();
        let controller = Arc::new(ControllerGroup::start(&config, clients.clone(), &registry).await?);
        let fail_stop = FailStop::new();
        fail_stop.watch("the controller group".into(), controller.raft(), None);
        let (liveness, driver) = liveness(&config, &registry, &clients);
        let (max_replicas, bounds) = config.max_replicas_or_budget();
        match bounds {
            None => tracing::info!("this broker can host {max_replicas} partition replicas (max_replicas)"),
            Some(b) => tracing::info!(
                by_open_files = ?b.files,
                by_memory_maps = ?b.maps,
                by_memory = ?b.memory,
                "this broker can host {max_replicas} partition replicas (the least of its bounds; 0: no limit)"
            ),
        }
        liveness.update_own_resources(|r| r.max_replicas = max_replicas);
        let session = std::time::Duration::from_millis(config.broker_session_timeout_ms);
        let heard = Arc::clone(&liveness);
        let capacity = move |node| heard.resources(node).max_replicas;
        let duties = Arc::clone(&controller).run_duties(config.peers.clone(), capacity, session, stopped.clone());
        tasks.push(tokio::spawn(duties));
        tasks.push(tokio::spawn(driver.run(wait_until_true(stopped.clone()))));
        let requests = Arc::new(RequestMetrics::new());
        let flusher_name = format!("node{}", config.node_id);
        let flusher = Arc::new(Flusher::start_observed(&flusher_name, PARALLEL_SYNCS, requests.log_sync_observer()));
        let (disk_tx, disk) = watch::channel(DiskState::default());
        let guard = config.disk_guard();
        let watch_disk =
            disk::watch_space(config.data_dir.clone(), guard, Arc::clone(&liveness), disk_tx, stopped.clone());
        tasks.push(tokio::spawn(watch_disk));
        let (partitions, parked) = Partitions::new(
            config.node_id,
            config.data_dir.join("partitions"),
            Arc::clone(&registry),
            clients,
            flusher,
            config.raft.partition()?,
            Arc::clone(&liveness),
        );
        // A release is one entry: within a batch the broker accepts, with room for its list.
        let release_bytes = (config.max_batch_bytes as usize / 2).min(1 << 20);
        let delays = Delays::open(&config.data_dir.join("delays"), release_bytes)?;
        let partitions = Arc::new(
            partitions
                .with_segment_roll(std::time::Duration::from_millis(config.segment_roll_ms))
                .with_fail_stop(fail_stop.clone())
                .with_disk(disk.clone())
                .with_delays(Arc::clone(&delays)),
        );
        tasks.push(tokio::spawn(delays::run(Arc::clone(&partitions), delays, stopped.clone())));
        let service = ClientService::new(&config, Arc::clone(&controller), Arc::clone(&partitions), stopped.clone())
            .with_metrics(Arc::clone(&requests));
        let (groups, coordinators) =
            GroupsService::start(&config, Arc::clone(&controller), Arc::clone(&partitions), stopped.clone());
        tasks.push(coordinators);
        let (txns, txn_coordinators) = TxnService::start(
            &config,
            Arc::clone(&controller),
            Arc::clone(&partitions),
            service.clone(),
            stopped.clone(),
        );
        tasks.push(txn_coordinators);
        let serve_clients =
            client::serve(client_incoming, service, groups.clone(), txns, wait_until_true(stopped.clone()));
        tasks.push(tokio::spawn(async move {
            if let Err(e) = serve_clients.await {
                tracing::error!("client service stopped: {e}");
            }
        }));
        if let Some(listener) = metrics_listener {
            let collector = BrokerCollector::new(
                config.node_id,
                Arc::clone(&controller),
                Arc::clone(&partitions),
                Arc::clone(&liveness),
                Arc::clone(&requests),
            );
            let exporter = Exporter::new(&requests, collector.with_disk(disk.clone()))
                .with_delays(partitions.delays().map(|d| d.metrics()))
                .with_groups(groups);
            tasks.push(tokio::spawn(metrics::serve(listener, exporter, wait_until_true(stopped.clone()))));
        }
        let retention_check = std::time::Duration::from_millis(config.retention_check_ms);
        tasks.push(tokio::spawn(retention::run(Arc::clone(&partitions), retention_check, stopped.clone())));
        let reconcile = reconcile_loop(Arc::clone(&controller), Arc::clone(&partitions), parked, disk.clone(), stopped);
        tasks.push(tokio::spawn(reconcile));
        tracing::info!(node_id = config.node_id, %raft_addr, %client_addr, ?metrics_addr, "broker started");
        Ok(Broker {
            config,
            raft_addr,
            client_addr,
            metrics_addr,
            controller,
            partitions,
            faults,
            fail_stop,
            stop,
            liveness,
            registry,
            tasks,
            _data_lock: data_lock,
        })
    }

    /// This broker's configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// Where the peer service listens.
    pub fn raft_addr(&self) -> SocketAddr {
        self.raft_addr
    }

    /// Where the client API listens.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// Where the metrics endpoint (`GET /metrics`) listens; `None` unless `metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// This broker's member of the controller group.
    pub fn controller(&self) -> &ControllerGroup {
        &self.controller
    }

    /// The partition groups this broker hosts.
    pub fn partitions(&self) -> &Partitions {
        &self.partitions
    }

    /// The fault plan of this broker's outgoing peer traffic, for failure testing: empty, and
    /// free, unless a test cuts links or loses messages through it.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Resolves when a Raft group of this broker has stopped on a fatal error (at once if one
    /// already has): its storage failed, and the broker must be shut down and restarted to
    /// recover from disk (`fail_stop`). Never resolves otherwise.
    pub async fn failed(&self) -> GroupFailure {
        self.fail_stop.failed().await
    }

    /// Hands every group this broker leads — partitions, coordinators, the controller — to a
    /// caught-up replica, waiting at most `bound` (`shutdown_transfer_timeout_ms`), and says
    /// what it could not hand over. From now on this broker campaigns for nothing and peers
    /// hand it nothing back; it goes on serving, answering NOT_LEADER with the new leaders.
    pub async fn hand_over(&self, bound: std::time::Duration) -> HandOver {
        let started = std::time::Instant::now();
        let outcome = hand_over(&self.liveness, &self.registry, bound).await;
        let ms = started.elapsed().as_millis();
        let handed = outcome.led - outcome.kept.len() - outcome.alone.len();
        tracing::info!("stopping: handed over {handed} of {} leaderships in {ms} ms", outcome.led);
        if !outcome.alone.is_empty() {
            tracing::info!(
                groups = ?outcome.alone,
                "stopping: this broker is the last live replica of {} groups; they are unavailable until it is back",
                outcome.alone.len()
            );
        }
        if !outcome.kept.is_empty() {
            tracing::warn!(
                groups = ?outcome.kept,
                "stopping: no replica of {} groups caught up within shutdown_transfer_timeout_ms; they elect a \
                 leader once their other replicas miss this broker",
                outcome.kept.len()
            );
        }
        outcome
    }

    /// A controlled shutdown: hands leadership over ([`Broker::hand_over`], bounded by
    /// `shutdown_transfer_timeout_ms`), then [`Broker::shutdown`].
    pub async fn stop_gracefully(self) {
        let bound = std::time::Duration::from_millis(self.config.shutdown_transfer_timeout_ms);
        self.hand_over(bound).await;
        self.shutdown().await;
    }

    /// Stops serving, stops the groups, and waits until their stored state is closed.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.partitions.shutdown().await;
        self.controller.shutdown().await;
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::warn!("broker task ended badly: {e}");
            }
        }
        let delays = self.partitions.delays().map(|d| Arc::downgrade(d.store()));
        drop(self.partitions);
        if let Some(store) = delays {
            wait_closed(store).await;
        }
        tracing::info!(node_id = self.config.node_id, "broker stopped");
    }
}

/// Waits, for at most [`CLOSE_WAIT`], until the last holder of the delay store has let it go.
/// Coordinators' timers and loads run on tasks of their own that end soon after the stop
/// signal, not before [`Broker::shutdown`]'s joins: a broker started again in the same process
/// (tests, an embedding application) would otherwise find the store's RocksDB lock still held.
async fn wait_closed(store: std::sync::Weak<sluice_raft::partition::delay::DelayStore>) {
    let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
    while store.strong_count() > 0 {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                "the delay store is still held {CLOSE_WAIT:?} after the stop; a restart here may find it locked"
            );
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// How long [`Broker::shutdown`] waits for late holders of stored state to let it go.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Takes `data_dir/LOCK`, refusing to start when another broker process holds it.
fn lock_data_dir(data_dir: &std::path::Path) -> Result<DirLock, StartError> {
    match DirLock::acquire(data_dir) {
        Ok(lock) => Ok(lock),
        Err(StorageError::Locked { path }) => Err(StartError::DataDirInUse(path)),
        Err(e) => Err(StartError::Io(e.into())),
    }
}

/// This broker's liveness view, fed by its peer service, and the driver that heartbeats its
/// peers and wakes partition groups for elections (docs/adr/0004). Followers of a leaderless
/// group campaign one partition election timeout (plus a heartbeat, for the news to spread)
/// apart.
fn liveness(
    config: &BrokerConfig,
    registry: &Arc<RaftRegistry<BrokerStateMachine>>,
    clients: &PeerClients,
) -> (Arc<Liveness>, LivenessDriver<BrokerStateMachine>) {
    let (interval, timeout) = config.raft.node_liveness().expect("validated");
    let liveness = Arc::new(Liveness::new(config.node_id, timeout));
    registry.set_liveness(Arc::clone(&liveness));
    let peers = config.peers.iter().map(|p| (p.node_id, p.raft_addr.clone())).collect();
    let stagger = std::time::Duration::from_millis(config.raft.partition_election_timeout_ms[1]) + interval;
    let rebalance = config.raft.leader_rebalance_delay_ms;
    let rebalance_after = (rebalance > 0).then(|| std::time::Duration::from_millis(rebalance));
    let driver_config = LivenessConfig { interval, campaign_stagger: stagger, rebalance_after };
    let driver = LivenessDriver::new(
        Arc::clone(&liveness),
        Arc::clone(registry),
        clients.clone(),
        peers,
        vec![CONTROLLER_GROUP_ID],
        driver_config,
    );
    (liveness, driver)
}

/// Starts and stops partition groups as the metadata changes, until `stop` turns true. A group
/// that failed to start (its directory still locked by a closing predecessor, a full disk) is
/// tried again after a backoff, not only at the next metadata change. A group that ran out of
/// a resource (its id arrives on `parked`) is stopped here and started again once it is back:
/// disk space as soon as `disk` says there is room, files and memory after a back-off.
async fn reconcile_loop(
    controller: Arc<ControllerGroup>,
    partitions: Arc<Partitions>,
    mut parked: mpsc::UnboundedReceiver<(u64, sluice_raft::Exhausted)>,
    mut disk: watch::Receiver<DiskState>,
    mut stop: watch::Receiver<bool>,
) {
    let mut seen = None;
    let mut retry = StartRetry::default();
    let mut tick = tokio::time::interval(RECONCILE_INTERVAL);
    loop {
        let mut room_again = false;
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {}
            Some((group, reason)) = parked.recv() => partitions.park(group, reason).await,
            Ok(()) = disk.changed() => {
                room_again = partitions.any_parked_for_disk() && disk.borrow_and_update().has_room_to_restart();
            }
        }
        if *stop.borrow() {
            return;
        }
        let version = controller.metadata().read(|m| m.version());
        if seen != Some(version) || room_again || retry.due(std::time::Instant::now()) {
            let all_started = partitions.reconcile(controller.metadata()).await;
            seen = Some(version);
            retry.after(all_started, std::time::Instant::now());
        }
    }
}

/// When to try again to start the partition groups that failed to: after [`START_RETRY_MIN`],
/// doubling with each failure up to [`START_RETRY_MAX`], so a lasting failure is logged a few
/// times a minute rather than ten times a second.
#[derive(Debug, Default)]
struct StartRetry {
    at: Option<std::time::Instant>,
    wait: std::time::Duration,
}

/// The first wait before trying again to start a partition group.
const START_RETRY_MIN: std::time::Duration = std::time::Duration::from_millis(500);
/// The longest wait between tries.
const START_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

impl StartRetry {
    /// Whether a try is due at `now`.
    fn due(&self, now: std::time::Instant) -> bool {
        self.at.is_some_and(|at| now >= at)
    }

    /// Records a reconcile at `now` that started every group it should (`all_started`) or not.
    fn after(&mut self, all_started: bool, now: std::time::Instant) {
        if all_started {
            *self = StartRetry::default();
            return;
        }
        self.wait = if self.wait.is_zero() { START_RETRY_MIN } else { (self.wait * 2).min(START_RETRY_MAX) };
        self.at = Some(now + self.wait);
    }
}

async fn wait_until_true(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn failed_starts_are_retried_with_a_doubling_wait_and_success_resets_it() {
        let mut retry = StartRetry::default();
        let t0 = Instant::now();
        assert!(!retry.due(t0), "nothing failed yet");
        retry.after(false, t0);
        assert!(!retry.due(t0 + Duration::from_millis(499)) && retry.due(t0 + START_RETRY_MIN));
        let mut now = t0;
        let waits: Vec<Duration> = (0..9)
            .map(|_| {
                retry.after(false, now);
                let wait = retry.wait;
                now += wait;
                wait
            })
            .collect();
        assert_eq!(waits[0], Duration::from_secs(1));
        assert_eq!(waits[4], Duration::from_secs(16));
        assert_eq!(waits[5..], [START_RETRY_MAX; 4]);
        retry.after(true, now);
        assert!(!retry.due(now + START_RETRY_MAX), "every group started: no retry pending");
        retry.after(false, now);
        assert_eq!(retry.wait, START_RETRY_MIN, "a new failure starts from the shortest wait");
    }

    /// A second broker on a data directory is refused, naming it, until the first lets go; the
    /// partition logs under it take no lock of their own.
    #[test]
    fn a_data_directory_is_locked_once_and_the_second_is_told_why() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = lock_data_dir(dir.path()).expect("first lock");
        let second = lock_data_dir(dir.path()).expect_err("a second broker on the same data_dir");
        assert!(matches!(&second, StartError::DataDirInUse(p) if p == dir.path()), "{second:?}");
        let message = second.to_string();
        assert!(message.contains("in use by another broker process"), "{message}");
        assert!(message.contains(&dir.path().display().to_string()), "{message}");
        drop(first);
        drop(lock_data_dir(dir.path()).expect("free again once the first is dropped"));
    }
}
