//! The process-level test harness: what the system tests (`system/`) use to run Sluice the way
//! an operator does, as separate `sluice-broker` processes spoken to by the SDK and the `sluice`
//! CLI over loopback.
//!
//! - [`binaries()`] builds `sluice-broker` and `sluice` once per test run, with the running
//!   test's profile and target directory.
//! - [`Cluster`] starts brokers on free loopback ports with generated configurations and
//!   temporary data directories, waits until they serve, and SIGKILLs, SIGTERMs and restarts
//!   them; it kills every broker it started when dropped, and prints their logs if a test failed.
//! - [`cli`] runs the `sluice` binary with a time limit and captures what it printed.
//! - [`replicas`] reads a stopped broker's partition logs from its data directory.
//! - [`read_topic`] reads a whole topic back with the SDK consumer; [`within`] bounds a test.
//! - [`groups`] runs consumer-group members as tasks that can be closed or crashed, and
//!   [`groups::eventually`] waits for a condition.
//!
//! docs/TESTING.md says what the tests cover and how to run them.

mod binaries;
pub mod cli;
mod cluster;
pub mod groups;
mod ports;
pub mod replicas;
mod sdk;

pub use binaries::{Binaries, binaries, workspace_root};
pub use cluster::{Cluster, NodeId};
pub use ports::free_ports;
pub use sdk::{read_topic, read_topic_filtered, within};
