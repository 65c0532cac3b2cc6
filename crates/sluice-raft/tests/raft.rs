//! Tests of the Raft layer, in one binary: the partition log store and state machine against
//! openraft's conformance suite, and a partition group running end to end.

#[path = "raft/log_store.rs"]
mod log_store;
#[path = "raft/partition.rs"]
mod partition;
