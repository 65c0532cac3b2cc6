//! The Raft peer transport: gRPC (tonic) between the Raft groups of different brokers.
//!
//! What it is (decision D5 in docs/ARCHITECTURE.md):
//! - **One connection per peer node.** [`PeerClients`] keeps one lazily connected
//!   `tonic::transport::Channel` per peer node id, shared by every group on this node; HTTP/2
//!   multiplexes the groups' RPCs over it. Every request carries its `group_id`.
//! - **Client side.** [`GroupNetworkFactory`] is openraft's `RaftNetworkFactory` for one group;
//!   its [`PeerNetwork`] implements openraft's network sub-traits directly: pipelined
//!   replication over a bidirectional `StreamAppend` stream, `Vote` and `PreVote`, snapshots as
//!   a client stream of ≤ 1 MiB chunks, `TransferLeader`, and an exponential backoff.
//! - **Server side.** [`PeerService`] answers the `RaftPeer` gRPC service by looking the group id
//!   up in a [`RaftRegistry`] and calling that group's `openraft::Raft`; [`serve`] runs it.
//! - **Bounded in time.** Every RPC has a deadline taken from openraft's
//!   `RPCOption::soft_ttl()`; connections send HTTP/2 keepalive PINGs even while idle, so a
//!   partitioned peer fails its RPCs within the keepalive timeout instead of hanging. Failures
//!   map to `Unreachable` (back off), `Timeout` or `Network` (retry) as described in `error.rs`.
//!
//! What it is not: it does not batch openraft's heartbeats across groups (the node-level
//! `NodeHeartbeat` of [`crate::liveness`] replaces them for partition groups), does no TLS or
//! authentication, and knows nothing of partitions or commands — entry payloads travel as the
//! storage bytes [`crate::codec`] produces, never copied or decoded.
//!
//! The wire protocol is `proto/peer.proto` (package `sluice.peer.v1`); [`pb`] is its generated
//! code, and `convert.rs` the one place where wire types become openraft types.

mod clients;
mod config;
mod convert;
mod error;
mod faults;
mod network;
mod registry;
mod server;
mod service;
mod snapshot;
mod stream_append;

/// Generated protobuf messages and the `RaftPeer` client and server of `proto/peer.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("sluice.peer.v1");
}

pub use clients::PeerClients;
pub use config::{TransportConfig, TransportConfigError};
pub use error::WireError;
pub use faults::{Fault, FaultCounts, Faults};
pub use network::{GroupNetworkFactory, PeerNetwork};
pub use registry::{GroupStateMachine, RaftRegistry};
pub use server::{bind, serve};
pub use service::PeerService;
/// A bound peer listener, as [`bind`] returns it.
pub use tonic::transport::server::TcpIncoming;
