//! What every part of the groups service reads: this broker's identity and settings, the
//! controller's metadata, the hosted partitions, and connections to other brokers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_common::{NodeId, PartitionId};
use sluice_proto::v1::BrokerAddress;
use sluice_proto::{Error, ErrorCode};
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use super::OFFSETS_TOPIC;
use super::state::GroupDefaults;
use crate::config::{BrokerConfig, GroupConfig, PeerConfig};
use crate::controller::ControllerGroup;
use crate::partitions::Partitions;

/// How long connecting to another broker may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a call to another broker may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest group id accepted (as a topic name).
const MAX_GROUP_ID_BYTES: usize = 249;

/// Where a group lives: its `__consumer_offsets` partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Home {
    /// The partition number.
    pub partition: u32,
    /// The partition's Raft group.
    pub group_id: u64,
    /// Its replicas.
    pub replicas: Vec<u64>,
    /// Its leader as last reported to the controller.
    pub reported_leader: Option<u64>,
}

/// The shared context of the groups service.
pub(super) struct Context {
    pub node_id: u64,
    peers: Vec<PeerConfig>,
    pub config: GroupConfig,
    pub controller: Arc<ControllerGroup>,
    pub partitions: Arc<Partitions>,
    /// Turns true when the broker stops.
    pub stop: watch::Receiver<bool>,
    /// One lazily connected channel per broker client address.
    channels: Mutex<HashMap<String, Channel>>,
}

impl Context {
    pub fn new(
        config: &BrokerConfig,
        controller: Arc<ControllerGroup>,
        partitions: Arc<Partitions>,
        stop: watch::Receiver<bool>,
    ) -> Context {
        Context {
            node_id: config.node_id,
            peers: config.peers.clone(),
            config: config.groups.clone(),
            controller,
            partitions,
            stop,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// The replication factor of `__consumer_offsets`: 3, or fewer on a smaller cluster.
    pub fn offsets_replication_factor(&self) -> u32 {
        u32::try_from(self.peers.len()).unwrap_or(u32::MAX).min(3)
    }

    /// The member defaults the configuration sets.
    pub fn defaults(&self) -> GroupDefaults {
        GroupDefaults {
            session_timeout_ms: self.config.session_timeout_ms,
            rebalance_timeout_ms: self.config.rebalance_timeout_ms,
            heartbeat_interval_ms: self.config.heartbeat_interval_ms,
        }
    }

    /// The partition count of `topic`, as the applied metadata says (`None`: no such topic).
    pub fn partition_count(&self, topic: &str) -> Option<u32> {
        self.controller.metadata().read(|m| m.topic(topic).map(|t| t.config.partitions))
    }

    /// The offsets partition of `group`; `None` while `__consumer_offsets` does not exist.
    pub fn home(&self, group: &str) -> Option<Home> {
        self.controller.metadata().read(|m| {
            let topic = m.topic(OFFSETS_TOPIC)?;
            let count = u32::try_from(topic.partitions.len()).ok().filter(|c| *c > 0)?;
            let partition = crc32fast::hash(group.as_bytes()) % count;
            let p = topic.partition(PartitionId(partition))?;
            Some(Home {
                partition,
                group_id: p.group_id,
                replicas: p.replicas.iter().map(|r| r.0).collect(),
                reported_leader: p.leader.map(|l| l.0),
            })
        })
    }

    /// The leader of `home` as this broker knows it: itself, a live broker claiming it, or the
    /// one last reported to the controller if that broker is live.
    pub fn leader_of(&self, home: &Home) -> Option<u64> {
        let reported = home.reported_leader.filter(|n| *n == self.node_id || self.partitions.is_live(*n));
        self.partitions.leader_of(home.group_id).map(|(node, _)| node).or(reported)
    }

    /// The client address of broker `node_id`: as registered, else as configured.
    pub fn broker_address(&self, node_id: u64) -> Option<BrokerAddress> {
        let registered = self.controller.metadata().read(|m| m.broker(NodeId(node_id)).map(|b| b.client_addr.clone()));
        let client_address =
            registered.or_else(|| self.peers.iter().find(|p| p.node_id == node_id).map(|p| p.client_addr.clone()))?;
        Some(BrokerAddress { node_id, client_address })
    }

    /// `NOT_COORDINATOR` for `group`, naming the coordinator when it is known and not this
    /// broker.
    pub fn not_coordinator(&self, group: &str, coordinator: Option<u64>) -> Error {
        let hint = coordinator.filter(|c| *c != self.node_id).and_then(|c| self.broker_address(c));
        let message = match &hint {
            Some(c) => format!(
                "broker {} does not coordinate group {group:?}; send the request to its coordinator, broker {} at {}",
                self.node_id, c.node_id, c.client_address
            ),
            None => format!(
                "broker {} does not coordinate group {group:?} and knows no coordinator; call FindCoordinator and retry",
                self.node_id
            ),
        };
        Error { leader: hint, ..Error::new(ErrorCode::NotCoordinator, message) }
    }

    /// A channel to the client API at `address`, connected on first use and kept.
    pub fn channel(&self, address: &str) -> Result<Channel, Error> {
        let mut channels = self.channels.lock().expect("channels lock");
        if let Some(c) = channels.get(address) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{address}")).map_err(|e| {
            Error::new(ErrorCode::Internal, format!("broker client address {address:?} is not usable: {e}"))
        })?;
        let channel = endpoint.connect_timeout(CONNECT_TIMEOUT).timeout(CALL_TIMEOUT).connect_lazy();
        channels.insert(address.to_owned(), channel.clone());
        Ok(channel)
    }
}

/// Checks a group id: 1 to 249 bytes of `[A-Za-z0-9._-]`, as a topic name.
pub(super) fn check_group_id(group: &str) -> Result<(), Error> {
    let valid = !group.is_empty()
        && group.len() <= MAX_GROUP_ID_BYTES
        && group.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        return Ok(());
    }
    Err(Error::new(
        ErrorCode::InvalidGroupId,
        format!("group id {group:?} is invalid: use 1 to {MAX_GROUP_ID_BYTES} characters from [A-Za-z0-9._-]"),
    ))
}

/// Milliseconds since the Unix epoch, by this broker's clock.
pub(super) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_are_checked_like_topic_names() {
        for ok in ["g", "orders-consumers", "a.b_c-D9", &"x".repeat(249)] {
            assert_eq!(check_group_id(ok), Ok(()), "{ok}");
        }
        for bad in ["", "has space", "slash/", "é", &"x".repeat(250)] {
            assert_eq!(check_group_id(bad).unwrap_err().error_code(), ErrorCode::InvalidGroupId, "{bad}");
        }
    }
}
