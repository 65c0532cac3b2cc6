//! `sluice bench txn`: what a transaction costs against a plain produce, in one run, on two
//! topics with the same settings (PREFIX-txn for the transactions, PREFIX-plain for the plain
//! producer).
//!
//! - latency: `--transactions` N plain sends (`Producer::send`, one message, linger 0, each
//!   awaited before the next), then N transactions writing one message to each of 1, 4 and 8
//!   partitions (begin, sends, commit, the next once the commit returned), spread over
//!   `--producers` producers with distinct ids. A transaction's latency is from `begin` to the
//!   return of `commit`: it adds its partitions at the coordinator, writes them, and commits
//!   (decision made durable, then a marker on every partition).
//! - throughput: transactions of `--records-per-txn` messages (partitions chosen by the
//!   sticky partitioner), against plain producers sending as fast as they are acknowledged
//!   (as `bench produce`); both sides over `--seconds` (default 10 s) or `--messages`, with
//!   the same number of producers. The ratio is transactional / plain.
//! - read: PREFIX-txn from its earliest offset to its end, once `read_committed` and once
//!   `read_uncommitted`.
//!
//! Every loop is bounded: by its count, by a phase time limit (reported as incomplete when it
//! was reached), and by Ctrl-C (what was measured until then is reported). A failed send or
//! transaction stops its producer (after aborting what it had open) and makes the run's
//! status 1. Phase lines go to standard error, the report to standard output (`--output
//! json`: one JSON object).

use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use sluice_client::Client;

use crate::args::{BenchTxnArgs, Output};
use crate::bench::{ensure_topic, new_histogram, record_latency, stop_on_ctrl_c};
use crate::{print, print_json};

mod latency;
mod read;
mod report;
#[cfg(test)]
mod tests;
mod throughput;

use self::report::Report;

/// How many partitions the latency transactions write (fewer if the topic has fewer).
const WIDTHS: [u32; 3] = [1, 4, 8];
/// Throughput: how long each side sends when neither --seconds nor --messages is given.
const DEFAULT_SECONDS: Duration = Duration::from_secs(10);
/// A latency phase (N sends, or N transactions of one width) stops after this long.
const LATENCY_PHASE_LIMIT: Duration = Duration::from_secs(300);
/// Throughput with --messages: each side stops after this long.
const MESSAGES_PHASE_LIMIT: Duration = Duration::from_secs(600);
/// A read stops after this long.
const READ_LIMIT: Duration = Duration::from_secs(300);

/// What every phase needs.
#[derive(Clone)]
pub(super) struct Ctx {
    client: Client,
    /// `--topic`: names the topics and the transactional ids.
    prefix: String,
    txn_topic: Arc<str>,
    plain_topic: Arc<str>,
    /// Partitions of the two topics (the fewer, if they differ).
    partitions: u32,
    producers: u32,
    value: Bytes,
    /// Set on Ctrl-C.
    stop: Arc<AtomicBool>,
}

impl Ctx {
    /// The transactional id of producer `index` in phase `phase`: stable across runs, so
    /// repeated runs do not pile up ids at the coordinators (a run's producer fences the one
    /// of an earlier run).
    fn transactional_id(&self, phase: &str, index: u32) -> String {
        format!("{}-{phase}-{index}", self.prefix)
    }

    /// Whether a loop may go on: no Ctrl-C, and `deadline` not reached.
    fn running(&self, deadline: Instant) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < deadline
    }
}

pub(crate) async fn run(client: &Client, args: BenchTxnArgs) -> Result<()> {
    let ctx = setup(client, &args).await?;
    let widths = widths(ctx.partitions);
    if widths.len() < WIDTHS.len() {
        eprintln!("warning: the topics have {} partitions: transactions write at most that many", ctx.partitions);
    }
    let latency = latency::run(&ctx, &widths, args.transactions).await?;
    // After Ctrl-C, what was measured is reported and nothing more is started.
    let throughput = if ctx.stop.load(Ordering::Relaxed) {
        None
    } else {
        Some(throughput::run(&ctx, args.records_per_txn, limit(&args)).await?)
    };
    let reads = read::run(&ctx).await?;
    let report = Report {
        txn_topic: ctx.txn_topic.to_string(),
        plain_topic: ctx.plain_topic.to_string(),
        partitions: ctx.partitions,
        producers: ctx.producers,
        message_bytes: args.message_bytes,
        transactions: args.transactions,
        latency,
        throughput,
        reads,
    };
    match args.output.output {
        Output::Json => print_json(&report.json())?,
        Output::Plain => print(&report.plain())?,
    }
    let failures = report.failures();
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}

/// Creates the topics if missing; the context of the run.
async fn setup(client: &Client, args: &BenchTxnArgs) -> Result<Ctx> {
    let (txn_topic, plain_topic) = (format!("{}-txn", args.topic), format!("{}-plain", args.topic));
    let mut partitions = u32::MAX;
    for topic in [&txn_topic, &plain_topic] {
        ensure_topic(client, topic, args.partitions, args.replication_factor).await?;
        let info = client.admin().wait_for_leaders(topic, Duration::from_secs(15)).await?;
        partitions = partitions.min(u32::try_from(info.partitions.len()).context("too many partitions")?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_ctrl_c(&stop);
    Ok(Ctx {
        client: client.clone(),
        prefix: args.topic.clone(),
        txn_topic: Arc::from(txn_topic),
        plain_topic: Arc::from(plain_topic),
        partitions: partitions.max(1),
        producers: args.producers,
        value: value(args.message_bytes as usize),
        stop,
    })
}

/// The widths of the latency transactions on a topic of `partitions` partitions.
fn widths(partitions: u32) -> Vec<u32> {
    let mut widths: Vec<u32> = WIDTHS.iter().map(|&w| w.min(partitions)).collect();
    widths.dedup();
    widths
}

/// A value of `bytes` bytes.
fn value(bytes: usize) -> Bytes {
    Bytes::from((0..bytes).map(|i| b'a' + (i % 26) as u8).collect::<Vec<u8>>())
}

/// When the throughput sides stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Limit {
    /// Each side sends for this long.
    Seconds(Duration),
    /// Each side sends this many messages.
    Messages(u64),
}

fn limit(args: &BenchTxnArgs) -> Limit {
    match (args.messages, args.seconds) {
        (Some(messages), _) => Limit::Messages(messages),
        (None, seconds) => Limit::Seconds(seconds.unwrap_or(DEFAULT_SECONDS)),
    }
}

/// Worker `index`'s part of `total` when `workers` share it (the first ones take one more).
fn share(total: u64, workers: u32, index: u32) -> u64 {
    total / u64::from(workers) + u64::from(u64::from(index) < total % u64::from(workers))
}

/// What a phase, or one worker of it, measured.
pub(super) struct Tally {
    /// Operations that succeeded: sends, transactions, or polls.
    ops: u64,
    /// Messages acknowledged, committed, or read.
    messages: u64,
    bytes: u64,
    errors: u64,
    first_error: Option<String>,
    /// Per operation, in µs.
    latency_us: Histogram<u64>,
    seconds: f64,
    /// Whether the phase did all it was to do (its count, or reading to the end) before a
    /// time limit or Ctrl-C stopped it.
    complete: bool,
}

impl Tally {
    fn new() -> Result<Tally> {
        Ok(Tally {
            ops: 0,
            messages: 0,
            bytes: 0,
            errors: 0,
            first_error: None,
            latency_us: new_histogram()?,
            seconds: 0.0,
            complete: false,
        })
    }

    /// One operation of `messages` messages that took from `started` until now.
    fn done(&mut self, started: Instant, messages: u64) {
        record_latency(&mut self.latency_us, started.elapsed());
        self.ops += 1;
        self.messages += messages;
    }

    fn fail(&mut self, error: impl Display) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| error.to_string());
    }

    fn merge(&mut self, other: Tally) -> Result<()> {
        self.ops += other.ops;
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latency_us.add(&other.latency_us).context("cannot merge latency histograms")
    }

    /// Messages per second.
    fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds.max(1e-9)
    }
}

/// Waits for a phase's workers, started at `started`, and sums what they measured; the phase
/// is complete if they did `expected` operations between them (`None`: unbounded by count).
async fn gather(
    workers: Vec<tokio::task::JoinHandle<Result<Tally>>>,
    started: Instant,
    expected: Option<u64>,
) -> Result<Tally> {
    let mut total = Tally::new()?;
    for worker in workers {
        total.merge(worker.await.context("a benchmark task panicked")??)?;
    }
    total.seconds = started.elapsed().as_secs_f64();
    total.complete = expected.is_none_or(|n| total.ops >= n);
    Ok(total)
}
