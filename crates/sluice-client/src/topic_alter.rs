//! [`Admin::alter_topic_config`]: changing a running topic's retention, message size limit and
//! compression, described by [`TopicConfigChanges`].

pub use sluice_common::ConfigChange;
use sluice_common::record::TopicCompression;
use sluice_proto::v1;

use crate::admin::{Admin, check_name};
use crate::client::Route;
use crate::error::{Error, Result};
use crate::metadata::{TopicConfig, TopicInfo};

/// The settings [`Admin::alter_topic_config`] changes; `None` leaves a setting as it is.
///
/// The partition count, replication factor and `flush_interval_ms` are fixed when a topic is
/// created and cannot be altered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicConfigChanges {
    /// A new `retention_ms`, or back to the broker default (keep everything).
    pub retention_ms: Option<ConfigChange<u64>>,
    /// A new `retention_bytes`, or back to the broker default (no limit).
    pub retention_bytes: Option<ConfigChange<u64>>,
    /// A new largest message; messages already stored are kept whatever their size.
    pub max_message_bytes: Option<u32>,
    /// A new compression policy, for batches written from then on.
    pub compression: Option<TopicCompression>,
}

impl TopicConfigChanges {
    /// No changes yet.
    pub fn new() -> TopicConfigChanges {
        TopicConfigChanges::default()
    }

    /// Keeps messages for this many milliseconds.
    pub fn retention_ms(mut self, ms: u64) -> TopicConfigChanges {
        self.retention_ms = Some(ConfigChange::Set(ms));
        self
    }

    /// Keeps messages however old (the broker default).
    pub fn clear_retention_ms(mut self) -> TopicConfigChanges {
        self.retention_ms = Some(ConfigChange::Clear);
        self
    }

    /// Trims each partition to about this many bytes.
    pub fn retention_bytes(mut self, bytes: u64) -> TopicConfigChanges {
        self.retention_bytes = Some(ConfigChange::Set(bytes));
        self
    }

    /// Trims partitions by no size (the broker default).
    pub fn clear_retention_bytes(mut self) -> TopicConfigChanges {
        self.retention_bytes = Some(ConfigChange::Clear);
        self
    }

    /// Refuses messages larger than this from now on.
    pub fn max_message_bytes(mut self, bytes: u32) -> TopicConfigChanges {
        self.max_message_bytes = Some(bytes);
        self
    }

    /// Stores batches written from now on with this compression.
    pub fn compression(mut self, compression: TopicCompression) -> TopicConfigChanges {
        self.compression = Some(compression);
        self
    }

    /// Whether nothing would change.
    pub fn is_empty(&self) -> bool {
        *self == TopicConfigChanges::default()
    }

    pub(crate) fn to_proto(&self) -> v1::TopicConfigChanges {
        let (retention_ms, clear_retention_ms) = split(self.retention_ms);
        let (retention_bytes, clear_retention_bytes) = split(self.retention_bytes);
        v1::TopicConfigChanges {
            retention_ms,
            clear_retention_ms,
            retention_bytes,
            clear_retention_bytes,
            max_message_bytes: self.max_message_bytes,
            compression: self.compression.map(|c| c.name().to_owned()),
            ..v1::TopicConfigChanges::default()
        }
    }
}

fn split(change: Option<ConfigChange<u64>>) -> (Option<u64>, bool) {
    match change {
        None => (None, false),
        Some(ConfigChange::Set(v)) => (Some(v), false),
        Some(ConfigChange::Clear) => (None, true),
    }
}

/// What [`Admin::alter_topic_config`] did: the topic's settings before, and the topic now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlteredTopic {
    /// The settings before the change.
    pub previous: TopicConfig,
    /// The topic with its settings after the change.
    pub topic: TopicInfo,
}

impl Admin {
    /// Changes settings of topic `name` while it runs. Returns once the controller committed
    /// the change, with the settings before and after; each broker applies it as it applies the
    /// controller's log (within milliseconds), without a restart. `INVALID_CONFIG` for a value
    /// out of range, `UNKNOWN_TOPIC` if there is no such topic.
    pub async fn alter_topic_config(&self, name: &str, changes: &TopicConfigChanges) -> Result<AlteredTopic> {
        check_name(name)?;
        if changes.is_empty() {
            return Err(Error::InvalidArgument(
                "no change given; alter retention_ms, retention_bytes, max_message_bytes or compression".into(),
            ));
        }
        let client = self.client();
        let call = client.call("AlterTopicConfig", Route::Controller);
        let answer = client
            .execute(call, |mut rpc| {
                let request = v1::AlterTopicConfigRequest { name: name.to_owned(), changes: Some(changes.to_proto()) };
                async move { rpc.alter_topic_config(request).await }
            })
            .await?;
        client.refresh_metadata().await?;
        let missing = |what: &str| Error::Protocol {
            address: client.metadata().controller_address().unwrap_or("the controller").to_owned(),
            message: format!("an AlterTopicConfig answer without the {what}"),
        };
        let topic = answer.topic.as_ref().map(TopicInfo::from_proto).ok_or_else(|| missing("topic"))?;
        let previous =
            answer.previous.as_ref().map(TopicConfig::from_proto).ok_or_else(|| missing("previous settings"))?;
        Ok(AlteredTopic { previous, topic })
    }
}

#[cfg(test)]
mod tests {
    use sluice_common::record::Compression;

    use super::*;

    #[test]
    fn changes_travel_as_values_or_clear_flags_and_nothing_else() {
        let changes = TopicConfigChanges::new()
            .clear_retention_ms()
            .retention_bytes(4096)
            .max_message_bytes(100)
            .compression(TopicCompression::Codec(Compression::Gzip));
        let expected = v1::TopicConfigChanges {
            clear_retention_ms: true,
            retention_bytes: Some(4096),
            max_message_bytes: Some(100),
            compression: Some("gzip".into()),
            ..v1::TopicConfigChanges::default()
        };
        assert_eq!(changes.to_proto(), expected);
        let back = TopicConfigChanges::new().compression(TopicCompression::Producer);
        assert_eq!(back.to_proto().compression.as_deref(), Some("producer"), "producer is a change too");
        assert!(TopicConfigChanges::new().is_empty() && !back.is_empty());
        // The last call for a setting wins.
        assert_eq!(
            TopicConfigChanges::new().retention_ms(5).clear_retention_ms().retention_ms,
            Some(ConfigChange::Clear)
        );
    }
}
