//! Sluice's Raft layer: every partition is its own openraft group whose log is the partition's
//! segment log.
//!
//! - [`typ`]: the openraft type configuration of partition groups ([`PartitionConfig`]), the
//!   [`Command`] an entry carries and the [`Reply`] applying it produces. openraft is used
//!   behind these aliases only (its 0.10 line is pinned exactly; see docs/adr/0002).
//! - [`codec`]: Raft entries ⇄ storage entries, without copying commands.
//! - [`PartitionLogStore`]: openraft's `RaftLogStorage` over a `sluice_storage::Log`, made
//!   durable through the data directory's shared group-commit `Flusher`.
//!
//! This crate does not interpret commands (the broker's partition state machine does), and it
//! does no I/O of its own beyond the storage crate's.

pub mod codec;
mod log_store;
pub mod typ;

pub use log_store::{MAX_REPLICATION_BYTES, PartitionLogReader, PartitionLogStore};
pub use typ::{Command, PartitionConfig, Reply};
