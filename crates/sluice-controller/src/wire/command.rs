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
//!   }
//! }
//! message RegisterBrokerMsg { uint64 node_id = 1; string raft_addr = 2; string client_addr = 3; }
//! message SetBrokerLiveMsg  { uint64 node_id = 1; bool live = 2; }
//! message CreateTopicMsg    { string name = 1; uint32 partitions = 2; uint32 replication_factor = 3;
//!                             optional uint64 retention_ms = 4; optional uint64 retention_bytes = 5;
//!                             uint32 max_message_bytes = 6; }
//! message DeleteTopicMsg    { string name = 1; }
//! message ReportLeaderMsg   { string topic = 1; uint32 partition = 2; uint64 group_id = 3;
//!                             uint64 leader = 4; uint64 term = 5; }
//! ```

use sluice_common::{NodeId, PartitionId};

use crate::command::{ControllerCommand, DecodeError};
use crate::config::TopicConfig;

/// One controller command.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct CommandMsg {
    /// Which command; `None` when empty or of a kind this build does not know.
    #[prost(oneof = "Kind", tags = "1, 2, 3, 4, 5")]
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

impl From<&ControllerCommand> for CommandMsg {
    fn from(command: &ControllerCommand) -> CommandMsg {
        let kind = match command.clone() {
            ControllerCommand::RegisterBroker { node_id, raft_addr, client_addr } => {
                Kind::RegisterBroker(RegisterBrokerMsg { node_id: node_id.0, raft_addr, client_addr })
            }
            ControllerCommand::SetBrokerLive { node_id, live } => {
                Kind::SetBrokerLive(SetBrokerLiveMsg { node_id: node_id.0, live })
            }
            ControllerCommand::CreateTopic { name, config } => Kind::CreateTopic(create_topic_msg(name, config)),
            ControllerCommand::DeleteTopic { name } => Kind::DeleteTopic(DeleteTopicMsg { name }),
            ControllerCommand::ReportLeader { topic, partition, group_id, leader, term } => {
                Kind::ReportLeader(ReportLeaderMsg { topic, partition: partition.0, group_id, leader: leader.0, term })
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
        })
    }
}
