//! `sluice bench commit`: how fast the groups' coordinators store committed offsets.
//!
//! `--groups` groups, each with one member subscribed to the topic (so it owns every
//! partition), each member committing an offset for all its partitions in a loop: one
//! `CommitOffsets` call per iteration, the next one sent when the previous one is answered,
//! with offsets growing by one each time. Nothing is produced or consumed. A commit is
//! answered once its records are replicated in the group's `__consumer_offsets` partition, so
//! this measures the coordinators' write path; groups spread over the coordinators as their
//! names hash. Latency is from calling `commit_offsets` to its return.
//!
//! A progress line goes to standard error every second, and a summary at the end
//! (`--output json` for one JSON object).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::future::join_all;
use hdrhistogram::Histogram;
use sluice_client::{Client, GroupConsumer, GroupConsumerConfig, TopicPartition};

use crate::args::{BenchCommitArgs, Output};
use crate::bench::{
    ensure_topic, latency_json, latency_ms_line, new_histogram, now_ms, record_latency, stop_on_ctrl_c,
};
use crate::{print, print_json};

/// How long the benchmark runs when neither `--count` nor `--duration` is given.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// How long a member may take to join and be given its partitions.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) async fn run(client: &Client, args: BenchCommitArgs) -> Result<()> {
    ensure_topic(client, &args.topic, args.partitions, args.replication_factor).await?;
    let partitions = client.admin().describe_topic(&args.topic).await?.partitions.len();
    let run_id = now_ms();
    eprintln!("joining {} groups (sluice-bench-commit-{run_id}-N) to {}", args.groups, args.topic);
    let joins = (0..args.groups).map(|i| join(client, &args.topic, format!("sluice-bench-commit-{run_id}-{i}")));
    let members = join_all(joins).await.into_iter().collect::<Result<Vec<_>>>()?;
    for member in &members {
        if member.offsets.len() != partitions {
            bail!(
                "group {} was given {} of the {partitions} partitions",
                member.consumer.group(),
                member.offsets.len()
            );
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_ctrl_c(&stop);
    let progress = Arc::new(AtomicU64::new(0));
    let ticker = report_progress(Arc::clone(&progress));
    let start = Instant::now();
    let duration = args.duration.or(if args.count.is_none() { Some(DEFAULT_DURATION) } else { None });
    let until = match duration {
        Some(d) => Some(start.checked_add(d).context("--duration is too long")?),
        None => None,
    };
    let groups = u64::from(args.groups);
    let workers: Vec<_> = members
        .into_iter()
        .zip(0..)
        .map(|(member, i)| {
            // Split the count so the groups commit `count` times in total.
            let share = args.count.map_or(u64::MAX, |c| c / groups + u64::from(i < c % groups));
            let limit = WorkerLimit { count: share, until, stop: Arc::clone(&stop) };
            tokio::spawn(member.commit_loop(limit, Arc::clone(&progress)))
        })
        .collect();
    let mut summary = Summary::new(args.groups, partitions, args.output.output)?;
    let mut members = Vec::with_capacity(workers.len());
    for worker in workers {
        let (member, outcome) = worker.await.context("a committing task panicked")?;
        summary.merge(outcome?)?;
        members.push(member);
    }
    summary.seconds = start.elapsed().as_secs_f64();
    ticker.abort();
    for closed in join_all(members.into_iter().map(|m| m.consumer.close())).await {
        if let Err(e) = closed {
            eprintln!("warning: leaving a group failed: {e}");
        }
    }
    match summary.output {
        Output::Json => print_json(&summary.json())?,
        Output::Plain => print(&summary.plain())?,
    }
    if summary.errors > 0 {
        bail!("{} commits failed; the first error: {}", summary.errors, summary.first_error.unwrap_or_default());
    }
    Ok(())
}

/// Prints the commits per second to standard error every second until aborted.
fn report_progress(commits: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
        let mut last = 0;
        loop {
            tick.tick().await;
            let now = commits.load(Ordering::Relaxed);
            eprintln!("[{:>4}s] {now} commits; last second: {} commits/s", start.elapsed().as_secs(), now - last);
            last = now;
        }
    })
}

/// One group's only member, owning every partition.
struct Member {
    consumer: GroupConsumer,
    /// Every owned partition with the offset the next commit sends.
    offsets: BTreeMap<TopicPartition, u64>,
}

/// Joins `group` and polls until the member has been given its partitions.
async fn join(client: &Client, topic: &str, group: String) -> Result<Member> {
    let config = GroupConsumerConfig { auto_commit: false, ..GroupConsumerConfig::new(group.clone()) };
    let mut consumer = client.group_consumer(config)?;
    consumer.subscribe(&[topic]).await.with_context(|| format!("cannot join group {group}"))?;
    let deadline = Instant::now() + JOIN_TIMEOUT;
    // The assignment comes with a heartbeat answer and is applied by `poll`.
    while consumer.assignment().is_empty() {
        if Instant::now() >= deadline {
            bail!("group {group} gave its member no partition within {JOIN_TIMEOUT:?}");
        }
        consumer.poll(Duration::from_millis(100)).await.with_context(|| format!("group {group}"))?;
    }
    let offsets = consumer.assignment().into_iter().map(|tp| (tp, 0)).collect();
    Ok(Member { consumer, offsets })
}

/// When a member stops committing.
struct WorkerLimit {
    count: u64,
    until: Option<Instant>,
    stop: Arc<AtomicBool>,
}

/// What one member measured.
struct Outcome {
    latency_us: Histogram<u64>,
    commits: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Member {
    /// Commits until the limit; stops at the first failure (a member that lost its
    /// partitions cannot commit them any more). Gives the member back to be closed.
    async fn commit_loop(mut self, limit: WorkerLimit, progress: Arc<AtomicU64>) -> (Member, Result<Outcome>) {
        let mut outcome = match new_histogram() {
            Ok(latency_us) => Outcome { latency_us, commits: 0, errors: 0, first_error: None },
            Err(e) => return (self, Err(e)),
        };
        let mut next = 1;
        while outcome.commits < limit.count
            && limit.until.is_none_or(|t| Instant::now() < t)
            && !limit.stop.load(Ordering::Relaxed)
        {
            self.offsets.values_mut().for_each(|offset| *offset = next);
            let started = Instant::now();
            match self.consumer.commit_offsets(&self.offsets).await {
                Ok(()) => {
                    record_latency(&mut outcome.latency_us, started.elapsed());
                    outcome.commits += 1;
                    progress.fetch_add(1, Ordering::Relaxed);
                    next += 1;
                }
                Err(e) => {
                    outcome.errors += 1;
                    outcome.first_error = Some(format!("group {}: {e}", self.consumer.group()));
                    break;
                }
            }
        }
        (self, Ok(outcome))
    }
}

/// The benchmark's result.
struct Summary {
    groups: u32,
    partitions: usize,
    output: Output,
    commits: u64,
    errors: u64,
    first_error: Option<String>,
    seconds: f64,
    latency_us: Histogram<u64>,
}

impl Summary {
    fn new(groups: u32, partitions: usize, output: Output) -> Result<Summary> {
        Ok(Summary {
            groups,
            partitions,
            output,
            commits: 0,
            errors: 0,
            first_error: None,
            seconds: 0.0,
            latency_us: new_histogram()?,
        })
    }

    fn merge(&mut self, outcome: Outcome) -> Result<()> {
        self.commits += outcome.commits;
        self.errors += outcome.errors;
        if self.first_error.is_none() {
            self.first_error = outcome.first_error;
        }
        self.latency_us.add(&outcome.latency_us).context("cannot merge latency histograms")
    }

    /// Commits and committed offsets per second.
    fn rates(&self) -> (f64, f64) {
        let commits = self.commits as f64 / self.seconds.max(1e-9);
        (commits, commits * self.partitions as f64)
    }

    fn json(&self) -> serde_json::Value {
        let (commits_per_sec, offsets_per_sec) = self.rates();
        serde_json::json!({
            "mode": "commit",
            "groups": self.groups,
            "offsets_per_commit": self.partitions,
            "commits": self.commits,
            "errors": self.errors,
            "seconds": self.seconds,
            "commits_per_sec": commits_per_sec,
            "offsets_per_sec": offsets_per_sec,
            "latency": "commit-to-ack",
            "latency_us": latency_json(&self.latency_us),
        })
    }

    fn plain(&self) -> String {
        let (commits_per_sec, offsets_per_sec) = self.rates();
        format!(
            "commit: {} groups, {} offsets per commit: {} commits in {:.2} s: {commits_per_sec:.0} commits/s \
             ({offsets_per_sec:.0} offsets/s), {} errors\n\
             commit-to-ack latency ms: {}\n",
            self.groups,
            self.partitions,
            self.commits,
            self.seconds,
            self.errors,
            latency_ms_line(&self.latency_us),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_reports_commit_rates_and_percentiles() {
        let mut s = Summary::new(8, 12, Output::Json).unwrap();
        for us in 1..=1000 {
            s.latency_us.record(us).unwrap();
        }
        (s.commits, s.seconds) = (1000, 4.0);
        let v = s.json();
        assert_eq!(
            (v["mode"].as_str(), v["groups"].as_u64(), v["commits"].as_u64()),
            (Some("commit"), Some(8), Some(1000))
        );
        assert_eq!((v["commits_per_sec"].as_f64(), v["offsets_per_sec"].as_f64()), (Some(250.0), Some(3000.0)));
        let p = &v["latency_us"];
        assert_eq!(
            (p["p50"].as_u64(), p["p99"].as_u64(), p["p999"].as_u64(), p["max"].as_u64()),
            (Some(500), Some(990), Some(999), Some(1000))
        );
        let plain = s.plain();
        assert!(plain.contains("250 commits/s (3000 offsets/s), 0 errors"), "{plain}");
        assert!(plain.contains("p50 0.50  p99 0.99  p999 1.00"), "{plain}");
    }

    #[test]
    fn merging_keeps_the_first_error() {
        let mut s = Summary::new(2, 1, Output::Plain).unwrap();
        let failed = |e: &str| Outcome {
            latency_us: new_histogram().unwrap(),
            commits: 3,
            errors: 1,
            first_error: Some(e.into()),
        };
        s.merge(failed("first")).unwrap();
        s.merge(failed("second")).unwrap();
        assert_eq!((s.commits, s.errors, s.first_error.as_deref()), (6, 2, Some("first")));
        assert!(Summary::new(1, 1, Output::Plain).unwrap().plain().contains(": 0 commits in"));
    }
}
