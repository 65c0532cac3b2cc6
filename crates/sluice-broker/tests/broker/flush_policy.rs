//! A topic's flush policy end to end over the client API: `flush_interval_ms` is accepted at
//! creation (and refused out of range), described back by every broker, and decides when a
//! replica counts a write saved — a relaxed topic's produce is acknowledged while the leader's
//! log is not yet fsynced, a default topic's only once it is, and the relaxed log is fsynced
//! within its interval. Fetches return what was produced either way.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_common::record::{BatchBuilder, ProducerStamp, Record, RecordBatch};
use sluice_proto::v1::{CreateTopicRequest, FetchRequest, MetadataRequest, ProduceRequest, TopicConfig};
use sluice_proto::{Error, ErrorCode, error_of};

use super::cluster::{Cluster, eventually, unless_retriable};

/// Long enough that no interval fsync runs while the test looks (only a vote would sync).
const LONG_MS: u64 = 60_000;
const SHORT_MS: u64 = 200;

fn config(flush_interval_ms: Option<u64>) -> TopicConfig {
    TopicConfig { partitions: 1, replication_factor: 3, flush_interval_ms, ..TopicConfig::default() }
}

/// Creates `name` through any broker, retrying while the controller has no leader; the answer's
/// error and the topic's config as the creation answered it.
async fn create(cluster: &Cluster, name: &str, config: TopicConfig) -> (Error, Option<TopicConfig>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for i in 0..cluster.brokers.len() {
            let request = CreateTopicRequest { name: name.into(), config: Some(config.clone()) };
            let r = cluster.client(i).await.create_topic(request).await.expect("rpc").into_inner();
            let e = error_of(r.error.as_ref());
            if !matches!(e.error_code(), ErrorCode::NotController | ErrorCode::Unavailable) {
                return (e, r.topic.and_then(|t| t.config));
            }
        }
        assert!(Instant::now() < deadline, "no controller leader took the creation of {name}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The partition group of `name`'s partition 0, once broker 0 applied the topic: the creation
/// was answered by the controller leader, which may be another broker.
async fn group_of(cluster: &Cluster, name: &str) -> u64 {
    let group =
        |c: &Cluster| c.brokers[0].controller().metadata().read(|m| Some(m.topic(name)?.partitions[0].group_id));
    cluster.wait_for(Duration::from_secs(30), &format!("broker 0 to apply {name}"), |c| group(c).is_some()).await;
    group(cluster).expect("applied")
}

/// Produces `batch` to partition 0 of `name` through its leader; the leader's index in
/// `cluster.brokers` and the produced base offset.
async fn produce(cluster: &Cluster, name: &str, group: u64, batch: Bytes) -> (usize, u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let leader = cluster.brokers.iter().position(|b| b.partitions().raft(group).is_some_and(|r| r.is_leader()));
        if let Some(i) = leader {
            let request = ProduceRequest {
                topic: name.into(),
                partition: 0,
                batch: batch.clone(),
                timeout_ms: 10_000,
                ..Default::default()
            };
            let r = cluster.client(i).await.produce(request).await.expect("rpc").into_inner();
            match error_of(r.error.as_ref()).error_code() {
                ErrorCode::Ok => return (i, r.base_offset),
                c if c.is_retriable() => {}
                other => panic!("produce to {name} failed: {other:?} {:?}", r.error),
            }
        }
        assert!(Instant::now() < deadline, "{name} has no leader that accepts writes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn batch(tag: &str, n: usize) -> Bytes {
    let mut b = BatchBuilder::new(ProducerStamp::NONE, 256);
    for i in 0..n {
        b.push(&Record::new(format!("{tag}-{i}"), 1_000));
    }
    b.finish()
}

/// Produces a batch and counts, right after the acknowledgement, the replicas whose log had
/// already fsynced its entry: at least a majority (2 of 3) for `Some(true)`, none for
/// `Some(false)` (`None`: no check, the interval may have run). Then checks that a fetch returns
/// it. Returns (leader, entry index).
async fn produce_and_fetch(cluster: &Cluster, name: &str, want_synced_at_ack: Option<bool>) -> (usize, u64) {
    let group = group_of(cluster, name).await;
    let (leader, base) = produce(cluster, name, group, batch(name, 3)).await;
    let last = cluster.brokers[leader].partitions().log(group).and_then(|l| l.last_id()).expect("in the log").index;
    let synced = cluster
        .brokers
        .iter()
        .filter(|b| b.partitions().log(group).is_some_and(|l| l.synced_index() >= Some(last)))
        .count();
    let expected = want_synced_at_ack.is_none_or(|want| if want { synced >= 2 } else { synced == 0 });
    assert!(expected, "{name}: acknowledged with {synced} of 3 replicas fsynced");

    // From the leader of the moment: leadership may have moved since the produce.
    let fetch = FetchRequest {
        topic: name.into(),
        partition: 0,
        offset: base,
        max_bytes: 0,
        max_wait_ms: 0,
        ..FetchRequest::default()
    };
    let r = eventually(Duration::from_secs(30), &format!("a fetch of {name} answered"), || async {
        let at = cluster.brokers.iter().position(|b| b.partitions().raft(group).is_some_and(|r| r.is_leader()));
        let r = cluster.client(at.unwrap_or(leader)).await.fetch(fetch.clone()).await.expect("rpc").into_inner();
        unless_retriable(r.error.as_ref())?;
        Ok(r)
    })
    .await;
    assert_eq!(error_of(r.error.as_ref()), Error::ok());
    let values: Vec<String> = r
        .batches
        .iter()
        .flat_map(|b| RecordBatch::parse(b.batch.clone()).expect("intact").records().collect::<Vec<_>>())
        .map(|r| String::from_utf8(r.expect("record").value.to_vec()).expect("utf-8"))
        .collect();
    assert_eq!(values, (0..3).map(|i| format!("{name}-{i}")).collect::<Vec<_>>());
    (leader, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topics_flush_interval_is_created_described_and_decides_when_a_write_is_acknowledged() {
    let cluster = Cluster::start(3).await;
    cluster
        .wait_for(Duration::from_secs(20), "brokers registered and live", |c| {
            c.brokers.iter().all(|b| b.controller().metadata().read(|m| m.live_brokers().len() == 3))
        })
        .await;

    tracing::info!("--- out-of-range intervals are refused, saying what is accepted");
    let (zero, _) = create(&cluster, "zero", config(Some(0))).await;
    assert_eq!(zero.error_code(), ErrorCode::InvalidConfig, "{zero:?}");
    assert!(zero.message.contains("flush_interval_ms is 0") && zero.message.contains("omit it"), "{}", zero.message);

    tracing::info!("--- relaxed and default topics are created; the answer carries the policy");
    for (name, flush) in [("lazy", Some(LONG_MS)), ("quick", Some(SHORT_MS)), ("safe", None)] {
        let (e, answered) = create(&cluster, name, config(flush)).await;
        assert_eq!(e, Error::ok(), "{name}");
        assert_eq!(answered.and_then(|c| c.flush_interval_ms), flush, "{name}");
    }

    tracing::info!("--- every broker describes the policy back, once it applied the topics");
    for i in 0..cluster.brokers.len() {
        let m = eventually(Duration::from_secs(30), &format!("broker {i} to describe both topics"), || async {
            let request = MetadataRequest { topics: vec!["lazy".into(), "safe".into()] };
            let m = cluster.client(i).await.metadata(request).await.expect("metadata").into_inner();
            unless_retriable(m.error.as_ref())?;
            match m.topics.iter().find(|t| error_of(t.error.as_ref()).error_code() == ErrorCode::UnknownTopic) {
                Some(t) => Err(format!("{} not applied yet", t.name)),
                None => Ok(m),
            }
        })
        .await;
        assert_eq!(error_of(m.error.as_ref()), Error::ok(), "broker {i}");
        let flush: Vec<Option<u64>> =
            m.topics.iter().map(|t| t.config.as_ref().and_then(|c| c.flush_interval_ms)).collect();
        assert_eq!(flush, vec![Some(LONG_MS), None], "broker {i}");
    }

    tracing::info!("--- a relaxed write is acknowledged before its fsync, a default one after");
    produce_and_fetch(&cluster, "lazy", Some(false)).await;
    produce_and_fetch(&cluster, "safe", Some(true)).await;

    tracing::info!("--- a relaxed log is fsynced within its interval, on every replica");
    let (_, last) = produce_and_fetch(&cluster, "quick", None).await;
    let group = group_of(&cluster, "quick").await;
    // The interval on top of replication to every follower, with room for a loaded machine;
    // without its interval fsync a relaxed log is not fsynced at all.
    let limit = Duration::from_millis(SHORT_MS) + Duration::from_secs(10);
    cluster
        .wait_for(limit, "every replica of `quick` fsynced the write", |c| {
            c.brokers.iter().all(|b| b.partitions().log(group).is_some_and(|l| l.synced_index() >= Some(last)))
        })
        .await;
    cluster.shutdown().await;
}
