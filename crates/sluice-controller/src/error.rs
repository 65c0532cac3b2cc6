//! [`ControllerError`]: why the controller refused a command. Each variant has a stable code
//! ([`crate::codes`]) and a message that says what to do; both travel in the reply.

use sluice_common::{InvalidTopicName, NodeId, PartitionId};

use crate::codes;
use crate::command::DecodeError;

/// Why a command was refused. Applying a refused command changes nothing but the version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControllerError {
    /// The command bytes could not be decoded.
    #[error("malformed controller command: {0}")]
    Malformed(#[from] DecodeError),
    /// The topic name is not valid; the message is `TopicName::new`'s.
    #[error("{0}")]
    InvalidTopicName(#[from] InvalidTopicName),
    /// The topic already exists.
    #[error("topic {0:?} already exists; choose another name or delete it first")]
    TopicExists(String),
    /// The topic does not exist.
    #[error("topic {0:?} does not exist; list topics to see which do")]
    UnknownTopic(String),
    /// Fewer live brokers than the replication factor.
    #[error(
        "replication factor {replication_factor} needs {replication_factor} live brokers but \
         {live} are live; start more brokers or lower the replication factor"
    )]
    NotEnoughLiveBrokers {
        /// The replication factor asked for.
        replication_factor: u32,
        /// Brokers live when the command was applied.
        live: usize,
    },
    /// A topic setting is out of range; the message names it and the accepted range.
    #[error("invalid topic config: {0}")]
    InvalidConfig(String),
    /// No broker with this id has registered.
    #[error("broker {0} has not registered; start it (it registers itself) or check the node id")]
    UnknownBroker(NodeId),
    /// The topic has no such partition.
    #[error("topic {topic:?} has {partitions} partitions (0..{partitions}); partition {partition} does not exist")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: PartitionId,
        /// How many partitions the topic has.
        partitions: u32,
    },
    /// The reported leader is not one of the partition's replicas.
    #[error(
        "broker {leader} is not a replica of {topic}/{partition} (replicas {replicas:?}); only a replica can lead it"
    )]
    NotAReplica {
        /// The topic.
        topic: String,
        /// The partition.
        partition: PartitionId,
        /// The broker reported as leader.
        leader: NodeId,
        /// The partition's replicas.
        replicas: Vec<u64>,
    },
    /// The report is about a Raft group the partition no longer has.
    #[error(
        "group {reported} is not {topic}/{partition}'s Raft group (it is {current}); the topic was \
         deleted and created again: stop the old group"
    )]
    GroupMismatch {
        /// The topic.
        topic: String,
        /// The partition.
        partition: PartitionId,
        /// The group id in the report.
        reported: u64,
        /// The partition's group id.
        current: u64,
    },
    /// A broker address is empty or too long.
    #[error("broker {node_id}'s {which} address {addr:?} is invalid: {reason}")]
    InvalidBrokerAddress {
        /// The broker.
        node_id: NodeId,
        /// Which address: "raft" or "client".
        which: &'static str,
        /// The address given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A cluster-wide limit would be exceeded; the message names it.
    #[error("{0}")]
    LimitExceeded(String),
    /// A new topic's replicas do not fit on the live brokers' capacity; the message names the
    /// broker at its limit and the limit.
    #[error("{0}")]
    InsufficientCapacity(String),
}

impl ControllerError {
    /// The stable code of this error (see [`crate::codes`]).
    pub fn code(&self) -> u16 {
        match self {
            ControllerError::Malformed(_) => codes::MALFORMED_COMMAND,
            ControllerError::InvalidTopicName(_) => codes::INVALID_TOPIC_NAME,
            ControllerError::TopicExists(_) => codes::TOPIC_EXISTS,
            ControllerError::UnknownTopic(_) => codes::UNKNOWN_TOPIC,
            ControllerError::NotEnoughLiveBrokers { .. } => codes::NOT_ENOUGH_LIVE_BROKERS,
            ControllerError::InvalidConfig(_) => codes::INVALID_CONFIG,
            ControllerError::UnknownBroker(_) => codes::UNKNOWN_BROKER,
            ControllerError::UnknownPartition { .. } => codes::UNKNOWN_PARTITION,
            ControllerError::NotAReplica { .. } => codes::NOT_A_REPLICA,
            ControllerError::GroupMismatch { .. } => codes::GROUP_MISMATCH,
            ControllerError::InvalidBrokerAddress { .. } => codes::INVALID_BROKER_ADDRESS,
            ControllerError::LimitExceeded(_) => codes::LIMIT_EXCEEDED,
            ControllerError::InsufficientCapacity(_) => codes::INSUFFICIENT_CAPACITY,
        }
    }
}
