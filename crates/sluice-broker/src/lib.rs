//! The Sluice broker: one process of a Sluice cluster.
//!
//! A [`Broker`] serves the peer (Raft) transport and is a voter of the controller group, whose
//! replicated [`sluice_controller::Metadata`] replaces RocketMQ's NameServer. A cluster forms from
//! the brokers' configuration files (`cluster-configs/`) with no manual step, and re-forms from
//! stored state after a restart.
//!
//! Each broker hosts the partition replicas the controller assigns it ([`Partitions`]): one
//! Raft group per partition, over the segment log, started and stopped as the metadata changes.
//!
//! Not yet here: the client API, leader reporting and balancing, metrics and the binary.

mod config;
mod controller;
mod node;
mod partitions;

pub use config::{BrokerConfig, ConfigError, PeerConfig, RaftTimings};
pub use controller::{BrokerStateMachine, ControllerGroup, ProposeError};
pub use node::{Broker, StartError};
pub use partitions::Partitions;
