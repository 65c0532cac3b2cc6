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

/// Memory maps a partition replica holds: its active segment's three indexes.
pub const MAPS_PER_REPLICA: u64 = 3;
/// Memory maps kept for everything else: the segment cache's sealed segments (three each, 256
/// segments), libraries, thread stacks and the controller's store.
pub const RESERVED_MAPS: u64 = 2_048;
/// Memory a partition replica costs, for the default capacity: an idle one measured about
/// 90 KiB of RSS at 10,000 per broker (its Raft group's tasks and queues, its log's state and
/// index pages); a written one holds more while it is busy (docs/BENCHMARKS.md).
pub const MEMORY_PER_REPLICA: u64 = 128 << 10;
/// The share of the machine's (or its cgroup's) memory the default capacity lets replicas take:
/// the rest is the page cache's, which serves consumers, and the heap's for requests in flight.
pub const MEMORY_SHARE_PERCENT: u64 = 50;

/// What bounds a broker's default capacity, and how many replicas each bound allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// By the open-file limit (`None`: unlimited).
    pub files: Option<u32>,
    /// By `vm.max_map_count` (`None`: unknown).
    pub maps: Option<u32>,
    /// By memory (`None`: unknown).
    pub memory: Option<u32>,
}

impl Capacity {
    /// This process's, from its open-file limit, `/proc/sys/vm/max_map_count` and the memory of
    /// the machine or its cgroup, whichever is smaller.
    pub fn of_this_process() -> Capacity {
        Capacity::from_limits(open_file_limit(), max_map_count(), memory_limit())
    }

    /// The capacity under these limits (each `None` when unknown or unlimited).
    pub fn from_limits(files: Option<u64>, maps: Option<u64>, memory_bytes: Option<u64>) -> Capacity {
        let count = |n: u64| u32::try_from(n).unwrap_or(u32::MAX).max(1);
        Capacity {
            files: files.map(|_| replica_budget(files)),
            maps: maps.map(|m| count(m.saturating_sub(RESERVED_MAPS) / MAPS_PER_REPLICA)),
            memory: memory_bytes.map(|b| count(b / MEMORY_PER_REPLICA * MEMORY_SHARE_PERCENT / 100)),
        }
    }

    /// The smallest bound; 0 when none is known.
    pub fn replicas(&self) -> u32 {
        [self.files, self.maps, self.memory].into_iter().flatten().min().unwrap_or(0)
    }
}

/// The kernel's limit on one process's memory maps.
fn max_map_count() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count").ok()?.trim().parse().ok()
}

/// The memory this process may use: its cgroup's `memory.max` if set, else the machine's.
fn memory_limit() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok().and_then(|s| s.trim().parse::<u64>().ok());
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let total = meminfo.as_deref().and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib << 10)
    });
    match (cgroup, total) {
        (Some(c), Some(t)) => Some(c.min(t)),
        (c, t) => c.or(t),
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
    fn the_capacity_is_the_tightest_of_files_maps_and_memory() {
        let c = Capacity::from_limits(Some(20_000), Some(65_530), Some(24 << 30));
        assert_eq!(c.files, Some(18_976));
        assert_eq!(c.maps, Some(((65_530 - RESERVED_MAPS) / MAPS_PER_REPLICA) as u32));
        assert_eq!(c.memory, Some(((24u64 << 30) / MEMORY_PER_REPLICA * MEMORY_SHARE_PERCENT / 100) as u32));
        assert_eq!(c.replicas(), 18_976, "files bind first here");
        let small = Capacity::from_limits(Some(1 << 20), Some(65_530), Some(1 << 30));
        assert_eq!(small.replicas(), 4_096, "half of 1 GiB at 128 KiB a replica");
        let maps = Capacity::from_limits(Some(1 << 20), Some(30_000), None);
        assert_eq!(maps.replicas(), 9_317, "the map limit binds");
        assert_eq!(Capacity::from_limits(None, None, None).replicas(), 0, "nothing known: no limit");
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
