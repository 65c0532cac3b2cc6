//! [`NodeStateMachine`]: one state machine type for every group a node hosts, so a single
//! transport registry routes them all. It delegates to the partition state machine or to a
//! replicated [`Fsm`] (the controller's metadata, and later other replicated features).

use std::io;

use bytes::Bytes;
use futures_util::Stream;
use openraft::OptionalSend;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf};

use crate::fsm::{Fsm, FsmSnapshotBuilder, FsmStateMachine};
use crate::partition::{PartitionStateMachine, SnapshotBuilder};
use crate::typ::{LogId, PartitionConfig, StoredMembership};

/// The state machine of one group on a node: a partition, or a replicated `F`.
// One per Raft group, made once and then owned by openraft's state machine task: the size of
// the larger variant costs nothing on any path that moves it often.
#[allow(clippy::large_enum_variant)]
pub enum NodeStateMachine<F> {
    /// A partition replica.
    Partition(PartitionStateMachine),
    /// A replicated deterministic state machine.
    Fsm(FsmStateMachine<F>),
}

/// The snapshot builder of a [`NodeStateMachine`].
pub enum NodeSnapshotBuilder {
    /// A partition's.
    Partition(SnapshotBuilder),
    /// An `Fsm`'s.
    Fsm(FsmSnapshotBuilder),
}

impl RaftSnapshotBuilder<PartitionConfig> for NodeSnapshotBuilder {
    type SnapshotData = Bytes;

    async fn build_snapshot(&mut self) -> io::Result<SnapshotOf<PartitionConfig, Bytes>> {
        match self {
            NodeSnapshotBuilder::Partition(b) => b.build_snapshot().await,
            NodeSnapshotBuilder::Fsm(b) => b.build_snapshot().await,
        }
    }
}

impl<F: Fsm> RaftStateMachine<PartitionConfig> for NodeStateMachine<F> {
    type SnapshotData = Bytes;
    type SnapshotBuilder = NodeSnapshotBuilder;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        match self {
            NodeStateMachine::Partition(sm) => sm.applied_state().await,
            NodeStateMachine::Fsm(sm) => sm.applied_state().await,
        }
    }

    async fn apply<S>(&mut self, entries: S) -> io::Result<()>
    where
        S: Stream<Item = io::Result<EntryResponder<PartitionConfig>>> + Unpin + OptionalSend,
    {
        match self {
            NodeStateMachine::Partition(sm) => sm.apply(entries).await,
            NodeStateMachine::Fsm(sm) => sm.apply(entries).await,
        }
    }

    async fn get_snapshot_builder(&mut self) -> NodeSnapshotBuilder {
        match self {
            NodeStateMachine::Partition(sm) => NodeSnapshotBuilder::Partition(sm.get_snapshot_builder().await),
            NodeStateMachine::Fsm(sm) => NodeSnapshotBuilder::Fsm(sm.get_snapshot_builder().await),
        }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMetaOf<PartitionConfig>, snapshot: Bytes) -> io::Result<()> {
        match self {
            NodeStateMachine::Partition(sm) => sm.install_snapshot(meta, snapshot).await,
            NodeStateMachine::Fsm(sm) => sm.install_snapshot(meta, snapshot).await,
        }
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<SnapshotOf<PartitionConfig, Bytes>>> {
        match self {
            NodeStateMachine::Partition(sm) => sm.get_current_snapshot().await,
            NodeStateMachine::Fsm(sm) => sm.get_current_snapshot().await,
        }
    }
}
