//! The offset and time indexes written at apply time: look-ups against a model, persistence
//! across reopening, falling back to the valid prefix when a middle segment's offset index is
//! lost and re-indexing from there, replay as a no-op, ordering errors, and truncation.

use std::fs;
use std::path::Path;

use sluice_storage::{IndexedEnd, Log, LogConfig, ManualClock, OffsetLocation, StorageError};

use super::support::{append_in_batches, entries, frames, open_with_clock, segment_logs, small_config};

/// One indexed batch: the entry holding it, its first offset, message count and newest timestamp.
#[derive(Debug, Clone, Copy)]
struct Batch {
    entry: u64,
    base: u64,
    count: u32,
    max_ts: i64,
}

/// Batches for entries `1..=n`: counts 0..=4 (empty ones are not indexed), timestamps
/// non-decreasing with repeats (so the sparse time index skips some).
fn batches(n: u64) -> Vec<Batch> {
    let mut next = 0;
    (1..=n)
        .map(|entry| {
            let count = (entry * 7 % 5) as u32;
            let b = Batch { entry, base: next, count, max_ts: 10_000 + (entry / 3) as i64 * 100 };
            next += u64::from(count);
            b
        })
        .collect()
}

/// A log of `n` entries (several segments) with every batch indexed.
fn indexed_log(dir: &Path, n: u64) -> (Log, Vec<Batch>, LogConfig, ManualClock) {
    let (config, clock) = (small_config(), ManualClock::new(0));
    let log = open_with_clock(dir, &config, &clock);
    append_in_batches(&log, &entries(1..n + 1, 1), 50);
    let model = batches(n);
    index_all(&log, &model);
    (log, model, config, clock)
}

fn index_all(log: &Log, batches: &[Batch]) {
    for b in batches {
        log.index_batch(b.entry, b.base, b.count, b.max_ts).unwrap_or_else(|e| panic!("index {b:?}: {e}"));
    }
}

/// The batches that are indexed (empty ones are not).
fn indexed(model: &[Batch]) -> impl Iterator<Item = &Batch> {
    model.iter().filter(|b| b.count > 0)
}

/// Asserts every look-up against `model`, of which the batches up to entry `upto` are indexed.
fn assert_lookups(log: &Log, model: &[Batch], upto: u64) {
    let live: Vec<Batch> = indexed(model).filter(|b| b.entry <= upto).copied().collect();
    let last = live.last().expect("some batch is indexed");
    let end = last.base + u64::from(last.count);
    assert_eq!(log.indexed_end(), Some(IndexedEnd { entry_index: last.entry, next_offset: end }));
    assert_eq!(log.first_indexed_offset(), Some(0));
    for b in &live {
        let want = Some(OffsetLocation { entry_index: b.entry, base_offset: b.base, count: b.count });
        for offset in b.base..b.base + u64::from(b.count) {
            assert_eq!(log.find_offset(offset), want, "offset {offset}");
        }
    }
    assert_eq!(log.find_offset(end), None, "the offset after the last indexed batch");
    for ts in (9_000..=last.max_ts + 200).step_by(50) {
        let want = live.iter().find(|b| b.max_ts >= ts).map(|b| b.base);
        assert_eq!(log.find_timestamp(ts), want, "timestamp {ts}");
    }
}

/// Checks look-ups over many batches in several segments, before and after reopening.
#[test]
fn given_indexed_batches_lookups_should_match_the_model_before_and_after_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, model, config, clock) = indexed_log(dir.path(), 600);
    assert!(log.segment_count() > 5);
    assert_lookups(&log, &model, 600);
    drop(log);
    let log = open_with_clock(dir.path(), &config, &clock);
    assert_lookups(&log, &model, 600);
}

/// Checks that indexing an entry already indexed is ignored, even with other values.
#[test]
fn given_already_indexed_entries_index_batch_should_be_a_no_op() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, model, ..) = indexed_log(dir.path(), 300);
    index_all(&log, &model[100..]);
    for b in indexed(&model).take(50) {
        log.index_batch(b.entry, b.base + 1_000, b.count + 3, 0).expect("a replay is accepted and ignored");
    }
    assert_lookups(&log, &model, 300);
}

/// Checks that a batch not starting where the previous one ended is an `OffsetIndex` error, and
/// so is a batch for an entry the log does not hold.
#[test]
fn given_a_gap_in_offsets_index_batch_should_fail_with_offset_index() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (config, clock) = (small_config(), ManualClock::new(0));
    let log = open_with_clock(dir.path(), &config, &clock);
    log.append(&entries(1..11, 1)).expect("append");
    log.index_batch(1, 0, 5, 100).expect("first batch");
    for base in [4, 6, 100] {
        let err = log.index_batch(2, base, 5, 200).expect_err("non-contiguous offsets");
        assert!(matches!(&err, StorageError::OffsetIndex(m) if m.contains("offset")), "{err:?}");
        assert!(err.to_string().contains(&format!("starts at offset {base}")), "{err}");
    }
    let err = log.index_batch(11, 5, 5, 300).expect_err("entry not in the log");
    assert!(matches!(&err, StorageError::OffsetIndex(m) if m.contains("not in the log")), "{err:?}");
    log.index_batch(2, 5, 5, 200).expect("the right offset");
    assert_eq!(log.indexed_end(), Some(IndexedEnd { entry_index: 2, next_offset: 10 }));
}

/// Checks that losing a middle segment's offset index makes `indexed_end` fall back to the end
/// of the valid prefix, and that re-indexing from there restores every look-up.
#[test]
fn given_a_lost_middle_offset_index_reopen_should_fall_back_and_reindexing_should_restore() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, model, config, clock) = indexed_log(dir.path(), 600);
    drop(log);
    let logs = segment_logs(dir.path());
    let middle = &logs[logs.len() / 2];
    let middle_base: u64 = middle.file_stem().and_then(|s| s.to_str()?.parse().ok()).expect("base");
    fs::remove_file(middle.with_extension("offindex")).expect("delete an offset index");
    let log = open_with_clock(dir.path(), &config, &clock);
    let prefix_end = indexed(&model).filter(|b| b.entry < middle_base).last().expect("earlier batches").entry;
    assert_lookups(&log, &model, prefix_end);
    let end = log.indexed_end().expect("a valid prefix");
    let rest: Vec<Batch> = model.iter().filter(|b| b.entry > end.entry_index).copied().collect();
    assert_eq!(rest[0].base, end.next_offset, "re-indexing resumes at indexed_end");
    index_all(&log, &rest);
    assert_lookups(&log, &model, 600);
    drop(log);
    let log = open_with_clock(dir.path(), &config, &clock);
    assert_lookups(&log, &model, 600);
}

/// Checks that truncating the log drops the offset and time records of the removed entries,
/// durably, and that indexing continues from the new end.
#[test]
fn given_indexed_entries_truncate_from_should_drop_their_offset_and_time_records() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, model, config, clock) = indexed_log(dir.path(), 600);
    let cut_in_segment = 437;
    log.truncate_from(cut_in_segment).expect("truncate");
    assert_lookups(&log, &model, cut_in_segment - 1);
    let at_base = frames(segment_logs(dir.path()).last().expect("segments"))[0].index;
    log.truncate_from(at_base).expect("truncate at a segment base");
    assert_lookups(&log, &model, at_base - 1);
    drop(log);
    let log = open_with_clock(dir.path(), &config, &clock);
    assert_lookups(&log, &model, at_base - 1);
    append_in_batches(&log, &entries(at_base..601, 2), 50);
    let rest: Vec<Batch> = model.iter().filter(|b| b.entry >= at_base).copied().collect();
    index_all(&log, &rest);
    assert_lookups(&log, &model, 600);
}

/// Checks that when a crash tore the newest segment, reopening also drops the offset and time
/// records of the lost entries, and indexing resumes from the surviving end.
#[test]
fn given_a_torn_newest_segment_reopen_should_drop_the_lost_entries_offset_records() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, model, config, clock) = indexed_log(dir.path(), 600);
    drop(log);
    let newest = segment_logs(dir.path()).pop().expect("segments");
    let tail = frames(&newest);
    let torn = tail[tail.len() / 2];
    fs::OpenOptions::new().write(true).open(&newest).and_then(|f| f.set_len(torn.pos + 5)).expect("tear");
    let log = open_with_clock(dir.path(), &config, &clock);
    assert_eq!(log.last_id().map(|l| l.index), Some(torn.index - 1));
    assert_lookups(&log, &model, torn.index - 1);
    append_in_batches(&log, &entries(torn.index..601, 1), 50);
    index_all(&log, &model[(torn.index - 1) as usize..]);
    assert_lookups(&log, &model, 600);
}

/// Checks that after a purge in the middle of a segment (as after a Raft snapshot), batches in
/// purged entries are no longer found and the log start offset moves to the first kept batch.
#[test]
fn given_a_purge_inside_a_segment_lookups_should_not_return_purged_batches() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, model, _, _) = indexed_log(dir.path(), 300);
    let first_seg_entries = frames(&segment_logs(dir.path())[0]).len() as u64;
    let upto = first_seg_entries / 2;
    log.purge_to(sluice_storage::EntryId::new(upto, 1)).unwrap();
    let kept = indexed(&model).find(|b| b.entry > upto).expect("a kept batch");
    assert_eq!(log.first_indexed_offset(), Some(kept.base));
    for b in indexed(&model).filter(|b| b.entry <= upto) {
        assert_eq!(log.find_offset(b.base), None, "batch in purged entry {}", b.entry);
    }
    let want = Some(OffsetLocation { entry_index: kept.entry, base_offset: kept.base, count: kept.count });
    assert_eq!(log.find_offset(kept.base), want);
}
