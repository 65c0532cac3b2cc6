//! Delayed messages against three broker processes (docs/DELAYS.md): 10,000 messages due over
//! 0–20 s, with the leader of one partition SIGKILLed while they wait, are each consumed once
//! and none before its delivery time; of a second batch, the half that is cancelled never
//! appears and the rest does.
//!
//! Every process runs on this machine, so the consumer's clock is the brokers' clock: a
//! message received before its `deliver_at` was released early.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use sluice_client::{
    CancelOutcome, Client, ConsumerConfig, DelayedId, ProducerConfig, ProducerRecord, SeekTo, TopicConfig,
};
use sluice_common::record::DELIVER_AT_PROPERTY;
use sluice_system_tests::{Cluster, NodeId, within};

const TOPIC: &str = "delays";
const PARTITIONS: u32 = 3;
/// The partition whose leader is killed.
const TARGET: u32 = 0;
const FIRST_BATCH: u64 = 10_000;
/// Delivery times spread evenly over this span.
const SPREAD_MS: u64 = 20_000;
const SECOND_BATCH: u64 = 2_000;
const LIMIT: Duration = Duration::from_secs(180);

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as u64
}

/// One consumed message: its value, its `deliver_at`, and when it was received.
#[derive(Debug, Clone)]
struct Received {
    value: String,
    deliver_at: u64,
    received_at: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_messages_arrive_once_never_early_across_a_leader_kill_and_cancelled_ones_never() {
    let mut cluster = Cluster::start(3).await;
    within(LIMIT, "the delayed-messages test", async {
        let client = cluster.client().await;
        client.admin().create_topic(TOPIC, &TopicConfig::new(PARTITIONS, 3)).await.expect("create the topic");
        client.admin().wait_for_leaders(TOPIC, Duration::from_secs(30)).await.expect("leaders");
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicUsize::new(0));
        let consumer = tokio::spawn(consume(client.clone(), Arc::clone(&count), Arc::clone(&stop)));

        let start = now_ms() + 500;
        let first: Vec<(String, u64)> =
            (0..FIRST_BATCH).map(|i| (format!("first {i:05}"), start + i * SPREAD_MS / FIRST_BATCH)).collect();
        send(&client, &first).await;
        eprintln!("{FIRST_BATCH} delayed messages acknowledged, due over {SPREAD_MS} ms");

        tokio::time::sleep(Duration::from_millis(SPREAD_MS / 3)).await;
        let killed = leader(&client).await;
        cluster.kill(killed);
        eprintln!("SIGKILLed broker {killed}, leader of {TOPIC}/{TARGET}");

        let second_start = now_ms() + 8_000;
        let second: Vec<(String, u64)> =
            (0..SECOND_BATCH).map(|i| (format!("second {i:05}"), second_start + i)).collect();
        let ids = send(&client, &second).await;
        let cancelled = cancel_half(&client, &second, &ids).await;
        cluster.restart(killed);
        cluster.wait_ready().await;

        let expected: BTreeMap<String, u64> =
            first.iter().chain(&second).filter(|(v, _)| !cancelled.contains(v)).cloned().collect();
        // Saturating: on a loaded machine the sends, cancels and restart may outlast the 8 s.
        let wait_for = Duration::from_millis((second_start + SECOND_BATCH).saturating_sub(now_ms()) + 15_000);
        let received = wait_for_all(consumer, &count, expected.len(), wait_for, &stop).await;
        check(&expected, &cancelled, &received);
        let listing = client.admin().list_delayed(TOPIC, 10).await.expect("list");
        assert_eq!(listing.pending, 0, "nothing left pending: {listing:?}");
    })
    .await;
}

/// Cancels every other message of `messages`, many at a time; the values cancelled. One
/// released first (ALREADY_DELIVERED) must then arrive once, like any other.
async fn cancel_half(client: &Client, messages: &[(String, u64)], ids: &[DelayedId]) -> BTreeSet<String> {
    let producer = client.producer(ProducerConfig::default()).await.expect("a producer");
    let cancels = ids.iter().zip(messages).step_by(2).map(|(id, (value, _))| {
        let producer = producer.clone();
        async move { (value.clone(), producer.cancel_delayed(TOPIC, *id).await.expect("cancel")) }
    });
    let outcomes: Vec<(String, CancelOutcome)> =
        futures_util::stream::iter(cancels).buffer_unordered(64).collect().await;
    let cancelled: BTreeSet<String> =
        outcomes.iter().filter(|(_, o)| *o == CancelOutcome::Cancelled).map(|(v, _)| v.clone()).collect();
    eprintln!("{} of {} cancels came before the release", cancelled.len(), outcomes.len());
    assert!(cancelled.len() * 2 > outcomes.len(), "most messages are due seconds after their cancel");
    cancelled
}

/// Sends `messages` (value, deliver_at) with keys spreading them over the partitions; the ids.
async fn send(client: &Client, messages: &[(String, u64)]) -> Vec<DelayedId> {
    let producer = client.producer(ProducerConfig::default()).await.expect("a producer");
    let mut deliveries = Vec::with_capacity(messages.len());
    for (value, at) in messages {
        let record = ProducerRecord::new(TOPIC, value.clone()).key(value.clone()).deliver_at(*at);
        deliveries.push(producer.enqueue(record).await.expect("enqueue"));
    }
    let mut ids = Vec::with_capacity(deliveries.len());
    for d in deliveries {
        let meta = d.await.expect("a delayed message is acknowledged");
        assert!(!meta.has_offset(), "a delayed message has no offset yet: {meta:?}");
        ids.push(meta.delayed_id.expect("a delayed id"));
    }
    ids
}

async fn leader(client: &Client) -> NodeId {
    let metadata = client.refresh_metadata().await.expect("metadata");
    metadata.topics[TOPIC].partition(TARGET).and_then(|p| p.leader).expect("a leader")
}

/// Reads the topic from the start until `stop`, noting when each message arrived.
async fn consume(client: Client, count: Arc<AtomicUsize>, stop: Arc<AtomicBool>) -> Vec<Received> {
    consume_topic(client, TOPIC, count, stop).await
}

/// Reads `topic` from the start until `stop`, noting when each message arrived.
async fn consume_topic(client: Client, topic: &str, count: Arc<AtomicUsize>, stop: Arc<AtomicBool>) -> Vec<Received> {
    let config = ConsumerConfig { start: SeekTo::Earliest, ..ConsumerConfig::default() };
    let mut consumer = client.consumer(config).expect("a consumer");
    consumer.assign(topic, &[]).await.expect("assign every partition");
    let mut received = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let records = match consumer.poll(Duration::from_millis(200)).await {
            Ok(records) => records,
            Err(e) if e.is_retriable() => continue,
            Err(e) => panic!("poll: {e}"),
        };
        let received_at = now_ms();
        for r in records {
            let deliver_at = r.properties().find(|(k, _)| *k == DELIVER_AT_PROPERTY).map(|(_, v)| v.parse().unwrap());
            let value = String::from_utf8(r.value().to_vec()).expect("utf-8");
            let deliver_at = deliver_at.expect("a released message keeps deliver_at");
            received.push(Received { deliver_at, value, received_at });
        }
        count.store(received.len(), Ordering::Relaxed);
    }
    received
}

/// Waits until `expected` messages were received (or `wait` passes), then a little longer so
/// that a duplicate would show, and stops the consumer.
async fn wait_for_all(
    consumer: tokio::task::JoinHandle<Vec<Received>>,
    received: &AtomicUsize,
    expected: usize,
    wait: Duration,
    stop: &AtomicBool,
) -> Vec<Received> {
    let deadline = tokio::time::Instant::now() + wait;
    while received.load(Ordering::Relaxed) < expected && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    consumer.await.expect("the consumer task")
}

fn check(expected: &BTreeMap<String, u64>, cancelled: &BTreeSet<String>, received: &[Received]) {
    let mut seen = BTreeMap::new();
    for r in received {
        assert!(seen.insert(r.value.clone(), r).is_none(), "{} received twice", r.value);
        assert!(!cancelled.contains(&r.value), "{} was cancelled yet delivered", r.value);
        assert_eq!(expected.get(&r.value), Some(&r.deliver_at), "{} arrived with another deliver_at", r.value);
        assert!(
            r.received_at >= r.deliver_at,
            "{} arrived at {} before it was due at {}",
            r.value,
            r.received_at,
            r.deliver_at
        );
    }
    let missing: Vec<&String> = expected.keys().filter(|v| !seen.contains_key(*v)).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} of {} messages never arrived, e.g. {missing:?}",
        expected.len() - seen.len(),
        expected.len()
    );
    let late: Vec<u64> = received.iter().map(|r| r.received_at - r.deliver_at).collect();
    eprintln!(
        "{} messages received once each, none early; latest {} ms after its time",
        received.len(),
        late.iter().max().unwrap_or(&0)
    );
}

const SCHEDULED: &str = "scheduled";

/// A schedule firing every second goes on firing across a SIGKILL of its partition's leader:
/// once per due time, never early, and stops once deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_keeps_firing_once_per_due_time_across_a_leader_kill() {
    let mut cluster = Cluster::start(3).await;
    within(LIMIT, "the schedule test", async {
        let client = cluster.client().await;
        client.admin().create_topic(SCHEDULED, &TopicConfig::new(1, 3)).await.expect("create the topic");
        client.admin().wait_for_leaders(SCHEDULED, Duration::from_secs(30)).await.expect("leaders");
        let every = sluice_client::Cadence::Every(Duration::from_secs(1));
        let record = ProducerRecord::new(SCHEDULED, "tick");
        client.admin().create_schedule("tick", &every, &record).await.expect("create the schedule");
        let exists = client.admin().create_schedule("tick", &every, &record).await.unwrap_err();
        assert_eq!(exists.code(), Some(sluice_client::ErrorCode::ScheduleExists), "{exists}");

        let (count, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let consumer = tokio::spawn(consume_topic(client.clone(), SCHEDULED, Arc::clone(&count), Arc::clone(&stop)));
        wait_for_count(&count, 3, Duration::from_secs(20)).await;
        let metadata = client.refresh_metadata().await.expect("metadata");
        let killed = metadata.topics[SCHEDULED].partition(0).and_then(|p| p.leader).expect("a leader");
        cluster.kill(killed);
        let at_kill = count.load(Ordering::Relaxed);
        eprintln!("SIGKILLed broker {killed}, leader of {SCHEDULED}/0, after {at_kill} fires");
        wait_for_count(&count, at_kill + 5, Duration::from_secs(40)).await;
        cluster.restart(killed);
        cluster.wait_ready().await;
        wait_for_count(&count, at_kill + 8, Duration::from_secs(20)).await;
        client.admin().delete_schedule(SCHEDULED, "tick").await.expect("delete the schedule");
        let at_delete = count.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.store(true, Ordering::Relaxed);
        let fires = consumer.await.expect("the consumer");
        assert!(fires.len() <= at_delete + 1, "{} fires after the delete", fires.len() - at_delete);
        let mut dues = BTreeSet::new();
        for f in &fires {
            assert!(dues.insert(f.deliver_at), "the fire due at {} arrived twice", f.deliver_at);
            assert!(f.received_at >= f.deliver_at, "a fire due at {} arrived at {}", f.deliver_at, f.received_at);
        }
        let gaps: Vec<u64> = dues.iter().zip(dues.iter().skip(1)).map(|(a, b)| b - a).collect();
        assert!(gaps.iter().all(|g| g % 1_000 == 0), "fires on the one-second grid: {gaps:?}");
        eprintln!("{} fires, once each, none early; gaps {gaps:?} ms", fires.len());
    })
    .await;
}

async fn wait_for_count(count: &AtomicUsize, at_least: usize, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while count.load(Ordering::Relaxed) < at_least {
        assert!(tokio::time::Instant::now() < deadline, "fewer than {at_least} fires within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
