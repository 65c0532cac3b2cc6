//! An assign-mode reader process: reads every partition of the topic from the earliest offset,
//! recording each poll, and an `Assign` (every partition, with its position) after each seek —
//! the first, and any after a position fell out of the partition's range.

use std::sync::Arc;

use sluice_client::{Client, Consumer, ConsumerConfig, Error, SeekTo};
use tokio::time::Instant;

use super::{ERROR_PAUSE, History, POLL_WAIT, WorkloadConfig, WorkloadError, empty_poll, poll_deadline, poll_reads};
use crate::history::{Kind, Op};

/// Runs one reader until `until`.
pub(super) async fn run(
    client: Client,
    history: History,
    config: Arc<WorkloadConfig>,
    until: Instant,
) -> Result<(), WorkloadError> {
    let consumer_config = ConsumerConfig { start: SeekTo::Earliest, ..ConsumerConfig::default() };
    let mut consumer = client.consumer(consumer_config).map_err(|e| WorkloadError::Config(e.to_string()))?;
    let partitions: Vec<u32> = (0..config.partitions).collect();
    loop {
        match attempt(until, history.process, "assigning partitions", consumer.assign(&config.topic, &partitions)).await
        {
            Attempt::Done => break,
            Attempt::Retry => {}
            Attempt::OutOfTime => return Ok(()),
        }
    }
    if !seek_earliest(&mut consumer, &partitions, &history, until).await? {
        return Ok(());
    }
    while Instant::now() < until {
        history.record(Kind::Invoke, empty_poll(None))?;
        match tokio::time::timeout_at(poll_deadline(until), consumer.poll(POLL_WAIT)).await {
            Ok(Ok(records)) => history.record(Kind::Ok, Op::Poll { group: None, reads: poll_reads(&records) })?,
            Ok(Err(Error::OffsetOutOfRange { partition, offset, log_start_offset, high_watermark, .. })) => {
                history.record(Kind::Fail, empty_poll(None))?;
                tracing::warn!(partition, offset, log_start_offset, high_watermark, "reader out of range; seeking");
                if !seek_earliest(&mut consumer, &[partition], &history, until).await? {
                    return Ok(());
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(process = history.process, error = %e, "poll failed");
                history.record(Kind::Fail, empty_poll(None))?;
                tokio::time::sleep(ERROR_PAUSE).await;
            }
            Err(_) => history.record(Kind::Fail, empty_poll(None))?,
        }
    }
    Ok(())
}

/// Seeks `partitions` to their earliest offsets (retrying each until it works or `until`
/// passes), then records an `Assign` of every assigned partition and its position. False if
/// time ran out first.
async fn seek_earliest(
    consumer: &mut Consumer,
    partitions: &[u32],
    history: &History,
    until: Instant,
) -> Result<bool, WorkloadError> {
    for &partition in partitions {
        loop {
            match attempt(until, history.process, "seeking", consumer.seek(partition, SeekTo::Earliest)).await {
                Attempt::Done => break,
                Attempt::Retry => {}
                Attempt::OutOfTime => return Ok(false),
            }
        }
    }
    let assigned = consumer.assignment();
    let positions = assigned.iter().filter_map(|&p| consumer.position(p).map(|o| (p, o))).collect();
    history.record(Kind::Ok, Op::Assign { group: None, partitions: assigned, positions })?;
    Ok(true)
}

/// What one attempt of a call came to.
enum Attempt {
    Done,
    /// It failed; try again (after a pause, already taken).
    Retry,
    /// `until` passed.
    OutOfTime,
}

/// Runs `call` unless `until` passed, bounded by `until`; pauses after a failure.
async fn attempt<T>(
    until: Instant,
    process: u32,
    what: &str,
    call: impl std::future::Future<Output = sluice_client::Result<T>>,
) -> Attempt {
    if Instant::now() >= until {
        return Attempt::OutOfTime;
    }
    match tokio::time::timeout_at(until, call).await {
        Ok(Ok(_)) => Attempt::Done,
        Ok(Err(e)) => {
            tracing::warn!(process, error = %e, "{what} failed; retrying");
            tokio::time::sleep(ERROR_PAUSE).await;
            Attempt::Retry
        }
        Err(_) => Attempt::OutOfTime,
    }
}
