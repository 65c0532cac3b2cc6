//! Sluice's failure-injection suite (`jepsen/README.md`): a runner that starts a three-node
//! cluster from the project's binaries, drives a workload through the SDK while a seeded
//! schedule of faults is injected, heals, drains, and checks the recorded history for lost,
//! duplicated, reordered or diverging messages.

pub mod checker;
pub mod history;
pub mod report;

pub mod disk;
pub mod faults;
pub mod net;
pub mod nodes;
pub mod probe;
pub mod proxy;
pub mod run;
pub mod schedule;
pub mod unfsynced;
pub mod workload;
