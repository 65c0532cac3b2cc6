//! The final phase, after every fault healed: each partition read whole, from its earliest
//! offset to its end offset as the leader reports it then (`FinalRead`), and the group's
//! committed offsets (`FinalCommitted`). Each is retried until it succeeds or the drain's time
//! is up; a partition's read is recorded only once it is complete.

use std::time::Duration;

use sluice_client::{Client, ConsumerConfig, Error, ErrorCode, SeekTo};
use tokio::time::Instant;

use super::{ERROR_PAUSE, History, POLL_WAIT, WorkloadConfig, WorkloadError, value_text};
use crate::history::{Kind, Op};

/// Bytes asked for per fetch: large, the drain reads everything.
const FETCH_BYTES: u32 = 4 << 20;

/// Reads everything, recording as it goes; `deadline` bounds it all.
pub(super) async fn run(
    client: &Client,
    history: &History,
    config: &WorkloadConfig,
    deadline: Instant,
) -> Result<(), WorkloadError> {
    let limit = deadline.saturating_duration_since(Instant::now());
    for partition in 0..config.partitions {
        let what = format!("reading partition {partition} of {} whole", config.topic);
        let reads = retry(&what, limit, deadline, || read_partition(client, &config.topic, partition)).await?;
        history.record(Kind::Ok, Op::FinalRead { partition, reads })?;
    }
    for (group, _) in config.groups() {
        let what = format!("reading the committed offsets of group {group}");
        let offsets = retry(&what, limit, deadline, || committed(client, &config.topic, &group)).await?;
        history.record(Kind::Ok, Op::FinalCommitted { group, offsets })?;
    }
    Ok(())
}

/// Runs `attempt` until it succeeds or `deadline` passes, pausing between failures.
pub(super) async fn retry<T, F>(
    what: &str,
    limit: Duration,
    deadline: Instant,
    mut attempt: impl FnMut() -> F,
) -> Result<T, WorkloadError>
where
    F: std::future::Future<Output = sluice_client::Result<T>>,
{
    let mut last = String::from("no attempt finished");
    while Instant::now() < deadline {
        match tokio::time::timeout_at(deadline, attempt()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => {
                tracing::info!(error = %e, "{what} failed; retrying");
                last = e.to_string();
            }
            Err(_) => break,
        }
        tokio::time::sleep(ERROR_PAUSE).await;
    }
    Err(WorkloadError::Incomplete { what: what.to_owned(), limit, last })
}

/// Every (offset, value) of `partition`, from its earliest offset to its end offset now.
async fn read_partition(client: &Client, topic: &str, partition: u32) -> sluice_client::Result<Vec<(u64, String)>> {
    let config = ConsumerConfig { start: SeekTo::Earliest, fetch_max_bytes: FETCH_BYTES, ..ConsumerConfig::default() };
    let mut consumer = client.consumer(config)?;
    consumer.assign(topic, &[partition]).await?;
    let start = consumer.seek(partition, SeekTo::Earliest).await?;
    let end = consumer.end_offsets().await?.get(&partition).copied().unwrap_or(start);
    let mut reads = Vec::with_capacity(usize::try_from(end.saturating_sub(start)).unwrap_or(0));
    // Each poll that returns records moves the position forward; one that returns none waits
    // POLL_WAIT. The caller's deadline bounds the loop.
    while consumer.position(partition).unwrap_or(start) < end {
        for record in consumer.poll(POLL_WAIT).await? {
            if record.offset() < end {
                reads.push((record.offset(), value_text(record.value())));
            }
        }
    }
    Ok(reads)
}

/// The group's committed offsets of the topic's partitions, ascending; none if the group is
/// unknown (no member ever committed).
pub(super) async fn committed(client: &Client, topic: &str, group: &str) -> sluice_client::Result<Vec<(u32, u64)>> {
    let description = match client.admin().describe_group(group).await {
        Ok(description) => description,
        Err(Error::Broker { code: ErrorCode::GroupNotFound, .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut offsets: Vec<(u32, u64)> = description
        .partitions
        .iter()
        .filter(|lag| lag.partition.topic() == topic)
        .filter_map(|lag| lag.committed_offset.map(|offset| (lag.partition.partition(), offset)))
        .collect();
    offsets.sort_unstable();
    Ok(offsets)
}
