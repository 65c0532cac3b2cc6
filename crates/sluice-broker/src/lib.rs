//! The Sluice broker: one process of a Sluice cluster.
//!
//! A [`Broker`] serves the peer (Raft) transport and is a voter of the controller group, whose
//! replicated [`sluice_controller::Metadata`] replaces RocketMQ's NameServer. A cluster forms from
//! the brokers' configuration files (`cluster-configs/`) with no manual step, and re-forms from
//! stored state after a restart.
//!
//! Not yet here: hosting partition groups, the client API, metrics and the binary (they follow).

mod config;
mod controller;
mod node;

pub use config::{BrokerConfig, ConfigError, PeerConfig, RaftTimings};
pub use controller::{BrokerStateMachine, ControllerGroup, ProposeError};
pub use node::{Broker, StartError};
