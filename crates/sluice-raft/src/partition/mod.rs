//! A partition's replicated state: the commands its log carries, the idempotent-producer table,
//! the snapshot, and the state machine that applies committed entries.

mod command;
mod producers;
mod snapshot;
mod state_machine;

pub use command::{CommandError, PartitionCommand};
pub use producers::{Check, DEDUP_WINDOW, ProducerTable, WrittenBatch};
pub use snapshot::PartitionState;
pub use state_machine::{PartitionStateMachine, SnapshotBuilder, reject};
