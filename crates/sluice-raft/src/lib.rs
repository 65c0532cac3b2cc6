//! Sluice's Raft layer: every partition is its own openraft group whose log is the partition's
//! segment log.
//!
//! - [`typ`]: the openraft type configuration of partition groups ([`PartitionConfig`]), the
//!   [`Command`] an entry carries and the [`Reply`] applying it produces. openraft is used
//!   behind these aliases only (its 0.10 line is pinned exactly; see docs/adr/0002).
//! - [`codec`]: Raft entries ⇄ storage entries, without copying commands.
//! - [`PartitionLogStore`]: openraft's `RaftLogStorage` over a `sluice_storage::Log`, made
//!   durable through the data directory's shared group-commit `Flusher`.
//! - [`partition`]: the partition state machine — offsets assigned at apply, idempotent-producer
//!   deduplication, small snapshots. It lives here rather than in the broker so that openraft's
//!   traits are implemented in this crate only.
//!
//! What this crate is not: it knows nothing of topics, clients or the controller; it replicates
//! and applies one partition's log, and does no disk I/O of its own beyond the storage crate's.

pub mod codec;
mod log_store;
pub mod partition;
pub mod typ;

pub use log_store::{MAX_REPLICATION_BYTES, PartitionLogReader, PartitionLogStore};
pub use partition::PartitionStateMachine;
pub use typ::{Command, PartitionConfig, Reply};
