//! Cluster-level measurements of Sluice brokers: three [`Broker`]s in this one process, talking
//! gRPC over loopback and storing on the real disk (every broker's group-commit flusher fsyncs
//! before a write is acknowledged, unless the topic sets `flush_interval_ms`). These are not
//! micro-benchmarks: a plain `main` runs one scenario and prints a table.
//!
//! - `failover`: one RF-3 partition; per trial, stop the broker leading it
//!   ([`Broker::shutdown`]) and time from the stop until another broker's group ACCEPTS a write
//!   (`client_write` retried on the survivors); then restart the broker and wait until its replica
//!   has caught up. 20 trials with the default partition timings, then 20 with the fast test
//!   timings (heartbeat 50 ms, election 300–600 ms), and a third row with partition timings from
//!   `SLUICE_BENCH_TIMINGS=heartbeat,min,max` if set. p50 / p99 / max in ms.
//! - `throughput`: RF 3, 1 partition then 12; producers call `client_write` on each partition's
//!   leader directly (no client protocol), batches of 100 messages of 100 B (one Raft entry
//!   each), 1 batch in flight (the bare ack latency), 64 in flight for 1 partition, 16 per
//!   partition for 12. Each shape runs under both flush policies: fsync before ack (the default)
//!   and the topic setting `flush_interval_ms` (100 ms, or `SLUICE_BENCH_FLUSH_MS`). 2 s warm-up,
//!   then 10 s measured: msgs/s, MB/s (payload), batch-ack latency p50 / p99, process CPU.
//! - `idle`: N partitions (default 300 and 1000) RF 3 on the three brokers of this process, default
//!   timings; once every group has a leader, the process's CPU over 10 idle seconds as % of one
//!   core (all three brokers together: divide by 3 for one broker), per-thread-name breakdown,
//!   RSS, threads and open files, and open files again 25 s after forming (by then idle segment
//!   files have closed). Formation is bounded (3 min) and reported if it fails.
//!
//! ```text
//! cargo bench -p sluice-broker --bench cluster -- failover
//! cargo bench -p sluice-broker --bench cluster -- failover 5        # 5 trials per row
//! cargo bench -p sluice-broker --bench cluster -- throughput
//! cargo bench -p sluice-broker --bench cluster -- idle              # N = 300, then 1000
//! cargo bench -p sluice-broker --bench cluster -- idle 2000         # other N
//! cargo bench -p sluice-broker --bench cluster -- all
//! ```
//! Without a scenario it only prints this usage. Without `--bench` (as `cargo test --benches`
//! runs it) it runs a smoke version: a 1-second produce and one failover trial, fast timings.
//! Data goes under `$SLUICE_BENCH_DIR`, else the system temp dir: put it on the disk to measure
//! (not a tmpfs). The idle scenario holds a descriptor per replica until the replica has been
//! idle for 10–20 s (then none): raise `ulimit -n` for big N.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_broker::{Broker, BrokerConfig, BrokerStateMachine, ProposeError, RaftTimings};
use sluice_common::record::{BatchBuilder, ProducerStamp, Record};
use sluice_controller::{Applied, ControllerCommand, TopicConfig};
use sluice_raft::partition::PartitionCommand;
use sluice_raft::transport;
use sluice_raft::typ::Raft;

type GroupRaft = Raft<BrokerStateMachine>;

const USAGE: &str = "scenarios: failover [trials] | throughput [seconds] | idle [N...] | all";
/// Linux's USER_HZ: the unit of utime and stime in /proc.
const TICKS_PER_SEC: f64 = 100.0;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().filter(|a| !a.starts_with('-')).map(String::as_str).collect();
    let numbers: Vec<u64> = words.iter().skip(1).filter_map(|w| w.parse().ok()).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    if !args.iter().any(|a| a == "--bench") {
        println!("cluster bench: smoke run (pass --bench, as `cargo bench` does, to measure)");
        runtime.block_on(smoke());
        return;
    }
    let scenario = words.first().copied().unwrap_or("");
    runtime.block_on(async {
        match scenario {
            "failover" => failover(numbers.first().copied().unwrap_or(20)).await,
            "throughput" => throughput(numbers.first().copied().unwrap_or(10)).await,
            "idle" => idle(if numbers.is_empty() { vec![300, 1000] } else { numbers }).await,
            "all" => {
                failover(20).await;
                throughput(10).await;
                idle(vec![300, 1000]).await;
            }
            _ => println!("{USAGE}"),
        }
    });
}

fn fast_timings() -> RaftTimings {
    RaftTimings {
        controller_heartbeat_ms: 50,
        controller_election_timeout_ms: [300, 600],
        partition_heartbeat_ms: 50,
        partition_election_timeout_ms: [300, 600],
        node_heartbeat_ms: 50,
        node_timeout_ms: 400,
        leader_rebalance_delay_ms: 1_000,
    }
}

/// Three brokers of one cluster in this process, on loopback ports bound before they start.
struct Cluster {
    brokers: Vec<Option<Broker>>,
    configs: Vec<BrokerConfig>,
    _data: tempfile::TempDir,
}

impl Cluster {
    async fn start(timings: RaftTimings) -> Cluster {
        let base = std::env::var_os("SLUICE_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
        let data = tempfile::tempdir_in(base).expect("bench data dir");
        let listeners: Vec<_> = (0..3).map(|_| transport::bind(([127, 0, 0, 1], 0).into()).expect("bind")).collect();
        let addrs: Vec<String> = listeners.iter().map(|l| l.local_addr().expect("local addr").to_string()).collect();
        let configs: Vec<BrokerConfig> =
            (1..=3u64).map(|id| broker_config(id, &data.path().join(format!("node{id}")), &addrs, &timings)).collect();
        let mut brokers = Vec::new();
        for (config, incoming) in configs.iter().zip(listeners) {
            brokers.push(Some(Broker::start_on(config.clone(), incoming).await.expect("start broker")));
        }
        let cluster = Cluster { brokers, configs, _data: data };
        let registered = |c: &Cluster| c.live().all(|b| b.controller().metadata().read(|m| m.brokers().count() == 3));
        assert!(cluster.wait_for(Duration::from_secs(30), registered).await.is_some(), "brokers never registered");
        cluster
    }

    fn live(&self) -> impl Iterator<Item = &Broker> {
        self.brokers.iter().flatten()
    }

    /// Polls `done` every 20 ms for at most `limit`; how long it took, or `None`.
    async fn wait_for(&self, limit: Duration, done: impl Fn(&Cluster) -> bool) -> Option<Duration> {
        let start = Instant::now();
        while !done(self) {
            if start.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(start.elapsed())
    }

    /// Creates an RF-3 topic through the controller leader; returns its partitions' group ids.
    async fn create_topic(&self, name: &str, partitions: u32) -> Vec<u64> {
        self.create_topic_with(name, TopicConfig::new(partitions, 3)).await
    }

    /// Creates topic `name` with `config` through the controller leader; returns its
    /// partitions' group ids.
    async fn create_topic_with(&self, name: &str, config: TopicConfig) -> Vec<u64> {
        let command = ControllerCommand::CreateTopic { name: name.into(), config };
        for _ in 0..400 {
            for b in self.live() {
                match b.controller().propose(&command).await {
                    Ok(reply) => match reply.into_result() {
                        Ok(Applied::TopicCreated { partitions, .. }) => {
                            return partitions.iter().map(|p| p.group_id).collect();
                        }
                        other => panic!("creating topic {name}: {other:?}"),
                    },
                    Err(ProposeError::NotLeader { .. }) => {}
                    Err(e) => eprintln!("creating topic {name}, retrying: {e}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no controller leader accepted topic {name}")
    }

    fn raft(&self, broker: usize, group: u64) -> Option<GroupRaft> {
        self.brokers[broker].as_ref()?.partitions().raft(group)
    }

    fn leader_of(&self, group: u64) -> Option<usize> {
        (0..self.brokers.len()).find(|&i| self.raft(i, group).is_some_and(|r| r.is_leader()))
    }

    fn log_end(&self, broker: usize, group: u64) -> Option<u64> {
        let log = self.brokers[broker].as_ref()?.partitions().log(group)?;
        log.indexed_end().map(|e| e.next_offset)
    }

    /// Starts broker `i` again on its old address and data.
    async fn restart(&mut self, i: usize) {
        let config = self.configs[i].clone();
        let addr = config.raft_listen().expect("raft address");
        let mut incoming = transport::bind(addr);
        for _ in 0..100 {
            if incoming.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            incoming = transport::bind(addr);
        }
        let broker = Broker::start_on(config, incoming.expect("rebind old address")).await.expect("restart");
        self.brokers[i] = Some(broker);
    }

    /// Stops every broker; gives up (leaving tasks behind) after `limit`.
    async fn shutdown(self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        let all = async {
            for b in self.brokers.into_iter().flatten() {
                b.shutdown().await;
            }
        };
        tokio::time::timeout(limit, all).await.ok().map(|()| start.elapsed())
    }
}

/// Broker `id`'s configuration, through TOML so that fields added later take their defaults.
fn broker_config(id: u64, data_dir: &Path, raft_addrs: &[String], timings: &RaftTimings) -> BrokerConfig {
    let mut text = format!("node_id = {id}\ndata_dir = {:?}\n", data_dir.display().to_string());
    for (n, addr) in (1..).zip(raft_addrs) {
        text +=
            &format!("[[peers]]\nnode_id = {n}\nraft_addr = {addr:?}\nclient_addr = \"127.0.0.1:{}\"\n", 19_000 + n);
    }
    let mut config: BrokerConfig = toml::from_str(&text).expect("bench broker config");
    config.raft = timings.clone();
    config
}

/// One batch of `count` messages of `size` bytes.
fn batch(count: usize, size: usize) -> Bytes {
    let mut b = BatchBuilder::new(ProducerStamp::NONE, count * (size + 8) + 64);
    for i in 0..count {
        b.push(&Record::new(vec![b'x'; size], 1_700_000_000_000 + i as i64));
    }
    b.finish()
}

/// The `p`-quantile (0..=1) of sorted samples.
fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

// ---------------------------------------------------------------- failover

async fn failover(trials: u64) {
    println!("\n== failover: stop the partition leader's broker -> first write a new leader accepts (ms)");
    println!(
        "{:<34} {:>6} {:>8} {:>8} {:>8} {:>8} {:>12}",
        "timings", "trials", "min", "p50", "p99", "max", "stop p50 ms"
    );
    failover_row("default (node 100/800, elect 500-1000)", RaftTimings::default(), trials).await;
    failover_row("fast (node 50/400, elect 300-600)", fast_timings(), trials).await;
    if let Some(t) = custom_timings() {
        let label = format!("custom (hb {}, elect {:?})", t.partition_heartbeat_ms, t.partition_election_timeout_ms);
        failover_row(&label, t, trials).await;
    }
}

/// Partition timings from `SLUICE_BENCH_TIMINGS=heartbeat,min,max` (ms), for a third row.
fn custom_timings() -> Option<RaftTimings> {
    let var = std::env::var("SLUICE_BENCH_TIMINGS").ok()?;
    let v: Vec<u64> = var.split(',').map(|x| x.trim().parse().expect("SLUICE_BENCH_TIMINGS=hb,min,max")).collect();
    let (partition_heartbeat_ms, partition_election_timeout_ms) = (v[0], [v[1], v[2]]);
    Some(RaftTimings { partition_heartbeat_ms, partition_election_timeout_ms, ..RaftTimings::default() })
}

async fn failover_row(label: &str, timings: RaftTimings, trials: u64) {
    let mut cluster = Cluster::start(timings).await;
    let group = cluster.create_topic("failover", 1).await[0];
    let one = batch(10, 100);
    let led = cluster.wait_for(Duration::from_secs(30), |c| c.leader_of(group).is_some()).await;
    assert!(led.is_some(), "the partition never got a leader");
    let (mut outages, mut stops) = (Vec::new(), Vec::new());
    for trial in 0..trials {
        match failover_trial(&mut cluster, group, &one).await {
            Ok((outage, stop)) => {
                outages.push(outage.as_secs_f64() * 1e3);
                stops.push(stop.as_secs_f64() * 1e3);
            }
            Err(why) => {
                println!("  trial {trial}: {why}; stopping this row");
                break;
            }
        }
    }
    let (o, s) = (sorted(outages), sorted(stops));
    let q = |p| quantile(&o, p);
    println!(
        "{label:<34} {:>6} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>12.0}",
        o.len(),
        q(0.0),
        q(0.5),
        q(0.99),
        q(1.0),
        quantile(&s, 0.5)
    );
    let _ = cluster.shutdown(Duration::from_secs(60)).await;
}

/// Stops the leader's broker, times the outage, restarts it and waits until it caught up.
/// Returns (stop -> accepted write, how long `shutdown` took).
async fn failover_trial(cluster: &mut Cluster, group: u64, one: &Bytes) -> Result<(Duration, Duration), String> {
    if cluster.wait_for(Duration::from_secs(30), |c| c.leader_of(group).is_some()).await.is_none() {
        return Err("no leader within 30 s".into());
    }
    let i = cluster.leader_of(group).ok_or("the leader vanished")?;
    let broker = cluster.brokers[i].take().expect("the leader's broker is live");
    let start = Instant::now();
    // The outage is measured from the stop; the shutdown runs alongside the retries.
    let (stop, accepted) = tokio::join!(
        async {
            broker.shutdown().await;
            start.elapsed()
        },
        write_anywhere(cluster, group, one, start, Duration::from_secs(60))
    );
    let outage = accepted.ok_or("no survivor accepted a write within 60 s")?;
    cluster.restart(i).await;
    let caught_up = |c: &Cluster| {
        let ends: Vec<Option<u64>> = (0..3).map(|b| c.log_end(b, group)).collect();
        ends[0].is_some() && ends.iter().all(|e| *e == ends[0])
    };
    if cluster.wait_for(Duration::from_secs(60), caught_up).await.is_none() {
        return Err("the restarted replica did not catch up within 60 s".into());
    }
    Ok((outage, stop))
}

/// Retries one write on every live broker's replica of `group` until one accepts it; the time
/// from `start`, or `None` after `limit`.
async fn write_anywhere(
    cluster: &Cluster,
    group: u64,
    one: &Bytes,
    start: Instant,
    limit: Duration,
) -> Option<Duration> {
    while start.elapsed() < limit {
        for b in 0..cluster.brokers.len() {
            let Some(raft) = cluster.raft(b, group) else { continue };
            let write = raft.client_write(PartitionCommand::produce(one));
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), write).await {
                return Some(start.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

// ---------------------------------------------------------------- throughput

async fn throughput(seconds: u64) {
    let relaxed = std::env::var("SLUICE_BENCH_FLUSH_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    println!("\n== throughput: RF 3, 100 B messages, 100 per batch (one Raft entry)");
    println!("   flush: `ack` = fsync on a majority before ack; `N ms` = ack from memory, fsync every N ms");
    println!(
        "{:>10} {:>9} {:>7} {:>11} {:>8} {:>11} {:>11} {:>7} {:>9}  leaders",
        "partitions", "in flight", "flush", "msgs/s", "MB/s", "ack p50 ms", "ack p99 ms", "errors", "CPU %core"
    );
    for (partitions, per_partition) in [(1, 1), (1, 64), (12, 16)] {
        for flush in [None, Some(relaxed)] {
            throughput_row(partitions, per_partition, flush, seconds).await;
        }
    }
}

struct Produced {
    latencies_us: Vec<f64>,
    errors: u64,
}

async fn throughput_row(partitions: u32, per_partition: usize, flush_interval_ms: Option<u64>, seconds: u64) {
    let cluster = Cluster::start(RaftTimings::default()).await;
    let config = TopicConfig { flush_interval_ms, ..TopicConfig::new(partitions, 3) };
    let groups = cluster.create_topic_with("throughput", config).await;
    let all_led = |c: &Cluster| groups.iter().all(|g| c.leader_of(*g).is_some());
    assert!(cluster.wait_for(Duration::from_secs(60), all_led).await.is_some(), "partitions never got leaders");
    let mut leaders = [0usize; 3];
    let rafts: Vec<GroupRaft> = groups
        .iter()
        .map(|g| {
            let i = cluster.leader_of(*g).expect("led");
            leaders[i] += 1;
            cluster.raft(i, *g).expect("hosted")
        })
        .collect();
    let one = batch(100, 100);
    let warm = Instant::now() + Duration::from_secs(2);
    let end = warm + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for raft in &rafts {
        for _ in 0..per_partition {
            tasks.push(tokio::spawn(produce(raft.clone(), one.clone(), warm, end)));
        }
    }
    tokio::time::sleep_until(warm.into()).await;
    let cpu = process_ticks();
    let mut all = Produced { latencies_us: Vec::new(), errors: 0 };
    for t in tasks {
        let p = t.await.expect("producer task");
        all.latencies_us.extend(p.latencies_us);
        all.errors += p.errors;
    }
    let window = warm.elapsed().as_secs_f64();
    let cpu_pct = (process_ticks() - cpu) as f64 / TICKS_PER_SEC / window * 100.0;
    let lat = sorted(all.latencies_us);
    let msgs = lat.len() as f64 * 100.0 / window;
    let flush = flush_interval_ms.map_or_else(|| "ack".to_owned(), |ms| format!("{ms} ms"));
    println!(
        "{partitions:>10} {:>9} {flush:>7} {msgs:>11.0} {:>8.1} {:>11.1} {:>11.1} {:>7} {cpu_pct:>9.0}  {leaders:?}",
        per_partition * rafts.len(),
        msgs * 100.0 / 1e6,
        quantile(&lat, 0.5) / 1e3,
        quantile(&lat, 0.99) / 1e3,
        all.errors,
    );
    let _ = cluster.shutdown(Duration::from_secs(60)).await;
}

/// Writes `one` back to back until `end`; latencies of the writes sent after `warm`.
async fn produce(raft: GroupRaft, one: Bytes, warm: Instant, end: Instant) -> Produced {
    let mut p = Produced { latencies_us: Vec::new(), errors: 0 };
    while Instant::now() < end {
        let sent = Instant::now();
        match raft.client_write(PartitionCommand::produce(&one)).await {
            Ok(_) if sent >= warm => p.latencies_us.push(sent.elapsed().as_secs_f64() * 1e6),
            Ok(_) => {}
            Err(_) => {
                p.errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    p
}

// ---------------------------------------------------------------- idle

async fn idle(sizes: Vec<u64>) {
    println!("\n== idle: 3 brokers in one process, RF 3, default timings, 10 s idle after forming");
    println!("(CPU counts all three brokers: divide by 3 for one broker)");
    for n in sizes {
        idle_row(n).await;
    }
}

async fn idle_row(n: u64) {
    let cluster = Cluster::start(RaftTimings::default()).await;
    let base_cpu = process_ticks();
    let groups = cluster.create_topic("idle", u32::try_from(n).expect("N fits u32")).await;
    let formed = wait_formed(&cluster, &groups, n as usize, Duration::from_secs(180)).await;
    let formed_cpu = (process_ticks() - base_cpu) as f64 / TICKS_PER_SEC;
    let Some(took) = formed else {
        println!("N = {n}: did NOT form within 180 s ({formed_cpu:.0} CPU-s used); {}", resources());
        let stopped = cluster.shutdown(Duration::from_secs(60)).await;
        println!("   shutdown: {}", stopped.map_or("not done within 60 s".into(), |d| format!("{d:?}")));
        return;
    };
    println!("N = {n}: formed in {:.1} s ({formed_cpu:.1} CPU-s), settling 5 s", took.as_secs_f64());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (cpu, threads, t0) = (process_ticks(), thread_ticks(), Instant::now());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let secs = t0.elapsed().as_secs_f64();
    let pct = (process_ticks() - cpu) as f64 / TICKS_PER_SEC / secs * 100.0;
    let led: usize = groups.iter().filter(|g| cluster.leader_of(**g).is_some()).count();
    println!(
        "N = {n}: idle CPU {pct:.1} % of one core ({:.1} % per broker); {led}/{n} led; {}",
        pct / 3.0,
        resources()
    );
    println!("   by thread name (% of one core): {}", thread_breakdown(&threads, &thread_ticks(), secs));
    // Segment files close once unused for 10 to 20 s: 25 s after forming, an idle replica holds
    // no descriptor.
    tokio::time::sleep(Duration::from_secs(10)).await;
    println!("   25 s after forming: {}", resources());
    match cluster.shutdown(Duration::from_secs(120)).await {
        Some(d) => println!("   shutdown of all brokers took {:.1} s", d.as_secs_f64()),
        None => println!("   shutdown did not finish within 120 s (tasks left behind)"),
    }
}

/// Waits until every broker hosts `n` groups and every group has a leader, printing progress.
async fn wait_formed(cluster: &Cluster, groups: &[u64], n: usize, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let hosted: Vec<usize> = cluster.live().map(|b| b.partitions().group_ids().len()).collect();
        let led = groups.iter().filter(|g| cluster.leader_of(**g).is_some()).count();
        if hosted.iter().all(|h| *h == n) && led == n {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            println!("   after {limit:?}: hosted per broker {hosted:?}, {led}/{n} groups led");
            return None;
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            println!("   {:.0} s: hosted per broker {hosted:?}, {led}/{n} led", start.elapsed().as_secs_f64());
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ---------------------------------------------------------------- /proc

/// utime + stime of the whole process, in ticks.
fn process_ticks() -> u64 {
    stat_ticks(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default()).1
}

/// (comm, utime + stime) from a /proc stat line.
fn stat_ticks(line: &str) -> (String, u64) {
    let (open, close) = (line.find('(').unwrap_or(0), line.rfind(')').unwrap_or(0));
    let comm = line.get(open + 1..close).unwrap_or("?").to_owned();
    let fields: Vec<&str> = line.get(close + 1..).unwrap_or("").split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (comm, field(11) + field(12))
}

/// Every thread's (name, ticks), by thread id.
fn thread_ticks() -> BTreeMap<String, (String, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return BTreeMap::new() };
    dir.flatten()
        .filter_map(|e| {
            let line = std::fs::read_to_string(e.path().join("stat")).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), stat_ticks(&line)))
        })
        .collect()
}

/// CPU between two snapshots summed by thread name, largest first.
fn thread_breakdown(
    before: &BTreeMap<String, (String, u64)>,
    after: &BTreeMap<String, (String, u64)>,
    secs: f64,
) -> String {
    let mut by_name: BTreeMap<&str, u64> = BTreeMap::new();
    for (tid, (name, ticks)) in after {
        let earlier = before.get(tid).map_or(0, |(_, t)| *t);
        *by_name.entry(name.as_str()).or_default() += ticks.saturating_sub(earlier);
    }
    let mut rows: Vec<(&str, u64)> = by_name.into_iter().filter(|(_, t)| *t > 0).collect();
    rows.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
    let pct = |t: u64| t as f64 / TICKS_PER_SEC / secs * 100.0;
    rows.iter().map(|(name, t)| format!("{name} {:.1}", pct(*t))).collect::<Vec<_>>().join(", ")
}

/// RSS, thread count and open files of this process.
fn resources() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).map_or_else(|| "?".to_owned(), |v| v.trim().to_owned())
    };
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
    format!("RSS {}, threads {}, open files {fds}", field("VmRSS:"), field("Threads:"))
}

// ---------------------------------------------------------------- smoke

/// What `cargo test --benches` runs: a few seconds, fast timings, no figures worth keeping.
async fn smoke() {
    let mut cluster = Cluster::start(fast_timings()).await;
    let group = cluster.create_topic("smoke", 1).await[0];
    let led = cluster.wait_for(Duration::from_secs(20), |c| c.leader_of(group).is_some()).await;
    let leader = cluster.leader_of(group).filter(|_| led.is_some()).expect("the partition got a leader");
    let now = Instant::now();
    let raft = cluster.raft(leader, group).expect("hosted");
    let p = produce(raft, batch(10, 100), now, now + Duration::from_secs(1)).await;
    assert!(!p.latencies_us.is_empty(), "no write was acknowledged");
    let (outage, _) = failover_trial(&mut cluster, group, &batch(1, 100)).await.expect("one failover trial");
    println!("smoke: {} writes in 1 s; failover {outage:?}", p.latencies_us.len());
    assert!(cluster.shutdown(Duration::from_secs(30)).await.is_some(), "shutdown hung");
}
