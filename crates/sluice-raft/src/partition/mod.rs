//! A partition's replicated state: the commands its log carries, the idempotent-producer table,
//! the snapshot, the state machine that applies committed entries and publishes the high
//! watermark, writing commands through the leader, and reading committed batches back for
//! consumers.

mod command;
pub mod delay;
mod producers;
mod read;
pub mod retained;
mod snapshot;
mod state_machine;
mod txns;
mod watermark;
mod write;

pub use command::{CommandError, LeaderStamp, PRODUCE_OVERHEAD_BYTES, PartitionCommand, produce_batch};
pub use producers::{
    Check, DEDUP_WINDOW, DEFAULT_MAX_PRODUCERS, DEFAULT_PRODUCER_ID_EXPIRATION_MS, ProducerTable, WrittenBatch,
};
pub use read::{CommittedBatch, read_committed};
pub use retained::{RetainedRange, RetainedReader, RetainedWriter, range_to_send};
pub use snapshot::PartitionState;
pub use state_machine::{PartitionStateMachine, SnapshotBuilder, reject};
pub use txns::{AbortedRange, MarkerOutcome, OpenTxn, Stable, TxnIndex};
pub use watermark::{LogStart, high_watermark_of, log_start_of};
pub use write::{PendingWrite, WriteError, confirm_lease, lease_fresh, submit, write};
