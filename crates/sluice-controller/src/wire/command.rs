//! Wire form of [`ControllerCommand`].
//!
//! ```text
//! message CommandMsg {
//!   oneof kind {
//!     RegisterBrokerMsg register_broker = 1;
//!     SetBrokerLiveMsg  set_broker_live = 2;
//!     CreateTopicMsg    create_topic    = 3;
//!     DeleteTopicMsg    delete_topic    = 4;
//!     ReportLeaderMsg   report_leader   = 5;
//!     AllocateProducerIdMsg allocate_producer_id = 6;
//!     AlterTopicConfigMsg   alter_topic_config   = 7;  // see wire/alter.rs
//!   }
//! }
//! message RegisterBrokerMsg { uint64 node_id = 1; string raft_addr = 2; string client_addr = 3;
//!                             uint32 max_replicas = 4; }  // 0 (absent): no limit
//! message SetBrokerLiveMsg  { uint64 node_id = 1; bool live = 2; }
//! message CreateTopicMsg    { string name = 1; uint32 partitions = 2; uint32 replication_factor = 3;
//!                             optional uint64 retention_ms = 4; optional uint64 retention_bytes = 5;
//!                             uint32 max_message_bytes = 6;
//!                             optional uint64 flush_interval_ms = 7;   // absent: fsync before ack
//!                             optional string compression = 8; }      // absent: producer
//! message DeleteTopicMsg    { string name = 1; }
//! message ReportLeaderMsg   { string topic = 1; uint32 partition = 2; uint64 group_id = 3;
//!                             uint64 leader = 4; uint64 term = 5; }
//! message AllocateProducerIdMsg {}
//! ```

use sluice_common::{NodeId, PartitionId};

use super::alter::AlterTopicConfigMsg;
use super::{compression_from, compression_name};
use crate::command::{ControllerCommand, DecodeError};
use crate::config::TopicConfig;

/// One controller command.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct CommandMsg {
    /// Which command; `None` when empty or of a kind this build does not know.
    #[prost(oneof = "Kind", tags = "1, 2, 3, 4, 5, 6, 7")]
    pub kind: Option<Kind>,
}

/// The command variants.
#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum Kind {
    /// See [`ControllerCommand::RegisterBroker`].
    #[prost(message, tag = "1")]
    RegisterBroker(RegisterBrokerMsg),
    /// See [`ControllerCommand::SetBrokerLive`].
    #[prost(message, tag = "2")]
    SetBrokerLive(SetBrokerLiveMsg),
    /// See [`ControllerCommand::CreateTopic`].
    #[prost(message, tag = "3")]
    CreateTopic(CreateTopicMsg),
    /// See [`ControllerCommand::DeleteTopic`].
    #[prost(message, tag = "4")]
    DeleteTopic(DeleteTopicMsg),
    /// See [`ControllerCommand::ReportLeader`].
    #[prost(message, tag = "5")]
    ReportLeader(ReportLeaderMsg),
    /// See [`ControllerCommand::AllocateProducerId`].
    #[prost(message, tag = "6")]
    AllocateProducerId(AllocateProducerIdMsg),
    /// See [`ControllerCommand::AlterTopicConfig`].
    #[prost(message, tag = "7")]
    AlterTopicConfig(AlterTopicConfigMsg),
}

/// A broker registers.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RegisterBrokerMsg {
    #[prost(uint64, tag = "1")]
    pub node_id: u64,
    #[prost(string, tag = "2")]
    pub raft_addr: String,
    #[prost(string, tag = "3")]
    pub client_addr: String,
    #[prost(uint32, tag = "4")]
    pub max_replicas: u32,
}

/// A broker's liveness.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SetBrokerLiveMsg {
    #[prost(uint64, tag = "1")]
    pub node_id: u64,
    #[prost(bool, tag = "2")]
    pub live: bool,
}

/// A topic to create.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct CreateTopicMsg {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(uint32, tag = "2")]
    pub partitions: u32,
    #[prost(uint32, tag = "3")]
    pub replication_factor: u32,
    #[prost(uint64, optional, tag = "4")]
    pub retention_ms: Option<u64>,
    #[prost(uint64, optional, tag = "5")]
    pub retention_bytes: Option<u64>,
    #[prost(uint32, tag = "6")]
    pub max_message_bytes: u32,
    /// Absent in commands from before flush policies: fsync before every acknowledgement.
    #[prost(uint64, optional, tag = "7")]
    pub flush_interval_ms: Option<u64>,
    /// Absent in commands from before the setting, and for the default: producer.
    #[prost(string, optional, tag = "8")]
    pub compression: Option<String>,
}

/// A topic to delete.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DeleteTopicMsg {
    #[prost(string, tag = "1")]
    pub name: String,
}

/// A partition group's leader report.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ReportLeaderMsg {
    #[prost(string, tag = "1")]
    pub topic: String,
    #[prost(uint32, tag = "2")]
    pub partition: u32,
    #[prost(uint64, tag = "3")]
    pub group_id: u64,
    #[prost(uint64, tag = "4")]
    pub leader: u64,
    #[prost(uint64, tag = "5")]
    pub term: u64,
}

/// A producer id to allocate; the command has no fields.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct AllocateProducerIdMsg {}

impl From<&ControllerCommand> for CommandMsg {
    fn from(command: &ControllerCommand) -> CommandMsg {
        let kind = match command.clone() {
            ControllerCommand::RegisterBroker { node_id, raft_addr, client_addr, max_replicas } => {
                Kind::RegisterBroker(RegisterBrokerMsg { node_id: node_id.0, raft_addr, client_addr, max_replicas })
            }
            ControllerCommand::SetBrokerLive { node_id, live } => {
                Kind::SetBrokerLive(SetBrokerLiveMsg { node_id: node_id.0, live })
            }
            ControllerCommand::CreateTopic { name, config } => Kind::CreateTopic(create_topic_msg(name, config)),
            ControllerCommand::DeleteTopic { name } => Kind::DeleteTopic(DeleteTopicMsg { name }),
            ControllerCommand::ReportLeader { topic, partition, group_id, leader, term } => {
                Kind::ReportLeader(ReportLeaderMsg { topic, partition: partition.0, group_id, leader: leader.0, term })
            }
            ControllerCommand::AllocateProducerId => Kind::AllocateProducerId(AllocateProducerIdMsg {}),
            ControllerCommand::AlterTopicConfig { name, changes } => {
                Kind::AlterTopicConfig(AlterTopicConfigMsg::new(name, &changes))
            }
        };
        CommandMsg { kind: Some(kind) }
    }
}

fn create_topic_msg(name: String, c: TopicConfig) -> CreateTopicMsg {
    CreateTopicMsg {
        name,
        partitions: c.partitions,
        replication_factor: c.replication_factor,
        retention_ms: c.retention_ms,
        retention_bytes: c.retention_bytes,
        max_message_bytes: c.max_message_bytes,
        flush_interval_ms: c.flush_interval_ms,
        compression: compression_name(c.compression),
    }
}

impl TryFrom<CommandMsg> for ControllerCommand {
    type Error = DecodeError;

    fn try_from(msg: CommandMsg) -> Result<ControllerCommand, DecodeError> {
        Ok(match msg.kind.ok_or(DecodeError::UnknownVariant("command"))? {
            Kind::RegisterBroker(m) => ControllerCommand::RegisterBroker {
                node_id: NodeId(m.node_id),
                raft_addr: m.raft_addr,
                client_addr: m.client_addr,
                max_replicas: m.max_replicas,
            },
            Kind::SetBrokerLive(m) => ControllerCommand::SetBrokerLive { node_id: NodeId(m.node_id), live: m.live },
            Kind::CreateTopic(m) => ControllerCommand::CreateTopic {
                name: m.name,
                config: TopicConfig {
                    partitions: m.partitions,
                    replication_factor: m.replication_factor,
                    retention_ms: m.retention_ms,
                    retention_bytes: m.retention_bytes,
                    max_message_bytes: m.max_message_bytes,
                    flush_interval_ms: m.flush_interval_ms,
                    compression: compression_from("compression", m.compression)?,
                },
            },
            Kind::DeleteTopic(m) => ControllerCommand::DeleteTopic { name: m.name },
            Kind::ReportLeader(m) => ControllerCommand::ReportLeader {
                topic: m.topic,
                partition: PartitionId(m.partition),
                group_id: m.group_id,
                leader: NodeId(m.leader),
                term: m.term,
            },
            Kind::AllocateProducerId(AllocateProducerIdMsg {}) => ControllerCommand::AllocateProducerId,
            Kind::AlterTopicConfig(m) => m.into_command()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use sluice_common::record::{Compression, TopicCompression};

    use super::*;

    fn create(flush_interval_ms: Option<u64>) -> ControllerCommand {
        let config = TopicConfig { flush_interval_ms, ..TopicConfig::new(2, 3) };
        ControllerCommand::CreateTopic { name: "t".into(), config }
    }

    #[test]
    fn a_flush_interval_round_trips_and_its_absence_means_fsync_before_ack() {
        for flush in [None, Some(1), Some(TopicConfig::MAX_FLUSH_INTERVAL_MS)] {
            let raw = CommandMsg::from(&create(flush)).encode_to_vec();
            let back = ControllerCommand::try_from(CommandMsg::decode(raw.as_slice()).unwrap()).unwrap();
            assert_eq!(back, create(flush));
        }
        // A command logged by an older build has no tag 7.
        let Some(Kind::CreateTopic(mut old)) = CommandMsg::from(&create(Some(5))).kind else { panic!("create topic") };
        old.flush_interval_ms = None;
        let raw = CommandMsg { kind: Some(Kind::CreateTopic(old)) }.encode_to_vec();
        let back = ControllerCommand::try_from(CommandMsg::decode(raw.as_slice()).unwrap()).unwrap();
        assert_eq!(back, create(None));
    }

    fn decode(msg: CommandMsg) -> Result<ControllerCommand, DecodeError> {
        ControllerCommand::try_from(CommandMsg::decode(msg.encode_to_vec().as_slice()).unwrap())
    }

    #[test]
    fn a_compression_round_trips_and_its_absence_means_producer() {
        let zstd = TopicCompression::Codec(Compression::Zstd);
        let with = |compression| ControllerCommand::CreateTopic {
            name: "t".into(),
            config: TopicConfig { compression, ..TopicConfig::new(2, 3) },
        };
        for compression in [TopicCompression::Producer, zstd, TopicCompression::Codec(Compression::None)] {
            assert_eq!(decode(CommandMsg::from(&with(compression))), Ok(with(compression)));
        }
        // A command logged by an older build has no tag 8; the default is written the same way.
        let Some(Kind::CreateTopic(old)) = CommandMsg::from(&with(TopicCompression::Producer)).kind else {
            panic!("create topic")
        };
        assert_eq!(old.compression, None);
        let mut newer = CommandMsg::from(&with(zstd));
        if let Some(Kind::CreateTopic(m)) = &mut newer.kind {
            m.compression = Some("brotli".into());
        }
        let refused = decode(newer).unwrap_err().to_string();
        assert!(refused.contains("compression") && refused.contains("brotli"), "{refused}");
    }
}
