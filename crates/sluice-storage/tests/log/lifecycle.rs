//! Segment lifecycle: rolling by size and by age (on a manual clock), and retention by size and
//! by age through `apply_retention`, also with limits changed while the log is open; each state
//! is checked again after reopening.

use std::fs;
use std::path::Path;
use std::time::Duration;

use sluice_storage::{Entry, EntryId, Log, LogConfig, ManualClock, Retention, StorageError};

use super::support::{
    HOUR, aging_config, append_in_batches, assert_holds, entries, frames, open, open_with_clock, read_all,
    segment_logs, small_config,
};

/// Checks what survives a reopen: last entry, first index, purge point and every entry.
pub fn assert_survives_reopen(log: Log, config: &LogConfig, clock: &ManualClock) -> Log {
    let before = (log.last_id(), log.first_index(), log.purged_id(), read_all(&log));
    let dir = log.dir().to_owned();
    drop(log);
    let log = open_with_clock(&dir, config, clock);
    let after = (log.last_id(), log.first_index(), log.purged_id(), read_all(&log));
    assert_eq!(after, before, "state after reopening {}", dir.display());
    log
}

/// Asserts that every segment file is at most `max` bytes and starts with the entry its name says.
fn assert_segments_well_formed(dir: &Path, max: u64) {
    for path in segment_logs(dir) {
        let len = fs::metadata(&path).expect("stat segment").len();
        assert!(len <= max, "{} is {len} bytes, over {max}", path.display());
        let base: u64 = path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse().ok()).expect("base");
        assert_eq!(frames(&path).first().map(|f| f.index), Some(base), "{}", path.display());
    }
}

/// Checks that appending past `max_segment_bytes` keeps starting new segments, none of them
/// over the limit, and that the log reads back whole before and after reopening.
#[test]
fn given_appends_past_max_segment_bytes_should_roll_segments_each_below_the_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = small_config();
    let log = open(dir.path(), &config);
    let all = entries(1..1201, 1);
    let mut counts = Vec::new();
    for chunk in all.chunks(100) {
        log.append(chunk).expect("append");
        counts.push(log.segment_count());
    }
    assert!(counts.windows(2).all(|w| w[0] <= w[1]) && counts[0] < counts[11], "{counts:?}");
    assert!(log.size_bytes() > 10 * config.max_segment_bytes, "{}", log.size_bytes());
    assert_eq!(segment_logs(dir.path()).len(), log.segment_count());
    assert_segments_well_formed(dir.path(), config.max_segment_bytes);
    assert_holds(&log, &all);
    let log = assert_survives_reopen(log, &config, &ManualClock::new(0));
    assert_holds(&log, &all);
}

/// Checks that a segment is rolled by the first append once it is `max_segment_age` old, not
/// before, and that the age counts from the segment's creation across a reopen.
#[test]
fn given_a_segment_older_than_max_segment_age_when_appending_should_roll() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (config, clock) = (aging_config(), ManualClock::new(5_000));
    let log = open_with_clock(dir.path(), &config, &clock);
    let all = entries(1..31, 1);
    log.append(&all[..10]).expect("append");
    clock.advance(HOUR.as_millis() as i64 - 1);
    log.append(&all[10..20]).expect("append");
    assert_eq!(log.segment_count(), 1, "one millisecond short of the age limit");
    clock.advance(1);
    log.append(&all[20..21]).expect("append");
    assert_eq!(log.segment_count(), 2, "at the age limit the next append rolls");
    assert_eq!(frames(&segment_logs(dir.path())[1])[0].index, 21, "the new segment starts at the append");
    let log = assert_survives_reopen(log, &config, &clock);
    log.append(&all[21..25]).expect("append");
    assert_eq!(log.segment_count(), 2, "the new segment is young");
    clock.advance(HOUR.as_millis() as i64);
    drop(log);
    let log = open_with_clock(dir.path(), &config, &clock);
    log.append(&all[25..]).expect("append");
    assert_eq!(log.segment_count(), 3, "the age survived the reopen");
    assert_holds(&log, &all);
}

/// Checks that an empty log does not roll its first segment for age however late it is written.
#[test]
fn given_an_empty_log_and_an_old_clock_when_appending_should_not_roll_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(0);
    let log = open_with_clock(dir.path(), &aging_config(), &clock);
    clock.advance(10 * HOUR.as_millis() as i64);
    log.append(&entries(1..4, 1)).expect("append");
    assert_eq!(log.segment_count(), 1);
}

/// Asserts what retention must leave: the purge point just below a segment base, reads below
/// it refused as `Purged`, and the entries from it on intact.
fn assert_retained(log: &Log, all: &[Entry], point: EntryId) {
    assert_eq!(log.purged_id(), Some(point));
    assert_eq!(log.first_index(), point.index + 1);
    let bases: Vec<u64> = segment_logs(log.dir()).iter().map(|p| frames(p)[0].index).collect();
    assert_eq!(bases.first(), Some(&(point.index + 1)), "only whole segments are deleted");
    let err = log.read(point.index, point.index + 5, usize::MAX).expect_err("read below the purge point");
    assert!(matches!(err, StorageError::Purged { index, first } if index == point.index && first == point.index + 1));
    let first = all.iter().position(|e| e.index == point.index + 1).expect("kept entries");
    assert_holds(log, &all[first..]);
}

/// Checks retention by size: the oldest sealed segments go while the rest still hold
/// `max_bytes`, the active segment stays, and the result survives a reopen.
#[test]
fn given_retention_by_size_when_applied_should_delete_the_oldest_whole_segments() {
    let dir = tempfile::tempdir().expect("temp dir");
    let max_bytes = 40 * 1024;
    let config = LogConfig { retention: Retention { max_bytes: Some(max_bytes), max_age: None }, ..small_config() };
    let clock = ManualClock::new(0);
    let log = open_with_clock(dir.path(), &config, &clock);
    let all = entries(1..601, 2);
    append_in_batches(&log, &all, 50);
    let before = log.segment_count();
    let point = log.apply_retention().expect("apply retention").expect("something to delete");
    assert!(log.segment_count() < before && log.segment_count() >= 2, "{} of {before}", log.segment_count());
    assert!(log.size_bytes() >= max_bytes, "retention keeps at least max_bytes");
    let oldest = fs::metadata(&segment_logs(dir.path())[0]).expect("stat").len();
    assert!(log.size_bytes() - oldest < max_bytes, "and deletes every segment it can");
    assert_retained(&log, &all, point);
    assert_eq!(log.apply_retention().expect("again"), None, "nothing more to delete");
    let log = assert_survives_reopen(log, &config, &clock);
    assert_retained(&log, &all, point);
}

/// Checks that retention set on an open log (a topic's retention altered while it runs) is
/// what the next retention point uses: none at first, then the new limit, then none again.
#[test]
fn given_retention_set_while_open_when_applied_should_use_the_new_limits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = small_config();
    let clock = ManualClock::new(0);
    let log = open_with_clock(dir.path(), &config, &clock);
    let all = entries(1..601, 2);
    append_in_batches(&log, &all, 50);
    assert_eq!(log.retention_point(), None, "opened without retention");
    let limited = Retention { max_bytes: Some(40 * 1024), max_age: None };
    log.set_retention(limited.clone());
    assert_eq!(log.retention(), limited);
    let point = log.apply_retention().expect("apply retention").expect("something to delete");
    assert_retained(&log, &all, point);
    assert_eq!(log.config().retention, Retention::default(), "the opening configuration is kept as it was");
    log.set_retention(Retention::default());
    assert_eq!(log.retention_point(), None, "cleared: nothing more to delete");
}

/// Appends `batch` after moving the clock an hour on, so each batch starts a new segment.
fn append_an_hour_later(log: &Log, clock: &ManualClock, batch: &[Entry]) {
    clock.advance(HOUR.as_millis() as i64);
    log.append(batch).expect("append");
}

/// Checks retention by age: a sealed segment goes once the segment after it was started
/// `max_age` ago; the active segment stays however old; the result survives a reopen.
#[test]
fn given_retention_by_age_when_applied_should_delete_segments_rolled_long_enough_ago() {
    let dir = tempfile::tempdir().expect("temp dir");
    let retention = Retention { max_age: Some(Duration::from_secs(2 * 3600)), max_bytes: None };
    let config = LogConfig { retention, ..aging_config() };
    let clock = ManualClock::new(0);
    let log = open_with_clock(dir.path(), &config, &clock);
    let all = entries(1..41, 3);
    log.append(&all[..10]).expect("append");
    for batch in all[10..].chunks(10) {
        append_an_hour_later(&log, &clock, batch);
    }
    assert_eq!(log.segment_count(), 4, "segments started at 0 h, 1 h, 2 h, 3 h; now is 3 h");
    let point = log.apply_retention().expect("retention").expect("the first segment is old enough");
    assert_eq!(point, all[9].id(), "only the segment rolled 2 h ago goes");
    assert_retained(&log, &all, point);
    clock.advance(HOUR.as_millis() as i64);
    assert_eq!(log.apply_retention().expect("retention"), Some(all[19].id()));
    clock.advance(100 * HOUR.as_millis() as i64);
    assert_eq!(log.apply_retention().expect("retention"), Some(all[29].id()));
    assert_eq!(log.segment_count(), 1, "the active segment is kept however old");
    assert_eq!(log.apply_retention().expect("retention"), None);
    let log = assert_survives_reopen(log, &config, &clock);
    assert_retained(&log, &all, all[29].id());
}

/// Checks that without retention limits nothing is ever eligible.
#[test]
fn given_no_retention_limits_retention_point_should_be_none() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(0);
    let log = open_with_clock(dir.path(), &small_config(), &clock);
    append_in_batches(&log, &entries(1..500, 1), 100);
    clock.advance(1_000 * HOUR.as_millis() as i64);
    assert!(log.segment_count() > 3);
    assert_eq!(log.retention_point(), None);
    assert_eq!(log.apply_retention().expect("retention"), None);
}
