//! The commands a partition's Raft log carries, encoded inside a [`Command`]'s body.
//!
//! ```text
//! produce   | 1 | record batch (sluice_common::record format) |
//! trim      | 2 | up_to_index u64 LE | log_start_offset u64 LE |      (17 bytes)
//! ```
//! A command is decoded the same way on every replica, so an undecodable one is rejected the
//! same way everywhere (deterministic apply). Tags are never reused: a broker that predates a
//! tag refuses its commands as [`CommandError::UnknownTag`] and changes nothing.
//!
//! Stored in the log behind the Raft entry kind byte, a produce entry's payload is
//! `| KIND_NORMAL | 1 | batch |`: [`produce_batch`] finds the batch in it again for fetches.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use sluice_common::record::{BatchError, BatchHeader, parse_header};

use crate::codec::KIND_NORMAL;
use crate::typ::Command;

const TAG_PRODUCE: u8 = 1;
const TAG_TRIM: u8 = 2;
/// Bytes of a trim command's body: the tag and two `u64`s.
const TRIM_LEN: usize = 17;

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
    /// Retention: the entries up to and including `up_to_index` are deleted on every replica,
    /// and the partition's log start becomes `log_start_offset`. The leader decides both (see
    /// the broker's retention task); replicas apply them as given, so all trim alike.
    Trim {
        /// The last Raft log index that may go.
        up_to_index: u64,
        /// The first offset after the trimmed entries: the new log start.
        log_start_offset: u64,
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

    /// Encodes a trim command (see [`PartitionCommand::Trim`]).
    pub fn trim(up_to_index: u64, log_start_offset: u64) -> Command {
        let mut stored = BytesMut::with_capacity(1 + TRIM_LEN);
        stored.put_u8(KIND_NORMAL);
        stored.put_u8(TAG_TRIM);
        stored.put_u64_le(up_to_index);
        stored.put_u64_le(log_start_offset);
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
            Some(&TAG_TRIM) => {
                if body.len() != TRIM_LEN {
                    return Err(CommandError::BadLength { tag: TAG_TRIM, len: body.len(), expected: TRIM_LEN });
                }
                let mut fields = &body[1..];
                Ok(PartitionCommand::Trim { up_to_index: fields.get_u64_le(), log_start_offset: fields.get_u64_le() })
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
    /// A fixed-size command has the wrong size.
    #[error("partition command tag {tag} is {len} bytes long; expected {expected}")]
    BadLength {
        /// The command's tag.
        tag: u8,
        /// Its length, tag included.
        len: usize,
        /// The length its tag requires.
        expected: usize,
    },
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
        let PartitionCommand::Produce { header, batch: got } = decoded else { panic!("not a produce: {decoded:?}") };
        assert_eq!((header.count, header.producer.producer_id, got), (1, 4, batch.clone()));
        assert_eq!(PartitionCommand::decode(&Command::new(&[9])), Err(CommandError::UnknownTag(Some(9))));
        assert!(matches!(PartitionCommand::decode(&Command::new(&[1, 2, 3])), Err(CommandError::Batch(_))));
    }

    #[test]
    fn trim_has_a_stable_encoding_and_a_wrong_size_is_rejected() {
        let command = PartitionCommand::trim(0x0102_0304_0506_0708, 42);
        let mut expected = vec![KIND_NORMAL, 2, 8, 7, 6, 5, 4, 3, 2, 1];
        expected.extend_from_slice(&42u64.to_le_bytes());
        assert_eq!(command.stored().as_ref(), expected.as_slice(), "the stored bytes never change");
        assert_eq!(
            PartitionCommand::decode(&command),
            Ok(PartitionCommand::Trim { up_to_index: 0x0102_0304_0506_0708, log_start_offset: 42 })
        );
        assert_eq!(produce_batch(command.stored()), None, "a trim is not data");
        for cut in 1..expected.len() - 1 {
            let err = PartitionCommand::decode(&Command::new(&expected[1..=cut])).unwrap_err();
            assert_eq!(err, CommandError::BadLength { tag: 2, len: cut, expected: 17 }, "cut at {cut}");
        }
        let mut long = expected[1..].to_vec();
        long.push(0);
        assert!(PartitionCommand::decode(&Command::new(&long)).unwrap_err().to_string().contains("18 bytes"));
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
