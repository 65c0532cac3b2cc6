//! Reads from a partition that sat idle for longer than its leader's read lease.
//!
//! A leader serves reads only under a fresh quorum lease (docs/DURABILITY.md). A group of one
//! voter (an RF-1 partition) is its own majority: its lease must never wait for an answer from
//! anyone. These tests leave such partitions idle for several lease periods, on a
//! `sluice-broker --dev` process and on RF-1 topics of a 3-broker cluster, and then read: the
//! reads must answer at once, every time. They also check that the `--dev` broker's default
//! log stays quiet while idle (no line per heartbeat).

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_client::partitioner::partition_for_key;
use sluice_client::{ProducerConfig, ProducerRecord, TopicConfig};
use sluice_system_tests::cli::sluice;
use sluice_system_tests::groups::eventually;
use sluice_system_tests::{Cluster, binaries, free_ports, read_topic, within};

/// Several times the default read lease (the partition election timeout's minimum, 500 ms).
const IDLE: Duration = Duration::from_secs(3);
/// How long a read after the idle period may take: far below a lease renewal timing out.
const READ_LIMIT: Duration = Duration::from_secs(10);
const COMMAND_LIMIT: Duration = Duration::from_secs(60);
const LIMIT: Duration = Duration::from_secs(150);

/// A `sluice-broker --dev` process on free ports, killed when dropped.
struct DevBroker {
    child: Child,
    bootstrap: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl DevBroker {
    /// Starts `sluice-broker --dev` with its data in a temporary directory, on free ports, and
    /// with the default log filter (no `RUST_LOG`).
    fn start() -> DevBroker {
        let dir = tempfile::Builder::new().prefix("sluice-dev-").tempdir().expect("a temporary directory");
        let ports = free_ports(3);
        let log = dir.path().join("broker.log");
        let out = std::fs::File::create(&log).expect("create the broker log");
        let child = Command::new(&binaries().broker)
            .arg("--dev")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--client-addr", &ports[0].to_string(), "--raft-addr", &ports[1].to_string()])
            .args(["--metrics-listen", &ports[2].to_string()])
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone the log file"))
            .stderr(out)
            .spawn()
            .expect("start sluice-broker --dev");
        DevBroker { child, bootstrap: ports[0].to_string(), log, _dir: dir }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for DevBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- sluice-broker --dev log -----\n{}", self.log_text());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_dev_broker_when_an_rf1_partition_sat_idle_then_consume_answers_at_once() {
    let broker = DevBroker::start();
    within(LIMIT, "idle reads on --dev", async {
        let bootstrap = broker.bootstrap.clone();
        let run = |args: Vec<&'static str>, stdin: Option<Vec<u8>>| {
            let bootstrap = bootstrap.clone();
            async move { sluice(&bootstrap, &args, stdin, COMMAND_LIMIT).await }
        };
        eventually(COMMAND_LIMIT, "the --dev broker serves", || async {
            let status = run(vec!["cluster", "status"], None).await;
            if status.status.success() { Ok(()) } else { Err(status.stderr) }
        })
        .await;
        run(vec!["topic", "create", "idle", "--partitions", "1", "--replication-factor", "1"], None)
            .await
            .assert_success("topic create");
        run(vec!["produce", "idle"], Some(b"hello after a rest\n".to_vec())).await.assert_success("produce");

        for round in 1..=2 {
            tokio::time::sleep(IDLE).await;
            let started = Instant::now();
            let consumed = sluice(&bootstrap, &["consume", "idle", "--from", "earliest"], None, READ_LIMIT).await;
            let took = started.elapsed();
            consumed.assert_success("consume after the partition sat idle");
            assert!(consumed.stdout.contains("hello after a rest"), "round {round}: {consumed:?}");
            eprintln!("--dev, round {round}: consume after {IDLE:?} idle took {took:?}");
        }

        let log = broker.log_text();
        let heartbeats = log.lines().filter(|l| l.contains("Heartbeat")).count();
        assert_eq!(heartbeats, 0, "the default log has no per-heartbeat lines:\n{log}");
        eprintln!("--dev default log: {} lines in all", log.lines().count());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_three_brokers_when_rf1_partitions_sat_idle_then_reads_answer_at_once() {
    const TOPIC: &str = "idle-rf1";
    const PARTITIONS: u32 = 3;
    let cluster = Cluster::start(3).await;
    within(LIMIT, "idle reads on RF-1 partitions of three brokers", async {
        let client = cluster.client().await;
        let admin = client.admin();
        admin.create_topic(TOPIC, &TopicConfig::new(PARTITIONS, 1)).await.expect("create the RF-1 topic");
        admin.wait_for_leaders(TOPIC, Duration::from_secs(30)).await.expect("every partition elects a leader");

        // One key per partition, so that each RF-1 partition (one per broker, as assigned) is read.
        let keys = keys_per_partition(PARTITIONS);
        let producer = client.producer(ProducerConfig::default()).await.expect("a producer");
        let topic: Arc<str> = Arc::from(TOPIC);
        for (partition, key) in &keys {
            let record = ProducerRecord::new(Arc::clone(&topic), format!("value of {partition}")).key(key.clone());
            producer.send(record).await.unwrap_or_else(|e| panic!("partition {partition}: not acknowledged: {e}"));
        }

        for round in 1..=2 {
            tokio::time::sleep(IDLE).await;
            let started = Instant::now();
            let read = read_topic(&client, TOPIC, READ_LIMIT).await;
            let took = started.elapsed();
            for (partition, records) in &read {
                assert_eq!(records.len(), 1, "round {round}: partition {partition} holds its one message");
                assert_eq!(&records[0].value()[..], format!("value of {partition}").as_bytes());
            }
            assert_eq!(read.len(), PARTITIONS as usize, "round {round}: every partition was read");
            eprintln!("3 brokers, round {round}: reading 3 RF-1 partitions after {IDLE:?} idle took {took:?}");
        }
    })
    .await;
}

/// A key that the partitioner sends to each of the first `partitions` partitions.
fn keys_per_partition(partitions: u32) -> BTreeMap<u32, String> {
    let mut keys = BTreeMap::new();
    for i in 0.. {
        let key = format!("key-{i}");
        keys.entry(partition_for_key(key.as_bytes(), partitions)).or_insert(key);
        if keys.len() == partitions as usize {
            return keys;
        }
    }
    unreachable!("the loop returns once every partition has a key")
}
