//! [`PeerClients`]: this node's one connection per peer node, shared by all its Raft groups.
//!
//! A channel is created on first use for a peer and connects lazily: creating it never blocks
//! or fails on the network, and a broken connection is re-established by the next RPC. It is
//! not a connection pool (HTTP/2 multiplexes every group's RPCs over the one connection) and it
//! does not retry: openraft decides when to send again.
//!
//! A peer is dialed at the address it advertises (its `raft_addr` in the cluster metadata)
//! unless a dial override names another address for it ([`PeerClients::with_dial_overrides`]):
//! behind NAT, through a sidecar proxy, or through a failure-injection proxy per link.
//!
//! It also holds the node's fault plan ([`Faults`], for failure testing): group RPCs consult it
//! per message in `PeerNetwork`, and every other RPC when it takes its channel here, per call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tonic::transport::{Channel, Endpoint};

use super::config::TransportConfig;
use super::faults::Faults;
use super::network::{GroupNetworkFactory, PeerNetwork};
use super::pb::raft_peer_client::RaftPeerClient;
use crate::typ::{Node, NodeId};

/// One lazily connected gRPC channel per peer node, shared by every Raft group on this node.
/// Cheap to clone (the clones share the channels).
#[derive(Clone)]
pub struct PeerClients {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: NodeId,
    config: TransportConfig,
    faults: Faults,
    /// Advertised peer address → the address actually dialed (empty: dial as advertised).
    dial: HashMap<String, String>,
    /// Held only to look up or insert a channel, never across an await.
    peers: Mutex<HashMap<NodeId, Peer>>,
}

struct Peer {
    /// The advertised address (not the dialed one), to notice when the peer moves.
    addr: String,
    channel: Channel,
}

impl PeerClients {
    /// Clients for node `node_id`, whose RPCs name it as their sender. `config` must be valid
    /// ([`TransportConfig::validate`]). Their fault plan is empty, its losses seeded by `node_id`.
    pub fn new(node_id: NodeId, config: TransportConfig) -> PeerClients {
        PeerClients::with_dial_overrides(node_id, config, HashMap::new())
    }

    /// Like [`PeerClients::new`], but a peer whose advertised address is a key of `dial` is
    /// connected to at that key's value instead (the address must still be exactly as
    /// advertised: `127.0.0.1:9102` does not match `localhost:9102`).
    pub fn with_dial_overrides(node_id: NodeId, config: TransportConfig, dial: HashMap<String, String>) -> PeerClients {
        let faults = Faults::new(node_id);
        let peers = Mutex::new(HashMap::new());
        PeerClients { inner: Arc::new(Inner { node_id, config, faults, dial, peers }) }
    }

    /// The node these clients send from.
    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// The transport settings.
    pub fn config(&self) -> &TransportConfig {
        &self.inner.config
    }

    /// The fault plan every outgoing RPC consults; empty (and free) unless a test sets faults.
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// The network factory to give openraft for group `group_id`.
    pub fn network_factory(&self, group_id: u64) -> GroupNetworkFactory {
        GroupNetworkFactory::new(group_id, self.clone())
    }

    /// A network to `target` (at `node.addr`) for one group. The address is taken as
    /// `host:port` (plain HTTP/2) unless it carries a scheme.
    pub fn network(&self, group_id: u64, target: NodeId, node: &Node) -> PeerNetwork {
        // The network consults the fault plan per message, not once here.
        let client = self.shared_channel(target, &node.addr).map(|channel| self.client(channel));
        PeerNetwork::new(group_id, target, self.clone(), client)
    }

    /// Drops the channel to `target` (a node that left the cluster); in-flight RPCs on it finish.
    pub fn forget(&self, target: NodeId) {
        self.inner.peers.lock().expect("peer map poisoned").remove(&target);
    }

    /// The channel for one RPC to `target`, created if there is none or the peer's address
    /// changed. An address that is not a valid URI is an error (reported as unreachable by the
    /// caller), and so is a message the fault plan stops: call this per RPC, not once.
    pub fn channel(&self, target: NodeId, addr: &str) -> Result<Channel, String> {
        self.inner.faults.check(target).map_err(|fault| format!("RPC to node {target}: {fault}"))?;
        self.shared_channel(target, addr)
    }

    fn shared_channel(&self, target: NodeId, addr: &str) -> Result<Channel, String> {
        let mut peers = self.inner.peers.lock().expect("peer map poisoned");
        if let Some(peer) = peers.get(&target)
            && peer.addr == addr
        {
            return Ok(peer.channel.clone());
        }
        let dialed = self.inner.dial.get(addr).map_or(addr, String::as_str);
        let channel = self.endpoint(dialed)?.connect_lazy();
        peers.insert(target, Peer { addr: addr.to_owned(), channel: channel.clone() });
        Ok(channel)
    }

    /// A `RaftPeer` client to `target` at `addr`, over the shared channel (for node-level RPCs
    /// that belong to no group).
    pub(crate) fn raft_client(&self, target: NodeId, addr: &str) -> Result<RaftPeerClient<Channel>, String> {
        self.channel(target, addr).map(|channel| self.client(channel))
    }

    fn endpoint(&self, addr: &str) -> Result<Endpoint, String> {
        let uri = if addr.contains("://") { addr.to_owned() } else { format!("http://{addr}") };
        let config = &self.inner.config;
        let endpoint = Endpoint::from_shared(uri).map_err(|e| format!("bad peer address {addr:?}: {e}"))?;
        Ok(endpoint
            .connect_timeout(config.connect_timeout())
            .tcp_nodelay(true)
            .initial_stream_window_size(config.stream_window_bytes)
            .initial_connection_window_size(config.connection_window_bytes)
            .http2_keep_alive_interval(config.keepalive_interval())
            .keep_alive_timeout(config.keepalive_timeout())
            .keep_alive_while_idle(true)
            // Peers are trusted. Many groups changing leader at once end many replication
            // streams and vote calls early; the frames still in flight for them each count as
            // a local error reset, and at h2's default of 1,024 the connection was closed with
            // GOAWAY — every group replicating over it and the node heartbeats with them, which
            // made the peer look dead and caused more elections.
            .http2_max_local_error_reset_streams(None)
            .http2_max_concurrent_reset_streams(config.max_concurrent_streams as usize))
    }

    fn client(&self, channel: Channel) -> RaftPeerClient<Channel> {
        let max = self.inner.config.max_message_bytes;
        RaftPeerClient::new(channel).max_decoding_message_size(max).max_encoding_message_size(max)
    }
}

impl std::fmt::Debug for PeerClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let peers: Vec<NodeId> = self.inner.peers.lock().map(|p| p.keys().copied().collect()).unwrap_or_default();
        f.debug_struct("PeerClients").field("node_id", &self.inner.node_id).field("peers", &peers).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::transport::pb::NodeHeartbeatRequest;

    /// A peer advertised at an address nobody listens on is reached through its override.
    #[tokio::test]
    async fn a_dial_override_connects_to_the_other_address() {
        let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let advertised = "127.0.0.1:1";
        let dial = HashMap::from([(advertised.to_owned(), proxy.local_addr().unwrap().to_string())]);
        let clients = PeerClients::with_dial_overrides(1, TransportConfig::default(), dial);
        let mut client = clients.raft_client(2, advertised).unwrap();
        // The listener speaks no HTTP/2: the call cannot succeed, it only has to connect.
        let call = tokio::spawn(async move {
            let beat = NodeHeartbeatRequest { from: 1, ..Default::default() };
            tokio::time::timeout(Duration::from_secs(10), client.node_heartbeat(beat)).await
        });
        let accepted = tokio::time::timeout(Duration::from_secs(10), proxy.accept()).await;
        assert!(accepted.expect("dialed within 10 s").is_ok());
        call.abort();
    }
}
