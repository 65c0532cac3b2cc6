//! [`TopicPartition`]: one partition of one topic, the unit a group assigns, a consumer reads
//! and an offset is committed for.

use std::fmt;
use std::sync::Arc;

/// One partition of one topic. Cheap to clone (the name is shared).
///
/// ```
/// use sluice_client::TopicPartition;
/// let tp = TopicPartition::new("orders", 3);
/// assert_eq!((tp.topic(), tp.partition()), ("orders", 3));
/// assert_eq!(tp.to_string(), "orders/3");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    topic: Arc<str>,
    partition: u32,
}

impl TopicPartition {
    /// Partition `partition` of `topic`.
    ///
    /// ```
    /// let tp = sluice_client::TopicPartition::new("orders", 0);
    /// ```
    pub fn new(topic: impl Into<Arc<str>>, partition: u32) -> TopicPartition {
        TopicPartition { topic: topic.into(), partition }
    }

    /// The topic.
    ///
    /// ```
    /// assert_eq!(sluice_client::TopicPartition::new("orders", 0).topic(), "orders");
    /// ```
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition number.
    ///
    /// ```
    /// assert_eq!(sluice_client::TopicPartition::new("orders", 7).partition(), 7);
    /// ```
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The topic name, shared.
    pub(crate) fn topic_arc(&self) -> &Arc<str> {
        &self.topic
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}
