//! Sealing after a roll: rolling never waits for the disk, the next sync seals rolled segments
//! (SEALED flag in the header, set last), and recovery treats an unflagged older segment as
//! possibly torn — cutting it and dropping every later segment — while a flagged one is trusted.

use std::fs;
use std::path::Path;

use sluice_storage::format::{SEGMENT_HEADER_LEN, SegmentHeader};

use crate::support::{
    append_in_batches, assert_holds, entries, flip_byte, frames, open, ram_tempdir, segment_logs, small_config,
};

fn sealed_flags(dir: &Path) -> Vec<bool> {
    segment_logs(dir)
        .iter()
        .map(|p| {
            SegmentHeader::decode(&fs::read(p).expect("read segment")[..SEGMENT_HEADER_LEN]).expect("header").sealed
        })
        .collect()
}

#[test]
fn rolling_leaves_segments_unsealed_until_the_next_sync_seals_all_but_the_newest() {
    let dir = ram_tempdir();
    let log = open(dir.path(), &small_config());
    append_in_batches(&log, &entries(1..400, 1), 10);
    let flags = sealed_flags(dir.path());
    assert!(flags.len() >= 3, "needs several segments, got {}", flags.len());
    assert!(flags.iter().all(|sealed| !sealed), "a roll sealed a segment by itself: {flags:?}");
    log.sync().unwrap();
    let flags = sealed_flags(dir.path());
    let (newest, older) = flags.split_last().unwrap();
    assert!(older.iter().all(|sealed| *sealed) && !newest, "after sync: {flags:?}");
}

#[test]
fn given_an_unsealed_older_segment_torn_when_reopened_should_cut_it_and_drop_later_segments() {
    let dir = ram_tempdir();
    let all = entries(1..600, 1);
    {
        let log = open(dir.path(), &small_config());
        append_in_batches(&log, &all[..200], 10);
        log.sync().unwrap();
        append_in_batches(&log, &all[200..], 10); // rolls more segments, none sealed
    }
    let flags = sealed_flags(dir.path());
    let segments = segment_logs(dir.path());
    let torn = flags.iter().rposition(|sealed| *sealed).expect("a sealed segment") + 2;
    assert!(torn + 1 < segments.len(), "needs an unsealed segment before the newest: {flags:?}");
    let victim = frames(&segments[torn])[3];
    flip_byte(&segments[torn], victim.pos + 30, 0x20);

    let log = open(dir.path(), &small_config());
    assert_holds(&log, &all[..(victim.index - 1) as usize]);
    assert_eq!(segment_logs(dir.path()).len(), torn + 1, "segments after the torn one must be gone");
    log.append(&entries(victim.index..victim.index + 5, 2)).unwrap();
    log.sync().unwrap();
    drop(log);
    let log = open(dir.path(), &small_config());
    assert_eq!(log.last_id().map(|l| (l.index, l.term)), Some((victim.index + 4, 2)));
}

#[test]
fn given_a_sealed_segment_reopened_by_truncation_when_it_rolls_again_should_lose_its_flag_until_resealed() {
    let dir = ram_tempdir();
    let log = open(dir.path(), &small_config());
    append_in_batches(&log, &entries(1..300, 1), 10);
    log.sync().unwrap();
    let first = frames(&segment_logs(dir.path())[0]);
    let cut = first[first.len() / 2].index;
    log.truncate_from(cut).unwrap();
    assert_eq!(sealed_flags(dir.path()), vec![true], "the truncated segment keeps its flag while active");
    append_in_batches(&log, &entries(cut..cut + 200, 2), 10);
    assert!(sealed_flags(dir.path()).len() >= 2);
    assert!(!sealed_flags(dir.path())[0], "rolled again: its old flag must be cleared before the roll");
    log.sync().unwrap();
    assert!(sealed_flags(dir.path())[0], "the next sync seals it again");
    drop(log);
    let log = open(dir.path(), &small_config());
    assert_eq!(log.last_id().map(|l| l.index), Some(cut + 199));
}
