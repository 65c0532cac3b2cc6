//! [`ControllerReply`]: what applying a command answered, encoded as the bytes
//! [`sluice_raft::Fsm::apply`] returns to the proposer.

use bytes::Bytes;
use prost::Message;
use sluice_common::{NodeId, PartitionId, TopicName};

use crate::codes;
use crate::command::DecodeError;
use crate::config::TopicConfig;
use crate::error::ControllerError;
use crate::wire::reply::ReplyMsg;

/// The answer to one applied command: what it did, or why it was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerReply {
    /// The command was applied.
    Applied(Applied),
    /// The command was refused; nothing changed but the version.
    Rejected(Rejection),
}

/// What an applied command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A broker registered.
    BrokerRegistered {
        /// The broker.
        node_id: NodeId,
        /// Its new registration index (its epoch).
        registered_at_index: u64,
        /// Whether it had registered before (its addresses may have changed).
        reregistered: bool,
    },
    /// A broker's liveness was recorded.
    BrokerLiveness {
        /// The broker.
        node_id: NodeId,
        /// Its liveness now.
        live: bool,
        /// Whether that differs from before.
        changed: bool,
    },
    /// A topic was created: each partition's Raft group and replicas, for the brokers to start.
    TopicCreated {
        /// The topic.
        topic: TopicName,
        /// Its partitions, by partition number.
        partitions: Vec<PartitionAssignment>,
    },
    /// A topic was deleted: the Raft groups its replicas are to stop.
    TopicDeleted {
        /// The topic.
        topic: TopicName,
        /// Its partitions as they were.
        partitions: Vec<PartitionAssignment>,
    },
    /// A leader report was considered.
    LeaderReported {
        /// False when the report's term was older than the recorded one (it was ignored).
        accepted: bool,
        /// The partition's recorded leader after this command.
        leader: NodeId,
        /// The recorded term after this command.
        term: u64,
    },
    /// A producer id was allocated.
    ProducerIdAllocated {
        /// The id: at least 1, never allocated before.
        producer_id: u64,
    },
    /// A topic's settings were altered.
    TopicConfigAltered {
        /// The topic.
        topic: TopicName,
        /// Its settings before.
        previous: TopicConfig,
        /// Its settings now.
        config: TopicConfig,
    },
}

/// Where one partition's replicas are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionAssignment {
    /// The partition.
    pub partition: PartitionId,
    /// Its Raft group id.
    pub group_id: u64,
    /// Its replicas, preferred leader first.
    pub replicas: Vec<NodeId>,
}

/// A refused command: a stable code from [`crate::codes`] and a message that says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct Rejection {
    /// The stable code.
    pub code: u16,
    /// What went wrong and what to do, for people.
    pub message: String,
}

impl Rejection {
    /// The code's name, e.g. `TOPIC_EXISTS` (`None` if this build does not know the code).
    pub fn code_name(&self) -> Option<&'static str> {
        codes::name(self.code)
    }
}

impl From<ControllerError> for Rejection {
    fn from(e: ControllerError) -> Rejection {
        Rejection { code: e.code(), message: e.to_string() }
    }
}

impl From<Result<Applied, ControllerError>> for ControllerReply {
    fn from(result: Result<Applied, ControllerError>) -> ControllerReply {
        match result {
            Ok(applied) => ControllerReply::Applied(applied),
            Err(e) => ControllerReply::Rejected(e.into()),
        }
    }
}

impl ControllerReply {
    /// The reply as a `Result`.
    pub fn into_result(self) -> Result<Applied, Rejection> {
        match self {
            ControllerReply::Applied(a) => Ok(a),
            ControllerReply::Rejected(r) => Err(r),
        }
    }

    /// The reply as bytes (what `apply` returns).
    pub fn encode(&self) -> Bytes {
        Bytes::from(ReplyMsg::from(self).encode_to_vec())
    }

    /// Decodes what `apply` returned; never panics, whatever the bytes.
    pub fn decode(raw: &[u8]) -> Result<ControllerReply, DecodeError> {
        ControllerReply::try_from(ReplyMsg::decode(raw)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(partition: u32, group_id: u64, replicas: &[u64]) -> PartitionAssignment {
        let replicas = replicas.iter().map(|n| NodeId(*n)).collect();
        PartitionAssignment { partition: PartitionId(partition), group_id, replicas }
    }

    #[test]
    fn every_reply_round_trips() {
        let topic = TopicName::new("orders").unwrap();
        let replies = [
            ControllerReply::Rejected(ControllerError::TopicExists("orders".into()).into()),
            ControllerReply::Applied(Applied::BrokerRegistered {
                node_id: NodeId(2),
                registered_at_index: 9,
                reregistered: true,
            }),
            ControllerReply::Applied(Applied::BrokerLiveness { node_id: NodeId(2), live: false, changed: true }),
            ControllerReply::Applied(Applied::TopicCreated {
                topic: topic.clone(),
                partitions: vec![assignment(0, 1, &[1, 2, 3]), assignment(1, 2, &[2, 1, 3])],
            }),
            ControllerReply::Applied(Applied::TopicDeleted { topic, partitions: vec![assignment(0, 1, &[1])] }),
            ControllerReply::Applied(Applied::LeaderReported { accepted: false, leader: NodeId(3), term: 4 }),
            ControllerReply::Applied(Applied::ProducerIdAllocated { producer_id: 42 }),
            ControllerReply::Applied(Applied::TopicConfigAltered {
                topic: TopicName::new("t").unwrap(),
                previous: TopicConfig::new(2, 3),
                config: TopicConfig { retention_ms: Some(5), ..TopicConfig::new(2, 3) },
            }),
        ];
        for reply in replies {
            assert_eq!(ControllerReply::decode(&reply.encode()), Ok(reply));
        }
    }

    #[test]
    fn a_rejection_names_its_code() {
        let r: Rejection = ControllerError::UnknownTopic("x".into()).into();
        assert_eq!((r.code, r.code_name()), (codes::UNKNOWN_TOPIC, Some("UNKNOWN_TOPIC")));
        assert!(r.to_string().ends_with("(code 103)"), "{r}");
    }

    #[test]
    fn bad_replies_are_errors() {
        assert_eq!(ControllerReply::decode(&[]), Err(DecodeError::UnknownVariant("reply")));
        assert!(ControllerReply::decode(&[0xff, 0xff]).is_err());
    }
}
