//! The metrics endpoint of a running cluster, scraped over HTTP as Prometheus would: the produce
//! and fetch counters add up, over the brokers, to exactly what a client sent and got back;
//! each replica reports its Raft role, term, log positions and high watermark; the leader
//! reports every follower caught up; the node gauges agree across brokers; a delayed batch is
//! counted pending, then released once; and any other path is not found.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_common::PartitionId;
use sluice_common::record::{BatchBuilder, ProducerStamp, Record};
use sluice_proto::v1::{CreateTopicRequest, FetchRequest, ProduceRequest, TopicConfig};
use sluice_proto::{ErrorCode, error_of};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::cluster::Cluster;

const TOPIC: &str = "metered";
const BATCHES: u64 = 12;
const MESSAGES_PER_BATCH: u64 = 3;

/// One HTTP/1.1 request to `addr`; the status code, the headers and the body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect to the metrics endpoint");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send the request");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read the response");
        response
    };
    let response = tokio::time::timeout(Duration::from_secs(10), exchange).await.expect("the endpoint answers");
    let (head, body) = response.split_once("\r\n\r\n").expect("a complete HTTP response");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    (status, head.to_owned(), body.to_owned())
}

/// The samples of one broker's exposition: each series as printed (name and labels) → value.
#[derive(Debug)]
struct Samples(HashMap<String, f64>);

impl Samples {
    async fn scrape(cluster: &Cluster, i: usize) -> Samples {
        let addr = cluster.brokers[i].metrics_addr().expect("test brokers serve metrics");
        let (status, head, body) = http_get(addr, "/metrics").await;
        assert_eq!(status, 200, "{head}");
        assert!(head.contains("application/openmetrics-text"), "{head}");
        assert!(body.ends_with("# EOF\n"), "the exposition is complete");
        let samples = body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').expect("a sample line");
                (series.to_owned(), value.parse().unwrap_or_else(|e| panic!("{l}: {e}")))
            })
            .collect();
        Samples(samples)
    }

    /// The value of `series`; 0 if absent (a counter not yet created, a series not reported).
    fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }
}

/// A series of the test partition, with `extra` labels after its own.
fn part(name: &str, extra: &str) -> String {
    format!("{name}{{topic=\"{TOPIC}\",partition=\"0\"{extra}}}")
}

fn batch(i: u64) -> Bytes {
    let mut b = BatchBuilder::new(ProducerStamp::NONE, 256);
    for m in 0..MESSAGES_PER_BATCH {
        b.push(&Record::new(format!("metered-{i}-{m}"), 1_000 + i as i64));
    }
    b.finish()
}

/// Three messages due at `due_ms`, as a delayed batch.
fn delayed_batch(due_ms: u64) -> Bytes {
    let mut b = BatchBuilder::new(ProducerStamp::NONE, 256).delayed(true);
    for m in 0..3 {
        let mut r = Record::new(format!("later-{m}"), 1_000);
        r.properties.push((sluice_common::record::DELIVER_AT_PROPERTY.into(), due_ms.to_string()));
        b.push(&r);
    }
    b.finish()
}

/// What the client sent and got back, as the brokers should have counted it.
#[derive(Debug, Default)]
struct Sent {
    produce_codes: BTreeMap<&'static str, u64>,
    fetch_codes: BTreeMap<&'static str, u64>,
    messages: u64,
    produced_bytes: u64,
    fetched_bytes: u64,
}

/// The broker leading the test partition's group now, if any.
fn leader(cluster: &Cluster, group: u64) -> Option<usize> {
    cluster.brokers.iter().position(|b| b.partitions().raft(group).is_some_and(|r| r.is_leader()))
}

async fn create_topic(cluster: &Cluster) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for i in 0..cluster.brokers.len() {
            let config = TopicConfig { partitions: 1, replication_factor: 3, ..Default::default() };
            let request = CreateTopicRequest { name: TOPIC.into(), config: Some(config) };
            let response = cluster.client(i).await.create_topic(request).await.expect("rpc").into_inner();
            if error_of(response.error.as_ref()).is_ok() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "no broker created the topic");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Produces `batch` to whichever broker leads `group`, until one answers with a code that is not
/// retriable; tallies every answer.
async fn produce(cluster: &Cluster, group: u64, batch: Bytes, sent: &mut Sent) -> ErrorCode {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let i = leader(cluster, group).unwrap_or(0);
        let request = ProduceRequest {
            topic: TOPIC.into(),
            partition: 0,
            batch: batch.clone(),
            timeout_ms: 10_000,
            ..Default::default()
        };
        let response = cluster.client(i).await.produce(request).await.expect("rpc").into_inner();
        let code = error_of(response.error.as_ref()).error_code();
        *sent.produce_codes.entry(code.as_str_name()).or_default() += 1;
        if code == ErrorCode::Ok && !response.duplicate {
            sent.messages += u64::from(response.count);
            sent.produced_bytes += batch.len() as u64;
        }
        if !code.is_retriable() {
            return code;
        }
        assert!(Instant::now() < deadline, "no leader accepted the batch: {code:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fetches from broker `i` at `offset`; tallies the answer; returns the next offset.
async fn fetch(cluster: &Cluster, i: usize, offset: u64, max_wait_ms: u32, sent: &mut Sent) -> (ErrorCode, u64) {
    let request = FetchRequest {
        topic: TOPIC.into(),
        partition: 0,
        offset,
        max_bytes: 0,
        max_wait_ms,
        ..FetchRequest::default()
    };
    let response = cluster.client(i).await.fetch(request).await.expect("rpc").into_inner();
    let code = error_of(response.error.as_ref()).error_code();
    *sent.fetch_codes.entry(code.as_str_name()).or_default() += 1;
    let bytes: usize = response.batches.iter().map(|b| b.batch.len()).sum();
    sent.fetched_bytes += bytes as u64;
    let next = response.batches.last().map_or(offset, |b| b.base_offset + MESSAGES_PER_BATCH);
    (code, next)
}

/// The sum of `series` over every broker's scrape.
fn total(scrapes: &[Samples], series: &str) -> f64 {
    scrapes.iter().map(|s| s.get(series)).sum()
}

async fn scrape_all(cluster: &Cluster) -> Vec<Samples> {
    let mut scrapes = Vec::new();
    for i in 0..cluster.brokers.len() {
        scrapes.push(Samples::scrape(cluster, i).await);
    }
    scrapes
}

/// The position of the one broker that reports leading the test partition, if the scrapes
/// agree on a settled cluster: that leader has committed and applied its whole log, which holds
/// every message, and knows both followers to hold it; every other broker follows; every broker
/// hears from the other two; one broker leads the controller.
fn settled(cluster: &Cluster, scrapes: &[Samples], messages: f64) -> Option<usize> {
    let role = |s: &Samples, r: &str| s.get(&part("sluice_partition_raft_role", &format!(",role=\"{r}\"")));
    let leaders: Vec<usize> = (0..scrapes.len()).filter(|i| role(&scrapes[*i], "leader") == 1.0).collect();
    let [l] = leaders[..] else { return None };
    let s = &scrapes[l];
    let last = s.get(&part("sluice_partition_raft_last_log_index", ""));
    let caught_up = cluster.brokers.iter().enumerate().filter(|(i, _)| *i != l).all(|(i, b)| {
        let lag = format!(",follower=\"{}\"", b.config().node_id);
        role(&scrapes[i], "follower") == 1.0
            && s.0.get(&part("sluice_partition_follower_lag_entries", &lag)) == Some(&0.0)
    });
    let whole = s.get(&part("sluice_partition_raft_committed_index", "")) == last
        && s.get(&part("sluice_partition_raft_applied_index", "")) == last
        && s.get(&part("sluice_partition_high_watermark_offset", "")) == messages;
    let nodes =
        scrapes.iter().all(|s| s.get("sluice_live_peers") == 2.0) && total(scrapes, "sluice_controller_leader") == 1.0;
    (caught_up && whole && nodes).then_some(l)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_metrics_count_what_clients_sent_and_show_each_replicas_raft_state() {
    let cluster = Cluster::start(3).await;
    cluster
        .wait_for(Duration::from_secs(20), "brokers registered", |c| {
            c.brokers.iter().all(|b| b.controller().metadata().read(|m| m.brokers().count() == 3))
        })
        .await;

    tracing::info!("--- a one-partition RF-3 topic, created through the client API");
    create_topic(&cluster).await;
    let group = cluster
        .brokers
        .iter()
        .find_map(|b| b.controller().metadata().read(|m| Some(m.topic(TOPIC)?.partition(PartitionId(0))?.group_id)))
        .expect("a broker applied the topic");
    cluster
        .wait_for(Duration::from_secs(20), "the group hosted everywhere and led", |c| {
            c.brokers.iter().all(|b| b.partitions().raft(group).is_some()) && leader(c, group).is_some()
        })
        .await;

    tracing::info!("--- batches produced to the leader, one to a follower, one damaged");
    let mut sent = Sent::default();
    for i in 0..BATCHES {
        assert_eq!(produce(&cluster, group, batch(i), &mut sent).await, ErrorCode::Ok);
    }
    let follower = (leader(&cluster, group).expect("a leader") + 1) % cluster.brokers.len();
    let request = ProduceRequest {
        topic: TOPIC.into(),
        partition: 0,
        batch: batch(99),
        timeout_ms: 10_000,
        ..Default::default()
    };
    let response = cluster.client(follower).await.produce(request).await.expect("rpc").into_inner();
    let code = error_of(response.error.as_ref()).error_code();
    *sent.produce_codes.entry(code.as_str_name()).or_default() += 1;
    let damaged = Bytes::from_static(b"not a record batch");
    assert_eq!(produce(&cluster, group, damaged, &mut sent).await, ErrorCode::InvalidRequest);
    assert_eq!(sent.messages, BATCHES * MESSAGES_PER_BATCH);

    tracing::info!("--- everything fetched back from the leader, then a long poll at the end");
    let (mut offset, deadline) = (0, Instant::now() + Duration::from_secs(20));
    while offset < sent.messages {
        let at = leader(&cluster, group).unwrap_or(0);
        (_, offset) = fetch(&cluster, at, offset, 0, &mut sent).await;
        assert!(Instant::now() < deadline, "fetched only up to {offset}");
    }
    let at = leader(&cluster, group).expect("a leader");
    let polled = Instant::now();
    let (code, _) = fetch(&cluster, at, offset, 1_000, &mut sent).await;
    assert!(code != ErrorCode::Ok || polled.elapsed() >= Duration::from_millis(900), "the fetch long-polled");
    assert_eq!(sent.fetched_bytes, sent.produced_bytes, "every batch came back once");

    tracing::info!("--- request counters, summed over the brokers, equal what the client saw");
    let scrapes = scrape_all(&cluster).await;
    for (name, codes) in
        [("sluice_produce_requests_total", &sent.produce_codes), ("sluice_fetch_requests_total", &sent.fetch_codes)]
    {
        for (code, n) in codes {
            assert_eq!(total(&scrapes, &format!("{name}{{code=\"{code}\"}}")), *n as f64, "{name} {code}: {sent:?}");
        }
    }
    let ok_produces = sent.produce_codes["OK"] as f64;
    assert_eq!(total(&scrapes, "sluice_produce_latency_seconds_count"), ok_produces);
    assert_eq!(total(&scrapes, "sluice_produce_latency_seconds_bucket{le=\"+Inf\"}"), ok_produces);
    assert_eq!(total(&scrapes, "sluice_fetch_latency_seconds_count"), sent.fetch_codes["OK"] as f64);
    let fetch_seconds = total(&scrapes, "sluice_fetch_latency_seconds_sum");
    assert!(fetch_seconds < 0.9, "fetch latency excludes the long poll's wait: {fetch_seconds} s in all");
    assert_eq!(total(&scrapes, &part("sluice_produce_messages_total", "")), sent.messages as f64);
    assert_eq!(total(&scrapes, &part("sluice_produce_bytes_total", "")), sent.produced_bytes as f64);
    assert_eq!(total(&scrapes, &part("sluice_fetch_bytes_total", "")), sent.fetched_bytes as f64);
    for (i, scrape) in scrapes.iter().enumerate() {
        // Every replica fsyncs before it acknowledges an append (the default flush policy).
        let syncs = scrape.get("sluice_log_sync_latency_seconds_count");
        assert!(syncs >= 1.0, "broker {i} reports {syncs} log fsyncs");
    }

    tracing::info!("--- one leader with every follower caught up; replicas report their Raft state");
    let messages = sent.messages as f64;
    let deadline = Instant::now() + Duration::from_secs(20);
    let (scrapes, l) = loop {
        let scrapes = scrape_all(&cluster).await;
        if let Some(l) = settled(&cluster, &scrapes, messages) {
            break (scrapes, l);
        }
        assert!(Instant::now() < deadline, "the scrapes never settled: {scrapes:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let term = scrapes[l].get(&part("sluice_partition_raft_term", ""));
    assert!(term >= 1.0, "a leader was elected in a term");
    for s in &scrapes {
        let roles: Vec<f64> = ["leader", "follower", "candidate", "learner", "shutdown"]
            .iter()
            .map(|r| s.get(&part("sluice_partition_raft_role", &format!(",role=\"{r}\""))))
            .collect();
        assert_eq!(roles.iter().sum::<f64>(), 1.0, "one role each: {roles:?}");
        assert_eq!(s.get(&part("sluice_partition_raft_term", "")), term, "one term");
        assert!(s.get(&part("sluice_partition_high_watermark_offset", "")) <= messages);
        assert!(s.0.contains_key(&part("sluice_partition_raft_applied_index", "")));
        assert_eq!(s.get("sluice_partitions_hosted"), 1.0);
    }
    assert_eq!(total(&scrapes, "sluice_partitions_led"), 1.0);
    let lag_series =
        |s: &Samples| s.0.keys().filter(|k| k.starts_with("sluice_partition_follower_lag_entries{")).count();
    let lags: Vec<usize> = scrapes.iter().map(lag_series).collect();
    assert_eq!(lags.iter().sum::<usize>(), 2, "only the leader reports lag, one series per follower: {lags:?}");

    tracing::info!("--- a delayed batch: pending on every replica, then released once by the leader");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64;
    let due_ms = now + 3_000; // far enough that the first scrape comes before it
    assert_eq!(produce(&cluster, group, delayed_batch(due_ms), &mut sent).await, ErrorCode::Ok);
    let pending = part("sluice_delay_pending", "");
    let mut scrapes = scrape_all(&cluster).await;
    assert!(scrapes.iter().any(|s| s.get(&pending) == 3.0), "pending somewhere before its time");
    let deadline = Instant::now() + Duration::from_secs(20);
    let released = part("sluice_delay_released_messages_total", "");
    while total(&scrapes, &released) < 3.0 || total(&scrapes, &pending) > 0.0 {
        assert!(
            Instant::now() < deadline,
            "never released: {:?}",
            scrapes.iter().map(|s| s.get(&pending)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        scrapes = scrape_all(&cluster).await;
    }
    assert_eq!(total(&scrapes, &released), 3.0, "released once");
    assert_eq!(total(&scrapes, "sluice_delay_releases_total"), 1.0, "in one entry");
    assert_eq!(total(&scrapes, "sluice_delay_release_lateness_seconds_count"), 3.0);
    assert_eq!(total(&scrapes, &part("sluice_delay_overdue_seconds", "")), 0.0, "nothing overdue once released");

    tracing::info!("--- any other path is not found");
    let addr = cluster.brokers[0].metrics_addr().unwrap();
    for path in ["/", "/metrics/x", "/health"] {
        assert_eq!(http_get(addr, path).await.0, 404, "{path}");
    }
    cluster.shutdown().await;
}
