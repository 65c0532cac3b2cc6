//! [`TopicConfig`]: what a topic is created with, and the ranges it must lie in.

use sluice_common::record::TopicCompression;

use crate::error::ControllerError;
use crate::limits::{MAX_MESSAGE_BYTES_LIMIT, MAX_PARTITIONS_PER_TOPIC};

/// A topic's settings, given when it is created. Retention, the message size limit and
/// compression can be altered later ([`crate::TopicConfigChanges`]); the rest is fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    /// How many partitions, 1 to [`MAX_PARTITIONS_PER_TOPIC`].
    pub partitions: u32,
    /// Replicas per partition, at least 1 and at most the number of live brokers.
    pub replication_factor: u32,
    /// Messages older than this are deleted; `None` means the broker's default applies.
    pub retention_ms: Option<u64>,
    /// A partition's log is trimmed to about this size; `None` means the broker's default applies.
    pub retention_bytes: Option<u64>,
    /// The largest message accepted, 1 to [`MAX_MESSAGE_BYTES_LIMIT`] bytes.
    pub max_message_bytes: u32,
    /// `None` (the default): a replica reports a write saved only once it is fsynced, so an
    /// acknowledged write is on the disk of a majority. `Some(ms)`, 1 to
    /// [`TopicConfig::MAX_FLUSH_INTERVAL_MS`]: a replica reports it saved once it is in the
    /// operating system's page cache, and fsyncs at least every `ms`; an acknowledged write is
    /// then in the memory of a majority (docs/DURABILITY.md says what a crash can lose).
    pub flush_interval_ms: Option<u64>,
    /// How the brokers store the topic's batches: as the producer sent them
    /// ([`TopicCompression::Producer`], the default, and what topics from before this setting
    /// have), or recompressed with one codec.
    pub compression: TopicCompression,
}

impl TopicConfig {
    /// A config with `partitions` and `replication_factor`, no retention override and 1 MiB
    /// messages at most.
    pub fn new(partitions: u32, replication_factor: u32) -> TopicConfig {
        TopicConfig {
            partitions,
            replication_factor,
            retention_ms: None,
            retention_bytes: None,
            max_message_bytes: 1024 * 1024,
            flush_interval_ms: None,
            compression: TopicCompression::Producer,
        }
    }

    /// The longest `flush_interval_ms`: one hour (the storage layer's limit too).
    pub const MAX_FLUSH_INTERVAL_MS: u64 = 3_600_000;

    /// Checks every setting's range (not whether enough brokers are live: that depends on the
    /// cluster). The controller leader may call this before proposing; the state machine does
    /// again when applying.
    pub fn validate(&self) -> Result<(), ControllerError> {
        let bad = |msg: String| Err(ControllerError::InvalidConfig(msg));
        if self.partitions == 0 || self.partitions > MAX_PARTITIONS_PER_TOPIC {
            return bad(format!("partitions is {}; use 1 to {MAX_PARTITIONS_PER_TOPIC}", self.partitions));
        }
        if self.replication_factor == 0 {
            return bad("replication_factor is 0; use at least 1 (3 survives one failure)".into());
        }
        if self.max_message_bytes == 0 || self.max_message_bytes > MAX_MESSAGE_BYTES_LIMIT {
            let max = self.max_message_bytes;
            return bad(format!("max_message_bytes is {max}; use 1 to {MAX_MESSAGE_BYTES_LIMIT} (64 MiB)"));
        }
        if self.retention_ms == Some(0) {
            return bad("retention_ms is 0, which would delete every message; omit it for the broker default".into());
        }
        if self.retention_bytes == Some(0) {
            return bad("retention_bytes is 0, which would delete every message; omit it for the broker default".into());
        }
        if let Some(ms) = self.flush_interval_ms.filter(|&ms| ms == 0 || ms > Self::MAX_FLUSH_INTERVAL_MS) {
            let max = Self::MAX_FLUSH_INTERVAL_MS;
            return bad(format!(
                "flush_interval_ms is {ms}; use 1 to {max} (one hour), or omit it to fsync before every acknowledgement"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(config: TopicConfig) -> String {
        match config.validate() {
            Err(ControllerError::InvalidConfig(msg)) => msg,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn accepts_the_edges_of_every_range() {
        let mut c = TopicConfig::new(MAX_PARTITIONS_PER_TOPIC, 1);
        c.max_message_bytes = MAX_MESSAGE_BYTES_LIMIT;
        c.retention_ms = Some(1);
        c.retention_bytes = Some(1);
        c.flush_interval_ms = Some(TopicConfig::MAX_FLUSH_INTERVAL_MS);
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(TopicConfig { flush_interval_ms: Some(1), ..TopicConfig::new(1, 3) }.validate(), Ok(()));
        assert_eq!(TopicConfig { max_message_bytes: 1, ..TopicConfig::new(1, 3) }.validate(), Ok(()));
    }

    #[test]
    fn refuses_out_of_range_settings_saying_what_is_accepted() {
        assert!(rejected(TopicConfig::new(0, 1)).contains("use 1 to 10000"));
        assert!(rejected(TopicConfig::new(10_001, 1)).contains("partitions is 10001"));
        assert!(rejected(TopicConfig::new(1, 0)).contains("replication_factor is 0"));
        let zero = TopicConfig { max_message_bytes: 0, ..TopicConfig::new(1, 1) };
        assert!(rejected(zero).contains("64 MiB"));
        let huge = TopicConfig { max_message_bytes: MAX_MESSAGE_BYTES_LIMIT + 1, ..TopicConfig::new(1, 1) };
        assert!(rejected(huge).contains("max_message_bytes is 67108865"));
        assert!(rejected(TopicConfig { retention_ms: Some(0), ..TopicConfig::new(1, 1) }).contains("retention_ms"));
        let bytes = TopicConfig { retention_bytes: Some(0), ..TopicConfig::new(1, 1) };
        assert!(rejected(bytes).contains("retention_bytes"));
        let never = rejected(TopicConfig { flush_interval_ms: Some(0), ..TopicConfig::new(1, 1) });
        assert!(never.contains("flush_interval_ms is 0") && never.contains("omit it"), "{never}");
        let long =
            TopicConfig { flush_interval_ms: Some(TopicConfig::MAX_FLUSH_INTERVAL_MS + 1), ..TopicConfig::new(1, 1) };
        assert!(rejected(long).contains("use 1 to 3600000"));
    }
}
