//! In-memory test doubles for one Raft group's log store and state machine, so the transport
//! tests exercise the network and not the disk. Not durable, not fast, not for production.
//!
//! The state machine keeps every applied command body in order; its snapshot is those bodies,
//! each prefixed by its u32 little-endian length, so a snapshot of a few hundred 8 KiB commands
//! spans several 1 MiB chunks on the wire.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{Stream, TryStreamExt};
use openraft::entry::RaftEntry as _;
use openraft::storage::{EntryResponder, IOFlushed, RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf};
use openraft::{EntryPayload, LogState, OptionalSend, RaftLogReader, Snapshot, SnapshotMeta};
use sluice_raft::typ::{LogId, RaftEntry, StoredMembership, Vote};
use sluice_raft::{PartitionConfig, Reply};

type C = PartitionConfig;

#[derive(Default)]
struct LogInner {
    entries: BTreeMap<u64, RaftEntry>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    purged: Option<LogId>,
}

/// An in-memory Raft log; clones share it (the store and its readers).
#[derive(Clone, Default)]
pub struct MemLog(Arc<Mutex<LogInner>>);

impl MemLog {
    fn lock(&self) -> MutexGuard<'_, LogInner> {
        self.0.lock().expect("log poisoned")
    }

    /// The index of the first entry still held, if any.
    pub fn first_index(&self) -> Option<u64> {
        self.lock().entries.keys().next().copied()
    }
}

impl RaftLogReader<C> for MemLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<RaftEntry>, io::Error> {
        Ok(self.lock().entries.range(range).map(|(_, e)| e.clone()).collect())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.lock().vote)
    }
}

impl RaftLogStorage<C> for MemLog {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let inner = self.lock();
        let last = inner.entries.values().next_back().map(|e| e.log_id()).or(inner.purged);
        Ok(LogState { last_purged_log_id: inner.purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.lock().vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = RaftEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        {
            let mut inner = self.lock();
            for entry in entries {
                inner.entries.insert(entry.index(), entry);
            }
        }
        callback.io_completed(Ok(()));
        Ok(())
    }

    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), io::Error> {
        let from = last.map_or(0, |l| l.index + 1);
        self.lock().entries.split_off(&from);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let mut inner = self.lock();
        inner.purged = Some(log_id);
        inner.entries = inner.entries.split_off(&(log_id.index + 1));
        Ok(())
    }
}

#[derive(Default)]
struct SmInner {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    commands: Vec<Bytes>,
    snapshot: Option<(SnapshotMetaOf<C>, Bytes)>,
    installed_snapshots: u64,
}

/// An in-memory state machine that records every command body; clones share it.
#[derive(Clone, Default)]
pub struct MemSm(Arc<Mutex<SmInner>>);

impl MemSm {
    fn lock(&self) -> MutexGuard<'_, SmInner> {
        self.0.lock().expect("state machine poisoned")
    }

    /// Every command body applied (or restored from a snapshot), in log order.
    pub fn commands(&self) -> Vec<Bytes> {
        self.lock().commands.clone()
    }

    /// Size of the current snapshot's data (0 without one).
    pub fn snapshot_bytes(&self) -> usize {
        self.lock().snapshot.as_ref().map_or(0, |(_, data)| data.len())
    }

    /// How many snapshots were installed from a leader.
    pub fn installed_snapshots(&self) -> u64 {
        self.lock().installed_snapshots
    }
}

fn encode_commands(commands: &[Bytes]) -> Bytes {
    let mut b = BytesMut::with_capacity(commands.iter().map(|c| 4 + c.len()).sum());
    for c in commands {
        b.put_u32_le(c.len() as u32);
        b.put_slice(c);
    }
    b.freeze()
}

fn decode_commands(mut data: Bytes) -> io::Result<Vec<Bytes>> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "truncated test snapshot");
    let mut commands = Vec::new();
    while data.has_remaining() {
        if data.len() < 4 {
            return Err(bad());
        }
        let len = data.get_u32_le() as usize;
        if data.len() < len {
            return Err(bad());
        }
        commands.push(data.split_to(len));
    }
    Ok(commands)
}

impl RaftSnapshotBuilder<C> for MemSm {
    type SnapshotData = Bytes;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Bytes>, io::Error> {
        let mut inner = self.lock();
        let meta = SnapshotMeta { last_log_id: inner.last_applied, last_membership: inner.membership.clone() };
        let data = encode_commands(&inner.commands);
        inner.snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot { meta, snapshot: data })
    }
}

impl RaftStateMachine<C> for MemSm {
    type SnapshotData = Bytes;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let inner = self.lock();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id();
            let reply = {
                let mut inner = self.lock();
                inner.last_applied = Some(log_id);
                match entry.payload {
                    EntryPayload::Blank => Reply::Done,
                    EntryPayload::Normal(command) => {
                        inner.commands.push(command.body());
                        Reply::Appended { base_offset: inner.commands.len() as u64 - 1, count: 1 }
                    }
                    EntryPayload::Membership(m) => {
                        inner.membership = StoredMembership::new(Some(log_id), m);
                        Reply::Done
                    }
                }
            };
            if let Some(responder) = responder {
                responder.send(reply);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMetaOf<C>, snapshot: Bytes) -> Result<(), io::Error> {
        let commands = decode_commands(snapshot.clone())?;
        let mut inner = self.lock();
        inner.commands = commands;
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        inner.snapshot = Some((meta.clone(), snapshot));
        inner.installed_snapshots += 1;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<C, Bytes>>, io::Error> {
        Ok(self.lock().snapshot.clone().map(|(meta, snapshot)| Snapshot { meta, snapshot }))
    }
}
