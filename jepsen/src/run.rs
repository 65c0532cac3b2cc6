//! One run of the suite: start the cluster on its test network, set the workload up, run it
//! while the nemesis plays the seeded schedule, heal everything, wait for recovery, drain,
//! stop the brokers, record each node's own log, check the history and write the report.
//!
//! Everything lands in the run directory: `schedule.txt`, `history.jsonl`, `report.json`,
//! `summary.txt`, and per node its config, data directory and log.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result, anyhow};

use crate::disk::DiskSpec;
use crate::faults::{FaultLog, Nemesis};
use crate::history::{self, Kind, Op, Recorder};
use crate::net::NetworkMode;
use crate::nodes::{Cluster, ClusterSpec};
use crate::probe::Probe;
use crate::report::Report;
use crate::schedule::{Family, Schedule};
use crate::workload::{RUNNER_PROCESS, SharedRecorder, Workload, WorkloadConfig, record_node_logs};

/// How long the cluster may take to serve after starting.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the workload's setup (topic creation, leaders) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the cluster may take to serve again once every fault healed.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the final drain may take (the log workload's; the delay workload's consumers read
/// until its messages are all in or its grace has passed).
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// How long the workload may overrun its time limit before the run gives up on it.
const WORKLOAD_GRACE: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The schedule's seed.
    pub seed: u64,
    /// How long the workload runs (faults are all healed by then).
    pub time_limit: Duration,
    /// The fault families the schedule draws from.
    pub families: Vec<Family>,
    /// Where `sluice-broker` is.
    pub bin_dir: PathBuf,
    /// Where everything of the run goes.
    pub run_dir: PathBuf,
    /// How the test network is built (only netns needs root).
    pub network: NetworkMode,
    /// The workload.
    pub workload: WorkloadConfig,
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    /// The checker's report.
    pub report: Report,
    /// Problems the runner itself saw: brokers that exited on their own, a cluster that did
    /// not recover, a drain that did not finish, a broker that did not stop cleanly.
    pub problems: Vec<String>,
}

impl Outcome {
    /// Whether the run found nothing wrong.
    pub fn is_clean(&self) -> bool {
        self.report.is_clean() && self.problems.is_empty()
    }
}

/// The default run directory: `jepsen/runs/<UTC time>-<seed>` in this workspace.
pub fn default_run_dir(seed: u64) -> PathBuf {
    let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Path::new(env!("CARGO_MANIFEST_DIR")).join("runs").join(format!("{}-{seed}", utc_stamp(secs)))
}

/// `YYYYMMDDTHHMMSSZ` for Unix seconds (Hinnant's civil-from-days; no date dependency).
fn utc_stamp(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", rem / 3_600, rem / 60 % 60, rem % 60)
}

/// How many sends the workload makes at most: its rate over the time limit.
fn planned_sends(options: &RunOptions) -> u64 {
    let per_second = u64::from(options.workload.producers) * u64::from(options.workload.sends_per_second);
    per_second.saturating_mul(options.time_limit.as_secs().max(1))
}

/// The workload's configuration as the run gives it: the log workload's acknowledgement
/// levels, the delay workload's delivery times and cancels, and the txn workload's choices,
/// seeded by the run's seed, and the clock skew the delay checks allow that of the schedule's
/// clock fault.
fn workload_config(options: &RunOptions) -> WorkloadConfig {
    let mut config = options.workload.clone();
    config.seed = options.seed;
    config.delay.seed = options.seed;
    config.txn.seed = options.seed;
    config.delay.max_clock_skew = crate::schedule::max_clock_skew(&options.families);
    config.retry.max_clock_skew = config.delay.max_clock_skew;
    config
}

/// Records fault events in the shared history.
struct HistoryFaults(SharedRecorder);

impl FaultLog for HistoryFaults {
    fn fault(&self, name: &str, phase: &str, nodes: &[u64]) -> Result<()> {
        let op = Op::Fault { name: name.into(), phase: phase.into(), nodes: nodes.to_vec() };
        let mut recorder = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        recorder.record(RUNNER_PROCESS, Kind::Info, op).context("recording a fault event")?;
        Ok(())
    }
}

/// Runs the whole test. The cluster is torn down when this returns, fails, or its future
/// is dropped (Ctrl-C).
pub async fn run(options: RunOptions) -> Result<Outcome> {
    // Before anything is written; the proxy network needs no privilege.
    if options.network == NetworkMode::Netns {
        crate::net::require_root()?;
    }
    if options.families.contains(&Family::DiskFull) {
        crate::disk::require_root()?;
    }
    let dir = &options.run_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let spec = ClusterSpec {
        bin_dir: options.bin_dir.clone(),
        run_dir: dir.clone(),
        nodes: vec![1, 2, 3],
        network: options.network,
        faketime: options.families.contains(&Family::Clock),
        fiu: options.families.contains(&Family::FsyncEio),
        fsync_log: options.families.contains(&Family::LoseUnfsynced),
        disk: options.families.contains(&Family::DiskFull).then(|| DiskSpec::for_sends(planned_sends(&options))),
    };
    let schedule = Schedule::generate(options.seed, options.time_limit, &options.families, &spec.nodes);
    std::fs::write(dir.join("schedule.txt"), schedule.to_string())?;
    tracing::info!("run directory {}, {} network\n{schedule}", dir.display(), options.network);

    let mut cluster = Cluster::start(spec)?;
    cluster.wait_ready(START_TIMEOUT).await.context("starting the cluster")?;
    tracing::info!("cluster serving at {}", cluster.bootstrap().join(","));
    let history_path = dir.join("history.jsonl");
    let file = File::create(&history_path).with_context(|| format!("creating {}", history_path.display()))?;
    let recorder: SharedRecorder = Arc::new(Mutex::new(Recorder::new(BufWriter::new(file))));

    let bootstrap = cluster.bootstrap().join(",");
    let setup = Workload::setup(&bootstrap, workload_config(&options));
    let workload = tokio::time::timeout(SETUP_TIMEOUT, setup).await.context("workload setup timed out")??;
    let client = sluice_client::Client::connect(sluice_client::ClientConfig::new(cluster.bootstrap())).await?;
    let topic = &options.workload.topic;
    let probe = Probe::new(client.clone(), topic, options.workload.partitions, Arc::clone(&recorder));
    let mut nemesis = Nemesis::new(client, topic, options.seed, probe);

    let mut problems = play(&mut cluster, &mut nemesis, &workload, &recorder, &schedule, &options).await?;
    problems.extend(finish(&mut cluster, &workload, &recorder, &options.workload.topic).await?);

    let events = history::read(BufReader::new(File::open(&history_path)?)).context("reading the history back")?;
    if options.families == [Family::DiskFull] {
        problems.extend(lagging_replicas(&events));
    }
    let report = crate::checker::check(&events);
    report.write_json(&dir.join("report.json"))?;
    let outcome = Outcome { report, problems };
    std::fs::write(dir.join("summary.txt"), summary(&outcome, options.seed))?;
    Ok(outcome)
}

/// The workload under the schedule, then every fault healed and the cluster given time to
/// recover. Returns the problems seen.
async fn play(
    cluster: &mut Cluster,
    nemesis: &mut Nemesis,
    workload: &Workload,
    recorder: &SharedRecorder,
    schedule: &Schedule,
    options: &RunOptions,
) -> Result<Vec<String>> {
    let started = Instant::now();
    let until = started + options.time_limit;
    let log = HistoryFaults(Arc::clone(recorder));
    let work =
        tokio::time::timeout(options.time_limit + WORKLOAD_GRACE, workload.run(Arc::clone(recorder), until.into()));
    let (worked, played) = tokio::join!(work, nemesis.play(cluster, schedule, started, until, &log));
    let mut problems = Vec::new();
    if worked.is_err() {
        problems.push(format!("the workload did not stop within {WORKLOAD_GRACE:?} of the time limit"));
    }
    if let Err(e) = played {
        problems.push(format!("the nemesis stopped: {e:#}"));
    }
    problems.extend(nemesis.take_problems());
    for (node, status) in cluster.unexpected_exits() {
        problems.push(format!("broker {node} exited on its own ({status}); see node{node}.log"));
    }
    nemesis.heal_everything(cluster).context("healing every fault")?;
    if let Err(e) = cluster.wait_ready(RECOVERY_TIMEOUT).await {
        problems.push(format!("the cluster did not recover after healing: {e:#}"));
    }
    Ok(problems)
}

/// Drains, stops the brokers and records each node's own copy of the topic.
async fn finish(
    cluster: &mut Cluster,
    workload: &Workload,
    recorder: &SharedRecorder,
    topic: &str,
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    if let Err(e) = workload.drain(Arc::clone(recorder), DRAIN_LIMIT).await {
        problems.push(format!("the final drain failed: {e}"));
    }
    if let Ok(disks) = cluster.disks() {
        problems.extend(disk_room(disks, &cluster.node_ids())?);
    }
    for node in cluster.stop_all().await? {
        problems.push(format!("broker {node} did not stop cleanly on SIGTERM; see node{node}.log"));
    }
    for node in cluster.node_ids() {
        let data_dir = cluster.data_dir(node)?.to_owned();
        if let Err(e) = record_node_logs(recorder, node, &data_dir, topic) {
            problems.push(format!("node {node}'s log could not be recorded: {e}"));
        }
    }
    recorder.lock().unwrap_or_else(PoisonError::into_inner).flush()?;
    Ok(problems)
}

/// After a disk-full run, every filler deleted: each node's disk must still have at least
/// twice the brokers' threshold free, or the workload's own data came close to filling it
/// (and the run's refusals may not all be the faults'): `crate::disk::BYTES_PER_SEND` is then
/// too small.
fn disk_room(disks: &crate::disk::Disks, nodes: &[u64]) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for &node in nodes {
        let (free, size) = (disks.free(node)?, disks.size(node)?);
        tracing::info!("node {node}'s disk at the end: {free} of {size} bytes free");
        if free < 2 * crate::disk::MIN_FREE_BYTES {
            problems.push(format!(
                "node {node}'s disk has only {free} of {size} bytes free at the end without a filler: the workload \
                 nearly filled it by itself"
            ));
        }
    }
    Ok(problems)
}

/// Every node's copy of each partition that ends below the final drain's last offset. With
/// only disk-full faults no node is down at the end, and nothing is written after the
/// workload stops, so every replica has caught up by the time the brokers stop — unless a
/// replica stopped when its appends hit ENOSPC and was not started again when space came back.
/// (Other families can leave a node legitimately behind at the end: one restarted late.)
fn lagging_replicas(events: &[history::Event]) -> Vec<String> {
    let last = |reads: &[(u64, String)]| reads.iter().map(|(offset, _)| *offset).max();
    let mut ends = std::collections::BTreeMap::new();
    for event in events {
        if let Op::FinalRead { partition, reads } = &event.op {
            ends.insert(*partition, last(reads));
        }
    }
    let mut problems = Vec::new();
    for event in events {
        let Op::NodeLog { node, partition, entries } = &event.op else { continue };
        let Some(&Some(end)) = ends.get(partition) else { continue };
        match last(entries) {
            Some(held) if held >= end => {}
            held => problems.push(format!(
                "node {node}'s copy of partition {partition} ends at offset {held:?}, below the partition's last offset \
                 {end}: the replica did not catch up after the disk-full faults"
            )),
        }
    }
    problems
}

/// The checker's summary, the runner's problems after it.
pub fn summary(outcome: &Outcome, seed: u64) -> String {
    let mut text = outcome.report.summary(Some(seed));
    if !outcome.problems.is_empty() {
        text.push_str("\nRUNNER PROBLEMS\n");
        for p in &outcome.problems {
            text.push_str(&format!("  - {p}\n"));
        }
    }
    text
}

/// Checks a history file again (`sluice-jepsen check`).
pub fn check_file(path: &Path) -> Result<Report> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let events = history::read(BufReader::new(file)).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(crate::checker::check(&events))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workload_takes_the_runs_seed_and_the_clock_faults_skew() {
        let options = |faults: &str| RunOptions {
            seed: 9,
            time_limit: Duration::from_secs(60),
            families: crate::schedule::parse_families(faults).unwrap(),
            bin_dir: PathBuf::new(),
            run_dir: PathBuf::new(),
            network: NetworkMode::Proxy,
            workload: WorkloadConfig::default(),
        };
        let config = workload_config(&options("kill,partition"));
        assert_eq!((config.delay.seed, config.delay.max_clock_skew), (9, Duration::ZERO));
        assert_eq!((config.txn.seed, config.seed), (9, 9));
        let config = workload_config(&options("clock"));
        assert_eq!(config.delay.max_clock_skew, Duration::from_secs(120));
    }

    #[test]
    fn stamps_are_utc_calendar_times() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_700_000_000), "20231114T221320Z");
    }

    #[test]
    fn run_directories_name_the_seed() {
        let dir = default_run_dir(1234);
        let name = dir.file_name().unwrap().to_str().unwrap();
        assert!(name.ends_with("Z-1234") && dir.parent().unwrap().ends_with("jepsen/runs"), "{}", dir.display());
    }

    #[test]
    fn a_replica_that_ends_below_the_drained_end_is_lagging() {
        let event = |index: u64, op: Op| history::Event {
            index,
            time_ns: index,
            process: crate::workload::RUNNER_PROCESS,
            kind: Kind::Ok,
            op,
            error: None,
        };
        let reads = |offsets: &[u64]| offsets.iter().map(|&o| (o, format!("v{o}"))).collect::<Vec<_>>();
        let events = [
            event(0, Op::FinalRead { partition: 0, reads: reads(&[0, 1, 2]) }),
            event(1, Op::FinalRead { partition: 1, reads: Vec::new() }),
            event(2, Op::NodeLog { node: 1, partition: 0, entries: reads(&[0, 1, 2]) }),
            event(3, Op::NodeLog { node: 2, partition: 0, entries: reads(&[0, 1]) }),
            event(4, Op::NodeLog { node: 3, partition: 0, entries: Vec::new() }),
            event(5, Op::NodeLog { node: 1, partition: 1, entries: Vec::new() }),
        ];
        let problems = lagging_replicas(&events);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("node 2's copy of partition 0 ends at offset Some(1)"), "{problems:?}");
        assert!(problems[1].starts_with("node 3's copy of partition 0 ends at offset None"), "{problems:?}");
    }

    #[test]
    fn checking_a_missing_history_names_the_file() {
        let e = check_file(Path::new("/nonexistent/history.jsonl")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/history.jsonl"), "{e}");
    }
}
