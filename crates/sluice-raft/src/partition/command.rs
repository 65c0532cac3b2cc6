//! The commands a partition's Raft log carries, encoded inside a [`Command`]'s body.
//!
//! ```text
//! produce    | 1 | record batch (sluice_common::record format) |
//! trim       | 2 | up_to_index u64 LE | log_start_offset u64 LE |      (17 bytes)
//! produce at | 3 | now_ms u64 LE | producer_id_expiration_ms u64 LE | max_producers u32 LE |
//!            |   | record batch |
//! release    | 4 | release_ms u64 LE | n u32 LE | (seq u64 LE | due_ms u64 LE)*n | record batch |
//! cancel     | 5 | seq u64 LE |                                                       (9 bytes)
//! schedule   | 6 | first_due_ms u64 LE | name_len u16 LE | name | cadence_len u16 LE | cadence |
//!            |   | one-record batch |
//! unschedule | 7 | name |
//! fire       | 8 | release_ms u64 LE | due_ms u64 LE | name_len u16 LE | name | record batch |
//! ```
//! *Schedule* adds a recurring schedule (`delay::ScheduleRow`), *unschedule* removes one, and
//! *fire* appends one fire's message, like a release, and moves the schedule to its next fire.
//! *Release* moves pending delayed messages into the partition: its batch holds them, in the
//! order of its `(seq, due_ms)` list, and gets offsets like a produced batch; *cancel* drops one
//! (docs/adr/0009-delayed-messages.md).
//! A command is decoded the same way on every replica, so an undecodable one is rejected the
//! same way everywhere (deterministic apply). Tags are never reused: a broker that predates a
//! tag refuses its commands as [`CommandError::UnknownTag`] and changes nothing.
//!
//! *Produce at* is what a leader proposes for a client's batch: a [`LeaderStamp`] — the
//! leader's wall clock and its producer-table limits — travels in the entry, so every replica
//! applies the same time and limits at the same log position (docs/adr/0007-producer-expiry.md).
//! Plain *produce* (the brokers' own batches, and entries written before tag 3) applies with no
//! time and no cap.
//!
//! Stored in the log behind the Raft entry kind byte, a produce entry's payload is
//! `| KIND_NORMAL | 1 | batch |` or `| KIND_NORMAL | 3 | stamp (20 bytes) | batch |`:
//! [`produce_batch`] finds the batch in it again for fetches.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use sluice_common::record::{BatchError, BatchHeader, parse_header};

use crate::codec::KIND_NORMAL;
use crate::typ::Command;

const TAG_PRODUCE: u8 = 1;
const TAG_TRIM: u8 = 2;
const TAG_PRODUCE_AT: u8 = 3;
const TAG_RELEASE: u8 = 4;
const TAG_CANCEL: u8 = 5;
/// Bytes of a cancel command's body: the tag and a `u64`.
const CANCEL_LEN: usize = 9;
/// Bytes of a release command's body before its list: the tag, `release_ms`, `built_at` and `n`.
const RELEASE_FIXED: usize = 21;
const TAG_SCHEDULE: u8 = 6;
const TAG_UNSCHEDULE: u8 = 7;
const TAG_FIRE: u8 = 8;
/// *Produce at*, whose batch is checked under the rule that an unknown producer (or a new
/// epoch) starts at sequence 0. Tag 3 keeps the earlier rule (any sequence), so a log written
/// before is replayed as it was first applied.
const TAG_PRODUCE_AT_FROM_ZERO: u8 = 9;
/// Bytes of a fire command's body before its name: the tag, three `u64`s and the name length.
const FIRE_FIXED: usize = 27;
/// Bytes of a trim command's body: the tag and two `u64`s.
const TRIM_LEN: usize = 17;
/// Bytes of a [`LeaderStamp`].
const STAMP_LEN: usize = 20;

/// The most bytes a produce entry's payload holds besides its batch: the entry kind, the tag
/// and a [`LeaderStamp`]. A batch may be the log's entry limit less this.
pub const PRODUCE_OVERHEAD_BYTES: u32 = 2 + STAMP_LEN as u32;

/// What the leader adds to a client's batch: its time and its producer-table limits, applied
/// alike by every replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderStamp {
    /// The leader's wall clock when it proposed the batch, in ms since the Unix epoch.
    pub now_ms: u64,
    /// Producers idle this long on the partition clock are forgotten.
    pub producer_id_expiration_ms: u64,
    /// The most producer ids the partition tracks; a new one beyond is refused.
    pub max_producers: u32,
    /// Whether a producer the partition does not know, or a new epoch of one, must start at
    /// sequence 0 (tag 9; every leader proposes so). `false` only for entries of tag 3, written
    /// before the rule, which took such a batch at any sequence.
    pub from_zero: bool,
}

/// A decoded partition command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionCommand {
    /// Append one record batch.
    Produce {
        /// The batch's verified header.
        header: BatchHeader,
        /// The whole batch, as the producer sent it.
        batch: Bytes,
        /// The leader's time and limits; `None` for a plain produce.
        stamp: Option<LeaderStamp>,
    },
    /// Release of pending delayed messages, proposed by the leader once they are due.
    Release {
        /// The leader's clock when it built the release; every message in it is due by then.
        release_ms: u64,
        /// The delay store's mark the leader built it from: refused if a cancel, release,
        /// fire or schedule change was applied after that entry.
        built_at: u64,
        /// `(seq, due_ms)` of each message, in batch order.
        items: Vec<(u64, u64)>,
        /// The batch's verified header.
        header: BatchHeader,
        /// The released messages as one batch.
        batch: Bytes,
    },
    /// Cancels pending delayed message `seq`.
    Cancel {
        /// The message's number in the partition.
        seq: u64,
    },
    /// Adds recurring schedule `name`, first firing at `first_due_ms`.
    Schedule {
        /// Its name, unique in the partition.
        name: String,
        /// Its first fire, decided by the leader.
        first_due_ms: u64,
        /// Its cadence (`Cadence::encode`).
        cadence: String,
        /// The message each fire produces, as a one-record batch.
        batch: Bytes,
    },
    /// Removes recurring schedule `name`.
    Unschedule {
        /// Its name.
        name: String,
    },
    /// One fire of schedule `name`: its message, appended like a release.
    Fire {
        /// The leader's clock when it built the fire; the fire is due by then.
        release_ms: u64,
        /// As for a release: the delay store's mark the leader built it from.
        built_at: u64,
        /// The fire time it stands for.
        due_ms: u64,
        /// The schedule.
        name: String,
        /// The batch's verified header.
        header: BatchHeader,
        /// The message.
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

    /// Encodes a produce-at command for `batch`, stamped by the leader: like
    /// [`PartitionCommand::produce`], one copy of the batch.
    pub fn produce_at(batch: &[u8], stamp: &LeaderStamp) -> Command {
        let mut stored = BytesMut::with_capacity(PRODUCE_OVERHEAD_BYTES as usize + batch.len());
        stored.put_u8(KIND_NORMAL);
        stored.put_u8(if stamp.from_zero { TAG_PRODUCE_AT_FROM_ZERO } else { TAG_PRODUCE_AT });
        stored.put_u64_le(stamp.now_ms);
        stored.put_u64_le(stamp.producer_id_expiration_ms);
        stored.put_u32_le(stamp.max_producers);
        stored.put_slice(batch);
        Command::from_stored(stored.freeze()).expect("starts with the normal kind byte")
    }

    /// Encodes a release command (see [`PartitionCommand::Release`]).
    pub fn release(release_ms: u64, built_at: u64, items: &[(u64, u64)], batch: &[u8]) -> Command {
        let mut stored = BytesMut::with_capacity(1 + RELEASE_FIXED + 16 * items.len() + batch.len());
        stored.put_u8(KIND_NORMAL);
        stored.put_u8(TAG_RELEASE);
        stored.put_u64_le(release_ms);
        stored.put_u64_le(built_at);
        stored.put_u32_le(u32::try_from(items.len()).expect("fewer than 2^32 messages"));
        for (seq, due_ms) in items {
            stored.put_u64_le(*seq);
            stored.put_u64_le(*due_ms);
        }
        stored.put_slice(batch);
        Command::from_stored(stored.freeze()).expect("starts with the normal kind byte")
    }

    /// Encodes a cancel command (see [`PartitionCommand::Cancel`]).
    pub fn cancel(seq: u64) -> Command {
        let mut stored = BytesMut::with_capacity(1 + CANCEL_LEN);
        stored.put_u8(KIND_NORMAL);
        stored.put_u8(TAG_CANCEL);
        stored.put_u64_le(seq);
        Command::from_stored(stored.freeze()).expect("starts with the normal kind byte")
    }

    /// Encodes a schedule command (see [`PartitionCommand::Schedule`]).
    pub fn schedule(name: &str, first_due_ms: u64, cadence: &str, batch: &[u8]) -> Command {
        let mut stored = BytesMut::with_capacity(14 + name.len() + cadence.len() + batch.len());
        stored.put_u8(KIND_NORMAL);
        stored.put_u8(TAG_SCHEDULE);
        stored.put_u64_le(first_due_ms);
        stored.put_u16_le(u16::try_from(name.len()).expect("a schedule name is short"));
        stored.put_slice(name.as_bytes());
        stored.put_u16_le(u16::try_from(cadence.len()).expect("a cadence is short"));
        stored.put_slice(cadence.as_bytes());
        stored.put_slice(batch);
        Command::from_stored(stored.freeze()).expect("starts with the normal kind byte")
    }

    /// Encodes an unschedule command (see [`PartitionCommand::Unschedule`]).
    pub fn unschedule(name: &str) -> Command {
        let mut stored = BytesMut::with_capacity(2 + name.len());
        stored.put_u8(KIND_NORMAL);
        stored.put_u8(TAG_UNSCHEDULE);
        stored.put_slice(name.as_bytes());
        Command::from_stored(stored.freeze()).expect("starts with the normal kind byte")
    }

    /// Encodes a fire command (see [`PartitionCommand::Fire`]).
    pub fn fire(release_ms: u64, built_at: u64, due_ms: u64, name: &str, batch: &[u8]) -> Command {
        let mut stored = BytesMut::with_capacity(1 + FIRE_FIXED + name.len() + batch.len());
        stored.put_u8(KIND_NORMAL);
        stored.put_u8(TAG_FIRE);
        stored.put_u64_le(release_ms);
        stored.put_u64_le(built_at);
        stored.put_u64_le(due_ms);
        stored.put_u16_le(u16::try_from(name.len()).expect("a schedule name is short"));
        stored.put_slice(name.as_bytes());
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
                Ok(PartitionCommand::Produce { header, batch, stamp: None })
            }
            Some(&tag @ (TAG_PRODUCE_AT | TAG_PRODUCE_AT_FROM_ZERO)) => {
                if body.len() < 1 + STAMP_LEN {
                    return Err(CommandError::BadLength { tag, len: body.len(), expected: 1 + STAMP_LEN });
                }
                let mut fields = &body[1..];
                let stamp = LeaderStamp {
                    now_ms: fields.get_u64_le(),
                    producer_id_expiration_ms: fields.get_u64_le(),
                    max_producers: fields.get_u32_le(),
                    from_zero: tag == TAG_PRODUCE_AT_FROM_ZERO,
                };
                let batch = body.slice(1 + STAMP_LEN..);
                let header = parse_header(&batch).map_err(CommandError::Batch)?;
                Ok(PartitionCommand::Produce { header, batch, stamp: Some(stamp) })
            }
            Some(&TAG_RELEASE) => {
                let at = release_batch_at(&body).ok_or(CommandError::BadLength {
                    tag: TAG_RELEASE,
                    len: body.len(),
                    expected: RELEASE_FIXED,
                })?;
                let mut fields = &body[1..at];
                let (release_ms, built_at) = (fields.get_u64_le(), fields.get_u64_le());
                let n = fields.get_u32_le() as usize;
                let items = (0..n).map(|_| (fields.get_u64_le(), fields.get_u64_le())).collect();
                let batch = body.slice(at..);
                let header = parse_header(&batch).map_err(CommandError::Batch)?;
                Ok(PartitionCommand::Release { release_ms, built_at, items, header, batch })
            }
            Some(&TAG_CANCEL) => {
                if body.len() != CANCEL_LEN {
                    return Err(CommandError::BadLength { tag: TAG_CANCEL, len: body.len(), expected: CANCEL_LEN });
                }
                Ok(PartitionCommand::Cancel { seq: (&body[1..]).get_u64_le() })
            }
            Some(&TAG_SCHEDULE) => decode_schedule(&body),
            Some(&TAG_UNSCHEDULE) => Ok(PartitionCommand::Unschedule { name: utf8(&body[1..], TAG_UNSCHEDULE)? }),
            Some(&TAG_FIRE) => {
                let at = fire_batch_at(&body).ok_or(CommandError::BadLength {
                    tag: TAG_FIRE,
                    len: body.len(),
                    expected: FIRE_FIXED,
                })?;
                let mut fields = &body[1..FIRE_FIXED];
                let (release_ms, built_at, due_ms) = (fields.get_u64_le(), fields.get_u64_le(), fields.get_u64_le());
                let name = utf8(&body[FIRE_FIXED..at], TAG_FIRE)?;
                let batch = body.slice(at..);
                let header = parse_header(&batch).map_err(CommandError::Batch)?;
                Ok(PartitionCommand::Fire { release_ms, built_at, due_ms, name, header, batch })
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
    if payload.len() < 2 || payload[0] != KIND_NORMAL {
        return None;
    }
    match payload[1] {
        TAG_PRODUCE => Some(payload.slice(2..)),
        TAG_PRODUCE_AT | TAG_PRODUCE_AT_FROM_ZERO if payload.len() >= PRODUCE_OVERHEAD_BYTES as usize => {
            Some(payload.slice(PRODUCE_OVERHEAD_BYTES as usize..))
        }
        TAG_RELEASE => release_batch_at(&payload[1..]).map(|at| payload.slice(1 + at..)),
        TAG_FIRE => fire_batch_at(&payload[1..]).map(|at| payload.slice(1 + at..)),
        _ => None,
    }
}

/// Where a fire command body's batch starts (after its name), if the body is long enough.
fn fire_batch_at(body: &[u8]) -> Option<usize> {
    let n = u16::from_le_bytes(body.get(FIRE_FIXED - 2..FIRE_FIXED)?.try_into().expect("2 bytes")) as usize;
    let at = FIRE_FIXED + n;
    (body.len() >= at).then_some(at)
}

fn decode_schedule(body: &Bytes) -> Result<PartitionCommand, CommandError> {
    let short = || CommandError::BadLength { tag: TAG_SCHEDULE, len: body.len(), expected: 13 };
    let mut at = 1;
    let mut take = |n: usize| -> Result<&[u8], CommandError> {
        let slice = body.get(at..at + n).ok_or_else(short)?;
        at += n;
        Ok(slice)
    };
    let first_due_ms = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes"));
    let name_len = u16::from_le_bytes(take(2)?.try_into().expect("2 bytes")) as usize;
    let name = utf8(take(name_len)?, TAG_SCHEDULE)?;
    let cadence_len = u16::from_le_bytes(take(2)?.try_into().expect("2 bytes")) as usize;
    let cadence = utf8(take(cadence_len)?, TAG_SCHEDULE)?;
    let batch = body.slice(at..);
    parse_header(&batch).map_err(CommandError::Batch)?;
    Ok(PartitionCommand::Schedule { name, first_due_ms, cadence, batch })
}

fn utf8(bytes: &[u8], tag: u8) -> Result<String, CommandError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| CommandError::NotUtf8 { tag })
}

/// Where a release command body's batch starts (after its list), if the body is long enough.
fn release_batch_at(body: &[u8]) -> Option<usize> {
    let n = u32::from_le_bytes(body.get(RELEASE_FIXED - 4..RELEASE_FIXED)?.try_into().expect("4 bytes")) as usize;
    let at = RELEASE_FIXED.checked_add(n.checked_mul(16)?)?;
    (body.len() >= at).then_some(at)
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
    /// A name or cadence is not UTF-8.
    #[error("partition command tag {tag} holds text that is not UTF-8")]
    NotUtf8 {
        /// The command's tag.
        tag: u8,
    },
    /// A command is shorter or longer than its tag requires.
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
        let PartitionCommand::Produce { header, batch: got, stamp } = decoded else {
            panic!("not a produce: {decoded:?}")
        };
        assert_eq!((header.count, header.producer.producer_id, got, stamp), (1, 4, batch.clone(), None));
        assert_eq!(PartitionCommand::decode(&Command::new(&[200])), Err(CommandError::UnknownTag(Some(200))));
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
        assert_eq!(produce_batch(&Bytes::from_static(&[KIND_NORMAL, 200, 0])), None, "another command");
        assert_eq!(produce_batch(&Bytes::from_static(&[0])), None, "a blank entry");
    }

    #[test]
    fn produce_at_carries_the_leader_stamp_in_a_stable_encoding() {
        let mut b = BatchBuilder::new(ProducerStamp { producer_id: 4, epoch: 1, base_sequence: 0 }, 64);
        b.push(&Record::new("v", 10));
        let batch = b.finish();
        let stamp = LeaderStamp {
            now_ms: 0x0102_0304_0506_0708,
            producer_id_expiration_ms: 7,
            max_producers: 9,
            from_zero: true,
        };
        let command = PartitionCommand::produce_at(&batch, &stamp);
        let stored = command.stored();
        assert_eq!(stored[..2], [KIND_NORMAL, 9], "tag 9: an unknown producer starts at sequence 0");
        assert_eq!(stored[2..10], [8, 7, 6, 5, 4, 3, 2, 1], "the stored bytes never change");
        assert_eq!(stored[10..18], 7u64.to_le_bytes());
        assert_eq!(stored[18..22], 9u32.to_le_bytes());
        let decoded = PartitionCommand::decode(&command).unwrap();
        assert_eq!(
            decoded,
            PartitionCommand::Produce {
                header: parse_header(&batch).unwrap(),
                batch: batch.clone(),
                stamp: Some(stamp)
            }
        );
        let found = produce_batch(stored).expect("a produce payload");
        assert_eq!((found.as_ptr(), &found), (stored[22..].as_ptr(), &batch), "a slice of the stored bytes");
        for cut in 1..=STAMP_LEN {
            let err = PartitionCommand::decode(&Command::new(&stored[1..=cut])).unwrap_err();
            assert_eq!(err, CommandError::BadLength { tag: 9, len: cut, expected: 21 }, "cut at {cut}");
        }
        // An entry written before the rule (tag 3) decodes to the same stamp, under the old rule.
        let old = PartitionCommand::produce_at(&batch, &LeaderStamp { from_zero: false, ..stamp });
        assert_eq!(old.stored()[1], 3);
        assert_eq!(old.stored()[2..], stored[2..], "the same fields");
        let decoded = PartitionCommand::decode(&old).unwrap();
        assert!(matches!(decoded, PartitionCommand::Produce { stamp: Some(LeaderStamp { from_zero: false, .. }), .. }));
        assert!(matches!(PartitionCommand::decode(&Command::new(&stored[1..30])), Err(CommandError::Batch(_))));
        assert_eq!(produce_batch(&stored.slice(..21)), None, "a stamp cut short holds no batch");
    }

    #[test]
    fn release_and_cancel_round_trip_and_a_release_gives_back_its_batch() {
        let mut b = BatchBuilder::new(ProducerStamp::NONE, 64);
        b.push(&Record::new("v", 10));
        let batch = b.finish();
        let command = PartitionCommand::release(77, 12, &[(5, 70), (6, 71)], &batch);
        let PartitionCommand::Release { release_ms, built_at, items, header, batch: got } =
            PartitionCommand::decode(&command).unwrap()
        else {
            panic!("not a release")
        };
        assert_eq!((release_ms, built_at, items, header.count, &got), (77, 12, vec![(5, 70), (6, 71)], 1, &batch));
        assert_eq!(produce_batch(command.stored()).as_ref(), Some(&batch), "fetch finds the released batch");
        let stored = command.stored();
        for cut in 1..1 + RELEASE_FIXED + 32 {
            assert!(PartitionCommand::decode(&Command::new(&stored[1..cut])).is_err(), "cut at {cut}");
            assert_eq!(produce_batch(&stored.slice(..cut)), None, "cut at {cut}");
        }
        let cancel = PartitionCommand::cancel(0x0102_0304_0506_0708);
        assert_eq!(cancel.stored()[..3], [KIND_NORMAL, 5, 8], "the stored bytes never change");
        assert_eq!(PartitionCommand::decode(&cancel), Ok(PartitionCommand::Cancel { seq: 0x0102_0304_0506_0708 }));
        assert_eq!(produce_batch(cancel.stored()), None, "a cancel is not data");
    }
}
