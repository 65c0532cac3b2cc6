//! A `read_committed` reader: one assign-mode consumer per topic, every partition from the
//! earliest offset, polled in turn until told to stop; every poll recorded with every record
//! (topic, partition, offset, value). A position out of range (never expected: nothing is
//! trimmed) is sought back to the earliest offset, so the reader reads everything again.

use std::sync::Arc;
use std::time::Duration;

use sluice_client::{Client, Consumer, ConsumerConfig, Error, Isolation, SeekTo};

use super::{Control, call};
use crate::history::{Kind, Op, TxnRead};
use crate::workload::{ERROR_PAUSE, History, POLL_LIMIT, POLL_WAIT, WorkloadConfig, WorkloadError, value_text};

/// Runs one reader until the runner stops it.
pub(super) async fn run(
    client: Client,
    history: History,
    config: Arc<WorkloadConfig>,
    control: Arc<Control>,
) -> Result<(), WorkloadError> {
    let stopped = || Control::flag(&control.stop_followers);
    let consumer_config =
        ConsumerConfig { start: SeekTo::Earliest, isolation: Isolation::ReadCommitted, ..ConsumerConfig::default() };
    let mut consumers: Vec<Consumer> = Vec::new();
    for topic in &config.txn.topics {
        let mut consumer =
            client.consumer(consumer_config.clone()).map_err(|e| WorkloadError::Config(e.to_string()))?;
        loop {
            if stopped() {
                return Ok(());
            }
            match call("assign", consumer.assign(topic, &[])).await {
                Ok(()) => break,
                Err(e) => tracing::warn!(process = history.process, %topic, error = %e, "assigning failed; retrying"),
            }
            tokio::time::sleep(ERROR_PAUSE).await;
        }
        consumers.push(consumer);
    }
    // Each consumer waits half as long: a round takes about one poll's wait.
    let wait = POLL_WAIT / u32::try_from(consumers.len()).unwrap_or(1).max(1);
    while !stopped() {
        for consumer in &mut consumers {
            poll(consumer, &history, wait).await?;
        }
    }
    Ok(())
}

/// One poll of one consumer, recorded.
async fn poll(consumer: &mut Consumer, history: &History, wait: Duration) -> Result<(), WorkloadError> {
    let empty = || Op::TxnPoll { reads: Vec::new() };
    history.record(Kind::Invoke, empty())?;
    match tokio::time::timeout(POLL_LIMIT, consumer.poll(wait)).await {
        Ok(Ok(records)) => {
            let reads = records
                .iter()
                .map(|r| TxnRead {
                    topic: r.topic().to_owned(),
                    partition: r.partition(),
                    offset: r.offset(),
                    value: value_text(r.value()),
                })
                .collect();
            history.record(Kind::Ok, Op::TxnPoll { reads })
        }
        Ok(Err(Error::OffsetOutOfRange { partition, offset, log_start_offset, high_watermark, .. })) => {
            history.record_error(Kind::Fail, empty(), Some(format!("offset {offset} out of range")))?;
            tracing::warn!(partition, offset, log_start_offset, high_watermark, "reader out of range; seeking");
            if let Err(e) = call("seek", consumer.seek(partition, SeekTo::Earliest)).await {
                tracing::warn!(partition, error = %e, "seeking failed");
            }
            tokio::time::sleep(ERROR_PAUSE).await;
            Ok(())
        }
        Ok(Err(e)) => {
            tracing::debug!(process = history.process, error = %e, "poll failed");
            history.record_error(Kind::Fail, empty(), Some(e.to_string()))?;
            tokio::time::sleep(ERROR_PAUSE).await;
            Ok(())
        }
        Err(_) => history.record_error(Kind::Fail, empty(), Some(format!("no answer within {POLL_LIMIT:?}"))),
    }
}
