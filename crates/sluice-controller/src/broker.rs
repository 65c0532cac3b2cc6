//! [`Broker`]: a registered broker as the controller knows it.

use sluice_common::NodeId;

/// A broker that has registered with the controller. Brokers are never forgotten: a dead one
/// keeps its replicas (and its place in the routes) until it returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Its node id.
    pub node_id: NodeId,
    /// Where its peers send Raft RPCs.
    pub raft_addr: String,
    /// Where clients connect.
    pub client_addr: String,
    /// The controller leader's latest verdict on its heartbeats.
    pub live: bool,
    /// The log index of its latest registration. A restarted broker registers again and gets
    /// a new, larger one, so it doubles as the broker's epoch (as Kafka's broker epoch does).
    pub registered_at_index: u64,
    /// The most partition replicas it can host, as it said when it last registered; 0 means no
    /// limit. Creating a topic that would put more on it is refused (INSUFFICIENT_CAPACITY).
    pub max_replicas: u32,
}
