//! A transactional writer: transactions `w{process}-{n}` of 1–8 values to random partitions of
//! the topics, each committed, aborted, abandoned or fenced by plan, recorded at invoke and
//! end. Its producer is an instance of `jepsen-txn-w{process}`; after an error it cannot
//! classify (a commit without an OK, a failure it could not abort), and after a deliberate
//! fence, it runs on a new instance.

use std::sync::Arc;
use std::time::Duration;

use sluice_client::{Client, TransactionalProducer};
use tokio::time::{Instant, MissedTickBehavior};

use super::{Ended, ID_PREFIX, call, init, init_once, record_end, txn_op, write};
use crate::history::{Kind, TxnOutcome, TxnPlan, TxnValue};
use crate::schedule::SplitMix64;
use crate::workload::{History, WorkloadConfig, WorkloadError};

/// Mixed into the seed of each writer's choices.
const SALT: u64 = 0x7478_6e77_7269_7465;

/// The most values one transaction writes.
pub(super) const MAX_VALUES: u64 = 8;

/// Runs one writer until `until`.
pub(super) async fn run(
    client: Client,
    history: History,
    config: Arc<WorkloadConfig>,
    until: Instant,
) -> Result<(), WorkloadError> {
    let txn = &config.txn;
    let writer = history.process;
    let id = format!("{ID_PREFIX}w{writer}");
    let mut rng = SplitMix64::new(txn.seed ^ SALT ^ u64::from(writer).rotate_left(32));
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / txn.rate);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut producer: Option<TransactionalProducer> = None;
    let go_on = || Instant::now() < until;
    for n in 0u64.. {
        tokio::select! {
            () = tokio::time::sleep_until(until) => break,
            _ = ticker.tick() => {}
        }
        let mut current = match producer.take() {
            Some(p) => p,
            None => match init(&client, &history, &id, txn.timeout, go_on).await? {
                Some(p) => p,
                None => break,
            },
        };
        let label = format!("w{writer}-{n}");
        let values = choose_values(&mut rng, &label, &txn.topics, config.partitions);
        let plan = choose_plan(&mut rng, txn);
        history.record(Kind::Invoke, txn_op(&label, plan, &values, &[], None))?;
        let ended = match plan {
            TxnPlan::Commit => commit(&mut current, &values).await,
            TxnPlan::Abort => abort(&mut current, &values).await,
            TxnPlan::Abandon => abandon(&client, &history, &format!("{id}-a{n}"), txn.timeout, &values).await?,
            TxnPlan::Fence | TxnPlan::Crash => {
                let (ended, next) = fence(&client, &history, &id, txn.timeout, current, &values).await?;
                record_end(&history, &label, plan, &values, &[], &ended)?;
                producer = next;
                continue;
            }
        };
        record_end(&history, &label, plan, &values, &[], &ended)?;
        if ended.reusable {
            producer = Some(current);
        }
    }
    Ok(())
}

/// 1 to [`MAX_VALUES`] values `{label}-{i}`, each to a random partition of a random topic.
pub(super) fn choose_values(rng: &mut SplitMix64, label: &str, topics: &[String], partitions: u32) -> Vec<TxnValue> {
    let count = rng.between(1, MAX_VALUES);
    (0..count)
        .map(|i| TxnValue {
            topic: topics[rng.below(topics.len() as u64) as usize].clone(),
            partition: rng.below(u64::from(partitions)) as u32,
            value: format!("{label}-{i}"),
        })
        .collect()
}

/// Abort, abandon or fence by their shares, commit otherwise.
pub(super) fn choose_plan(rng: &mut SplitMix64, txn: &super::TxnConfig) -> TxnPlan {
    let roll = rng.below(100) as u32;
    if roll < txn.abort_percent {
        TxnPlan::Abort
    } else if roll < txn.abort_percent + txn.abandon_percent {
        TxnPlan::Abandon
    } else if roll < txn.abort_percent + txn.abandon_percent + txn.fence_percent {
        TxnPlan::Fence
    } else {
        TxnPlan::Commit
    }
}

/// Writes, then commits: `committed` on OK, `unknown` (and a new instance) otherwise.
async fn commit(producer: &mut TransactionalProducer, values: &[TxnValue]) -> Ended {
    if let Err(e) = write(producer, values).await {
        return Ended::before_commit(producer, &e).await;
    }
    match call("commit", producer.commit()).await {
        Ok(()) => Ended::ok(TxnOutcome::Committed),
        Err(e) => Ended { outcome: TxnOutcome::Unknown, error: Some(e.to_string()), reusable: false },
    }
}

/// Writes, then aborts: `aborted` on OK; its commit is never asked for, so otherwise it is
/// `fenced` or `failed` (and a new instance).
async fn abort(producer: &mut TransactionalProducer, values: &[TxnValue]) -> Ended {
    if let Err(e) = write(producer, values).await {
        return Ended::before_commit(producer, &e).await;
    }
    match call("abort", producer.abort()).await {
        Ok(()) => Ended::ok(TxnOutcome::Aborted),
        Err(e) => {
            let outcome = if e.fenced() { TxnOutcome::Fenced } else { TxnOutcome::Failed };
            Ended { outcome, error: Some(e.to_string()), reusable: false }
        }
    }
}

/// Writes with a producer of a throwaway id `id`, then drops it with the transaction open: only
/// its timeout ends it. `failed` if the producer could not be registered (nothing written).
async fn abandon(
    client: &Client,
    history: &History,
    id: &str,
    timeout: Duration,
    values: &[TxnValue],
) -> Result<Ended, WorkloadError> {
    let mut producer = match init_once(client, history, id, timeout).await? {
        Ok(producer) => producer,
        Err(error) => return Ok(Ended { outcome: TxnOutcome::Failed, error: Some(error), reusable: true }),
    };
    let error = write(&mut producer, values).await.err().map(|e| e.to_string());
    drop(producer);
    Ok(Ended { outcome: TxnOutcome::Abandoned, error, reusable: true })
}

/// Writes, registers a new instance of `id` (which fences this one and aborts the
/// transaction), then asks the old instance to commit: `fenced` when that fails, as it must
/// (`committed` if it answers OK: the checker then expects the transaction both visible and
/// aborted, and reports it). Returns the producer for the next transaction: the new instance.
async fn fence(
    client: &Client,
    history: &History,
    id: &str,
    timeout: Duration,
    mut old: TransactionalProducer,
    values: &[TxnValue],
) -> Result<(Ended, Option<TransactionalProducer>), WorkloadError> {
    if let Err(e) = write(&mut old, values).await {
        let ended = Ended::before_commit(&mut old, &e).await;
        let reusable = ended.reusable;
        return Ok((ended, reusable.then_some(old)));
    }
    let new = match init_once(client, history, id, timeout).await? {
        Ok(new) => new,
        Err(error) => {
            // The new instance may or may not have fenced the old one: the old one is not asked
            // to commit, so the transaction must abort either way.
            let error = Some(format!("registering the fencing instance: {error}"));
            return Ok((Ended { outcome: TxnOutcome::Failed, error, reusable: false }, None));
        }
    };
    let ended = match call("commit", old.commit()).await {
        Ok(()) => {
            tracing::error!(process = history.process, id, "a fenced instance's commit answered OK");
            Ended::ok(TxnOutcome::Committed)
        }
        Err(e) => Ended { outcome: TxnOutcome::Fenced, error: Some(e.to_string()), reusable: false },
    };
    Ok((ended, Some(new)))
}
