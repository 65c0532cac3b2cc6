//! Bad input is refused with an error that says what and where, and leaves the log unchanged:
//! oversize entries, non-contiguous appends, invalid configurations, unusable paths, a damaged
//! purge-point file; plus the answers of an empty log.

use std::fs;
use std::time::Duration;

use sluice_storage::{Entry, EntryId, Log, LogConfig, StorageError};

use super::support::{assert_holds, entries, entry, open, segment_logs, small_config};

/// Checks that a batch holding one entry over `max_entry_bytes` is refused whole with
/// `EntryTooLarge` and writes nothing, while an entry of exactly the limit is accepted.
#[test]
fn given_an_oversize_entry_append_should_fail_and_write_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = small_config();
    let max = config.max_entry_bytes as usize;
    let log = open(dir.path(), &config);
    let batch = vec![entry(1, 1, 10), entry(2, 1, max + 1), entry(3, 1, 10)];
    let err = log.append(&batch).expect_err("oversize entry");
    assert!(
        matches!(err, StorageError::EntryTooLarge { index: 2, len, max: m } if len == max + 1 && m as usize == max)
    );
    assert!(err.to_string().contains("max_entry_bytes"), "{err}");
    assert_eq!((log.last_id(), log.size_bytes()), (None, 0), "nothing was written");
    assert!(segment_logs(dir.path()).is_empty());
    log.append(&entries(1..6, 1)).expect("append");
    let size = log.size_bytes();
    assert!(log.append(&[entry(6, 1, max + 1)]).is_err());
    assert_eq!((log.last_id().map(|l| l.index), log.size_bytes()), (Some(5), size));
    let biggest = entry(6, 1, max);
    log.append(std::slice::from_ref(&biggest)).expect("an entry of exactly max_entry_bytes");
    drop(log);
    let log = open(dir.path(), &config);
    let mut want = entries(1..6, 1);
    want.push(biggest);
    assert_holds(&log, &want);
}

/// Checks that appends that do not continue the log, or have a gap inside the batch, fail with
/// `NotContiguous` naming both indexes, and write nothing.
#[test]
fn given_a_non_contiguous_append_should_fail_with_not_contiguous() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path(), &small_config());
    log.append(&entries(10..15, 1)).expect("a new log may start at any index");
    let cases: [(Vec<Entry>, u64, u64); 4] = [
        (vec![entry(16, 1, 1)], 15, 16),
        (vec![entry(14, 1, 1)], 15, 14),
        (vec![entry(15, 1, 1), entry(17, 1, 1)], 16, 17),
        (vec![entry(15, 1, 1), entry(15, 1, 1)], 16, 15),
    ];
    for (batch, expected, got) in cases {
        let err = log.append(&batch).expect_err("non-contiguous");
        assert!(matches!(err, StorageError::NotContiguous { expected: e, got: g } if e == expected && g == got));
        assert!(err.to_string().contains(&format!("expected {expected}")), "{err}");
    }
    assert_holds(&log, &entries(10..15, 1));
    assert_eq!(log.append(&[]).map_err(|e| e.to_string()), Ok(()), "an empty batch is a no-op");
}

/// Checks that each invalid configuration is refused by `Log::open` with a `Config` error
/// naming the setting at fault, before anything is created on disk.
#[test]
fn given_an_invalid_config_open_should_fail_with_a_readable_config_error() {
    let base = LogConfig::default;
    let cases = [
        (LogConfig { max_entry_bytes: 0, ..base() }, "max_entry_bytes"),
        (LogConfig { max_segment_bytes: 1 << 33, ..base() }, "32-bit"),
        (LogConfig { max_segment_bytes: 4096, ..base() }, "largest entry"),
        (LogConfig { index_interval_bytes: 0, ..base() }, "index_interval_bytes"),
        (LogConfig { max_segment_age: Some(Duration::ZERO), ..base() }, "max_segment_age"),
    ];
    let parent = tempfile::tempdir().expect("temp dir");
    for (config, says) in cases {
        let dir = parent.path().join("log");
        let err = Log::open(&dir, config.clone()).expect_err("invalid config");
        assert!(matches!(&err, StorageError::Config(m) if m.contains(says)), "{config:?}: {err:?}");
        assert!(err.to_string().starts_with("invalid storage config: "), "{err}");
        assert!(!dir.exists(), "nothing is created for an invalid config");
    }
}

/// Checks that a log path that cannot be a directory gives an I/O error naming it.
#[test]
fn given_a_file_where_the_directory_should_be_open_should_fail_naming_the_path() {
    let parent = tempfile::tempdir().expect("temp dir");
    let path = parent.path().join("not-a-dir");
    fs::write(&path, b"x").expect("create a file");
    let err = Log::open(&path, small_config()).expect_err("open on a file");
    assert!(matches!(&err, StorageError::Io { path: p, .. } if *p == path), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
}

/// Checks that a damaged purge-point file makes `Log::open` fail as `Corrupt` naming it.
#[test]
fn given_a_damaged_purge_point_file_open_should_fail_as_corrupt_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path(), &small_config());
    log.append(&entries(1..100, 1)).expect("append");
    log.purge_to(EntryId::new(50, 1)).expect("purge");
    drop(log);
    let purged = dir.path().join("purged");
    let mut raw = fs::read(&purged).expect("read the purge point");
    let last = raw.len() - 1;
    raw[last] ^= 0x01;
    fs::write(&purged, raw).expect("damage it");
    let err = Log::open(dir.path(), small_config()).expect_err("damaged purge point");
    assert!(matches!(&err, StorageError::Corrupt { path, .. } if *path == purged), "{err:?}");
    assert!(err.to_string().contains(&purged.display().to_string()), "{err}");
}

/// Checks the answers of a log that never held an entry.
#[test]
fn given_an_empty_log_queries_should_return_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path(), &small_config());
    assert_eq!((log.last_id(), log.purged_id(), log.first_index(), log.segment_count()), (None, None, 0, 0));
    assert_eq!(log.read(0, 100, usize::MAX).expect("read"), Vec::new());
    assert_eq!(log.entry(1).expect("entry"), None);
    assert_eq!(log.term_of(1).expect("term_of"), None);
    assert_eq!((log.indexed_end(), log.find_offset(0), log.find_timestamp(0)), (None, None, None));
    assert_eq!(log.dir(), dir.path());
    assert_eq!(log.config(), &small_config());
}
