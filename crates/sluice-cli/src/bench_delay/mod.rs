//! `sluice bench delay`: delayed messages (`ProducerRecord::deliver_at`) under load.
//!
//! - steady: `--rate` delayed messages per second for `--duration`, each due `--delay` after
//!   it is sent. A reader on every partition of the topic measures each released message's
//!   lateness: its receive time minus its due time (the `sluice.deliver_at` property), both
//!   wall-clock times, so the brokers must run on this machine (or on synchronised clocks).
//!   Also: releases per second, and the acknowledgement latency of the delayed sends. The run
//!   ends once every acknowledged message has been read, or `--duration` + delay + 60 s after
//!   it started (what is still unread is reported missing).
//! - burst: `--count` delayed messages all due at one time T, sent as fast as they are
//!   acknowledged; then the run waits for T and measures the drain: from T until the last one
//!   is read. Meanwhile a plain producer sends `--plain-rate` messages per second to
//!   `--plain-topic` (at most `--plain-max-in-flight` unacknowledged): its acknowledgement
//!   latency over `--baseline` just before T (the burst sent, nothing due yet) and during the
//!   drain, by when each message was offered, and their ratio.
//! - pending: `--count` delayed messages due `--delay` (1 h) ahead, as fast as they are
//!   acknowledged: the send rate, and how many the topic has pending before and after.
//!
//! Every delayed message's value starts with the run's id (16 hex digits), so the reader
//! counts only this run's messages on a topic that may hold others'; the rest is filler.
//! Sends are windowed as in `bench produce`: `enqueue`, with the deliveries awaited as they
//! finish. A failed delayed send stops the run (as `bench produce` does).
//!
//! A progress line goes to standard error every second, and a summary at the end
//! (`--output json` for one JSON object). The status is 1 if a send failed, a message is
//! missing, or one was read before its due time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use sluice_client::{Client, Consumer, ConsumerConfig, ProducerConfig, ProducerRecord, RecordMetadata, SeekTo};

use crate::args::{BenchDelayArgs, DelayBenchMode, Output};
use crate::bench::{ensure_topic, latency_json, latency_ms_line, new_histogram, percentile_us, stop_on_ctrl_c};
use crate::{print, print_json};

mod load;
mod report;
#[cfg(test)]
mod tests;

use self::load::*;
use self::report::*;

/// The property a released message carries its due time in, ms since the Unix epoch
/// (`sluice_common::record::DELIVER_AT_PROPERTY`).
const DELIVER_AT_PROPERTY: &str = "sluice.deliver_at";
/// Steady: the default `--delay`.
const DEFAULT_STEADY_DELAY: Duration = Duration::from_secs(5);
/// Pending: the default `--delay`.
const DEFAULT_PENDING_DELAY: Duration = Duration::from_secs(3600);
/// Burst: the default `--count`.
const DEFAULT_BURST_COUNT: u64 = 1_000_000;
/// Pending: the default `--count`.
const DEFAULT_PENDING_COUNT: u64 = 10_000_000;
/// Burst: the send rate the default `--delay` leaves time for.
const BURST_PLANNED_RATE: u64 = 10_000;
/// Burst: the default `--delay` leaves this much beyond sending and the baseline.
const BURST_MARGIN: Duration = Duration::from_secs(5);
/// Steady: a sender that fell behind the schedule stops this long after --duration.
const STEADY_OVERRUN: Duration = Duration::from_secs(1);
/// Steady: the reader waits this long past the last due time for what is unread.
const RECEIVE_GRACE: Duration = Duration::from_secs(60);
/// Burst: the drain may take this long, plus a second per [`DRAIN_RATE_FLOOR`] messages.
const DRAIN_GRACE: Duration = Duration::from_secs(60);
/// Burst: the slowest release rate the drain bound allows for, in messages per second.
const DRAIN_RATE_FLOOR: u64 = 10_000;
/// Pending: how long the listing may take to count every acknowledged message.
const PENDING_SETTLE: Duration = Duration::from_secs(10);
/// Bytes of the run id each delayed value starts with.
const RUN_ID_BYTES: usize = 16;
/// How long the reader's poll waits for records.
const POLL_WAIT: Duration = Duration::from_millis(200);

/// Phases of a burst, as the plain producer files its acknowledgements.
const PHASE_WARMUP: usize = 0;
const PHASE_BASELINE: usize = 1;
const PHASE_DRAIN: usize = 2;
const PHASE_AFTER: usize = 3;
const PHASES: usize = 4;

pub(crate) async fn run(client: &Client, args: BenchDelayArgs) -> Result<()> {
    let report = match args.mode {
        DelayBenchMode::Steady => steady(client, &args).await?,
        DelayBenchMode::Burst => Box::pin(burst(client, &args)).await?,
        DelayBenchMode::Pending => pending(client, &args).await?,
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

/// The topic of the delayed messages: `--topic`, or one per mode.
fn topic_name(args: &BenchDelayArgs) -> String {
    args.topic.clone().unwrap_or_else(|| format!("sluice-bench-delay-{}", mode_name(args.mode)))
}

fn mode_name(mode: DelayBenchMode) -> &'static str {
    match mode {
        DelayBenchMode::Steady => "steady",
        DelayBenchMode::Burst => "burst",
        DelayBenchMode::Pending => "pending",
    }
}

/// Steady: the messages `rate` per second for `duration` come to.
fn steady_count(rate: u32, duration: Duration) -> u64 {
    (u128::from(rate) * duration.as_millis()).div_ceil(1000) as u64
}

/// Burst: the default time from the start of sending until T.
fn default_burst_lead(count: u64, baseline: Duration) -> Duration {
    Duration::from_millis(count.saturating_mul(1000).div_ceil(BURST_PLANNED_RATE)) + baseline + BURST_MARGIN
}

/// Burst: how long after T the reader waits for the last message.
fn drain_timeout(count: u64) -> Duration {
    DRAIN_GRACE + Duration::from_secs(count.div_ceil(DRAIN_RATE_FLOOR))
}

/// Paced sending: how many of the messages sent at `rate` per second from time zero are due
/// by `elapsed` (the first at zero).
fn scheduled(elapsed: Duration, rate: u32) -> u64 {
    (elapsed.as_nanos() * u128::from(rate) / 1_000_000_000) as u64 + 1
}

/// Paced sending: when message `n` (from 0) is due to be sent.
fn slot(n: u64, rate: u32) -> Duration {
    Duration::from_nanos((u128::from(n) * 1_000_000_000).div_ceil(u128::from(rate)) as u64)
}

/// Microseconds since the Unix epoch.
fn now_us() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX)
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    u64::try_from(now_us() / 1000).unwrap_or(0)
}

/// A value of `bytes` bytes starting with the 16 hex digits of `run_id`.
fn payload(run_id: u64, bytes: usize) -> Bytes {
    let mut value = format!("{run_id:016x}").into_bytes();
    value.extend((0..bytes.saturating_sub(RUN_ID_BYTES)).map(|i| b'a' + (i % 26) as u8));
    Bytes::from(value)
}

/// A released message's due time from its properties.
fn deliver_at_ms<'a>(mut properties: impl Iterator<Item = (&'a str, &'a str)>) -> Option<u64> {
    properties.find(|(name, _)| *name == DELIVER_AT_PROPERTY).and_then(|(_, value)| value.parse().ok())
}

/// What the run needs for its delayed messages: the record, and the marker the reader
/// recognises them by.
fn delayed_record(topic: &str, value_bytes: u32) -> (ProducerRecord, Bytes) {
    let run_id = u64::try_from(now_us()).unwrap_or(0);
    let value = payload(run_id, value_bytes as usize);
    let marker = value.slice(..RUN_ID_BYTES);
    (ProducerRecord::new(Arc::<str>::from(topic), value), marker)
}

fn max_in_flight(args: &BenchDelayArgs) -> usize {
    args.max_in_flight.map_or(usize::MAX, |m| m as usize)
}

async fn steady(client: &Client, args: &BenchDelayArgs) -> Result<Report> {
    let topic = topic_name(args);
    ensure_topic(client, &topic, args.partitions, args.replication_factor).await?;
    let delay = args.delay.unwrap_or(DEFAULT_STEADY_DELAY);
    let planned = steady_count(args.rate, args.duration);
    let (record, marker) = delayed_record(&topic, args.value_bytes);
    let interrupted = Arc::new(AtomicBool::new(false));
    stop_on_ctrl_c(&interrupted);
    let progress = Arc::new(Progress::default());
    let start = Instant::now();
    let deadline = start + args.duration + delay + RECEIVE_GRACE;
    let mut reader = Reader::open(client, &topic, marker, deadline, Arc::clone(&progress)).await?;
    reader.stop = Arc::clone(&interrupted);
    let reader = ReaderTask::spawn(reader);
    eprintln!(
        "sending {planned} delayed messages to {topic}: {}/s for {:?}, each due {delay:?} after it is sent",
        args.rate, args.duration
    );
    let ticker = report_progress(Arc::clone(&progress));
    let sender = Sender {
        client: client.clone(),
        record,
        due: Some(Due::After(u64::try_from(delay.as_millis())?)),
        count: planned,
        rate: Some(args.rate),
        // The schedule ends just before --duration; a sender that fell behind stops soon after.
        run_for: Some(args.duration + STEADY_OVERRUN),
        max_in_flight: max_in_flight(args),
        stop: Arc::clone(&interrupted),
        progress: Some(Arc::clone(&progress)),
        phase: None,
    };
    let sent = sender.run().await;
    if sent.is_err() {
        interrupted.store(true, Ordering::Relaxed);
    }
    let received = reader.finish(sent.as_ref().map_or(0, |s| s.acknowledged)).await;
    ticker.abort();
    Ok(Report::Steady(SteadyReport {
        topic,
        rate: args.rate,
        duration: args.duration,
        delay,
        planned,
        sent: sent?,
        received: received?,
    }))
}

async fn burst(client: &Client, args: &BenchDelayArgs) -> Result<Report> {
    let topic = topic_name(args);
    ensure_topic(client, &topic, args.partitions, args.replication_factor).await?;
    ensure_topic(client, &args.plain_topic, args.partitions, args.replication_factor).await?;
    let count = args.count.unwrap_or(DEFAULT_BURST_COUNT);
    let lead = args.delay.unwrap_or_else(|| default_burst_lead(count, args.baseline));
    let (record, marker) = delayed_record(&topic, args.value_bytes);
    let interrupted = Arc::new(AtomicBool::new(false));
    stop_on_ctrl_c(&interrupted);
    let progress = Arc::new(Progress::default());
    // Placeholder deadline: set once T is known, below.
    let mut reader = Reader::open(client, &topic, marker, Instant::now(), Arc::clone(&progress)).await?;
    let due_ms = now_ms() + u64::try_from(lead.as_millis())?;
    let due = Instant::now() + lead;
    reader.deadline = due + drain_timeout(count);
    reader.stop = Arc::clone(&interrupted);
    let reader = ReaderTask::spawn(reader);

    let phase = Arc::new(AtomicUsize::new(PHASE_WARMUP));
    let plain_stop = Arc::new(AtomicBool::new(false));
    let plain = Sender {
        client: client.clone(),
        record: ProducerRecord::new(Arc::<str>::from(args.plain_topic.as_str()), payload(0, args.value_bytes as usize)),
        due: None,
        count: u64::MAX,
        rate: Some(args.plain_rate),
        run_for: None,
        max_in_flight: args.plain_max_in_flight as usize,
        stop: Arc::clone(&plain_stop),
        progress: None,
        phase: Some(Arc::clone(&phase)),
    };
    let plain = tokio::spawn(plain.run());

    eprintln!(
        "sending {count} delayed messages to {topic}, all due at T = {due_ms} ({lead:?} from now); plain producer: {}/s to {}",
        args.plain_rate, args.plain_topic
    );
    let ticker = report_progress(Arc::clone(&progress));
    let sender = Sender {
        client: client.clone(),
        record,
        due: Some(Due::At(due_ms)),
        count,
        rate: None,
        run_for: None,
        max_in_flight: max_in_flight(args),
        stop: Arc::clone(&interrupted),
        progress: Some(Arc::clone(&progress)),
        phase: None,
    };
    let sent = sender.run().await;
    let sent_at = Instant::now();
    let slack = due.saturating_duration_since(sent_at);
    if sent.is_err() {
        interrupted.store(true, Ordering::Relaxed);
    } else if slack < args.baseline {
        eprintln!(
            "warning: sending ended {slack:?} before T, so the baseline is shorter than {:?}; give a longer --delay",
            args.baseline
        );
    }
    let baseline_from = sent_at.max(due.checked_sub(args.baseline).unwrap_or(due));
    wait_until(baseline_from, &interrupted).await;
    phase.store(PHASE_BASELINE, Ordering::Relaxed);
    let baseline_started = Instant::now();
    wait_until(due, &interrupted).await;
    phase.store(PHASE_DRAIN, Ordering::Relaxed);
    let baseline_seconds = baseline_started.elapsed().as_secs_f64();
    eprintln!("T reached: draining");
    let received = reader.finish(sent.as_ref().map_or(0, |s| s.acknowledged)).await;
    phase.store(PHASE_AFTER, Ordering::Relaxed);
    plain_stop.store(true, Ordering::Relaxed);
    let plain = plain.await.context("the plain producer panicked")?;
    ticker.abort();
    let received = received?;
    let since_due = |at: Option<Instant>| at.map(|at| at.saturating_duration_since(due).as_secs_f64() * 1000.0);
    Ok(Report::Burst(BurstReport {
        topic,
        count,
        due_ms,
        slack_seconds: slack.as_secs_f64(),
        first_release_ms: since_due(received.first),
        drain_ms: since_due(received.last),
        sent: sent?,
        received,
        plain_topic: args.plain_topic.clone(),
        plain_rate: args.plain_rate,
        baseline_seconds,
        plain: plain?,
    }))
}

async fn pending(client: &Client, args: &BenchDelayArgs) -> Result<Report> {
    let topic = topic_name(args);
    ensure_topic(client, &topic, args.partitions, args.replication_factor).await?;
    let count = args.count.unwrap_or(DEFAULT_PENDING_COUNT);
    let delay = args.delay.unwrap_or(DEFAULT_PENDING_DELAY);
    let admin = client.admin();
    let pending_before = admin.list_delayed(&topic, 1).await?.pending;
    let (record, _) = delayed_record(&topic, args.value_bytes);
    let interrupted = Arc::new(AtomicBool::new(false));
    stop_on_ctrl_c(&interrupted);
    let progress = Arc::new(Progress::default());
    eprintln!(
        "sending {count} delayed messages to {topic}, each due {delay:?} after it is sent ({pending_before} pending before)"
    );
    let ticker = report_progress(Arc::clone(&progress));
    let sender = Sender {
        client: client.clone(),
        record,
        due: Some(Due::After(u64::try_from(delay.as_millis())?)),
        count,
        rate: None,
        run_for: None,
        max_in_flight: max_in_flight(args),
        stop: interrupted,
        progress: Some(progress),
        phase: None,
    };
    let sent = sender.run().await?;
    ticker.abort();
    // The listing counts what the leaders have applied; wait briefly for it to catch up.
    let settle_by = Instant::now() + PENDING_SETTLE;
    let pending_after = loop {
        let pending = admin.list_delayed(&topic, 1).await?.pending;
        if pending >= pending_before + sent.acknowledged || Instant::now() >= settle_by {
            break pending;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    Ok(Report::Pending(PendingReport {
        topic,
        count,
        delay,
        value_bytes: args.value_bytes,
        sent,
        pending_before,
        pending_after,
    }))
}
