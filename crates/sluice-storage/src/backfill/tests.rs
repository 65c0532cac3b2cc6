use bytes::Bytes;

use super::*;

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|i| Entry::new(i, term, Bytes::from(format!("entry {i} {}", "x".repeat(200))))).collect()
}

fn small_segments() -> LogConfig {
    LogConfig { max_segment_bytes: 1024, max_entry_bytes: 512, ..LogConfig::default() }
}

/// A follower's log holding 1..=3, behind a snapshot at (20, 2) whose retained entries start
/// at 11: stages 11..=20, entry `i` holding offsets `10 * i ..`.
fn staged(log: &Log) -> EntryId {
    log.append(&entries(1..=3, 1)).unwrap();
    let mut fill = Backfill::create(log, EntryId::new(10, 1)).unwrap();
    fill.append(&entries(11..=15, 1)).unwrap();
    fill.append(&entries(16..=20, 2)).unwrap();
    for i in 11..=20 {
        fill.index_batch(i, 10 * i, 10, i as i64).unwrap();
    }
    let last = EntryId::new(20, 2);
    fill.finish(last).unwrap();
    last
}

fn assert_back_filled(log: &Log) {
    assert_eq!((log.first_index(), log.last_id()), (11, Some(EntryId::new(20, 2))));
    assert_eq!(log.purged_id(), Some(EntryId::new(10, 1)));
    assert_eq!(log.read(11, 21, usize::MAX).unwrap(), [entries(11..=15, 1), entries(16..=20, 2)].concat());
    let at = log.find_offset(155).unwrap();
    assert_eq!((at.entry_index, at.base_offset, at.count), (15, 150, 10));
    assert_eq!(log.find_offset(109), None);
    assert_eq!(log.indexed_end().map(|e| e.next_offset), Some(210));
    assert!(staging_dirs(log.dir()).unwrap().is_empty(), "the staging is gone");
}

#[test]
fn a_staged_range_is_adopted_below_the_snapshot_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_segments()).unwrap();
    let last = staged(&log);
    assert!(log.adopt_backfill(last).unwrap());
    assert!(log.segment_count() > 1, "several staged segments");
    assert_back_filled(&log);
    log.append(&entries(21..=22, 2)).unwrap();
    log.index_batch(21, 210, 5, 30).unwrap();
    log.sync().unwrap();
    drop(log);
    let log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!(log.read(11, 23, usize::MAX).unwrap().len(), 12);
    assert_eq!(log.find_offset(212).map(|at| at.entry_index), Some(21));
    assert!(!log.adopt_backfill(last).unwrap(), "nothing staged any more");
}

#[test]
fn a_crash_before_the_purge_point_is_lowered_is_undone_by_recovery_and_adopting_again_completes() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_segments()).unwrap();
    let last = staged(&log);
    // What an interrupted adoption leaves: the log purged to `last`, staged files linked in.
    log.purge_to(last).unwrap();
    let staging = staging_dirs(dir.path()).unwrap().pop().unwrap();
    for item in fs::read_dir(&staging).unwrap() {
        let item = item.unwrap();
        if item.file_name() != MANIFEST {
            fs::hard_link(item.path(), dir.path().join(item.file_name())).unwrap();
        }
    }
    drop(log);
    let log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!((log.first_index(), log.last_id()), (21, Some(last)), "recovery removed the linked files");
    assert!(log.adopt_backfill(last).unwrap());
    assert_back_filled(&log);
}

#[test]
fn an_unfinished_or_unrelated_staging_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let mut fill = Backfill::create(&log, EntryId::new(0, 1)).unwrap();
    fill.append(&entries(1..=2, 1)).unwrap();
    assert!(matches!(fill.append(&entries(4..=4, 1)), Err(StorageError::NotContiguous { expected: 3, got: 4 })));
    assert!(fill.index_batch(2, 0, 1, 0).is_ok() && fill.index_batch(1, 1, 1, 0).is_err(), "batches in order");
    assert!(matches!(fill.finish(EntryId::new(3, 1)), Err(StorageError::Backfill(_))));
    assert!(staging_dirs(dir.path()).unwrap().is_empty(), "a failed staging removes itself");
    let last = staged(&log);
    assert!(!log.adopt_backfill(EntryId::new(last.index, 9)).unwrap(), "another snapshot's entries");
    assert!(staging_dirs(dir.path()).unwrap().is_empty());
    assert_eq!(log.first_index(), 1, "the log is untouched");
}

#[test]
fn a_log_that_already_holds_the_range_keeps_its_entries() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    log.append(&entries(1..=3, 1)).unwrap();
    let mut fill = Backfill::create(&log, EntryId::new(1, 1)).unwrap();
    fill.append(&entries(2..=3, 1)).unwrap();
    fill.finish(EntryId::new(3, 1)).unwrap();
    assert!(log.adopt_backfill(EntryId::new(3, 1)).unwrap());
    assert_eq!((log.first_index(), log.last_id()), (1, Some(EntryId::new(3, 1))));
}
