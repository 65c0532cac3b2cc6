//! Types every Sluice crate shares: node, partition and offset identifiers, validated topic
//! names, the record batch format (messages as producers send them and Raft stores them), and
//! subscription filters (which of them a consumer receives).
//!
//! This crate is deliberately small and has no I/O. Identifiers are newtypes so that a Raft log
//! index, a message offset and a partition number can never be confused for one another.

pub mod delay;
pub mod filter;
mod ids;
pub mod record;
pub mod retry;
pub mod schedule;
mod setting;
mod topic;

pub use ids::{NodeId, Offset, PartitionId};
pub use setting::ConfigChange;
pub use topic::{InvalidTopicName, MAX_TOPIC_NAME_LEN, TopicName};
