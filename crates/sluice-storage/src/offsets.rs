//! The offset and time indexes: written by the partition state machine when it applies a batch,
//! read by consumers' fetches and by look-ups by time.
//!
//! Storage cannot derive these on its own (message offsets are assigned at apply time and the
//! payload is opaque here), so it keeps them valid and says how far they reach:
//! [`Log::indexed_end`]. After a crash, or when index files were lost, the state machine
//! re-applies entries from there and calls [`Log::index_batch`] again; calls for entries that
//! are already indexed are ignored, so replaying is always safe.

use std::sync::Arc;

use crate::entry::{IndexedEnd, OffsetLocation};
use crate::error::{Result, StorageError};
use crate::index::{IndexFile, offset_record, time_record, u32_at, u64_at};
use crate::log::Log;
use crate::recovery::SecondaryStatus;
use crate::segment::{Segment, rel};

impl Log {
    /// Records that entry `entry_index` holds a batch of `count` messages starting at
    /// `base_offset`, the newest stamped `max_timestamp_ms`. Batches must be indexed in log
    /// order with dense offsets (each starts where the previous one ended); a call for an entry
    /// that is already indexed is ignored. Batches with no messages need not be indexed.
    pub fn index_batch(&self, entry_index: u64, base_offset: u64, count: u32, max_timestamp_ms: i64) -> Result<()> {
        let _guard = self.index_lock.lock().expect("index lock poisoned");
        if let Some(end) = self.indexed_end() {
            if entry_index <= end.entry_index {
                return Ok(());
            }
            if base_offset != end.next_offset {
                return Err(StorageError::OffsetIndex(format!(
                    "batch in entry {entry_index} starts at offset {base_offset}, but the previous batch ends before {}",
                    end.next_offset
                )));
            }
        }
        if count == 0 {
            return Ok(());
        }
        let seg = self.segment_holding(entry_index)?;
        let mut m = seg.meta_mut();
        m.offsets.push(&offset_record(base_offset, rel(seg.base_index, entry_index), count))?;
        let rising = m.times.is_empty() || max_timestamp_ms > last_time(&m.times);
        if rising {
            m.times.push(&time_record(max_timestamp_ms, base_offset))?;
        }
        Ok(())
    }

    /// Writes the offset and time indexes of every segment not yet sealed back to disk and waits
    /// for it. Sealed segments' indexes are durable already. A state machine calls this before
    /// recording a snapshot, so the indexes always reach at least the snapshot's position.
    pub fn flush_indexes(&self) -> Result<()> {
        for seg in self.segments().iter().filter(|s| !s.is_sealed()) {
            let m = seg.meta();
            m.offsets.flush()?;
            m.times.flush()?;
        }
        Ok(())
    }

    /// The last indexed batch and the offset after it; `None` when nothing is indexed.
    pub fn indexed_end(&self) -> Option<IndexedEnd> {
        // Called for every applied batch: walk the segments under the read lock instead of
        // cloning the list (lock order log → segment, as everywhere else).
        self.shared().segments.iter().rev().find_map(|seg| {
            let m = seg.meta();
            (!m.offsets.is_empty()).then(|| {
                let r = m.offsets.record(m.offsets.len() - 1);
                IndexedEnd {
                    entry_index: seg.base_index + u64::from(u32_at(r, 8)),
                    next_offset: u64_at(r, 0) + u64::from(u32_at(r, 12)),
                }
            })
        })
    }

    /// The first offset still indexed and not purged (the log start offset), if any.
    pub fn first_indexed_offset(&self) -> Option<u64> {
        let first = self.first_index();
        self.segments().iter().find_map(|seg| {
            let m = seg.meta();
            let k = m.offsets.partition_point(|r| seg.base_index + u64::from(u32_at(r, 8)) < first);
            (k < m.offsets.len()).then(|| u64_at(m.offsets.record(k), 0))
        })
    }

    /// The batch holding message `offset`, or `None` if the offset is not indexed (below the
    /// log start — purged — or not yet applied).
    pub fn find_offset(&self, offset: u64) -> Option<OffsetLocation> {
        let first = self.first_index();
        let shared = self.shared();
        for seg in shared.segments.iter().rev() {
            let m = seg.meta();
            if m.offsets.is_empty() || u64_at(m.offsets.record(0), 0) > offset {
                continue;
            }
            let k = m.offsets.partition_point(|r| u64_at(r, 0) <= offset) - 1;
            let r = m.offsets.record(k);
            let (base, count) = (u64_at(r, 0), u32_at(r, 12));
            let entry_index = seg.base_index + u64::from(u32_at(r, 8));
            let held = offset < base + u64::from(count) && entry_index >= first;
            return held.then_some(OffsetLocation { entry_index, base_offset: base, count });
        }
        None
    }

    /// The indexed batches held by entries `first..=last`, in log order (a sender of retained
    /// entries passes their offsets along with them).
    pub fn batches_between(&self, first: u64, last: u64) -> Vec<OffsetLocation> {
        let mut out = Vec::new();
        for seg in self.segments() {
            if seg.base_index > last {
                break;
            }
            let m = seg.meta();
            if m.next_index <= first {
                continue;
            }
            let from = m.offsets.partition_point(|r| seg.base_index + u64::from(u32_at(r, 8)) < first);
            for k in from..m.offsets.len() {
                let r = m.offsets.record(k);
                let entry_index = seg.base_index + u64::from(u32_at(r, 8));
                if entry_index > last {
                    return out;
                }
                out.push(OffsetLocation { entry_index, base_offset: u64_at(r, 0), count: u32_at(r, 12) });
            }
        }
        out
    }

    /// Where to start reading for the first message stamped at or after `timestamp_ms`: every
    /// message before the returned offset is older. `None` when every indexed message is older.
    pub fn find_timestamp(&self, timestamp_ms: i64) -> Option<u64> {
        for seg in self.segments() {
            let m = seg.meta();
            if m.times.is_empty() || last_time(&m.times) < timestamp_ms {
                continue;
            }
            let k = m.times.partition_point(|r| (u64_at(r, 0) as i64) < timestamp_ms);
            return Some(u64_at(m.times.record(k), 8));
        }
        None
    }

    fn segment_holding(&self, index: u64) -> Result<Arc<Segment>> {
        let s = self.shared();
        let i = s.segments.partition_point(|seg| seg.base_index <= index);
        let seg = i.checked_sub(1).map(|i| &s.segments[i]);
        match seg {
            Some(seg) if index < seg.meta().next_index => Ok(Arc::clone(seg)),
            _ => Err(StorageError::OffsetIndex(format!("entry {index} is not in the log"))),
        }
    }
}

pub(crate) fn last_time(times: &IndexFile) -> i64 {
    u64_at(times.record(times.len() - 1), 0) as i64
}

/// Checks the offset and time indexes of all segments at open. From the first segment whose
/// indexes were missing or fail a check, they are trimmed (that segment) or emptied (every later
/// one), so what remains is a valid prefix that [`Log::indexed_end`] describes.
pub(crate) fn validate_secondary(segments: &[Arc<Segment>], statuses: &[SecondaryStatus]) {
    let mut expected: Option<u64> = None;
    let mut broken = false;
    for (seg, status) in segments.iter().zip(statuses) {
        let mut m = seg.meta_mut();
        if let SecondaryStatus::Recreated(why) = status {
            tracing::warn!(path = %seg.paths.offsets.display(), "offset/time index unusable ({why}); re-applied entries will rebuild it");
            broken = true;
        }
        if broken {
            m.offsets.truncate(0);
            m.times.truncate(0);
            continue;
        }
        let entries = m.next_index - seg.base_index;
        let keep = valid_offset_prefix(&m.offsets, entries, &mut expected);
        let last_base = keep.checked_sub(1).map(|k| u64_at(m.offsets.record(k), 0));
        let keep_times = valid_time_prefix(&m.times, last_base);
        if keep < m.offsets.len() || keep_times < m.times.len() {
            tracing::warn!(path = %seg.paths.offsets.display(), keep, keep_times, "trimming offset/time index records past the valid prefix");
            // A gap in the time index would send look-ups past this segment, so the offset index
            // stops where the time index stops being trustworthy.
            let cut = if keep_times < m.times.len() {
                m.offsets.partition_point(|r| u64_at(r, 0) < u64_at(m.times.record(keep_times), 8))
            } else {
                keep
            };
            m.offsets.truncate(cut.min(keep));
            m.times.truncate(keep_times);
            broken = true;
        }
    }
}

/// How many leading offset records are valid: counts positive, entries rising and inside the
/// segment, offsets dense across records (and across segments, via `expected`).
fn valid_offset_prefix(offsets: &IndexFile, entries: u64, expected: &mut Option<u64>) -> usize {
    let mut prev_rel: Option<u32> = None;
    for k in 0..offsets.len() {
        let r = offsets.record(k);
        let (base, rel, count) = (u64_at(r, 0), u32_at(r, 8), u32_at(r, 12));
        let ok = count > 0
            && u64::from(rel) < entries
            && prev_rel.is_none_or(|p| rel > p)
            && expected.is_none_or(|e| base == e);
        if !ok {
            return k;
        }
        prev_rel = Some(rel);
        *expected = Some(base + u64::from(count));
    }
    offsets.len()
}

/// How many leading time records are valid: timestamps and offsets strictly rising, and no
/// record beyond the last valid batch (`last_base`).
fn valid_time_prefix(times: &IndexFile, last_base: Option<u64>) -> usize {
    let mut prev: Option<(i64, u64)> = None;
    for k in 0..times.len() {
        let r = times.record(k);
        let (ts, base) = (u64_at(r, 0) as i64, u64_at(r, 8));
        let ok = last_base.is_some_and(|l| base <= l) && prev.is_none_or(|(pts, pb)| ts > pts && base > pb);
        if !ok {
            return k;
        }
        prev = Some((ts, base));
    }
    times.len()
}
