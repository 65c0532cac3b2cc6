//! A broker whose disk starts failing fsync stops (fail-stop), and the cluster carries on.
//!
//! Broker 1 runs under libfiu's preload (fiu-utils), which can make `fdatasync` and `fsync`
//! fail with EIO on command. While an idempotent producer writes to every partition of an RF-3
//! topic, some led by broker 1, the failure is switched on. Checked: broker 1 exits with status
//! 1 within a bound, and its log says why (the ERROR line naming the group and the error); the
//! other two keep acknowledging; every acknowledged message is read back once, at its
//! acknowledged offset, and none twice; restarted without the failure, broker 1 serves again and
//! catches up. Catch-up is proven as in `failover`: with broker 2 stopped, a marker committed to
//! each partition had to be appended by brokers 1 and 3, so their logs, read from the data
//! directories after a graceful stop, are identical through it, and broker 1's holds every
//! acknowledged message.
//!
//! A second test fails the fsyncs of a broker that hosts no partition, so that the controller
//! group's RocksDB store meets the failure first: the broker stops the same way, naming that
//! group, and the other two still create and serve a topic.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sluice_client::{Client, Delivery, Producer, ProducerConfig, ProducerRecord, TopicConfig};
use sluice_system_tests::{Cluster, NodeId, cli, read_topic, replicas, within};
use tokio::task::JoinHandle;

const TOPIC: &str = "disk-failure";
const PARTITIONS: u32 = 6;
/// The broker whose disk fails.
const FAILING: NodeId = 1;
/// The broker stopped while markers are written, so that they need the failed one's replicas.
const STOPPED_FOR_MARKERS: NodeId = 2;
/// The other broker, whose replicas the failed one's are compared with.
const WITNESS: NodeId = 3;
/// Messages acknowledged before the failure is switched on.
const BEFORE_FAILURE: u64 = 2_000;
/// Messages sent after the failing broker exited, and acknowledged by the two others.
const AFTER_EXIT: u64 = 1_000;
/// Messages in flight at once.
const WINDOW: usize = 1_000;
/// How long the failing broker may take to exit once its fsyncs fail.
const EXIT_LIMIT: Duration = Duration::from_secs(60);
const PROGRESS_WAIT: Duration = Duration::from_secs(60);
const LIMIT: Duration = Duration::from_secs(300);
/// What the broker logs, at ERROR, when a group's storage failure makes it stop.
const STOP_LINE: &str = "stopping the broker so that it restarts and recovers from disk";
const PRELOAD_DIR: &str = "/usr/lib/fiu";
/// EIO.
const EIO: i32 = 5;

/// One acknowledged message; `seq` orders messages by when they were sent.
#[derive(Debug, Clone)]
struct Acked {
    seq: u64,
    partition: u32,
    offset: u64,
    value: String,
}

struct Progress {
    acked: AtomicU64,
    /// The sequence number of the next message to send.
    sent: AtomicU64,
    /// The first sequence number sent after the failing broker exited (`u64::MAX` until then).
    exited_seq: AtomicU64,
    /// Messages from `exited_seq` on acknowledged.
    acked_after: AtomicU64,
}

impl Progress {
    fn new() -> Progress {
        let zero = || AtomicU64::new(0);
        Progress { acked: zero(), sent: zero(), exited_seq: AtomicU64::new(u64::MAX), acked_after: zero() }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_whose_fsyncs_fail_exits_and_the_cluster_loses_no_acknowledged_message() {
    let fiu_ctrl = libfiu();
    let mut cluster = Cluster::start(3).await;
    within(LIMIT, "the disk failure test", async {
        let fifo = cluster.dir().join("fiu-ctrl");
        restart_under_libfiu(&mut cluster, &fifo).await;
        let client = cluster.client().await;
        client.admin().create_topic(TOPIC, &TopicConfig::new(PARTITIONS, 3)).await.expect("create the topic");
        client.admin().wait_for_leaders(TOPIC, Duration::from_secs(30)).await.expect("leaders");
        let led = led_by_failing(&client).await;
        eprintln!("broker {FAILING} leads partitions {led:?} of {TOPIC} and follows the others");

        let producer = client.producer(ProducerConfig::default()).await.expect("an idempotent producer");
        let (progress, stop) = (Arc::new(Progress::new()), Arc::new(AtomicBool::new(false)));
        let writer: JoinHandle<Vec<Acked>> = tokio::spawn(write(producer, Arc::clone(&progress), Arc::clone(&stop)));
        wait_until("acknowledgements before the failure", || progress.acked.load(Ordering::Relaxed) >= BEFORE_FAILURE)
            .await;

        fail_fsyncs(&fiu_ctrl, &fifo, cluster.pid(FAILING).expect("the failing broker runs")).await;
        expect_fail_stop(&mut cluster, Instant::now()).await;

        let exited_seq = progress.sent.load(Ordering::Relaxed) + 1;
        progress.exited_seq.store(exited_seq, Ordering::Relaxed);
        wait_until("acknowledgements from the two other brokers", || {
            progress.acked_after.load(Ordering::Relaxed) >= AFTER_EXIT
        })
        .await;
        stop.store(true, Ordering::Relaxed);
        let acked = writer.await.expect("the writer task");
        check_every_partition_acked_after(&acked, exited_seq);

        cluster.set_env(FAILING, &[]);
        cluster.restart(FAILING);
        cluster.wait_ready().await;
        check_read_back(&client, &acked).await;
        prove_catch_up(&mut cluster, &client, &acked).await;
    })
    .await;
}

/// A broker whose controller store (RocksDB) fails to sync stops too: with no partition on the
/// failing broker, the first write it makes once its fsyncs fail is the controller group's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_whose_controller_store_fails_exits_and_the_others_carry_on() {
    let fiu_ctrl = libfiu();
    let mut cluster = Cluster::start(3).await;
    within(LIMIT, "the controller store failure test", async {
        let fifo = cluster.dir().join("fiu-ctrl");
        restart_under_libfiu(&mut cluster, &fifo).await;
        let client = cluster.client().await;
        fail_fsyncs(&fiu_ctrl, &fifo, cluster.pid(FAILING).expect("the failing broker runs")).await;
        let failed_at = Instant::now();
        // A metadata write: the controller leader commits it with the two healthy brokers.
        let topic = "after-controller-failure";
        client.admin().create_topic(topic, &TopicConfig::new(2, 3)).await.expect("create a topic");
        let line = expect_fail_stop(&mut cluster, failed_at).await;
        assert!(line.contains("the controller group stopped"), "another group stopped first: {line}");

        client.admin().wait_for_leaders(topic, Duration::from_secs(30)).await.expect("leaders");
        let producer = client.producer(ProducerConfig::default()).await.expect("a producer");
        for p in 0..2 {
            let delivery = producer.enqueue(ProducerRecord::new(topic, marker(p)).partition(p)).await;
            delivery.expect("enqueue").await.unwrap_or_else(|e| panic!("partition {p} did not acknowledge: {e}"));
        }
        cluster.set_env(FAILING, &[]);
        cluster.restart(FAILING);
        cluster.wait_ready().await;
        let read = read_topic(&client, topic, Duration::from_secs(60)).await;
        assert_eq!(read.values().map(Vec::len).sum::<usize>(), 2, "what {topic} holds after the restart: {read:?}");
    })
    .await;
}

/// Waits (bounded) until the failing broker, whose fsyncs fail since `failed_at`, exits; checks
/// it exited with status 1 and logged why. Returns that ERROR line.
async fn expect_fail_stop(cluster: &mut Cluster, failed_at: Instant) -> String {
    let status = cluster.exit_within(FAILING, EXIT_LIMIT).await;
    let took = failed_at.elapsed();
    let status = status.unwrap_or_else(|| panic!("broker {FAILING} still runs {EXIT_LIMIT:?} after its fsyncs fail"));
    eprintln!("broker {FAILING} exited {took:?} after its fsyncs started failing: {status}");
    assert_eq!(status.code(), Some(1), "broker {FAILING} should exit with status 1, ended {status}");
    let log = cluster.log_tail(FAILING, 100_000);
    let line = log.lines().find(|l| l.contains(STOP_LINE) && l.contains("ERROR"));
    let line = line.unwrap_or_else(|| panic!("broker {FAILING}'s log has no ERROR line saying {STOP_LINE:?}"));
    // EIO's message, whichever store (a segment log or the controller's RocksDB) met it first.
    let names = line.contains(" group ") && line.contains("Input/output error");
    assert!(names, "the line does not name the group and the error: {line}");
    eprintln!("its log says: {line}");
    line.to_owned()
}

/// The path of `fiu-ctrl`; panics, saying how to install them, unless libfiu's preload
/// libraries and tools are there.
fn libfiu() -> PathBuf {
    let install = "libfiu (Debian package fiu-utils) is not installed: run scripts/install-deps.sh";
    for lib in ["fiu_run_preload.so", "fiu_posix_preload.so"] {
        let path = Path::new(PRELOAD_DIR).join(lib);
        assert!(path.exists(), "{} is missing; {install}", path.display());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).map(|dir| dir.join("fiu-ctrl")).find(|p| p.is_file());
    found.unwrap_or_else(|| panic!("fiu-ctrl is not on PATH; {install}"))
}

/// Restarts the failing broker under libfiu's POSIX preload with no failure enabled and remote
/// control through `fifo` (what `fiu-run -x -f FIFO` does).
async fn restart_under_libfiu(cluster: &mut Cluster, fifo: &Path) {
    let status = cluster.terminate(FAILING).await;
    assert!(status.success(), "broker {FAILING} stops gracefully: {status}");
    let preload = format!("{PRELOAD_DIR}/fiu_run_preload.so {PRELOAD_DIR}/fiu_posix_preload.so");
    let fifo = fifo.to_str().expect("a UTF-8 temporary path");
    cluster.set_env(FAILING, &[("LD_PRELOAD", &preload), ("FIU_CTRL_FIFO", fifo), ("FIU_ENABLE", "")]);
    cluster.restart(FAILING);
    cluster.wait_ready().await;
}

/// Makes every later `fdatasync` and `fsync` of process `pid` fail with EIO.
async fn fail_fsyncs(fiu_ctrl: &Path, fifo: &Path, pid: u32) {
    let fifo = fifo.to_str().expect("a UTF-8 temporary path").to_owned();
    let (sync_data, sync_all) = (
        format!("enable name=posix/io/sync/fdatasync,failinfo={EIO}"),
        format!("enable name=posix/io/sync/fsync,failinfo={EIO}"),
    );
    let pid = pid.to_string();
    let args = ["-f", &fifo, "-c", &sync_data, "-c", &sync_all, &pid];
    let out = cli::run(fiu_ctrl, &args, &[], None, Duration::from_secs(10)).await;
    out.assert_success("fiu-ctrl");
    // fiu-ctrl exits 0 even when the process refused a command; it says so on stdout.
    assert!(!out.stdout.contains("returned error"), "fiu-ctrl: {}", out.stdout);
}

/// The partitions the failing broker leads; waits (bounded) until it leads at least one.
async fn led_by_failing(client: &Client) -> Vec<u32> {
    let deadline = Instant::now() + PROGRESS_WAIT;
    loop {
        let metadata = client.refresh_metadata().await.expect("metadata");
        let topic = metadata.topics.get(TOPIC).expect("the topic exists");
        let led: Vec<u32> =
            (0..PARTITIONS).filter(|&p| topic.partition(p).and_then(|info| info.leader) == Some(FAILING)).collect();
        if !led.is_empty() {
            return led;
        }
        assert!(Instant::now() < deadline, "broker {FAILING} leads no partition of {TOPIC} after {PROGRESS_WAIT:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends messages round-robin over the partitions until `stop`, keeping `WINDOW` in flight;
/// returns those acknowledged.
async fn write(producer: Producer, progress: Arc<Progress>, stop: Arc<AtomicBool>) -> Vec<Acked> {
    let topic: Arc<str> = Arc::from(TOPIC);
    let mut window: VecDeque<(u64, String, Delivery)> = VecDeque::with_capacity(WINDOW);
    let mut acked = Vec::new();
    for seq in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        progress.sent.store(seq, Ordering::Relaxed);
        let value = format!("disk-failure {seq:08}");
        let record =
            ProducerRecord::new(Arc::clone(&topic), value.clone()).partition((seq % u64::from(PARTITIONS)) as u32);
        window.push_back((seq, value, producer.enqueue(record).await.expect("enqueue")));
        while window.len() >= WINDOW || window.front().is_some_and(|(_, _, d)| d.try_result().is_some()) {
            let (seq, value, delivery) = window.pop_front().expect("not empty");
            settle(&mut acked, &progress, seq, value, delivery).await;
        }
    }
    producer.flush().await;
    for (seq, value, delivery) in window {
        settle(&mut acked, &progress, seq, value, delivery).await;
    }
    acked
}

async fn settle(acked: &mut Vec<Acked>, progress: &Progress, seq: u64, value: String, delivery: Delivery) {
    match delivery.await {
        Ok(at) => {
            progress.acked.fetch_add(1, Ordering::Relaxed);
            if seq >= progress.exited_seq.load(Ordering::Relaxed) {
                progress.acked_after.fetch_add(1, Ordering::Relaxed);
            }
            acked.push(Acked { seq, partition: at.partition, offset: at.offset, value });
        }
        // Sent while the broker was failing: it may or may not have been written.
        Err(e) => eprintln!("{value} not acknowledged: {e}"),
    }
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + PROGRESS_WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "no {what} within {PROGRESS_WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every partition, including those the failed broker led, acknowledged messages sent after it
/// exited.
fn check_every_partition_acked_after(acked: &[Acked], exited_seq: u64) {
    for p in 0..PARTITIONS {
        let after = acked.iter().filter(|a| a.partition == p && a.seq >= exited_seq).count();
        assert!(after > 0, "partition {p} acknowledged nothing sent after broker {FAILING} exited");
    }
    let after = acked.iter().filter(|a| a.seq >= exited_seq).count();
    eprintln!("{} messages acknowledged, {after} of them sent after broker {FAILING} exited", acked.len());
}

/// Every acknowledged message is read at its offset; nothing is read twice; offsets are dense.
async fn check_read_back(client: &Client, acked: &[Acked]) {
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
    for a in acked {
        let at = found.get(a.value.as_bytes());
        assert_eq!(at, Some(&(a.partition, a.offset)), "{} was acknowledged at {}/{}", a.value, a.partition, a.offset);
    }
    eprintln!("read back {} messages, each once", found.len());
}

fn marker(partition: u32) -> String {
    format!("marker {partition}")
}

/// Commits a marker to every partition with broker 2 stopped, stops the cluster, and compares
/// the restarted broker's replicas with broker 3's.
async fn prove_catch_up(cluster: &mut Cluster, client: &Client, acked: &[Acked]) {
    let status = cluster.terminate(STOPPED_FOR_MARKERS).await;
    assert!(status.success(), "broker {STOPPED_FOR_MARKERS} stops gracefully: {status}");
    let producer = client.producer(ProducerConfig::default()).await.expect("a marker producer");
    let mut deliveries = Vec::new();
    for p in 0..PARTITIONS {
        let record = ProducerRecord::new(TOPIC, marker(p)).partition(p);
        deliveries.push(producer.enqueue(record).await.expect("enqueue a marker"));
    }
    for (p, delivery) in (0..).zip(deliveries) {
        delivery.await.unwrap_or_else(|e| panic!("marker to partition {p} not acknowledged: {e}"));
    }
    cluster.stop_all().await;
    for p in 0..PARTITIONS {
        let restarted = replicas::open(cluster.data_dir(FAILING), TOPIC, p);
        let witness = replicas::open(cluster.data_dir(WITNESS), TOPIC, p);
        let at = replicas::find_value(&restarted, marker(p).as_bytes())
            .unwrap_or_else(|| panic!("the restarted broker {FAILING} lacks the marker of partition {p}"));
        replicas::assert_identical(&[(FAILING, &restarted), (WITNESS, &witness)], at);
        let mut held: HashSet<Vec<u8>> = HashSet::new();
        replicas::for_each_entry(&restarted, restarted.first_index(), at, |entry| {
            held.extend(replicas::batch_values(entry).iter().map(|v| v.to_vec()));
        });
        let lacking = acked.iter().filter(|a| a.partition == p && !held.contains(a.value.as_bytes())).count();
        assert_eq!(lacking, 0, "the restarted broker {FAILING} lacks acknowledged messages of partition {p}");
    }
}
