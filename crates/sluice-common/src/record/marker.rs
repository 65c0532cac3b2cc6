//! Transaction markers: the control batch a transaction coordinator writes into each partition
//! a transaction touched, to commit or abort what the producer wrote there
//! (docs/TRANSACTIONS.md). Pure codec, no I/O.
//!
//! ```text
//! a record batch (docs/FORMAT.md) with attrs bits 3 (transactional) and 4 (control) set,
//! the transaction's producer id, the *marker epoch* (the producer's epoch + 1) and base_seq -1,
//! holding exactly one record:
//!   key   = | version u16 LE = 0 | type u16 LE: 0 = abort, 1 = commit |
//!   value = empty
//!   timestamp = when the coordinator decided
//! ```
//! Kafka's control record key has the same two fields (big-endian there). A marker gets an
//! offset like any batch; consumers never see it as a message.

use bytes::Bytes;

use super::{BatchBuilder, BatchError, ProducerStamp, Record, RecordBatch};

/// The marker key's version this build writes and reads.
const MARKER_VERSION: u16 = 0;
const TYPE_ABORT: u16 = 0;
const TYPE_COMMIT: u16 = 1;

/// Why a control batch is not a valid marker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarkerError {
    /// The batch itself is malformed.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// Not exactly one record, not a control batch, or an unknown key.
    #[error("not a transaction marker: {0}")]
    Shape(String),
}

/// A control batch committing (`commit`) or aborting producer `producer_id`'s transaction, with
/// marker epoch `epoch`.
pub fn marker_batch(producer_id: i64, epoch: i16, commit: bool, timestamp_ms: i64) -> Bytes {
    let stamp = ProducerStamp { producer_id, epoch, base_sequence: -1 };
    let mut b = BatchBuilder::new(stamp, 96).transactional(true).control(true);
    let kind = if commit { TYPE_COMMIT } else { TYPE_ABORT };
    let mut key = [0u8; 4];
    key[..2].copy_from_slice(&MARKER_VERSION.to_le_bytes());
    key[2..].copy_from_slice(&kind.to_le_bytes());
    b.push(&Record { key: Some(Bytes::copy_from_slice(&key)), timestamp_ms, ..Record::default() });
    b.finish()
}

/// Whether the marker `batch` commits (`true`) or aborts (`false`).
pub fn parse_marker(batch: Bytes) -> Result<bool, MarkerError> {
    let parsed = RecordBatch::parse(batch)?;
    let h = parsed.header();
    if !h.control || !h.transactional || h.count != 1 {
        return Err(MarkerError::Shape(format!(
            "control {}, transactional {}, {} records (a marker is a transactional control batch of one record)",
            h.control, h.transactional, h.count
        )));
    }
    let record = parsed.records().next().expect("count is 1")?;
    let key = record.key.as_deref().unwrap_or_default();
    if key.len() != 4 || u16::from_le_bytes([key[0], key[1]]) != MARKER_VERSION {
        return Err(MarkerError::Shape(format!("marker key {key:?} is not version {MARKER_VERSION}")));
    }
    match u16::from_le_bytes([key[2], key[3]]) {
        TYPE_COMMIT => Ok(true),
        TYPE_ABORT => Ok(false),
        other => Err(MarkerError::Shape(format!("marker type {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::parse_header;

    #[test]
    fn markers_round_trip_and_carry_the_producer_and_marker_epoch() {
        for commit in [true, false] {
            let batch = marker_batch(42, 7, commit, 1_000);
            let h = parse_header(&batch).unwrap();
            assert!(h.control && h.transactional);
            assert_eq!((h.producer.producer_id, h.producer.epoch, h.count), (42, 7, 1));
            assert_eq!(parse_marker(batch).unwrap(), commit);
        }
    }

    #[test]
    fn a_plain_batch_or_a_foreign_key_is_not_a_marker() {
        let mut b = BatchBuilder::new(ProducerStamp::NONE, 64);
        b.push(&Record::new("x", 1));
        assert!(matches!(parse_marker(b.finish()), Err(MarkerError::Shape(_))));
        let mut b = BatchBuilder::new(ProducerStamp::NONE, 64).transactional(true).control(true);
        b.push(&Record { key: Some(Bytes::from_static(&[0, 0, 9, 0])), ..Record::default() });
        assert_eq!(parse_marker(b.finish()), Err(MarkerError::Shape("marker type 9".into())));
    }
}
