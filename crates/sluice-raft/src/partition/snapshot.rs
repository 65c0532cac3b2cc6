//! The partition snapshot: what a replica needs to carry on from a log position without the
//! entries before it. It is small — the next offset, the log start retention left and the
//! producer table — because message data is never in it: a follower behind the log start
//! installs it and then receives entries from the log start on.
//!
//! ```text
//! | magic "SLPS" | version u16 = 5 | next_offset u64 | log_start_offset u64 | trimmed_before u64 |
//! | clock_ms u64 | next_delay_seq u64 | max_release_ms u64 | last_change_index u64 |
//! | producer_count u32 |
//! | (producer_id i64 | epoch i16 | last_active_ms u64 | batch_count u8 |
//! |    (base_sequence i32 | count u32 | base_offset u64)*)* |
//! | open_count u32 | (producer_id i64 | epoch i16 | first_offset u64 | started_ms u64)* |
//! | aborted_count u32 | (producer_id i64 | first_offset u64 | last_offset u64)* |
//! | crc u32 |      crc = crc32(everything before it)
//! ```
//! The last two lists (version 5 on) are the partition's open transactions and aborted ranges
//! (`txns`, docs/TRANSACTIONS.md); a producer's `batch_count` may be 0 from version 5 on (a
//! transaction marker moved its epoch).
//! `clock_ms` is the partition clock and `last_active_ms` each producer's last write on it, so
//! a replica that installs the snapshot expires producers exactly as the others do
//! (docs/adr/0007-producer-expiry.md). `next_delay_seq` numbers delayed messages,
//! `max_release_ms` is the latest release time committed and `last_change_index` the last entry
//! that released, cancelled or fired a delayed message or changed a schedule
//! (docs/adr/0009-delayed-messages.md). Older versions are still read: version 3 (before
//! delays) lacks those three, version 2 (before producer
//! expiry) lacks `clock_ms` and `last_active_ms`, version 1 (before retention) also
//! `log_start_offset` and `trimmed_before`; each missing field reads as 0 (a clock of 0 makes
//! every producer active from the clock's first reading).

use std::collections::{BTreeMap, VecDeque};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::producers::{DEDUP_WINDOW, ProducerEntry, ProducerTable, WrittenBatch};
use super::txns::{AbortedRange, OpenTxn, TxnIndex};

const MAGIC: &[u8; 4] = b"SLPS";
const VERSION: u16 = 5;
/// The version before transactions, still read.
const VERSION_4: u16 = 4;
/// The version before delayed messages, still read.
const VERSION_3: u16 = 3;
/// The version before retention, still read.
const VERSION_1: u16 = 1;
/// The version before producer expiry, still read.
const VERSION_2: u16 = 2;

/// The replicated state of a partition, besides its log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionState {
    /// The offset the next appended message gets.
    pub next_offset: u64,
    /// The first offset retention kept: offsets below it are gone on every replica (whether or
    /// not this replica has purged its log yet). Never moves backwards.
    pub log_start_offset: u64,
    /// Retention trimmed every Raft log entry below this index (0: none). Never moves backwards.
    pub trimmed_before: u64,
    /// The number the next delayed message gets: how many the partition has accepted.
    pub next_delay_seq: u64,
    /// The latest `release_ms` of an applied release: a new leader releases nothing until its
    /// clock has passed it, so no message is released earlier than one before it was.
    pub max_release_ms: u64,
    /// The index of the last entry that released, cancelled or fired a delayed message or
    /// added or removed a schedule. A release or fire the leader built from its delay store as
    /// of an earlier entry is refused: the store it read no longer holds.
    pub last_change_index: u64,
    /// Idempotent producers' recent batches.
    pub producers: ProducerTable,
    /// Open transactions and aborted ranges.
    pub txns: TxnIndex,
}

impl PartitionState {
    /// Encodes the state as snapshot data.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(48 + self.producers.len() * 64);
        b.put_slice(MAGIC);
        b.put_u16_le(VERSION);
        b.put_u64_le(self.next_offset);
        b.put_u64_le(self.log_start_offset);
        b.put_u64_le(self.trimmed_before);
        b.put_u64_le(self.producers.clock_ms());
        b.put_u64_le(self.next_delay_seq);
        b.put_u64_le(self.max_release_ms);
        b.put_u64_le(self.last_change_index);
        b.put_u32_le(self.producers.producers.len() as u32);
        for (id, p) in &self.producers.producers {
            b.put_i64_le(*id);
            b.put_i16_le(p.epoch);
            b.put_u64_le(p.last_active_ms);
            b.put_u8(p.recent.len() as u8);
            for w in &p.recent {
                b.put_i32_le(w.base_sequence);
                b.put_u32_le(w.count);
                b.put_u64_le(w.base_offset);
            }
        }
        b.put_u32_le(self.txns.open().len() as u32);
        for (id, t) in self.txns.open() {
            b.put_i64_le(*id);
            b.put_i16_le(t.epoch);
            b.put_u64_le(t.first_offset);
            b.put_u64_le(t.started_ms);
        }
        b.put_u32_le(self.txns.aborted().len() as u32);
        for r in self.txns.aborted() {
            b.put_i64_le(r.producer_id);
            b.put_u64_le(r.first_offset);
            b.put_u64_le(r.last_offset);
        }
        let crc = crc32fast::hash(&b);
        b.put_u32_le(crc);
        b.freeze()
    }

    /// Decodes snapshot data; `Err` says what is wrong.
    pub fn decode(raw: &[u8]) -> Result<PartitionState, String> {
        if raw.len() < 22 || &raw[..4] != MAGIC {
            return Err("not a partition snapshot".into());
        }
        let (body, crc) = raw.split_at(raw.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err("partition snapshot checksum mismatch".into());
        }
        let mut b = &body[4..];
        let version = b.get_u16_le();
        let fixed = match version {
            VERSION | VERSION_4 => 60,
            VERSION_3 => 36,
            VERSION_2 => 28,
            VERSION_1 => 12,
            _ => {
                return Err(format!("partition snapshot version {version}; this build reads {VERSION_1} to {VERSION}"));
            }
        };
        if b.len() < fixed {
            return Err("partition snapshot cut short".into());
        }
        let next_offset = b.get_u64_le();
        let (log_start_offset, trimmed_before) =
            if version >= VERSION_2 { (b.get_u64_le(), b.get_u64_le()) } else { (0, 0) };
        let timed = version >= VERSION_3;
        let clock_ms = if timed { b.get_u64_le() } else { 0 };
        let (next_delay_seq, max_release_ms, last_change_index) =
            if version >= VERSION_4 { (b.get_u64_le(), b.get_u64_le(), b.get_u64_le()) } else { (0, 0, 0) };
        let mut producers = BTreeMap::new();
        for _ in 0..b.get_u32_le() {
            let (id, entry) =
                decode_producer(&mut b, timed, version >= VERSION).ok_or("partition snapshot cut short")?;
            producers.insert(id, entry);
        }
        let producers = ProducerTable::from_parts(producers, clock_ms);
        let txns = if version >= VERSION {
            decode_txns(&mut b).ok_or("partition snapshot cut short")?
        } else {
            TxnIndex::default()
        };
        if !b.is_empty() {
            return Err("trailing bytes in partition snapshot".into());
        }
        if log_start_offset > next_offset {
            return Err(format!(
                "partition snapshot log start {log_start_offset} is past its next offset {next_offset}"
            ));
        }
        Ok(PartitionState {
            next_offset,
            log_start_offset,
            trimmed_before,
            next_delay_seq,
            max_release_ms,
            last_change_index,
            producers,
            txns,
        })
    }
}

/// The open transactions and aborted ranges (version 5 on).
fn decode_txns(b: &mut &[u8]) -> Option<TxnIndex> {
    let mut open = BTreeMap::new();
    let n = take_u32(b)? as usize;
    for _ in 0..n {
        if b.len() < 26 {
            return None;
        }
        let id = b.get_i64_le();
        open.insert(id, OpenTxn { epoch: b.get_i16_le(), first_offset: b.get_u64_le(), started_ms: b.get_u64_le() });
    }
    let n = take_u32(b)? as usize;
    if b.len() < n.checked_mul(24)? {
        return None;
    }
    let aborted = (0..n)
        .map(|_| AbortedRange {
            producer_id: b.get_i64_le(),
            first_offset: b.get_u64_le(),
            last_offset: b.get_u64_le(),
        })
        .collect();
    Some(TxnIndex::from_parts(open, aborted))
}

fn take_u32(b: &mut &[u8]) -> Option<u32> {
    (b.len() >= 4).then(|| b.get_u32_le())
}

/// One producer; `timed` (version 3 on) if it carries its last-activity time, `may_be_empty`
/// (version 5 on) if it may have no batch.
fn decode_producer(b: &mut &[u8], timed: bool, may_be_empty: bool) -> Option<(i64, ProducerEntry)> {
    if b.len() < if timed { 19 } else { 11 } {
        return None;
    }
    let (id, epoch) = (b.get_i64_le(), b.get_i16_le());
    let last_active_ms = if timed { b.get_u64_le() } else { 0 };
    let n = b.get_u8() as usize;
    if (n == 0 && !may_be_empty) || n > DEDUP_WINDOW || b.len() < n * 16 {
        return None;
    }
    let recent: VecDeque<WrittenBatch> = (0..n)
        .map(|_| WrittenBatch { base_sequence: b.get_i32_le(), count: b.get_u32_le(), base_offset: b.get_u64_le() })
        .collect();
    Some((id, ProducerEntry { epoch, recent, last_active_ms }))
}

#[cfg(test)]
mod tests {
    use sluice_common::record::ProducerStamp;

    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let mut state = PartitionState {
            next_offset: 12_345,
            log_start_offset: 6_000,
            trimmed_before: 77,
            next_delay_seq: 31,
            max_release_ms: 1_700_000_000_000,
            last_change_index: 77,
            ..PartitionState::default()
        };
        for pid in 0..3 {
            state.producers.advance(1_000 + pid as u64, 60_000);
            for seq in 0..7 {
                state.producers.record(&ProducerStamp { producer_id: pid, epoch: 2, base_sequence: seq }, 1, 100);
            }
        }
        state.txns.wrote(1, 2, 12_000, 1_001);
        state.txns.wrote(2, 2, 12_100, 1_002);
        state.txns.mark(2, 3, false, 12_200);
        state.producers.bump(2, 3);
        let raw = state.encode();
        let decoded = PartitionState::decode(&raw).unwrap();
        assert_eq!(decoded, state);
        assert_eq!((decoded.txns.last_stable_offset(12_345), decoded.txns.aborted().len()), (12_000, 1));
        assert!(decoded.producers.producers[&2].recent.is_empty(), "a marker emptied its window");
        assert_eq!((decoded.producers.clock_ms(), decoded.producers.producers[&1].last_active_ms), (1_002, 1_001));
        for cut in 0..raw.len() {
            assert!(PartitionState::decode(&raw[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = raw.to_vec();
        bad[10] ^= 1;
        assert!(PartitionState::decode(&bad).unwrap_err().contains("checksum"));
    }

    #[test]
    fn a_version_1_snapshot_reads_with_nothing_trimmed() {
        let mut v1 = Vec::new();
        v1.extend_from_slice(MAGIC);
        v1.extend_from_slice(&1u16.to_le_bytes());
        v1.extend_from_slice(&500u64.to_le_bytes());
        v1.extend_from_slice(&0u32.to_le_bytes());
        let crc = crc32fast::hash(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        let state = PartitionState::decode(&v1).unwrap();
        assert_eq!((state.next_offset, state.log_start_offset, state.trimmed_before), (500, 0, 0));
    }

    #[test]
    fn a_restored_table_expires_its_producers_as_the_original_does() {
        let mut state = PartitionState::default();
        for (pid, at) in [(1, 100), (2, 200), (3, 300)] {
            state.producers.advance(at, 1_000);
            state.producers.record(&ProducerStamp { producer_id: pid, epoch: 0, base_sequence: 0 }, 1, 0);
        }
        let mut restored = PartitionState::decode(&state.encode()).unwrap();
        assert_eq!(state.producers.advance(1_250, 1_000), 2);
        assert_eq!(restored.producers.advance(1_250, 1_000), 2, "the snapshot kept each producer's last write");
        assert_eq!(restored, state);
    }

    #[test]
    fn a_version_2_snapshot_reads_with_its_producers_active_from_the_first_clock_reading() {
        let mut v2 = Vec::new();
        v2.extend_from_slice(MAGIC);
        v2.extend_from_slice(&2u16.to_le_bytes());
        for field in [500u64, 40, 3] {
            v2.extend_from_slice(&field.to_le_bytes());
        }
        v2.extend_from_slice(&1u32.to_le_bytes());
        v2.extend_from_slice(&9i64.to_le_bytes());
        v2.extend_from_slice(&4i16.to_le_bytes());
        v2.push(1);
        v2.extend_from_slice(&6i32.to_le_bytes());
        v2.extend_from_slice(&2u32.to_le_bytes());
        v2.extend_from_slice(&498u64.to_le_bytes());
        let crc = crc32fast::hash(&v2);
        v2.extend_from_slice(&crc.to_le_bytes());
        let mut state = PartitionState::decode(&v2).unwrap();
        assert_eq!((state.next_offset, state.log_start_offset, state.trimmed_before), (500, 40, 3));
        assert_eq!((state.producers.clock_ms(), state.producers.producers[&9].last_active_ms), (0, 0));
        assert_eq!(state.producers.advance(1_000_000, 1_000), 0, "not expired by the first clock reading");
        assert_eq!(state.producers.producers[&9].recent[0].base_offset, 498);
    }

    #[test]
    fn a_log_start_past_the_next_offset_is_rejected() {
        let state = PartitionState { next_offset: 5, log_start_offset: 6, ..PartitionState::default() };
        assert!(PartitionState::decode(&state.encode()).unwrap_err().contains("past its next offset"));
    }
}
