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
        self.store.delete_group(group)
    }
}
