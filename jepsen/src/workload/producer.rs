//! A producer process: an idempotent producer sending unique values at a bounded rate, a few
//! in flight, each recorded at invoke (before `enqueue`) and when its delivery resolves.
//!
//! Records are enqueued one after another from this task, in the order they were invoked, so
//! that the producer's per-partition order (which idempotence preserves) is the history's.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use sluice_client::{Client, Producer, ProducerConfig, ProducerRecord, RecordMetadata};
use tokio::time::{Instant, MissedTickBehavior};

use super::outcome::{delivery_failure, enqueue_failure, value_name};
use super::{ERROR_PAUSE, History, WorkloadConfig, WorkloadError};
use crate::history::{Kind, Op, tag_of};

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
) -> Result<(), WorkloadError> {
    let Some(producer) = start(&client, history.process, until).await else { return Ok(()) };
    let topic: Arc<str> = Arc::from(config.topic.as_str());
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / config.sends_per_second);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pending = FuturesUnordered::new();
    let mut outstanding = BTreeSet::new();
    let mut sent = 0u64;
    loop {
        tokio::select! {
            biased;
            () = tokio::time::sleep_until(until) => break,
            Some((value, result)) = pending.next() => complete(&history, &mut outstanding, value, result)?,
            _ = ticker.tick(), if pending.len() < IN_FLIGHT => {
                let value = value_name(history.process, sent);
                sent += 1;
                history.record(Kind::Invoke, send(&value, None))?;
                let mut record = ProducerRecord::new(Arc::clone(&topic), value.clone());
                if let Some(tag) = tag_of(&value) {
                    record = record.tag(tag);
                }
                match tokio::time::timeout(ENQUEUE_LIMIT, producer.enqueue(record)).await {
                    Ok(Ok(delivery)) => {
                        outstanding.insert(value.clone());
                        pending.push(async move { (value, delivery.await) });
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%value, error = %e, "enqueue failed");
                        history.record_error(enqueue_failure(&e), send(&value, None), Some(e.to_string()))?;
                    }
                    Err(_) => history.record(Kind::Info, send(&value, None))?,
                }
            }
        }
    }
    let grace = Instant::now() + GRACE;
    while let Ok(Some((value, result))) = tokio::time::timeout_at(grace, pending.next()).await {
        complete(&history, &mut outstanding, value, result)?;
    }
    for value in outstanding {
        history.record(Kind::Info, send(&value, None))?;
    }
    // Whatever is still buffered is sent in the background; those sends are recorded unknown.
    drop(producer);
    Ok(())
}

/// The producer, once the controller gave it an id; `None` if that did not happen by `until`.
pub(super) async fn start(client: &Client, process: u32, until: Instant) -> Option<Producer> {
    // Every record to the next partition (no sticky turns): every partition, and so every
    // leader a fault may hit, has writes in flight all the time.
    let config = ProducerConfig {
        delivery_timeout: DELIVERY_TIMEOUT,
        idempotence: true,
        sticky_partition_bytes: 1,
        ..ProducerConfig::default()
    };
    while Instant::now() < until {
        match tokio::time::timeout_at(until, client.producer(config.clone())).await {
            Ok(Ok(producer)) => return Some(producer),
            Ok(Err(e)) => tracing::warn!(process, error = %e, "creating a producer failed; retrying"),
            Err(_) => return None,
        }
        tokio::time::sleep(ERROR_PAUSE).await;
    }
    None
}

/// Records how a delivery ended.
fn complete(
    history: &History,
    outstanding: &mut BTreeSet<String>,
    value: String,
    result: sluice_client::Result<RecordMetadata>,
) -> Result<(), WorkloadError> {
    outstanding.remove(&value);
    match result {
        Ok(at) => history.record(Kind::Ok, send(&value, Some(at))),
        Err(e) => {
            tracing::debug!(%value, error = %e, "delivery failed");
            history.record_error(delivery_failure(&e), send(&value, None), Some(e.to_string()))
        }
    }
}

/// A send of `value`, acknowledged `at` if known.
fn send(value: &str, at: Option<RecordMetadata>) -> Op {
    Op::Send { value: value.to_owned(), partition: at.map(|m| m.partition), offset: at.map(|m| m.offset) }
}
