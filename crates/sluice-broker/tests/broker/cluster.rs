//! An in-process cluster of brokers on loopback ports bound before the brokers start.

use std::future::Future;
use std::time::Duration;

use sluice_broker::{Broker, BrokerConfig, PeerConfig, ProposeError, RaftTimings};
use sluice_controller::{ControllerCommand, ControllerReply};
use sluice_proto::v1::sluice_client::SluiceClient;
use sluice_proto::{Error, error_of};
use sluice_raft::transport;
use tempfile::TempDir;
use tonic::transport::Channel;

/// The batch limit of test brokers: small, so that a test can exceed it cheaply.
pub const TEST_MAX_BATCH_BYTES: u32 = 256 * 1024;

/// The brokers, their configurations and their data.
pub struct Cluster {
    pub brokers: Vec<Broker>,
    configs: Vec<BrokerConfig>,
    /// Brokers stopped by [`Cluster::stop_broker`]: their position in `brokers`, and config.
    stopped: Vec<(usize, BrokerConfig)>,
    _data: TempDir,
    /// Held for the cluster's life: clusters of this test binary run one at a time. Three
    /// brokers already keep two cores busy; two clusters at once starve each other's elections
    /// and timers, and a test then measures the machine, not the brokers.
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Cluster {
    /// Starts `n` brokers with fast test timings.
    pub async fn start(n: u64) -> Cluster {
        Cluster::start_adjusted(n, |_| {}).await
    }

    /// Like [`Cluster::start`], with each broker's configuration changed by `adjust` first.
    pub async fn start_adjusted(n: u64, adjust: impl Fn(&mut BrokerConfig)) -> Cluster {
        let timings = RaftTimings {
            controller_heartbeat_ms: 50,
            controller_election_timeout_ms: [300, 600],
            partition_heartbeat_ms: 50,
            partition_election_timeout_ms: [300, 600],
            node_heartbeat_ms: 50,
            node_timeout_ms: 400,
            leader_rebalance_delay_ms: 1_000,
        };
        Cluster::start_configured(n, timings, adjust).await
    }

    /// Starts `n` brokers with Raft timings `timings`.
    pub async fn start_with(n: u64, timings: RaftTimings) -> Cluster {
        Cluster::start_configured(n, timings, |_| {}).await
    }

    /// Starts `n` brokers with Raft timings `timings`, each configuration changed by `adjust`.
    pub async fn start_configured(n: u64, timings: RaftTimings, adjust: impl Fn(&mut BrokerConfig)) -> Cluster {
        let serial = ONE_CLUSTER_AT_A_TIME.lock().await;
        let data = tempfile::tempdir().expect("temp dir");
        let listeners: Vec<_> =
            (0..n).map(|_| transport::bind("127.0.0.1:0".parse().unwrap()).expect("bind")).collect();
        let addrs: Vec<String> = listeners.iter().map(|l| l.local_addr().expect("local addr").to_string()).collect();
        let client_listeners: Vec<_> = (0..n)
            .map(|_| sluice_broker::client::bind("127.0.0.1:0".parse().unwrap()).expect("bind client listener"))
            .collect();
        let peers: Vec<PeerConfig> = (1..=n)
            .map(|id| PeerConfig {
                node_id: id,
                raft_addr: addrs[id as usize - 1].clone(),
                client_addr: client_listeners[id as usize - 1].local_addr().expect("local addr").to_string(),
            })
            .collect();
        let configs: Vec<BrokerConfig> = (1..=n)
            .map(|id| BrokerConfig {
                node_id: id,
                data_dir: data.path().join(format!("node{id}")),
                raft_listen: None,
                client_listen: None,
                // Every test broker serves metrics, on a free port (`Broker::metrics_addr`).
                metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
                peers: peers.clone(),
                peer_dial: Default::default(),
                raft: timings.clone(),
                broker_session_timeout_ms: 1_500,
                max_batch_bytes: TEST_MAX_BATCH_BYTES,
                retention_check_ms: 30_000,
                segment_roll_ms: 7 * 24 * 3_600_000,
                producer_id_expiration_ms: 7 * 24 * 3_600_000,
                max_producers_per_partition: 10_000,
                max_delay_ms: sluice_common::delay::DEFAULT_MAX_DELAY_MS,
                // The guard on, with a threshold any test machine's disk clears.
                disk_min_free_bytes: 64 << 20,
                disk_min_free_percent: 0,
                disk_check_interval_ms: 100,
                max_replicas: 0,
                shutdown_transfer_timeout_ms: 10_000,
                groups: Default::default(),
                transactions: Default::default(),
                worker_threads: 0,
            })
            .map(|mut config| {
                adjust(&mut config);
                config
            })
            .collect();
        let mut brokers = Vec::new();
        for ((config, incoming), client) in configs.iter().zip(listeners).zip(client_listeners) {
            brokers.push(Broker::start_on_listeners(config.clone(), incoming, client).await.expect("start broker"));
        }
        Cluster { brokers, configs, stopped: Vec::new(), _data: data, _serial: serial }
    }

    /// Waits until `done` holds, polling; panics with `what` after `limit`.
    pub async fn wait_for(&self, limit: Duration, what: &str, done: impl Fn(&Cluster) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        while !done(self) {
            assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A client API connection to `brokers[i]`, accepting responses as large as fetches may be.
    pub async fn client(&self, i: usize) -> SluiceClient<Channel> {
        connect(&self.brokers[i].client_addr().to_string()).await
    }

    /// Proposes through whichever broker leads the controller, retrying while leadership moves.
    pub async fn propose(&self, command: &ControllerCommand) -> ControllerReply {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            for b in &self.brokers {
                match b.controller().propose(command).await {
                    Ok(reply) => return reply,
                    Err(ProposeError::NotLeader { .. }) => {}
                    Err(e) => tracing::info!("proposal failed, retrying: {e}"),
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "no controller leader accepted {command:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Like [`Cluster::propose`], through `brokers[i]` for each `i` of `among` only, each attempt
    /// bounded by `attempt`: a leader cut off from its quorum never answers.
    pub async fn propose_among(
        &self,
        among: &[usize],
        command: &ControllerCommand,
        attempt: Duration,
    ) -> ControllerReply {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            for b in among.iter().map(|i| &self.brokers[*i]) {
                match tokio::time::timeout(attempt, b.controller().propose(command)).await {
                    Ok(Ok(reply)) => return reply,
                    Ok(Err(ProposeError::NotLeader { .. })) => {}
                    Ok(Err(e)) => tracing::info!("proposal failed, retrying: {e}"),
                    Err(_elapsed) => tracing::info!("no answer to the proposal within {attempt:?}, retrying"),
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no controller leader among {among:?} accepted {command:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Cuts every link between the brokers at positions `side` and the others, both ways.
    pub fn partition(&self, side: &[usize]) {
        for (i, a) in self.brokers.iter().enumerate() {
            for (j, b) in self.brokers.iter().enumerate() {
                if side.contains(&i) != side.contains(&j) {
                    a.faults().isolate(b.config().node_id);
                }
            }
        }
    }

    /// Restores every link [`Cluster::partition`] cut.
    pub fn heal(&self) {
        self.brokers.iter().for_each(|b| b.faults().heal_all());
    }

    /// Changes the configuration every broker restarts with from now on.
    pub fn reconfigure(&mut self, adjust: fn(&mut BrokerConfig)) {
        self.configs.iter_mut().for_each(adjust);
    }

    /// Stops every broker, then starts each again on its old address and data.
    pub async fn restart_all(&mut self) {
        for b in self.brokers.drain(..) {
            b.shutdown().await;
        }
        self.stopped.clear();
        for config in &self.configs {
            self.brokers.push(relaunch(config).await);
        }
    }

    /// Stops `brokers[i]`, keeping its configuration and data for [`Cluster::start_broker`];
    /// until then the brokers after it move up one place.
    pub async fn stop_broker(&mut self, i: usize) {
        let b = self.brokers.remove(i);
        self.stopped.push((i, b.config().clone()));
        b.shutdown().await;
    }

    /// Starts the broker [`Cluster::stop_broker`] stopped at position `i` again, on its old
    /// address and data, and puts it back at `brokers[i]`.
    pub async fn start_broker(&mut self, i: usize) {
        let at = self.stopped.iter().position(|(pos, _)| *pos == i).expect("no broker stopped at that position");
        let (_, config) = self.stopped.remove(at);
        let broker = relaunch(&config).await;
        self.brokers.insert(i, broker);
    }

    /// Stops every broker.
    pub async fn shutdown(self) {
        for b in self.brokers {
            b.shutdown().await;
        }
    }
}

/// Calls `attempt` every 50 ms until it returns `Ok`, and returns what it held; panics with
/// `what` and the last `Err` (the state waited on) if `limit` passes first. For requests whose
/// answer may be retriable right after an election, a topic creation or a restart: their
/// attempts return `Err` for those answers ([`unless_retriable`]) and `Ok` for the rest.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let last = match attempt().await {
            Ok(value) => return value,
            Err(state) => state,
        };
        assert!(tokio::time::Instant::now() < deadline, "{what} did not happen within {limit:?}; last: {last}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `Err` describing the answer when `error` carries a code the protocol calls retriable (a
/// leader, controller or coordinator just elected, moving or loading), so that [`eventually`]
/// asks again; `Ok` for every other answer, success or refusal, which the test then judges.
pub fn unless_retriable(error: Option<&Error>) -> Result<(), String> {
    let error = error_of(error);
    if error.error_code().is_retriable() { Err(format!("retriable answer {error:?}")) } else { Ok(()) }
}

/// A client API connection to `addr` (`host:port`).
pub async fn connect(addr: &str) -> SluiceClient<Channel> {
    let client = SluiceClient::connect(format!("http://{addr}")).await.expect("connect to the client API");
    client.max_decoding_message_size(64 * 1024 * 1024)
}

/// Starts a broker again on the address and data of `config`.
async fn relaunch(config: &BrokerConfig) -> Broker {
    let addr = config.raft_listen().expect("raft address");
    let incoming = transport::bind(addr).expect("rebind the old address");
    Broker::start_on(config.clone(), incoming).await.expect("restart broker")
}
