//! Sluice's controller: the cluster metadata that replaces RocketMQ's NameServer, as a
//! deterministic state machine replicated by the controller's Raft group.
//!
//! [`Metadata`] implements [`sluice_raft::Fsm`]. Its state: the registered [`Broker`]s (addresses,
//! liveness, registration index), the [`Topic`]s (their [`TopicConfig`] and [`Partition`]s: replica
//! list with the preferred leader first, the reported leader and its term, and a Raft group id
//! unique in the cluster forever), and the next idempotent-producer id. It changes only by
//! applying a [`ControllerCommand`] (`RegisterBroker`, `SetBrokerLive`, `CreateTopic`,
//! `DeleteTopic`, `ReportLeader`, `AllocateProducerId`, `AlterTopicConfig` with its
//! [`TopicConfigChanges`]), which is answered with a
//! [`ControllerReply`]: what was done, or a [`Rejection`] with a stable code from [`codes`] and a
//! message saying what to do. Queries — [`Metadata::routes`],
//! [`Metadata::partitions_of`], [`Metadata::topic`], [`Metadata::brokers`] — serve clients and
//! brokers; [`Metadata::version`] tells a cached route table apart from a newer one.
//!
//! Commands, replies and snapshots are protobuf, written with prost's derive macros on
//! hand-written structs (the private `wire` module draws each layout), so they evolve by adding
//! fields. Replica assignment (the [`assignment`] module) balances replicas and preferred
//! leaders over the live brokers.
//!
//! What this crate is not: it does no I/O, keeps no clock and runs no Raft. Deciding that a
//! broker is dead (from heartbeats), proposing commands, starting and stopping partition groups,
//! and serving routes over gRPC belong to the broker; this crate only records and answers.

mod alter;
mod apply;
pub mod assignment;
mod broker;
pub mod codes;
mod command;
mod config;
mod error;
pub mod limits;
mod metadata;
mod reply;
mod routes;
#[cfg(test)]
mod testing;
mod topic;
mod wire;

pub use alter::{ConfigChange, TopicConfigChanges};
pub use assignment::BrokerLoad;
pub use broker::Broker;
pub use command::{ControllerCommand, DecodeError};
pub use config::TopicConfig;
pub use error::ControllerError;
pub use metadata::Metadata;
pub use reply::{Applied, ControllerReply, PartitionAssignment, Rejection};
pub use routes::{HostedPartition, LeaderRoute, PartitionRoute, ReplicaRoute, Routes, TopicRoute};
pub use topic::{CONTROLLER_GROUP_ID, FIRST_PARTITION_GROUP_ID, FIRST_PRODUCER_ID, Partition, Topic};
