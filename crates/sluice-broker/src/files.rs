//! The broker's file budget: a partition replica in use holds a descriptor, and a broker that runs
//! out of descriptors cannot start replicas, open segments or accept connections. So the broker
//! raises its soft open-file limit to the hard limit when it starts (as Kafka's and Redpanda's
//! service units ask operators to), logs the budget, and exposes the limit and what is in use
//! as metrics.

use std::io;

/// Raises the soft open-file limit (RLIMIT_NOFILE) to the hard limit; returns the limit now in
/// force.
pub fn raise_open_file_limit() -> io::Result<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let (Some(soft), hard) = (limit.current, limit.maximum) else { return Ok(u64::MAX) };
    let target = hard.unwrap_or(u64::MAX);
    if soft >= target {
        return Ok(soft);
    }
    setrlimit(Resource::Nofile, rustix::process::Rlimit { current: Some(target), maximum: hard })?;
    Ok(target)
}

/// The soft open-file limit in force; `None` when unlimited.
pub fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Descriptors a partition replica may hold: one, its active segment's `.log` while it is
/// written or read. An idle replica holds none: its log takes no lock file (the broker's one
/// lock on its data directory covers every log), its index files are memory maps, and its
/// `.log` descriptor closes after 10 to 20 s unused (`sluice_storage::DEFAULT_IDLE_CLOSE`). The
/// budget still counts the one, so that it holds when every replica is written at once: a
/// broker whose replicas all wake up together (a restart opens every log; a burst across every
/// partition) must not run out, and counting idle replicas as free would let it.
pub const FILES_PER_REPLICA: u64 = 1;
/// Descriptors kept for everything else: the segment cache (at most 256 sealed segments' `.log`
/// descriptors at its default bound), a segment rolled past and awaiting its seal (sealed by the
/// next fsync, so only a few at a time), client and peer connections, the controller's store,
/// the data directory's lock and the metrics endpoint.
pub const RESERVED_FILES: u64 = 1_024;
/// How many partition replicas an open-file `limit` lets a broker host (0: no limit).
pub fn replica_budget(limit: Option<u64>) -> u32 {
    match limit {
        None => 0,
        Some(limit) => {
            u32::try_from(limit.saturating_sub(RESERVED_FILES) / FILES_PER_REPLICA).unwrap_or(u32::MAX).max(1)
        }
    }
}

/// How many files this process has open, counted in `/proc/self/fd` (Linux).
pub fn open_files() -> Option<u64> {
    // The directory handle reading it is one of the entries: not counted.
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count().saturating_sub(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replica_budget_leaves_the_reserve_and_counts_each_replicas_files() {
        assert_eq!(replica_budget(None), 0, "no limit");
        assert_eq!(replica_budget(Some(20_000)), ((20_000 - RESERVED_FILES) / FILES_PER_REPLICA) as u32);
        assert_eq!(replica_budget(Some(100)), 1, "a tiny limit still hosts one");
    }

    #[test]
    fn the_limit_after_raising_is_the_limit_in_force_and_open_files_are_counted_below_it() {
        let raised = raise_open_file_limit().expect("raise the limit");
        assert_eq!(open_file_limit().unwrap_or(u64::MAX), raised);
        let held: Vec<std::fs::File> = (0..50).map(|_| std::fs::File::open("/proc/self/stat").unwrap()).collect();
        let during = open_files().expect("/proc/self/fd");
        // Other tests open and close files meanwhile: ours and the standard streams at least.
        assert!(during >= 53 && during < raised, "{during} open, limit {raised}");
        drop(held);
    }
}
