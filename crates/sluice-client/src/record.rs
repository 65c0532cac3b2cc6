//! Records as the SDK's callers see them: what a producer sends, what it gets back, and what a
//! consumer receives.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sluice_common::delay::DelayedId;
use sluice_common::record::{DELIVER_AT_PROPERTY, Record, RecordView};

/// A message to send.
///
/// ```
/// use sluice_client::ProducerRecord;
/// let record = ProducerRecord::new("orders", "order 17 placed").key("customer-4").tag("created").property("source", "web");
/// assert_eq!(record.topic(), "orders");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    topic: Arc<str>,
    partition: Option<u32>,
    pub(crate) record: Record,
    timestamp_set: bool,
}

impl ProducerRecord {
    /// A record for `topic` with only a value; its timestamp is the time it is sent.
    ///
    /// Pass an `Arc<str>` topic to send many records without copying the name each time.
    pub fn new(topic: impl Into<Arc<str>>, value: impl Into<Bytes>) -> ProducerRecord {
        ProducerRecord { topic: topic.into(), partition: None, record: Record::new(value, 0), timestamp_set: false }
    }

    /// Sets the key: records with equal keys go to the same partition (murmur2, as Kafka).
    pub fn key(mut self, key: impl Into<Bytes>) -> ProducerRecord {
        self.record.key = Some(key.into());
        self
    }

    /// Sets the tag (RocketMQ-style, for filtering).
    pub fn tag(mut self, tag: impl Into<String>) -> ProducerRecord {
        self.record.tag = Some(tag.into());
        self
    }

    /// Adds a string header.
    pub fn property(mut self, name: impl Into<String>, value: impl Into<String>) -> ProducerRecord {
        self.record.properties.push((name.into(), value.into()));
        self
    }

    /// Sends to this partition instead of choosing one by key or in turn.
    pub fn partition(mut self, partition: u32) -> ProducerRecord {
        self.partition = Some(partition);
        self
    }

    /// Delivers the record at `deliver_at_ms` (ms since the Unix epoch) rather than now: it
    /// waits in its partition, invisible to consumers, until then, and is then appended once
    /// (docs/DELAYS.md). A time in the past delivers at once; one further ahead than the
    /// brokers' `max_delay_ms` (365 days by default) is refused with `INVALID_DELAY`.
    pub fn deliver_at(mut self, deliver_at_ms: u64) -> ProducerRecord {
        self.record.properties.retain(|(name, _)| name != DELIVER_AT_PROPERTY);
        self.record.properties.push((DELIVER_AT_PROPERTY.to_owned(), deliver_at_ms.to_string()));
        self
    }

    /// Delivers the record `delay` after it is enqueued (see [`ProducerRecord::deliver_at`]).
    pub fn delay(self, delay: std::time::Duration) -> ProducerRecord {
        let at = now_ms().max(0) as u64;
        self.deliver_at(at.saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)))
    }

    /// Whether the record is delayed (has a delivery time).
    pub fn is_delayed(&self) -> bool {
        self.record.properties.iter().any(|(name, _)| name == DELIVER_AT_PROPERTY)
    }

    /// Sets the create time, in ms since the Unix epoch (default: when it is sent).
    pub fn timestamp_ms(mut self, timestamp_ms: i64) -> ProducerRecord {
        self.record.timestamp_ms = timestamp_ms;
        self.timestamp_set = true;
        self
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub(crate) fn topic_arc(&self) -> &Arc<str> {
        &self.topic
    }

    /// The explicit partition, if one was set.
    pub fn explicit_partition(&self) -> Option<u32> {
        self.partition
    }

    /// The key, if any.
    pub fn key_bytes(&self) -> Option<&Bytes> {
        self.record.key.as_ref()
    }

    /// Bytes the record counts against a topic's `max_message_bytes`: key, value, tag and
    /// properties.
    pub fn size_bytes(&self) -> usize {
        let r = &self.record;
        r.key.as_ref().map_or(0, Bytes::len)
            + r.value.len()
            + r.tag.as_ref().map_or(0, String::len)
            + r.properties.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
    }

    /// Stamps the send time unless the caller set one.
    pub(crate) fn stamp_now(&mut self) {
        if !self.timestamp_set {
            self.record.timestamp_ms = now_ms();
            self.timestamp_set = true;
        }
    }
}

/// Where an acknowledged record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The partition.
    pub partition: u32,
    /// The record's offset in the partition; [`RecordMetadata::NO_OFFSET`] for a delayed
    /// record, which gets its offset only when it is released.
    pub offset: u64,
    /// A delayed record's id, to cancel it with ([`Producer::cancel_delayed`](crate::Producer::cancel_delayed)).
    pub delayed_id: Option<DelayedId>,
}

impl RecordMetadata {
    /// The offset of a record not yet in the partition (a delayed one), as Kafka's -1.
    pub const NO_OFFSET: u64 = u64::MAX;

    /// Whether the record has its offset (it is not a pending delayed record).
    pub fn has_offset(&self) -> bool {
        self.offset != Self::NO_OFFSET
    }
}

/// A record read by a [`Consumer`](crate::Consumer). Key, value, tag and properties are slices
/// of the fetched batch: reading them copies nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: u32,
    pub(crate) offset: u64,
    pub(crate) view: RecordView,
    /// Which delivery of the message this is: 1 for a first delivery, more for a group's
    /// retry (docs/RETRIES.md).
    pub(crate) attempt: u32,
}

impl ConsumedRecord {
    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The record's offset in its partition.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The key, if any.
    pub fn key(&self) -> Option<&Bytes> {
        self.view.key.as_ref()
    }

    /// The value.
    pub fn value(&self) -> &Bytes {
        &self.view.value
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.view.tag()
    }

    /// The create time, in ms since the Unix epoch.
    pub fn timestamp_ms(&self) -> i64 {
        self.view.timestamp_ms
    }

    /// The string headers, in the order they were added.
    pub fn properties(&self) -> impl Iterator<Item = (&str, &str)> {
        self.view.properties()
    }

    /// Which delivery of this message this is to its consumer group: 1 for a first delivery,
    /// 2 and more for a retry after a nack (always 1 outside a group).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
impl ConsumedRecord {
    /// A record as a fetch would return it, for unit tests.
    pub(crate) fn for_test(
        topic: &str,
        partition: u32,
        offset: u64,
        key: Option<&str>,
        attempt: u32,
    ) -> ConsumedRecord {
        use sluice_common::record::{BatchBuilder, ProducerStamp, RecordBatch};
        let mut record = Record::new(Bytes::from_static(b"v"), 1_000);
        record.key = key.map(|k| Bytes::copy_from_slice(k.as_bytes()));
        let mut builder = BatchBuilder::new(ProducerStamp::NONE, 64);
        builder.push(&record);
        let batch = RecordBatch::parse(builder.finish()).expect("a batch just built parses");
        let view = batch.records().next().expect("one record").expect("a record just built decodes");
        ConsumedRecord { topic: Arc::from(topic), partition, offset, view, attempt }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_fill_every_field_and_size_counts_all_parts() {
        let mut r = ProducerRecord::new("t", "vvvv").key("kk").tag("ttt").property("a", "bc").partition(2);
        assert_eq!(r.explicit_partition(), Some(2));
        assert_eq!(r.size_bytes(), 2 + 4 + 3 + 3);
        r.stamp_now();
        assert!(r.record.timestamp_ms > 1_600_000_000_000);
        let fixed = ProducerRecord::new("t", "v").timestamp_ms(42);
        let mut stamped = fixed.clone();
        stamped.stamp_now();
        assert_eq!(stamped.record.timestamp_ms, 42, "an explicit timestamp is kept");
    }
}
