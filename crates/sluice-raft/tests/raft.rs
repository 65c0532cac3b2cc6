//! Tests of the Raft layer, in one binary: the partition log store and state machine against
//! openraft's conformance suite, and a partition group running end to end; the RocksDB log
//! store with the generic `Fsm` adapter, likewise; and the gRPC peer transport between three
//! in-process nodes.

#[path = "raft/fsm_store.rs"]
mod fsm_store;
#[path = "raft/log_store.rs"]
mod log_store;
#[path = "raft/partition.rs"]
mod partition;
#[path = "raft/transport.rs"]
mod transport;
