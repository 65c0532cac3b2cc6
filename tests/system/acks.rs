//! Acknowledgement levels (docs/DURABILITY.md, "Acknowledgement levels"), measured on three
//! broker processes.
//!
//! - `leader`: batches acknowledged by the partition's leader before replication are lost when
//!   that leader is SIGKILLed right after acknowledging them, as the docs say they may be. To
//!   have something unreplicated at the kill, the followers are SIGSTOPped for the burst (the
//!   leader answers while its quorum lease lasts). The test counts the losses and checks that
//!   none is read twice, that nothing is read that was not sent, and that every message
//!   acknowledged under `all` in the same run is read once.
//! - `none`: with every broker down, `send_oneway` still returns at once, and the producer
//!   counts the failures and tells them to a subscriber.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use sluice_client::{Acks, Client, Delivery, Producer, ProducerConfig, ProducerRecord, TopicConfig};
use sluice_system_tests::{Cluster, NodeId, read_topic, within};

const TOPIC: &str = "acks";
const LIMIT: Duration = Duration::from_secs(150);
/// Messages per burst of leader-acknowledged sends.
const BURST: usize = 2_000;
/// Messages sent while the followers are stopped: few enough to be answered within the
/// leader's lease (half an election timeout).
const UNREPLICATED: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_acknowledged_messages_may_be_lost_to_a_leader_kill_and_are_never_duplicated() {
    let mut cluster = Cluster::start(3).await;
    within(LIMIT, "the acks=leader test", async {
        let client = cluster.client().await;
        client.admin().create_topic(TOPIC, &TopicConfig::new(1, 3)).await.expect("create the topic");
        client.admin().wait_for_leaders(TOPIC, Duration::from_secs(30)).await.expect("a leader");
        let leader_producer = producer(&client, Acks::Leader).await;
        let all_producer = producer(&client, Acks::All).await;

        let mut all_acked = send_all(&all_producer, "all-before", 200).await;
        let mut leader_acked = send_burst(&leader_producer, "leader-replicated", BURST).await;
        let killed = leader(&client).await;
        let followers: Vec<u32> =
            cluster.node_ids().into_iter().filter(|&n| n != killed).filter_map(|n| cluster.pid(n)).collect();
        followers.iter().for_each(|&pid| signal(pid, "STOP"));
        let unreplicated = send_burst(&leader_producer, "leader-unreplicated", UNREPLICATED).await;
        cluster.kill(killed);
        followers.iter().for_each(|&pid| signal(pid, "CONT"));
        eprintln!(
            "SIGKILLed broker {killed}, the leader, after {} acks its stopped followers never saw",
            unreplicated.len()
        );
        leader_acked.extend(unreplicated);
        leader_acked.extend(send_burst(&leader_producer, "leader-after", BURST).await);
        all_acked.extend(send_all(&all_producer, "all-after", 200).await);
        cluster.restart(killed);
        cluster.wait_ready().await;

        let read = read_values(&client).await;
        for value in &all_acked {
            assert!(read.contains_key(value), "{value} was acknowledged under acks=all and is lost");
        }
        let sent: HashSet<&String> = all_acked.iter().chain(&leader_acked).collect();
        for (value, times) in &read {
            assert_eq!(*times, 1, "{value} read {times} times");
            assert!(sent.contains(value), "{value} read but never acknowledged as sent");
        }
        let lost_values: Vec<&String> = leader_acked.iter().filter(|v| !read.contains_key(*v)).collect();
        let lost = lost_values.len();
        for prefix in ["leader-replicated", "leader-unreplicated", "leader-after"] {
            let of = lost_values.iter().filter(|v| v.starts_with(&format!("{prefix} "))).count();
            eprintln!("acks=leader: {of} {prefix} messages lost");
        }
        eprintln!(
            "acks=leader: {lost} of {} acknowledged messages lost to the kill; acks=all: 0 of {} lost",
            leader_acked.len(),
            all_acked.len()
        );
    })
    .await;
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oneway_sends_to_a_dead_cluster_return_at_once_and_are_counted_as_failures() {
    let mut cluster = Cluster::start(3).await;
    within(LIMIT, "the acks=none test", async {
        let client = cluster.client().await;
        client.admin().create_topic(TOPIC, &TopicConfig::new(1, 3)).await.expect("create the topic");
        client.admin().wait_for_leaders(TOPIC, Duration::from_secs(30)).await.expect("a leader");
        let oneway = producer(&client, Acks::None).await;
        for i in 0..100 {
            oneway.send_oneway(ProducerRecord::new(TOPIC, format!("alive {i}"))).await.expect("queued");
        }
        oneway.flush().await;
        assert_eq!(oneway.failed_batches(), 0, "nothing failed while the cluster was up");
        let mut failures = oneway.failures();
        for node in cluster.node_ids() {
            cluster.kill(node);
        }
        let started = Instant::now();
        for i in 0..1_000 {
            oneway.send_oneway(ProducerRecord::new(TOPIC, format!("dead {i}"))).await.expect("queued");
        }
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "1,000 oneway sends to a dead cluster took {took:?}");
        let failure = failures.recv().await.expect("a failure is told");
        eprintln!("first failure told after {:?}: {:?} records, {}", started.elapsed(), failure.records, failure.error);
        oneway.flush().await;
        eprintln!("flushed after {:?}", started.elapsed());
        assert!(oneway.failed_batches() > 0, "the failures are counted");
        eprintln!(
            "1,000 oneway sends returned in {took:?}; {} batches and {} records counted as failed",
            oneway.failed_batches(),
            oneway.failed_records()
        );
    })
    .await;
    cluster.stop_all().await;
}

async fn producer(client: &Client, acks: Acks) -> Producer {
    client.producer(ProducerConfig { acks, ..ProducerConfig::default() }).await.expect("a producer")
}

/// Sends `count` messages under acks=all, each acknowledged (retrying through the failover).
async fn send_all(producer: &Producer, prefix: &str, count: usize) -> Vec<String> {
    let values: Vec<String> = (0..count).map(|i| format!("{prefix} {i}")).collect();
    let mut deliveries = Vec::new();
    for value in &values {
        deliveries.push(producer.enqueue(ProducerRecord::new(TOPIC, value.clone())).await.expect("enqueue"));
    }
    for (value, delivery) in values.iter().zip(deliveries) {
        let at = delivery.await.unwrap_or_else(|e| panic!("{value} not acknowledged: {e}"));
        assert!(at.has_offset(), "acks=all gives offsets");
    }
    values
}

/// Sends `count` messages under acks=leader and returns those acknowledged.
async fn send_burst(producer: &Producer, prefix: &str, count: usize) -> Vec<String> {
    let mut pending: Vec<(String, Delivery)> = Vec::with_capacity(count);
    for i in 0..count {
        let value = format!("{prefix} {i}");
        pending.push((value.clone(), producer.enqueue(ProducerRecord::new(TOPIC, value)).await.expect("enqueue")));
    }
    let mut acked = Vec::new();
    for (value, delivery) in pending {
        match delivery.await {
            Ok(_) => acked.push(value),
            Err(e) => eprintln!("{value} not acknowledged: {e}"),
        }
    }
    acked
}

/// Sends `signal` (STOP, CONT) to process `pid`.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status();
    assert!(status.is_ok_and(|s| s.success()), "kill -{signal} {pid}");
}

/// The partition's leader, from fresh metadata.
async fn leader(client: &Client) -> NodeId {
    let metadata = client.refresh_metadata().await.expect("metadata");
    metadata.topics.get(TOPIC).and_then(|t| t.partition(0)).and_then(|p| p.leader).expect("a leader")
}

/// How many times each value was read.
async fn read_values(client: &Client) -> HashMap<String, usize> {
    let mut read = HashMap::new();
    for records in read_topic(client, TOPIC, Duration::from_secs(60)).await.into_values() {
        for record in records {
            *read.entry(String::from_utf8_lossy(record.value()).into_owned()).or_insert(0) += 1;
        }
    }
    read
}
