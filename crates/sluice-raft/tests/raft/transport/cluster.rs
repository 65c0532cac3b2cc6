//! An in-process cluster for the transport tests: each node is a real tonic server on its own
//! 127.0.0.1 port with its own [`PeerClients`], hosting one Raft per group over the in-memory
//! stores. Nodes talk only through gRPC over loopback.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use openraft::{BasicNode, Config, RaftMetrics};
use sluice_raft::transport::{self, PeerClients, RaftRegistry, TransportConfig};
use sluice_raft::typ::Raft;
use sluice_raft::{Command, PartitionConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::mem_store::{MemLog, MemSm};

/// How long any awaited condition may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(15);

/// How long replicas may take to agree on a leader before the test looks for one again.
const AGREE: Duration = Duration::from_secs(1);

/// The groups every node hosts.
pub const GROUPS: [u64; 2] = [1, 2];

/// Raft settings of the tests: 100 ms heartbeats, elections after 300–600 ms.
pub fn raft_config(tweak: impl FnOnce(&mut Config)) -> Arc<Config> {
    let mut config = Config {
        cluster_name: "transport-test".into(),
        heartbeat_interval: 100,
        election_timeout_min: 300,
        election_timeout_max: 600,
        enable_pre_vote: Some(true),
        install_snapshot_timeout: 1000,
        ..Default::default()
    };
    tweak(&mut config);
    Arc::new(config.validate().expect("valid raft config"))
}

/// One group's replica on one node.
pub struct Replica {
    pub raft: Raft<MemSm>,
    pub sm: MemSm,
    pub log: MemLog,
}

/// One in-process node: a peer server and a replica per group.
pub struct Node {
    pub id: u64,
    pub clients: PeerClients,
    pub registry: Arc<RaftRegistry<MemSm>>,
    pub replicas: BTreeMap<u64, Replica>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl Node {
    /// Kills the node: its Rafts stop (no more heartbeats from it) and its server closes.
    pub async fn stop(&mut self) {
        for (group, replica) in &self.replicas {
            self.registry.remove(*group);
            replica.raft.shutdown().await.expect("raft shutdown");
        }
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            match tokio::time::timeout(WAIT, server).await {
                Ok(result) => result.expect("server task").expect("server"),
                Err(_) => panic!("node {}: server did not stop within {WAIT:?}", self.id),
            }
        }
    }

    /// Stops this node's replica of `group` (the Raft shuts down, RPCs for it are answered
    /// `NotFound`) and returns its stores, which outlive it like files on disk.
    pub async fn stop_replica(&mut self, group: u64) -> (MemLog, MemSm) {
        self.registry.remove(group);
        let replica = self.replicas.remove(&group).expect("replica hosted");
        replica.raft.shutdown().await.expect("raft shutdown");
        (replica.log, replica.sm)
    }

    /// Starts a replica of `group` again over stores it left behind.
    pub async fn restart_replica(&mut self, group: u64, config: Arc<Config>, (log, sm): (MemLog, MemSm)) {
        let network = self.clients.network_factory(group);
        let raft = Raft::new(self.id, config, network, log.clone(), sm.clone()).await.expect("raft restarts");
        self.registry.insert(group, raft.clone());
        self.replicas.insert(group, Replica { raft, sm, log });
    }

    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }

    pub fn raft(&self, group: u64) -> &Raft<MemSm> {
        &self.replicas[&group].raft
    }
}

pub struct Cluster {
    pub nodes: BTreeMap<u64, Node>,
}

impl Cluster {
    /// Starts nodes 1..=3, each hosting every group of [`GROUPS`], and initializes the groups.
    pub async fn start(config: Arc<Config>) -> Cluster {
        let transport_config = TransportConfig::default();
        let mut listeners = BTreeMap::new();
        for id in 1..=3u64 {
            let incoming = transport::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
            let addr = incoming.local_addr().expect("local addr");
            listeners.insert(id, (incoming, addr));
        }
        let members: BTreeMap<u64, BasicNode> =
            listeners.iter().map(|(id, (_, addr))| (*id, BasicNode::new(addr.to_string()))).collect();

        let mut nodes = BTreeMap::new();
        for (id, (incoming, _)) in listeners {
            let clients = PeerClients::new(id, transport_config.clone());
            let registry = Arc::new(RaftRegistry::new(id));
            let mut replicas = BTreeMap::new();
            for group in GROUPS {
                let (log, sm) = (MemLog::default(), MemSm::default());
                let raft = Raft::new(id, Arc::clone(&config), clients.network_factory(group), log.clone(), sm.clone())
                    .await
                    .expect("raft starts");
                registry.insert(group, raft.clone());
                replicas.insert(group, Replica { raft, sm, log });
            }
            let (shutdown, stop) = oneshot::channel::<()>();
            let serve = transport::serve(incoming, Arc::clone(&registry), transport_config.clone(), async {
                let _ = stop.await;
            });
            let server = tokio::spawn(serve);
            let node = Node { id, clients, registry, replicas, shutdown: Some(shutdown), server: Some(server) };
            nodes.insert(id, node);
        }
        for group in GROUPS {
            nodes[&1].raft(group).initialize(members.clone()).await.expect("initialize");
        }
        Cluster { nodes }
    }

    pub fn running(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values().filter(|n| n.is_running())
    }

    /// The running nodes that host a replica of `group`.
    pub fn hosting(&self, group: u64) -> impl Iterator<Item = &Node> {
        self.running().filter(move |n| n.replicas.contains_key(&group))
    }

    /// Waits until every running replica of `group` agrees on one running leader that holds a
    /// lease, and returns it.
    pub async fn leader(&self, group: u64) -> u64 {
        let running: BTreeSet<u64> = self.hosting(group).map(|n| n.id).collect();
        for _attempt in 0..20 {
            let first = self.hosting(group).next().expect("a running replica");
            let metrics = wait_metrics(first.raft(group), "a running leader", |m| {
                m.current_leader.is_some_and(|l| running.contains(&l))
            })
            .await;
            let leader = metrics.current_leader.expect("checked");
            // Replicas learn of a new leader at its first heartbeat; give them a few.
            let mut agreed = true;
            for node in self.hosting(group) {
                let wait = node.raft(group).wait(Some(AGREE));
                agreed &= wait.metrics(|m| m.current_leader == Some(leader), "agree").await.is_ok();
            }
            if agreed {
                // A new leader refuses writes (ForwardToLeader, reason LeaseExpired) until a
                // quorum has acknowledged it.
                let raft = self.nodes[&leader].raft(group);
                raft.wait(Some(WAIT)).leader_with_quorum_acked(None, "leader lease").await.expect("lease");
                return leader;
            }
        }
        panic!("group {group}: the running nodes never agreed on a leader");
    }

    /// Writes `commands` through the group's leader, pipelined, and returns the last log index.
    pub async fn write(&self, group: u64, commands: Vec<Bytes>) -> u64 {
        let leader = self.leader(group).await;
        let raft = self.nodes[&leader].raft(group);
        let data = commands.iter().map(|c| Command::new(c));
        let mut results = raft.client_write_many(data).await.expect("raft running");
        let mut last = 0;
        while let Some(result) = results.try_next().await.expect("raft running") {
            last = result
                .unwrap_or_else(|e| panic!("group {group}: write through node {leader} failed: {e}"))
                .log_id
                .index;
        }
        last
    }

    /// Waits until every running replica of `group` applied `index`, then checks they hold the
    /// same commands; returns them.
    pub async fn replicated(&self, group: u64, index: u64) -> Vec<Bytes> {
        let mut seen: Option<Vec<Bytes>> = None;
        for node in self.hosting(group) {
            node.raft(group)
                .wait(Some(WAIT))
                .applied_index_at_least(Some(index), format!("node {} applies {index}", node.id))
                .await
                .unwrap_or_else(|e| panic!("group {group}: {e}"));
            let commands = node.replicas[&group].sm.commands();
            if let Some(first) = &seen {
                assert_eq!(&commands, first, "group {group}: node {} diverged", node.id);
            }
            seen = Some(commands);
        }
        seen.expect("a running replica")
    }

    /// Stops every running node.
    pub async fn stop(mut self) {
        for node in self.nodes.values_mut() {
            if node.is_running() {
                node.stop().await;
            }
        }
    }
}

/// Waits until `raft`'s metrics satisfy `condition`.
pub async fn wait_metrics(
    raft: &Raft<MemSm>,
    what: &str,
    condition: impl Fn(&RaftMetrics<PartitionConfig>) -> bool + Send,
) -> RaftMetrics<PartitionConfig> {
    raft.wait(Some(WAIT)).metrics(condition, what).await.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// `count` distinct commands of `size_bytes` each, tagged `tag`.
pub fn commands(tag: &str, count: usize, size_bytes: usize) -> Vec<Bytes> {
    (0..count)
        .map(|i| {
            let mut body = format!("{tag}-{i}-").into_bytes();
            body.resize(size_bytes.max(body.len()), b'.');
            Bytes::from(body)
        })
        .collect()
}
