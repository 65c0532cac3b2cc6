//! SIGKILL of a partition's leader while an idempotent producer writes to it and to the other
//! partitions, then a restart of the killed broker.
//!
//! Checked: writes to the partition continue under a new leader; every acknowledged message is
//! read back once, at its acknowledged offset; no message is read twice (an unacknowledged one
//! may be missing); and the restarted broker catches up. Catch-up is proven, not waited for:
//! with one of the other two brokers stopped, a marker message committed to a partition had to
//! be appended by both remaining replicas (a majority of three), and Raft's log matching makes
//! their logs identical up to it. Done once with each of the other two stopped, every replica
//! ends up holding the first marker; after a graceful stop their logs, read from the data
//! directories, are compared entry by entry.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sluice_client::{Client, Delivery, Producer, ProducerConfig, ProducerRecord, TopicConfig};
use sluice_system_tests::{Cluster, NodeId, read_topic, replicas, within};
use tokio::task::JoinHandle;

const TOPIC: &str = "failover";
const PARTITIONS: u32 = 6;
/// The partition whose leader is killed.
const TARGET: u32 = 0;
/// Messages acknowledged before the kill.
const BEFORE_KILL: usize = 3_000;
/// Messages to the target partition acknowledged after the kill, under its new leader.
const AFTER_KILL: usize = 1_000;
/// Messages in flight at once.
const WINDOW: usize = 2_000;
const LIMIT: Duration = Duration::from_secs(150);
const PROGRESS_WAIT: Duration = Duration::from_secs(60);

/// One acknowledged message.
#[derive(Debug, Clone)]
struct Acked {
    partition: u32,
    offset: u64,
    value: String,
}

#[derive(Default)]
struct Progress {
    acked: AtomicUsize,
    acked_target: AtomicUsize,
}

#[derive(Default)]
struct Written {
    acked: Vec<Acked>,
    failed: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_mid_write_loses_no_acknowledged_message_and_catches_up_after_restart() {
    let mut cluster = Cluster::start(3).await;
    within(LIMIT, "the failover test", async {
        let client = cluster.client().await;
        client.admin().create_topic(TOPIC, &TopicConfig::new(PARTITIONS, 3)).await.expect("create the topic");
        client.admin().wait_for_leaders(TOPIC, Duration::from_secs(30)).await.expect("leaders");

        let producer = client.producer(ProducerConfig::default()).await.expect("an idempotent producer");
        let (progress, stop) = (Arc::new(Progress::default()), Arc::new(AtomicBool::new(false)));
        let writer: JoinHandle<Written> = tokio::spawn(write(producer, Arc::clone(&progress), Arc::clone(&stop)));
        wait_until("acknowledgements before the kill", || progress.acked.load(Ordering::Relaxed) >= BEFORE_KILL).await;

        let (killed, term) = leader(&client).await.expect("the target partition has a leader");
        cluster.kill(killed);
        let at_kill = progress.acked_target.load(Ordering::Relaxed);
        eprintln!("SIGKILLed broker {killed}, leader of {TOPIC}/{TARGET} in term {term}, after {at_kill} acks there");
        wait_until("acknowledgements to the target under a new leader", || {
            progress.acked_target.load(Ordering::Relaxed) >= at_kill + AFTER_KILL
        })
        .await;
        let (now, new_term) = leader(&client).await.expect("the target partition has a new leader");
        assert!(now != killed && new_term > term, "leader {now} in term {new_term} after killing {killed} ({term})");
        stop.store(true, Ordering::Relaxed);
        let written = writer.await.expect("the writer task");
        eprintln!("{} messages acknowledged, {} failed", written.acked.len(), written.failed.len());

        cluster.restart(killed);
        cluster.wait_ready().await;
        check_read_back(&client, &written).await;
        prove_catch_up(&mut cluster, &client, killed).await;
        cluster.stop_all().await;
        compare_replicas(&cluster, killed, &written);
    })
    .await;
}

/// The target partition's leader and its term, from fresh metadata.
async fn leader(client: &Client) -> Option<(NodeId, u64)> {
    let metadata = client.refresh_metadata().await.expect("metadata");
    let partition = metadata.topics.get(TOPIC)?.partition(TARGET)?;
    partition.leader.map(|l| (l, partition.leader_term))
}

/// Sends messages round-robin over the partitions until `stop`, keeping `WINDOW` in flight.
async fn write(producer: Producer, progress: Arc<Progress>, stop: Arc<AtomicBool>) -> Written {
    let topic: Arc<str> = Arc::from(TOPIC);
    let mut window: VecDeque<(String, Delivery)> = VecDeque::with_capacity(WINDOW);
    let mut written = Written::default();
    for i in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let value = format!("failover {i:08}");
        let record =
            ProducerRecord::new(Arc::clone(&topic), value.clone()).partition((i % u64::from(PARTITIONS)) as u32);
        window.push_back((value, producer.enqueue(record).await.expect("enqueue")));
        while window.len() >= WINDOW || window.front().is_some_and(|(_, d)| d.try_result().is_some()) {
            let (value, delivery) = window.pop_front().expect("not empty");
            settle(&mut written, &progress, value, delivery).await;
        }
    }
    producer.flush().await;
    for (value, delivery) in window {
        settle(&mut written, &progress, value, delivery).await;
    }
    written
}

async fn settle(written: &mut Written, progress: &Progress, value: String, delivery: Delivery) {
    match delivery.await {
        Ok(at) => {
            progress.acked.fetch_add(1, Ordering::Relaxed);
            if at.partition == TARGET {
                progress.acked_target.fetch_add(1, Ordering::Relaxed);
            }
            written.acked.push(Acked { partition: at.partition, offset: at.offset, value });
        }
        Err(e) => {
            eprintln!("{value} not acknowledged: {e}");
            written.failed.push(value);
        }
    }
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + PROGRESS_WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "no {what} within {PROGRESS_WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every acknowledged message is read at its offset; nothing is read twice; offsets are dense.
async fn check_read_back(client: &Client, written: &Written) {
    let read = read_topic(client, TOPIC, Duration::from_secs(60)).await;
    let mut found: HashMap<Vec<u8>, (u32, u64)> = HashMap::new();
    for (&partition, records) in &read {
        for (expected_offset, record) in (0u64..).zip(records) {
            assert_eq!(record.offset(), expected_offset, "partition {partition}: offsets dense and in order");
            let first = found.insert(record.value().to_vec(), (partition, record.offset()));
            assert!(
                first.is_none(),
                "{:?} read twice: at {first:?} and {partition}/{}",
                record.value(),
                record.offset()
            );
        }
    }
    for a in &written.acked {
        let at = found.get(a.value.as_bytes());
        assert_eq!(at, Some(&(a.partition, a.offset)), "{} was acknowledged at {}/{}", a.value, a.partition, a.offset);
    }
    let acked_target = written.acked.iter().filter(|a| a.partition == TARGET).count();
    eprintln!("read back {} messages; {acked_target} acknowledged on the target partition", found.len());
}

fn marker(round: &str, partition: u32) -> String {
    format!("marker {round} {partition}")
}

/// Commits a marker to every partition with each of the two other brokers stopped in turn.
async fn prove_catch_up(cluster: &mut Cluster, client: &Client, killed: NodeId) {
    let others: Vec<NodeId> = cluster.node_ids().into_iter().filter(|&n| n != killed).collect();
    let status = cluster.terminate(others[0]).await;
    assert!(status.success(), "broker {} stops gracefully: {status}", others[0]);
    send_markers(client, "a").await;
    cluster.restart(others[0]);
    cluster.wait_ready().await;
    let status = cluster.terminate(others[1]).await;
    assert!(status.success(), "broker {} stops gracefully: {status}", others[1]);
    send_markers(client, "b").await;
}

async fn send_markers(client: &Client, round: &str) {
    let producer = client.producer(ProducerConfig::default()).await.expect("a marker producer");
    let mut deliveries = Vec::new();
    for p in 0..PARTITIONS {
        let record = ProducerRecord::new(TOPIC, marker(round, p)).partition(p);
        deliveries.push(producer.enqueue(record).await.expect("enqueue a marker"));
    }
    for (p, delivery) in (0..).zip(deliveries) {
        delivery.await.unwrap_or_else(|e| panic!("marker {round} to partition {p} not acknowledged: {e}"));
    }
}

/// With every broker stopped: all three replicas of each partition are identical through
/// marker a, the two written with the third stopped through marker b, and the killed broker's
/// replica holds every message acknowledged to the partition.
fn compare_replicas(cluster: &Cluster, killed: NodeId, written: &Written) {
    let others: Vec<NodeId> = cluster.node_ids().into_iter().filter(|&n| n != killed).collect();
    for p in 0..PARTITIONS {
        let logs: HashMap<NodeId, sluice_storage::Log> =
            cluster.node_ids().into_iter().map(|n| (n, replicas::open(cluster.data_dir(n), TOPIC, p))).collect();
        let restarted = &logs[&killed];
        let marker_a = replicas::find_value(restarted, marker("a", p).as_bytes())
            .unwrap_or_else(|| panic!("the restarted broker {killed} lacks marker a of partition {p}"));
        let all: Vec<(u64, &sluice_storage::Log)> = [killed, others[0], others[1]].map(|n| (n, &logs[&n])).to_vec();
        replicas::assert_identical(&all, marker_a);
        let marker_b = replicas::find_value(restarted, marker("b", p).as_bytes())
            .unwrap_or_else(|| panic!("the restarted broker {killed} lacks marker b of partition {p}"));
        replicas::assert_identical(&[(killed, restarted), (others[0], &logs[&others[0]])], marker_b);

        let mut held: HashSet<Vec<u8>> = HashSet::new();
        replicas::for_each_entry(restarted, restarted.first_index(), marker_a, |entry| {
            held.extend(replicas::batch_values(entry).iter().map(|v| v.to_vec()));
        });
        let acked = written.acked.iter().filter(|a| a.partition == p);
        let lacking = acked.filter(|a| !held.contains(a.value.as_bytes())).count();
        assert_eq!(lacking, 0, "the restarted broker {killed} lacks acknowledged messages of partition {p}");
    }
}
