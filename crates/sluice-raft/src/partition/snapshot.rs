//! The partition snapshot: what a replica needs to carry on from a log position without the
//! entries before it. It is small — the next offset and the producer table — because message
//! data is never in it: a follower behind the log start installs it and then receives entries
//! from the log start on.
//!
//! ```text
//! | magic "SLPS" | version u16 = 1 | next_offset u64 | producer_count u32 |
//! | (producer_id i64 | epoch i16 | batch_count u8 | (base_sequence i32 | count u32 | base_offset u64)*)* |
//! | crc u32 |      crc = crc32(everything before it)
//! ```

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::producers::{DEDUP_WINDOW, ProducerEntry, ProducerTable, WrittenBatch};

const MAGIC: &[u8; 4] = b"SLPS";
const VERSION: u16 = 1;

/// The replicated state of a partition, besides its log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionState {
    /// The offset the next appended message gets.
    pub next_offset: u64,
    /// Idempotent producers' recent batches.
    pub producers: ProducerTable,
}

impl PartitionState {
    /// Encodes the state as snapshot data.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(32 + self.producers.len() * 64);
        b.put_slice(MAGIC);
        b.put_u16_le(VERSION);
        b.put_u64_le(self.next_offset);
        b.put_u32_le(self.producers.producers.len() as u32);
        for (id, p) in &self.producers.producers {
            b.put_i64_le(*id);
            b.put_i16_le(p.epoch);
            b.put_u8(p.recent.len() as u8);
            for w in &p.recent {
                b.put_i32_le(w.base_sequence);
                b.put_u32_le(w.count);
                b.put_u64_le(w.base_offset);
            }
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
        if version != VERSION {
            return Err(format!("partition snapshot version {version}; this build reads {VERSION}"));
        }
        let next_offset = b.get_u64_le();
        let mut producers = ProducerTable::default();
        for _ in 0..b.get_u32_le() {
            let (id, entry) = decode_producer(&mut b).ok_or("partition snapshot cut short")?;
            producers.producers.insert(id, entry);
        }
        if !b.is_empty() {
            return Err("trailing bytes in partition snapshot".into());
        }
        Ok(PartitionState { next_offset, producers })
    }
}

fn decode_producer(b: &mut &[u8]) -> Option<(i64, ProducerEntry)> {
    if b.len() < 11 {
        return None;
    }
    let (id, epoch, n) = (b.get_i64_le(), b.get_i16_le(), b.get_u8() as usize);
    if n == 0 || n > DEDUP_WINDOW || b.len() < n * 16 {
        return None;
    }
    let recent: VecDeque<WrittenBatch> = (0..n)
        .map(|_| WrittenBatch { base_sequence: b.get_i32_le(), count: b.get_u32_le(), base_offset: b.get_u64_le() })
        .collect();
    Some((id, ProducerEntry { epoch, recent }))
}

#[cfg(test)]
mod tests {
    use sluice_common::record::ProducerStamp;

    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let mut state = PartitionState { next_offset: 12_345, ..PartitionState::default() };
        for pid in 0..3 {
            for seq in 0..7 {
                state.producers.record(&ProducerStamp { producer_id: pid, epoch: 2, base_sequence: seq }, 1, 100);
            }
        }
        let raw = state.encode();
        assert_eq!(PartitionState::decode(&raw), Ok(state));
        for cut in 0..raw.len() {
            assert!(PartitionState::decode(&raw[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = raw.to_vec();
        bad[10] ^= 1;
        assert!(PartitionState::decode(&bad).unwrap_err().contains("checksum"));
    }
}
