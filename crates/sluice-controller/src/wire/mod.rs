//! The protobuf messages commands, replies and snapshots are encoded as, and their conversion
//! to and from the domain types — the one boundary between the two. Messages are hand-written
//! structs with prost's derive macros (no `.proto` file, no build script); each file draws its
//! messages in protobuf notation. Evolve a message only by adding fields with new tags.

pub(crate) mod alter;
pub(crate) mod command;
pub(crate) mod reply;
pub(crate) mod snapshot;

use sluice_common::TopicName;
use sluice_common::record::TopicCompression;

use crate::command::DecodeError;

/// Validates a topic name read from a reply or snapshot (commands keep theirs as strings).
fn topic_name(field: &'static str, name: String) -> Result<TopicName, DecodeError> {
    TopicName::new(name).map_err(|e| DecodeError::InvalidField { field, reason: e.to_string() })
}

/// A topic's compression as written: absent for [`TopicCompression::Producer`], so a default
/// topic is written exactly as before the setting existed.
fn compression_name(compression: TopicCompression) -> Option<String> {
    (compression != TopicCompression::Producer).then(|| compression.name().to_owned())
}

/// A topic's compression as read: absent (written before the setting existed, or the default)
/// is [`TopicCompression::Producer`]; a name this build does not know is refused.
fn compression_from(field: &'static str, name: Option<String>) -> Result<TopicCompression, DecodeError> {
    name.map_or(Ok(TopicCompression::Producer), |n| {
        TopicCompression::from_name(&n).map_err(|reason| DecodeError::InvalidField { field, reason })
    })
}
