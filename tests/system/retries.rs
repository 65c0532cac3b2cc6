//! Retries and dead letters through SIGKILLs (docs/RETRIES.md): 10,000 messages consumed by a
//! `GroupConsumer` whose worker fails every value ending in `7` three times and every value
//! ending in `13` always, under a policy of 5 attempts. The leader of a partition and the
//! group's coordinator are SIGKILLed during the run.
//!
//! Checked: a value ending in 7 is processed on its fourth attempt, one ending in 13 reaches
//! the dead-letter queue after exactly 5, every other is delivered only as attempt 1; no retry
//! is delivered before its backoff has passed since the nack that asked for it; no message is
//! lost; the dead-letter queue holds each exhausted message once; and a redrive delivers the
//! dead letters once (asked twice, it redrives nothing more).
//!
//! A second test consumes a key-ordered group whose key `k0` has messages that always fail:
//! every message is delivered, the failing ones reach the dead-letter queue once each, and no
//! message of a key is delivered after a later message of the same key.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sluice_client::{
    Backoff, Client, GroupConsumer, GroupConsumerConfig, OffsetReset, ProducerConfig, ProducerRecord, RetryPolicy,
    TopicConfig,
};
use sluice_system_tests::groups::{eventually, find_coordinator};
use sluice_system_tests::{Cluster, read_topic, within};

const TOPIC: &str = "retries";
const GROUP: &str = "retry-worker";
const PARTITIONS: u32 = 6;
const MESSAGES: u64 = 10_000;
const MAX_ATTEMPTS: u32 = 5;
const LIMIT: Duration = Duration::from_secs(420);

fn policy() -> RetryPolicy {
    let backoff = Backoff::Exponential { initial_ms: 300, multiplier: 2.0, max_ms: 3_000, jitter: 0.0 };
    RetryPolicy { backoff, max_attempts: MAX_ATTEMPTS }
}

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as u64
}

/// One delivery the worker saw: its attempt, when it arrived, and when the worker nacked it.
#[derive(Debug, Clone, Copy)]
struct Delivery {
    attempt: u32,
    at_ms: u64,
    nacked_ms: Option<u64>,
}

/// What the worker saw, per value.
#[derive(Debug, Default)]
struct Seen {
    deliveries: BTreeMap<u64, Vec<Delivery>>,
    errors: Vec<String>,
}

/// Whether the worker fails this delivery: values ending in 7 on their first three attempts,
/// values ending in 13 always (until `forgiving`).
fn fails(value: u64, attempt: u32, forgiving: bool) -> bool {
    (value % 10 == 7 && attempt <= 3) || (value % 100 == 13 && !forgiving)
}

/// Polls until `stop`, nacking what `fails` says and recording every delivery.
async fn work(mut consumer: GroupConsumer, seen: Arc<Mutex<Seen>>, stop: Arc<AtomicBool>, forgive: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let records = match consumer.poll(Duration::from_millis(200)).await {
            Ok(records) => records,
            // Retriable while brokers die: the member carries on.
            Err(error) => {
                seen.lock().unwrap().errors.push(error.to_string());
                continue;
            }
        };
        let mut seen = seen.lock().unwrap();
        for record in records {
            let value: u64 = std::str::from_utf8(record.value()).unwrap().parse().unwrap();
            let at_ms = wall_ms();
            let failed = fails(value, record.attempt(), forgive.load(Ordering::Relaxed));
            if failed {
                consumer.nack_because(&record, None, format!("value {value} fails")).expect("nack an owned record");
            }
            let nacked_ms = failed.then(wall_ms);
            seen.deliveries.entry(value).or_default().push(Delivery { attempt: record.attempt(), at_ms, nacked_ms });
        }
    }
    if let Err(error) = consumer.close().await {
        eprintln!("closing the worker: {error}");
    }
}

async fn produce(client: &Client) {
    let producer = client.producer(ProducerConfig::default()).await.expect("a producer");
    let mut deliveries = Vec::with_capacity(MESSAGES as usize);
    for i in 0..MESSAGES {
        let record = ProducerRecord::new(TOPIC, i.to_string()).key(format!("k{}", i % 97));
        deliveries.push(producer.enqueue(record).await.expect("enqueue"));
    }
    for delivery in deliveries {
        delivery.await.expect("acknowledged");
    }
}

/// Ok once every value's last delivery is the one the worker does not fail (values ending in
/// 13 excepted: they end in the dead-letter queue).
fn all_settled(seen: &Seen) -> Result<(), String> {
    let done = |v: u64| {
        let last = seen.deliveries.get(&v).and_then(|d| d.iter().map(|d| d.attempt).max());
        match last {
            Some(attempt) if v % 100 == 13 => attempt == MAX_ATTEMPTS,
            Some(attempt) => !fails(v, attempt, false),
            None => false,
        }
    };
    let missing = (0..MESSAGES).filter(|&v| !done(v)).count();
    if missing == 0 { Ok(()) } else { Err(format!("{missing} values not finished")) }
}

/// The dead-letter queue's entries: (origin partition, origin offset, attempts, value).
async fn dead_letters(client: &Client) -> Vec<(String, String, String, String)> {
    let dlq = read_topic(client, &format!("{GROUP}.dlq"), Duration::from_secs(60)).await;
    let property = |r: &sluice_client::ConsumedRecord, name: &str| {
        r.properties().find(|(k, _)| *k == name).map(|(_, v)| v.to_owned()).unwrap_or_default()
    };
    dlq.values()
        .flatten()
        .map(|r| {
            let value = String::from_utf8_lossy(r.value()).into_owned();
            (
                property(r, "sluice.dlq.partition"),
                property(r, "sluice.dlq.offset"),
                property(r, "sluice.dlq.attempts"),
                value,
            )
        })
        .collect()
}

/// No retry came before its backoff had passed since the nack that asked for it.
fn check_no_early_retry(seen: &Seen) {
    let policy = policy();
    for (value, deliveries) in &seen.deliveries {
        for retry in deliveries.iter().filter(|d| d.attempt > 1) {
            let nack = deliveries
                .iter()
                .filter(|d| d.attempt == retry.attempt - 1)
                .filter_map(|d| d.nacked_ms)
                .min()
                .unwrap_or_else(|| panic!("value {value}: attempt {} without a nacked attempt before", retry.attempt));
            let wait = policy.delay_ms(retry.attempt - 1, 0);
            assert!(
                retry.at_ms >= nack + wait,
                "value {value}: attempt {} came {} ms after its nack, before its {wait} ms backoff",
                retry.attempt,
                retry.at_ms.saturating_sub(nack)
            );
        }
    }
}

fn check_attempts(seen: &Seen) {
    for (value, deliveries) in &seen.deliveries {
        let attempts: BTreeSet<u32> = deliveries.iter().map(|d| d.attempt).collect();
        let expected: BTreeSet<u32> = match value {
            v if v % 100 == 13 => (1..=MAX_ATTEMPTS).collect(),
            v if v % 10 == 7 => (1..=4).collect(),
            _ => BTreeSet::from([1]),
        };
        assert_eq!(attempts, expected, "value {value}: attempts delivered");
    }
}

async fn kill_and_restart(cluster: &mut Cluster, node: u64, what: &str) {
    eprintln!("SIGKILL broker {node}, {what}");
    cluster.kill(node);
    cluster.restart(node);
    cluster.wait_ready().await;
}

/// The topic with its messages, and the worker's consumer, joined with the retry policy.
async fn setup(client: &Client) -> GroupConsumer {
    let admin = client.admin();
    admin.create_topic(TOPIC, &TopicConfig::new(PARTITIONS, 3)).await.expect("create the topic");
    admin.wait_for_leaders(TOPIC, Duration::from_secs(30)).await.expect("leaders");
    produce(client).await;
    let config = GroupConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        auto_commit_interval: Duration::from_millis(300),
        retry: Some(policy()),
        ..GroupConsumerConfig::new(GROUP)
    };
    let mut consumer = client.group_consumer(config).expect("a group consumer");
    consumer.subscribe(&[TOPIC]).await.expect("join");
    consumer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_through_sigkills_come_on_time_reach_the_dlq_once_and_redrive_once() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (stop, forgive) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let consumer = within(LIMIT, "the setup", setup(&client)).await;
    let worker = tokio::spawn(work(consumer, Arc::clone(&seen), Arc::clone(&stop), Arc::clone(&forgive)));
    within(LIMIT, "the retry run", async {
        eventually(Duration::from_secs(60), "some retries delivered", || async {
            let retried = seen.lock().unwrap().deliveries.values().flatten().filter(|d| d.attempt > 1).count();
            if retried >= 100 { Ok(()) } else { Err(format!("{retried} retries")) }
        })
        .await;
        let any_broker = cluster.client_addr(cluster.node_ids()[0]);
        let coordinator = find_coordinator(&any_broker, GROUP).await.node_id;
        kill_and_restart(&mut cluster, coordinator, "the group's coordinator").await;
        let metadata = client.refresh_metadata().await.expect("metadata");
        let leader = metadata.topics.get(TOPIC).and_then(|t| t.partition(0)).and_then(|p| p.leader);
        kill_and_restart(&mut cluster, leader.expect("partition 0 has a leader"), "leader of partition 0").await;

        eventually(Duration::from_secs(240), "every value processed or exhausted", || async {
            all_settled(&seen.lock().unwrap())
        })
        .await;
    })
    .await;

    let exhausted: BTreeSet<String> = (0..MESSAGES).filter(|v| v % 100 == 13).map(|v| v.to_string()).collect();
    let letters = within(LIMIT, "the dead letters", async {
        eventually(Duration::from_secs(60), "every exhausted message dead-lettered", || async {
            let letters = dead_letters(&client).await;
            if letters.len() >= exhausted.len() { Ok(letters) } else { Err(format!("{} dead letters", letters.len())) }
        })
        .await
    })
    .await;
    {
        let seen = seen.lock().unwrap();
        check_attempts(&seen);
        check_no_early_retry(&seen);
        eprintln!("worker errors (retried): {}", seen.errors.len());
    }
    let origins: BTreeSet<(String, String)> = letters.iter().map(|l| (l.0.clone(), l.1.clone())).collect();
    assert_eq!(origins.len(), letters.len(), "a dead letter was written twice");
    assert_eq!(letters.iter().map(|l| l.3.clone()).collect::<BTreeSet<_>>(), exhausted, "the dead letters");
    assert!(letters.iter().all(|l| l.2 == MAX_ATTEMPTS.to_string()), "attempts recorded: {letters:?}");

    within(LIMIT, "the redrive", redrive_once(&client, &seen, &forgive, exhausted.len())).await;
    stop.store(true, Ordering::Relaxed);
    worker.await.expect("the worker");
}

/// Redrives the dead letters with the worker no longer failing them: each comes back once as
/// attempt 1; a second redrive finds nothing.
async fn redrive_once(client: &Client, seen: &Mutex<Seen>, forgive: &AtomicBool, count: usize) {
    forgive.store(true, Ordering::Relaxed);
    let since = wall_ms();
    let (redriven, _) = client.admin().redrive_dead_letters(GROUP, 0).await.expect("redrive");
    assert_eq!(redriven as usize, count, "dead letters redriven");
    let redelivered = |seen: &Seen| -> BTreeMap<u64, usize> {
        let after = |d: &&Delivery| d.at_ms >= since && d.attempt == 1;
        seen.deliveries.iter().map(|(&v, d)| (v, d.iter().filter(after).count())).filter(|&(_, n)| n > 0).collect()
    };
    eventually(Duration::from_secs(60), "every dead letter delivered again", || async {
        let n = redelivered(&seen.lock().unwrap()).len();
        if n >= count { Ok(()) } else { Err(format!("{n} of {count} redelivered")) }
    })
    .await;
    let (again, _) = client.admin().redrive_dead_letters(GROUP, 0).await.expect("redrive again");
    assert_eq!(again, 0, "a second redrive found dead letters");
    let started = Instant::now();
    eventually(Duration::from_secs(30), "no retry waits", || async {
        let d = client.admin().describe_retries(GROUP).await.map_err(|e| e.to_string())?;
        if d.waiting == 0 { Ok(()) } else { Err(format!("{} waiting", d.waiting)) }
    })
    .await;
    let redelivered = redelivered(&seen.lock().unwrap());
    assert!(redelivered.keys().all(|v| v % 100 == 13), "only dead letters come back: {redelivered:?}");
    assert!(redelivered.values().all(|&n| n == 1), "a dead letter came back twice: {redelivered:?}");
    eprintln!("redrive settled in {:?}", started.elapsed());
}

const ORDERED_TOPIC: &str = "retries-ordered";
const ORDERED_GROUP: &str = "ordered-worker";
const KEYS: u64 = 8;
const PER_KEY: u64 = 150;

/// Key `k0` is the poison key: every 30th of its messages fails always.
fn poisoned(key: u64, seq: u64) -> bool {
    key == 0 && seq.is_multiple_of(30)
}

/// Polls until `stop`, recording (key, seq) of every delivery in order, nacking poisoned ones
/// and acking the rest.
async fn work_ordered(mut consumer: GroupConsumer, seen: Arc<Mutex<Vec<(u64, u64)>>>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(records) = consumer.poll(Duration::from_millis(200)).await else { continue };
        let mut seen = seen.lock().unwrap();
        for record in records {
            let value = std::str::from_utf8(record.value()).unwrap();
            let (key, seq) = value.split_once('-').unwrap();
            let (key, seq): (u64, u64) = (key.parse().unwrap(), seq.parse().unwrap());
            // Acked explicitly, as most applications do: a parked message released comes back
            // as a retry at attempt 1, which leaves the retry state only by its ack.
            if poisoned(key, seq) {
                consumer.nack(&record, None).expect("nack an owned record");
            } else {
                consumer.ack(&record).expect("ack an owned record");
            }
            seen.push((key, seq));
        }
    }
    if let Err(error) = consumer.close().await {
        eprintln!("closing the ordered worker: {error}");
    }
}

/// Per key, once a message was delivered no earlier message of the key is delivered again.
fn check_key_order(seen: &[(u64, u64)]) {
    let mut last: BTreeMap<u64, u64> = BTreeMap::new();
    for &(key, seq) in seen {
        let previous = last.entry(key).or_insert(seq);
        assert!(seq >= *previous, "key {key}: message {seq} delivered after message {previous}");
        *previous = seq;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_key_ordered_group_a_poison_key_keeps_its_order_and_holds_back_only_itself() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = within(LIMIT, "the setup", async {
        let admin = client.admin();
        admin.create_topic(ORDERED_TOPIC, &TopicConfig::new(2, 3)).await.expect("create the topic");
        admin.wait_for_leaders(ORDERED_TOPIC, Duration::from_secs(30)).await.expect("leaders");
        let producer = client.producer(ProducerConfig::default()).await.expect("a producer");
        let mut deliveries = Vec::new();
        for seq in 0..PER_KEY {
            for key in 0..KEYS {
                let record = ProducerRecord::new(ORDERED_TOPIC, format!("{key}-{seq}")).key(format!("k{key}"));
                deliveries.push(producer.enqueue(record).await.expect("enqueue"));
            }
        }
        for delivery in deliveries {
            delivery.await.expect("acknowledged");
        }
        let retry = RetryPolicy {
            backoff: Backoff::Exponential { initial_ms: 200, multiplier: 1.5, max_ms: 1_000, jitter: 0.0 },
            max_attempts: 3,
        };
        let config = GroupConsumerConfig {
            auto_offset_reset: OffsetReset::Earliest,
            retry: Some(retry),
            key_ordered: true,
            ..GroupConsumerConfig::new(ORDERED_GROUP)
        };
        let mut consumer = client.group_consumer(config).expect("a group consumer");
        consumer.subscribe(&[ORDERED_TOPIC]).await.expect("join");
        consumer
    })
    .await;
    let worker = tokio::spawn(work_ordered(consumer, Arc::clone(&seen), Arc::clone(&stop)));
    let poison = (0..PER_KEY).filter(|&s| poisoned(0, s)).count();
    within(LIMIT, "the key-ordered run", async {
        eventually(Duration::from_secs(240), "every message delivered and the poison dead-lettered", || async {
            let delivered: BTreeSet<(u64, u64)> = seen.lock().unwrap().iter().copied().collect();
            let d = client.admin().describe_retries(ORDERED_GROUP).await.map_err(|e| e.to_string())?;
            let done = delivered.len() as u64 == KEYS * PER_KEY && d.waiting == 0;
            if done { Ok(()) } else { Err(format!("{} delivered, {} waiting", delivered.len(), d.waiting)) }
        })
        .await;
        let letters = dead_letters_of(&client, ORDERED_GROUP).await;
        assert_eq!(letters.len(), poison, "the poison key's failing messages in the DLQ: {letters:?}");
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    worker.await.expect("the worker");
    check_key_order(&seen.lock().unwrap());
}

/// The values of `group`'s dead letters.
async fn dead_letters_of(client: &Client, group: &str) -> Vec<String> {
    let dlq = read_topic(client, &format!("{group}.dlq"), Duration::from_secs(60)).await;
    dlq.values().flatten().map(|r| String::from_utf8_lossy(r.value()).into_owned()).collect()
}
