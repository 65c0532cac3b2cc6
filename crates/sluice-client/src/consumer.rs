//! [`Consumer`] in assign mode: the caller names the partitions and where to read from; the
//! consumer long-polls their leaders (see [`crate::fetcher`]) and hands back records in offset
//! order per partition. To share a topic's partitions among processes and keep their committed
//! positions, use a [`GroupConsumer`](crate::GroupConsumer) instead.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_proto::ErrorCode;

use crate::client::Client;
use crate::config::{ConsumerConfig, GroupConsumerConfig, OffsetReset, SeekTo};
use crate::error::{Error, Result};
use crate::fetcher::Fetcher;
use crate::group::GroupConsumer;
use crate::record::ConsumedRecord;
use crate::topic_partition::TopicPartition;

/// Reads records from assigned partitions of one topic.
///
/// ```no_run
/// # async fn example(client: sluice_client::Client) -> sluice_client::Result<()> {
/// use std::time::Duration;
/// use sluice_client::{ConsumerConfig, SeekTo};
///
/// let mut consumer = client.consumer(ConsumerConfig::default())?;
/// consumer.assign("orders", &[0, 1]).await?;
/// consumer.seek(0, SeekTo::Earliest).await?;
/// for record in consumer.poll(Duration::from_secs(1)).await? {
///     println!("{}/{} {:?}", record.partition(), record.offset(), record.value());
/// }
/// # Ok(()) }
/// ```
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    topic: Option<Arc<str>>,
    fetcher: Fetcher,
}

impl Consumer {
    pub(crate) fn new(client: Client, config: ConsumerConfig) -> Result<Consumer> {
        config.validate()?;
        let fetcher = Fetcher::new(client.clone(), config.fetch_max_bytes, config.fetch_max_wait)
            .with_filter(config.filter.clone().unwrap_or_default(), String::new())
            .with_isolation(config.isolation);
        Ok(Consumer { client, config, topic: None, fetcher })
    }

    /// Makes this consumer a member of `group` subscribed to `topics`: from now on the group's
    /// coordinator assigns it partitions, and it reads them from the group's committed offsets
    /// (see [`GroupConsumer`]). Any assignment is dropped. The fetch settings carry over; a
    /// partition with no committed offset starts at the earliest offset if
    /// [`ConsumerConfig::start`] is [`SeekTo::Earliest`], else at the latest. The other group
    /// settings are [`GroupConsumerConfig::new`]'s defaults: for others (static membership,
    /// timeouts, auto-commit), use [`Client::group_consumer`].
    ///
    /// ```no_run
    /// # async fn example(client: sluice_client::Client) -> sluice_client::Result<()> {
    /// let consumer = client.consumer(sluice_client::ConsumerConfig::default())?;
    /// let mut member = consumer.subscribe("billing", &["orders"]).await?;
    /// let records = member.poll(std::time::Duration::from_secs(1)).await?;
    /// member.close().await?;
    /// # Ok(()) }
    /// ```
    pub async fn subscribe<S: AsRef<str>>(self, group: &str, topics: &[S]) -> Result<GroupConsumer> {
        let auto_offset_reset =
            if matches!(self.config.start, SeekTo::Earliest) { OffsetReset::Earliest } else { OffsetReset::Latest };
        let config = GroupConsumerConfig {
            auto_offset_reset,
            fetch_max_bytes: self.config.fetch_max_bytes,
            fetch_max_wait: self.config.fetch_max_wait,
            filter: self.config.filter.clone(),
            ..GroupConsumerConfig::new(group)
        };
        let mut member = self.client.group_consumer(config)?;
        member.subscribe(topics).await?;
        Ok(member)
    }

    /// Reads `partitions` of `topic` (all of them if the list is empty), replacing any earlier
    /// assignment. Each starts at `ConsumerConfig::start` unless `seek` says otherwise.
    pub async fn assign(&mut self, topic: &str, partitions: &[u32]) -> Result<()> {
        let info = self.client.topic(topic).await?;
        let count = info.partition_count();
        let chosen: Vec<u32> = if partitions.is_empty() { (0..count).collect() } else { partitions.to_vec() };
        if let Some(&bad) = chosen.iter().find(|&&p| p >= count) {
            let message = format!("topic {topic} has {count} partitions; there is no partition {bad}");
            return Err(Error::broker(ErrorCode::UnknownPartition, message));
        }
        let topic: Arc<str> = Arc::from(topic);
        self.fetcher.clear();
        for partition in chosen {
            self.fetcher.insert(TopicPartition::new(Arc::clone(&topic), partition));
        }
        self.topic = Some(topic);
        Ok(())
    }

    /// The assigned topic, if any.
    pub fn topic(&self) -> Option<&str> {
        self.topic.as_deref()
    }

    /// The assigned partitions, in order.
    pub fn assignment(&self) -> Vec<u32> {
        self.fetcher.partitions().map(TopicPartition::partition).collect()
    }

    /// Moves `partition` to `to`, resolving earliest, latest and timestamps with the
    /// partition's leader now. Records already fetched from the old position are dropped.
    pub async fn seek(&mut self, partition: u32, to: SeekTo) -> Result<u64> {
        let tp = self.assigned(partition)?;
        if !self.fetcher.contains(&tp) {
            return Err(Error::InvalidArgument(format!("partition {tp} is not assigned")));
        }
        let offset = self.client.list_offset(tp.topic(), partition, to, self.config.isolation).await?;
        self.fetcher.seek(&tp, offset);
        Ok(offset)
    }

    /// The next offset `poll` will return from `partition`, once it is known (after a seek or
    /// the first poll).
    pub fn position(&self, partition: u32) -> Option<u64> {
        let topic = self.topic.as_ref()?;
        self.fetcher.position(&TopicPartition::new(Arc::clone(topic), partition))
    }

    /// The offset after the last committed message of every assigned partition, asked of the
    /// leaders now.
    pub async fn end_offsets(&self) -> Result<BTreeMap<u32, u64>> {
        let topic = self.assigned_topic()?;
        let mut ends = BTreeMap::new();
        for tp in self.fetcher.partitions() {
            ends.insert(
                tp.partition(),
                self.client.list_offset(&topic, tp.partition(), SeekTo::Latest, self.config.isolation).await?,
            );
        }
        Ok(ends)
    }

    /// Returns the records that arrive within `max_wait`: as soon as any partition has some,
    /// or empty when none does in time. Records of a partition come in offset order, starting
    /// at its position, which moves past them.
    ///
    /// Fails with [`Error::OffsetOutOfRange`] if a position is outside what the partition
    /// holds (seek elsewhere to continue), and with the last error if a partition's leader
    /// stayed unreachable for `ClientConfig::operation_timeout`.
    pub async fn poll(&mut self, max_wait: Duration) -> Result<Vec<ConsumedRecord>> {
        if let Some(error) = self.fetcher.take_error() {
            return Err(error);
        }
        self.assigned_topic()?;
        self.resolve_positions().await?;
        self.fetcher.fetch(Instant::now() + max_wait, None).await
    }

    fn assigned_topic(&self) -> Result<Arc<str>> {
        self.topic.clone().ok_or_else(|| Error::InvalidArgument("assign partitions before seeking or polling".into()))
    }

    fn assigned(&self, partition: u32) -> Result<TopicPartition> {
        Ok(TopicPartition::new(self.assigned_topic()?, partition))
    }

    async fn resolve_positions(&mut self) -> Result<()> {
        for tp in self.fetcher.unresolved() {
            self.seek(tp.partition(), self.config.start).await?;
        }
        Ok(())
    }
}
