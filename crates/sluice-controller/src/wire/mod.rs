//! The protobuf messages commands, replies and snapshots are encoded as, and their conversion
//! to and from the domain types — the one boundary between the two. Messages are hand-written
//! structs with prost's derive macros (no `.proto` file, no build script); each file draws its
//! messages in protobuf notation. Evolve a message only by adding fields with new tags.

pub(crate) mod command;
pub(crate) mod reply;
pub(crate) mod snapshot;

use sluice_common::TopicName;

use crate::command::DecodeError;

/// Validates a topic name read from a reply or snapshot (commands keep theirs as strings).
fn topic_name(field: &'static str, name: String) -> Result<TopicName, DecodeError> {
    TopicName::new(name).map_err(|e| DecodeError::InvalidField { field, reason: e.to_string() })
}
