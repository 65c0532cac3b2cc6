//! The free-space guard: a broker watches its data directory's file system and, below a
//! threshold, refuses writes to every partition with a replica on it, while reads, consumer
//! groups and replication go on in the space left (docs/OPERATIONS.md, "A full disk").
//!
//! The threshold is the larger of `disk_min_free_bytes` and `disk_min_free_percent` of the file
//! system. What is below it is the reserve that Raft's own writes (votes, entries already
//! accepted, snapshots, the controller's metadata) and the consumer groups' commits live on, so
//! the cluster never deadlocks on its own bookkeeping. The state travels to every peer in the
//! node heartbeats ([`sluice_raft::liveness::DiskFull`]): a leader refuses a write that one of
//! its followers could not store, rather than let that follower run out mid-append.
//!
//! A write that hits ENOSPC anyway (another process filled the disk, or the guard is off) stops
//! only that replica's group; it is restarted once the disk has room again (`partitions.rs`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sluice_raft::Liveness;
use sluice_raft::liveness::DiskFull;
use sluice_storage::{DiskSpace, disk_space};
use tokio::sync::watch;

/// A replica stopped by ENOSPC restarts only once the disk has at least this much free (and is
/// not below the guard's threshold): room for a few segments' writes, not just one entry.
pub(crate) const RESTART_MIN_FREE_BYTES: u64 = 8 << 20;

/// The guard's settings, from the broker configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GuardConfig {
    pub min_free_bytes: u64,
    pub min_free_percent: u8,
    pub check_interval: Duration,
}

/// What the latest check found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskState {
    /// Whether a check has run yet.
    pub checked: bool,
    /// Bytes free for the broker.
    pub free_bytes: u64,
    /// The file system's size.
    pub total_bytes: u64,
    /// The threshold below which writes are refused (0: the guard is off).
    pub threshold_bytes: u64,
    /// Whether the broker refuses writes: free space fell below the threshold and has not
    /// climbed back above it by the hysteresis margin yet.
    pub full: bool,
}

impl DiskState {
    /// Whether a replica stopped by ENOSPC may start again.
    pub fn has_room_to_restart(&self) -> bool {
        self.checked && !self.full && self.free_bytes >= RESTART_MIN_FREE_BYTES.max(self.threshold_bytes)
    }

    /// The state after a check that found `space`. Once full, the disk counts as full until
    /// free space is a twentieth of the threshold above it, so that writes do not flap on and
    /// off while retention frees space a segment at a time.
    fn next(self, space: DiskSpace, config: &GuardConfig) -> DiskState {
        let percent = space.total_bytes / 100 * u64::from(config.min_free_percent);
        let threshold = config.min_free_bytes.max(percent);
        let resume_at = threshold.saturating_add(threshold / 20);
        let full = threshold > 0 && space.free_bytes < if self.full { resume_at } else { threshold };
        DiskState {
            checked: true,
            free_bytes: space.free_bytes,
            total_bytes: space.total_bytes,
            threshold_bytes: threshold,
            full,
        }
    }

    /// What the heartbeats carry: `Some` while full.
    fn as_heartbeat(&self) -> Option<DiskFull> {
        self.full.then_some(DiskFull { free_bytes: self.free_bytes, threshold_bytes: self.threshold_bytes })
    }
}

/// Checks `dir`'s free space every `config.check_interval` until `stop` turns true, publishing
/// each result on `state` and this node's verdict in `liveness` (and so in its heartbeats).
pub(crate) async fn watch_space(
    dir: PathBuf,
    config: GuardConfig,
    liveness: Arc<Liveness>,
    state: watch::Sender<DiskState>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(config.check_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
        let at = dir.clone();
        // statvfs can block on a sick disk: never on the runtime's threads.
        let space = tokio::task::spawn_blocking(move || disk_space(&at)).await;
        let space = match space {
            Ok(Ok(space)) => space,
            Ok(Err(e)) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(dir = %dir.display(), "cannot check free disk space (will retry): {e}");
                }
                continue;
            }
            Err(_) => continue,
        };
        failing = false;
        let before = *state.borrow();
        let now = before.next(space, &config);
        if now.full != before.full {
            log_change(&dir, &now);
        }
        // While full, the heartbeats carry the latest figures; once not, nothing.
        if now.full || before.full {
            liveness.update_own_resources(|r| r.disk_full = now.as_heartbeat());
        }
        state.send_replace(now);
    }
}

fn log_change(dir: &std::path::Path, now: &DiskState) {
    let (free, threshold) = (mib(now.free_bytes), mib(now.threshold_bytes));
    if now.full {
        tracing::warn!(
            dir = %dir.display(),
            "disk full: {free} free, below the {threshold} threshold; refusing writes to this broker's \
             partitions until space is freed (reads go on)"
        );
    } else {
        tracing::info!(dir = %dir.display(), "disk has room again ({free} free, threshold {threshold}); writes resume");
    }
}

/// `bytes` in MiB, for messages.
pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn config(min_free_bytes: u64, min_free_percent: u8) -> GuardConfig {
        GuardConfig { min_free_bytes, min_free_percent, check_interval: Duration::from_secs(1) }
    }

    fn space(free_mib: u64, total_mib: u64) -> DiskSpace {
        DiskSpace { free_bytes: free_mib * MIB, total_bytes: total_mib * MIB }
    }

    #[test]
    fn the_threshold_is_the_larger_of_the_bytes_and_the_percentage() {
        let s = DiskState::default().next(space(500, 1000), &config(100 * MIB, 5));
        assert_eq!((s.threshold_bytes, s.full), (100 * MIB, false));
        let s = DiskState::default().next(space(500, 100_000), &config(100 * MIB, 5));
        assert_eq!((s.threshold_bytes, s.full), (5000 * MIB, true));
    }

    #[test]
    fn full_below_the_threshold_and_room_again_only_past_the_margin() {
        let c = config(100 * MIB, 0);
        let full = DiskState::default().next(space(99, 1000), &c);
        assert!(full.full && !full.has_room_to_restart());
        assert_eq!(full.as_heartbeat(), Some(DiskFull { free_bytes: 99 * MIB, threshold_bytes: 100 * MIB }));
        let still = full.next(space(104, 1000), &c);
        assert!(still.full, "within the margin: still full");
        let room = still.next(space(106, 1000), &c);
        assert!(!room.full && room.has_room_to_restart() && room.as_heartbeat().is_none());
        assert!(!room.next(space(100, 1000), &c).full, "not full again until below the threshold");
    }

    #[test]
    fn a_zero_threshold_is_never_full_but_a_restart_still_waits_for_some_room() {
        let c = config(0, 0);
        let empty = DiskState::default().next(space(0, 1000), &c);
        assert!(!empty.full && !empty.has_room_to_restart());
        assert!(empty.next(space(8, 1000), &c).has_room_to_restart());
        assert!(!DiskState::default().has_room_to_restart(), "not before the first check");
    }
}
