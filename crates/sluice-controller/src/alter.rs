//! [`TopicConfigChanges`]: what `AlterTopicConfig` changes in a running topic's settings, and
//! the rules of which settings may change.
//!
//! Alterable are the settings every broker reads from the metadata each time it uses them:
//! retention (the retention pass), `max_message_bytes` (every produce) and `compression`. The
//! others shape what already exists and are refused: the partition count and replication factor
//! are the topic's Raft groups and their replicas, and `flush_interval_ms` is fixed in each
//! replica's Raft configuration when its group starts.

pub use sluice_common::ConfigChange;
use sluice_common::record::TopicCompression;

use crate::config::TopicConfig;
use crate::error::ControllerError;

/// The settings an `AlterTopicConfig` changes; `None` leaves a setting as it is.
///
/// `partitions`, `replication_factor` and `flush_interval_ms` cannot be altered: they are here
/// so that a request for them is carried to the state machine and refused there, saying why,
/// like every other invalid change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicConfigChanges {
    /// A new `retention_ms`, or back to the broker default (keep everything).
    pub retention_ms: Option<ConfigChange<u64>>,
    /// A new `retention_bytes`, or back to the broker default (no limit).
    pub retention_bytes: Option<ConfigChange<u64>>,
    /// A new largest message; batches already stored are kept whatever their size.
    pub max_message_bytes: Option<u32>,
    /// A new compression policy; it applies to batches written from then on.
    pub compression: Option<TopicCompression>,
    /// Not alterable: refused.
    pub partitions: Option<u32>,
    /// Not alterable: refused.
    pub replication_factor: Option<u32>,
    /// Not alterable: refused.
    pub flush_interval_ms: Option<u64>,
}

impl TopicConfigChanges {
    /// Whether nothing would change.
    pub fn is_empty(&self) -> bool {
        *self == TopicConfigChanges::default()
    }

    /// Checks what does not depend on the topic: at least one change, none of a fixed setting.
    /// The broker calls it before proposing; the state machine again (through
    /// [`TopicConfigChanges::apply_to`]) when applying.
    pub fn check(&self) -> Result<(), ControllerError> {
        let fixed = |setting: &str, why: &str| {
            Err(ControllerError::InvalidConfig(format!("{setting} cannot be altered: {why}; nothing was changed")))
        };
        if self.partitions.is_some() {
            return fixed(
                "partitions",
                "a topic's partition count is fixed when it is created (changing it is not supported yet); \
                 create a new topic with more partitions",
            );
        }
        if self.replication_factor.is_some() {
            return fixed("replication_factor", "a topic's replicas are placed when it is created");
        }
        if self.flush_interval_ms.is_some() {
            return fixed(
                "flush_interval_ms",
                "each replica fixes its flush policy when it starts; create a new topic with the policy wanted",
            );
        }
        if self.is_empty() {
            return Err(ControllerError::InvalidConfig(
                "no change given; alter retention_ms, retention_bytes, max_message_bytes or compression".into(),
            ));
        }
        Ok(())
    }

    /// `config` with these changes made, checked like a new topic's settings; `config` itself
    /// is left alone, so a refused change changes nothing.
    pub fn apply_to(&self, config: &TopicConfig) -> Result<TopicConfig, ControllerError> {
        self.check()?;
        let mut altered = config.clone();
        if let Some(change) = self.retention_ms {
            altered.retention_ms = change.value();
        }
        if let Some(change) = self.retention_bytes {
            altered.retention_bytes = change.value();
        }
        if let Some(bytes) = self.max_message_bytes {
            altered.max_message_bytes = bytes;
        }
        if let Some(compression) = self.compression {
            altered.compression = compression;
        }
        altered.validate()?;
        Ok(altered)
    }
}

#[cfg(test)]
mod tests {
    use sluice_common::record::Compression;

    use super::*;

    fn refusal(changes: &TopicConfigChanges) -> String {
        match changes.apply_to(&TopicConfig::new(3, 3)) {
            Err(ControllerError::InvalidConfig(msg)) => msg,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn changes_set_and_clear_only_what_they_name() {
        let before =
            TopicConfig { retention_ms: Some(60_000), retention_bytes: Some(1 << 20), ..TopicConfig::new(3, 3) };
        let changes = TopicConfigChanges {
            retention_ms: Some(ConfigChange::Clear),
            max_message_bytes: Some(512),
            compression: Some(TopicCompression::Codec(Compression::Zstd)),
            ..TopicConfigChanges::default()
        };
        let after = changes.apply_to(&before).unwrap();
        let expected = TopicConfig {
            retention_ms: None,
            max_message_bytes: 512,
            compression: TopicCompression::Codec(Compression::Zstd),
            ..before.clone()
        };
        assert_eq!(after, expected);
        let bytes = TopicConfigChanges { retention_bytes: Some(ConfigChange::Set(7)), ..TopicConfigChanges::default() };
        assert_eq!(bytes.apply_to(&before).unwrap().retention_bytes, Some(7));
    }

    #[test]
    fn fixed_settings_and_empty_changes_are_refused_saying_why() {
        let partitions = refusal(&TopicConfigChanges { partitions: Some(6), ..TopicConfigChanges::default() });
        assert!(partitions.contains("partitions cannot be altered") && partitions.contains("not supported yet"));
        let rf = refusal(&TopicConfigChanges { replication_factor: Some(1), ..TopicConfigChanges::default() });
        assert!(rf.contains("replication_factor cannot be altered"), "{rf}");
        let flush = refusal(&TopicConfigChanges { flush_interval_ms: Some(5), ..TopicConfigChanges::default() });
        assert!(flush.contains("flush_interval_ms cannot be altered"), "{flush}");
        let empty = refusal(&TopicConfigChanges::default());
        assert!(empty.contains("no change given"), "{empty}");
    }

    #[test]
    fn altered_values_are_range_checked_like_new_topics() {
        let zero = refusal(&TopicConfigChanges { max_message_bytes: Some(0), ..TopicConfigChanges::default() });
        assert!(zero.contains("max_message_bytes is 0"), "{zero}");
        let retention =
            TopicConfigChanges { retention_ms: Some(ConfigChange::Set(0)), ..TopicConfigChanges::default() };
        assert!(refusal(&retention).contains("retention_ms is 0"));
    }
}
