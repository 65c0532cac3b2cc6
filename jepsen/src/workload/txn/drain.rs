//! The txn workload's final reads, once its transactions settled: every partition of the
//! topics and the source whole `read_committed` (from the earliest offset to the last stable
//! offset), every partition of the topics whole `read_uncommitted` (to the high watermark),
//! then the processor's group's committed offsets of the source. Each is retried until it
//! succeeds or `deadline` passes, and recorded once complete.

use sluice_client::{Client, ConsumerConfig, Isolation, SeekTo};
use tokio::time::Instant;

use crate::history::{Kind, Op};
use crate::workload::drain::{committed, retry};
use crate::workload::{History, POLL_WAIT, WorkloadConfig, WorkloadError, value_text};

/// Bytes asked for per fetch: large, the drain reads everything.
const FETCH_BYTES: u32 = 4 << 20;

/// Reads everything, recording as it goes.
pub(super) async fn run(
    client: &Client,
    history: &History,
    config: &WorkloadConfig,
    deadline: Instant,
) -> Result<(), WorkloadError> {
    let txn = &config.txn;
    let limit = deadline.saturating_duration_since(Instant::now());
    let mut parts: Vec<(&str, u32, bool)> = Vec::new();
    for topic in &txn.topics {
        parts.extend((0..config.partitions).map(|p| (topic.as_str(), p, true)));
    }
    parts.extend((0..txn.source_partitions).map(|p| (txn.source.as_str(), p, true)));
    for topic in &txn.topics {
        parts.extend((0..config.partitions).map(|p| (topic.as_str(), p, false)));
    }
    for (topic, partition, read_committed) in parts {
        let isolation = if read_committed { "read_committed" } else { "read_uncommitted" };
        let what = format!("reading partition {partition} of {topic} whole ({isolation})");
        let (end, reads) =
            retry(&what, limit, deadline, || read_partition(client, topic, partition, read_committed)).await?;
        let op = Op::TxnDrain { topic: topic.to_owned(), partition, committed: read_committed, end, reads };
        history.record(Kind::Ok, op)?;
    }
    let what = format!("reading the committed offsets of group {}", txn.group);
    let offsets = retry(&what, limit, deadline, || committed(client, &txn.source, &txn.group)).await?;
    history.record(Kind::Ok, Op::TxnOffsets { group: txn.group.clone(), offsets })?;
    Ok(())
}

/// The end offset (LSO for `read_committed`, else the high watermark) of `partition` and every
/// (offset, value) from its earliest offset up to it.
async fn read_partition(
    client: &Client,
    topic: &str,
    partition: u32,
    read_committed: bool,
) -> sluice_client::Result<(u64, Vec<(u64, String)>)> {
    let isolation = if read_committed { Isolation::ReadCommitted } else { Isolation::ReadUncommitted };
    let config = ConsumerConfig {
        start: SeekTo::Earliest,
        fetch_max_bytes: FETCH_BYTES,
        isolation,
        ..ConsumerConfig::default()
    };
    let mut consumer = client.consumer(config)?;
    consumer.assign(topic, &[partition]).await?;
    let start = consumer.seek(partition, SeekTo::Earliest).await?;
    let end = consumer.end_offsets().await?.get(&partition).copied().unwrap_or(start);
    let mut reads = Vec::new();
    // Each poll that returns records (or skips aborted ones and markers) moves the position
    // forward; one that returns none waits POLL_WAIT. The caller's deadline bounds the loop.
    while consumer.position(partition).unwrap_or(start) < end {
        for record in consumer.poll(POLL_WAIT).await? {
            if record.offset() < end {
                reads.push((record.offset(), value_text(record.value())));
            }
        }
    }
    Ok((end, reads))
}
