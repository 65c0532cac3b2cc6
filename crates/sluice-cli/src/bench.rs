//! `sluice bench produce|consume`: throughput and latency against a running cluster.
//!
//! - produce: `--producers` producers, each with its own batches and producer id, send
//!   `--message-bytes` values as fast as they are acknowledged, each with at most
//!   `--max-in-flight` unacknowledged if given. Latency is from offering a message (`enqueue`,
//!   buffer waits included) to its acknowledgement.
//! - consume: reads every partition from `--from`. Latency is end to end: the time a message
//!   is received minus its create timestamp (ms resolution), meaningful while a producer writes
//!   at the same time.
//!
//! Both print a progress line to standard error every second and a summary at the end
//! (`--output json` for one JSON object).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use sluice_client::{
    Client, ConsumerConfig, Delivery, ErrorCode, ProducerConfig, ProducerRecord, RecordMetadata, TopicConfig,
};

use crate::args::{BenchCommand, BenchConsumeArgs, BenchProduceArgs, BenchRun, Output};
use crate::args_bench::Payload;
use crate::{print, print_json};

/// Messages a produce benchmark sends when neither `--count` nor `--duration` is given.
const DEFAULT_PRODUCE_COUNT: u64 = 100_000;
/// Latencies above this (an hour, in µs) are clamped: the histogram's upper bound.
pub(crate) const MAX_LATENCY_US: u64 = 3_600_000_000;

pub(crate) async fn run(client: &Client, command: BenchCommand) -> Result<()> {
    let summary = match command {
        BenchCommand::Produce(args) => produce(client, args).await?,
        BenchCommand::Consume(args) => consume(client, args).await?,
        BenchCommand::Commit(args) => return crate::bench_commit::run(client, args).await,
        BenchCommand::Rebalance(args) => return crate::bench_rebalance::run(client, args).await,
        BenchCommand::Delay(args) => return crate::bench_delay::run(client, args).await,
        BenchCommand::Txn(args) => return crate::bench_txn::run(client, args).await,
        BenchCommand::Retry(args) => return crate::bench_retry::run(client, args).await,
    };
    match summary.output {
        Output::Json => print_json(&summary.json())?,
        Output::Plain => print(&summary.plain())?,
    }
    if summary.errors > 0 {
        bail!("{} messages failed; the first error: {}", summary.errors, summary.first_error.unwrap_or_default());
    }
    Ok(())
}

/// Counters shared by the workers and the progress line, and the longest time without a
/// message counted: the stall a client saw (a failover, a rolling restart), which per-second
/// rates and latency percentiles blur.
struct Progress {
    messages: AtomicU64,
    bytes: AtomicU64,
    started: Instant,
    /// µs since `started` of the last message counted.
    last_us: AtomicU64,
    /// The longest gap between two messages counted (or from the start to the first), in µs.
    max_gap_us: AtomicU64,
}

impl Default for Progress {
    fn default() -> Progress {
        Progress {
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            started: Instant::now(),
            last_us: AtomicU64::new(0),
            max_gap_us: AtomicU64::new(0),
        }
    }
}

impl Progress {
    fn add(&self, messages: u64, bytes: u64) {
        self.messages.fetch_add(messages, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let now_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let last_us = self.last_us.fetch_max(now_us, Ordering::Relaxed);
        self.max_gap_us.fetch_max(now_us.saturating_sub(last_us), Ordering::Relaxed);
    }

    /// The longest gap so far, in µs (the first message's wait counts from the start).
    fn max_gap_us(&self) -> u64 {
        self.max_gap_us.load(Ordering::Relaxed)
    }
}

/// Prints a progress line to standard error every second until aborted.
fn report_progress(progress: Arc<Progress>, what: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
        let (mut last_messages, mut last_bytes) = (0, 0);
        loop {
            tick.tick().await;
            let (messages, bytes) = (progress.messages.load(Ordering::Relaxed), progress.bytes.load(Ordering::Relaxed));
            eprintln!(
                "[{:>4}s] {messages} messages {what}; last second: {} msgs/s, {:.2} MB/s",
                start.elapsed().as_secs(),
                messages - last_messages,
                (bytes - last_bytes) as f64 / 1e6
            );
            (last_messages, last_bytes) = (messages, bytes);
        }
    })
}

/// When a benchmark stops: after a count, at a time, or on Ctrl-C.
#[derive(Debug, Clone, Default)]
struct Limit {
    count: Option<u64>,
    until: Option<Instant>,
    interrupted: Arc<AtomicBool>,
}

impl Limit {
    fn new(run: &BenchRun, default_count: Option<u64>) -> Limit {
        let count = run.count.or(if run.duration.is_none() { default_count } else { None });
        Limit { count, until: run.duration.map(|d| Instant::now() + d), interrupted: Arc::default() }
    }

    /// Stops the run on Ctrl-C, reporting what was measured until then.
    fn stop_on_ctrl_c(&self) {
        stop_on_ctrl_c(&self.interrupted);
    }

    fn allows(&self, done: u64) -> bool {
        !self.interrupted.load(Ordering::Relaxed)
            && self.count.is_none_or(|c| done < c)
            && self.until.is_none_or(|t| Instant::now() < t)
    }
}

async fn produce(client: &Client, args: BenchProduceArgs) -> Result<Summary> {
    ensure_topic(client, &args.run.topic, args.partitions, args.replication_factor).await?;
    let config = ProducerConfig {
        linger: Duration::from_millis(args.linger_ms),
        max_batch_bytes: args.batch_bytes,
        acks: args.acks,
        compression: args.compression.compression,
        compression_level: args.compression.level(),
        ..ProducerConfig::default()
    };
    config.validate()?;
    let limit = Limit::new(&args.run, Some(DEFAULT_PRODUCE_COUNT));
    limit.stop_on_ctrl_c();
    let payloads = payloads(args.payload, args.message_bytes);
    let topic: Arc<str> = Arc::from(args.run.topic.as_str());
    let progress = Arc::new(Progress::default());
    let ticker = report_progress(Arc::clone(&progress), "acknowledged");
    let start = Instant::now();
    let workers: Vec<_> = (0..u64::from(args.producers))
        .map(|i| {
            // Split the count so the producers send `count` in total.
            let share =
                limit.count.map(|c| c / u64::from(args.producers) + u64::from(i < c % u64::from(args.producers)));
            let worker = Worker {
                client: client.clone(),
                config: config.clone(),
                records: bench_records(&topic, &payloads, args.tags),
                tagged: args.tags > 0,
                tag_run: args.tag_run,
                limit: Limit { count: share, ..limit.clone() },
                max_in_flight: args.max_in_flight.map_or(usize::MAX, |m| m as usize),
                progress: Arc::clone(&progress),
            };
            tokio::spawn(worker.run())
        })
        .collect();
    let latency = match args.acks {
        sluice_client::Acks::All => "send-to-ack",
        sluice_client::Acks::Leader => "send-to-ack (acks leader)",
        sluice_client::Acks::None => "send-to-sent (acks none)",
    };
    let mut summary = Summary::new("produce", latency, args.run.output.output)?;
    for worker in workers {
        let outcome = worker.await.context("a producer task panicked")??;
        summary.merge(outcome)?;
    }
    ticker.abort();
    summary.seconds = start.elapsed().as_secs_f64();
    summary.bytes = summary.messages * args.message_bytes as u64;
    summary.max_gap_us = Some(progress.max_gap_us());
    Ok(summary)
}

/// Values the producers send in turn: enough different ones that a batch is not one value
/// repeated (which any codec shrinks to nothing).
const PAYLOAD_VARIANTS: usize = 64;

/// The values of `kind`, each `bytes` long.
fn payloads(kind: Payload, bytes: usize) -> Vec<Bytes> {
    match kind {
        Payload::Fill => vec![Bytes::from((0..bytes).map(|i| b'a' + (i % 26) as u8).collect::<Vec<u8>>())],
        Payload::Json => (0..PAYLOAD_VARIANTS).map(|n| json_like(n, bytes)).collect(),
        Payload::Random => {
            let mut state = 0x9e37_79b9_7f4a_7c15_u64;
            (0..PAYLOAD_VARIANTS)
                .map(|_| {
                    // xorshift64*: incompressible enough, and the same in every run.
                    let mut next = || {
                        state ^= state >> 12;
                        state ^= state << 25;
                        state ^= state >> 27;
                        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
                    };
                    Bytes::from((0..bytes).map(|_| next()).collect::<Vec<u8>>())
                })
                .collect()
        }
    }
}

/// A JSON-like event of exactly `bytes` bytes, its fields varying with `n`, as application
/// logs and events look.
fn json_like(n: usize, bytes: usize) -> Bytes {
    let kinds = ["page_view", "click", "purchase", "signup", "logout"];
    let mut s = format!(
        "{{\"event\":\"{}\",\"user_id\":{},\"visit\":\"v-{:08x}\",\"ts\":{},\"path\":\"/products/{}/reviews\",\"ok\":true,\"pad\":\"",
        kinds[n % kinds.len()],
        10_000 + n * 7919 % 90_000,
        n.wrapping_mul(2_654_435_761) as u32,
        1_700_000_000_000u64 + n as u64 * 1_337,
        n % 97
    );
    while s.len() + 2 < bytes {
        s.push_str(["lorem ", "ipsum ", "dolor ", "sit ", "amet "][s.len() % 5]);
    }
    s.truncate(bytes.saturating_sub(2));
    s.push_str("\"}");
    s.truncate(bytes);
    Bytes::from(s)
}

/// The records a producer of the benchmark sends in turn: one per value (untagged), or per
/// value and tag.
fn bench_records(topic: &Arc<str>, payloads: &[Bytes], tags: u32) -> Vec<ProducerRecord> {
    let records = payloads.iter().map(|p| ProducerRecord::new(Arc::clone(topic), p.clone()));
    if tags == 0 {
        return records.collect();
    }
    records.flat_map(|r| (0..tags).map(move |t| r.clone().tag(format!("tag-{t}")))).collect()
}

/// One producer of the produce benchmark.
struct Worker {
    client: Client,
    config: ProducerConfig,
    /// Sent in turn.
    records: Vec<ProducerRecord>,
    /// Whether the records carry tags (and so the `n` property).
    tagged: bool,
    /// Messages in a row with the same tag.
    tag_run: u64,
    limit: Limit,
    /// Offered and not yet acknowledged messages at which the worker stops offering.
    max_in_flight: usize,
    progress: Arc<Progress>,
}

/// What one worker measured.
struct Outcome {
    latency_us: Histogram<u64>,
    acknowledged: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Worker {
    /// The record to send as message `n`: its tag in turn (runs of `tag_run`), and `n` as a
    /// property when tagged.
    fn next_record(&self, n: u64) -> ProducerRecord {
        let record = self.records[(n / self.tag_run % self.records.len() as u64) as usize].clone();
        if self.tagged { record.property("n", n.to_string()) } else { record }
    }

    async fn run(self) -> Result<Outcome> {
        let producer = self.client.producer(self.config.clone()).await?;
        let value_bytes = self.records[0].size_bytes() as u64;
        let mut outcome = Outcome { latency_us: new_histogram()?, acknowledged: 0, errors: 0, first_error: None };
        let mut pending = FuturesUnordered::new();
        let mut offered = 0u64;
        loop {
            let more = self.limit.allows(offered);
            if !more && pending.is_empty() {
                break;
            }
            let offered_at = Instant::now();
            tokio::select! {
                biased;
                Some((latency, result)) = pending.next(), if !pending.is_empty() => {
                    let failed_before = outcome.errors > 0;
                    outcome.count(latency, result, &self.progress, value_bytes);
                    if !failed_before && outcome.errors > 0 {
                        // A failed delivery is final (the producer retried it until its delivery
                        // timeout): every worker stops offering and the run reports it, rather
                        // than measure a cluster that refuses writes.
                        self.limit.interrupted.store(true, Ordering::Relaxed);
                        eprintln!("stopping: {}", outcome.first_error.as_deref().unwrap_or_default());
                    }
                }
                delivery = producer.enqueue(self.next_record(offered)), if more && pending.len() < self.max_in_flight => {
                    pending.push(timed(delivery?, offered_at));
                    offered += 1;
                }
            }
        }
        producer.close().await;
        Ok(outcome)
    }
}

impl Outcome {
    fn count(
        &mut self,
        latency: Duration,
        result: sluice_client::Result<RecordMetadata>,
        progress: &Progress,
        bytes: u64,
    ) {
        match result {
            Ok(_) => {
                self.acknowledged += 1;
                progress.add(1, bytes);
                record_latency(&mut self.latency_us, latency);
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

async fn timed(delivery: Delivery, offered_at: Instant) -> (Duration, sluice_client::Result<RecordMetadata>) {
    let result = delivery.wait().await;
    (offered_at.elapsed(), result)
}

async fn consume(client: &Client, args: BenchConsumeArgs) -> Result<Summary> {
    let filter = args.filter.filter()?;
    let mut consumer = client.consumer(ConsumerConfig { start: args.from, filter, ..ConsumerConfig::default() })?;
    consumer.assign(&args.run.topic, &[]).await?;
    for partition in consumer.assignment() {
        consumer.seek(partition, args.from).await?;
    }
    let limit = Limit::new(&args.run, None);
    limit.stop_on_ctrl_c();
    // Without a count or duration, read what the topic holds now.
    let ends = if limit.count.is_none() && limit.until.is_none() { Some(consumer.end_offsets().await?) } else { None };
    let progress = Arc::new(Progress::default());
    let ticker = report_progress(Arc::clone(&progress), "received");
    let mut summary = Summary::new("consume", "end-to-end", args.run.output.output)?;
    let start = Instant::now();
    loop {
        let caught_up = ends
            .as_ref()
            .is_some_and(|ends| ends.iter().all(|(&p, &end)| consumer.position(p).is_some_and(|pos| pos >= end)));
        if caught_up || !limit.allows(summary.messages) {
            break;
        }
        let records = consumer.poll(Duration::from_millis(200)).await?;
        let now_ms = now_ms();
        for record in records.iter().take(usize::try_from(limit.count.map_or(u64::MAX, |c| c - summary.messages))?) {
            let bytes = (record.value().len() + record.key().map_or(0, |k| k.len())) as u64;
            let latency_us = u64::try_from(now_ms - record.timestamp_ms()).unwrap_or(0).saturating_mul(1000);
            summary.latency_us.saturating_record(latency_us.min(MAX_LATENCY_US));
            summary.messages += 1;
            summary.bytes += bytes;
            progress.add(1, bytes);
        }
    }
    ticker.abort();
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

/// Creates the benchmark topic unless it exists, and waits for its leaders.
pub(crate) async fn ensure_topic(client: &Client, topic: &str, partitions: u32, replication_factor: u32) -> Result<()> {
    let admin = client.admin();
    match admin.create_topic(topic, &TopicConfig::new(partitions, replication_factor)).await {
        Ok(_) => eprintln!("created topic {topic}: {partitions} partitions, replication factor {replication_factor}"),
        Err(e) if e.code() == Some(ErrorCode::TopicExists) => {}
        Err(e) => return Err(e).with_context(|| format!("cannot create the benchmark topic {topic}")),
    }
    admin.wait_for_leaders(topic, Duration::from_secs(15)).await?;
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// A latency histogram in µs, up to [`MAX_LATENCY_US`].
pub(crate) fn new_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).context("cannot create the latency histogram")
}

/// Records `latency` in `histogram`, clamped to its upper bound.
pub(crate) fn record_latency(histogram: &mut Histogram<u64>, latency: Duration) {
    histogram.saturating_record(latency.as_micros().min(u128::from(MAX_LATENCY_US)) as u64);
}

/// The `q` quantile of `histogram` in µs; 0 when it is empty.
pub(crate) fn percentile_us(histogram: &Histogram<u64>, q: f64) -> u64 {
    if histogram.is_empty() { 0 } else { histogram.value_at_quantile(q) }
}

/// A latency histogram's percentiles for `--output json`: p50, p99, p999 and max, in µs.
pub(crate) fn latency_json(latency_us: &Histogram<u64>) -> serde_json::Value {
    serde_json::json!({
        "p50": percentile_us(latency_us, 0.5),
        "p99": percentile_us(latency_us, 0.99),
        "p999": percentile_us(latency_us, 0.999),
        "max": latency_us.max(),
    })
}

/// The same percentiles in ms, for plain output: `p50 1.23  p99 …  p999 …  max …`.
pub(crate) fn latency_ms_line(latency_us: &Histogram<u64>) -> String {
    let ms = |us: u64| us as f64 / 1000.0;
    format!(
        "p50 {:.2}  p99 {:.2}  p999 {:.2}  max {:.2}",
        ms(percentile_us(latency_us, 0.5)),
        ms(percentile_us(latency_us, 0.99)),
        ms(percentile_us(latency_us, 0.999)),
        ms(latency_us.max()),
    )
}

/// Sets `stop` on Ctrl-C, so a run reports what it measured until then.
pub(crate) fn stop_on_ctrl_c(stop: &Arc<AtomicBool>) {
    let stop = Arc::clone(stop);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop.store(true, Ordering::Relaxed);
        }
    });
}

/// A benchmark's result.
struct Summary {
    mode: &'static str,
    latency: &'static str,
    output: Output,
    messages: u64,
    bytes: u64,
    errors: u64,
    first_error: Option<String>,
    seconds: f64,
    latency_us: Histogram<u64>,
    /// Produce only: the longest time without an acknowledgement, in µs.
    max_gap_us: Option<u64>,
}

impl Summary {
    fn new(mode: &'static str, latency: &'static str, output: Output) -> Result<Summary> {
        Ok(Summary {
            mode,
            latency,
            output,
            messages: 0,
            bytes: 0,
            errors: 0,
            first_error: None,
            seconds: 0.0,
            latency_us: new_histogram()?,
            max_gap_us: None,
        })
    }

    fn merge(&mut self, outcome: Outcome) -> Result<()> {
        self.messages += outcome.acknowledged;
        self.errors += outcome.errors;
        if self.first_error.is_none() {
            self.first_error = outcome.first_error;
        }
        self.latency_us.add(&outcome.latency_us).context("cannot merge latency histograms")
    }

    fn rates(&self) -> (f64, f64) {
        let seconds = self.seconds.max(1e-9);
        (self.messages as f64 / seconds, self.bytes as f64 / 1e6 / seconds)
    }

    fn json(&self) -> serde_json::Value {
        let (msgs_per_sec, mb_per_sec) = self.rates();
        let mut json = serde_json::json!({
            "mode": self.mode,
            "messages": self.messages,
            "bytes": self.bytes,
            "errors": self.errors,
            "seconds": self.seconds,
            "msgs_per_sec": msgs_per_sec,
            "mb_per_sec": mb_per_sec,
            "latency": self.latency,
            "latency_us": latency_json(&self.latency_us),
        });
        if let Some(gap) = self.max_gap_us {
            json["max_ack_gap_us"] = gap.into();
        }
        json
    }

    fn plain(&self) -> String {
        let (msgs_per_sec, mb_per_sec) = self.rates();
        let mut plain = format!(
            "{}: {} messages ({:.1} MB) in {:.2} s: {msgs_per_sec:.0} msgs/s, {mb_per_sec:.2} MB/s, {} errors\n\
             {} latency ms: {}\n",
            self.mode,
            self.messages,
            self.bytes as f64 / 1e6,
            self.seconds,
            self.errors,
            self.latency,
            latency_ms_line(&self.latency_us),
        );
        if let Some(gap) = self.max_gap_us {
            plain.push_str(&format!("longest time without an acknowledgement: {:.2} ms\n", gap as f64 / 1000.0));
        }
        plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_reports_rates_and_percentiles() {
        let mut s = Summary::new("produce", "send-to-ack", Output::Json).unwrap();
        for us in 1..=1000 {
            s.latency_us.record(us).unwrap();
        }
        (s.messages, s.bytes, s.seconds) = (1000, 2_000_000, 2.0);
        let v = s.json();
        assert_eq!(
            (v["mode"].as_str(), v["messages"].as_u64(), v["errors"].as_u64()),
            (Some("produce"), Some(1000), Some(0))
        );
        assert_eq!(v["msgs_per_sec"].as_f64(), Some(500.0));
        assert_eq!(v["mb_per_sec"].as_f64(), Some(1.0));
        let p = &v["latency_us"];
        assert_eq!(
            (p["p50"].as_u64(), p["p99"].as_u64(), p["p999"].as_u64(), p["max"].as_u64()),
            (Some(500), Some(990), Some(999), Some(1000))
        );
        let plain = s.plain();
        assert!(plain.contains("500 msgs/s, 1.00 MB/s"), "{plain}");
        assert!(plain.contains("p50 0.50  p99 0.99"), "{plain}");
        assert!(v.get("max_ack_gap_us").is_none(), "only produce runs measure gaps");
        s.max_gap_us = Some(1_234_000);
        assert_eq!(s.json()["max_ack_gap_us"].as_u64(), Some(1_234_000));
        assert!(s.plain().contains("longest time without an acknowledgement: 1234.00 ms"), "{}", s.plain());
    }

    #[test]
    fn progress_keeps_the_longest_gap_between_messages() {
        let progress = Progress::default();
        progress.add(1, 10);
        let first = progress.max_gap_us();
        std::thread::sleep(Duration::from_millis(30));
        progress.add(1, 10);
        progress.add(1, 10);
        assert!(progress.max_gap_us() >= 30_000, "{}", progress.max_gap_us());
        assert!(progress.max_gap_us() >= first);
        assert_eq!(progress.messages.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn an_empty_run_reports_zeros() {
        let s = Summary::new("consume", "end-to-end", Output::Plain).unwrap();
        assert_eq!(s.json()["latency_us"]["p99"].as_u64(), Some(0));
        assert!(s.plain().starts_with("consume: 0 messages"));
    }

    #[test]
    fn limits_count_or_time() {
        let run = |count, duration| BenchRun {
            topic: "t".into(),
            count,
            duration,
            output: crate::args::OutputArg { output: Output::Plain },
        };
        let default = Limit::new(&run(None, None), Some(10));
        assert!(default.allows(9) && !default.allows(10));
        let timed = Limit::new(&run(None, Some(Duration::from_secs(3600))), Some(10));
        assert!(timed.allows(1_000_000), "a duration replaces the default count");
        let expired = Limit { until: Some(Instant::now()), ..Limit::default() };
        assert!(!expired.allows(0));
        let interrupted = Limit::default();
        interrupted.interrupted.store(true, Ordering::Relaxed);
        assert!(!interrupted.allows(0));
        assert!(Limit::new(&run(None, None), None).allows(u64::MAX - 1), "consume without limits reads to the end");
    }
}
