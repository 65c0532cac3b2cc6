//! Delayed messages on the broker (docs/DELAYS.md, docs/adr/0009-delayed-messages.md): the
//! store every partition replica here keeps its pending messages in, and the releaser that,
//! on partitions this broker leads, proposes a release once messages are due.
//!
//! The replicated part — numbering, storing, releasing, cancelling — is the partition state
//! machine's delay lane (`sluice_raft::partition::delay`). What is here is only the leader's
//! timing: which partition is due when (`board.rs`), and the release round (`release.rs`).

mod board;
mod metrics;
mod release;

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_raft::partition::delay::{DelayLane, DelayStore};
use sluice_raft::partition::{WriteError, write};
use sluice_raft::typ::Raft;
use sluice_raft::{Command, Reply};
use tokio::sync::{Notify, OwnedMutexGuard, oneshot};

use crate::controller::BrokerStateMachine;

use self::board::Board;
pub use self::metrics::DelayMetrics;
pub(crate) use self::release::{run, wall_clock_ms};

/// The broker's delay store and release timing.
pub struct Delays {
    store: Arc<DelayStore>,
    board: Mutex<Board>,
    /// Wakes the releaser when a note is earlier than what it sleeps for.
    wake: Notify,
    /// Per group: held while a release or a cancel is proposed and applied, so the two never
    /// cross in the log (a release is built from what was applied before it).
    locks: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
    /// The longest a release holds, in bytes of its batch.
    release_bytes: usize,
    metrics: DelayMetrics,
    /// Per group this broker leads: the key `(due_ms, seq)` no pending message sorts before,
    /// and the term it holds in. Releases delete from the front of a group's key range; a scan
    /// from the start would step over every deletion RocksDB has not compacted away yet, which
    /// after a burst of a million makes each scan, and so each release, slower than the last.
    floors: Mutex<HashMap<u64, Floor>>,
}

/// See [`Delays::floors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Floor {
    term: u64,
    key: (u64, u64),
    /// The earliest due time noted since the last release scan began: a message accepted
    /// while a release is on its way may sort before the release's last message.
    noted_since_scan: u64,
}

impl Default for Floor {
    fn default() -> Floor {
        Floor { term: 0, key: (0, 0), noted_since_scan: u64::MAX }
    }
}

impl Delays {
    /// Opens the store under `dir`; releases hold at most `release_bytes` of messages each.
    pub fn open(dir: &Path, release_bytes: usize) -> io::Result<Arc<Delays>> {
        Ok(Arc::new(Delays {
            store: Arc::new(DelayStore::open(dir)?),
            board: Mutex::default(),
            wake: Notify::new(),
            locks: Mutex::default(),
            release_bytes,
            metrics: DelayMetrics::default(),
            floors: Mutex::default(),
        }))
    }

    /// The store.
    pub fn store(&self) -> &Arc<DelayStore> {
        &self.store
    }

    /// The releaser's metrics.
    pub fn metrics(&self) -> &DelayMetrics {
        &self.metrics
    }

    /// The delay lane of a replica of `group` starting here.
    pub fn lane(self: &Arc<Self>, group: u64) -> io::Result<DelayLane> {
        let delays = Arc::downgrade(self);
        let hook = Arc::new(move |group, due_ms| {
            if let Some(delays) = delays.upgrade() {
                delays.note(group, due_ms);
            }
        });
        Ok(DelayLane::open(Arc::clone(&self.store), group)?.on_due(hook))
    }

    /// Notes that `group` has a message due at `due_ms`.
    pub(crate) fn note(&self, group: u64, due_ms: u64) {
        {
            // Even with no floor for the current term yet: a release in flight must not raise
            // one past a message accepted while it was being built.
            let mut floors = self.floors.lock().expect("floors lock");
            let floor = floors.entry(group).or_default();
            floor.key = floor.key.min((due_ms, 0));
            floor.noted_since_scan = floor.noted_since_scan.min(due_ms);
        }
        let earlier = {
            let mut board = self.board.lock().expect("board lock");
            let before = board.first_due();
            board.note(group, due_ms);
            before.is_none_or(|b| due_ms < b)
        };
        if earlier {
            self.wake.notify_one();
        }
    }

    /// Where scans of `group`'s pending messages start while this broker leads it in `term`:
    /// a floor from another term is not trusted (a snapshot installed since may have brought
    /// messages below it).
    pub(crate) fn floor(&self, group: u64, term: u64) -> (u64, u64) {
        match self.floors.lock().expect("floors lock").get(&group) {
            Some(floor) if floor.term == term => floor.key,
            _ => (0, 0),
        }
    }

    /// [`Delays::floor`] for a release scan, which the next [`Delays::raise_floor`] ends.
    pub(crate) fn start_scan(&self, group: u64, term: u64) -> (u64, u64) {
        let mut floors = self.floors.lock().expect("floors lock");
        let floor = floors.entry(group).or_default();
        floor.noted_since_scan = u64::MAX;
        if floor.term == term { floor.key } else { (0, 0) }
    }

    /// After a release of everything before `to` (read by the scan [`Delays::start_scan`]
    /// began): the floor moves to `to`, or to the earliest due time noted since the scan began
    /// if that is before it.
    pub(crate) fn raise_floor(&self, group: u64, term: u64, to: (u64, u64)) {
        let mut floors = self.floors.lock().expect("floors lock");
        let floor = floors.entry(group).or_default();
        *floor = Floor { term, key: to.min((floor.noted_since_scan, 0)), noted_since_scan: u64::MAX };
    }

    /// The earliest due time of `group` (a message or a schedule's fire), led in `term`.
    pub(crate) fn next_due(&self, group: u64, term: u64) -> io::Result<Option<u64>> {
        self.store.next_due_from(group, self.floor(group, term))
    }

    /// Runs `read` of the store on the blocking pool: a scan may take milliseconds (more after
    /// a burst, until RocksDB compacts the deletions away), and a broker's runtime may have a
    /// single thread, which its heartbeats need.
    pub(crate) async fn off_runtime<T: Send + 'static>(
        self: &Arc<Self>,
        read: impl FnOnce(&Delays) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let delays = Arc::clone(self);
        tokio::task::spawn_blocking(move || read(&delays)).await.map_err(io::Error::other)?
    }

    /// The lock serialising the releases, fires, cancels and schedule changes of `group`.
    fn group_lock(&self, group: u64) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(self.locks.lock().expect("locks lock").entry(group).or_default())
    }

    /// The lock of `group` if no other release, cancel or schedule change of it is on its way.
    pub(crate) fn try_lock(&self, group: u64) -> Option<OwnedMutexGuard<()>> {
        self.group_lock(group).try_lock_owned().ok()
    }

    /// Proposes `command` to `group` (a release, fire, cancel or schedule change) while no other
    /// such write of the group is on its way, and holds the group until the entry is applied or
    /// the write fails, however long that takes: whatever is built next (a release, from the
    /// store) must see its effect. A release built beside a cancel still in flight would deliver
    /// a message the cancel answers `Cancelled` for; one beside an earlier release, twice.
    ///
    /// The caller waits up to `within` (`None` past it); the write goes on without it, still
    /// holding the group.
    pub(crate) async fn write_serialised(
        &self,
        group: u64,
        raft: &Raft<BrokerStateMachine>,
        command: Command,
        within: Duration,
    ) -> Option<Result<Reply, WriteError>> {
        let deadline = tokio::time::Instant::now() + within;
        let guard = tokio::time::timeout_at(deadline, self.group_lock(group).lock_owned()).await.ok()?;
        Self::write_holding(guard, raft, command, deadline.saturating_duration_since(tokio::time::Instant::now())).await
    }

    /// [`Delays::write_serialised`] with the group's lock already held.
    pub(crate) async fn write_holding(
        guard: OwnedMutexGuard<()>,
        raft: &Raft<BrokerStateMachine>,
        command: Command,
        within: Duration,
    ) -> Option<Result<Reply, WriteError>> {
        let (answer, answered) = oneshot::channel();
        let raft = raft.clone();
        tokio::spawn(async move {
            let written = write(&raft, command).await;
            drop(guard);
            let _ = answer.send(written);
        });
        tokio::time::timeout(within, answered).await.ok().and_then(Result::ok)
    }

    /// Forgets a replica that was deleted: its pending messages go with it.
    pub fn delete_group(&self, group: u64) -> io::Result<()> {
        self.board.lock().expect("board lock").forget(group);
        self.locks.lock().expect("locks lock").remove(&group);
        self.floors.lock().expect("floors lock").remove(&group);
        self.store.delete_group(group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The case a failure-injection run found: a new leader's first release was built with no
    /// floor yet while a message due before the release's last one was accepted; raising the
    /// floor past it left that message pending for good.
    #[test]
    fn a_message_accepted_while_a_release_is_built_keeps_the_floor_below_it() {
        let dir = tempfile::tempdir().unwrap();
        let delays = Delays::open(dir.path(), 1 << 20).unwrap();
        let (group, term) = (3, 33);
        assert_eq!(delays.start_scan(group, term), (0, 0), "no floor in a new term");
        delays.note(group, 100); // accepted, due at 100, while the release (up to (150, 8)) is on its way
        delays.raise_floor(group, term, (150, 8));
        assert_eq!(delays.floor(group, term), (100, 0), "not raised past the accepted message");

        assert_eq!(delays.start_scan(group, term), (100, 0));
        delays.raise_floor(group, term, (150, 8));
        assert_eq!(delays.floor(group, term), (150, 8), "raised when nothing was noted meanwhile");
        delays.note(group, 120);
        assert_eq!(delays.floor(group, term), (120, 0), "a note lowers it");
        delays.note(group, 900);
        assert_eq!(delays.floor(group, term), (120, 0), "a later one does not");
        assert_eq!(delays.floor(group, term + 1), (0, 0), "another term starts from the beginning");
    }
}
