//! Reading a group's dead-letter queue `<group>.dlq` whole after the run: every entry with
//! its origin, attempts and reason (`sluice.dlq.*` properties). Read again until it holds
//! every message expected there (a coordinator writes reserved entries in the background,
//! and retries while their topic cannot be created or written) or the deadline passes.

use std::collections::HashSet;

use sluice_client::{Client, ConsumedRecord, ConsumerConfig, SeekTo};
use tokio::time::Instant;

use crate::history::DeadLetter;
use crate::workload::{ERROR_PAUSE, POLL_WAIT, value_text};

/// Bytes asked for per fetch.
const FETCH_BYTES: u32 = 4 << 20;

/// The entries of `group`'s dead-letter queue, once it holds every value of `expected` or
/// `deadline` passed (then what it held last; nothing if it could never be read).
pub(super) async fn read(
    client: &Client,
    group: &str,
    expected: &HashSet<String>,
    deadline: Instant,
) -> Vec<DeadLetter> {
    let topic = format!("{group}.dlq");
    let mut last = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, read_once(client, &topic)).await {
            Ok(Ok(entries)) => last = entries,
            Ok(Err(e)) => tracing::info!(%topic, error = %e, "reading the dead-letter queue failed; retrying"),
            Err(_) => {}
        }
        let held: HashSet<&str> = last.iter().map(|e| e.value.as_str()).collect();
        let missing = expected.iter().filter(|v| !held.contains(v.as_str())).count();
        if missing == 0 || Instant::now() >= deadline {
            if missing > 0 {
                tracing::warn!(%topic, missing, "the dead-letter queue still lacks expected messages");
            }
            return last;
        }
        tracing::debug!(%topic, missing, "waiting for dead letters");
        tokio::time::sleep(ERROR_PAUSE * 5).await;
    }
}

/// Every entry of partition 0 of `topic`, from its earliest offset to its end offset now.
async fn read_once(client: &Client, topic: &str) -> sluice_client::Result<Vec<DeadLetter>> {
    let config = ConsumerConfig { start: SeekTo::Earliest, fetch_max_bytes: FETCH_BYTES, ..ConsumerConfig::default() };
    let mut consumer = client.consumer(config)?;
    consumer.assign(topic, &[0]).await?;
    let start = consumer.seek(0, SeekTo::Earliest).await?;
    let end = consumer.end_offsets().await?.get(&0).copied().unwrap_or(start);
    let mut entries = Vec::new();
    while consumer.position(0).unwrap_or(start) < end {
        for record in consumer.poll(POLL_WAIT).await? {
            if record.offset() < end {
                entries.push(entry(&record));
            }
        }
    }
    Ok(entries)
}

/// A dead letter as the history keeps it.
fn entry(record: &ConsumedRecord) -> DeadLetter {
    let prop = |name: &str| record.properties().find(|(k, _)| *k == name).map(|(_, v)| v.to_owned());
    let number = |name: &str| prop(name).and_then(|v| v.parse::<u64>().ok());
    let origin = number("sluice.dlq.partition").zip(number("sluice.dlq.offset"));
    DeadLetter {
        offset: record.offset(),
        value: value_text(record.value()),
        origin: origin.and_then(|(p, o)| Some((u32::try_from(p).ok()?, o))),
        attempts: number("sluice.dlq.attempts").and_then(|a| u32::try_from(a).ok()),
        reason: prop("sluice.dlq.reason").unwrap_or_default(),
    }
}
