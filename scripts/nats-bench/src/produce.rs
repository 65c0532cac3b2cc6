//! `nats-bench produce`: the load of `sluice bench produce`, against a JetStream stream.
//!
//! Each producer has its own connection and JetStream context, publishes asynchronously and
//! keeps at most `--max-in-flight` messages unacknowledged, preferring to collect a finished
//! acknowledgement over publishing the next message (as the Sluice bench's workers do).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use async_nats::jetstream::context::{ContextBuilder, PublishAckFuture, PublishError};
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use async_nats::jetstream::{self, Context};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::ProduceArgs;
use crate::summary::{Summary, record};

/// Messages a run sends when neither `--count` nor `--duration` is given.
const DEFAULT_COUNT: u64 = 100_000;
/// How long connecting, creating the stream and finding its leader may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the load and returns its summary.
pub async fn run(args: ProduceArgs) -> Result<Summary> {
    let subject = args.subject.clone().unwrap_or_else(|| format!("{}.data", args.stream));
    let url = tokio::time::timeout(SETUP_TIMEOUT, prepare(&args, &subject))
        .await
        .with_context(|| format!("setting up the stream took longer than {SETUP_TIMEOUT:?}"))??;
    let limit = Limit::new(args.count, args.duration);
    limit.stop_on_ctrl_c();
    let payload = Bytes::from((0..args.message_bytes).map(|i| b'a' + (i % 26) as u8).collect::<Vec<u8>>());
    let producers = u64::from(args.producers);
    let mut clients = Vec::with_capacity(args.producers as usize);
    for _ in 0..producers {
        clients.push(connect(&url).await?);
    }
    let progress = Arc::new(Progress::default());
    let ticker = report_progress(Arc::clone(&progress));
    let start = Instant::now();
    let workers: Vec<_> = clients
        .into_iter()
        .zip(0..)
        .map(|(client, i)| {
            // Split the count so the producers send `count` in total.
            let share = limit.count.map(|c| c / producers + u64::from(i < c % producers));
            let jetstream = ContextBuilder::new()
                .timeout(args.ack_timeout)
                .max_ack_inflight(args.max_in_flight as usize)
                .backpressure_on_inflight(true)
                .build(client);
            let worker = Worker {
                jetstream,
                subject: subject.clone(),
                payload: payload.clone(),
                limit: Limit { count: share, ..limit.clone() },
                max_in_flight: args.max_in_flight as usize,
                progress: Arc::clone(&progress),
            };
            tokio::spawn(worker.run())
        })
        .collect();
    let mut summary = Summary::new("produce", "send-to-ack")?;
    for worker in workers {
        summary.merge(worker.await.context("a producer task panicked")??)?;
    }
    ticker.abort();
    summary.seconds = start.elapsed().as_secs_f64();
    if args.delete_stream {
        delete_stream(&args).await?;
    }
    Ok(summary)
}

/// Deletes the stream, so that runs one after another do not fill the disk.
async fn delete_stream(args: &ProduceArgs) -> Result<()> {
    let first = args.servers.first().context("--servers names no server")?;
    let jetstream = jetstream::new(connect(first).await?);
    tokio::time::timeout(SETUP_TIMEOUT, jetstream.delete_stream(&args.stream))
        .await
        .with_context(|| format!("deleting stream {} took longer than {SETUP_TIMEOUT:?}", args.stream))?
        .with_context(|| format!("cannot delete stream {}", args.stream))?;
    eprintln!("deleted stream {}", args.stream);
    Ok(())
}

/// Creates the stream if asked, and returns the URL producers connect to.
async fn prepare(args: &ProduceArgs, subject: &str) -> Result<String> {
    let first = args.servers.first().context("--servers names no server")?;
    let jetstream = jetstream::new(connect(first).await?);
    let mut stream = loop {
        let attempt = if args.create_stream {
            let config = StreamConfig {
                name: args.stream.clone(),
                subjects: vec![subject.to_owned()],
                storage: StorageType::File,
                num_replicas: args.replicas as usize,
                ..StreamConfig::default()
            };
            jetstream
                .get_or_create_stream(config)
                .await
                .with_context(|| format!("cannot create stream {}", args.stream))
        } else {
            jetstream.get_stream(&args.stream).await.with_context(|| format!("cannot find stream {}", args.stream))
        };
        match attempt {
            Ok(stream) => break stream,
            // A cluster that has just started answers "JetStream system temporarily
            // unavailable" until its meta group has a leader: try again, within the caller's
            // SETUP_TIMEOUT.
            Err(e) => {
                eprintln!("{e:#}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let info = stream.info().await.with_context(|| format!("cannot read stream {}", args.stream))?;
    eprintln!(
        "stream {}: {:?} storage, {} replicas, subjects {:?}",
        info.config.name, info.config.storage, info.config.num_replicas, info.config.subjects
    );
    if !args.to_leader {
        return Ok(args.servers.join(","));
    }
    let leader = wait_for_leader(&mut stream).await?;
    for url in &args.servers {
        if connect(url).await?.server_info().server_name == leader {
            eprintln!("stream leader {leader} is at {url}; producers connect there");
            return Ok(url.clone());
        }
    }
    bail!("the stream's leader {leader} is none of --servers {}", args.servers.join(","))
}

/// The name of the server leading the stream, once there is one.
async fn wait_for_leader(stream: &mut jetstream::stream::Stream) -> Result<String> {
    loop {
        let info = stream.info().await.context("cannot read the stream's info")?;
        if let Some(leader) = info.cluster.as_ref().and_then(|c| c.leader.clone()) {
            return Ok(leader);
        }
        // Bounded by the caller's SETUP_TIMEOUT.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn connect(url: &str) -> Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to {url}"))
}

/// One producer.
struct Worker {
    jetstream: Context,
    subject: String,
    payload: Bytes,
    limit: Limit,
    max_in_flight: usize,
    progress: Arc<Progress>,
}

impl Worker {
    async fn run(self) -> Result<Summary> {
        let mut summary = Summary::new("produce", "send-to-ack")?;
        let bytes = self.payload.len() as u64;
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
                Some((latency, result)) = pending.next(), if !pending.is_empty() => match result {
                    Ok(_) => {
                        record(&mut summary.latency_us, latency);
                        summary.messages += 1;
                        summary.bytes += bytes;
                        self.progress.add(1, bytes);
                    }
                    Err(e) => summary.fail(e),
                },
                published = self.jetstream.publish(self.subject.clone(), self.payload.clone()),
                    if more && pending.len() < self.max_in_flight =>
                {
                    offered += 1;
                    match published {
                        Ok(ack) => pending.push(timed(ack, offered_at)),
                        Err(e) => summary.fail(e),
                    }
                }
            }
        }
        Ok(summary)
    }
}

async fn timed(ack: PublishAckFuture, offered_at: Instant) -> (Duration, Result<(), PublishError>) {
    let result = ack.await.map(drop);
    (offered_at.elapsed(), result)
}

/// When a run stops: after a count, at a time, or on Ctrl-C.
#[derive(Debug, Clone, Default)]
struct Limit {
    count: Option<u64>,
    until: Option<Instant>,
    interrupted: Arc<AtomicBool>,
}

impl Limit {
    fn new(count: Option<u64>, duration: Option<Duration>) -> Limit {
        let count = count.or(if duration.is_none() { Some(DEFAULT_COUNT) } else { None });
        Limit { count, until: duration.map(|d| Instant::now() + d), interrupted: Arc::default() }
    }

    /// Stops the run on Ctrl-C, reporting what was measured until then.
    fn stop_on_ctrl_c(&self) {
        let interrupted = Arc::clone(&self.interrupted);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.store(true, Ordering::Relaxed);
            }
        });
    }

    fn allows(&self, done: u64) -> bool {
        !self.interrupted.load(Ordering::Relaxed)
            && self.count.is_none_or(|c| done < c)
            && self.until.is_none_or(|t| Instant::now() < t)
    }
}

/// Counters shared by the workers and the progress line.
#[derive(Default)]
struct Progress {
    messages: AtomicU64,
    bytes: AtomicU64,
}

impl Progress {
    fn add(&self, messages: u64, bytes: u64) {
        self.messages.fetch_add(messages, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Prints a progress line to standard error every second until aborted.
fn report_progress(progress: Arc<Progress>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
        let (mut last_messages, mut last_bytes) = (0, 0);
        loop {
            tick.tick().await;
            let (messages, bytes) = (progress.messages.load(Ordering::Relaxed), progress.bytes.load(Ordering::Relaxed));
            eprintln!(
                "[{:>4}s] {messages} messages acknowledged; last second: {} msgs/s, {:.2} MB/s",
                start.elapsed().as_secs(),
                messages - last_messages,
                (bytes - last_bytes) as f64 / 1e6
            );
            (last_messages, last_bytes) = (messages, bytes);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_or_time() {
        let default = Limit::new(None, None);
        assert!(default.allows(DEFAULT_COUNT - 1) && !default.allows(DEFAULT_COUNT));
        let timed = Limit::new(None, Some(Duration::from_secs(3600)));
        assert!(timed.allows(u64::MAX - 1), "a duration replaces the default count");
        let both = Limit::new(Some(5), Some(Duration::from_secs(3600)));
        assert!(both.allows(4) && !both.allows(5));
        assert!(!Limit::new(None, Some(Duration::ZERO)).allows(0));
        let interrupted = Limit::default();
        interrupted.interrupted.store(true, Ordering::Relaxed);
        assert!(!interrupted.allows(0));
    }
}
