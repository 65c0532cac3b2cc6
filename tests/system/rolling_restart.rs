//! A rolling restart under load: each of the three brokers in turn is stopped with SIGTERM
//! (a controlled shutdown: it hands its leaderships over first), started again, and given time
//! to catch up, while an SDK producer sends without pause and a group member consumes. No send
//! fails, every acknowledged message is in the log once and consumed, and the longest time
//! without any acknowledgement — through the restarts and the restarted brokers taking their
//! leaderships back — stays short: the clients follow the new leaders at once instead of
//! waiting for the stopped broker to be missed and replaced by elections.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use sluice_client::{Client, GroupConsumerConfig, OffsetReset, ProducerConfig, ProducerRecord, TopicConfig};
use sluice_system_tests::groups::{Member, eventually};
use sluice_system_tests::{Cluster, read_topic, within};

const TOPIC: &str = "rolling";
const PARTITIONS: u32 = 6;
const IN_FLIGHT: usize = 32;
const LIMIT: Duration = Duration::from_secs(400);
/// The longest stall asserted. The target (docs/OPERATIONS.md) is 250 ms, which the release
/// benchmark (scripts/bench-rolling-restart.sh) measures: 69 ms there. This debug build shares
/// two cores with three debug brokers, and its stalls measured 0.3-0.65 s, mostly the last
/// broker handing over every partition at once; before controlled shutdown the same run
/// stalled for the node timeout (800 ms) plus an election and a client's back-off, about two
/// seconds, which this bound still tells apart.
const MAX_STALL: Duration = Duration::from_millis(1_500);

/// What the producer task saw.
#[derive(Default)]
struct Produced {
    /// (partition, offset) → value of every acknowledged message.
    acked: BTreeMap<(u32, u64), String>,
    failures: Vec<String>,
    /// The longest time between two acknowledgements while the restarts ran, and when it ended.
    max_gap: Duration,
    max_gap_at: Option<Instant>,
}

/// Sends numbered values with `IN_FLIGHT` outstanding until `stop`, recording every outcome.
async fn produce(client: Client, stop: Arc<AtomicBool>, measuring: Arc<AtomicBool>, out: Arc<Mutex<Produced>>) {
    let producer = client.producer(ProducerConfig::default()).await.expect("a producer");
    let mut pending = FuturesUnordered::new();
    let (mut next, mut last_ack) = (0u64, Instant::now());
    while !stop.load(Ordering::Relaxed) || !pending.is_empty() {
        if !stop.load(Ordering::Relaxed) && pending.len() < IN_FLIGHT {
            let value = format!("v{next}");
            next += 1;
            let delivery = producer.enqueue(ProducerRecord::new(TOPIC, value.clone())).await.expect("enqueue");
            pending.push(async move { (value, delivery.await) });
            continue;
        }
        let Some((value, outcome)) = pending.next().await else { continue };
        let mut out = out.lock().expect("produced lock");
        match outcome {
            Ok(written) => {
                if measuring.load(Ordering::Relaxed) && last_ack.elapsed() > out.max_gap {
                    out.max_gap = last_ack.elapsed();
                    out.max_gap_at = Some(Instant::now());
                }
                last_ack = Instant::now();
                out.acked.insert((written.partition, written.offset), value);
            }
            Err(e) => out.failures.push(format!("{value}: {e}")),
        }
    }
    producer.close().await;
}

/// Ok once every broker is live and not stopping, runs every replica, leads no partition with
/// a replica behind, and every partition is led: the point a rolling restart waits for.
async fn whole(client: &Client) -> Result<(), String> {
    let status = client.admin().cluster_status().await.map_err(|e| e.to_string())?;
    let unwell: Vec<String> = status
        .brokers
        .iter()
        .filter(|b| {
            let b = &b.broker;
            !b.live || b.stopping || b.offline_replicas > 0 || b.under_replicated > 0
        })
        .map(|b| format!("{:?}", b.broker))
        .collect();
    if unwell.is_empty() && status.leaderless_partitions == 0 {
        Ok(())
    } else {
        Err(format!("{} leaderless partitions; not whole: {unwell:?}", status.leaderless_partitions))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_fails_no_send_loses_nothing_and_stalls_briefly() {
    let mut cluster = Cluster::start(3).await;
    within(LIMIT, "a rolling restart under load", async {
        let client = cluster.client().await;
        let admin = client.admin();
        admin.create_topic(TOPIC, &TopicConfig::new(PARTITIONS, 3)).await.expect("create the topic");
        admin.wait_for_leaders(TOPIC, Duration::from_secs(30)).await.expect("leaders");
        let group =
            GroupConsumerConfig { auto_offset_reset: OffsetReset::Earliest, ..GroupConsumerConfig::new("roll") };
        let member = Member::join(&client, "member", group, TOPIC).await;

        let (stop, measuring) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let produced = Arc::new(Mutex::new(Produced::default()));
        let producer =
            tokio::spawn(produce(client.clone(), Arc::clone(&stop), Arc::clone(&measuring), Arc::clone(&produced)));
        eventually(Duration::from_secs(60), "the producer is under way", || async {
            let acked = produced.lock().expect("produced lock").acked.len();
            if acked >= 2_000 { Ok(()) } else { Err(format!("{acked} acknowledged")) }
        })
        .await;

        measuring.store(true, Ordering::Relaxed);
        let origin = Instant::now();
        for node in cluster.node_ids() {
            eventually(Duration::from_secs(90), "the cluster is whole before the next restart", || whole(&client))
                .await;
            let started = Instant::now();
            let status = cluster.terminate(node).await;
            assert!(status.success(), "broker {node} did not stop cleanly: {status}");
            let said: Vec<String> =
                cluster.log_tail(node, 40).lines().filter(|l| l.contains("stopping:")).map(str::to_owned).collect();
            eprintln!("broker {node} stopped in {:?} ({:?} into the run): {said:?}", started.elapsed(), started - origin);
            cluster.restart(node);
            cluster.wait_ready().await;
            eprintln!("broker {node} serving again {:?} into the run", origin.elapsed());
        }
        eventually(Duration::from_secs(90), "the cluster is whole after the restarts", || whole(&client)).await;
        // The restarted brokers take their preferred leaderships back (after
        // leader_rebalance_delay_ms), while the stall is still measured.
        eventually(Duration::from_secs(90), "every broker leads its share again", || async {
            let status = client.admin().cluster_status().await.map_err(|e| e.to_string())?;
            let leaders: Vec<usize> = status.brokers.iter().map(|b| b.partition_leaders).collect();
            if leaders.iter().all(|&n| n >= 2) { Ok(()) } else { Err(format!("partitions led per broker: {leaders:?}")) }
        })
        .await;
        measuring.store(false, Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        producer.await.expect("the producer task");

        let produced = std::mem::take(&mut *produced.lock().expect("produced lock"));
        eprintln!(
            "{} acknowledged through the restarts; longest time without an acknowledgement {:?}, ended {:?} into the run",
            produced.acked.len(),
            produced.max_gap,
            produced.max_gap_at.map(|at| at - origin)
        );
        assert!(
            produced.failures.is_empty(),
            "sends failed: {:?}",
            &produced.failures[..produced.failures.len().min(5)]
        );
        assert!(produced.max_gap < MAX_STALL, "a stall of {:?} (bound {MAX_STALL:?})", produced.max_gap);

        let log = read_topic(&client, TOPIC, Duration::from_secs(60)).await;
        let mut seen = BTreeSet::new();
        for record in log.values().flatten() {
            let value = String::from_utf8_lossy(record.value()).into_owned();
            assert!(seen.insert(value.clone()), "{value} is in the log twice");
        }
        for ((partition, offset), value) in &produced.acked {
            assert!(seen.contains(value), "acknowledged {value} at {partition}/{offset} is not in the log");
        }
        eventually(Duration::from_secs(60), "the member consumed every acknowledged message", || async {
            let consumed: BTreeSet<(u32, u64)> = member.view().records.into_iter().collect();
            let missing = produced.acked.keys().filter(|k| !consumed.contains(k)).count();
            if missing == 0 { Ok(()) } else { Err(format!("{missing} not consumed yet")) }
        })
        .await;
        let view = member.close().await;
        let distinct: BTreeSet<&(u32, u64)> = view.records.iter().collect();
        assert_eq!(distinct.len(), view.records.len(), "the member was given some message twice");
    })
    .await;
}
