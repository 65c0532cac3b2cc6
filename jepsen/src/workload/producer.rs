//! A producer process: producers of every acknowledgement level (`levels.rs`) sending unique
//! values at a bounded rate, a few in flight, each recorded with its level at invoke (before
//! `enqueue`) and when its delivery resolves.
//!
//! Records are enqueued one after another from this task, in the order they were invoked, so
//! that each producer's per-partition order (which idempotence preserves) is the history's;
//! the `all` sends, the only ones acknowledged with offsets, all go through one producer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use sluice_client::{Client, Delivery, Producer, ProducerConfig, ProducerRecord, RecordMetadata};
use tokio::time::{Instant, MissedTickBehavior};

use super::levels::{Levels, Producers, sdk_acks};
use super::outcome::{delivery_failure, enqueue_failure, value_name};
use super::{ERROR_PAUSE, History, WorkloadConfig, WorkloadError, retry};
use crate::history::{AckLevel, Kind, Op, key_of, tag_of};

/// Sends awaiting their delivery at once: enough to keep up the rate while each waits for
/// replication and fsync, and to keep several batches per partition in flight.
pub(super) const IN_FLIGHT: usize = 32;

/// How long a record may take to be acknowledged, retries included, before it is given up as
/// unknown; short enough that sends invoked during a fault resolve within a run.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest one `enqueue` may wait (for metadata or buffer memory); beyond it the send is
/// recorded as unknown.
pub(super) const ENQUEUE_LIMIT: Duration = Duration::from_secs(5);

/// How long after the end of the run deliveries are still awaited; the rest are unknown.
pub(super) const GRACE: Duration = Duration::from_secs(2);

/// Runs one producer process until `until`.
pub(super) async fn run(
    client: Client,
    history: History,
    config: Arc<WorkloadConfig>,
    until: Instant,
    retry: Option<Arc<Mutex<retry::Tracker>>>,
) -> Result<(), WorkloadError> {
    let keyed = retry.is_some();
    let Some(producers) = Producers::start(&client, history.process, &config, until).await else { return Ok(()) };
    let mut levels = Levels::new(&config, history.process);
    let topic: Arc<str> = Arc::from(config.topic.as_str());
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / config.sends_per_second);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pending = FuturesUnordered::new();
    let mut outstanding = BTreeMap::new();
    let mut sent = 0u64;
    loop {
        tokio::select! {
            biased;
            () = tokio::time::sleep_until(until) => break,
            Some((value, level, result)) = pending.next() => {
                complete(&history, &mut outstanding, (value, level, result), retry.as_deref())?;
            }
            _ = ticker.tick(), if pending.len() < IN_FLIGHT => {
                let value = value_name(history.process, sent);
                sent += 1;
                let level = levels.next();
                if let Some(delivery) = invoke(&history, producers.of(level), &topic, &value, (level, keyed)).await? {
                    outstanding.insert(value.clone(), level);
                    pending.push(async move { (value, level, delivery.await) });
                }
            }
        }
    }
    let grace = Instant::now() + GRACE;
    while let Ok(Some((value, level, result))) = tokio::time::timeout_at(grace, pending.next()).await {
        complete(&history, &mut outstanding, (value, level, result), retry.as_deref())?;
    }
    for (value, level) in outstanding {
        history.record(Kind::Info, send(&value, level, None))?;
    }
    producers.log_failures(history.process);
    // Whatever is still buffered is sent in the background; those sends are recorded unknown.
    drop(producers);
    Ok(())
}

/// Records the invocation of a send of `value` at `level` and enqueues it on `producer`;
/// `None` once its end is recorded, if `enqueue` failed or took too long.
async fn invoke(
    history: &History,
    producer: &Producer,
    topic: &Arc<str>,
    value: &str,
    (level, keyed): (AckLevel, bool),
) -> Result<Option<Delivery>, WorkloadError> {
    history.record(Kind::Invoke, send(value, level, None))?;
    let mut record = ProducerRecord::new(Arc::clone(topic), value.to_owned());
    if let Some(tag) = tag_of(value) {
        record = record.tag(tag);
    }
    if keyed {
        record = record.key(key_of(value));
    }
    match tokio::time::timeout(ENQUEUE_LIMIT, producer.enqueue(record)).await {
        Ok(Ok(delivery)) => return Ok(Some(delivery)),
        Ok(Err(e)) => {
            tracing::debug!(%value, error = %e, "enqueue failed");
            history.record_error(enqueue_failure(&e), send(value, level, None), Some(e.to_string()))?;
        }
        Err(_) => history.record(Kind::Info, send(value, level, None))?,
    }
    Ok(None)
}

/// An idempotent producer acknowledged at `all` (the delay and txn workloads'), once the
/// controller gave it an id; `None` if that did not happen by `until`.
pub(super) async fn start(client: &Client, process: u32, until: Instant) -> Option<Producer> {
    start_at(client, process, AckLevel::All, until).await
}

/// A producer of `level` (idempotent unless `none`, whose batches are never resent: the SDK
/// turns idempotence off there anyway), once the controller gave it an id; `None` if that did
/// not happen by `until`.
pub(super) async fn start_at(client: &Client, process: u32, level: AckLevel, until: Instant) -> Option<Producer> {
    // Every record to the next partition (no sticky turns): every partition, and so every
    // leader a fault may hit, has writes in flight all the time.
    let config = ProducerConfig {
        delivery_timeout: DELIVERY_TIMEOUT,
        idempotence: level != AckLevel::None,
        acks: sdk_acks(level),
        sticky_partition_bytes: 1,
        ..ProducerConfig::default()
    };
    while Instant::now() < until {
        match tokio::time::timeout_at(until, client.producer(config.clone())).await {
            Ok(Ok(producer)) => return Some(producer),
            Ok(Err(e)) => {
                tracing::warn!(process, acks = level.name(), error = %e, "creating a producer failed; retrying");
            }
            Err(_) => return None,
        }
        tokio::time::sleep(ERROR_PAUSE).await;
    }
    None
}

/// Records how a delivery ended (and tells the retry workload's tracker of an acknowledged
/// one). For a `none` send, `ok` means it went on its way.
fn complete(
    history: &History,
    outstanding: &mut BTreeMap<String, AckLevel>,
    (value, level, result): (String, AckLevel, sluice_client::Result<RecordMetadata>),
    tracker: Option<&Mutex<retry::Tracker>>,
) -> Result<(), WorkloadError> {
    outstanding.remove(&value);
    match result {
        Ok(at) => {
            if let Some(tracker) = tracker {
                retry::lock(tracker).acked(&value);
            }
            history.record(Kind::Ok, send(&value, level, Some(at)))
        }
        Err(e) => {
            tracing::debug!(%value, error = %e, "delivery failed");
            history.record_error(delivery_failure(&e), send(&value, level, None), Some(e.to_string()))
        }
    }
}

/// A send of `value` at `level`, acknowledged `at` if known. The offset only if the SDK gave
/// one: `leader` and `none` acks come with `RecordMetadata::NO_OFFSET`, and an `all` ack
/// without one is a fault the checker reports (`malformed`) rather than an offset to compare.
fn send(value: &str, level: AckLevel, at: Option<RecordMetadata>) -> Op {
    Op::Send {
        value: value.to_owned(),
        partition: at.map(|m| m.partition),
        offset: at.filter(RecordMetadata::has_offset).map(|m| m.offset),
        acks: level,
    }
}
