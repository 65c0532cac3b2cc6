//! The commands a partition's Raft log carries, encoded inside a [`Command`]'s body.
//!
//! ```text
//! produce   | 1 | record batch (sluice_common::record format) |
//! ```
//! A command is decoded the same way on every replica, so an undecodable one is rejected the
//! same way everywhere (deterministic apply).
//!
//! Stored in the log behind the Raft entry kind byte, a produce entry's payload is
//! `| KIND_NORMAL | 1 | batch |`: [`produce_batch`] finds the batch in it again for fetches.

use bytes::{BufMut, Bytes, BytesMut};
use sluice_common::record::{BatchError, BatchHeader, parse_header};

use crate::codec::KIND_NORMAL;
use crate::typ::Command;

const TAG_PRODUCE: u8 = 1;

/// A decoded partition command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionCommand {
    /// Append one record batch.
    Produce {
        /// The batch's verified header.
        header: BatchHeader,
        /// The whole batch, as the producer sent it.
        batch: Bytes,
    },
}

impl PartitionCommand {
    /// Encodes a produce command for `batch`: one copy of the batch, straight into the bytes the
    /// log stores (behind the entry kind and command tag bytes).
    pub fn produce(batch: &[u8]) -> Command {
        let mut stored = BytesMut::with_capacity(2 + batch.len());
        stored.put_u8(KIND_NORMAL);
        stored.put_u8(TAG_PRODUCE);
        stored.put_slice(batch);
        Command::from_stored(stored.freeze()).expect("starts with the normal kind byte")
    }

    /// Decodes a command; a batch header that fails its checks is reported as such.
    pub fn decode(command: &Command) -> Result<PartitionCommand, CommandError> {
        let body = command.body();
        match body.first() {
            Some(&TAG_PRODUCE) => {
                let batch = body.slice(1..);
                let header = parse_header(&batch).map_err(CommandError::Batch)?;
                Ok(PartitionCommand::Produce { header, batch })
            }
            other => Err(CommandError::UnknownTag(other.copied())),
        }
    }
}

/// The record batch in a stored entry payload, if the entry is a produce command: a slice of
/// `payload`, not a copy. The batch is not checked again (storage checked the entry's CRC when
/// it read it, and the state machine checked the batch when it applied it).
pub fn produce_batch(payload: &Bytes) -> Option<Bytes> {
    (payload.len() >= 2 && payload[0] == KIND_NORMAL && payload[1] == TAG_PRODUCE).then(|| payload.slice(2..))
}

/// Why a command could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Not a command this build knows.
    #[error("unknown partition command tag {0:?}")]
    UnknownTag(Option<u8>),
    /// The record batch is malformed.
    #[error("invalid record batch: {0}")]
    Batch(BatchError),
}

#[cfg(test)]
mod tests {
    use sluice_common::record::{BatchBuilder, ProducerStamp, Record};

    use super::*;

    #[test]
    fn produce_round_trips_and_garbage_is_rejected() {
        let mut b = BatchBuilder::new(ProducerStamp { producer_id: 4, epoch: 1, base_sequence: 0 }, 64);
        b.push(&Record::new("v", 10));
        let batch = b.finish();
        let decoded = PartitionCommand::decode(&PartitionCommand::produce(&batch)).unwrap();
        let PartitionCommand::Produce { header, batch: got } = decoded;
        assert_eq!((header.count, header.producer.producer_id, got), (1, 4, batch.clone()));
        assert_eq!(PartitionCommand::decode(&Command::new(&[9])), Err(CommandError::UnknownTag(Some(9))));
        assert!(matches!(PartitionCommand::decode(&Command::new(&[1, 2, 3])), Err(CommandError::Batch(_))));
    }

    #[test]
    fn a_stored_produce_payload_gives_back_the_batch_without_a_copy() {
        let mut b = BatchBuilder::new(ProducerStamp::NONE, 64);
        b.push(&Record::new("v", 10));
        let batch = b.finish();
        let command = PartitionCommand::produce(&batch);
        let found = produce_batch(command.stored()).expect("a produce payload");
        assert_eq!(found, batch);
        assert_eq!(found.as_ptr(), command.stored()[2..].as_ptr(), "a slice of the stored bytes");
        assert_eq!(produce_batch(&Bytes::from_static(&[KIND_NORMAL, 9, 0])), None, "another command");
        assert_eq!(produce_batch(&Bytes::from_static(&[0])), None, "a blank entry");
    }
}
