//! Transaction records in the transaction log: how a list of [`TxnRecord`]s becomes one record
//! batch (one Raft entry, so the records of one decision are applied all or not at all) and
//! back. Pure codec, no I/O.
//!
//! ```text
//! an ordinary record batch (docs/FORMAT.md), producer id -1, one message per TxnRecord:
//!   key   = the transactional id
//!   value = the TxnRecord, protobuf-encoded (crates/sluice-proto/proto/internal.proto)
//!   timestamp = when the coordinator wrote it
//! ```

use bytes::Bytes;
use prost::Message;
use sluice_common::record::{BatchBuilder, BatchError, ProducerStamp, Record, RecordBatch};
use sluice_proto::internal::txn_record::Change;
use sluice_proto::internal::{TxnEndedBy, TxnRecord, TxnState};

use super::state::MAX_EPOCH;

/// Why a batch of the transaction log does not hold valid transaction records.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// A message of the batch could not be read.
    #[error("transaction records batch is malformed: {0}")]
    Batch(#[from] BatchError),
    /// A message's value is not a protobuf `TxnRecord`.
    #[error("message {index} of the transaction records batch is not a TxnRecord: {source}")]
    Value {
        /// The message's position in the batch.
        index: usize,
        /// What protobuf decoding found.
        source: prost::DecodeError,
    },
    /// A `TxnRecord` with no change or no transactional id, or holding what no coordinator
    /// writes (an epoch out of range, an unknown state): replaying it would build a state the
    /// planning cannot reason about.
    #[error("message {index} of the transaction records batch is invalid: {what}")]
    Invalid {
        /// The message's position in the batch.
        index: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// The message's key is not the record's transactional id.
    #[error("message {index} of the transaction records batch has key {key:?} but is about {id:?}")]
    KeyMismatch {
        /// The message's position in the batch.
        index: usize,
        /// The key, lossily decoded.
        key: String,
        /// The transactional id named in the value.
        id: String,
    },
}

/// One plain record batch holding `records` in order, stamped `timestamp_ms`.
pub(crate) fn encode_batch(records: &[TxnRecord], timestamp_ms: i64) -> Bytes {
    let messages: Vec<Record> = records
        .iter()
        .map(|r| Record {
            key: Some(Bytes::copy_from_slice(r.transactional_id.as_bytes())),
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

/// The transaction records of `batch`, in order.
pub(crate) fn decode_batch(batch: &RecordBatch) -> Result<Vec<TxnRecord>, DecodeError> {
    let mut out = Vec::with_capacity(batch.header().count as usize);
    for (index, message) in batch.records().enumerate() {
        let message = message?;
        let record =
            TxnRecord::decode(message.value.as_ref()).map_err(|source| DecodeError::Value { index, source })?;
        check(index, &record, message.key.as_deref())?;
        out.push(record);
    }
    Ok(out)
}

fn check(index: usize, record: &TxnRecord, key: Option<&[u8]>) -> Result<(), DecodeError> {
    let invalid = |what| Err(DecodeError::Invalid { index, what });
    if record.transactional_id.is_empty() {
        return invalid("it names no transactional id");
    }
    match &record.change {
        None => return invalid("it has no change"),
        Some(Change::Removed(_)) => {}
        Some(Change::Put(meta)) => {
            if !(0..=i32::from(MAX_EPOCH)).contains(&meta.epoch) {
                return invalid("its epoch is outside 0 to i16::MAX - 2");
            }
            if TxnState::try_from(meta.state).is_err() {
                return invalid("its state is unknown");
            }
            if TxnEndedBy::try_from(meta.ended_by).is_err() {
                return invalid("its ended_by is unknown");
            }
        }
    }
    if key != Some(record.transactional_id.as_bytes()) {
        return Err(DecodeError::KeyMismatch {
            index,
            key: key.map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
            id: record.transactional_id.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
