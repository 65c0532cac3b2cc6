//! A partition group end to end on one node: produce commands through Raft get dense offsets
//! indexed in the log, idempotent retries are applied once, zombies are fenced, and after a
//! snapshot and a restart the partition carries on where it stopped.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::type_config::alias::SnapshotOf;
use openraft::{AnyError, BasicNode, Config, OptionalSend, ServerState};
use sluice_common::record::{BatchBuilder, ProducerStamp, Record};
use sluice_raft::partition::{PartitionCommand, reject};
use sluice_raft::typ::{Raft, Vote};
use sluice_raft::{PartitionConfig, PartitionLogStore, PartitionStateMachine, Reply};
use sluice_storage::{Flusher, Log, LogConfig};

type C = PartitionConfig;

/// A single voter never sends an RPC; every attempt fails as unreachable.
pub struct NoPeers;

fn unreachable() -> Unreachable<C> {
    Unreachable::new(&AnyError::error("single-node test group has no peers"))
}

impl RaftNetworkFactory<C> for NoPeers {
    type Network = NoPeers;
    async fn new_client(&mut self, _target: u64, _node: &BasicNode) -> NoPeers {
        NoPeers
    }
}

impl RaftNetworkV2<C> for NoPeers {
    type SnapshotData = Bytes;
    async fn append_entries(
        &mut self,
        _: AppendEntriesRequest<C>,
        _: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        Err(RPCError::Unreachable(unreachable()))
    }
    async fn vote(&mut self, _: VoteRequest<C>, _: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        Err(RPCError::Unreachable(unreachable()))
    }
    async fn full_snapshot(
        &mut self,
        _: Vote,
        _: SnapshotOf<C, Bytes>,
        _: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        Err(StreamingError::Unreachable(unreachable()))
    }
}

struct Node {
    raft: Raft<PartitionStateMachine>,
    log: Arc<Log>,
    _flusher: Arc<Flusher>,
}

async fn start(dir: &Path) -> Node {
    let log = Arc::new(Log::open(dir, LogConfig::default()).expect("open log"));
    let flusher = Arc::new(Flusher::start("test", 1));
    let sm = PartitionStateMachine::open(Arc::clone(&log)).expect("open state machine");
    let store = PartitionLogStore::new(Arc::clone(&log), Arc::clone(&flusher));
    let raft = single_node(store, sm).await;
    Node { raft, log, _flusher: flusher }
}

/// Starts node 1 as the only voter of a group over `store` and `sm`, initializing the group on
/// first start, and waits until it leads.
pub async fn single_node<LS, SM>(store: LS, sm: SM) -> Raft<SM>
where
    LS: openraft::storage::RaftLogStorage<C>,
    SM: openraft::storage::RaftStateMachine<C, SnapshotData = Bytes>,
{
    let config =
        Config { heartbeat_interval: 50, election_timeout_min: 150, election_timeout_max: 300, ..Default::default() };
    let raft = Raft::new(1, Arc::new(config.validate().unwrap()), NoPeers, store, sm).await.expect("start raft");
    if !raft.is_initialized().await.unwrap() {
        raft.initialize(BTreeMap::from([(1, BasicNode::new("127.0.0.1:0"))])).await.expect("initialize");
    }
    raft.wait(Some(Duration::from_secs(10))).state(ServerState::Leader, "single node leads").await.expect("a leader");
    raft
}

fn batch(producer: ProducerStamp, messages: usize, ts: i64) -> Bytes {
    let mut b = BatchBuilder::new(producer, 256);
    for i in 0..messages {
        b.push(&Record::new(format!("m{i}"), ts + i as i64));
    }
    b.finish()
}

/// Shuts the node down and waits (bounded) until openraft's tasks have let go of the log: its
/// shutdown returns before they end, and the log's directory lock lasts as long as they hold it.
async fn stop(node: Node) {
    node.raft.shutdown().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while Arc::strong_count(&node.log) > 1 {
        assert!(tokio::time::Instant::now() < deadline, "the log is still held 10 s after shutdown");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn produce(node: &Node, batch: &[u8]) -> Reply {
    node.raft.client_write(PartitionCommand::produce(batch)).await.expect("client_write").data
}

fn stamp(epoch: i16, seq: i32) -> ProducerStamp {
    ProducerStamp { producer_id: 42, epoch, base_sequence: seq }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_dense_retries_are_applied_once_and_state_survives_a_snapshot_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;

    tracing::info!("--- offsets are assigned in commit order, densely");
    let mut next = 0;
    for i in 0..20 {
        let reply = produce(&node, &batch(ProducerStamp::NONE, 3, 1_000 + i * 10)).await;
        assert_eq!(reply, Reply::Appended { base_offset: next, count: 3 });
        next += 3;
    }
    let loc = node.log.find_offset(31).expect("offset 31 is indexed");
    assert_eq!((loc.base_offset, loc.count), (30, 3));

    tracing::info!("--- an idempotent producer's retry is acknowledged with its first offset, once");
    let first = batch(stamp(0, 0), 5, 5_000);
    assert_eq!(produce(&node, &first).await, Reply::Appended { base_offset: next, count: 5 });
    assert_eq!(produce(&node, &first).await, Reply::Duplicate { base_offset: next, count: 5 });
    next += 5;
    assert!(matches!(
        produce(&node, &batch(stamp(0, 9), 1, 5_100)).await,
        Reply::Rejected { code: reject::OUT_OF_ORDER_SEQUENCE, .. }
    ));
    assert_eq!(produce(&node, &batch(stamp(1, 0), 1, 5_200)).await, Reply::Appended { base_offset: next, count: 1 });
    next += 1;
    assert!(matches!(
        produce(&node, &batch(stamp(0, 5), 1, 5_300)).await,
        Reply::Rejected { code: reject::PRODUCER_FENCED, .. }
    ));
    assert!(matches!(produce(&node, b"not a batch").await, Reply::Rejected { code: reject::INVALID_BATCH, .. }));

    tracing::info!("--- snapshot, write a little more, restart: offsets and dedup state carry on");
    node.raft.trigger().snapshot().await.unwrap();
    let applied = node.raft.metrics().borrow_watched().last_applied.expect("entries applied").index;
    let covered = move |m: &openraft::RaftMetrics<C>| m.snapshot.is_some_and(|s| s.index >= applied);
    node.raft.wait(Some(Duration::from_secs(10))).metrics(covered, "snapshot taken").await.unwrap();
    assert_eq!(produce(&node, &batch(stamp(1, 1), 2, 6_000)).await, Reply::Appended { base_offset: next, count: 2 });
    next += 2;
    stop(node).await;

    let node = start(dir.path()).await;
    let retried = produce(&node, &batch(stamp(1, 1), 2, 6_000)).await;
    assert_eq!(retried, Reply::Duplicate { base_offset: next - 2, count: 2 }, "dedup state survived the restart");
    assert_eq!(
        produce(&node, &batch(ProducerStamp::NONE, 4, 7_000)).await,
        Reply::Appended { base_offset: next, count: 4 }
    );
    assert_eq!(node.log.find_timestamp(6_000), Some(next - 2));
    assert_eq!(node.log.indexed_end().map(|e| e.next_offset), Some(next + 4));
    node.raft.shutdown().await.unwrap();
}
