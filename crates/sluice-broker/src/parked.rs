//! Partition replicas stopped because their storage ran out of a resource (disk space, open
//! files, memory): kept on disk, not running, and started again once the resource is back.
//!
//! A replica runs out of disk space when the disk is full: it may start again once the free-space
//! guard says the disk has room (`disk.rs`). Open files and memory give no such signal, so
//! those replicas start again after a back-off that doubles each time the same replica is
//! parked again soon after, so a broker short of descriptors does not spin restarting replicas.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sluice_raft::Exhausted;

use crate::disk::DiskState;

/// The first wait before a parked replica starts again.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// The longest wait.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A replica parked again within this long of its last park waits twice as long as before.
const BACKOFF_MEMORY: Duration = Duration::from_secs(300);

/// The parked replicas of a broker, by group id.
#[derive(Debug, Default)]
pub(crate) struct Parked {
    entries: Mutex<BTreeMap<u64, Entry>>,
    /// Per group: when it was last parked and how long it waited then.
    history: Mutex<BTreeMap<u64, (Instant, Duration)>>,
}

#[derive(Debug)]
struct Entry {
    dir: PathBuf,
    reason: Exhausted,
    not_before: Instant,
}

impl Parked {
    /// Parks `group`, whose data is in `dir`, because its storage ran out of `reason`.
    pub fn park(&self, group: u64, dir: PathBuf, reason: Exhausted, now: Instant) {
        let mut history = self.history.lock().expect("parked lock");
        let wait = match history.get(&group) {
            Some((at, wait)) if now.duration_since(*at) < BACKOFF_MEMORY => (*wait * 2).min(BACKOFF_MAX),
            _ => BACKOFF_MIN,
        };
        history.insert(group, (now, wait));
        let entry = Entry { dir, reason, not_before: now + wait };
        self.entries.lock().expect("parked lock").insert(group, entry);
    }

    /// `None` if `group` is not parked; else whether it may start at `now`, given the disk.
    pub fn may_start(&self, group: u64, disk: Option<&DiskState>, now: Instant) -> Option<bool> {
        let entries = self.entries.lock().expect("parked lock");
        let entry = entries.get(&group)?;
        let resource_back = match entry.reason {
            Exhausted::DiskSpace => disk.is_none_or(DiskState::has_room_to_restart),
            Exhausted::FileDescriptors | Exhausted::Memory => true,
        };
        Some(resource_back && now >= entry.not_before)
    }

    /// `group` started again.
    pub fn started(&self, group: u64) {
        self.entries.lock().expect("parked lock").remove(&group);
    }

    /// Forgets the parked groups `keep` rejects (no longer assigned here); returns their data
    /// directories, for the caller to delete.
    pub fn forget_unless(&self, keep: impl Fn(u64) -> bool) -> Vec<(u64, PathBuf)> {
        let mut entries = self.entries.lock().expect("parked lock");
        let gone: Vec<u64> = entries.keys().copied().filter(|g| !keep(*g)).collect();
        self.history.lock().expect("parked lock").retain(|g, _| !gone.contains(g));
        gone.into_iter().filter_map(|g| entries.remove(&g).map(|e| (g, e.dir))).collect()
    }

    /// How many replicas are parked.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("parked lock").len()
    }

    /// Whether some replica waits for disk space.
    pub fn any_waiting_for_disk(&self) -> bool {
        self.entries.lock().expect("parked lock").values().any(|e| e.reason == Exhausted::DiskSpace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(room: bool) -> DiskState {
        let free = if room { 100 << 20 } else { 0 };
        DiskState { checked: true, free_bytes: free, total_bytes: 1 << 30, threshold_bytes: 0, full: false }
    }

    #[test]
    fn a_replica_short_of_disk_waits_for_room_and_one_short_of_files_for_its_backoff() {
        let parked = Parked::default();
        let t0 = Instant::now();
        parked.park(1, "/d/a".into(), Exhausted::DiskSpace, t0);
        parked.park(2, "/d/b".into(), Exhausted::FileDescriptors, t0);
        assert_eq!(parked.may_start(3, None, t0), None, "not parked");
        let later = t0 + BACKOFF_MIN;
        assert_eq!(parked.may_start(1, Some(&disk(false)), later), Some(false));
        assert_eq!(parked.may_start(1, Some(&disk(true)), later), Some(true));
        assert_eq!(parked.may_start(2, Some(&disk(false)), t0), Some(false), "backing off");
        assert_eq!(parked.may_start(2, Some(&disk(false)), later), Some(true));
        assert!(parked.any_waiting_for_disk());
        parked.started(1);
        assert!(!parked.any_waiting_for_disk() && parked.len() == 1);
    }

    #[test]
    fn parked_again_soon_waits_twice_as_long_up_to_the_maximum_and_deleted_groups_are_forgotten() {
        let parked = Parked::default();
        let mut now = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..9 {
            parked.park(7, "/d/g7".into(), Exhausted::Memory, now);
            let wait = (1..=60_000u64)
                .map(Duration::from_millis)
                .find(|w| parked.may_start(7, None, now + *w) == Some(true))
                .expect("starts within a minute");
            waits.push(wait);
            parked.started(7);
            now += wait;
        }
        assert_eq!((waits[0], waits[1], waits[2]), (BACKOFF_MIN, BACKOFF_MIN * 2, BACKOFF_MIN * 4));
        assert_eq!(waits[8], BACKOFF_MAX);
        parked.park(7, "/d/g7".into(), Exhausted::Memory, now + BACKOFF_MEMORY);
        assert_eq!(parked.may_start(7, None, now + BACKOFF_MEMORY + BACKOFF_MIN), Some(true), "a fresh start");
        assert_eq!(parked.forget_unless(|g| g != 7), vec![(7, PathBuf::from("/d/g7"))]);
        assert_eq!(parked.len(), 0);
    }
}
