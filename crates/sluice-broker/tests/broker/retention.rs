//! Retention trims every replica of a partition at the same Raft index, decided by its leader
//! and applied through Raft: once a topic's `retention_bytes` lets whole sealed segments go,
//! every replica's log start moves to the same entry and offset, fetches below it answer
//! OFFSET_OUT_OF_RANGE naming it, `ListOffsets` earliest is it, and every message after it is
//! still there. A follower that was down during the trim catches up by installing the snapshot,
//! which carries the log start and the retained entries: its log then starts at the log start
//! like the others', and led by it the partition serves every retained offset; it agrees with
//! the others on every later entry.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use sluice_broker::BrokerConfig;
use sluice_common::record::{BatchBuilder, ProducerStamp, Record};
use sluice_controller::{Applied, ControllerCommand, TopicConfig};
use sluice_proto::v1::list_offsets_request::At;
use sluice_proto::v1::{Empty, FetchRequest, FetchResponse, ListOffsetsRequest};
use sluice_proto::{ErrorCode, error_of};
use sluice_raft::Reply;
use sluice_raft::partition::{LogStart, PartitionCommand, log_start_of};
use sluice_raft::typ::WatchReceiver;

use crate::catchup::{SETTLE, agreeing_logs, assert_same_entries, leader_of, log};
use crate::cluster::{Cluster, eventually, unless_retriable};

/// Active segments roll this often, so a few seconds of writes fill many segments.
const SEGMENT_ROLL_MS: u64 = 150;
/// The topic's `retention_bytes`: a few segments' worth.
const RETENTION_BYTES: u64 = 8_000;
const TOPIC: &str = "retained";

fn fast_retention(config: &mut BrokerConfig) {
    config.retention_check_ms = 100;
    config.segment_roll_ms = SEGMENT_ROLL_MS;
    // Leadership moves only when a test moves it.
    config.raft.leader_rebalance_delay_ms = 0;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_retention_bytes_when_segments_roll_every_replica_trims_and_keeps_every_retained_offset() {
    let mut cluster = Cluster::start_adjusted(3, fast_retention).await;
    let group = create_topic(&cluster).await;

    tracing::info!("--- a follower stops; 200 batches roll many segments past retention_bytes");
    let follower = (0..3).find(|i| Some(*i) != leader_of(&cluster, group)).expect("a follower");
    cluster.stop_broker(follower).await;
    let produced = produce(&cluster, group, 0..200).await;

    tracing::info!("--- the two running replicas trim at the same index and purge their logs to it");
    let start = settled_log_start(&cluster, group).await;
    assert!(start.offset > 0 && start.trimmed_before > 0, "nothing was trimmed: {start:?}");
    assert!(produced.contains_key(&start.offset), "the log starts at a batch: {start:?}");
    for i in 0..cluster.brokers.len() {
        let l = log(&cluster, i, group);
        assert_eq!(l.first_index(), start.trimmed_before, "broker {i} purged exactly the trimmed entries");
        assert_eq!(l.find_offset(start.offset - 1), None, "broker {i} holds no trimmed offset");
        assert_eq!(l.find_offset(start.offset).map(|at| at.base_offset), Some(start.offset));
        assert!(l.size_bytes() >= RETENTION_BYTES, "broker {i} keeps at least retention_bytes");
    }

    tracing::info!("--- clients see the new log start; everything after it is intact");
    assert_client_view(&cluster, group, start, &produced).await;

    tracing::info!("--- the follower restarts behind the log start and catches up by snapshot");
    cluster.start_broker(follower).await;
    let deadline = tokio::time::Instant::now() + SETTLE;
    // Retention may trim again meanwhile (an election's entry can roll a segment): the follower
    // must reach the leader's log start of the moment, through a snapshot past the first trim.
    let first_trim = start;
    let start = loop {
        let Some(current) = leader_log_start(&cluster, group).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let hosted = cluster.brokers[follower].partitions().raft(group);
        let theirs = match hosted {
            Some(raft) => log_start_of(&raft).await.map(|w| *w.borrow()),
            None => None,
        };
        let snapshot = match cluster.brokers[follower].partitions().raft(group) {
            Some(raft) => raft.metrics().borrow_watched().snapshot.map(|s| s.index),
            None => None,
        };
        let first = cluster.brokers[follower].partitions().log(group).map(|l| l.first_index());
        // Entries below the first trim are gone from the leader: only a snapshot up to at least
        // the last of them (trimmed_before - 1) brings the follower past them.
        if theirs == Some(current) && snapshot.is_some_and(|s| s + 1 >= first_trim.trimmed_before) {
            // The snapshot carried the retained entries: the log starts at the log start, like
            // the leader's, not after the snapshot.
            assert_eq!(first, Some(current.trimmed_before), "the caught-up log starts at the log start");
            break current;
        }
        let late = tokio::time::Instant::now() >= deadline;
        assert!(!late, "the follower never caught up: {theirs:?} {snapshot:?}, the leader's {current:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Retention may trim again once the follower caught up (segments go on rolling): the
    // offsets below its log start of now are gone from every replica, the rest must be here.
    let raft = cluster.brokers[follower].partitions().raft(group).expect("the follower hosts the partition");
    let now_from = log_start_of(&raft).await.map_or(start.offset, |w| w.borrow().offset).max(start.offset);
    let ours = log(&cluster, follower, group);
    for offset in produced.range(now_from..).map(|(o, _)| *o) {
        assert_eq!(ours.find_offset(offset).map(|at| at.base_offset), Some(offset), "offset {offset} on the follower");
    }
    assert_eq!(ours.find_offset(start.offset - 1), None, "no trimmed offset returned");
    drop(ours);

    tracing::info!("--- led by the caught-up replica, the partition serves every retained offset");
    let (served_from, served) = fetch_led_by(&cluster, group, follower, start.offset, &produced).await;
    let expected: Vec<(u64, Bytes)> = produced.range(served_from..).map(|(o, b)| (*o, b.clone())).collect();
    assert!(served == expected, "the caught-up leader serves other batches than those written");

    tracing::info!("--- writes after it agree on every replica");
    let more = produce(&cluster, group, 200..220).await;
    // Retention may trim again meanwhile; the caught-up replica purges exactly like the others.
    settled_log_start(&cluster, group).await;
    let (_, theirs, ours) = agreeing_logs(&cluster, group, follower).await;
    assert_same_entries(&theirs, &ours);
    for base in more.keys() {
        assert_eq!(ours.find_offset(*base), theirs.find_offset(*base), "offset {base}");
    }
    drop((theirs, ours));
    cluster.shutdown().await;
}

/// Creates [`TOPIC`] with one RF-3 partition and [`RETENTION_BYTES`], waits until every running
/// broker hosts its group and one leads it; returns the group id.
async fn create_topic(cluster: &Cluster) -> u64 {
    let n = cluster.brokers.len();
    cluster
        .wait_for(SETTLE, "brokers registered", |c| {
            c.brokers.iter().all(|b| b.controller().metadata().read(|m| m.brokers().count() == n))
        })
        .await;
    let config = TopicConfig { retention_bytes: Some(RETENTION_BYTES), ..TopicConfig::new(1, 3) };
    let create = ControllerCommand::CreateTopic { name: TOPIC.into(), config };
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

/// Batch `i`: two messages of about 100 bytes.
fn batch(i: u64) -> Bytes {
    let mut b = BatchBuilder::new(ProducerStamp::NONE, 256);
    for k in 0..2 {
        b.push(&Record::new(format!("{i:06}-{k}-{}", "x".repeat(90)), 1_000 + i as i64));
    }
    b.finish()
}

/// Writes `batches` one at a time through the leader of `group`, a few ms apart so that
/// segments roll by age in between; returns each written batch by base offset.
async fn produce(cluster: &Cluster, group: u64, batches: std::ops::Range<u64>) -> BTreeMap<u64, Bytes> {
    let mut written = BTreeMap::new();
    for i in batches {
        let b = batch(i);
        let command = PartitionCommand::produce(&b);
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let leader = leader_of(cluster, group).and_then(|l| cluster.brokers[l].partitions().raft(group));
            if let Some(raft) = leader {
                match raft.client_write(command.clone()).await.map(|r| r.data) {
                    Ok(Reply::Appended { base_offset, .. }) => {
                        written.insert(base_offset, b);
                        break;
                    }
                    Ok(other) => panic!("batch {i} was refused: {other:?}"),
                    Err(e) => tracing::info!("batch {i} not written, retrying: {e}"),
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "no leader accepted batch {i}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    written
}

/// Waits until retention has nothing more to do on the running replicas of `group`: they agree
/// on a log start, have purged up to it, and the leader's log allows no further trim.
async fn settled_log_start(cluster: &Cluster, group: u64) -> LogStart {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let mut starts = Vec::new();
        for b in &cluster.brokers {
            let Some(raft) = b.partitions().raft(group) else { break };
            starts.extend(log_start_of(&raft).await.map(|w| *w.borrow()));
        }
        let agreed = starts.len() == cluster.brokers.len() && starts.iter().all(|s| *s == starts[0]);
        if agreed && starts[0].trimmed_before > 0 {
            let start = starts[0];
            let purged = cluster
                .brokers
                .iter()
                .all(|b| b.partitions().log(group).is_some_and(|l| l.first_index() == start.trimmed_before));
            let done = leader_of(cluster, group)
                .and_then(|l| cluster.brokers[l].partitions().log(group))
                .is_some_and(|l| l.retention_point().is_none());
            if purged && done {
                return start;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "retention never settled: {starts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The log start of `group` on its leader, if it has one.
async fn leader_log_start(cluster: &Cluster, group: u64) -> Option<LogStart> {
    let raft = leader_of(cluster, group).and_then(|l| cluster.brokers[l].partitions().raft(group))?;
    log_start_of(&raft).await.map(|w| *w.borrow())
}

/// Makes `brokers[new_leader]` lead `group` and fetches every batch from the log start `from` to
/// the end through its client API, moving the leadership back to it (and starting over) whenever
/// the fetch is told to retry. Returns the log start it fetched from and what it fetched.
///
/// Each election appends an entry, which may roll a segment and let retention trim one more
/// segment: a fetch told OFFSET_OUT_OF_RANGE with a later log start, at a batch that was written,
/// starts over from there, as a client would.
async fn fetch_led_by(
    cluster: &Cluster,
    group: u64,
    new_leader: usize,
    mut from: u64,
    produced: &BTreeMap<u64, Bytes>,
) -> (u64, Vec<(u64, Bytes)>) {
    let end = produced.last_key_value().map(|(o, _)| o + 2).expect("batches written");
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "broker {new_leader} never served the partition");
        match leader_of(cluster, group) {
            Some(l) if l == new_leader => {}
            Some(l) => {
                let raft = cluster.brokers[l].partitions().raft(group).expect("the leader hosts the group");
                let to = cluster.brokers[new_leader].config().node_id;
                if let Err(e) = raft.trigger().transfer_leader(to).await {
                    tracing::info!("leadership not transferred, retrying: {e}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            None => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        }
        let mut client = cluster.client(new_leader).await;
        let mut fetched = Vec::new();
        let mut next = from;
        while next < end {
            let request = FetchRequest {
                topic: TOPIC.into(),
                partition: 0,
                offset: next,
                max_bytes: 0,
                max_wait_ms: 0,
                ..FetchRequest::default()
            };
            let r = client.fetch(request).await.expect("rpc").into_inner();
            let code = error_of(r.error.as_ref()).error_code();
            if code.is_retriable() {
                tracing::info!("fetch from {next} answered {code:?}, retrying");
                break;
            }
            if code == ErrorCode::OffsetOutOfRange && r.log_start_offset > next {
                assert!(produced.contains_key(&r.log_start_offset), "log start {} is not a batch", r.log_start_offset);
                tracing::info!("retention trimmed again, to {}; fetching from there", r.log_start_offset);
                from = r.log_start_offset;
                break;
            }
            assert_eq!(
                code,
                ErrorCode::Ok,
                "fetch of offset {next} from broker {new_leader}, log start {}",
                r.log_start_offset
            );
            assert_eq!(r.log_start_offset, from, "the caught-up leader reports the same log start");
            assert!(!r.batches.is_empty(), "no batch at {next} below the high watermark {}", r.high_watermark);
            fetched.extend(r.batches.into_iter().map(|b| (b.base_offset, b.batch)));
            next = fetched.last().map(|(o, _)| o + 2).expect("a batch");
        }
        if next >= end {
            return (from, fetched);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks what the leader's client API says about `start`, and that it serves every batch of
/// `produced` from `start` on, as written.
async fn assert_client_view(cluster: &Cluster, group: u64, start: LogStart, produced: &BTreeMap<u64, Bytes>) {
    let fetch = |offset| FetchRequest {
        topic: TOPIC.into(),
        partition: 0,
        offset,
        max_bytes: 0,
        max_wait_ms: 0,
        ..FetchRequest::default()
    };

    let below = fetch_from_leader(cluster, group, fetch(0)).await;
    assert_eq!(error_of(below.error.as_ref()).error_code(), ErrorCode::OffsetOutOfRange);
    assert_eq!(below.log_start_offset, start.offset, "the answer names the log start");
    let just_below = fetch_from_leader(cluster, group, fetch(start.offset - 1)).await;
    assert_eq!(error_of(just_below.error.as_ref()).error_code(), ErrorCode::OffsetOutOfRange);

    let earliest = ListOffsetsRequest {
        topic: TOPIC.into(),
        partition: 0,
        at: Some(At::Earliest(Empty {})),
        ..Default::default()
    };
    let earliest = eventually(CLIENT_LIMIT, "list-offsets earliest from the leader", || async {
        let leader = leader_of(cluster, group).ok_or("no leader yet")?;
        let r = cluster.client(leader).await.list_offsets(earliest.clone()).await.map_err(|s| s.to_string())?;
        let r = r.into_inner();
        unless_retriable(r.error.as_ref())?;
        Ok(r)
    })
    .await;
    assert_eq!((error_of(earliest.error.as_ref()).error_code(), earliest.offset), (ErrorCode::Ok, start.offset));

    let expected: Vec<(u64, Bytes)> = produced.range(start.offset..).map(|(o, b)| (*o, b.clone())).collect();
    let end = produced.last_key_value().map(|(o, _)| o + 2).expect("batches written");
    let mut fetched = Vec::new();
    let mut next = start.offset;
    while next < end {
        let r = fetch_from_leader(cluster, group, fetch(next)).await;
        assert_eq!(error_of(r.error.as_ref()).error_code(), ErrorCode::Ok, "fetch from {next}");
        assert_eq!(r.log_start_offset, start.offset);
        assert!(!r.batches.is_empty(), "no batch at {next} below the high watermark {}", r.high_watermark);
        fetched.extend(r.batches.into_iter().map(|b| (b.base_offset, b.batch)));
        next = fetched.last().map(|(o, _)| o + 2).expect("a batch");
    }
    assert!(fetched == expected, "the batches after the log start differ from those written");
}

/// How long a client request may keep getting retriable answers (a leader just elected, or
/// leadership moving back to its preferred broker).
const CLIENT_LIMIT: Duration = Duration::from_secs(30);

/// `request`'s answer from the partition's current leader, asking again (and finding the leader
/// again) while the answer is retriable; any other answer is returned for the test to judge.
async fn fetch_from_leader(cluster: &Cluster, group: u64, request: FetchRequest) -> FetchResponse {
    eventually(CLIENT_LIMIT, "a fetch from the leader", || async {
        let leader = leader_of(cluster, group).ok_or("no leader yet")?;
        let r = cluster.client(leader).await.fetch(request.clone()).await.map_err(|s| s.to_string())?;
        let r = r.into_inner();
        unless_retriable(r.error.as_ref())?;
        Ok(r)
    })
    .await
}
