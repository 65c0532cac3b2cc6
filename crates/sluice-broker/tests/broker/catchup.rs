//! A follower whose broker was down catches up when it restarts: from the leader's log when the
//! leader still holds every entry it missed, and by installing the partition snapshot when the
//! leader has purged past it. Either way it ends with the leader's entries and offsets, and
//! with the partition's pending delayed messages.
//!
//! Batches are written by `LANES` idempotent producers at once, each sending its batches in
//! sequence, so a batch retried across a leader change is acknowledged once and written once.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_broker::BrokerStateMachine;
use sluice_common::record::{BatchBuilder, ProducerStamp, Record};
use sluice_controller::{Applied, ControllerCommand, TopicConfig};
use sluice_raft::Reply;
use sluice_raft::partition::PartitionCommand;
use sluice_raft::typ::{Raft, WatchReceiver};
use sluice_storage::Log;
use tokio::task::JoinSet;

use crate::cluster::Cluster;

/// Produce requests in flight at once: one sequential idempotent producer per lane.
const LANES: u64 = 64;
/// Messages per batch.
pub(crate) const PER_BATCH: u64 = 2;
/// Bound on every wait for the cluster to settle or a follower to catch up.
pub(crate) const SETTLE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_follower_down_for_10000_entries_when_it_restarts_it_catches_up() {
    let mut cluster = Cluster::start(3).await;
    let group = one_partition_topic(&cluster, "catchup").await;

    tracing::info!("--- a follower of the partition's group stops");
    let follower = follower_of(&cluster, group);
    cluster.stop_broker(follower).await;

    tracing::info!("--- 10,000 batches are committed without it, each once, with dense offsets");
    let offsets = produce(&cluster, group, 0..10_000).await;
    assert_dense(&offsets, 0);

    tracing::info!("--- it restarts and receives every entry it missed from the others' logs");
    cluster.start_broker(follower).await;
    let (other, theirs, ours) = agreeing_logs(&cluster, group, follower).await;
    // The replicas snapshotted on their own (every 5,000 entries by default), and must still
    // hold every message: a partition's Raft log is its data, which only retention removes.
    let raft = cluster.brokers[other].partitions().raft(group).expect("the broker hosts the group");
    raft.wait(Some(SETTLE)).metrics(|m| m.snapshot.is_some(), "a snapshot").await.expect("a snapshot");
    assert_eq!((theirs.purged_id(), ours.purged_id()), (None, None), "snapshots must not purge messages");
    assert_eq!(ours.first_index(), theirs.first_index(), "the follower was sent entries, not a snapshot");
    assert_same_entries(&theirs, &ours);
    assert_same_offsets(&theirs, &ours, &offsets);
    drop((raft, theirs, ours));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_follower_behind_the_log_start_when_it_restarts_it_installs_a_snapshot() {
    let mut cluster = Cluster::start(3).await;
    let group = one_partition_topic(&cluster, "snapshot").await;

    tracing::info!("--- a follower of the partition's group stops; 2,000 batches are committed");
    let follower = follower_of(&cluster, group);
    let behind = log(&cluster, follower, group).last_id().map_or(0, |id| id.index);
    cluster.stop_broker(follower).await;
    assert_dense(&produce(&cluster, group, 0..2_000).await, 0);
    let due_in_an_hour =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64 + 3_600_000;
    assert_eq!(
        command(&cluster, group, PartitionCommand::produce(&delayed(due_in_an_hour))).await,
        Reply::Delayed { base_seq: 0, count: 5 }
    );

    tracing::info!("--- the leader snapshots and purges its log past the follower's last entry");
    let (snapshot, first) = snapshot_and_purge(&cluster, group).await;
    assert!(first > behind + 1, "the leader's log starts at {first}, after the follower's last entry {behind}");

    tracing::info!("--- it restarts and installs the snapshot: it holds nothing before the leader's log start");
    cluster.start_broker(follower).await;
    cluster
        .wait_for(SETTLE, "the follower installed the snapshot", |c| {
            c.brokers[follower]
                .partitions()
                .log(group)
                .is_some_and(|l| l.purged_id().is_some_and(|p| p.index >= snapshot))
        })
        .await;
    let start = log(&cluster, follower, group).first_index();
    assert!(start >= first, "the follower's log starts at {start}, before the leader's {first}");
    assert_eq!(log(&cluster, follower, group).find_offset(0), None, "offsets before the snapshot are not held");
    tracing::info!("--- the snapshot sent brought the 5 pending delayed messages; a later cancel reaches them");
    let pending = |c: &Cluster| c.brokers[follower].partitions().delays().map(|d| d.store().count(group).unwrap());
    assert_eq!(pending(&cluster), Some(5), "pending rows came with the snapshot");
    let cancelled = command(&cluster, group, PartitionCommand::cancel(2)).await;
    assert_eq!(cancelled, Reply::Cancel(sluice_raft::partition::delay::CancelOutcome::Cancelled));
    cluster.wait_for(SETTLE, "the follower applied the cancel", |c| pending(c) == Some(4)).await;

    tracing::info!("--- its state machine carries on from the snapshot's next offset");
    let after = produce(&cluster, group, 2_000..3_000).await;
    assert_dense(&after, 2_000 * PER_BATCH);
    assert_follower_agrees(&cluster, group, follower, &after).await;

    tracing::info!("--- restarted once more, it reopens from its stored snapshot and still agrees");
    cluster.stop_broker(follower).await;
    cluster.start_broker(follower).await;
    let more = produce(&cluster, group, 3_000..3_500).await;
    assert_dense(&more, 3_000 * PER_BATCH);
    assert_follower_agrees(&cluster, group, follower, &more).await;
    cluster.shutdown().await;
}

/// Waits until `brokers[follower]` agrees with the other replicas of `group`, then checks it
/// holds their entries, has no offsets from before the snapshot's next offset (2,000 batches),
/// and finds each of `offsets`' batches where they do.
async fn assert_follower_agrees(cluster: &Cluster, group: u64, follower: usize, offsets: &BTreeMap<u64, u64>) {
    let (_, theirs, ours) = agreeing_logs(cluster, group, follower).await;
    assert_eq!(ours.first_indexed_offset(), Some(2_000 * PER_BATCH), "the follower's first offset");
    assert_same_entries(&theirs, &ours);
    assert_same_offsets(&theirs, &ours, offsets);
}

/// Creates topic `name` with one RF-3 partition and waits until every broker hosts its group
/// and one leads it; returns the group id.
pub(crate) async fn one_partition_topic(cluster: &Cluster, name: &str) -> u64 {
    cluster
        .wait_for(SETTLE, "brokers registered", |c| {
            c.brokers.iter().all(|b| b.controller().metadata().read(|m| m.brokers().count() == 3))
        })
        .await;
    let create = ControllerCommand::CreateTopic { name: name.into(), config: TopicConfig::new(1, 3) };
    let Applied::TopicCreated { partitions, .. } = cluster.propose(&create).await.into_result().unwrap() else {
        panic!("expected TopicCreated")
    };
    let group = partitions[0].group_id;
    cluster
        .wait_for(SETTLE, "the group hosted everywhere and led", |c| {
            c.brokers.iter().all(|b| b.partitions().raft(group).is_some()) && leader_of(c, group).is_some()
        })
        .await;
    group
}

/// The position in `brokers` of the broker leading `group`, if one does.
pub(crate) fn leader_of(cluster: &Cluster, group: u64) -> Option<usize> {
    cluster.brokers.iter().position(|b| b.partitions().raft(group).is_some_and(|r| r.is_leader()))
}

/// The position of a broker that hosts `group` and does not lead it.
fn follower_of(cluster: &Cluster, group: u64) -> usize {
    let leader = leader_of(cluster, group);
    (0..cluster.brokers.len()).find(|i| Some(*i) != leader).expect("a follower")
}

/// The log of `group` on `brokers[i]`. Callers drop it before that broker stops: a stopping
/// broker waits for the last handle to its logs.
pub(crate) fn log(cluster: &Cluster, i: usize, group: u64) -> Arc<Log> {
    cluster.brokers[i].partitions().log(group).expect("the broker hosts the group")
}

/// Batch `i`: `PER_BATCH` messages from producer `i % LANES`, its `i / LANES`-th batch.
pub(crate) fn batch(i: u64) -> Bytes {
    let producer = ProducerStamp {
        producer_id: (i % LANES) as i64 + 1,
        epoch: 0,
        base_sequence: ((i / LANES) * PER_BATCH) as i32,
    };
    let mut b = BatchBuilder::new(producer, 128);
    for k in 0..PER_BATCH {
        b.push(&Record::new(format!("message-{i}-{k}"), 1_000 + i as i64));
    }
    b.finish()
}

/// Five messages due at `due_ms`, as a delayed batch.
fn delayed(due_ms: u64) -> Bytes {
    let mut b = BatchBuilder::new(ProducerStamp::NONE, 256).delayed(true);
    for k in 0..5 {
        let mut r = Record::new(format!("later-{k}"), 1_000);
        r.properties.push((sluice_common::record::DELIVER_AT_PROPERTY.into(), due_ms.to_string()));
        b.push(&r);
    }
    b.finish()
}

/// Proposes `command` through whichever running broker leads `group`, retrying while a leader
/// settles; returns the reply.
async fn command(cluster: &Cluster, group: u64, command: sluice_raft::Command) -> Reply {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        for raft in cluster.brokers.iter().filter_map(|b| b.partitions().raft(group)).filter(|r| r.is_leader()) {
            match raft.client_write(command.clone()).await {
                Ok(written) => return written.data,
                Err(e) => tracing::info!("not written, retrying: {e}"),
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader took the command");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Produces `batches` through whichever running broker leads `group`, `LANES` at a time, each
/// lane's batches in order; returns every batch's base offset by batch number. A lane's first
/// batch must be numbered below `LANES` or follow one produced before.
async fn produce(cluster: &Cluster, group: u64, batches: Range<u64>) -> BTreeMap<u64, u64> {
    let rafts: Vec<Raft<BrokerStateMachine>> =
        cluster.brokers.iter().filter_map(|b| b.partitions().raft(group)).collect();
    let mut lanes = JoinSet::new();
    for lane in 0..LANES {
        let rafts = rafts.clone();
        let mine: Vec<u64> = batches.clone().filter(|i| i % LANES == lane).collect();
        lanes.spawn(async move {
            let mut offsets = Vec::with_capacity(mine.len());
            for i in mine {
                offsets.push((i, write(&rafts, i).await));
            }
            offsets
        });
    }
    let mut offsets = BTreeMap::new();
    while let Some(lane) = lanes.join_next().await {
        offsets.extend(lane.expect("producer lane"));
    }
    offsets
}

/// Writes batch `i` through whichever of `rafts` leads, retrying while a leader settles;
/// returns its base offset (the original one if a retry turns out to be a duplicate).
async fn write(rafts: &[Raft<BrokerStateMachine>], i: u64) -> u64 {
    let command = PartitionCommand::produce(&batch(i));
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        for raft in rafts.iter().filter(|r| r.is_leader()) {
            match raft.client_write(command.clone()).await.map(|r| r.data) {
                Ok(Reply::Appended { base_offset, .. } | Reply::Duplicate { base_offset, .. }) => return base_offset,
                Ok(other) => panic!("batch {i} was refused: {other:?}"),
                Err(e) => tracing::info!("batch {i} not written, retrying: {e}"),
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader accepted batch {i}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts the batches got consecutive, non-overlapping offsets from `start` on: each batch was
/// written exactly once.
pub(crate) fn assert_dense(offsets: &BTreeMap<u64, u64>, start: u64) {
    let mut bases: Vec<u64> = offsets.values().copied().collect();
    bases.sort_unstable();
    let expected: Vec<u64> = (0..offsets.len() as u64).map(|k| start + k * PER_BATCH).collect();
    assert!(bases == expected, "base offsets are not dense from {start}");
}

/// Has the leader trigger a snapshot of `group` and purge its log up to it; returns the
/// snapshot's last index and, once it has moved past it, the leader's first log index.
async fn snapshot_and_purge(cluster: &Cluster, group: u64) -> (u64, u64) {
    let leader = leader_of(cluster, group).expect("a leader");
    let raft = cluster.brokers[leader].partitions().raft(group).expect("leader hosts the group");
    let applied = log(cluster, leader, group).indexed_end().expect("batches indexed").entry_index;
    raft.trigger().snapshot().await.expect("trigger a snapshot");
    let metrics = raft
        .wait(Some(SETTLE))
        .metrics(|m| m.snapshot.is_some_and(|s| s.index >= applied), "a snapshot covering every batch")
        .await
        .expect("snapshot built");
    let snapshot = metrics.snapshot.expect("snapshot").index;
    raft.trigger().purge_log(snapshot).await.expect("trigger a purge");
    cluster
        .wait_for(SETTLE, "the leader's log purged up to the snapshot", |c| {
            c.brokers[leader].partitions().log(group).is_some_and(|l| l.first_index() > snapshot)
        })
        .await;
    (snapshot, log(cluster, leader, group).first_index())
}

/// Waits until every replica of `group` has the same last entry and has indexed as far (a
/// restarted broker hosts its groups again once it has re-applied the metadata); returns
/// another replica's position, its log and `brokers[follower]`'s log.
pub(crate) async fn agreeing_logs(cluster: &Cluster, group: u64, follower: usize) -> (usize, Arc<Log>, Arc<Log>) {
    let agree = |c: &Cluster| {
        let logs: Option<Vec<Arc<Log>>> = c.brokers.iter().map(|b| b.partitions().log(group)).collect();
        let ends: Vec<_> = logs.unwrap_or_default().iter().map(|l| (l.last_id(), l.indexed_end())).collect();
        ends.len() == c.brokers.len() && ends[0].1.is_some() && ends.iter().all(|e| *e == ends[0])
    };
    let deadline = tokio::time::Instant::now() + SETTLE;
    while !agree(cluster) {
        assert!(tokio::time::Instant::now() < deadline, "replicas never agreed: {}", describe(cluster, group));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let other = (0..cluster.brokers.len()).find(|i| *i != follower).expect("another replica");
    (other, log(cluster, other, group), log(cluster, follower, group))
}

/// Each replica's view of `group`, for failure messages.
fn describe(cluster: &Cluster, group: u64) -> String {
    let replica = |b: &sluice_broker::Broker| {
        let node = b.config().node_id;
        let Some((raft, log)) = b.partitions().raft(group).zip(b.partitions().log(group)) else {
            return format!("node {node}: not hosting");
        };
        let m = raft.metrics().borrow_watched().clone();
        format!(
            "node {node}: {:?} term {} leader {:?} last log {:?} committed {:?}/{:?} applied {:?} snapshot {:?} purged {:?}; \
             log first {} last {:?} indexed {:?}",
            m.state,
            m.current_term,
            m.current_leader,
            m.last_log_index,
            m.local_committed,
            m.cluster_committed,
            m.last_applied,
            m.snapshot,
            m.purged,
            log.first_index(),
            log.last_id(),
            log.indexed_end()
        )
    };
    cluster.brokers.iter().map(replica).collect::<Vec<_>>().join("\n")
}

/// Asserts `ours` holds exactly the entries of `theirs`, from our first index to the last entry
/// both hold.
pub(crate) fn assert_same_entries(theirs: &Log, ours: &Log) {
    let last = |l: &Log| l.last_id().expect("entries").index;
    let end = last(theirs).min(last(ours)) + 1;
    let mut next = ours.first_index();
    while next < end {
        let mine = ours.read(next, end, 1 << 20).expect("read the follower's log");
        let other = theirs.read(next, next + mine.len() as u64, usize::MAX).expect("read another replica's log");
        assert_eq!(mine.len(), other.len(), "entries from {next}");
        for (a, b) in mine.iter().zip(&other) {
            assert!(a == b, "entry {} differs: terms {} and {}", a.index, a.term, b.term);
        }
        next += mine.len() as u64;
    }
}

/// Asserts every message of the batches in `offsets` is found at its offset in both logs, in the
/// same entry, and spot-checks that this entry holds that batch.
pub(crate) fn assert_same_offsets(theirs: &Log, ours: &Log, offsets: &BTreeMap<u64, u64>) {
    for (&i, &base) in offsets {
        for offset in base..base + PER_BATCH {
            let at = ours.find_offset(offset);
            assert_eq!(at, theirs.find_offset(offset), "offset {offset} of batch {i}");
            let at = at.unwrap_or_else(|| panic!("offset {offset} of batch {i} is not indexed"));
            assert_eq!((at.base_offset, u64::from(at.count)), (base, PER_BATCH), "batch {i}");
        }
        if i % 250 == 0 {
            let at = ours.find_offset(base).expect("indexed").entry_index;
            let entry = ours.entry(at).expect("read").expect("the entry is held");
            assert!(entry.payload.ends_with(&batch(i)), "entry {at} does not hold batch {i}");
        }
    }
}
