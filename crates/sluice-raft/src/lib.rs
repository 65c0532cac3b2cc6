//! Sluice's Raft layer: every partition is its own openraft group whose log is the partition's
//! segment log.
//!
//! - [`typ`]: the openraft type configuration of partition groups ([`PartitionConfig`]), the
//!   [`Command`] an entry carries and the [`Reply`] applying it produces. openraft is used
//!   behind these aliases only (its 0.10 line is pinned exactly; see docs/adr/0002).
//! - [`codec`]: Raft entries ⇄ storage entries, without copying commands.
//! - [`PartitionLogStore`]: openraft's `RaftLogStorage` over a `sluice_storage::Log`, made
//!   durable through the data directory's shared group-commit `Flusher`.
//! - [`Fsm`]: a deterministic state machine over opaque commands, replicated by a Raft group
//!   (the controller's metadata), with its openraft adapter [`FsmStateMachine`] and a RocksDB
//!   log store, [`RocksLogStore`], for such small, rarely written groups.
//! - [`partition`]: the partition state machine — offsets assigned at apply, idempotent-producer
//!   deduplication, small snapshots. It lives here rather than in the broker so that openraft's
//!   traits are implemented in this crate only.
//! - [`transport`]: the Raft peer transport — one gRPC channel per peer node shared by all
//!   groups ([`PeerClients`]), openraft's network over it, and the [`PeerService`] that routes
//!   incoming RPCs by group id through a [`RaftRegistry`].
//!
//! What this crate is not: it knows nothing of topics, clients or the controller; it replicates
//! and applies one partition's log, and does no disk I/O of its own beyond the storage crate's.

pub mod codec;
mod exhaustion;
pub mod fsm;
pub mod liveness;
mod log_store;
mod node_sm;
pub mod partition;
mod rocks_store;
mod snapshot_file;
pub mod tail_cache;
pub mod transport;
pub mod typ;

pub use exhaustion::{Exhausted, Exhaustion};
pub use fsm::{Fsm, FsmHandle, FsmSnapshotBuilder, FsmStateMachine};
pub use liveness::{Liveness, LivenessConfig, LivenessDriver};
pub use log_store::{MAX_REPLICATION_BYTES, PartitionLogReader, PartitionLogStore};
pub use node_sm::{NodeSnapshotBuilder, NodeStateMachine};
pub use partition::PartitionStateMachine;
pub use rocks_store::{ReleaseToken, RocksLogStore};
pub use transport::{GroupNetworkFactory, PeerClients, PeerService, RaftRegistry, TransportConfig};
pub use typ::{Command, PartitionConfig, Reply};
