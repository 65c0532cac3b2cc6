//! An in-memory state machine that only tracks what openraft's suite checks (last applied,
//! membership, snapshots). It is a test double for driving the log store, not the partition
//! state machine.

use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use openraft::entry::RaftEntry as _;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf};
use openraft::{EntryPayload, OptionalSend};
use sluice_raft::typ::{LogId, StoredMembership};
use sluice_raft::{PartitionConfig, Reply};

#[derive(Default)]
struct State {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    applied: u64,
    snapshot: Option<(SnapshotMetaOf<PartitionConfig>, Bytes)>,
}

/// See the module doc.
#[derive(Clone, Default)]
pub struct TestStateMachine(Arc<Mutex<State>>);

impl RaftSnapshotBuilder<PartitionConfig> for TestStateMachine {
    type SnapshotData = Bytes;

    async fn build_snapshot(&mut self) -> io::Result<SnapshotOf<PartitionConfig, Bytes>> {
        let mut s = self.0.lock().unwrap();
        let meta = SnapshotMeta { last_log_id: s.last_applied, last_membership: s.membership.clone() };
        let data = Bytes::copy_from_slice(&s.applied.to_le_bytes());
        s.snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot { meta, snapshot: data })
    }
}

impl RaftStateMachine<PartitionConfig> for TestStateMachine {
    type SnapshotData = Bytes;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let s = self.0.lock().unwrap();
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> io::Result<()>
    where
        S: Stream<Item = io::Result<EntryResponder<PartitionConfig>>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            {
                let mut s = self.0.lock().unwrap();
                s.last_applied = Some(entry.log_id());
                match entry.payload {
                    EntryPayload::Membership(m) => s.membership = StoredMembership::new(Some(entry.log_id), m),
                    EntryPayload::Normal(_) => s.applied += 1,
                    EntryPayload::Blank => {}
                }
            }
            if let Some(r) = responder {
                r.send(Reply::Done);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMetaOf<PartitionConfig>, snapshot: Bytes) -> io::Result<()> {
        let mut s = self.0.lock().unwrap();
        s.applied = u64::from_le_bytes(snapshot[..8].try_into().expect("8-byte snapshot"));
        s.last_applied = meta.last_log_id;
        s.membership = meta.last_membership.clone();
        s.snapshot = Some((meta.clone(), snapshot));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<SnapshotOf<PartitionConfig, Bytes>>> {
        Ok(self.0.lock().unwrap().snapshot.clone().map(|(meta, snapshot)| Snapshot { meta, snapshot }))
    }
}
