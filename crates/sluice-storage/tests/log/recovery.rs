//! Recovery from damaged files: a flipped byte in the newest segment's last entry is a torn tail
//! and is cut; a flipped byte in a sealed segment is corruption, reported with file and position
//! (by reads, or by `Log::open` when the segment's index must be rebuilt); and lost or garbled
//! position indexes are rebuilt on open.

use std::fs;
use std::path::Path;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use sluice_storage::{Entry, Log, StorageError};

use super::cuts::cases;
use super::support::{
    aging_config, assert_corrupt_at, assert_holds, copy_dir, entries_with_sizes, entry, files_with_ext, flip_byte,
    frames, position_records, ram_tempdir, reopen, segment_logs, write_log,
};

/// Flips one byte of the newest segment's last entry and checks that reopening cuts exactly
/// that entry, durably, and that it can be written again.
fn check_torn_tail(src: &Path, now_ms: i64, entries: &[Entry], byte: Index, mask: u8) {
    let work = ram_tempdir();
    copy_dir(src, work.path());
    let newest = segment_logs(work.path()).pop().expect("a segment");
    let last = *frames(&newest).last().expect("the newest segment holds an entry");
    flip_byte(&newest, last.pos + byte.index(last.len as usize) as u64, mask);
    let log = reopen(work.path(), now_ms);
    let (kept, lost) = entries.split_at(entries.len() - 1);
    assert_eq!(log.last_id(), kept.last().map(Entry::id), "the torn entry is gone");
    assert_eq!(fs::metadata(&newest).expect("stat").len(), last.pos, "the file is cut at the torn entry");
    assert_holds(&log, kept);
    let again = entry(lost[0].index, lost[0].term + 1, 99);
    log.append(std::slice::from_ref(&again)).expect("append in place of the torn entry");
    assert_eq!(log.entry(again.index).expect("read"), Some(again));
}

/// Position of the last position-index record of sealed segment `log`. A reopen trusts a
/// sealed segment's index and checks only the frames from its last record on, so damage before
/// it is found by reads and damage after it by `Log::open` itself.
fn last_record_pos(log: &Path) -> u64 {
    let (_, pos) = *position_records(&log.with_extension("index")).last().expect("index records");
    u64::from(pos)
}

/// Flips one byte of an entry in a sealed segment. Before the segment's last index record:
/// reopening succeeds, reading that entry fails as `Corrupt` at the entry's position, the newest
/// segment still reads. From the last record on: reopening fails the same way. Either way, once
/// the segment's index is deleted too, `Log::open` fails (the rebuild scan meets the entry).
fn check_sealed_corruption(src: &Path, now_ms: i64, entries: &[Entry], pick: [Index; 3], mask: u8) {
    let work = ram_tempdir();
    copy_dir(src, work.path());
    let logs = segment_logs(work.path());
    let segment = pick[0].get(&logs[..logs.len() - 1]);
    let target = *pick[1].get(&frames(segment));
    flip_byte(segment, target.pos + pick[2].index(target.len as usize) as u64, mask);
    if target.pos < last_record_pos(segment) {
        let log = reopen(work.path(), now_ms);
        let err = log.read(target.index, target.index + 1, usize::MAX).expect_err("reading the damaged entry");
        assert_corrupt_at(&err, segment, target.pos);
        assert_corrupt_at(&log.entry(target.index).expect_err("entry()"), segment, target.pos);
        let newest_base = frames(logs.last().expect("a segment"))[0].index;
        let newest = log.read(newest_base, u64::MAX, usize::MAX).expect("the newest segment is intact");
        assert_eq!(newest, entries[entries.len() - newest.len()..]);
    } else {
        let err = Log::open(work.path(), aging_config()).expect_err("damage after the last index record");
        assert_corrupt_at(&err, segment, target.pos);
    }
    fs::remove_file(segment.with_extension("index")).expect("delete the position index");
    let err = Log::open(work.path(), aging_config()).expect_err("open must refuse a corrupt sealed segment");
    assert_corrupt_at(&err, segment, target.pos);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(64),
        max_shrink_iters: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Checks, for random logs, that a flipped byte in the newest entry is cut as a torn tail
    /// and a flipped byte in a sealed segment is reported as corruption with file and position.
    #[test]
    fn given_a_flipped_byte_the_tail_entry_is_cut_and_a_sealed_entry_is_reported_corrupt(
        first in 1u64..1_000,
        sizes in vec(0usize..2000, 200..300),
        tail_len in 0usize..=3,
        tail_byte in any::<Index>(),
        sealed in any::<[Index; 3]>(),
        mask in 1u8..=255,
    ) {
        let src = ram_tempdir();
        let entries = entries_with_sizes(first, &sizes);
        let now_ms = write_log(src.path(), &entries, 16, tail_len);
        check_torn_tail(src.path(), now_ms, &entries, tail_byte, mask);
        check_sealed_corruption(src.path(), now_ms, &entries, sealed, mask);
    }
}

/// A log of 300 entries over about twenty segments, written and closed; returns the entries
/// and the clock reading to reopen with.
fn written(dir: &Path) -> (Vec<Entry>, i64) {
    let sizes: Vec<usize> = (0..300).map(|i| (i * 613) % 2000).collect();
    let entries = entries_with_sizes(10, &sizes);
    let now_ms = write_log(dir, &entries, 9, 0);
    (entries, now_ms)
}

/// Reads ranges of several sizes and budgets and checks them against `entries`.
fn assert_ranges_read_back(log: &Log, entries: &[Entry]) {
    let first = entries[0].index;
    for (start, len) in [(0, 1), (3, 40), (57, 200), (150, 150), (299, 5)] {
        let got = log.read(first + start, first + start + len, usize::MAX).expect("read a range");
        let want = &entries[start as usize..(start + len).min(300) as usize];
        assert_eq!(got, want, "range from {}", first + start);
    }
    let some = log.read(first + 20, first + 300, 4000).expect("read with a budget");
    assert!(!some.is_empty() && some.len() < 280, "a 4000-byte budget returns a prefix");
    assert!(some.len() == 1 || some.iter().map(|e| e.payload.len()).sum::<usize>() <= 4000);
    assert_eq!(some, entries[20..20 + some.len()]);
    let one = log.read(first + 21, first + 300, 0).expect("read with no budget");
    assert_eq!(one, entries[21..22], "at least one entry, however small the budget");
    for e in entries.iter().step_by(23) {
        assert_eq!(log.term_of(e.index).expect("term_of"), Some(e.term));
    }
}

/// Asserts that every segment's position index on disk is a valid sparse index of its frames:
/// a record for the first entry, and each record naming an entry and that entry's position.
fn assert_indexes_match_frames(dir: &Path) {
    for log in segment_logs(dir) {
        let frames = frames(&log);
        let records = position_records(&log.with_extension("index"));
        assert_eq!(records.first().map(|r| r.0), Some(0), "{}", log.display());
        for (rel, pos) in records {
            let frame = frames.get(rel as usize).expect("record within the segment");
            assert_eq!(frame.pos, u64::from(pos), "record for entry {} of {}", frame.index, log.display());
        }
    }
}

/// Checks that a log whose position indexes were all deleted rebuilds them on open, reads
/// correctly, and trusts the rebuilt ones on the next open.
#[test]
fn given_all_position_indexes_deleted_when_reopened_should_rebuild_them_and_read_correctly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (entries, now_ms) = written(dir.path());
    let indexes = files_with_ext(dir.path(), "index");
    assert_eq!(indexes.len(), segment_logs(dir.path()).len());
    for path in &indexes {
        fs::remove_file(path).expect("delete an index");
    }
    let log = reopen(dir.path(), now_ms);
    assert_holds(&log, &entries);
    assert_ranges_read_back(&log, &entries);
    drop(log);
    assert_eq!(files_with_ext(dir.path(), "index"), indexes, "every index was rebuilt");
    assert_indexes_match_frames(dir.path());
    let log = reopen(dir.path(), now_ms);
    assert_ranges_read_back(&log, &entries);
}

/// Checks that position index files holding garbage, cut short, or claiming more records than
/// they hold are rebuilt on open, and reads are correct.
#[test]
fn given_garbled_position_indexes_when_reopened_should_rebuild_them_and_read_correctly() {
    assert_rebuilt_after(|i, raw| match i % 3 {
        0 => raw.iter_mut().enumerate().for_each(|(k, b)| *b = (k as u8).wrapping_mul(151) ^ 0x5a),
        1 => raw.truncate(20),
        _ => raw[16..24].copy_from_slice(&u64::MAX.to_le_bytes()),
    });
}

/// Writes a log, rewrites each position index file `i` with `garble(i, bytes)`, reopens, and
/// checks that every entry reads back and the rebuilt indexes match the frames on disk.
fn assert_rebuilt_after(garble: impl Fn(usize, &mut Vec<u8>)) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (entries, now_ms) = written(dir.path());
    for (i, path) in files_with_ext(dir.path(), "index").iter().enumerate() {
        let mut raw = fs::read(path).expect("read an index");
        garble(i, &mut raw);
        fs::write(path, raw).expect("garble an index");
    }
    let log = reopen(dir.path(), now_ms);
    assert_holds(&log, &entries);
    assert_ranges_read_back(&log, &entries);
    drop(log);
    assert_indexes_match_frames(dir.path());
}

/// Checks that position indexes whose header survived but whose records are garbage (records
/// scrambled behind an intact header) are detected on open and rebuilt, so reads stay correct.
#[test]
fn given_position_records_garbled_behind_a_valid_header_when_reopened_should_rebuild_them() {
    // Reversed, every record breaks the rising-order rule while the header stays valid.
    assert_rebuilt_after(|_, raw| raw[32..].reverse());
}

/// Checks that a sealed segment whose header is damaged makes `Log::open` fail as `Corrupt`
/// naming the file, rather than silently dropping committed entries.
#[test]
fn given_a_sealed_segment_with_a_damaged_header_open_should_fail_as_corrupt() {
    let dir = tempfile::tempdir().expect("temp dir");
    written(dir.path());
    let sealed = segment_logs(dir.path())[1].clone();
    flip_byte(&sealed, 9, 0x10);
    let err = Log::open(dir.path(), aging_config()).expect_err("open a log with a damaged sealed segment");
    assert!(matches!(&err, StorageError::Corrupt { path, .. } if *path == sealed), "{err:?}");
    assert!(err.to_string().contains(&sealed.display().to_string()), "{err}");
}

/// Checks that a log whose only segment was torn right after its header (so it holds nothing
/// and the log never held an entry) accepts a first append at another index: the empty segment
/// is replaced by one starting there.
#[test]
fn given_an_empty_torn_segment_when_appending_at_another_index_should_start_a_segment_there() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = Log::open(dir.path(), aging_config()).expect("open");
    log.append(&[entry(1, 1, 100), entry(2, 1, 100)]).expect("append");
    drop(log);
    let first = segment_logs(dir.path()).remove(0);
    fs::OpenOptions::new().write(true).open(&first).and_then(|f| f.set_len(32)).expect("cut after the header");
    let log = Log::open(dir.path(), aging_config()).expect("reopen");
    assert_eq!((log.last_id(), log.segment_count()), (None, 1));
    let batch: Vec<Entry> = (70..75).map(|i| entry(i, 4, 64)).collect();
    log.append(&batch).expect("append at another index");
    assert!(!first.exists(), "the empty segment at the old base is gone");
    drop(log);
    assert_holds(&Log::open(dir.path(), aging_config()).expect("reopen"), &batch);
}

/// Checks that files left by interrupted operations (temporary files, indexes of segments that
/// no longer exist) are removed on open, and other files are left alone.
#[test]
fn given_leftover_files_open_should_remove_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (entries, now_ms) = written(dir.path());
    let strays = ["00000000000000999999.index", "00000000000000999999.offindex", "purged.tmp"];
    for name in strays {
        fs::write(dir.path().join(name), b"left over").expect("create a stray file");
    }
    fs::write(dir.path().join("notes.txt"), b"not ours").expect("create an unrelated file");
    let log = reopen(dir.path(), now_ms);
    for name in strays {
        assert!(!dir.path().join(name).exists(), "{name} was not removed");
    }
    assert!(dir.path().join("notes.txt").exists());
    assert_holds(&log, &entries);
}
