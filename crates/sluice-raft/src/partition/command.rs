//! The commands a partition's Raft log carries, encoded inside a [`Command`]'s body.
//!
//! ```text
//! produce   | 1 | record batch (sluice_common::record format) |
//! ```
//! A command is decoded the same way on every replica, so an undecodable one is rejected the
//! same way everywhere (deterministic apply).

use bytes::Bytes;
use sluice_common::record::{BatchError, BatchHeader, parse_header};

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
    /// Encodes a produce command for `batch` (one copy of the batch, behind two tag bytes).
    pub fn produce(batch: &[u8]) -> Command {
        let mut body = Vec::with_capacity(1 + batch.len());
        body.push(TAG_PRODUCE);
        body.extend_from_slice(batch);
        Command::new(&body)
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
}
