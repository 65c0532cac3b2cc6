//! Wire form of [`ControllerReply`].
//!
//! ```text
//! message ReplyMsg {
//!   oneof outcome {
//!     RejectionMsg         rejected          = 1;
//!     BrokerRegisteredMsg  broker_registered = 2;
//!     BrokerLivenessMsg    broker_liveness   = 3;
//!     TopicPartitionsMsg   topic_created     = 4;
//!     TopicPartitionsMsg   topic_deleted     = 5;
//!     LeaderReportedMsg    leader_reported   = 6;
//!     ProducerIdMsg        producer_id_allocated = 7;
//!     TopicAlteredMsg      topic_config_altered  = 8;
//!   }
//! }
//! message RejectionMsg        { uint32 code = 1; string message = 2; }
//! message BrokerRegisteredMsg { uint64 node_id = 1; uint64 registered_at_index = 2; bool reregistered = 3; }
//! message BrokerLivenessMsg   { uint64 node_id = 1; bool live = 2; bool changed = 3; }
//! message TopicPartitionsMsg  { string topic = 1; repeated AssignmentMsg partitions = 2; }
//! message AssignmentMsg       { uint32 partition = 1; uint64 group_id = 2; repeated uint64 replicas = 3; }
//! message LeaderReportedMsg   { bool accepted = 1; uint64 leader = 2; uint64 term = 3; }
//! message ProducerIdMsg       { uint64 producer_id = 1; }
//! message TopicAlteredMsg     { string topic = 1; TopicConfigMsg previous = 2; TopicConfigMsg config = 3; }
//!                             // TopicConfigMsg: see wire/alter.rs
//! ```

use sluice_common::{NodeId, PartitionId};

use super::alter::TopicConfigMsg;
use super::topic_name;
use crate::command::DecodeError;
use crate::config::TopicConfig;
use crate::reply::{Applied, ControllerReply, PartitionAssignment, Rejection};

/// One reply.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ReplyMsg {
    /// Which reply; `None` when empty or of a kind this build does not know.
    #[prost(oneof = "Outcome", tags = "1, 2, 3, 4, 5, 6, 7, 8")]
    pub outcome: Option<Outcome>,
}

/// The reply variants.
#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum Outcome {
    /// The command was refused.
    #[prost(message, tag = "1")]
    Rejected(RejectionMsg),
    /// See [`Applied::BrokerRegistered`].
    #[prost(message, tag = "2")]
    BrokerRegistered(BrokerRegisteredMsg),
    /// See [`Applied::BrokerLiveness`].
    #[prost(message, tag = "3")]
    BrokerLiveness(BrokerLivenessMsg),
    /// See [`Applied::TopicCreated`].
    #[prost(message, tag = "4")]
    TopicCreated(TopicPartitionsMsg),
    /// See [`Applied::TopicDeleted`].
    #[prost(message, tag = "5")]
    TopicDeleted(TopicPartitionsMsg),
    /// See [`Applied::LeaderReported`].
    #[prost(message, tag = "6")]
    LeaderReported(LeaderReportedMsg),
    /// See [`Applied::ProducerIdAllocated`].
    #[prost(message, tag = "7")]
    ProducerIdAllocated(ProducerIdMsg),
    /// See [`Applied::TopicConfigAltered`].
    #[prost(message, tag = "8")]
    TopicConfigAltered(TopicAlteredMsg),
}

/// A refusal.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RejectionMsg {
    #[prost(uint32, tag = "1")]
    pub code: u32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// A registration.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct BrokerRegisteredMsg {
    #[prost(uint64, tag = "1")]
    pub node_id: u64,
    #[prost(uint64, tag = "2")]
    pub registered_at_index: u64,
    #[prost(bool, tag = "3")]
    pub reregistered: bool,
}

/// A liveness change.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct BrokerLivenessMsg {
    #[prost(uint64, tag = "1")]
    pub node_id: u64,
    #[prost(bool, tag = "2")]
    pub live: bool,
    #[prost(bool, tag = "3")]
    pub changed: bool,
}

/// A topic and its partitions' assignments.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TopicPartitionsMsg {
    #[prost(string, tag = "1")]
    pub topic: String,
    #[prost(message, repeated, tag = "2")]
    pub partitions: Vec<AssignmentMsg>,
}

/// One partition's assignment.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct AssignmentMsg {
    #[prost(uint32, tag = "1")]
    pub partition: u32,
    #[prost(uint64, tag = "2")]
    pub group_id: u64,
    #[prost(uint64, repeated, tag = "3")]
    pub replicas: Vec<u64>,
}

/// A leader report's outcome.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct LeaderReportedMsg {
    #[prost(bool, tag = "1")]
    pub accepted: bool,
    #[prost(uint64, tag = "2")]
    pub leader: u64,
    #[prost(uint64, tag = "3")]
    pub term: u64,
}

/// An allocated producer id.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ProducerIdMsg {
    #[prost(uint64, tag = "1")]
    pub producer_id: u64,
}

/// An altered topic's settings, before and after.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TopicAlteredMsg {
    #[prost(string, tag = "1")]
    pub topic: String,
    #[prost(message, optional, tag = "2")]
    pub previous: Option<TopicConfigMsg>,
    #[prost(message, optional, tag = "3")]
    pub config: Option<TopicConfigMsg>,
}

impl From<&ControllerReply> for ReplyMsg {
    fn from(reply: &ControllerReply) -> ReplyMsg {
        let outcome = match reply {
            ControllerReply::Rejected(r) => {
                Outcome::Rejected(RejectionMsg { code: u32::from(r.code), message: r.message.clone() })
            }
            ControllerReply::Applied(applied) => applied_msg(applied),
        };
        ReplyMsg { outcome: Some(outcome) }
    }
}

fn applied_msg(applied: &Applied) -> Outcome {
    match applied {
        Applied::BrokerRegistered { node_id, registered_at_index, reregistered } => {
            Outcome::BrokerRegistered(BrokerRegisteredMsg {
                node_id: node_id.0,
                registered_at_index: *registered_at_index,
                reregistered: *reregistered,
            })
        }
        Applied::BrokerLiveness { node_id, live, changed } => {
            Outcome::BrokerLiveness(BrokerLivenessMsg { node_id: node_id.0, live: *live, changed: *changed })
        }
        Applied::TopicCreated { topic, partitions } => Outcome::TopicCreated(topic_msg(topic.as_str(), partitions)),
        Applied::TopicDeleted { topic, partitions } => Outcome::TopicDeleted(topic_msg(topic.as_str(), partitions)),
        Applied::LeaderReported { accepted, leader, term } => {
            Outcome::LeaderReported(LeaderReportedMsg { accepted: *accepted, leader: leader.0, term: *term })
        }
        Applied::ProducerIdAllocated { producer_id } => {
            Outcome::ProducerIdAllocated(ProducerIdMsg { producer_id: *producer_id })
        }
        Applied::TopicConfigAltered { topic, previous, config } => Outcome::TopicConfigAltered(TopicAlteredMsg {
            topic: topic.to_string(),
            previous: Some(previous.into()),
            config: Some(config.into()),
        }),
    }
}

fn topic_msg(topic: &str, partitions: &[PartitionAssignment]) -> TopicPartitionsMsg {
    let partitions = partitions
        .iter()
        .map(|p| AssignmentMsg {
            partition: p.partition.0,
            group_id: p.group_id,
            replicas: p.replicas.iter().map(|n| n.0).collect(),
        })
        .collect();
    TopicPartitionsMsg { topic: topic.to_owned(), partitions }
}

impl TryFrom<ReplyMsg> for ControllerReply {
    type Error = DecodeError;

    fn try_from(msg: ReplyMsg) -> Result<ControllerReply, DecodeError> {
        let applied = match msg.outcome.ok_or(DecodeError::UnknownVariant("reply"))? {
            Outcome::Rejected(m) => return Ok(ControllerReply::Rejected(rejection(m)?)),
            Outcome::BrokerRegistered(m) => Applied::BrokerRegistered {
                node_id: NodeId(m.node_id),
                registered_at_index: m.registered_at_index,
                reregistered: m.reregistered,
            },
            Outcome::BrokerLiveness(m) => {
                Applied::BrokerLiveness { node_id: NodeId(m.node_id), live: m.live, changed: m.changed }
            }
            Outcome::TopicCreated(m) => {
                Applied::TopicCreated { topic: topic_name("topic", m.topic)?, partitions: assignments(m.partitions) }
            }
            Outcome::TopicDeleted(m) => {
                Applied::TopicDeleted { topic: topic_name("topic", m.topic)?, partitions: assignments(m.partitions) }
            }
            Outcome::LeaderReported(m) => {
                Applied::LeaderReported { accepted: m.accepted, leader: NodeId(m.leader), term: m.term }
            }
            Outcome::ProducerIdAllocated(m) => Applied::ProducerIdAllocated { producer_id: m.producer_id },
            Outcome::TopicConfigAltered(m) => Applied::TopicConfigAltered {
                topic: topic_name("topic", m.topic)?,
                previous: config("previous", m.previous)?,
                config: config("config", m.config)?,
            },
        };
        Ok(ControllerReply::Applied(applied))
    }
}

fn config(field: &'static str, m: Option<TopicConfigMsg>) -> Result<TopicConfig, DecodeError> {
    m.ok_or(DecodeError::InvalidField { field, reason: "missing".into() })?.try_into()
}

fn rejection(m: RejectionMsg) -> Result<Rejection, DecodeError> {
    let code = u16::try_from(m.code)
        .map_err(|_| DecodeError::InvalidField { field: "code", reason: format!("{} exceeds u16", m.code) })?;
    Ok(Rejection { code, message: m.message })
}

fn assignments(partitions: Vec<AssignmentMsg>) -> Vec<PartitionAssignment> {
    partitions
        .into_iter()
        .map(|p| PartitionAssignment {
            partition: PartitionId(p.partition),
            group_id: p.group_id,
            replicas: p.replicas.into_iter().map(NodeId).collect(),
        })
        .collect()
}
