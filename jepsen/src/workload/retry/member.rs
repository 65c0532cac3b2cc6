//! A member of a retry workload group: a `GroupConsumer` with the workload's retry policy
//! (key-ordered in the ordered group) and auto-commit, acking, nacking or rejecting each record
//! by its value's fate and attempt, and recording every poll with what it did.
//!
//! The poll's `ok` is recorded before the member settles its records, so the event's time is
//! no later than the member's decision: the checker's windows start there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sluice_client::{Client, ConsumedRecord, GroupConsumer, GroupConsumerConfig, OffsetReset};

use super::{Tracker, lock};
use crate::history::{Kind, Op, RetryAction, RetryGroup, RetryRead, fate_of};
use crate::workload::member::{AUTO_COMMIT_INTERVAL, CLOSE_LIMIT, REBALANCE_TIMEOUT, SESSION_TIMEOUT};
use crate::workload::{ERROR_PAUSE, History, POLL_LIMIT, POLL_WAIT, WorkloadConfig, WorkloadError, value_text};

/// Runs one member until `stop` turns true, then leaves the group.
pub(super) async fn run(
    client: Client,
    history: History,
    config: Arc<WorkloadConfig>,
    group: RetryGroup,
    tracker: Arc<Mutex<Tracker>>,
    stop: Arc<AtomicBool>,
) -> Result<(), WorkloadError> {
    let member_config = GroupConsumerConfig {
        session_timeout: SESSION_TIMEOUT,
        rebalance_timeout: REBALANCE_TIMEOUT,
        auto_commit: true,
        auto_commit_interval: AUTO_COMMIT_INTERVAL,
        auto_offset_reset: OffsetReset::Earliest,
        retry: Some(config.retry.policy()),
        key_ordered: group.key_ordered,
        ..GroupConsumerConfig::new(group.name.as_str())
    };
    let mut consumer = client.group_consumer(member_config).map_err(|e| WorkloadError::Config(e.to_string()))?;
    let stopped = || stop.load(Ordering::Relaxed);
    loop {
        if stopped() {
            return Ok(());
        }
        match tokio::time::timeout(POLL_LIMIT, consumer.subscribe(&[config.topic.as_str()])).await {
            Ok(Ok(())) => break,
            Ok(Err(e)) => tracing::warn!(process = history.process, error = %e, "joining the group failed; retrying"),
            Err(_) => tracing::warn!(process = history.process, "joining took over {POLL_LIMIT:?}; retrying"),
        }
        tokio::time::sleep(ERROR_PAUSE).await;
    }
    let result = poll_until(&mut consumer, &history, &group.name, &tracker, &stopped).await;
    match tokio::time::timeout(CLOSE_LIMIT, consumer.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::info!(process = history.process, error = %e, "leaving the group failed"),
        Err(_) => tracing::info!(process = history.process, "leaving the group took too long; abandoned"),
    }
    result
}

async fn poll_until(
    consumer: &mut GroupConsumer,
    history: &History,
    group: &str,
    tracker: &Mutex<Tracker>,
    stopped: &impl Fn() -> bool,
) -> Result<(), WorkloadError> {
    let empty = || Op::RetryPoll { group: group.to_owned(), reads: Vec::new() };
    while !stopped() {
        history.record(Kind::Invoke, empty())?;
        // Cancelling a poll loses nothing: an unsettled retry's lease runs out (a failed
        // attempt), a first delivery is fetched again from the committed position.
        let records = match tokio::time::timeout(POLL_LIMIT, consumer.poll(POLL_WAIT)).await {
            Ok(Ok(records)) => records,
            Ok(Err(e)) => {
                tracing::debug!(process = history.process, error = %e, "poll failed");
                history.record_error(Kind::Fail, empty(), Some(e.to_string()))?;
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
            Err(_) => {
                history.record_error(Kind::Fail, empty(), Some(format!("no answer within {POLL_LIMIT:?}")))?;
                continue;
            }
        };
        let reads: Vec<RetryRead> = records.iter().map(decide).collect();
        lock(tracker).received(group, &reads);
        history.record(Kind::Ok, Op::RetryPoll { group: group.to_owned(), reads: reads.clone() })?;
        for (record, read) in records.iter().zip(&reads) {
            settle(consumer, record, read.action, history.process);
        }
    }
    Ok(())
}

/// What the member does with `record`.
fn decide(record: &ConsumedRecord) -> RetryRead {
    let value = value_text(record.value());
    let action = RetryAction::decide(fate_of(&value), record.attempt());
    RetryRead { partition: record.partition(), offset: record.offset(), value, attempt: record.attempt(), action }
}

/// Notes `action` for `record` (sent with the member's next settles).
fn settle(consumer: &mut GroupConsumer, record: &ConsumedRecord, action: RetryAction, process: u32) {
    let noted = match action {
        RetryAction::Ack => consumer.ack(record),
        RetryAction::Nack => consumer.nack_because(record, None, "failing by its fate"),
        RetryAction::Reject => consumer.reject(record, "rejected by its fate"),
    };
    if let Err(e) = noted {
        tracing::warn!(process, partition = record.partition(), offset = record.offset(), error = %e, "settling failed");
    }
}
