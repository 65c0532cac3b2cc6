//! [`ControllerCommand`]: the changes the controller's Raft log carries, and their encoding.
//!
//! A command is a protobuf message (see `wire::command` for the field layout) so that a field can
//! be added without breaking the decoding of older entries. Topic names travel as plain strings
//! and are validated when the command is applied, so that every replica refuses a bad name
//! alike, with the same code and message.

use bytes::Bytes;
use prost::Message;
use sluice_common::{NodeId, PartitionId};

use crate::alter::TopicConfigChanges;
use crate::config::TopicConfig;
use crate::wire::command::CommandMsg;

/// A change to the cluster's metadata, proposed by the controller leader and applied by every
/// controller in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerCommand {
    /// A broker announces itself, or a restarted one its (possibly new) addresses. It is live
    /// from this point.
    RegisterBroker {
        /// The broker.
        node_id: NodeId,
        /// Where its peers send Raft RPCs.
        raft_addr: String,
        /// Where clients connect.
        client_addr: String,
        /// The most partition replicas it can host (its file budget, or its `max_replicas`
        /// setting); 0 means no limit. Topic creations that would exceed it are refused.
        max_replicas: u32,
    },
    /// The controller leader's verdict on a broker's heartbeats; the state machine only records it.
    SetBrokerLive {
        /// The broker.
        node_id: NodeId,
        /// Whether it is live.
        live: bool,
    },
    /// Creates a topic and assigns its partitions' replicas among the live brokers.
    CreateTopic {
        /// The topic's name, validated when applied.
        name: String,
        /// Its settings.
        config: TopicConfig,
    },
    /// Deletes a topic; its partitions' Raft groups are to be stopped and their ids never reused.
    DeleteTopic {
        /// The topic's name.
        name: String,
    },
    /// A partition's Raft group reports its leader. Recorded only if `term` is at least the
    /// recorded term, so a late report never overwrites a newer one.
    ReportLeader {
        /// The topic.
        topic: String,
        /// The partition.
        partition: PartitionId,
        /// The reporting Raft group, which must still be the partition's group: a report from
        /// the group of a deleted topic of the same name is refused.
        group_id: u64,
        /// The leader.
        leader: NodeId,
        /// The Raft term it leads in.
        term: u64,
    },
    /// Allocates the next producer id for an idempotent producer: ids start at 1, grow by one
    /// per allocation and are never handed out twice.
    AllocateProducerId,
    /// Changes settings of an existing topic; the brokers read them from the metadata, so the
    /// change takes effect without restarting anything.
    AlterTopicConfig {
        /// The topic's name, validated when applied.
        name: String,
        /// What to change.
        changes: TopicConfigChanges,
    },
}

/// Why bytes are not a controller command (or reply, or snapshot).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not valid protobuf for the expected message.
    #[error("not a valid protobuf message: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// Valid protobuf but no known variant: empty, or written by a newer build.
    #[error("no {0} this build knows: empty, or written by a newer version (upgrade every controller first)")]
    UnknownVariant(&'static str),
    /// A field holds a value the type cannot.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl ControllerCommand {
    /// The command as the bytes to propose.
    pub fn encode(&self) -> Bytes {
        Bytes::from(CommandMsg::from(self).encode_to_vec())
    }

    /// Decodes a command; never panics, whatever the bytes.
    pub fn decode(raw: &[u8]) -> Result<ControllerCommand, DecodeError> {
        ControllerCommand::try_from(CommandMsg::decode(raw)?)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use sluice_common::record::{Compression, TopicCompression};

    use super::*;
    use crate::alter::ConfigChange;

    fn samples() -> Vec<ControllerCommand> {
        let config = TopicConfig {
            retention_ms: Some(60_000),
            retention_bytes: None,
            compression: TopicCompression::Codec(Compression::Zstd),
            ..TopicConfig::new(3, 2)
        };
        vec![
            ControllerCommand::RegisterBroker {
                node_id: NodeId(1),
                raft_addr: "a:1".into(),
                client_addr: "a:2".into(),
                max_replicas: 4_000,
            },
            ControllerCommand::SetBrokerLive { node_id: NodeId(2), live: false },
            ControllerCommand::SetBrokerLive { node_id: NodeId(0), live: true },
            ControllerCommand::CreateTopic { name: "orders".into(), config },
            ControllerCommand::DeleteTopic { name: "orders".into() },
            ControllerCommand::ReportLeader {
                topic: "t".into(),
                partition: PartitionId(4),
                group_id: 9,
                leader: NodeId(3),
                term: 7,
            },
            ControllerCommand::AllocateProducerId,
            ControllerCommand::AlterTopicConfig {
                name: "orders".into(),
                changes: TopicConfigChanges {
                    retention_ms: Some(ConfigChange::Clear),
                    retention_bytes: Some(ConfigChange::Set(1 << 30)),
                    max_message_bytes: Some(4096),
                    compression: Some(TopicCompression::Codec(Compression::Lz4)),
                    ..TopicConfigChanges::default()
                },
            },
            ControllerCommand::AlterTopicConfig {
                name: "t".into(),
                changes: TopicConfigChanges {
                    partitions: Some(4),
                    replication_factor: Some(1),
                    flush_interval_ms: Some(9),
                    compression: Some(TopicCompression::Producer),
                    ..TopicConfigChanges::default()
                },
            },
        ]
    }

    #[test]
    fn every_command_round_trips() {
        for command in samples() {
            assert_eq!(ControllerCommand::decode(&command.encode()), Ok(command));
        }
    }

    #[test]
    fn empty_and_unknown_commands_are_refused() {
        assert_eq!(ControllerCommand::decode(&[]), Err(DecodeError::UnknownVariant("command")));
        // Field 15, varint 1: valid protobuf, but no command this build knows.
        assert_eq!(ControllerCommand::decode(&[0x78, 0x01]), Err(DecodeError::UnknownVariant("command")));
        assert!(matches!(ControllerCommand::decode(&[0xff]), Err(DecodeError::Protobuf(_))));
    }

    #[test]
    fn truncated_commands_never_panic() {
        for command in samples() {
            let raw = command.encode();
            for cut in 0..raw.len() {
                let _ = ControllerCommand::decode(&raw[..cut]);
            }
        }
    }

    proptest! {
        #[test]
        fn garbage_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = ControllerCommand::decode(&raw);
        }
    }
}
