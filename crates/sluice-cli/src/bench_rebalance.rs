//! `sluice bench rebalance`: how long a consumer group takes to move partitions, measured as
//! an application sees it: until the partitions that moved deliver messages to their new
//! owner. A background producer writes `--rate` messages per second over every partition of
//! the topic throughout, so a partition's new owner always has something to read; each trial
//! uses a new group (members start at the end of the partitions, then at what the group
//! committed).
//!
//! - join: with two members settled (each reading its half), a third one joins. Measured from
//!   the call that creates and subscribes it: until `subscribe` returns (the coordinator
//!   accepted it), until its first message of a partition it was given, and until every one
//!   of its share (partitions / 3) has delivered.
//! - crash: with three members settled, one is dropped without leaving (its heartbeats
//!   stop). Measured from then until the first, and until every one, of its partitions has
//!   delivered a message to one of the other two. The coordinator notices only when the
//!   member's session times out (`--session-timeout`).
//! - leave: the same, but the member closes (commits, leaves the group).
//!
//! Members join, and the measured event happens, at random points within a second (the
//! default heartbeat interval) of the step before, so that trials sample the members'
//! heartbeat phases rather than always catching them in step.
//!
//! Each trial is printed to standard error as it ends; the summary has p50, p99 and max per
//! measure, and every trial (`--output json` for one JSON object).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::future::join_all;
use sluice_client::Client;
use tokio::sync::mpsc;

use crate::args::{BenchRebalanceArgs, Output, RebalanceScenario};
use crate::bench::{ensure_topic, now_ms};
use crate::bench_rebalance_member::{Event, FeedOutcome, Member, StopOnDrop, View, feed};
use crate::{print, print_json};

/// How long a group may take to settle before a trial's measurement starts.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a measured rebalance may take beyond the session timeout.
const MEASURE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a member may take to leave at the end of a trial.
const FINISH_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the members' views are checked while waiting for a group to settle.
const SETTLE_CHECK: Duration = Duration::from_millis(20);
/// Members join, and the measured event happens, each after a random pause of up to this
/// (the brokers' default heartbeat interval): each member heartbeats every interval from its
/// join, so members started back to back would heartbeat in step with each other and with an
/// event that follows the group settling, and every trial would see the same phase.
const PHASE_SPREAD: Duration = Duration::from_secs(1);

pub(crate) async fn run(client: &Client, args: BenchRebalanceArgs) -> Result<()> {
    ensure_topic(client, &args.topic, args.partitions, args.replication_factor).await?;
    let partitions = u32::try_from(client.admin().describe_topic(&args.topic).await?.partitions.len())?;
    if partitions < 3 {
        bail!("topic {} has {partitions} partitions; the scenarios need at least 3 (one per member)", args.topic);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stop_feed = StopOnDrop(Arc::clone(&stop));
    let topic: Arc<str> = Arc::from(args.topic.as_str());
    let feeder = tokio::spawn(feed(client.clone(), Arc::clone(&topic), partitions, args.rate, stop));
    let bench = Bench { client, topic: &args.topic, partitions, session_timeout: args.session_timeout };
    let run_id = now_ms();
    let scenarios: BTreeSet<RebalanceScenario> = args.scenarios.iter().copied().collect();
    let mut results = Vec::new();
    for scenario in scenarios {
        let mut result = ScenarioResult { scenario, trials: Vec::new(), failures: Vec::new() };
        for trial in 1..=args.trials {
            let group = format!("sluice-bench-rebalance-{run_id}-{}-{trial}", name(scenario));
            match bench.trial(scenario, &group).await {
                Ok(measured) => {
                    eprintln!("{} trial {trial}: {}", name(scenario), measured.plain());
                    result.trials.push(measured);
                }
                Err(e) => {
                    eprintln!("{} trial {trial} (group {group}) failed: {e:#}", name(scenario));
                    result.failures.push(format!("trial {trial} (group {group}): {e:#}"));
                }
            }
        }
        results.push(result);
    }
    drop(stop_feed);
    let fed = feeder.await.context("the background producer panicked")??;
    let summary = Summary { args: &args, partitions, fed, results };
    match args.output.output {
        Output::Json => print_json(&summary.json())?,
        Output::Plain => print(&summary.plain())?,
    }
    let failed: usize = summary.results.iter().map(|r| r.failures.len()).sum();
    if failed > 0 {
        bail!(
            "{failed} trials failed; the first: {}",
            summary.results.iter().flat_map(|r| &r.failures).next().unwrap_or(&String::new())
        );
    }
    if summary.fed.errors > 0 {
        bail!(
            "the background producer had {} failed messages: {}",
            summary.fed.errors,
            summary.fed.first_error.unwrap_or_default()
        );
    }
    Ok(())
}

fn name(scenario: RebalanceScenario) -> &'static str {
    match scenario {
        RebalanceScenario::Join => "join",
        RebalanceScenario::Crash => "crash",
        RebalanceScenario::Leave => "leave",
    }
}

/// What one trial measured, in milliseconds from its start.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Trial {
    /// Join only: until `subscribe` returned.
    accepted_ms: Option<f64>,
    /// Until the first message of a partition that moved.
    first_ms: f64,
    /// Until every partition that moved delivered a message.
    all_ms: f64,
    /// How many partitions moved (join: the newcomer's share).
    moved: usize,
}

impl Trial {
    fn plain(&self) -> String {
        let accepted = self.accepted_ms.map(|ms| format!("accepted {ms:.0} ms, ")).unwrap_or_default();
        format!("{accepted}first {:.0} ms, all {} moved partitions {:.0} ms", self.first_ms, self.moved, self.all_ms)
    }
}

/// The trials of one scenario.
struct ScenarioResult {
    scenario: RebalanceScenario,
    trials: Vec<Trial>,
    failures: Vec<String>,
}

/// Where the trials run.
struct Bench<'a> {
    client: &'a Client,
    topic: &'a str,
    partitions: u32,
    session_timeout: Duration,
}

impl Bench<'_> {
    /// Runs one trial of `scenario` with a new group, and closes its members whatever happens.
    async fn trial(&self, scenario: RebalanceScenario, group: &str) -> Result<Trial> {
        let (events, mut received) = mpsc::unbounded_channel();
        let before = if scenario == RebalanceScenario::Join { 2 } else { 3 };
        let mut members = Vec::new();
        let measured = async {
            for index in 0..before {
                tokio::time::sleep(jitter(PHASE_SPREAD)).await;
                members.push(self.start(group, index, &events).await?);
            }
            self.settle(&members).await?;
            tokio::time::sleep(jitter(PHASE_SPREAD)).await;
            match scenario {
                RebalanceScenario::Join => {
                    let started = Instant::now();
                    members.push(self.start(group, before, &events).await?);
                    let accepted = started.elapsed();
                    let share = (self.partitions / 3) as usize;
                    let newcomer = |e: &Event| e.member == before;
                    let mut trial = self.measure(&mut received, started, share, newcomer, &members).await?;
                    trial.accepted_ms = Some(ms(accepted));
                    Ok(trial)
                }
                RebalanceScenario::Crash | RebalanceScenario::Leave => {
                    let mut gone = members.pop().context("no member to stop")?;
                    let lost = gone.view().owned;
                    let started = Instant::now();
                    if scenario == RebalanceScenario::Crash {
                        gone.crash();
                    } else {
                        gone.leave();
                    }
                    let moved = |e: &Event| e.member != gone.index && lost.contains(&e.partition);
                    let trial = self.measure(&mut received, started, lost.len(), moved, &members).await;
                    members.push(gone);
                    trial
                }
            }
        }
        .await;
        let finished = join_all(members.into_iter().map(|m| m.finish(FINISH_TIMEOUT))).await;
        let trial = measured?;
        finished.into_iter().collect::<Result<Vec<()>>>().context("closing the trial's members")?;
        Ok(trial)
    }

    async fn start(&self, group: &str, index: usize, events: &mpsc::UnboundedSender<Event>) -> Result<Member> {
        Member::start(self.client, self.topic, group, self.session_timeout, index, events.clone()).await
    }

    /// Waits until the members share every partition evenly and each partition has delivered
    /// a message to its owner.
    async fn settle(&self, members: &[Member]) -> Result<()> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let views: Vec<View> = members.iter().map(Member::view).collect();
            if settled(&views, self.partitions) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("the group did not settle within {SETTLE_TIMEOUT:?}: {}", describe(&views));
            }
            tokio::time::sleep(SETTLE_CHECK).await;
        }
    }

    /// Waits for the events `moved` picks, after `started`, until `count` partitions have
    /// delivered; the measure bounds the wait at the session timeout plus a minute.
    async fn measure(
        &self,
        received: &mut mpsc::UnboundedReceiver<Event>,
        started: Instant,
        count: usize,
        moved: impl Fn(&Event) -> bool,
        members: &[Member],
    ) -> Result<Trial> {
        let deadline = started + self.session_timeout + MEASURE_TIMEOUT;
        let mut delivered = BTreeSet::new();
        let mut first = None;
        while delivered.len() < count.max(1) {
            let event = match tokio::time::timeout_at(deadline.into(), received.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) => bail!("every member stopped"),
                Err(_) => {
                    let views: Vec<View> = members.iter().map(Member::view).collect();
                    bail!(
                        "{} of {count} moved partitions delivered after {:?}: {}",
                        delivered.len(),
                        started.elapsed(),
                        describe(&views)
                    );
                }
            };
            if event.at >= started && moved(&event) {
                first.get_or_insert(event.at);
                delivered.insert(event.partition);
                if delivered.len() >= count.max(1) {
                    let first = first.unwrap_or(event.at);
                    return Ok(Trial {
                        accepted_ms: None,
                        first_ms: ms(first - started),
                        all_ms: ms(event.at - started),
                        moved: count,
                    });
                }
            }
        }
        bail!("no partition moved")
    }
}

/// Every partition is owned by exactly one member, the members' counts differ by at most
/// one, and every owned partition has delivered to its owner.
fn settled(views: &[View], partitions: u32) -> bool {
    let n = views.len() as u32;
    let (low, high) = (partitions / n, partitions.div_ceil(n));
    let balanced = views.iter().all(|v| (low..=high).contains(&(v.owned.len() as u32)));
    let total: usize = views.iter().map(|v| v.owned.len()).sum();
    let covered: BTreeSet<u32> = views.iter().flat_map(|v| v.owned.iter().copied()).collect();
    let delivering = views.iter().all(|v| v.delivering == v.owned);
    balanced && total == partitions as usize && covered.len() == partitions as usize && delivering
}

/// The members' views, for an error message.
fn describe(views: &[View]) -> String {
    let one = |(i, v): (usize, &View)| {
        let error = v.last_error.as_deref().map(|e| format!(", last error: {e}")).unwrap_or_default();
        format!("member {i} owns {:?}, delivering {:?}{error}", v.owned, v.delivering)
    };
    views.iter().enumerate().map(one).collect::<Vec<_>>().join("; ")
}

/// A random duration in `[0, max)`: the standard library's randomly keyed hasher as the
/// source (each `RandomState` has fresh keys), which is enough to spread phases.
fn jitter(max: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX).max(1);
    Duration::from_nanos(random % nanos)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The value at quantile `q` of `values` (nearest rank): with fewer than 100 values, p99 is
/// the maximum.
fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The benchmark's result.
struct Summary<'a> {
    args: &'a BenchRebalanceArgs,
    partitions: u32,
    fed: FeedOutcome,
    results: Vec<ScenarioResult>,
}

/// The measures of a scenario: name, description, and how to read one from a trial.
type Measure = (&'static str, &'static str, fn(&Trial) -> Option<f64>);

fn measures(scenario: RebalanceScenario) -> Vec<Measure> {
    let (first, all): (Measure, Measure) = match scenario {
        RebalanceScenario::Join => (
            ("first_ms", "join -> first message of a new partition", |t| Some(t.first_ms)),
            ("all_ms", "join -> all of its share delivering", |t| Some(t.all_ms)),
        ),
        RebalanceScenario::Crash => (
            ("first_ms", "death -> first of its partitions consumed again", |t| Some(t.first_ms)),
            ("all_ms", "death -> all of its partitions consumed again", |t| Some(t.all_ms)),
        ),
        RebalanceScenario::Leave => (
            ("first_ms", "close -> first of its partitions consumed again", |t| Some(t.first_ms)),
            ("all_ms", "close -> all of its partitions consumed again", |t| Some(t.all_ms)),
        ),
    };
    let mut list = Vec::new();
    if scenario == RebalanceScenario::Join {
        list.push((
            "accepted_ms",
            "join -> accepted by the coordinator",
            (|t: &Trial| t.accepted_ms) as fn(&Trial) -> Option<f64>,
        ));
    }
    list.extend([first, all]);
    list
}

impl Summary<'_> {
    fn values(result: &ScenarioResult, pick: fn(&Trial) -> Option<f64>) -> Vec<f64> {
        result.trials.iter().filter_map(pick).collect()
    }

    fn json(&self) -> serde_json::Value {
        let scenarios: Vec<serde_json::Value> = self.results.iter().map(|r| self.scenario_json(r)).collect();
        serde_json::json!({
            "mode": "rebalance",
            "topic": self.args.topic,
            "partitions": self.partitions,
            "session_timeout_ms": self.args.session_timeout.as_millis() as u64,
            "rate": self.args.rate,
            "produced": self.fed.acknowledged,
            "produce_errors": self.fed.errors,
            "produce_skipped": self.fed.skipped,
            "scenarios": scenarios,
        })
    }

    fn scenario_json(&self, result: &ScenarioResult) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        object.insert("scenario".into(), name(result.scenario).into());
        for (key, _, pick) in measures(result.scenario) {
            let values = Self::values(result, pick);
            let stats = serde_json::json!({
                "p50": quantile(&values, 0.5),
                "p99": quantile(&values, 0.99),
                "max": quantile(&values, 1.0),
                "trials": values,
            });
            object.insert(key.into(), stats);
        }
        object.insert("moved".into(), result.trials.iter().map(|t| t.moved).collect::<Vec<_>>().into());
        object.insert("failures".into(), result.failures.clone().into());
        object.into()
    }

    fn plain(&self) -> String {
        let mut out = format!(
            "rebalance: topic {} ({} partitions), session timeout {:?}, background producer {} msgs/s \
             ({} acknowledged, {} failed, {} skipped)\n",
            self.args.topic,
            self.partitions,
            self.args.session_timeout,
            self.args.rate,
            self.fed.acknowledged,
            self.fed.errors,
            self.fed.skipped
        );
        out.push_str(&format!("{:<56} {:>6} {:>9} {:>9} {:>9}\n", "measure (ms)", "trials", "p50", "p99", "max"));
        for result in &self.results {
            for (_, label, pick) in measures(result.scenario) {
                let values = Self::values(result, pick);
                out.push_str(&format!(
                    "{:<56} {:>6} {:>9.0} {:>9.0} {:>9.0}\n",
                    format!("{}: {label}", name(result.scenario)),
                    values.len(),
                    quantile(&values, 0.5),
                    quantile(&values, 0.99),
                    quantile(&values, 1.0)
                ));
            }
        }
        for result in &self.results {
            for (i, trial) in result.trials.iter().enumerate() {
                out.push_str(&format!("{} trial {}: {}\n", name(result.scenario), i + 1, trial.plain()));
            }
            for failure in &result.failures {
                out.push_str(&format!("{} FAILED {failure}\n", name(result.scenario)));
            }
        }
        out
    }
}

#[cfg(test)]
#[path = "bench_rebalance_tests.rs"]
mod tests;
