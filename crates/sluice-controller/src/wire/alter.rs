//! Wire form of [`ControllerCommand::AlterTopicConfig`] and of the topic configs its reply
//! carries.
//!
//! ```text
//! message AlterTopicConfigMsg {
//!   string name = 1;
//!   optional uint64 retention_ms = 2;     bool clear_retention_ms = 3;
//!   optional uint64 retention_bytes = 4;  bool clear_retention_bytes = 5;
//!   optional uint32 max_message_bytes = 6;
//!   optional string compression = 7;      // a TopicCompression name; absent: unchanged
//!   optional uint32 partitions = 8;       // not alterable: carried to be refused
//!   optional uint32 replication_factor = 9;
//!   optional uint64 flush_interval_ms = 10;
//! }
//! message TopicConfigMsg {
//!   uint32 partitions = 1; uint32 replication_factor = 2; optional uint64 retention_ms = 3;
//!   optional uint64 retention_bytes = 4; uint32 max_message_bytes = 5;
//!   optional uint64 flush_interval_ms = 6; optional string compression = 7;  // absent: producer
//! }
//! ```
//!
//! A change is either a value or a clear flag: both at once cannot be encoded from a
//! [`ConfigChange`], and is refused when decoded.

use sluice_common::record::TopicCompression;

use super::{compression_from, compression_name};
use crate::alter::{ConfigChange, TopicConfigChanges};
use crate::command::{ControllerCommand, DecodeError};
use crate::config::TopicConfig;

/// A topic's settings to change.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct AlterTopicConfigMsg {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(uint64, optional, tag = "2")]
    pub retention_ms: Option<u64>,
    #[prost(bool, tag = "3")]
    pub clear_retention_ms: bool,
    #[prost(uint64, optional, tag = "4")]
    pub retention_bytes: Option<u64>,
    #[prost(bool, tag = "5")]
    pub clear_retention_bytes: bool,
    #[prost(uint32, optional, tag = "6")]
    pub max_message_bytes: Option<u32>,
    #[prost(string, optional, tag = "7")]
    pub compression: Option<String>,
    #[prost(uint32, optional, tag = "8")]
    pub partitions: Option<u32>,
    #[prost(uint32, optional, tag = "9")]
    pub replication_factor: Option<u32>,
    #[prost(uint64, optional, tag = "10")]
    pub flush_interval_ms: Option<u64>,
}

impl AlterTopicConfigMsg {
    pub(crate) fn new(name: String, c: &TopicConfigChanges) -> AlterTopicConfigMsg {
        let (retention_ms, clear_retention_ms) = split(c.retention_ms);
        let (retention_bytes, clear_retention_bytes) = split(c.retention_bytes);
        AlterTopicConfigMsg {
            name,
            retention_ms,
            clear_retention_ms,
            retention_bytes,
            clear_retention_bytes,
            max_message_bytes: c.max_message_bytes,
            // Producer is written by name here: absent means "unchanged".
            compression: c.compression.map(|c| c.name().to_owned()),
            partitions: c.partitions,
            replication_factor: c.replication_factor,
            flush_interval_ms: c.flush_interval_ms,
        }
    }

    pub(crate) fn into_command(self) -> Result<ControllerCommand, DecodeError> {
        let compression = self
            .compression
            .map(|n| TopicCompression::from_name(&n))
            .transpose()
            .map_err(|reason| DecodeError::InvalidField { field: "compression", reason })?;
        let changes = TopicConfigChanges {
            retention_ms: join("retention_ms", self.retention_ms, self.clear_retention_ms)?,
            retention_bytes: join("retention_bytes", self.retention_bytes, self.clear_retention_bytes)?,
            max_message_bytes: self.max_message_bytes,
            compression,
            partitions: self.partitions,
            replication_factor: self.replication_factor,
            flush_interval_ms: self.flush_interval_ms,
        };
        Ok(ControllerCommand::AlterTopicConfig { name: self.name, changes })
    }
}

fn split(change: Option<ConfigChange<u64>>) -> (Option<u64>, bool) {
    match change {
        None => (None, false),
        Some(ConfigChange::Set(v)) => (Some(v), false),
        Some(ConfigChange::Clear) => (None, true),
    }
}

fn join(field: &'static str, value: Option<u64>, clear: bool) -> Result<Option<ConfigChange<u64>>, DecodeError> {
    match (value, clear) {
        (None, false) => Ok(None),
        (Some(v), false) => Ok(Some(ConfigChange::Set(v))),
        (None, true) => Ok(Some(ConfigChange::Clear)),
        (Some(_), true) => {
            Err(DecodeError::InvalidField { field, reason: "both a value and a clear; give one or the other".into() })
        }
    }
}

/// A whole topic config.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TopicConfigMsg {
    #[prost(uint32, tag = "1")]
    pub partitions: u32,
    #[prost(uint32, tag = "2")]
    pub replication_factor: u32,
    #[prost(uint64, optional, tag = "3")]
    pub retention_ms: Option<u64>,
    #[prost(uint64, optional, tag = "4")]
    pub retention_bytes: Option<u64>,
    #[prost(uint32, tag = "5")]
    pub max_message_bytes: u32,
    #[prost(uint64, optional, tag = "6")]
    pub flush_interval_ms: Option<u64>,
    #[prost(string, optional, tag = "7")]
    pub compression: Option<String>,
}

impl From<&TopicConfig> for TopicConfigMsg {
    fn from(c: &TopicConfig) -> TopicConfigMsg {
        TopicConfigMsg {
            partitions: c.partitions,
            replication_factor: c.replication_factor,
            retention_ms: c.retention_ms,
            retention_bytes: c.retention_bytes,
            max_message_bytes: c.max_message_bytes,
            flush_interval_ms: c.flush_interval_ms,
            compression: compression_name(c.compression),
        }
    }
}

impl TryFrom<TopicConfigMsg> for TopicConfig {
    type Error = DecodeError;

    fn try_from(m: TopicConfigMsg) -> Result<TopicConfig, DecodeError> {
        Ok(TopicConfig {
            partitions: m.partitions,
            replication_factor: m.replication_factor,
            retention_ms: m.retention_ms,
            retention_bytes: m.retention_bytes,
            max_message_bytes: m.max_message_bytes,
            flush_interval_ms: m.flush_interval_ms,
            compression: compression_from("compression", m.compression)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use sluice_common::record::Compression;

    use super::*;

    fn decode(msg: &AlterTopicConfigMsg) -> Result<ControllerCommand, DecodeError> {
        AlterTopicConfigMsg::decode(msg.encode_to_vec().as_slice()).unwrap().into_command()
    }

    #[test]
    fn a_value_and_a_clear_of_one_setting_are_refused() {
        let both = AlterTopicConfigMsg { retention_bytes: Some(5), clear_retention_bytes: true, ..Default::default() };
        let e = decode(&both).unwrap_err();
        assert!(matches!(e, DecodeError::InvalidField { field: "retention_bytes", .. }), "{e}");
    }

    #[test]
    fn setting_compression_back_to_producer_is_a_change_and_unknown_codecs_are_refused() {
        let changes =
            TopicConfigChanges { compression: Some(TopicCompression::Producer), ..TopicConfigChanges::default() };
        let msg = AlterTopicConfigMsg::new("t".into(), &changes);
        assert_eq!(msg.compression.as_deref(), Some("producer"));
        assert_eq!(decode(&msg), Ok(ControllerCommand::AlterTopicConfig { name: "t".into(), changes }));
        let unknown = AlterTopicConfigMsg { compression: Some("brotli".into()), ..msg };
        assert!(matches!(decode(&unknown), Err(DecodeError::InvalidField { field: "compression", .. })));
    }

    #[test]
    fn topic_configs_round_trip() {
        let config = TopicConfig {
            retention_bytes: Some(9),
            flush_interval_ms: Some(100),
            compression: TopicCompression::Codec(Compression::Snappy),
            ..TopicConfig::new(4, 2)
        };
        assert_eq!(TopicConfig::try_from(TopicConfigMsg::from(&config)), Ok(config));
    }
}
