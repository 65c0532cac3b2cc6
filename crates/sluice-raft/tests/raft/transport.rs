//! The Raft peer transport end to end: three in-process nodes, each a tonic server on its own
//! loopback port hosting two Raft groups, talking only over gRPC through one channel per peer.
//!
//! What it shows: leaders are elected over the Vote/PreVote RPCs; writes replicate to every
//! replica through pipelined `StreamAppend` streams; leadership moves over `TransferLeader`;
//! when a leader's node dies the survivors elect a new leader and keep accepting writes; a
//! follower whose missing entries the leader has purged catches up from a snapshot streamed in
//! 1 MiB chunks; a `StreamAppend` call stops taking requests once openraft drops its results;
//! and an RPC to a peer that is down, or does not answer, fails within its deadline
//! (`Unreachable` or `Timeout`) instead of hanging. The stores are in-memory doubles;
//! the network is real.

#[path = "transport/cluster.rs"]
mod cluster;
#[path = "transport/mem_store.rs"]
mod mem_store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster::{Cluster, GROUPS, commands, raft_config, wait_metrics};
use futures_util::{StreamExt, stream};
use mem_store::MemSm;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{RPCError, ReplicationClosed, StreamingError};
use openraft::network::{NetSnapshot, NetStreamAppend, NetVote, RPCOption, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{BasicNode, SnapshotPolicy};
use sluice_raft::transport::{self, PeerClients, RaftRegistry, TransportConfig};
use sluice_raft::typ::{Membership, StoredMembership, Vote};
use tokio::sync::oneshot;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_three_nodes_when_the_leader_node_dies_should_elect_a_new_leader_and_keep_writing() {
    tracing::info!("--- start 3 nodes x 2 groups; leaders are elected over gRPC");
    let mut cluster = Cluster::start(raft_config(|_| {})).await;
    let mut expected = Vec::new();
    for group in GROUPS {
        let leader = cluster.leader(group).await;
        tracing::info!(group, leader, "leader elected");
    }

    tracing::info!("--- a few hundred writes per group replicate to all three replicas");
    for group in GROUPS {
        let written = commands(&format!("g{group}-first"), 300, 64);
        let last = cluster.write(group, written.clone()).await;
        let applied = cluster.replicated(group, last).await;
        assert_eq!(applied, written, "group {group}: every replica applied exactly the writes, in order");
        expected.push(written);
    }

    tracing::info!("--- leadership of group 2 moves to another node over TransferLeader");
    let old = cluster.leader(2).await;
    let to = if old == 3 { 1 } else { old + 1 };
    cluster.nodes[&old].raft(2).trigger().transfer_leader(to).await.expect("transfer");
    wait_metrics(cluster.nodes[&to].raft(2), "the transfer target leads", |m| m.current_leader == Some(to)).await;

    tracing::info!("--- the node leading group 1 dies; the survivors elect new leaders");
    let dead = cluster.leader(1).await;
    let started = Instant::now();
    cluster.nodes.get_mut(&dead).expect("leader node").stop().await;
    for group in GROUPS {
        let leader = cluster.leader(group).await;
        assert_ne!(leader, dead, "group {group}: the dead node cannot lead");
    }
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "new leaders elected");

    tracing::info!("--- both groups keep accepting writes with two of three replicas");
    for (group, mut written) in GROUPS.into_iter().zip(expected) {
        let more = commands(&format!("g{group}-after-failover"), 100, 64);
        let last = cluster.write(group, more.clone()).await;
        written.extend(more);
        let applied = cluster.replicated(group, last).await;
        assert_eq!(applied, written, "group {group}: survivors hold every write, in order");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_a_follower_behind_a_purged_log_when_it_returns_should_catch_up_from_a_streamed_snapshot() {
    tracing::info!("--- a cluster that snapshots only on demand and keeps no log behind a snapshot");
    let config = raft_config(|c| {
        c.snapshot_policy = SnapshotPolicy::Never;
        c.max_in_snapshot_log_to_keep = 0;
        c.purge_batch_size = 1;
    });
    let mut cluster = Cluster::start(Arc::clone(&config)).await;
    let group = 1;
    let leader = cluster.leader(group).await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let mut written = commands("before", 50, 64);
    let last = cluster.write(group, written.clone()).await;
    cluster.replicated(group, last).await;

    tracing::info!("--- one follower's replica stops; its stores stay, like files on disk");
    let node = cluster.nodes.get_mut(&follower).expect("follower node");
    let stores = node.stop_replica(group).await;
    let behind_at = stores.1.commands().len();

    tracing::info!("--- the others take 300 writes of 8 KiB (2.4 MiB), more than two snapshot chunks");
    let big = commands("while-away", 300, 8 * 1024);
    let last = cluster.write(group, big.clone()).await;
    written.extend(big);
    for node in cluster.running().filter(|n| n.id != follower) {
        node.raft(group)
            .wait(Some(cluster::WAIT))
            .applied_index_at_least(Some(last), "applied")
            .await
            .expect("applied");
    }

    tracing::info!("--- the leader snapshots and purges its whole log");
    let leader_raft = cluster.nodes[&leader].raft(group);
    leader_raft.trigger().snapshot().await.expect("trigger snapshot");
    wait_metrics(leader_raft, "snapshot built", |m| m.snapshot.is_some_and(|s| s.index >= last)).await;
    wait_metrics(leader_raft, "log purged", |m| m.purged.is_some_and(|p| p.index >= last)).await;
    assert!(cluster.nodes[&leader].replicas[&group].log.first_index().is_none_or(|i| i > last));

    tracing::info!("--- the follower's replica restarts far behind and catches up through InstallSnapshot");
    assert_eq!(behind_at, 50, "the follower missed the 300 writes");
    let node = cluster.nodes.get_mut(&follower).expect("follower node");
    node.restart_replica(group, config, stores).await;
    let restarted = cluster.nodes[&follower].raft(group);
    wait_metrics(restarted, "follower installed the snapshot", |m| {
        m.snapshot.is_some_and(|s| s.index >= last) && m.last_applied.is_some_and(|a| a.index >= last)
    })
    .await;
    let replica = &cluster.nodes[&follower].replicas[&group];
    assert_eq!(replica.sm.installed_snapshots(), 1, "caught up by one snapshot, not by entries");
    let snapshot_bytes = replica.sm.snapshot_bytes();
    assert!(snapshot_bytes > 2 * 1024 * 1024, "{snapshot_bytes} bytes: it crossed the wire in 3+ chunks");
    assert_eq!(replica.sm.commands(), written, "the snapshot carried every command");

    tracing::info!("--- after the snapshot, replication continues with entries");
    let tail = commands("after", 20, 64);
    let last = cluster.write(group, tail.clone()).await;
    written.extend(tail);
    assert_eq!(cluster.replicated(group, last).await, written);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_stream_append_whose_results_are_dropped_should_stop_taking_requests() {
    let cluster = Cluster::start(raft_config(|_| {})).await;
    let group = GROUPS[0];
    let leader = cluster.leader(group).await;
    let follower = cluster.hosting(group).map(|n| n.id).find(|id| *id != leader).expect("a follower");
    let metrics = cluster.nodes[&leader].raft(group).metrics().borrow_watched().clone();
    let node = metrics.membership_config.membership().get_node(&follower).expect("follower's address").clone();

    tracing::info!("--- a heartbeat as the leader's, which the follower accepts and keeps the stream open");
    let (requests, rx) = tokio::sync::mpsc::channel(4);
    let input = Box::pin(stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) }));
    let beat = AppendEntriesRequest { vote: metrics.vote, prev_log_id: None, entries: vec![], leader_commit: None };
    requests.send(beat).await.expect("input open");
    let clients = PeerClients::new(leader, TransportConfig::default());
    let mut net = clients.network_factory(group).new_client(follower, &node).await;
    let mut results = net.stream_append(input, RPCOption::new(Duration::from_secs(4))).await.expect("stream opens");
    let answer = results.next().await.expect("an answer").expect("no RPC error");
    assert!(answer.is_ok(), "the follower accepted the heartbeat: {answer:?}");

    tracing::info!("--- openraft ends the session: the call must stop taking its requests");
    // openraft makes every session's requests from one shared state; a call still taking them
    // after its session would steal the next session's requests.
    drop(results);
    tokio::time::timeout(cluster::WAIT, requests.closed()).await.expect("the request stream was dropped");
    drop(net);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_peer_that_is_down_or_silent_when_called_should_fail_within_the_deadline() {
    let clients = PeerClients::new(1, TransportConfig::default());
    let long = RPCOption::new(Duration::from_secs(4));

    tracing::info!("--- nothing listens on the port: every kind of RPC fails fast as Unreachable");
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let mut net = clients.network_factory(7).new_client(2, &BasicNode::new(closed.to_string())).await;
    let started = Instant::now();
    let err = net.vote(vote_request(), long.clone()).await.expect_err("nobody listens");
    assert!(matches!(err, RPCError::Unreachable(_)), "vote: {err}");
    let err = net.stream_append(stream::iter([heartbeat()]), long.clone()).await.err().expect("nobody listens");
    assert!(matches!(err, RPCError::Unreachable(_)), "stream_append: {err}");
    let err = net.full_snapshot(vote(), snapshot(), never_cancelled(), long.clone()).await.expect_err("nobody");
    assert!(matches!(err, StreamingError::Unreachable(_)), "full_snapshot: {err}");
    assert!(started.elapsed() < Duration::from_secs(1), "failed fast: {:?}", started.elapsed());

    tracing::info!("--- a running peer that does not host the group answers NotFound, seen as Unreachable");
    let incoming = transport::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
    let addr = incoming.local_addr().expect("addr");
    let registry = Arc::new(RaftRegistry::<MemSm>::new(2));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(transport::serve(incoming, registry, TransportConfig::default(), async {
        let _ = stopped.await;
    }));
    let mut net = clients.network_factory(7).new_client(2, &BasicNode::new(addr.to_string())).await;
    let err = net.vote(vote_request(), long.clone()).await.expect_err("group 7 is not hosted");
    assert!(matches!(err, RPCError::Unreachable(_)) && err.to_string().contains("group 7"), "{err}");
    let err = net.stream_append(stream::iter([heartbeat()]), long.clone()).await.err().expect("not hosted");
    assert!(matches!(err, RPCError::Unreachable(_)) && err.to_string().contains("group 7"), "stream_append: {err}");
    let _ = stop.send(());
    server.await.expect("server task").expect("server");

    tracing::info!("--- a peer that accepts TCP but never answers: the RPC times out at soft_ttl");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let mut net = clients.network_factory(7).new_client(3, &BasicNode::new(silent_addr.to_string())).await;
    let short = RPCOption::new(Duration::from_millis(400));
    let started = Instant::now();
    let err = net.vote(vote_request(), short.clone()).await.expect_err("no answer");
    let took = started.elapsed();
    assert!(matches!(err, RPCError::Timeout(_)), "vote: {err}");
    assert!(took >= short.soft_ttl() && took < Duration::from_secs(2), "timed out at soft_ttl: {took:?}");
    let err = net.stream_append(stream::iter([heartbeat()]), short).await.err().expect("no answer");
    assert!(matches!(err, RPCError::Timeout(_)), "stream_append: {err}");
    drop(silent);
}

fn vote() -> Vote {
    Vote::new(5, 1)
}

fn vote_request() -> VoteRequest<sluice_raft::PartitionConfig> {
    VoteRequest::new(vote(), None)
}

fn heartbeat() -> AppendEntriesRequest<sluice_raft::PartitionConfig> {
    AppendEntriesRequest { vote: Vote::new_committed(5, 1), prev_log_id: None, entries: vec![], leader_commit: None }
}

fn snapshot() -> openraft::type_config::alias::SnapshotOf<sluice_raft::PartitionConfig, bytes::Bytes> {
    let membership = Membership::new_with_defaults(vec![[1u64, 2, 3].into()], [1u64, 2, 3]);
    let meta = openraft::SnapshotMeta { last_log_id: None, last_membership: StoredMembership::new(None, membership) };
    openraft::Snapshot { meta, snapshot: bytes::Bytes::from_static(b"data") }
}

async fn never_cancelled() -> ReplicationClosed {
    std::future::pending().await
}
