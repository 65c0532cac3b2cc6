//! Reading committed record batches back out of a partition's log, for consumers
//! (docs/ARCHITECTURE.md, D7).
//!
//! The log holds every Raft entry — blank and membership entries, and produce commands the
//! state machine refused or found to be duplicates — but only the batches the state machine
//! accepted are in its offset index. So a read walks the offset index from the wanted offset,
//! batch by batch, and takes from the log exactly the entries the index names: nothing else is
//! ever returned, and nothing at or past the high watermark (the state machine's next offset),
//! so only applied — hence committed — data leaves the broker.

use bytes::Bytes;
use sluice_storage::{Log, OffsetLocation, Result, StorageError};

use super::command::produce_batch;

/// One committed batch as stored: its first offset, its message count and its bytes (a slice
/// of the read buffer, exactly as the producer sent them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedBatch {
    /// The offset of the batch's first message.
    pub base_offset: u64,
    /// Messages in the batch.
    pub count: u32,
    /// The record batch.
    pub batch: Bytes,
}

/// Reads the whole batches holding offsets from `offset` up to `high_watermark`, in offset
/// order. The first batch may begin before `offset`. Batches are added while their bytes stay
/// within `max_bytes`, but the first is returned however large it is.
///
/// Returns no batch when `offset` is at or past `high_watermark`, or is not indexed (below the
/// log start); [`StorageError::Purged`] when retention removed the entries while they were being
/// looked up. Entries are read a range at a time: one read buffer per segment, no copy per batch.
pub fn read_committed(log: &Log, offset: u64, high_watermark: u64, max_bytes: usize) -> Result<Vec<CommittedBatch>> {
    let mut out = Vec::new();
    if offset >= high_watermark {
        return Ok(out);
    }
    let (Some(mut next), Some(last)) = (log.find_offset(offset), log.find_offset(high_watermark - 1)) else {
        return Ok(out);
    };
    let end = last.entry_index + 1;
    let mut bytes = 0usize;
    let mut from = next.entry_index;
    loop {
        let budget = if out.is_empty() { max_bytes } else { max_bytes.saturating_sub(bytes) };
        if budget == 0 {
            return Ok(out);
        }
        let entries = match log.read(from, end, budget) {
            Ok(entries) => entries,
            // Retention raced the look-up: what was read so far is still good.
            Err(StorageError::Purged { .. }) if !out.is_empty() => return Ok(out),
            Err(e) => return Err(e),
        };
        let Some(read_to) = entries.last().map(|e| e.index) else { return Ok(out) };
        for entry in &entries {
            if entry.index != next.entry_index {
                continue; // blank, membership, refused or duplicate: not data
            }
            let batch = indexed_batch(entry.index, next, &entry.payload)?;
            if !out.is_empty() && bytes + batch.len() > max_bytes {
                return Ok(out);
            }
            bytes += batch.len();
            out.push(CommittedBatch { base_offset: next.base_offset, count: next.count, batch });
            let after = next.base_offset + u64::from(next.count);
            match log.find_offset(after).filter(|_| after < high_watermark) {
                Some(location) => next = location,
                None => return Ok(out),
            }
        }
        from = read_to + 1;
        if from >= end {
            return Ok(out);
        }
    }
}

/// The batch of entry `index`, which the offset index says holds `location`'s batch.
fn indexed_batch(index: u64, location: OffsetLocation, payload: &Bytes) -> Result<Bytes> {
    produce_batch(payload).ok_or_else(|| {
        StorageError::OffsetIndex(format!(
            "entry {index} is indexed as the batch at offset {} but holds no record batch",
            location.base_offset
        ))
    })
}

#[cfg(test)]
mod tests {
    use sluice_common::record::{BatchBuilder, ProducerStamp, Record};
    use sluice_storage::{Entry, LogConfig};

    use super::*;
    use crate::codec::{KIND_BLANK, KIND_MEMBERSHIP};
    use crate::partition::PartitionCommand;

    fn batch(values: &[&str]) -> Bytes {
        let mut b = BatchBuilder::new(ProducerStamp::NONE, 64);
        values.iter().for_each(|v| b.push(&Record::new(v.to_string(), 1)));
        b.finish()
    }

    fn produce(index: u64, batch: &Bytes) -> Entry {
        Entry::new(index, 1, PartitionCommand::produce(batch).stored().clone())
    }

    /// A log as a partition leaves it: data batches between a blank entry, a refused or
    /// duplicate batch and a membership entry, the last batch appended but not yet applied.
    fn log_with_gaps(dir: &std::path::Path) -> (Log, [Bytes; 4]) {
        let log = Log::open(dir, LogConfig::default()).unwrap();
        let [a, dup, c, d] = [batch(&["a0", "a1"]), batch(&["a0", "a1"]), batch(&["c0", "c1", "c2"]), batch(&["d0"])];
        let entries = [
            Entry::new(1, 1, Bytes::from_static(&[KIND_BLANK])),
            produce(2, &a),
            produce(3, &dup),
            Entry::new(4, 1, Bytes::from_static(&[KIND_MEMBERSHIP, 0, 0, 0, 0])),
            produce(5, &c),
            produce(6, &d),
            produce(7, &batch(&["unapplied"])),
        ];
        log.append(&entries).unwrap();
        for (entry, base, count) in [(2, 0, 2), (5, 2, 3), (6, 5, 1)] {
            log.index_batch(entry, base, count, 1).unwrap();
        }
        (log, [a, c, d, dup])
    }

    fn bases(batches: &[CommittedBatch]) -> Vec<u64> {
        batches.iter().map(|b| b.base_offset).collect()
    }

    #[test]
    fn only_indexed_batches_below_the_high_watermark_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let (log, [a, c, d, _]) = log_with_gaps(dir.path());
        let all = read_committed(&log, 0, 6, usize::MAX).unwrap();
        let expected = [(0, 2, a.clone()), (2, 3, c.clone()), (5, 1, d)];
        let got: Vec<(u64, u32, Bytes)> = all.into_iter().map(|b| (b.base_offset, b.count, b.batch)).collect();
        assert_eq!(got, expected);
        assert_eq!(bases(&read_committed(&log, 3, 6, usize::MAX).unwrap()), [2, 5], "the batch holding 3 first");
        assert_eq!(bases(&read_committed(&log, 0, 5, usize::MAX).unwrap()), [0, 2], "nothing at the watermark");
        assert!(read_committed(&log, 6, 6, usize::MAX).unwrap().is_empty());
    }

    #[test]
    fn the_byte_budget_stops_between_batches_but_always_gives_one() {
        let dir = tempfile::tempdir().unwrap();
        let (log, [a, c, ..]) = log_with_gaps(dir.path());
        assert_eq!(bases(&read_committed(&log, 0, 6, 1).unwrap()), [0]);
        assert_eq!(bases(&read_committed(&log, 0, 6, a.len() + c.len()).unwrap()), [0, 2]);
        assert_eq!(bases(&read_committed(&log, 0, 6, a.len() + c.len() - 1).unwrap()), [0]);
    }

    #[test]
    fn an_index_pointing_at_a_non_batch_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = log_with_gaps(dir.path());
        log.append(&[Entry::new(8, 1, Bytes::from_static(&[KIND_BLANK]))]).unwrap();
        log.index_batch(8, 6, 1, 1).unwrap();
        let err = read_committed(&log, 6, 7, usize::MAX).unwrap_err();
        assert!(err.to_string().contains("entry 8"), "{err}");
    }
}
