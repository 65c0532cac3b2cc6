//! The client API over real gRPC, as an SDK would call it: admin writes find the controller
//! through `NOT_CONTROLLER` hints, batches produced to partition leaders come back from fetches
//! with their offsets and contents in order, followers redirect with `NOT_LEADER`, fetches
//! long-poll, offsets are listed by position and time, idempotent retries are acknowledged once,
//! and bad requests get the code that says what is wrong. A single-node cluster serves RF-1
//! topics, and the `sluice-broker` binary starts from a config file and stops on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_common::record::{BATCH_HEADER_LEN, BatchBuilder, ProducerStamp, Record, RecordBatch};
use sluice_proto::v1::list_offsets_request::At;
use sluice_proto::v1::sluice_client::SluiceClient;
use sluice_proto::v1::{
    CreateTopicRequest, DeleteTopicRequest, Empty, FetchRequest, FetchResponse, InitProducerRequest,
    ListOffsetsRequest, MetadataRequest, ProduceRequest, ProduceResponse, TopicConfig,
};
use sluice_proto::{Error, ErrorCode, error_of};
use tonic::transport::Channel;

use super::cluster::{Cluster, TEST_MAX_BATCH_BYTES, connect, eventually, unless_retriable};

pub(super) type Client = SluiceClient<Channel>;

pub(super) fn code(error: Option<&Error>) -> ErrorCode {
    error_of(error).error_code()
}

/// A batch of `values`, the i-th stamped `ts + i`.
pub(super) fn batch(stamp: ProducerStamp, values: &[String], ts: i64) -> Bytes {
    let mut b = BatchBuilder::new(stamp, 256);
    for (i, v) in (0i64..).zip(values) {
        b.push(&Record::new(v.clone(), ts + i));
    }
    b.finish()
}

fn values(p: u32, i: u64) -> Vec<String> {
    vec![format!("p{p}-b{i}-a"), format!("p{p}-b{i}-b")]
}

pub(super) fn produce_request(topic: &str, partition: u32, batch: Bytes) -> ProduceRequest {
    ProduceRequest { topic: topic.into(), partition, batch, timeout_ms: 10_000, ..Default::default() }
}

/// Waits until every broker of `cluster` sees `n` live brokers.
pub(super) async fn wait_live(cluster: &Cluster, n: usize) {
    cluster
        .wait_for(Duration::from_secs(20), "brokers registered and live", |c| {
            c.brokers.iter().all(|b| b.controller().metadata().read(|m| m.live_brokers().len() == n))
        })
        .await;
}

pub(super) fn fetch_request(topic: &str, partition: u32, offset: u64, max_wait_ms: u32) -> FetchRequest {
    FetchRequest { topic: topic.into(), partition, offset, max_bytes: 0, max_wait_ms, ..FetchRequest::default() }
}

/// Sends an admin write to broker 0, following `NOT_CONTROLLER` hints (and retrying while the
/// controller elects a leader) until it is answered; returns the final answer's error and
/// whatever else `call` took from it.
pub(super) async fn admin<T, F, Fut>(cluster: &Cluster, mut call: F) -> (Error, T)
where
    F: FnMut(Client) -> Fut,
    Fut: std::future::Future<Output = (Error, T)>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut client = cluster.client(0).await;
    loop {
        let (e, answer) = call(client.clone()).await;
        match (e.error_code(), &e.leader) {
            (ErrorCode::NotController, Some(leader)) => client = connect(&leader.client_address).await,
            // Not every retriable code: a replication factor above the cluster's size is answered
            // NOT_ENOUGH_REPLICAS, which the test expects.
            (ErrorCode::NotController | ErrorCode::Unavailable | ErrorCode::Timeout, _) => {}
            _ => return (e, answer),
        }
        assert!(Instant::now() < deadline, "no controller leader answered: {e:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(super) async fn create_topic(cluster: &Cluster, name: &str, config: TopicConfig) -> Error {
    admin(cluster, |mut c| {
        let request = CreateTopicRequest { name: name.into(), config: Some(config.clone()) };
        async move { (error_of(c.create_topic(request).await.expect("rpc").get_ref().error.as_ref()), ()) }
    })
    .await
    .0
}

/// Index into `cluster.brokers` of the leader of `topic`/`partition`, once every broker's
/// metadata names the same one.
pub(super) async fn leader_of(cluster: &Cluster, topic: &str, partition: u32) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut seen = Vec::new();
        for i in 0..cluster.brokers.len() {
            let request = MetadataRequest { topics: vec![topic.into()] };
            let m = cluster.client(i).await.metadata(request).await.expect("metadata").into_inner();
            seen.push(m.topics.first().and_then(|t| t.partitions.get(partition as usize)).and_then(|p| p.leader));
        }
        if let Some(Some(leader)) = seen.first().filter(|l| seen.iter().all(|s| s == *l)) {
            return cluster.brokers.iter().position(|b| b.config().node_id == *leader).expect("a running broker");
        }
        assert!(Instant::now() < deadline, "{topic}/{partition} has no agreed leader: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Produces to the leader of `topic`/`partition`, following `NOT_LEADER` while it settles.
pub(super) async fn produce(cluster: &Cluster, topic: &str, partition: u32, batch: Bytes) -> ProduceResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut client = cluster.client(leader_of(cluster, topic, partition).await).await;
        let r = client.produce(produce_request(topic, partition, batch.clone())).await.expect("rpc").into_inner();
        match code(r.error.as_ref()) {
            c if c.is_retriable() && Instant::now() < deadline => {}
            _ => return r,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `call` to the leader of `topic`/`partition`, found again before every attempt, until
/// `call` returns `Ok` (it returns `Err` for a retriable answer: leadership may move at any
/// time, e.g. back to a partition's preferred leader once that broker has been live a while).
pub(super) async fn ask_leader<T, F, Fut>(cluster: &Cluster, topic: &str, partition: u32, call: F) -> T
where
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let what = format!("the leader of {topic}/{partition} to answer");
    eventually(Duration::from_secs(30), &what, || async {
        call(cluster.client(leader_of(cluster, topic, partition).await).await).await
    })
    .await
}

/// Fetches with `request` from the leader of its partition; retriable answers are asked again.
pub(super) async fn fetch_from_leader(cluster: &Cluster, request: FetchRequest) -> FetchResponse {
    let (topic, partition) = (request.topic.clone(), request.partition);
    ask_leader(cluster, &topic, partition, |mut leader| {
        let request = request.clone();
        async move {
            let r = leader.fetch(request).await.expect("rpc").into_inner();
            unless_retriable(r.error.as_ref())?;
            Ok(r)
        }
    })
    .await
}

/// Creates `topic` with one partition on all three brokers and writes `batches` one-message
/// batches to it, each acknowledged.
async fn one_partition_topic_with(cluster: &Cluster, topic: &str, batches: u64) {
    let config = TopicConfig { partitions: 1, replication_factor: 3, ..Default::default() };
    assert_eq!(create_topic(cluster, topic, config).await, Error::ok());
    for i in 0..batches {
        let r = produce(cluster, topic, 0, batch(ProducerStamp::NONE, &values(0, i), 1)).await;
        assert_eq!(code(r.error.as_ref()), ErrorCode::Ok);
    }
}

/// The values of every message in `response`'s batches at or after `from`, with their offsets.
pub(super) fn messages(response: &FetchResponse, from: u64) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    for b in &response.batches {
        let parsed = RecordBatch::parse(b.batch.clone()).expect("fetched batches are intact");
        for (offset, r) in (b.base_offset..).zip(parsed.records()) {
            let value = String::from_utf8(r.expect("record").value.to_vec()).expect("utf-8");
            if offset >= from {
                out.push((offset, value));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_three_broker_cluster_the_client_api_creates_produces_fetches_and_refuses_what_it_must() {
    let cluster = Cluster::start(3).await;
    wait_live(&cluster, 3).await;

    tracing::info!("--- admin writes reach the controller leader through NOT_CONTROLLER hints");
    assert_eq!(
        create_topic(&cluster, "orders", TopicConfig { partitions: 3, replication_factor: 3, ..Default::default() })
            .await,
        Error::ok()
    );
    let small =
        TopicConfig { partitions: 1, replication_factor: 3, max_message_bytes: Some(100), ..Default::default() };
    assert_eq!(create_topic(&cluster, "small", small).await, Error::ok());
    let again =
        create_topic(&cluster, "orders", TopicConfig { partitions: 1, replication_factor: 1, ..Default::default() })
            .await;
    assert_eq!(again.error_code(), ErrorCode::TopicExists, "{again:?}");
    let bad =
        create_topic(&cluster, "no spaces", TopicConfig { partitions: 1, replication_factor: 1, ..Default::default() })
            .await;
    assert_eq!(bad.error_code(), ErrorCode::InvalidTopicName, "{bad:?}");
    assert!(bad.message.contains("[a-zA-Z0-9._-]"), "the message says what is allowed: {}", bad.message);
    let too_many =
        create_topic(&cluster, "wide", TopicConfig { partitions: 1, replication_factor: 4, ..Default::default() })
            .await;
    assert_eq!(too_many.error_code(), ErrorCode::NotEnoughReplicas, "{too_many:?}");

    produce_and_fetch(&cluster).await;
    redirects_and_bad_requests(&cluster).await;
    long_polls(&cluster).await;
    list_offsets(&cluster).await;
    idempotent_retries(&cluster).await;
    pipelined_stream(&cluster).await;

    tracing::info!("--- a deleted topic is gone");
    let delete = |name: &'static str| {
        admin(&cluster, move |mut c| async move {
            let request = DeleteTopicRequest { name: name.into() };
            (error_of(c.delete_topic(request).await.expect("rpc").get_ref().error.as_ref()), ())
        })
    };
    let delete = async |name| delete(name).await.0;
    assert_eq!(delete("small").await, Error::ok());
    assert_eq!(delete("small").await.error_code(), ErrorCode::UnknownTopic);

    tracing::info!("--- an idle produce stream does not hold up a graceful shutdown");
    let mut leader = cluster.client(leader_of(&cluster, "orders", 0).await).await;
    let (_keep_open, requests) = tokio::sync::mpsc::unbounded_channel::<ProduceRequest>();
    let idle = futures_util::stream::unfold(requests, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) });
    let mut answers = leader.produce_stream(idle).await.expect("a stream").into_inner();
    tokio::time::timeout(Duration::from_secs(30), cluster.shutdown()).await.expect("the brokers stop");
    let ended = tokio::time::timeout(Duration::from_secs(5), answers.message()).await.expect("the stream ends");
    assert!(!matches!(ended, Ok(Some(_))), "no answer to nothing: {ended:?}");
}

async fn produce_and_fetch(cluster: &Cluster) {
    tracing::info!("--- batches produced to each partition's leader get dense offsets");
    for p in 0..3 {
        for i in 0..5u64 {
            let r = produce(cluster, "orders", p, batch(ProducerStamp::NONE, &values(p, i), 1_000 * i as i64)).await;
            assert_eq!(error_of(r.error.as_ref()), Error::ok());
            assert_eq!((r.base_offset, r.count, r.duplicate), (2 * i, 2, false), "partition {p} batch {i}");
        }
    }

    tracing::info!("--- fetches return them whole, in order, with their base offsets");
    for p in 0..3 {
        let all = fetch_from_leader(cluster, fetch_request("orders", p, 0, 0)).await;
        assert_eq!(error_of(all.error.as_ref()), Error::ok());
        assert_eq!((all.high_watermark, all.log_start_offset), (10, 0));
        let bases: Vec<u64> = all.batches.iter().map(|b| b.base_offset).collect();
        assert_eq!(bases, [0, 2, 4, 6, 8]);
        let expected: Vec<(u64, String)> = (0..5).flat_map(|i| (2 * i..).zip(values(p, i))).collect();
        assert_eq!(messages(&all, 0), expected);

        let middle = fetch_from_leader(cluster, fetch_request("orders", p, 3, 0)).await;
        assert_eq!(middle.batches[0].base_offset, 2, "the batch holding offset 3 starts before it");
        assert_eq!(messages(&middle, 3)[0], (3, format!("p{p}-b1-b")));
        let one = FetchRequest { max_bytes: 1, ..fetch_request("orders", p, 0, 0) };
        let one = fetch_from_leader(cluster, one).await;
        assert_eq!(one.batches.len(), 1, "at least one batch, even over max_bytes");
        let past = fetch_from_leader(cluster, fetch_request("orders", p, 11, 0)).await;
        assert_eq!(code(past.error.as_ref()), ErrorCode::OffsetOutOfRange);
        assert_eq!((past.high_watermark, past.log_start_offset), (10, 0), "says what exists");
    }
}

async fn redirects_and_bad_requests(cluster: &Cluster) {
    tracing::info!("--- a follower answers NOT_LEADER naming the leader's client address");
    let leader = leader_of(cluster, "orders", 0).await;
    let follower = (leader + 1) % cluster.brokers.len();
    let mut f = cluster.client(follower).await;
    let r = f.produce(produce_request("orders", 0, batch(ProducerStamp::NONE, &values(0, 99), 1))).await;
    let e = error_of(r.expect("rpc").get_ref().error.as_ref());
    assert_eq!(e.error_code(), ErrorCode::NotLeader, "{e:?}");
    let hint = e.leader.expect("the leader is named");
    assert_eq!(hint.node_id, cluster.brokers[leader].config().node_id);
    assert_eq!(hint.client_address, cluster.brokers[leader].client_addr().to_string());
    let fetched = f.fetch(fetch_request("orders", 0, 0, 0)).await.expect("rpc").into_inner();
    assert_eq!(code(fetched.error.as_ref()), ErrorCode::NotLeader, "fetches too");

    tracing::info!("--- unknown topics and partitions, bad names, oversize and corrupt batches");
    let plain = batch(ProducerStamp::NONE, &["v".to_owned()], 1);
    // Sent to the leader of orders/0, whatever the topic: refusals of a topic that does not exist
    // need no leader of it.
    let refused = async |topic: &str, partition: u32, batch: Bytes| {
        let request = produce_request(topic, partition, batch);
        let r = ask_leader(cluster, "orders", 0, |mut l| {
            let request = request.clone();
            async move {
                let r = l.produce(request).await.expect("rpc").into_inner();
                unless_retriable(r.error.as_ref())?;
                Ok(r)
            }
        })
        .await;
        assert_eq!((r.base_offset, r.count), (0, 0), "nothing acknowledged");
        error_of(r.error.as_ref())
    };
    assert_eq!(refused("nope", 0, plain.clone()).await.error_code(), ErrorCode::UnknownTopic);
    assert_eq!(refused("orders", 7, plain.clone()).await.error_code(), ErrorCode::UnknownPartition);
    assert_eq!(refused("bad/name", 0, plain.clone()).await.error_code(), ErrorCode::InvalidTopicName);
    let internal = refused("__consumer_offsets", 0, plain.clone()).await;
    assert_eq!(internal.error_code(), ErrorCode::InvalidTopicName, "internal topics are the brokers' own");
    assert!(internal.message.contains("internal topic"), "{}", internal.message);
    let big = batch(ProducerStamp::NONE, &vec!["x".repeat(120 * 1024); 3], 1);
    let e = refused("orders", 0, big).await;
    assert_eq!(e.error_code(), ErrorCode::MessageTooLarge, "{e:?}");
    assert!(e.message.contains(&format!("at most {TEST_MAX_BATCH_BYTES} bytes")), "{}", e.message);
    let mut corrupt = plain.to_vec();
    *corrupt.last_mut().unwrap() ^= 0xff;
    assert_eq!(refused("orders", 0, Bytes::from(corrupt)).await.error_code(), ErrorCode::InvalidRequest);

    let over = produce_request("small", 0, batch(ProducerStamp::NONE, &["y".repeat(101)], 1));
    let e = ask_leader(cluster, "small", 0, |mut s| {
        let over = over.clone();
        async move {
            let e = error_of(s.produce(over).await.expect("rpc").get_ref().error.as_ref());
            unless_retriable(Some(&e))?;
            Ok(e)
        }
    })
    .await;
    assert_eq!(e.error_code(), ErrorCode::MessageTooLarge, "{e:?}");
    assert!(e.message.contains("101 bytes") && e.message.contains("max_message_bytes"), "{}", e.message);

    let m = cluster
        .client(leader)
        .await
        .metadata(MetadataRequest { topics: vec!["orders".into(), "nope".into()] })
        .await
        .expect("rpc");
    let names: Vec<(&str, ErrorCode)> =
        m.get_ref().topics.iter().map(|t| (t.name.as_str(), code(t.error.as_ref()))).collect();
    assert_eq!(names, [("nope", ErrorCode::UnknownTopic), ("orders", ErrorCode::Ok)], "in name order");
    assert_eq!(m.get_ref().brokers.iter().filter(|b| b.live).count(), 3);
    assert!(m.get_ref().controller_id.is_some());
}

async fn long_polls(cluster: &Cluster) {
    tracing::info!("--- a fetch at the high watermark waits for data and returns when it arrives");
    let mut waiting = {
        let mut c = cluster.client(leader_of(cluster, "orders", 0).await).await;
        tokio::spawn(async move { c.fetch(fetch_request("orders", 0, 10, 60_000)).await.expect("rpc").into_inner() })
    };
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut waiting).await.is_err(),
        "the fetch waits while there is nothing new"
    );
    let started = Instant::now();
    let r = produce(cluster, "orders", 0, batch(ProducerStamp::NONE, &values(0, 5), 5_000)).await;
    assert_eq!(r.base_offset, 10, "{r:?}");
    // Bounds far below the fetch's 60 s wait, with room for a produce on a loaded machine.
    let woke = tokio::time::timeout(Duration::from_secs(30), waiting).await.expect("woken by the produce").unwrap();
    assert!(started.elapsed() < Duration::from_secs(30), "woken by the data, not the wait running out");
    assert_eq!(messages(&woke, 10), (10..).zip(values(0, 5)).collect::<Vec<_>>());
    assert_eq!(woke.high_watermark, 12);

    tracing::info!("--- one with nothing to wait for answers empty when its wait runs out");
    let started = Instant::now();
    let empty = fetch_from_leader(cluster, fetch_request("orders", 0, 12, 300)).await;
    assert_eq!(error_of(empty.error.as_ref()), Error::ok());
    assert!(empty.batches.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(250), "it waited: {:?}", started.elapsed());
}

async fn list_offsets(cluster: &Cluster) {
    tracing::info!("--- offsets by position and by time");
    let at = async |at: Option<At>| {
        let request = ListOffsetsRequest { topic: "orders".into(), partition: 0, at, ..Default::default() };
        let r = ask_leader(cluster, "orders", 0, |mut leader| {
            let request = request.clone();
            async move {
                let r = leader.list_offsets(request).await.expect("rpc").into_inner();
                unless_retriable(r.error.as_ref())?;
                Ok(r)
            }
        })
        .await;
        (code(r.error.as_ref()), r.offset)
    };
    assert_eq!(at(Some(At::Earliest(Empty {}))).await, (ErrorCode::Ok, 0));
    assert_eq!(at(Some(At::Latest(Empty {}))).await, (ErrorCode::Ok, 12));
    // Batch i of partition 0 holds offsets 2i and 2i+1, stamped 1000i and 1000i + 1.
    assert_eq!(at(Some(At::TimestampMs(3_000))).await, (ErrorCode::Ok, 6));
    assert_eq!(at(Some(At::TimestampMs(2_500))).await, (ErrorCode::Ok, 6));
    assert_eq!(at(Some(At::TimestampMs(0))).await, (ErrorCode::Ok, 0));
    assert_eq!(at(Some(At::TimestampMs(99_000))).await, (ErrorCode::Ok, 12), "none that late: the latest");
    assert_eq!(at(None).await.0, ErrorCode::InvalidRequest);
}

async fn idempotent_retries(cluster: &Cluster) {
    tracing::info!("--- producer ids are unique; a retried idempotent batch is acknowledged once");
    let init = async || {
        let (e, id) = admin(cluster, |mut c| async move {
            let r = c.init_producer(InitProducerRequest {}).await.expect("rpc").into_inner();
            (error_of(r.error.as_ref()), (r.producer_id, r.epoch))
        })
        .await;
        assert_eq!(e, Error::ok());
        id
    };
    let (first, second) = (init().await, init().await);
    assert!(first.0 >= 1 && second.0 > first.0, "{first:?} {second:?}");
    assert_eq!(first.1, 0, "a new producer starts at epoch 0");

    let stamp = ProducerStamp { producer_id: first.0 as i64, epoch: 0, base_sequence: 0 };
    let b = batch(stamp, &values(1, 9), 9_000);
    let original = produce(cluster, "orders", 1, b.clone()).await;
    assert_eq!((code(original.error.as_ref()), original.base_offset, original.duplicate), (ErrorCode::Ok, 10, false));
    let retry = produce(cluster, "orders", 1, b).await;
    assert_eq!(code(retry.error.as_ref()), ErrorCode::Ok);
    assert_eq!((retry.base_offset, retry.count, retry.duplicate), (10, 2, true), "the original offsets");
    let all = fetch_from_leader(cluster, fetch_request("orders", 1, 0, 0)).await;
    assert_eq!(all.high_watermark, 12, "written once");
    assert_eq!(all.batches.len(), 6);
}

async fn pipelined_stream(cluster: &Cluster) {
    tracing::info!("--- a produce stream keeps many batches in flight, in order; a resent window is deduplicated");
    let config = TopicConfig { partitions: 1, replication_factor: 3, ..Default::default() };
    assert_eq!(create_topic(cluster, "streamed", config).await, Error::ok());
    let (e, producer_id) = admin(cluster, |mut c| async move {
        let r = c.init_producer(InitProducerRequest {}).await.expect("rpc").into_inner();
        (error_of(r.error.as_ref()), r.producer_id)
    })
    .await;
    assert_eq!(e, Error::ok());
    let batches: Vec<Bytes> = (0..40)
        .map(|i| {
            let stamp = ProducerStamp { producer_id: producer_id as i64, epoch: 0, base_sequence: 2 * i };
            batch(stamp, &values(9, i as u64), 1_000)
        })
        .collect();
    let stream = async |batches: &[Bytes]| {
        let mut leader = cluster.client(leader_of(cluster, "streamed", 0).await).await;
        let requests: Vec<_> = batches.iter().map(|b| produce_request("streamed", 0, b.clone())).collect();
        let mut answers =
            leader.produce_stream(futures_util::stream::iter(requests)).await.expect("stream").into_inner();
        let mut got = Vec::new();
        while let Some(answer) = answers.message().await.expect("answer") {
            got.push(answer);
        }
        got
    };
    // As a producer does: after a retriable error (the leader moved) resend from the failed
    // batch, in order, on a new stream.
    let stream_all = async |batches: &[Bytes]| {
        let mut acked: Vec<ProduceResponse> = Vec::new();
        for _attempt in 0..20 {
            let answers = stream(&batches[acked.len()..]).await;
            assert_eq!(answers.len(), batches.len() - acked.len(), "one answer per batch");
            let ok = answers.iter().take_while(|a| code(a.error.as_ref()) == ErrorCode::Ok).count();
            acked.extend(answers.iter().take(ok).cloned());
            if let Some(failed) = answers.get(ok) {
                let c = code(failed.error.as_ref());
                assert!(c.is_retriable() || c == ErrorCode::OutOfOrderSequence, "{failed:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            } else {
                return acked;
            }
        }
        panic!("the stream kept failing");
    };
    // Sent back to back: the stream's requests do not wait for each other's answers.
    let answers = stream_all(&batches).await;
    for (i, a) in (0u64..).zip(&answers) {
        assert_eq!((a.base_offset, a.count), (2 * i, 2), "batch {i} in order");
    }
    // A producer resending its last five batches after a lost answer gets the original offsets.
    let resent = stream_all(&batches[35..]).await;
    let offsets: Vec<_> = resent.iter().map(|a| (a.base_offset, a.duplicate)).collect();
    assert_eq!(offsets, (35..40).map(|i| (2 * i, true)).collect::<Vec<_>>());
    // A batch that skips a sequence is refused, and so are those behind it; nothing is written.
    let gap = ProducerStamp { producer_id: producer_id as i64, epoch: 0, base_sequence: 90 };
    let refused = stream(&[batch(gap, &values(9, 99), 1_000)]).await;
    assert_eq!(code(refused[0].error.as_ref()), ErrorCode::OutOfOrderSequence);
    let all = fetch_from_leader(cluster, fetch_request("streamed", 0, 0, 0)).await;
    assert_eq!(all.high_watermark, 80, "every batch written once");
}

/// A broker that restarts answers from metadata that may be behind until it has heard from a
/// controller leader and applied what the cluster committed; meanwhile it says UNAVAILABLE,
/// never "no such topic" (jepsen finding F1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_broker_answers_unavailable_until_its_metadata_caught_up() {
    let mut cluster = Cluster::start(3).await;
    wait_live(&cluster, 3).await;
    let config = TopicConfig { partitions: 1, replication_factor: 3, ..Default::default() };
    assert_eq!(create_topic(&cluster, "kept", config).await, Error::ok());
    for i in (0..3).rev() {
        cluster.stop_broker(i).await;
    }
    // Alone, it can hear from no controller leader: its metadata cannot be trusted yet.
    cluster.start_broker(0).await;
    let mut alone = cluster.client(0).await;
    let m = alone.metadata(MetadataRequest { topics: vec!["kept".into()] }).await.expect("rpc").into_inner();
    let e = error_of(m.error.as_ref());
    assert_eq!(e.error_code(), ErrorCode::Unavailable, "{e:?}");
    assert!(e.message.contains("catching up"), "{}", e.message);
    let r = alone.produce(produce_request("nope", 0, batch(ProducerStamp::NONE, &values(0, 1), 1))).await;
    let e = error_of(r.expect("rpc").get_ref().error.as_ref());
    assert_eq!(e.error_code(), ErrorCode::Unavailable, "not UNKNOWN_TOPIC before catching up: {e:?}");
    // With the others back, it catches up and answers from its metadata again.
    cluster.start_broker(1).await;
    cluster.start_broker(2).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = cluster.client(0).await.metadata(MetadataRequest { topics: vec!["kept".into()] }).await;
        let m = m.expect("rpc").into_inner();
        if error_of(m.error.as_ref()).is_ok() {
            assert_eq!(code(m.topics[0].error.as_ref()), ErrorCode::Ok, "the topic is there");
            break;
        }
        assert!(Instant::now() < deadline, "broker 0 never caught up: {:?}", m.error);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.shutdown().await;
}

/// A leader elected after a restart knows how far the log is committed only once it committed
/// an entry of its own term. Before that its high watermark may lag what readers already saw:
/// a consumer's position then looked out of range and the SDK reset it to the earliest offset
/// (jepsen finding F3). Such a leader answers UNAVAILABLE; reads never see the watermark behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_just_elected_never_shows_a_high_watermark_behind_what_was_committed() {
    let mut cluster = Cluster::start(3).await;
    wait_live(&cluster, 3).await;
    one_partition_topic_with(&cluster, "reread", 10).await;
    cluster.restart_all().await;
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(cluster.client(i).await);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    'served: loop {
        assert!(Instant::now() < deadline, "no broker served offset 20 after the restart");
        for client in &mut clients {
            let fetched = client.fetch(fetch_request("reread", 0, 20, 0)).await.expect("rpc").into_inner();
            let e = error_of(fetched.error.as_ref());
            assert_ne!(e.error_code(), ErrorCode::OffsetOutOfRange, "a committed position looked out of range: {e:?}");
            let latest = ListOffsetsRequest {
                topic: "reread".into(),
                partition: 0,
                at: Some(At::Latest(Empty {})),
                ..Default::default()
            };
            let listed = client.list_offsets(latest).await.expect("rpc").into_inner();
            if error_of(listed.error.as_ref()).is_ok() {
                assert!(
                    listed.offset >= 20,
                    "latest went back to {} (fetch answered {e:?} hw {})",
                    listed.offset,
                    fetched.high_watermark
                );
            }
            if e.is_ok() {
                assert_eq!(fetched.high_watermark, 20);
                break 'served;
            }
        }
    }
    cluster.shutdown().await;
}

/// A leader cut off from its peers does not know it was deposed, and its high watermark stops
/// while the new leader's moves on. Served from it, a consumer's position looked out of range
/// and was reset to the earliest offset (jepsen finding F5). It answers UNAVAILABLE instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_its_peers_serves_no_reads() {
    let cluster = Cluster::start(3).await;
    wait_live(&cluster, 3).await;
    one_partition_topic_with(&cluster, "cutoff", 5).await;
    let old = leader_of(&cluster, "cutoff", 0).await;
    cluster.partition(&[old]);
    // The other two elect a leader between them and take five more batches: 20 messages.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut written = 5;
    while written < 10 {
        assert!(Instant::now() < deadline, "the majority side took no writes");
        for i in (0..3).filter(|&i| i != old) {
            let request = produce_request("cutoff", 0, batch(ProducerStamp::NONE, &values(0, written), 1));
            let r = cluster.client(i).await.produce(request).await.expect("rpc").into_inner();
            if code(r.error.as_ref()) == ErrorCode::Ok {
                written += 1;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut cut_off = cluster.client(old).await;
    let fetched = cut_off.fetch(fetch_request("cutoff", 0, 20, 0)).await.expect("rpc").into_inner();
    let e = error_of(fetched.error.as_ref());
    assert!(matches!(e.error_code(), ErrorCode::Unavailable | ErrorCode::NotLeader), "served a read: {e:?}");
    let latest = ListOffsetsRequest {
        topic: "cutoff".into(),
        partition: 0,
        at: Some(At::Latest(Empty {})),
        ..Default::default()
    };
    let listed = cut_off.list_offsets(latest).await.expect("rpc").into_inner();
    let e = error_of(listed.error.as_ref());
    assert!(!e.is_ok() || listed.offset >= 20, "latest {} from a deposed leader", listed.offset);
    cluster.heal();
    cluster.shutdown().await;
}

/// A one-broker cluster, once its broker has registered with the controller.
pub(super) async fn single_broker() -> Cluster {
    single_broker_adjusted(|_| {}).await
}

/// A one-broker cluster configured by `adjust`, once its broker has registered.
async fn single_broker_adjusted(adjust: fn(&mut sluice_broker::BrokerConfig)) -> Cluster {
    let cluster = Cluster::start_adjusted(1, adjust).await;
    cluster
        .wait_for(Duration::from_secs(20), "the broker registered", |c| {
            c.brokers[0].controller().metadata().read(|m| m.live_brokers().len() == 1)
        })
        .await;
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_partition_group_that_failed_to_start_it_starts_once_it_can() {
    let cluster = single_broker().await;
    let config = TopicConfig { partitions: 1, replication_factor: 1, ..Default::default() };
    assert_eq!(create_topic(&cluster, "first", config.clone()).await, Error::ok());
    let hosted = |n: usize| move |c: &Cluster| c.brokers[0].partitions().group_ids().len() == n;
    cluster.wait_for(Duration::from_secs(20), "the first group started", hosted(1)).await;
    // Group ids are handed out in sequence, so the next topic's partition gets the next one: a
    // regular file stands where its directory must be created, so opening its log fails (as a
    // directory the broker cannot create or open would), until the file is removed.
    let partitions = cluster.brokers[0].config().data_dir.join("partitions");
    let first = std::fs::read_dir(&partitions).expect("partitions dir").find_map(|e| {
        let name = e.expect("dir entry").file_name().into_string().expect("utf-8 name");
        name.strip_prefix("first-0.g").map(|g| g.parse::<u64>().expect("a group id"))
    });
    let dir = partitions.join(format!("second-0.g{}", first.expect("the first topic's partition") + 1));
    std::fs::write(&dir, b"not a directory").expect("put a file in the way");
    assert_eq!(create_topic(&cluster, "second", config).await, Error::ok());
    let tried = |c: &Cluster| c.brokers[0].partitions().failed_starts() >= 1;
    cluster.wait_for(Duration::from_secs(30), "a try to start the second group, failing on the file", tried).await;
    assert!(hosted(1)(&cluster), "the second group started despite the file in the way");
    std::fs::remove_file(&dir).expect("remove the file in the way");
    let r = produce(&cluster, "second", 0, batch(ProducerStamp::NONE, &values(0, 0), 7)).await;
    assert_eq!(code(r.error.as_ref()), ErrorCode::Ok, "{r:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_single_broker_rf1_topics_are_written_and_read() {
    let cluster = single_broker().await;
    let config = TopicConfig { partitions: 2, replication_factor: 1, ..Default::default() };
    assert_eq!(create_topic(&cluster, "solo", config).await, Error::ok());
    for p in 0..2 {
        let r = produce(&cluster, "solo", p, batch(ProducerStamp::NONE, &values(p, 0), 7)).await;
        assert_eq!((code(r.error.as_ref()), r.base_offset, r.count), (ErrorCode::Ok, 0, 2));
        let fetched = cluster.client(0).await.fetch(fetch_request("solo", p, 0, 0)).await.expect("rpc").into_inner();
        assert_eq!(messages(&fetched, 0), (0..).zip(values(p, 0)).collect::<Vec<_>>(), "{fetched:?}");
    }
    cluster.shutdown().await;
}

/// `batch` with `edit` applied and its checksum recomputed, as a client following the format
/// with one rule broken would send it.
fn edited(batch: &Bytes, edit: impl FnOnce(&mut [u8])) -> Bytes {
    let mut raw = batch.to_vec();
    edit(&mut raw);
    let crc = crc32fast::hash(&raw[4..]);
    raw[..4].copy_from_slice(&crc.to_le_bytes());
    Bytes::from(raw)
}

/// What a client written from docs/FORMAT.md alone could get wrong is refused over the real API,
/// each with a message naming the rule; a lower sequence is answered as older, a higher one as
/// a gap; a request over the decode limit fails with gRPC status OUT_OF_RANGE, on a stream too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_batches_breaking_the_format_rules_produce_refuses_each_and_says_why() {
    let cluster = single_broker().await;
    let config = TopicConfig { partitions: 1, replication_factor: 1, ..Default::default() };
    assert_eq!(create_topic(&cluster, "wire", config).await, Error::ok());
    let refused = async |batch: Bytes, says: &str| {
        let r = produce(&cluster, "wire", 0, batch).await;
        let e = error_of(r.error.as_ref());
        assert!(e.message.contains(says), "{says:?} not in {e:?}");
        e.error_code()
    };

    tracing::info!("--- header and timestamp rules: INVALID_REQUEST, nothing written");
    let good = batch(ProducerStamp::NONE, &["a".into(), "b".into()], 1_000);
    let invalid = [
        (edited(&good, |b| b[6] = 1), "reserved field (bytes 6-7) is 0x0001; it must be 0"),
        (edited(&good, |b| b[5] = 0x40), "attributes 0x40 set reserved bits 6-7"),
        (edited(&good, |b| b[5] = 0x80), "attributes 0x80 set reserved bits 6-7"),
        (
            edited(&good, |b| b[34..42].copy_from_slice(&1_000i64.to_le_bytes())),
            "max_ts_ms 1000 but its newest record is stamped 1001",
        ),
        // Record 0's ts_delta: after the header and the record's one-byte body_len.
        (edited(&good, |b| b[BATCH_HEADER_LEN + 1] = 2), "first_ts_ms 1000 but its first record is stamped 1001"),
        (edited(&good, |b| b[46] = 1), "tag_summary 0x0000000000000001 but its records' tags give 0x0000000000000000"),
        (
            batch(ProducerStamp { producer_id: -1, epoch: 0, base_sequence: 0 }, &["c".into()], 1),
            "carries epoch -1 and base sequence -1",
        ),
        (
            batch(ProducerStamp { producer_id: -1, epoch: 5, base_sequence: 7 }, &["c".into()], 1),
            "with epoch 5 and base sequence 7",
        ),
    ];
    for (bad, says) in invalid {
        assert_eq!(refused(bad, says).await, ErrorCode::InvalidRequest, "{says}");
    }
    let undated = edited(&good, |b| b[5] = 0x20);
    let says = "a record of a delayed batch lacks the sluice.deliver_at property";
    assert_eq!(refused(undated, says).await, ErrorCode::InvalidDelay, "a delayed batch needs its due times");
    assert_eq!(produce(&cluster, "wire", 0, good.clone()).await.base_offset, 0, "none of them was written");

    tracing::info!("--- sequences count records; lower is older, higher is a gap");
    let (e, id) = admin(&cluster, |mut c| async move {
        let r = c.init_producer(InitProducerRequest {}).await.expect("rpc").into_inner();
        (error_of(r.error.as_ref()), r.producer_id as i64)
    })
    .await;
    assert_eq!(e, Error::ok());
    let stamped =
        |seq, n: usize| batch(ProducerStamp { producer_id: id, epoch: 0, base_sequence: seq }, &vec!["s".into(); n], 5);
    // Its first batch was refused (a leader not ready yet) and the next came on: not written, or
    // the first could never be.
    let unknown = refused(stamped(3, 1), "is not known to this partition").await;
    assert_eq!(unknown, ErrorCode::UnknownProducer);
    assert_eq!(code(produce(&cluster, "wire", 0, stamped(0, 3)).await.error.as_ref()), ErrorCode::Ok);
    assert_eq!(code(produce(&cluster, "wire", 0, stamped(3, 1)).await.error.as_ref()), ErrorCode::Ok);
    let older = refused(stamped(1, 1), "expected sequence 4, got 1, which is older").await;
    assert_eq!(older, ErrorCode::OutOfOrderSequence);
    let ahead = refused(stamped(6, 1), "expected sequence 4, got 6, which is ahead").await;
    assert_eq!(ahead, ErrorCode::OutOfOrderSequence);
    assert!(produce(&cluster, "wire", 0, stamped(0, 3)).await.duplicate, "an exact retry is a duplicate");

    tracing::info!("--- a request over the decode limit: OUT_OF_RANGE, unary and streamed");
    let huge = Bytes::from(vec![0u8; TEST_MAX_BATCH_BYTES as usize + 1024 * 1024 + 1]);
    let mut client = cluster.client(0).await;
    let status = client.produce(produce_request("wire", 0, huge.clone())).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    let requests = [produce_request("wire", 0, good.clone()), produce_request("wire", 0, huge)];
    let mut answers = client.produce_stream(futures_util::stream::iter(requests)).await.expect("stream").into_inner();
    let first = answers.message().await.expect("the first is answered").expect("an answer");
    assert_eq!(code(first.error.as_ref()), ErrorCode::Ok);
    let status = answers.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
}

/// The producer table is bounded end to end: a batch from a new idempotent producer id beyond
/// the leader's `max_producers_per_partition` is refused with TOO_MANY_PRODUCER_IDS, saying
/// what to do, and writes nothing; the ids already tracked carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_full_producer_table_a_new_producer_id_is_refused_and_known_ones_carry_on() {
    let cluster = single_broker_adjusted(|c| c.max_producers_per_partition = 2).await;
    let config = TopicConfig { partitions: 1, replication_factor: 1, ..Default::default() };
    assert_eq!(create_topic(&cluster, "bounded", config).await, Error::ok());
    let stamp = |producer_id, base_sequence| ProducerStamp { producer_id, epoch: 0, base_sequence };
    for id in 1..=2 {
        let r = produce(&cluster, "bounded", 0, batch(stamp(id, 0), &values(0, id as u64), 7)).await;
        assert_eq!(code(r.error.as_ref()), ErrorCode::Ok, "{r:?}");
    }
    let refused = produce(&cluster, "bounded", 0, batch(stamp(3, 0), &values(0, 3), 7)).await;
    let error = error_of(refused.error.as_ref());
    assert_eq!(error.error_code(), ErrorCode::TooManyProducerIds, "{refused:?}");
    assert!(error.message.contains("max_producers_per_partition") && error.message.contains("reuse"), "{error:?}");
    let r = produce(&cluster, "bounded", 0, batch(stamp(1, 2), &values(0, 4), 7)).await;
    assert_eq!((code(r.error.as_ref()), r.base_offset), (ErrorCode::Ok, 4), "the refused batch took no offsets");
    cluster.shutdown().await;
}

/// A broker process, killed if the test ends before it stops.
struct Process(std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A free loopback port: bound to port 0, then released for the broker process to take.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_refuses_a_bad_config_and_stops_gracefully_on_sigterm() {
    let bin = env!("CARGO_BIN_EXE_sluice-broker");
    let dir = tempfile::tempdir().expect("temp dir");

    tracing::info!("--- an invalid config is reported, with a non-zero exit");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "node_id = 7\ndata_dir = \"d\"\n[[peers]]\nnode_id = 1\nraft_addr = \"127.0.0.1:1\"\nclient_addr = \"127.0.0.1:2\"\n").unwrap();
    let out = Command::new(bin).arg("--config").arg(&bad).output().expect("run the broker");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("node_id 7 is not among peers"), "{stderr}");
    let neither = Command::new(bin).output().expect("run the broker");
    assert!(!neither.status.success(), "--config or --dev is required");

    tracing::info!("--- a valid one serves clients until SIGTERM, then exits cleanly");
    let client_addr = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("node.toml");
    let text = format!(
        "node_id = 1\ndata_dir = {:?}\n[[peers]]\nnode_id = 1\nraft_addr = \"127.0.0.1:{}\"\nclient_addr = {client_addr:?}\n",
        dir.path().join("data").display().to_string(),
        free_port()
    );
    std::fs::write(&config, text).unwrap();
    let mut child = Process(
        Command::new(bin).arg("--config").arg(&config).stderr(Stdio::null()).spawn().expect("start the broker"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answered = match SluiceClient::connect(format!("http://{client_addr}")).await {
            Ok(mut c) => {
                c.metadata(MetadataRequest::default()).await.is_ok_and(|m| m.get_ref().controller_id.is_some())
            }
            Err(_) => false,
        };
        if answered {
            break;
        }
        assert!(Instant::now() < deadline, "the broker never answered on {client_addr}");
        assert!(child.0.try_wait().expect("poll child").is_none(), "the broker exited early");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let killed = Command::new("kill").arg("-TERM").arg(child.0.id().to_string()).status().expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("poll child") {
            break status;
        }
        assert!(Instant::now() < deadline, "the broker did not stop after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "graceful stop exits 0: {status:?}");
}
