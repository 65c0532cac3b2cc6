//! Copying a group's dead letters to another topic, exactly once (docs/RETRIES.md, "Redrive
//! to a topic"): `sluice dlq redrive --to TOPIC`.
//!
//! The copy is a consume-transform-produce loop in transactions: each chunk of dead letters
//! read from `<group>.dlq` is written to the topic in one transaction that also commits the
//! position after it, as the offset of consumer group `<group>.redrive.<topic>` in the DLQ.
//! Redriving twice copies each entry once; a copy that fails midway resumes where its last
//! transaction committed; two copies at once fence each other (one transactional id per group
//! and topic). It starts no earlier than the group's purge cursor (purged entries are not
//! copied). Its position is its own: the in-group redrive (`Admin::redrive_dead_letters`)
//! keeps another.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::config::{ConsumerConfig, SeekTo};
use crate::error::{Error, Result};
use crate::record::{ConsumedRecord, ProducerRecord};
use crate::topic_partition::TopicPartition;
use crate::transaction::{TransactionalConfig, TransactionalProducer};
use sluice_proto::ErrorCode;

/// Dead letters per transaction, at most.
const CHUNK: usize = 500;

/// How long one poll of the dead-letter queue waits.
const POLL_WAIT: Duration = Duration::from_millis(200);

/// What [`Client::redrive_dead_letters_to`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedrivenTo {
    /// Dead letters written to the topic.
    pub copied: u64,
    /// The DLQ offset the next copy to the same topic starts from.
    pub next_offset: u64,
}

/// The consumer group whose committed offset in the DLQ is the position of copies of
/// `group`'s dead letters to `topic`.
pub fn redrive_group(group: &str, topic: &str) -> String {
    format!("{group}.redrive.{topic}")
}

impl Client {
    /// Copies `group`'s dead letters to `topic` (key, tag, value and properties, the
    /// `sluice.dlq.*` ones included), from where the last copy to `topic` stopped, at most
    /// `max` of them and at most `per_second` a second if given; each entry is copied once
    /// however often this is called. Stops at the DLQ's end as it was when called.
    pub async fn redrive_dead_letters_to(
        &self,
        group: &str,
        topic: &str,
        max: u64,
        per_second: Option<u32>,
    ) -> Result<RedrivenTo> {
        let retries = self.admin().describe_retries(group).await?;
        let dlq = TopicPartition::new(retries.dlq_topic.clone(), 0);
        let position_group = redrive_group(group, topic);
        let committed = committed_offset(self, &position_group, &dlq).await?;
        let mut consumer = self.consumer(ConsumerConfig::default())?;
        consumer.assign(dlq.topic(), &[0]).await?;
        let earliest = consumer.seek(0, SeekTo::Earliest).await?;
        let start = committed.unwrap_or(0).max(retries.purge_offset).max(earliest);
        consumer.seek(0, SeekTo::Offset(start)).await?;
        let end = consumer.end_offsets().await?.get(&0).copied().unwrap_or(start);
        let id = format!("sluice-redrive-{group}-{topic}");
        let mut producer = self.transactional_producer(TransactionalConfig::new(id)).await?;
        let target: Arc<str> = Arc::from(topic);
        let (mut copied, mut next) = (0u64, start);
        let began = Instant::now();
        while next < end && copied < max {
            let mut chunk: Vec<ConsumedRecord> = Vec::new();
            let room = chunk_size(max - copied, per_second);
            while chunk.len() < room && consumer.position(0).unwrap_or(next) < end {
                chunk.extend(consumer.poll(POLL_WAIT).await?.into_iter().filter(|r| r.offset() < end));
            }
            chunk.truncate(room);
            let Some(last) = chunk.last().map(ConsumedRecord::offset) else { break };
            copy(&mut producer, &target, &chunk, (&position_group, &dlq, last + 1)).await?;
            copied += chunk.len() as u64;
            next = last + 1;
            consumer.seek(0, SeekTo::Offset(next)).await?;
            pace(began, copied, per_second).await;
        }
        Ok(RedrivenTo { copied, next_offset: next })
    }
}

/// Dead letters per transaction: [`CHUNK`], at most `left`, and at most a tenth of a
/// second's worth when paced.
fn chunk_size(left: u64, per_second: Option<u32>) -> usize {
    let paced = per_second.map_or(CHUNK, |r| (r as usize / 10).clamp(1, CHUNK));
    paced.min(usize::try_from(left).unwrap_or(usize::MAX))
}

/// Waits until `copied` is no more than `per_second` allows since `began`.
async fn pace(began: Instant, copied: u64, per_second: Option<u32>) {
    if let Some(rate) = per_second.filter(|r| *r > 0) {
        let due = began + Duration::from_secs_f64(copied as f64 / f64::from(rate));
        tokio::time::sleep_until(due.into()).await;
    }
}

/// Writes `records` to `topic` and commits the position after them, in one transaction.
async fn copy(
    producer: &mut TransactionalProducer,
    topic: &Arc<str>,
    records: &[ConsumedRecord],
    (group, dlq, after): (&str, &TopicPartition, u64),
) -> Result<()> {
    producer.begin()?;
    let written = async {
        for r in records {
            producer.send(copy_of(topic, r)).await?;
        }
        producer.send_offsets(group, &BTreeMap::from([(dlq.clone(), after)])).await?;
        producer.commit().await
    }
    .await;
    if written.is_err() {
        // Nothing of it is visible; the next call starts from the last committed position.
        let _ = producer.abort().await;
    }
    written
}

/// A dead letter as a record of `topic`.
fn copy_of(topic: &Arc<str>, r: &ConsumedRecord) -> ProducerRecord {
    let mut record = ProducerRecord::new(Arc::clone(topic), r.value().clone());
    if let Some(key) = r.key() {
        record = record.key(key.clone());
    }
    if let Some(tag) = r.tag() {
        record = record.tag(tag);
    }
    for (name, value) in r.properties() {
        record = record.property(name, value);
    }
    record
}

/// The offset `group` committed in `tp`, if any.
async fn committed_offset(client: &Client, group: &str, tp: &TopicPartition) -> Result<Option<u64>> {
    match client.admin().describe_group(group).await {
        Ok(d) => Ok(d.partitions.iter().find(|l| &l.partition == tp).and_then(|l| l.committed_offset)),
        Err(Error::Broker { code: ErrorCode::GroupNotFound, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_copy_commits_a_tenth_of_a_second_at_a_time() {
        assert_eq!(chunk_size(10_000, None), CHUNK);
        assert_eq!(chunk_size(7, None), 7);
        assert_eq!(chunk_size(10_000, Some(1_000)), 100);
        assert_eq!(chunk_size(10_000, Some(3)), 1);
        assert_eq!(redrive_group("billing", "orders"), "billing.redrive.orders");
    }
}
