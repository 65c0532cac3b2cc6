//! `truncate_from` (Raft log conflicts) and `purge_to` (snapshots): inside a segment, at a
//! segment base, across segments, beyond the end, against the purge point; each result is
//! checked again after reopening and by appending after it.

use std::path::Path;

use sluice_storage::{Entry, EntryId, Log, LogConfig, ManualClock, StorageError};

use super::lifecycle::assert_survives_reopen;
use super::support::{
    append_in_batches, assert_holds, entries, entry, frames, open_with_clock, segment_logs, small_config,
};

/// A log of entries `1..=1200` (about 25 segments) in `dir`, with its entries.
fn filled(dir: &Path) -> (Log, Vec<Entry>, LogConfig, ManualClock) {
    let (config, clock) = (small_config(), ManualClock::new(0));
    let log = open_with_clock(dir, &config, &clock);
    let all = entries(1..1201, 1);
    append_in_batches(&log, &all, 64);
    assert!(log.segment_count() > 10, "{}", log.segment_count());
    (log, all, config, clock)
}

/// Base indexes of the segment files in `dir`.
fn bases(dir: &Path) -> Vec<u64> {
    segment_logs(dir).iter().map(|p| frames(p).first().map_or(u64::MAX, |f| f.index)).collect()
}

/// Truncates a filled log from the index `pick` chooses given the segment bases, checks the log
/// against the kept prefix and the segment count `pick` expects, appends replacement entries in
/// a new term, and checks both again after reopening.
fn truncate_and_check(pick: impl Fn(&[u64]) -> (u64, usize)) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, all, config, clock) = filled(dir.path());
    let (index, expected_segments) = pick(&bases(dir.path()));
    log.truncate_from(index).unwrap_or_else(|e| panic!("truncate_from({index}): {e}"));
    let kept = &all[..(index - 1) as usize];
    assert_eq!(log.last_id(), kept.last().map(Entry::id));
    assert_eq!(log.segment_count(), expected_segments, "segments after truncating from {index}");
    assert_eq!(log.term_of(index).expect("term_of"), None);
    assert_holds(&log, kept);
    let log = assert_survives_reopen(log, &config, &clock);
    let new: Vec<Entry> = (index..index + 40).map(|i| entry(i, 2, 300)).collect();
    log.append(&new).expect("append after truncating");
    let expected: Vec<Entry> = kept.iter().chain(&new).cloned().collect();
    assert_holds(&log, &expected);
    let log = assert_survives_reopen(log, &config, &clock);
    assert_holds(&log, &expected);
    assert_eq!(log.term_of(index).expect("term_of"), Some(2));
}

/// Checks truncation from an entry in the middle of a segment: that segment is cut there.
#[test]
fn given_an_index_inside_a_segment_truncate_from_should_cut_that_segment_there() {
    truncate_and_check(|b| (b[5] + (b[6] - b[5]) / 2, 6));
    truncate_and_check(|b| (b[6] - 1, 6));
}

/// Checks truncation from exactly the first entry of a segment: that segment and all later ones
/// are deleted and the previous one is left whole (and becomes the one appended to).
#[test]
fn given_a_segment_base_truncate_from_should_delete_from_that_segment_on() {
    truncate_and_check(|b| (b[4], 4));
    truncate_and_check(|b| (b[b.len() - 1], b.len() - 1));
}

/// Checks truncation across several segments, and from the second entry of the log.
#[test]
fn given_an_index_several_segments_back_truncate_from_should_delete_the_later_segments() {
    truncate_and_check(|b| (b[1] + 1, 2));
    truncate_and_check(|_| (2, 1));
}

/// Checks that truncating the whole log leaves it empty, and that it then takes any index.
#[test]
fn given_the_first_index_truncate_from_should_empty_the_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, _, config, clock) = filled(dir.path());
    log.truncate_from(1).expect("truncate everything");
    assert_eq!((log.last_id(), log.segment_count()), (None, 0));
    assert_eq!(log.read(1, 100, usize::MAX).expect("read"), Vec::new());
    let log = assert_survives_reopen(log, &config, &clock);
    log.append(&[entry(1, 5, 10)]).expect("append to the emptied log");
    assert_eq!(log.last_id(), Some(EntryId::new(1, 5)));
}

/// Checks that truncating from beyond the last entry changes nothing.
#[test]
fn given_an_index_beyond_the_end_truncate_from_should_be_a_no_op() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, all, config, clock) = filled(dir.path());
    let segments = log.segment_count();
    log.truncate_from(1201).expect("truncate from one past the end");
    log.truncate_from(u64::MAX).expect("truncate from far beyond the end");
    assert_eq!(log.segment_count(), segments);
    assert_holds(&log, &all);
    let log = assert_survives_reopen(log, &config, &clock);
    assert_holds(&log, &all);
}

/// Checks that truncating at or below the purge point is refused with `Purged`, and that
/// truncating just above it empties the log down to the purge point.
#[test]
fn given_a_purge_point_truncate_from_at_or_below_it_should_fail() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, all, config, clock) = filled(dir.path());
    let upto = all[499].id();
    log.purge_to(upto).expect("purge");
    for index in [500, 499, 1] {
        let err = log.truncate_from(index).expect_err("truncate at or below the purge point");
        assert!(matches!(err, StorageError::Purged { index: i, first: 501 } if i == index), "{err:?}");
        assert!(err.to_string().contains("purged"), "{err}");
    }
    assert_holds(&log, &all[500..]);
    log.truncate_from(501).expect("truncate everything after the purge point");
    assert_eq!((log.last_id(), log.first_index()), (Some(upto), 501));
    let log = assert_survives_reopen(log, &config, &clock);
    assert_eq!(log.purged_id(), Some(upto));
    log.append(&[entry(501, 3, 8)]).expect("append after the purge point");
    assert_holds(&log, &[entry(501, 3, 8)]);
}

/// Checks purging to an entry inside a segment: earlier segments are deleted, the segment
/// holding it stays, reads below the purge point are refused, and all of it survives a reopen.
#[test]
fn given_an_entry_inside_a_segment_purge_to_should_delete_only_earlier_segments() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, all, config, clock) = filled(dir.path());
    let b = bases(dir.path());
    let upto = all[(b[3] + 2 - 1) as usize].id();
    log.purge_to(upto).expect("purge");
    assert_eq!(bases(dir.path()), b[3..], "the segment holding the purge point stays");
    assert_eq!((log.purged_id(), log.first_index()), (Some(upto), upto.index + 1));
    let err = log.read(upto.index, upto.index + 1, usize::MAX).expect_err("read the purge point");
    assert!(matches!(err, StorageError::Purged { index, first } if index == upto.index && first == upto.index + 1));
    assert_eq!(log.term_of(upto.index).expect("term_of"), Some(upto.term));
    assert_holds(&log, &all[upto.index as usize..]);
    log.purge_to(all[10].id()).expect("purging less is a no-op");
    let log = assert_survives_reopen(log, &config, &clock);
    assert_eq!(log.purged_id(), Some(upto));
    assert_holds(&log, &all[upto.index as usize..]);
}

/// Checks purging beyond the last entry (a snapshot installed from the leader): the log is
/// empty, the next append must be `upto.index + 1`, and the state survives a reopen.
#[test]
fn given_an_index_beyond_the_end_purge_to_should_empty_the_log_and_set_the_next_index() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, _, config, clock) = filled(dir.path());
    let upto = EntryId::new(5000, 7);
    log.purge_to(upto).expect("purge beyond the end");
    assert_eq!((log.segment_count(), log.last_id(), log.first_index()), (0, Some(upto), 5001));
    assert!(segment_logs(dir.path()).is_empty(), "every segment file is deleted");
    assert!(matches!(log.read(1200, 1201, 10), Err(StorageError::Purged { index: 1200, first: 5001 })));
    assert_eq!(log.read(5001, 6000, usize::MAX).expect("read after the purge point"), Vec::new());
    let log = assert_survives_reopen(log, &config, &clock);
    for wrong in [1201, 5000, 5002] {
        let err = log.append(&[entry(wrong, 7, 10)]).expect_err("append at the wrong index");
        assert!(matches!(err, StorageError::NotContiguous { expected: 5001, got } if got == wrong), "{err:?}");
    }
    let next: Vec<Entry> = (5001..5101).map(|i| entry(i, 7, 200)).collect();
    log.append(&next).expect("append the index after the purge point");
    let log = assert_survives_reopen(log, &config, &clock);
    assert_eq!(log.purged_id(), Some(upto));
    assert_holds(&log, &next);
}
