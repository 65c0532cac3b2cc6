//! A producer of delayed messages: an idempotent producer sending unique values, each its own
//! key, due a random time after it is sent, at a bounded rate with a few in flight; each send
//! recorded at invoke (before `enqueue`) and when its delivery resolves.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use sluice_client::{Client, DelayedId, ProducerRecord, RecordMetadata};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::{Instant, MissedTickBehavior};

use super::cancel::Acked;
use super::{Tracker, lock, now_ms};
use crate::history::{Kind, Op};
use crate::schedule::SplitMix64;
use crate::workload::outcome::{delivery_failure, enqueue_failure, value_name};
use crate::workload::producer::{ENQUEUE_LIMIT, GRACE, IN_FLIGHT, start};
use crate::workload::{History, WorkloadConfig, WorkloadError};

/// Mixed into the seed of each producer's delivery times.
const SALT: u64 = 0x6465_6c61_7973_656e;

/// Runs one producer process until `until`; tells the canceller of every acknowledgement.
pub(super) async fn run(
    client: Client,
    history: History,
    config: Arc<WorkloadConfig>,
    until: Instant,
    tracker: Arc<Mutex<Tracker>>,
    acked: UnboundedSender<Acked>,
) -> Result<(), WorkloadError> {
    let Some(producer) = start(&client, history.process, until).await else { return Ok(()) };
    let topic: Arc<str> = Arc::from(config.topic.as_str());
    let mut rng = SplitMix64::new(config.delay.seed ^ SALT ^ u64::from(history.process).rotate_left(32));
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / config.sends_per_second);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pending = FuturesUnordered::new();
    // Sends whose delivery is awaited: value → delivery time.
    let mut outstanding = BTreeMap::new();
    let mut sent = 0u64;
    let done = |value: String, due_ms: u64, result, outstanding: &mut BTreeMap<String, u64>| {
        outstanding.remove(&value);
        complete(&history, &tracker, &acked, value, due_ms, result)
    };
    loop {
        tokio::select! {
            biased;
            () = tokio::time::sleep_until(until) => break,
            Some((value, due_ms, result)) = pending.next() => done(value, due_ms, result, &mut outstanding)?,
            _ = ticker.tick(), if pending.len() < IN_FLIGHT => {
                let value = value_name(history.process, sent);
                sent += 1;
                let due_ms = now_ms() + rng.between(0, config.delay.max_delay_ms);
                lock(&tracker).invoked(due_ms);
                history.record(Kind::Invoke, delay_send(&value, due_ms, None))?;
                let record =
                    ProducerRecord::new(Arc::clone(&topic), value.clone()).key(value.clone()).deliver_at(due_ms);
                match tokio::time::timeout(ENQUEUE_LIMIT, producer.enqueue(record)).await {
                    Ok(Ok(delivery)) => {
                        outstanding.insert(value.clone(), due_ms);
                        pending.push(async move { (value, due_ms, delivery.await) });
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%value, error = %e, "enqueue failed");
                        let op = delay_send(&value, due_ms, None);
                        history.record_error(enqueue_failure(&e), op, Some(e.to_string()))?;
                    }
                    Err(_) => history.record(Kind::Info, delay_send(&value, due_ms, None))?,
                }
            }
        }
    }
    let grace = Instant::now() + GRACE;
    while let Ok(Some((value, due_ms, result))) = tokio::time::timeout_at(grace, pending.next()).await {
        done(value, due_ms, result, &mut outstanding)?;
    }
    for (value, due_ms) in outstanding {
        history.record(Kind::Info, delay_send(&value, due_ms, None))?;
    }
    // Whatever is still buffered is sent in the background; those sends are recorded unknown.
    drop(producer);
    Ok(())
}

/// Records how a delivery ended; an acknowledged message becomes expected and is offered to
/// the canceller.
fn complete(
    history: &History,
    tracker: &Mutex<Tracker>,
    acked: &UnboundedSender<Acked>,
    value: String,
    due_ms: u64,
    result: sluice_client::Result<RecordMetadata>,
) -> Result<(), WorkloadError> {
    match result {
        Ok(RecordMetadata { delayed_id: Some(id), .. }) => {
            lock(tracker).acked(&value, due_ms);
            history.record(Kind::Ok, delay_send(&value, due_ms, Some(id)))?;
            // The canceller stops before the producers do; then nobody listens.
            let _ = acked.send(Acked { value, id, due_ms });
            Ok(())
        }
        Ok(at) => {
            // Acknowledged without a delayed id: the checker reports the event as malformed.
            tracing::error!(%value, ?at, "a delayed message was acknowledged without a delayed id");
            let op = Op::DelaySend { value, deliver_at_ms: due_ms, partition: Some(at.partition), seq: None };
            history.record(Kind::Ok, op)
        }
        Err(e) => {
            tracing::debug!(%value, error = %e, "delivery failed");
            history.record_error(delivery_failure(&e), delay_send(&value, due_ms, None), Some(e.to_string()))
        }
    }
}

/// A delayed send of `value` due at `due_ms`, acknowledged as `id` if known.
fn delay_send(value: &str, due_ms: u64, id: Option<DelayedId>) -> Op {
    Op::DelaySend {
        value: value.to_owned(),
        deliver_at_ms: due_ms,
        partition: id.map(|id| id.partition),
        seq: id.map(|id| id.seq),
    }
}
