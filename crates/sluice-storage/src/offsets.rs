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
use crate::segment::{Segment, SegmentMeta, rel};
use crate::segment_files::{IndexSummary, Indexes};

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
        // The index lock keeps truncation and purging out: the segment cannot be deleted.
        let seg = self.segment_holding(entry_index)?;
        push_batch(&seg, entry_index, base_offset, count, max_timestamp_ms)
    }

    /// Writes the offset and time indexes of every segment not yet sealed back to disk and waits
    /// for it. Sealed segments' indexes are durable already. A state machine calls this before
    /// recording a snapshot, so the indexes always reach at least the snapshot's position.
    pub fn flush_indexes(&self) -> Result<()> {
        for seg in self.segments().iter().filter(|s| !s.is_sealed()) {
            // Not sealed: open for good, so this reopens nothing.
            if let Some(files) = seg.files()? {
                let idx = files.indexes();
                idx.offsets.flush()?;
                idx.times.flush()?;
            }
        }
        Ok(())
    }

    /// The last indexed batch and the offset after it; `None` when nothing is indexed.
    pub fn indexed_end(&self) -> Option<IndexedEnd> {
        // Called for every applied batch: walk the segments under the read lock instead of
        // cloning the list (lock order log → segment, as everywhere else), reading only what
        // each keeps in memory.
        self.shared().segments.iter().rev().find_map(|seg| {
            seg.meta().summary.last_offset.map(|r| IndexedEnd {
                entry_index: seg.base_index + u64::from(u32_at(&r, 8)),
                next_offset: u64_at(&r, 0) + u64::from(u32_at(&r, 12)),
            })
        })
    }

    /// The first offset still indexed and not purged (the log start offset), if any.
    pub fn first_indexed_offset(&self) -> Option<u64> {
        let first = self.first_index();
        for seg in self.segments() {
            let summary = seg.meta().summary.clone();
            let (Some(head), Some(tail)) = (summary.first_offset, summary.last_offset) else { continue };
            if seg.base_index + u64::from(u32_at(&tail, 8)) < first {
                continue;
            }
            if seg.base_index + u64::from(u32_at(&head, 8)) >= first {
                return Some(u64_at(&head, 0));
            }
            if let Some((_, answer)) = summary.first_offset_from.filter(|(asked, _)| *asked == first) {
                return answer;
            }
            // Purged part-way through this segment: look it up once, then answer from memory.
            let answer = look_up(&seg, |idx| {
                let k = idx.offsets.partition_point(|r| seg.base_index + u64::from(u32_at(r, 8)) < first);
                (k < idx.offsets.len()).then(|| u64_at(idx.offsets.record(k), 0))
            })
            .flatten();
            let mut m = seg.meta_mut();
            // Remembered only if the index did not change meanwhile (a change resets the memo).
            if (m.summary.first_offset, m.summary.last_offset) == (summary.first_offset, summary.last_offset) {
                m.summary.first_offset_from = Some((first, answer));
            }
            return answer;
        }
        None
    }

    /// The batch holding message `offset`, or `None` if the offset is not indexed (below the
    /// log start — purged — or not yet applied).
    pub fn find_offset(&self, offset: u64) -> Option<OffsetLocation> {
        let first = self.first_index();
        let seg = {
            let shared = self.shared();
            let holds = |seg: &&Arc<Segment>| seg.meta().summary.first_offset.is_some_and(|r| u64_at(&r, 0) <= offset);
            shared.segments.iter().rev().find(holds).cloned()?
        };
        let found = look_up(&seg, |idx| {
            let k = idx.offsets.partition_point(|r| u64_at(r, 0) <= offset).checked_sub(1)?;
            let r = idx.offsets.record(k);
            Some((u64_at(r, 0), u32_at(r, 12), seg.base_index + u64::from(u32_at(r, 8))))
        })??;
        let (base, count, entry_index) = found;
        let held = offset < base + u64::from(count) && entry_index >= first;
        held.then_some(OffsetLocation { entry_index, base_offset: base, count })
    }

    /// The indexed batches held by entries `first..=last`, in log order (a sender of retained
    /// entries passes their offsets along with them).
    pub fn batches_between(&self, first: u64, last: u64) -> Vec<OffsetLocation> {
        let mut out = Vec::new();
        for seg in self.segments() {
            if seg.base_index > last {
                break;
            }
            let skip = {
                let m = seg.meta();
                m.next_index <= first || m.summary.first_offset.is_none()
            };
            if skip {
                continue;
            }
            let done = look_up(&seg, |idx| {
                let from = idx.offsets.partition_point(|r| seg.base_index + u64::from(u32_at(r, 8)) < first);
                for k in from..idx.offsets.len() {
                    let r = idx.offsets.record(k);
                    let entry_index = seg.base_index + u64::from(u32_at(r, 8));
                    if entry_index > last {
                        return true;
                    }
                    out.push(OffsetLocation { entry_index, base_offset: u64_at(r, 0), count: u32_at(r, 12) });
                }
                false
            });
            if done != Some(false) {
                break;
            }
        }
        out
    }

    /// Where to start reading for the first message stamped at or after `timestamp_ms`: every
    /// message before the returned offset is older. `None` when every indexed message is older.
    pub fn find_timestamp(&self, timestamp_ms: i64) -> Option<u64> {
        for seg in self.segments() {
            if seg.meta().summary.last_time_ms.is_none_or(|last| last < timestamp_ms) {
                continue;
            }
            return look_up(&seg, |idx| {
                let k = idx.times.partition_point(|r| (u64_at(r, 0) as i64) < timestamp_ms);
                (k < idx.times.len()).then(|| u64_at(idx.times.record(k), 8))
            })
            .flatten();
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

/// Appends to `seg`'s indexes an offset record for the batch in entry `entry_index`, and a time
/// record if the batch's newest timestamp is the newest yet; keeps the segment's summary of its
/// indexes current, also when a push fails part-way.
pub(crate) fn push_batch(
    seg: &Segment,
    entry_index: u64,
    base_offset: u64,
    count: u32,
    max_timestamp_ms: i64,
) -> Result<()> {
    let files = seg.live_files()?;
    let mut m = seg.meta_mut();
    let mut idx = files.indexes_mut();
    let rel_index = rel(seg.base_index, entry_index);
    let mut pushed = idx.offsets.push(&offset_record(base_offset, rel_index, count));
    if pushed.is_ok() && m.summary.last_time_ms.is_none_or(|last| max_timestamp_ms > last) {
        pushed = idx.times.push(&time_record(max_timestamp_ms, base_offset));
    }
    m.summary = IndexSummary::of(&idx);
    pushed
}

/// Runs `f` on a segment's indexes, reopening it if it is cold. `None` if the segment was
/// deleted meanwhile, or could not be reopened: the look-ups that call this answer "not
/// indexed" rather than fail, so the error is logged here.
fn look_up<T>(seg: &Segment, f: impl FnOnce(&Indexes) -> T) -> Option<T> {
    match seg.files() {
        Ok(files) => files.map(|files| f(&files.indexes())),
        Err(e) => {
            tracing::error!(path = %seg.paths.log.display(), "reopening a segment to look an offset or time up: {e}");
            None
        }
    }
}

/// Checks the offset and time indexes of a log's segments at open, one segment at a time in log
/// order (so that each sealed segment can be closed as soon as it is checked). From the first
/// segment whose indexes were missing or fail a check, they are trimmed (that segment) or
/// emptied (every later one), so what remains is a valid prefix that [`Log::indexed_end`]
/// describes.
#[derive(Debug, Default)]
pub(crate) struct SecondaryCheck {
    /// The offset the next segment's first batch must start at.
    expected: Option<u64>,
    /// An earlier segment's indexes were cut: every later one is emptied.
    broken: bool,
}

impl SecondaryCheck {
    /// Checks (and trims) the indexes of `seg`, the segment after the last one checked.
    pub fn check(&mut self, seg: &Segment, status: &SecondaryStatus) -> Result<()> {
        let files = seg.live_files()?;
        let mut m = seg.meta_mut();
        let mut idx = files.indexes_mut();
        if let SecondaryStatus::Recreated(why) = status {
            tracing::warn!(path = %seg.paths.offsets.display(), "offset/time index unusable ({why}); re-applied entries will rebuild it");
            self.broken = true;
        }
        if self.broken {
            idx.offsets.truncate(0);
            idx.times.truncate(0);
        } else {
            self.trim(seg, &m, &mut idx);
        }
        m.summary = IndexSummary::of(&idx);
        Ok(())
    }

    fn trim(&mut self, seg: &Segment, m: &SegmentMeta, idx: &mut Indexes) {
        let entries = m.next_index - seg.base_index;
        let keep = valid_offset_prefix(&idx.offsets, entries, &mut self.expected);
        let last_base = keep.checked_sub(1).map(|k| u64_at(idx.offsets.record(k), 0));
        let keep_times = valid_time_prefix(&idx.times, last_base);
        if keep < idx.offsets.len() || keep_times < idx.times.len() {
            tracing::warn!(path = %seg.paths.offsets.display(), keep, keep_times, "trimming offset/time index records past the valid prefix");
            // A gap in the time index would send look-ups past this segment, so the offset index
            // stops where the time index stops being trustworthy.
            let cut = if keep_times < idx.times.len() {
                idx.offsets.partition_point(|r| u64_at(r, 0) < u64_at(idx.times.record(keep_times), 8))
            } else {
                keep
            };
            idx.offsets.truncate(cut.min(keep));
            idx.times.truncate(keep_times);
            self.broken = true;
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
