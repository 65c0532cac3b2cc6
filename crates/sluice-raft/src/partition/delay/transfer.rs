//! Pending delayed messages inside a partition snapshot sent to a replica that catches up by
//! installing one: its store is rebuilt from them, since the entries that made them may be
//! trimmed.
//!
//! ```text
//! | magic "SLPX" | state_len u32 | partition state (snapshot.rs) | mark u64 | count u32 |
//! | (seq u64 | due_ms u64 | len u32 | one-record batch)* |
//! | cancelled_count u32 | seq u64 * |
//! | schedule_count u32 | (name_len u16 | name | row_len u32 | schedule row (schedules.rs))* |
//! | crc u32 |                                                          crc of everything before
//! ```
//! The snapshot a replica stores for itself is the partition state alone (magic "SLPS"): its
//! own store holds its rows. The rows are added only when the snapshot is sent
//! ([`with_rows`]), read from the sender's store as it is then, which may be ahead of the
//! snapshot's last entry: `mark` says how far, and the receiver takes it as its own mark, so it
//! does not store again what the entries after the snapshot did. Every number little-endian.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::schedules::ScheduleRow;
use super::store::Pending;

/// What a snapshot carries besides the partition state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carried {
    /// The last entry whose effects these rows hold.
    pub mark: u64,
    /// Pending delayed messages.
    pub pending: Vec<Pending>,
    /// Numbers of cancelled messages (so that a repeated cancel answers `Cancelled` again).
    pub cancelled: Vec<u64>,
    /// Schedules, by name.
    pub schedules: Vec<(String, ScheduleRow)>,
}

const MAGIC: &[u8; 4] = b"SLPX";

/// Snapshot data: `state` followed by what is carried, or `state` alone if nothing is.
pub fn encode(state: Bytes, carried: &Carried) -> Bytes {
    let (pending, schedules) = (&carried.pending, &carried.schedules);
    if pending.is_empty() && schedules.is_empty() && carried.cancelled.is_empty() {
        return state;
    }
    let rows: usize = pending.iter().map(|p| 20 + p.batch.len()).sum::<usize>() + 8 * carried.cancelled.len();
    let mut b = BytesMut::with_capacity(32 + state.len() + rows);
    b.put_slice(MAGIC);
    b.put_u32_le(u32::try_from(state.len()).expect("state under 4 GiB"));
    b.put_slice(&state);
    b.put_u64_le(carried.mark);
    b.put_u32_le(u32::try_from(pending.len()).expect("fewer than 2^32 pending"));
    for p in pending {
        b.put_u64_le(p.seq);
        b.put_u64_le(p.due_ms);
        b.put_u32_le(p.batch.len() as u32);
        b.put_slice(&p.batch);
    }
    b.put_u32_le(u32::try_from(carried.cancelled.len()).expect("fewer than 2^32 cancelled"));
    for seq in &carried.cancelled {
        b.put_u64_le(*seq);
    }
    b.put_u32_le(schedules.len() as u32);
    for (name, row) in schedules {
        b.put_u16_le(name.len() as u16);
        b.put_slice(name.as_bytes());
        let row = row.encode();
        b.put_u32_le(row.len() as u32);
        b.put_slice(&row);
    }
    let crc = crc32fast::hash(&b);
    b.put_u32_le(crc);
    b.freeze()
}

/// Splits snapshot data into the partition state and what it carries (`None` when the data is
/// the state alone).
pub fn decode(data: &Bytes) -> Result<(Bytes, Option<Carried>), String> {
    if data.get(..4) != Some(MAGIC) {
        return Ok((data.clone(), None));
    }
    if data.len() < 12 {
        return Err("partition snapshot with delays cut short".into());
    }
    let (body, crc) = data.split_at(data.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err("partition snapshot with delays: checksum mismatch".into());
    }
    let cut = || "partition snapshot with delays cut short".to_string();
    let mut at: usize = 4;
    let mut take = |n: usize| -> Result<Bytes, String> {
        let slice = data.slice(at..at.checked_add(n).filter(|end| *end <= body.len()).ok_or_else(cut)?);
        at += n;
        Ok(slice)
    };
    let state_len = take(4)?.get_u32_le() as usize;
    let state = take(state_len)?;
    let mark = take(8)?.get_u64_le();
    let count = take(4)?.get_u32_le();
    let mut pending = Vec::with_capacity(count.min(1 << 20) as usize);
    for _ in 0..count {
        let mut row = take(20)?;
        let (seq, due_ms, len) = (row.get_u64_le(), row.get_u64_le(), row.get_u32_le() as usize);
        pending.push(Pending { seq, due_ms, batch: take(len)? });
    }
    let count = take(4)?.get_u32_le();
    let mut cancelled = Vec::with_capacity(count.min(1 << 20) as usize);
    for _ in 0..count {
        cancelled.push(take(8)?.get_u64_le());
    }
    let count = take(4)?.get_u32_le();
    let mut schedules = Vec::with_capacity(count.min(1 << 16) as usize);
    for _ in 0..count {
        let name_len = take(2)?.get_u16_le() as usize;
        let name = String::from_utf8(take(name_len)?.to_vec()).map_err(|_| "a schedule name is not UTF-8")?;
        let row_len = take(4)?.get_u32_le() as usize;
        let row = ScheduleRow::decode(&take(row_len)?).ok_or("a schedule in a partition snapshot is malformed")?;
        schedules.push((name, row));
    }
    if at != body.len() {
        return Err("trailing bytes in partition snapshot with delays".into());
    }
    Ok((state, Some(Carried { mark, pending, cancelled, schedules })))
}

/// The snapshot data to send for a stored snapshot `data` of `group`: its partition state with
/// the rows `store` holds now. Reads every pending message into memory; see ADR 0009.
pub fn with_rows(data: &Bytes, store: &super::DelayStore, group: u64) -> std::io::Result<Bytes> {
    let (state, _) = decode(data).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(encode(state, &store.export(group)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let state = Bytes::from_static(b"SLPS-state");
        assert_eq!(decode(&state).unwrap(), (state.clone(), None));
        assert_eq!(encode(state.clone(), &Carried::default()), state, "nothing carried: the state alone");
        let pending = vec![
            Pending { seq: 4, due_ms: 100, batch: Bytes::from_static(b"abc") },
            Pending { seq: 9, due_ms: 50, batch: Bytes::from_static(b"") },
        ];
        let row = ScheduleRow { next_due_ms: 7, cadence: "every|500|0".into(), batch: Bytes::from_static(b"m") };
        let carried = Carried { mark: 12, pending, cancelled: vec![3, 5], schedules: vec![("tick".into(), row)] };
        let data = encode(state.clone(), &carried);
        assert_eq!(decode(&data).unwrap(), (state, Some(carried)));
        for cut in 4..data.len() {
            assert!(decode(&data.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut bad = data.to_vec();
        bad[20] ^= 1;
        assert!(decode(&Bytes::from(bad)).unwrap_err().contains("checksum"));
    }
}
