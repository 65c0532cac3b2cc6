//! The consume-transform-produce processor: a member of the workload's group reading the
//! source topic with auto-commit off; each poll's records, [`PER_TXN`] at a time, become one
//! transaction writing `out:<input>@x-{n}-{i}` to random partitions of the topics and the
//! group's offsets past those inputs (`send_offsets`).
//!
//! Exactly once, whatever happens: after a transaction whose abort answered OK, the member
//! seeks back to the first input not committed; after anything else (an unknown commit, a
//! failure it could not abort) it registers a new producer instance (which waits until the
//! old transaction is decided and complete) and rejoins the group, reading the committed
//! offsets (which, while an offset commit is pending in a transaction, the coordinator holds
//! back). Now and then it drops itself in the middle of a transaction on purpose ("crash":
//! records and offsets written, then producer dropped, member closed) and comes back the same
//! way. Its last transactions run while the runner waits for it to catch up with the source.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_client::{
    Client, ConsumedRecord, GroupConsumer, GroupConsumerConfig, OffsetReset, SeekTo, TopicPartition,
    TransactionalProducer,
};

use super::{Control, Ended, ID_PREFIX, call, init, record_end, txn_op, write};
use crate::history::{Kind, TxnOutcome, TxnPlan, TxnValue};
use crate::schedule::SplitMix64;
use crate::workload::{ERROR_PAUSE, History, POLL_LIMIT, POLL_WAIT, WorkloadConfig, WorkloadError, value_text};

/// Inputs per transaction, at most.
pub const PER_TXN: usize = 8;

/// Mixed into the seed of the processor's choices.
const SALT: u64 = 0x7478_6e70_726f_6365;

/// The share of transactions aborted, and of those the processor drops itself in, in percent.
const ABORT_PERCENT: u64 = 10;
const CRASH_PERCENT: u64 = 2;

/// What the processor holds between polls.
struct Processor {
    client: Client,
    history: History,
    config: Arc<WorkloadConfig>,
    control: Arc<Control>,
    producer: Option<TransactionalProducer>,
    member: Option<GroupConsumer>,
    /// The source's end offsets, once the run is over (nothing is written to it then).
    source_end: Option<BTreeMap<u32, u64>>,
}

/// Runs the processor until told to stop.
pub(super) async fn run(
    client: Client,
    history: History,
    config: Arc<WorkloadConfig>,
    control: Arc<Control>,
) -> Result<(), WorkloadError> {
    let mut rng = SplitMix64::new(config.txn.seed ^ SALT);
    let mut p = Processor { client, history, config, control, producer: None, member: None, source_end: None };
    let mut n = 0u64;
    while !p.stopped() {
        if p.producer.is_none() {
            let id = format!("{ID_PREFIX}processor");
            let control = Arc::clone(&p.control);
            p.producer =
                init(&p.client, &p.history, &id, p.config.txn.timeout, || !Control::flag(&control.stop_processor))
                    .await?;
            continue;
        }
        if p.member.is_none() {
            p.join().await;
            continue;
        }
        let records = match p.poll().await {
            Some(records) => records,
            None => continue,
        };
        if records.is_empty() {
            p.check_caught_up().await;
            continue;
        }
        for (start, chunk) in (0..).step_by(PER_TXN).zip(records.chunks(PER_TXN)) {
            let label = format!("x-{n}");
            n += 1;
            let plan = match rng.below(100) {
                r if r < CRASH_PERCENT => TxnPlan::Crash,
                r if r < CRASH_PERCENT + ABORT_PERCENT => TxnPlan::Abort,
                _ => TxnPlan::Commit,
            };
            if !p.transaction(&mut rng, &label, plan, chunk, &records[start..]).await? {
                break;
            }
        }
    }
    p.leave().await;
    Ok(())
}

impl Processor {
    fn stopped(&self) -> bool {
        Control::flag(&self.control.stop_processor)
    }

    /// Joins the group as a new member (retried by the caller's loop).
    async fn join(&mut self) {
        let config = GroupConsumerConfig {
            auto_commit: false,
            auto_offset_reset: OffsetReset::Earliest,
            ..GroupConsumerConfig::new(self.config.txn.group.as_str())
        };
        let mut member = match self.client.group_consumer(config) {
            Ok(member) => member,
            Err(e) => {
                tracing::error!(error = %e, "the processor's member cannot be made");
                tokio::time::sleep(ERROR_PAUSE).await;
                return;
            }
        };
        match call("subscribe", member.subscribe(&[self.config.txn.source.as_str()])).await {
            Ok(()) => self.member = Some(member),
            Err(e) => {
                tracing::warn!(error = %e, "the processor could not join its group; retrying");
                let _ = call("close", member.close()).await;
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }

    /// Leaves the group (nothing is committed: auto-commit is off).
    async fn leave(&mut self) {
        if let Some(member) = self.member.take()
            && let Err(e) = call("close", member.close()).await
        {
            tracing::debug!(error = %e, "the processor's member did not leave cleanly");
        }
    }

    /// One poll; `None` after a failure (paused already).
    async fn poll(&mut self) -> Option<Vec<ConsumedRecord>> {
        let member = self.member.as_mut()?;
        match tokio::time::timeout(POLL_LIMIT, member.poll(POLL_WAIT)).await {
            Ok(Ok(records)) => Some(records),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "the processor's poll failed");
                tokio::time::sleep(ERROR_PAUSE).await;
                None
            }
            Err(_) => None,
        }
    }

    /// Once the run is over: whether the member's positions reached the source's end.
    async fn check_caught_up(&mut self) {
        if !Control::flag(&self.control.wind_down) || Control::flag(&self.control.caught_up) {
            return;
        }
        let source = self.config.txn.source.clone();
        if self.source_end.is_none() {
            let Ok(d) = call("describe", self.client.admin().describe_topic(&source)).await else { return };
            let ends: Result<BTreeMap<u32, u64>, _> =
                d.partitions.iter().map(|p| p.log_end_offset.clone().map(|end| (p.partition, end))).collect();
            let Ok(ends) = ends else { return };
            self.source_end = Some(ends);
        }
        let (Some(member), Some(ends)) = (&self.member, &self.source_end) else { return };
        let done = ends.iter().all(|(&partition, &end)| {
            end == 0 || member.position(&TopicPartition::new(source.as_str(), partition)).is_some_and(|p| p >= end)
        });
        if done {
            tracing::info!("the processor caught up with its source");
            self.control.caught_up.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Runs one transaction over `chunk` (the start of `rest`, this poll's records not yet
    /// committed), recorded. Returns whether the poll's next chunk may follow.
    async fn transaction(
        &mut self,
        rng: &mut SplitMix64,
        label: &str,
        plan: TxnPlan,
        chunk: &[ConsumedRecord],
        rest: &[ConsumedRecord],
    ) -> Result<bool, WorkloadError> {
        let txn = &self.config.txn;
        let values: Vec<TxnValue> = chunk
            .iter()
            .enumerate()
            .map(|(i, r)| TxnValue {
                topic: txn.topics[rng.below(txn.topics.len() as u64) as usize].clone(),
                partition: rng.below(u64::from(self.config.partitions)) as u32,
                value: format!("out:{}@{label}-{i}", value_text(r.value())),
            })
            .collect();
        let mut offsets: BTreeMap<u32, u64> = BTreeMap::new();
        for r in chunk {
            let next = offsets.entry(r.partition()).or_insert(0);
            *next = (*next).max(r.offset() + 1);
        }
        let listed: Vec<(u32, u64)> = offsets.iter().map(|(&p, &o)| (p, o)).collect();
        self.history.record(Kind::Invoke, txn_op(label, plan, &values, &listed, None))?;
        let Some(producer) = self.producer.as_mut() else { return Ok(false) };
        let by_tp: BTreeMap<TopicPartition, u64> =
            offsets.iter().map(|(&p, &o)| (TopicPartition::new(txn.source.as_str(), p), o)).collect();
        let written = match write(producer, &values).await {
            Ok(()) => call("send_offsets", producer.send_offsets(&txn.group, &by_tp)).await,
            Err(e) => Err(e),
        };
        let ended = match (written, plan) {
            (Err(e), _) => Ended::before_commit(producer, &e).await,
            (Ok(()), TxnPlan::Crash) => Ended { outcome: TxnOutcome::Abandoned, error: None, reusable: false },
            (Ok(()), TxnPlan::Abort) => match call("abort", producer.abort()).await {
                Ok(()) => Ended::ok(TxnOutcome::Aborted),
                Err(e) => {
                    let outcome = if e.fenced() { TxnOutcome::Fenced } else { TxnOutcome::Failed };
                    Ended { outcome, error: Some(e.to_string()), reusable: false }
                }
            },
            (Ok(()), _) => match call("commit", producer.commit()).await {
                Ok(()) => Ended::ok(TxnOutcome::Committed),
                Err(e) => Ended { outcome: TxnOutcome::Unknown, error: Some(e.to_string()), reusable: false },
            },
        };
        record_end(&self.history, label, plan, &values, &listed, &ended)?;
        if ended.outcome == TxnOutcome::Committed {
            return Ok(true);
        }
        if ended.reusable && self.rewind(rest).await {
            return Ok(false);
        }
        // Start over from what the group committed, once the transaction is decided: a new
        // producer instance first (registering waits for that), then a new member.
        if !ended.reusable {
            self.producer = None;
        }
        self.leave().await;
        Ok(false)
    }

    /// Seeks each partition of `rest` back to its first record; false if that failed.
    async fn rewind(&mut self, rest: &[ConsumedRecord]) -> bool {
        let Some(member) = self.member.as_mut() else { return false };
        let mut first: BTreeMap<u32, u64> = BTreeMap::new();
        for r in rest {
            first.entry(r.partition()).or_insert(r.offset());
        }
        for (partition, offset) in first {
            let tp = TopicPartition::new(self.config.txn.source.as_str(), partition);
            if let Err(e) = call("seek", member.seek(&tp, SeekTo::Offset(offset))).await {
                tracing::debug!(%tp, offset, error = %e, "the processor could not seek back");
                return false;
            }
        }
        true
    }
}
