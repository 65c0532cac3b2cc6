//! Deterministic state machines replicated by a Raft group of their own, for small, rarely
//! written state (docs/ARCHITECTURE.md §Shape: features are replicated state machines): the
//! controller's metadata. Consumer groups took the other form of the same idea, records in a
//! partition of an internal topic (docs/adr/0005). An [`Fsm`] knows nothing of Raft; this crate
//! replicates its commands, applies them in log order on every member, and snapshots it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf};
use openraft::{EntryPayload, OptionalSend};

use crate::snapshot_file;
use crate::typ::{LogId, PartitionConfig, Reply, StoredMembership};

/// A deterministic state machine over opaque commands.
///
/// Every member applies the same commands in the same order and must end in the same state:
/// `apply` may depend only on the state, the command and the log index — never on clocks,
/// randomness, or anything local to the node. A command that cannot be applied is answered
/// with an error reply, not a panic, so every member rejects it alike.
pub trait Fsm: Send + Sync + 'static {
    /// Applies the command committed at log `index` and returns the reply for its proposer.
    fn apply(&mut self, index: u64, command: &[u8]) -> Bytes;

    /// The whole state, encoded.
    fn snapshot(&self) -> Bytes;

    /// Replaces the state with one produced by [`Fsm::snapshot`]; `Err` says why it cannot.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String>;
}

/// Read access to an [`Fsm`] that a Raft group is applying to, for queries that need not go
/// through Raft (a member's view: as fresh as what it has applied).
pub struct FsmHandle<F>(Arc<RwLock<F>>);

impl<F> Clone for FsmHandle<F> {
    fn clone(&self) -> Self {
        FsmHandle(Arc::clone(&self.0))
    }
}

impl<F: Fsm> FsmHandle<F> {
    /// Runs `f` on the state as last applied.
    pub fn read<T>(&self, f: impl FnOnce(&F) -> T) -> T {
        f(&self.0.read().expect("fsm lock poisoned"))
    }
}

/// openraft's state machine over an [`Fsm`]: applies normal entries' commands, tracks the last
/// applied position and membership, and keeps the latest snapshot in a state file in `dir`.
pub struct FsmStateMachine<F> {
    fsm: Arc<RwLock<F>>,
    dir: PathBuf,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    snapshot: Option<(SnapshotMetaOf<PartitionConfig>, Bytes)>,
}

impl<F: Fsm> FsmStateMachine<F> {
    /// Starts from the snapshot stored in `dir`, if any, restoring `fsm` from it; openraft
    /// re-applies the entries after it.
    pub fn open(dir: &Path, mut fsm: F) -> io::Result<FsmStateMachine<F>> {
        let stored = snapshot_file::load(dir)?;
        let (mut last_applied, mut membership) = (None, StoredMembership::default());
        if let Some((meta, data)) = &stored {
            fsm.restore(data).map_err(|e| invalid(dir, &e))?;
            (last_applied, membership) = (meta.last_log_id, meta.last_membership.clone());
        }
        let fsm = Arc::new(RwLock::new(fsm));
        Ok(FsmStateMachine { fsm, dir: dir.to_owned(), last_applied, membership, snapshot: stored })
    }

    /// A handle for reading the state.
    pub fn handle(&self) -> FsmHandle<F> {
        FsmHandle(Arc::clone(&self.fsm))
    }
}

impl<F: Fsm> RaftStateMachine<PartitionConfig> for FsmStateMachine<F> {
    type SnapshotData = Bytes;
    type SnapshotBuilder = FsmSnapshotBuilder;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> io::Result<()>
    where
        S: Stream<Item = io::Result<EntryResponder<PartitionConfig>>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            self.last_applied = Some(entry.log_id);
            let reply = match entry.payload {
                EntryPayload::Normal(command) => {
                    Reply::Fsm(self.fsm.write().expect("fsm lock poisoned").apply(entry.log_id.index, &command.body()))
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    Reply::Done
                }
                EntryPayload::Blank => Reply::Done,
            };
            if let Some(r) = responder {
                r.send(reply);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> FsmSnapshotBuilder {
        let meta = SnapshotMeta { last_log_id: self.last_applied, last_membership: self.membership.clone() };
        let data = self.fsm.read().expect("fsm lock poisoned").snapshot();
        FsmSnapshotBuilder { dir: self.dir.clone(), meta, data }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMetaOf<PartitionConfig>, data: Bytes) -> io::Result<()> {
        self.fsm.write().expect("fsm lock poisoned").restore(&data).map_err(|e| invalid(&self.dir, &e))?;
        snapshot_file::store(&self.dir, meta, &data)?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.snapshot = Some((meta.clone(), data));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<SnapshotOf<PartitionConfig, Bytes>>> {
        if let Some(stored) = snapshot_file::load(&self.dir)? {
            self.snapshot = Some(stored);
        }
        Ok(self.snapshot.clone().map(|(meta, snapshot)| Snapshot { meta, snapshot }))
    }
}

/// Stores a snapshot captured when the builder was made.
pub struct FsmSnapshotBuilder {
    dir: PathBuf,
    meta: SnapshotMetaOf<PartitionConfig>,
    data: Bytes,
}

impl RaftSnapshotBuilder<PartitionConfig> for FsmSnapshotBuilder {
    type SnapshotData = Bytes;

    async fn build_snapshot(&mut self) -> io::Result<SnapshotOf<PartitionConfig, Bytes>> {
        snapshot_file::store(&self.dir, &self.meta, &self.data)?;
        Ok(Snapshot { meta: self.meta.clone(), snapshot: self.data.clone() })
    }
}

fn invalid(dir: &Path, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("state machine snapshot in {}: {why}", dir.display()))
}
