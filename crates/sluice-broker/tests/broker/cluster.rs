//! An in-process cluster of brokers on loopback ports bound before the brokers start.

use std::time::Duration;

use sluice_broker::{Broker, BrokerConfig, PeerConfig, ProposeError, RaftTimings};
use sluice_controller::{ControllerCommand, ControllerReply};
use sluice_raft::transport;
use tempfile::TempDir;

/// The brokers, their configurations and their data.
pub struct Cluster {
    pub brokers: Vec<Broker>,
    configs: Vec<BrokerConfig>,
    /// Brokers stopped by [`Cluster::stop_broker`]: their position in `brokers`, and config.
    stopped: Vec<(usize, BrokerConfig)>,
    _data: TempDir,
}

impl Cluster {
    /// Starts `n` brokers with fast test timings.
    pub async fn start(n: u64) -> Cluster {
        let data = tempfile::tempdir().expect("temp dir");
        let listeners: Vec<_> =
            (0..n).map(|_| transport::bind("127.0.0.1:0".parse().unwrap()).expect("bind")).collect();
        let addrs: Vec<String> = listeners.iter().map(|l| l.local_addr().expect("local addr").to_string()).collect();
        let peers: Vec<PeerConfig> = (1..=n)
            .map(|id| PeerConfig {
                node_id: id,
                raft_addr: addrs[id as usize - 1].clone(),
                client_addr: format!("127.0.0.1:{}", 19_000 + id),
            })
            .collect();
        let timings = RaftTimings {
            controller_heartbeat_ms: 50,
            controller_election_timeout_ms: [300, 600],
            partition_heartbeat_ms: 50,
            partition_election_timeout_ms: [300, 600],
        };
        let configs: Vec<BrokerConfig> = (1..=n)
            .map(|id| BrokerConfig {
                node_id: id,
                data_dir: data.path().join(format!("node{id}")),
                raft_listen: None,
                peers: peers.clone(),
                raft: timings.clone(),
                broker_session_timeout_ms: 1_500,
            })
            .collect();
        let mut brokers = Vec::new();
        for (config, incoming) in configs.iter().zip(listeners) {
            brokers.push(Broker::start_on(config.clone(), incoming).await.expect("start broker"));
        }
        Cluster { brokers, configs, stopped: Vec::new(), _data: data }
    }

    /// Waits until `done` holds, polling; panics with `what` after `limit`.
    pub async fn wait_for(&self, limit: Duration, what: &str, done: impl Fn(&Cluster) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        while !done(self) {
            assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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

/// Starts a broker again on the address and data of `config`.
async fn relaunch(config: &BrokerConfig) -> Broker {
    let addr = config.raft_listen().expect("raft address");
    let incoming = transport::bind(addr).expect("rebind the old address");
    Broker::start_on(config.clone(), incoming).await.expect("restart broker")
}
