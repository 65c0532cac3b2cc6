//! The canceller: of the acknowledged messages not yet due, picks a share at random and
//! cancels each at a random time from now until [`LATE_MS`] after it is due, so that most
//! cancels come before the release and some race it. Each cancel is recorded at invoke and
//! at its end: `ok` with the partition's answer, `info` for any error or timeout (a cancel
//! the client retried may have been carried out by an earlier attempt, whatever the last one
//! answered).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use sluice_client::{CancelOutcome, Client, DelayedId};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use super::{Tracker, instant_at, lock, now_ms};
use crate::history::{CancelResult, Kind, Op};
use crate::schedule::SplitMix64;
use crate::workload::producer::{GRACE, start};
use crate::workload::{History, WorkloadConfig, WorkloadError};

/// Cancels awaiting their answer at once.
const IN_FLIGHT: usize = 64;

/// The longest one cancel may take (the client retries within its operation timeout, 10 s);
/// beyond it, the cancel is recorded as unknown.
const CANCEL_LIMIT: Duration = Duration::from_secs(15);

/// A cancel may be scheduled up to this long after its message is due.
const LATE_MS: u64 = 500;

/// Mixed into the seed of the canceller's choices.
const SALT: u64 = 0x6361_6e63_656c_6c73;

/// An acknowledged delayed message, as a producer tells the canceller of it.
#[derive(Debug, Clone)]
pub(super) struct Acked {
    /// Its value.
    pub value: String,
    /// Its id.
    pub id: DelayedId,
    /// When it is due, ms since the Unix epoch.
    pub due_ms: u64,
}

/// Runs the canceller until `until`, taking acknowledged messages from `acked`.
pub(super) async fn run(
    client: Client,
    history: History,
    config: Arc<WorkloadConfig>,
    until: Instant,
    tracker: Arc<Mutex<Tracker>>,
    mut acked: UnboundedReceiver<Acked>,
) -> Result<(), WorkloadError> {
    let Some(producer) = start(&client, history.process, until).await else { return Ok(()) };
    let topic: Arc<str> = Arc::from(config.topic.as_str());
    let mut rng = SplitMix64::new(config.delay.seed ^ SALT);
    // Cancels to make, by (wall-clock time, arrival number).
    let mut scheduled: BTreeMap<(u64, u64), Acked> = BTreeMap::new();
    let mut arrivals = 0u64;
    let mut pending = FuturesUnordered::new();
    // Cancels awaiting their answer: value → id.
    let mut outstanding: BTreeMap<String, DelayedId> = BTreeMap::new();
    let done = |value: String, id, result, outstanding: &mut BTreeMap<String, DelayedId>| {
        outstanding.remove(&value);
        complete(&history, &tracker, value, id, result)
    };
    loop {
        let next = scheduled.first_key_value().map(|(&(at_ms, _), _)| instant_at(at_ms));
        tokio::select! {
            biased;
            () = tokio::time::sleep_until(until) => break,
            Some((value, id, result)) = pending.next() => done(value, id, result, &mut outstanding)?,
            Some(message) = acked.recv() => {
                let now = now_ms();
                if message.due_ms > now && rng.below(100) < u64::from(config.delay.cancel_percent) {
                    let at_ms = rng.between(now, message.due_ms + LATE_MS);
                    scheduled.insert((at_ms, arrivals), message);
                }
                arrivals += 1;
            }
            () = tokio::time::sleep_until(next.unwrap_or(until)), if next.is_some() && pending.len() < IN_FLIGHT => {
                let Some((_, message)) = scheduled.pop_first() else { continue };
                history.record(Kind::Invoke, cancel(&message.value, message.id, None))?;
                outstanding.insert(message.value.clone(), message.id);
                let (producer, topic) = (producer.clone(), Arc::clone(&topic));
                pending.push(async move {
                    let result = tokio::time::timeout(CANCEL_LIMIT, producer.cancel_delayed(&topic, message.id)).await;
                    (message.value, message.id, result)
                });
            }
        }
    }
    let grace = Instant::now() + GRACE;
    while let Ok(Some((value, id, result))) = tokio::time::timeout_at(grace, pending.next()).await {
        done(value, id, result, &mut outstanding)?;
    }
    for (value, id) in outstanding {
        lock(&tracker).not_expected(&value);
        let error = Some("still unanswered at the end of the run".to_owned());
        history.record_error(Kind::Info, cancel(&value, id, None), error)?;
    }
    Ok(())
}

/// Records how a cancel ended; a message it may have cancelled is no longer expected.
fn complete(
    history: &History,
    tracker: &Mutex<Tracker>,
    value: String,
    id: DelayedId,
    result: Result<sluice_client::Result<CancelOutcome>, tokio::time::error::Elapsed>,
) -> Result<(), WorkloadError> {
    let outcome = match result {
        Ok(Ok(CancelOutcome::Cancelled)) => CancelResult::Cancelled,
        Ok(Ok(CancelOutcome::AlreadyDelivered)) => CancelResult::AlreadyDelivered,
        Ok(Err(e)) => {
            tracing::debug!(%value, error = %e, "cancel failed");
            lock(tracker).not_expected(&value);
            return history.record_error(Kind::Info, cancel(&value, id, None), Some(e.to_string()));
        }
        Err(_) => {
            lock(tracker).not_expected(&value);
            let error = Some(format!("no answer within {CANCEL_LIMIT:?}"));
            return history.record_error(Kind::Info, cancel(&value, id, None), error);
        }
    };
    if outcome == CancelResult::Cancelled {
        lock(tracker).not_expected(&value);
    }
    history.record(Kind::Ok, cancel(&value, id, Some(outcome)))
}

/// A cancel of the message sent as `value`, answered `outcome` if known.
fn cancel(value: &str, id: DelayedId, outcome: Option<CancelResult>) -> Op {
    Op::Cancel { value: value.to_owned(), partition: id.partition, seq: id.seq, outcome }
}
