//! Group records in `__consumer_offsets`: how a list of [`GroupRecord`]s becomes one record
//! batch (one Raft entry, so the records of one decision are applied all or not at all) and
//! back. Pure codec, no I/O.
//!
//! ```text
//! an ordinary record batch (docs/FORMAT.md), producer id -1, one message per GroupRecord:
//!   key   = the group name (absent for a checkpoint marker, which concerns every group)
//!   value = the GroupRecord, protobuf-encoded (crates/sluice-proto/proto/internal.proto)
//!   timestamp = when the coordinator wrote it
//! ```

use bytes::Bytes;
use prost::Message;
use sluice_common::record::{BatchBuilder, BatchError, ProducerStamp, Record, RecordBatch};
use sluice_proto::internal::GroupRecord;
use sluice_proto::internal::group_record::Change;

/// Why a batch of `__consumer_offsets` does not hold valid group records.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// A message of the batch could not be read.
    #[error("group records batch is malformed: {0}")]
    Batch(#[from] BatchError),
    /// A message's value is not a protobuf `GroupRecord`.
    #[error("message {index} of the group records batch is not a GroupRecord: {source}")]
    Value {
        /// The message's position in the batch.
        index: usize,
        /// What protobuf decoding found.
        source: prost::DecodeError,
    },
    /// A `GroupRecord` with no change, or with no group where it needs one.
    #[error("message {index} of the group records batch is incomplete: {what}")]
    Incomplete {
        /// The message's position in the batch.
        index: usize,
        /// What is missing.
        what: &'static str,
    },
    /// The message's key is not the record's group.
    #[error("message {index} of the group records batch has key {key:?} but is about group {group:?}")]
    KeyMismatch {
        /// The message's position in the batch.
        index: usize,
        /// The key, lossily decoded.
        key: String,
        /// The group named in the value.
        group: String,
    },
}

/// One plain record batch holding `records` in order, stamped `timestamp_ms`.
pub(crate) fn encode_batch(records: &[GroupRecord], timestamp_ms: i64) -> Bytes {
    let messages: Vec<Record> = records
        .iter()
        .map(|r| Record {
            key: key_of(r).map(|g| Bytes::copy_from_slice(g.as_bytes())),
            value: r.encode_to_vec().into(),
            timestamp_ms,
            ..Record::default()
        })
        .collect();
    let capacity = messages.iter().map(|m| m.encoded_len(timestamp_ms)).sum::<usize>();
    let mut batch = BatchBuilder::new(ProducerStamp::NONE, sluice_common::record::BATCH_HEADER_LEN + capacity);
    for m in &messages {
        batch.push(m);
    }
    batch.finish()
}

/// Bytes of a record's framing in a batch, at most: its length, timestamp delta, key and
/// value lengths, and empty tag and properties (docs/FORMAT.md).
const MESSAGE_FRAMING_BYTES: usize = 32;

/// The most bytes `record` takes in a batch made by [`encode_batch`].
pub(crate) fn message_bytes(record: &GroupRecord) -> usize {
    record.group.len() + record.encoded_len() + MESSAGE_FRAMING_BYTES
}

/// The group records of `batch`, in order.
pub(crate) fn decode_batch(batch: &RecordBatch) -> Result<Vec<GroupRecord>, DecodeError> {
    let mut out = Vec::with_capacity(batch.header().count as usize);
    for (index, message) in batch.records().enumerate() {
        let message = message?;
        let record =
            GroupRecord::decode(message.value.as_ref()).map_err(|source| DecodeError::Value { index, source })?;
        check(index, &record, message.key.as_deref())?;
        out.push(record);
    }
    Ok(out)
}

/// The message key of a record: its group, except for the group-less checkpoint marker.
fn key_of(record: &GroupRecord) -> Option<&str> {
    (!record.group.is_empty()).then_some(record.group.as_str())
}

fn check(index: usize, record: &GroupRecord, key: Option<&[u8]>) -> Result<(), DecodeError> {
    let incomplete = |what| Err(DecodeError::Incomplete { index, what });
    match &record.change {
        None => return incomplete("it has no change"),
        Some(Change::Checkpoint(_)) => {}
        Some(_) if record.group.is_empty() => return incomplete("it names no group"),
        Some(_) => {}
    }
    if key != key_of(record).map(str::as_bytes) {
        return Err(DecodeError::KeyMismatch {
            index,
            key: key.map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
            group: record.group.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
