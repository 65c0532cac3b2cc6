//! What every part of the groups service reads: this broker's identity and settings, the
//! controller's metadata, the hosted partitions, and connections to other brokers. The
//! transaction coordinators (`crate::txn`) share it: they too live on the leaders of an internal
//! topic's partitions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_common::{NodeId, PartitionId};
use sluice_controller::{ControllerCommand, ControllerReply, TopicConfig, codes};
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
/// How long creating an internal topic may take; a client retries after that.
const CREATE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest group id accepted (as a topic name).
const MAX_GROUP_ID_BYTES: usize = 249;

/// Where a group (or a transactional id) lives: its `__consumer_offsets` (or `__txn`) partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Home {
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
pub(crate) struct Context {
    pub node_id: u64,
    peers: Vec<PeerConfig>,
    pub config: GroupConfig,
    pub controller: Arc<ControllerGroup>,
    pub partitions: Arc<Partitions>,
    /// Turns true when the broker stops.
    pub stop: watch::Receiver<bool>,
    /// One lazily connected channel per broker client address.
    channels: Mutex<HashMap<String, Channel>>,
    /// Held while the controller leader creates an internal topic: one creation at a time.
    creating: tokio::sync::Mutex<()>,
    /// Retry and dead-letter counters of the groups coordinated here.
    pub retry_counters: super::retries::metrics::RetryCounters,
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
            creating: tokio::sync::Mutex::new(()),
            retry_counters: super::retries::metrics::RetryCounters::default(),
        }
    }

    /// The replication factor of the internal topics: 3, or fewer on a smaller cluster.
    pub fn internal_replication_factor(&self) -> u32 {
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
        self.home_in(OFFSETS_TOPIC, group)
    }

    /// The partition of internal topic `topic` that `key` hashes to; `None` while the topic does
    /// not exist.
    pub fn home_in(&self, topic: &str, key: &str) -> Option<Home> {
        self.controller.metadata().read(|m| {
            let topic = m.topic(topic)?;
            let count = u32::try_from(topic.partitions.len()).ok().filter(|c| *c > 0)?;
            let partition = crc32fast::hash(key.as_bytes()) % count;
            let p = topic.partition(PartitionId(partition))?;
            Some(Home {
                partition,
                group_id: p.group_id,
                replicas: p.replicas.iter().map(|r| r.0).collect(),
                reported_leader: p.leader.map(|l| l.0),
            })
        })
    }

    /// Partition `partition` of `topic`; `None` if the metadata has no such partition.
    pub fn partition_home(&self, topic: &str, partition: u32) -> Option<Home> {
        self.controller.metadata().read(|m| {
            let p = m.topic(topic)?.partition(PartitionId(partition))?;
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
        self.not_coordinator_of(&format!("group {group:?}"), "FindCoordinator", coordinator)
    }

    /// `NOT_COORDINATOR` for `what` (a group, a transactional id), naming the coordinator when
    /// it is known and not this broker, and otherwise the call (`find`) that finds it.
    pub fn not_coordinator_of(&self, what: &str, find: &str, coordinator: Option<u64>) -> Error {
        let hint = coordinator.filter(|c| *c != self.node_id).and_then(|c| self.broker_address(c));
        let message = match &hint {
            Some(c) => format!(
                "broker {} does not coordinate {what}; send the request to its coordinator, broker {} at {}",
                self.node_id, c.node_id, c.client_address
            ),
            None => format!(
                "broker {} does not coordinate {what} and knows no coordinator; call {find} and retry",
                self.node_id
            ),
        };
        Error { leader: hint, ..Error::new(ErrorCode::NotCoordinator, message) }
    }

    /// On the controller leader: proposes internal topic `name` with `partitions` partitions
    /// unless it exists (a concurrent creation waits for the one under way).
    pub async fn create_internal_topic(&self, name: &str, partitions: u32) -> Result<(), Error> {
        let _one = self.creating.lock().await;
        if self.controller.metadata().read(|m| m.topic(name).is_some()) {
            return Ok(());
        }
        let config = TopicConfig::new(partitions, self.internal_replication_factor());
        let replicas = config.replication_factor;
        let command = ControllerCommand::CreateTopic { name: name.into(), config };
        let failed =
            |why: String| Error::new(ErrorCode::Unavailable, format!("creating {name} failed: {why}; retry shortly"));
        match tokio::time::timeout(CREATE_TIMEOUT, self.controller.propose(&command)).await {
            Ok(Ok(ControllerReply::Applied(_))) => {
                tracing::info!(partitions, replicas, "created {name}");
                Ok(())
            }
            Ok(Ok(ControllerReply::Rejected(r))) if r.code == codes::TOPIC_EXISTS => Ok(()),
            Ok(Ok(ControllerReply::Rejected(r))) if r.code == codes::NOT_ENOUGH_LIVE_BROKERS => Err(Error::new(
                ErrorCode::NotEnoughReplicas,
                format!("{name} needs {replicas} live brokers for its replicas: {}", r.message),
            )),
            Ok(Ok(ControllerReply::Rejected(r))) => Err(Error::new(
                ErrorCode::Internal,
                format!("the controller refused to create {name}: {r}; check the broker configuration"),
            )),
            Ok(Err(e)) => Err(failed(e.to_string())),
            Err(_elapsed) => Err(failed(format!("not committed within {CREATE_TIMEOUT:?}"))),
        }
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
pub(crate) fn now_ms() -> i64 {
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
