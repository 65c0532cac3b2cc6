//! A consumer of the delay workload: a plain consumer assigned every partition of the topic,
//! from the earliest offset, polling until told to stop and recording each poll with the
//! runner's wall-clock time it returned and, per record, its place, value and delivery time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sluice_client::{Client, ConsumedRecord, Consumer, ConsumerConfig, Error, SeekTo};
use sluice_common::record::DELIVER_AT_PROPERTY;

use super::{Tracker, lock, now_ms};
use crate::history::{DelayRead, Kind, Op};
use crate::workload::{ERROR_PAUSE, History, POLL_LIMIT, POLL_WAIT, WorkloadConfig, WorkloadError, value_text};

/// Runs one consumer until `stop` turns true.
pub(super) async fn run(
    client: Client,
    history: History,
    config: Arc<WorkloadConfig>,
    tracker: Arc<Mutex<Tracker>>,
    stop: Arc<AtomicBool>,
) -> Result<(), WorkloadError> {
    let consumer_config = ConsumerConfig { start: SeekTo::Earliest, ..ConsumerConfig::default() };
    let mut consumer = client.consumer(consumer_config).map_err(|e| WorkloadError::Config(e.to_string()))?;
    let stopped = || stop.load(Ordering::Relaxed);
    loop {
        if stopped() {
            return Ok(());
        }
        match tokio::time::timeout(POLL_LIMIT, consumer.assign(&config.topic, &[])).await {
            Ok(Ok(())) => break,
            Ok(Err(e)) => tracing::warn!(process = history.process, error = %e, "assigning failed; retrying"),
            Err(_) => tracing::warn!(process = history.process, "assigning took over {POLL_LIMIT:?}; retrying"),
        }
        tokio::time::sleep(ERROR_PAUSE).await;
    }
    while !stopped() {
        history.record(Kind::Invoke, empty_poll())?;
        match tokio::time::timeout(POLL_LIMIT, consumer.poll(POLL_WAIT)).await {
            Ok(Ok(records)) => {
                let received_ms = now_ms();
                let reads: Vec<DelayRead> = records.iter().map(read).collect();
                lock(&tracker).received(reads.iter().map(|r| r.value.as_str()));
                history.record(Kind::Ok, Op::DelayPoll { received_ms: Some(received_ms), reads })?;
            }
            Ok(Err(Error::OffsetOutOfRange { partition, offset, log_start_offset, high_watermark, .. })) => {
                // Nothing is trimmed in a run: not expected, but read the partition again.
                history.record_error(Kind::Fail, empty_poll(), Some(format!("offset {offset} out of range")))?;
                tracing::warn!(partition, offset, log_start_offset, high_watermark, "consumer out of range; seeking");
                seek_earliest(&mut consumer, partition).await;
            }
            Ok(Err(e)) => {
                tracing::debug!(process = history.process, error = %e, "poll failed");
                history.record_error(Kind::Fail, empty_poll(), Some(e.to_string()))?;
                tokio::time::sleep(ERROR_PAUSE).await;
            }
            Err(_) => {
                let error = Some(format!("no answer within {POLL_LIMIT:?}"));
                history.record_error(Kind::Fail, empty_poll(), error)?;
            }
        }
    }
    Ok(())
}

/// Seeks `partition` back to its earliest offset (a failure is left for the next poll to hit).
async fn seek_earliest(consumer: &mut Consumer, partition: u32) {
    match tokio::time::timeout(POLL_LIMIT, consumer.seek(partition, SeekTo::Earliest)).await {
        Ok(Ok(offset)) => tracing::info!(partition, offset, "consumer sought back to the earliest offset"),
        Ok(Err(e)) => tracing::warn!(partition, error = %e, "seeking failed"),
        Err(_) => tracing::warn!(partition, "seeking took over {POLL_LIMIT:?}"),
    }
    tokio::time::sleep(ERROR_PAUSE).await;
}

/// A record as the history keeps it.
fn read(record: &ConsumedRecord) -> DelayRead {
    let deliver_at_ms =
        record.properties().find(|(name, _)| *name == DELIVER_AT_PROPERTY).and_then(|(_, at)| at.parse().ok());
    DelayRead {
        partition: record.partition(),
        offset: record.offset(),
        value: value_text(record.value()),
        deliver_at_ms,
    }
}

/// A poll, as invoked or failed.
fn empty_poll() -> Op {
    Op::DelayPoll { received_ms: None, reads: Vec::new() }
}
