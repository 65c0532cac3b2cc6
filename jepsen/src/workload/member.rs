//! A group member process: a `GroupConsumer` with a short session timeout and auto-commit,
//! recording each poll and, whenever its partitions changed, an `Assign` with where it reads
//! each from next.
//!
//! Partitions change inside `poll` (the SDK applies rebalances there), so the `Assign` is
//! recorded between the poll's invocation and its completion, before the records that may
//! start at the new positions. A listener notices every change, including a partition lost
//! and given back within one poll, which the assignment alone would hide.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sluice_client::{
    Client, GroupConsumer, GroupConsumerConfig, GroupContext, MessageFilter, OffsetReset, RebalanceListener,
    TopicPartition,
};
use tokio::time::Instant;

use super::{
    ERROR_PAUSE, FILTER_TAGS, History, POLL_WAIT, WorkloadConfig, WorkloadError, empty_poll, poll_deadline, poll_reads,
};
use crate::history::{Kind, Op};

/// A member's session: a member that stops heartbeating loses its partitions this soon.
pub(super) const SESSION_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a member may take to give up revoked partitions.
pub(super) const REBALANCE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often auto-commit commits.
pub(super) const AUTO_COMMIT_INTERVAL: Duration = Duration::from_millis(500);

/// How long leaving the group (a final commit, then leave) may take.
pub(super) const CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// Sets a flag whenever the member's partitions change.
struct Changes(Arc<AtomicBool>);

impl RebalanceListener for Changes {
    async fn on_assigned(&mut self, _: &mut GroupContext<'_>, _: &[TopicPartition]) {
        self.0.store(true, Ordering::SeqCst);
    }

    async fn on_revoked(&mut self, _: &mut GroupContext<'_>, _: &[TopicPartition]) {
        self.0.store(true, Ordering::SeqCst);
    }

    async fn on_lost(&mut self, _: &mut GroupContext<'_>, _: &[TopicPartition]) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Runs one group member until `until`, then leaves the group.
pub(super) async fn run(
    client: Client,
    history: History,
    config: Arc<WorkloadConfig>,
    until: Instant,
    filtered: bool,
) -> Result<(), WorkloadError> {
    let (group, filter) = if filtered {
        (config.filtered_group(), Some(MessageFilter::tags(FILTER_TAGS.join(" || "))))
    } else {
        (config.group.clone(), None)
    };
    let member_config = GroupConsumerConfig {
        session_timeout: SESSION_TIMEOUT,
        rebalance_timeout: REBALANCE_TIMEOUT,
        auto_commit: true,
        auto_commit_interval: AUTO_COMMIT_INTERVAL,
        auto_offset_reset: OffsetReset::Earliest,
        filter,
        ..GroupConsumerConfig::new(group.as_str())
    };
    let changed = Arc::new(AtomicBool::new(true));
    let consumer = client.group_consumer(member_config).map_err(|e| WorkloadError::Config(e.to_string()))?;
    let mut consumer = consumer.with_listener(Changes(Arc::clone(&changed)));
    if !join(&mut consumer, &config.topic, history.process, until).await {
        return Ok(());
    }
    let result = poll_until(&mut consumer, &history, &config.topic, &group, &changed, until).await;
    match tokio::time::timeout(CLOSE_LIMIT, consumer.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::info!(process = history.process, error = %e, "leaving the group: the last commit failed")
        }
        Err(_) => tracing::info!(process = history.process, "leaving the group took too long; abandoned"),
    }
    result
}

/// Subscribes to the topic, retrying until it is accepted or `until` passes.
async fn join(consumer: &mut GroupConsumer<Changes>, topic: &str, process: u32, until: Instant) -> bool {
    while Instant::now() < until {
        match tokio::time::timeout_at(until, consumer.subscribe(&[topic])).await {
            Ok(Ok(())) => return true,
            Ok(Err(e)) => tracing::warn!(process, error = %e, "joining the group failed; retrying"),
            Err(_) => return false,
        }
        tokio::time::sleep(ERROR_PAUSE).await;
    }
    false
}

async fn poll_until(
    consumer: &mut GroupConsumer<Changes>,
    history: &History,
    topic: &str,
    group: &str,
    changed: &AtomicBool,
    until: Instant,
) -> Result<(), WorkloadError> {
    let group = Some(group);
    let mut recorded: Option<Vec<u32>> = None;
    while Instant::now() < until {
        history.record(Kind::Invoke, empty_poll(group))?;
        // Cancelling a poll loses nothing (the SDK applies an interrupted rebalance next time).
        let records = match tokio::time::timeout_at(poll_deadline(until), consumer.poll(POLL_WAIT)).await {
            Ok(Ok(records)) => records,
            Ok(Err(e)) => {
                tracing::debug!(process = history.process, error = %e, "poll failed");
                history.record(Kind::Fail, empty_poll(group))?;
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
            Err(_) => {
                history.record(Kind::Fail, empty_poll(group))?;
                continue;
            }
        };
        let reads = poll_reads(&records);
        let partitions = owned(consumer, topic);
        if changed.swap(false, Ordering::SeqCst) || recorded.as_ref() != Some(&partitions) {
            let positions = starts(&partitions, &reads, |p| consumer.position(&TopicPartition::new(topic, p)));
            let assign = Op::Assign { group: group.map(str::to_owned), partitions: partitions.clone(), positions };
            history.record(Kind::Ok, assign)?;
            recorded = Some(partitions);
        }
        history.record(Kind::Ok, Op::Poll { group: group.map(str::to_owned), reads })?;
    }
    Ok(())
}

/// The partitions of `topic` the member owns, ascending.
fn owned(consumer: &GroupConsumer<Changes>, topic: &str) -> Vec<u32> {
    let mut partitions: Vec<u32> =
        consumer.assignment().iter().filter(|tp| tp.topic() == topic).map(TopicPartition::partition).collect();
    partitions.sort_unstable();
    partitions
}

/// Where the member read each owned partition from when the poll began: the first offset the
/// poll returned of it, else its position now. Partitions whose position is not known yet are
/// left out.
pub(super) fn starts(
    partitions: &[u32],
    reads: &[(u32, Vec<(u64, String)>)],
    position: impl Fn(u32) -> Option<u64>,
) -> Vec<(u32, u64)> {
    let first: BTreeMap<u32, u64> =
        reads.iter().filter_map(|(p, list)| list.first().map(|(offset, _)| (*p, *offset))).collect();
    partitions.iter().filter_map(|&p| first.get(&p).copied().or_else(|| position(p)).map(|o| (p, o))).collect()
}
