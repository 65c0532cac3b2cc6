//! The controller group on this broker: every broker of the cluster is a voter of the metadata
//! Raft group (group id 0), which replaces RocketMQ's NameServer
//! (docs/ARCHITECTURE.md §Controller).
//!
//! Forming needs no manual step: every broker initializes the group with the same voters (the
//! `peers` of its configuration) if it has no Raft state yet; identical initial memberships are
//! harmless, and a restarted broker finds its state on disk. Whichever broker leads registers
//! the configured brokers whose registration is missing or out of date.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use sluice_controller::{CONTROLLER_GROUP_ID, ControllerCommand, ControllerReply, Metadata};
use sluice_raft::typ::{Node, Raft, ack_ages};
use sluice_raft::{
    Command, FsmHandle, FsmStateMachine, GroupNetworkFactory, NodeStateMachine, PeerClients, RaftRegistry,
    ReleaseToken, Reply, RocksLogStore,
};
use tokio::sync::watch;

use crate::config::{BrokerConfig, PeerConfig};

/// The state machine type of every group a broker hosts.
pub type BrokerStateMachine = NodeStateMachine<Metadata>;

/// How often the controller leader checks whether brokers need registering.
const DUTY_INTERVAL: Duration = Duration::from_millis(200);

/// Why a proposal to the controller did not produce a reply.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// This broker is not the controller leader; `leader` is the one it knows of, if any.
    #[error("not the controller leader (leader: {leader:?}); send the request to the leader")]
    NotLeader {
        /// The current leader's node id, if known.
        leader: Option<u64>,
    },
    /// Raft failed to commit the command (the message says why).
    #[error("controller write failed: {0}")]
    Raft(String),
    /// The reply could not be decoded: a bug or a version mismatch between brokers.
    #[error("undecodable controller reply: {0}")]
    Reply(String),
}

/// This broker's member of the controller group.
pub struct ControllerGroup {
    node_id: u64,
    raft: Raft<BrokerStateMachine>,
    metadata: FsmHandle<Metadata>,
    release: ReleaseToken,
    /// Set once [`ControllerGroup::caught_up`] first held; it stays set.
    caught_up: std::sync::atomic::AtomicBool,
}

impl ControllerGroup {
    /// Opens the controller's state under `data_dir/controller`, starts its Raft member and
    /// registers it with the transport.
    pub async fn start(
        config: &BrokerConfig,
        clients: PeerClients,
        registry: &RaftRegistry<BrokerStateMachine>,
    ) -> io::Result<ControllerGroup> {
        let dir = config.data_dir.join("controller");
        std::fs::create_dir_all(&dir)?;
        let store = RocksLogStore::open(&dir.join("raft"))?;
        let release = store.release_token();
        let sm = FsmStateMachine::open(&dir, Metadata::new())?;
        let metadata = sm.handle();
        let raft_config = Arc::new(config.raft.controller().map_err(io::Error::other)?);
        let network = GroupNetworkFactory::new(CONTROLLER_GROUP_ID, clients);
        let raft = Raft::new(config.node_id, raft_config, network, store, NodeStateMachine::Fsm(sm))
            .await
            .map_err(io::Error::other)?;
        registry.insert(CONTROLLER_GROUP_ID, raft.clone());
        if !raft.is_initialized().await.map_err(io::Error::other)? {
            let voters: BTreeMap<u64, Node> =
                config.peers.iter().map(|p| (p.node_id, Node { addr: p.raft_addr.clone() })).collect();
            // Another broker may have initialized the group and replicated to us first; that
            // is the same cluster forming, not an error.
            if let Err(e) = raft.initialize(voters).await {
                tracing::info!("controller group already initialized elsewhere: {e}");
            }
        }
        let caught_up = std::sync::atomic::AtomicBool::new(false);
        Ok(ControllerGroup { node_id: config.node_id, raft, metadata, release, caught_up })
    }

    /// The metadata as this broker has applied it.
    pub fn metadata(&self) -> &FsmHandle<Metadata> {
        &self.metadata
    }

    /// Whether this broker's metadata has, since it started, caught up with what the controller
    /// group had committed: a leader is known and everything the cluster committed is applied
    /// here. Until then the metadata may be arbitrarily old (a restarted member applies its log
    /// only once a leader commits it again), so "no such topic" is not a fact yet (jepsen
    /// finding F1). Once true it stays true: later lag is the usual replication delay.
    pub fn caught_up(&self) -> bool {
        use std::sync::atomic::Ordering;

        use sluice_raft::typ::WatchReceiver as _;
        if self.caught_up.load(Ordering::Relaxed) {
            return true;
        }
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        let applied = m.last_applied.map(|l| l.index);
        let committed = m.cluster_committed.map(|l| l.index);
        let done = m.current_leader.is_some() && committed.is_some() && applied >= committed;
        if done {
            self.caught_up.store(true, Ordering::Relaxed);
        }
        done
    }

    /// This broker's Raft member of the controller group.
    pub(crate) fn raft(&self) -> &Raft<BrokerStateMachine> {
        &self.raft
    }

    /// Whether this broker leads the controller group.
    pub fn is_leader(&self) -> bool {
        self.raft.is_leader()
    }

    /// The controller leader this broker knows of.
    pub async fn leader(&self) -> Option<u64> {
        self.raft.current_leader().await
    }

    /// Commits `command` through the controller group (this broker must lead it) and returns
    /// the state machine's reply.
    pub async fn propose(&self, command: &ControllerCommand) -> Result<ControllerReply, ProposeError> {
        match self.raft.client_write(Command::new(&command.encode())).await {
            Ok(response) => match response.data {
                Reply::Fsm(bytes) => ControllerReply::decode(&bytes).map_err(|e| ProposeError::Reply(e.to_string())),
                other => Err(ProposeError::Reply(format!("expected a controller reply, got {other:?}"))),
            },
            Err(e) => match e.forward_to_leader() {
                Some(f) => Err(ProposeError::NotLeader { leader: f.leader_id }),
                None => Err(ProposeError::Raft(e.to_string())),
            },
        }
    }

    /// Runs the leader's duties until `stop` turns true: registering configured brokers, and
    /// recording brokers' liveness from how recently they acknowledged this leader.
    pub async fn run_duties(
        self: Arc<Self>,
        peers: Vec<PeerConfig>,
        capacity: impl Fn(u64) -> u32 + Send + 'static,
        session_timeout: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(DUTY_INTERVAL);
        let mut leading_since: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            if !self.is_leader() {
                leading_since = None;
                continue;
            }
            let since = *leading_since.get_or_insert_with(tokio::time::Instant::now);
            self.register_missing(&peers, &capacity).await;
            // A new leader has heard from no one yet: judge only after a full session.
            if since.elapsed() >= session_timeout {
                self.update_liveness(session_timeout).await;
            }
        }
    }

    /// Proposes `SetBrokerLive` for each registered broker whose liveness changed.
    async fn update_liveness(&self, session_timeout: Duration) {
        let ages = ack_ages(&self.raft);
        let me = self.node_id;
        let changes: Vec<(sluice_common::NodeId, bool)> = self.metadata.read(|m| {
            m.brokers()
                .filter_map(|b| {
                    // The leader is live; its record may say otherwise when it was marked dead
                    // by a leader before it and restarted to lead the group itself.
                    let live = b.node_id.0 == me
                        || ages.get(&b.node_id.0).copied().flatten().is_some_and(|age| age < session_timeout);
                    (live != b.live).then_some((b.node_id, live))
                })
                .collect()
        });
        for (node_id, live) in changes {
            match self.propose(&ControllerCommand::SetBrokerLive { node_id, live }).await {
                Ok(_) => tracing::info!(node_id = node_id.0, live, "broker liveness changed"),
                Err(e) => tracing::debug!(node_id = node_id.0, "recording liveness: {e}"),
            }
        }
    }

    async fn register_missing(&self, peers: &[PeerConfig], capacity: &impl Fn(u64) -> u32) {
        let stale: Vec<(&PeerConfig, u32)> = self.metadata.read(|m| {
            peers
                .iter()
                .map(|p| (p, capacity(p.node_id)))
                .filter(|(p, max)| {
                    m.broker(sluice_common::NodeId(p.node_id)).is_none_or(|b| {
                        let moved = b.raft_addr != p.raft_addr || b.client_addr != p.client_addr;
                        // A broker's capacity is known once it has said it (it restarted with
                        // another open-file limit, say); until then it stays as registered.
                        moved || (*max != 0 && b.max_replicas != *max)
                    })
                })
                .collect()
        });
        for (p, max_replicas) in stale {
            let command = ControllerCommand::RegisterBroker {
                node_id: sluice_common::NodeId(p.node_id),
                raft_addr: p.raft_addr.clone(),
                client_addr: p.client_addr.clone(),
                max_replicas,
            };
            match self.propose(&command).await {
                Ok(reply) => tracing::info!(node_id = p.node_id, ?reply, "registered broker"),
                Err(e) => tracing::debug!(node_id = p.node_id, "registering broker: {e}"),
            }
        }
    }

    /// Stops the Raft member and waits (bounded) until its store is closed, so the same data
    /// directory can be opened again in this process.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("controller group shutdown: {e}");
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.release.is_released() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
