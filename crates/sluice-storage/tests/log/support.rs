//! Helpers shared by the test modules: configurations, deterministic payloads, and raw access to
//! segment and index files (parsed with the crate's public `format` codec).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sluice_storage::format::{self, SEGMENT_HEADER_LEN, SegmentHeader};
use sluice_storage::{Clock, Entry, LockMode, Log, LogConfig, ManualClock, Retention, StorageError};
use tempfile::TempDir;

/// A configuration with small segments (16 KiB) and a sparse index record every 256 bytes, so a
/// few hundred entries make several segments and many index records.
pub fn small_config() -> LogConfig {
    LogConfig {
        max_entry_bytes: 4096,
        max_segment_bytes: 16 * 1024,
        max_segment_age: None,
        index_interval_bytes: 256,
        retention: Retention::default(),
        lock: LockMode::PerLog,
    }
}

/// [`small_config`] with segments rolled after an hour, for tests that roll on a manual clock.
pub fn aging_config() -> LogConfig {
    LogConfig { max_segment_age: Some(HOUR), ..small_config() }
}

/// One hour, the segment age limit of [`aging_config`].
pub const HOUR: Duration = Duration::from_secs(3600);

/// Writes `entries` to a fresh log in `dir` (with [`aging_config`]) in batches of `batch`, syncs
/// and closes it. When `tail_len` is non-zero the last `tail_len` entries are appended after the
/// clock passed the segment age limit, so they alone fill the newest segment. Returns the clock
/// reading to reopen with (see [`reopen`]), so that reopening rolls nothing by itself.
pub fn write_log(dir: &Path, entries: &[Entry], batch: usize, tail_len: usize) -> i64 {
    let clock = ManualClock::new(1_000);
    let log = open_with_clock(dir, &aging_config(), &clock);
    let (body, tail) = entries.split_at(entries.len() - tail_len);
    append_in_batches(&log, body, batch);
    if !tail.is_empty() {
        clock.advance(HOUR.as_millis() as i64 + 1);
        log.append(tail).expect("append the tail after rolling by age");
    }
    assert_eq!(log.sync().expect("sync"), entries.last().map(|e| e.index));
    assert!(log.segment_count() >= 3, "the test needs several segments, got {}", log.segment_count());
    clock.now_ms()
}

/// Opens a log made by [`write_log`] with a clock reading `now_ms`.
pub fn reopen(dir: &Path, now_ms: i64) -> Log {
    open_with_clock(dir, &aging_config(), &ManualClock::new(now_ms))
}

/// `len` bytes that depend only on `index` (xorshift seeded by it), so any entry can be checked
/// knowing its index and length.
pub fn payload(index: u64, len: usize) -> Vec<u8> {
    let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The payload length used when only the index is known (readers of a concurrent log).
pub fn len_for(index: u64) -> usize {
    (index.wrapping_mul(7919) % 700) as usize
}

/// Entry `index` in `term` with a deterministic payload of `len` bytes.
pub fn entry(index: u64, term: u64, len: usize) -> Entry {
    Entry::new(index, term, payload(index, len))
}

/// Entries `first..first + sizes.len()`, the term rising every 50 entries.
pub fn entries_with_sizes(first: u64, sizes: &[usize]) -> Vec<Entry> {
    sizes.iter().zip(first..).map(|(&len, i)| entry(i, 1 + i / 50, len)).collect()
}

/// Entries `range` with payload lengths from [`len_for`], all in `term`.
pub fn entries(range: std::ops::Range<u64>, term: u64) -> Vec<Entry> {
    range.map(|i| entry(i, term, len_for(i))).collect()
}

/// A temporary directory on tmpfs when there is one. The recovery properties write, fsync and
/// reopen logs thousands of times; what they check is what a reopen makes of the bytes on disk
/// (damage is simulated by editing files), not durability, so a RAM-backed file system loses no
/// coverage and spares the disk thousands of fsyncs.
pub fn ram_tempdir() -> TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new().prefix("sluice-test").tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().expect("create a temporary directory")
}

/// Opens `dir` with `config`, panicking with the error on failure.
pub fn open(dir: &Path, config: &LogConfig) -> Log {
    Log::open(dir, config.clone()).unwrap_or_else(|e| panic!("opening {}: {e}", dir.display()))
}

/// Opens `dir` with `config` and a manual clock.
pub fn open_with_clock(dir: &Path, config: &LogConfig, clock: &ManualClock) -> Log {
    Log::open_with_clock(dir, config.clone(), Arc::new(clock.clone())).expect("open with a manual clock")
}

/// Appends `entries` in batches of `batch`.
pub fn append_in_batches(log: &Log, entries: &[Entry], batch: usize) {
    for chunk in entries.chunks(batch.max(1)) {
        log.append(chunk).expect("append");
    }
}

/// Every entry the log holds, from `first_index` to `last_id`.
pub fn read_all(log: &Log) -> Vec<Entry> {
    match log.last_id() {
        Some(last) if last.index >= log.first_index() => {
            log.read(log.first_index(), last.index + 1, usize::MAX).expect("read the whole log")
        }
        _ => Vec::new(),
    }
}

/// Asserts that the log holds exactly `expected` (which may be empty) from its first index.
pub fn assert_holds(log: &Log, expected: &[Entry]) {
    let got = read_all(log);
    assert_eq!(got.len(), expected.len(), "entry count of {}", log.dir().display());
    for (g, e) in got.iter().zip(expected) {
        assert_eq!(g, e, "entry {} differs", e.index);
    }
    if let Some(last) = expected.last() {
        assert_eq!(log.last_id(), Some(last.id()), "last entry of {}", log.dir().display());
    }
}

/// Sets the flag when dropped, so helper threads stop even if the thread driving them panics.
pub struct SetOnDrop<'a>(pub &'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Files in `dir` whose name ends in `.ext`, sorted (segment names are zero-padded, so this is
/// also base-index order).
pub fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .expect("list directory")
        .map(|item| item.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    out
}

/// The segment files of `dir`, oldest first.
pub fn segment_logs(dir: &Path) -> Vec<PathBuf> {
    files_with_ext(dir, "log")
}

/// Where one entry frame lies in a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Raft index of the entry.
    pub index: u64,
    /// Byte position of the frame header.
    pub pos: u64,
    /// Header plus payload length.
    pub len: u64,
}

impl Frame {
    /// Position just past the frame.
    pub fn end(&self) -> u64 {
        self.pos + self.len
    }
}

/// Parses every valid frame of segment file `path`, in order.
pub fn frames(path: &Path) -> Vec<Frame> {
    let raw = fs::read(path).expect("read segment file");
    let header = SegmentHeader::decode(&raw).expect("valid segment header");
    let mut out = Vec::new();
    let (mut pos, mut index) = (SEGMENT_HEADER_LEN, header.base_index);
    while let Ok(h) = format::check_frame(&raw[pos..], index, u32::MAX) {
        out.push(Frame { index, pos: pos as u64, len: h.frame_len() });
        pos += h.frame_len() as usize;
        index += 1;
    }
    assert_eq!(pos, raw.len(), "{} has bytes after its last valid frame", path.display());
    out
}

/// The `(relative index, position)` records of a position index file (layout in `index.rs`).
pub fn position_records(path: &Path) -> Vec<(u32, u32)> {
    let raw = fs::read(path).expect("read index file");
    let len = u64::from_le_bytes(raw[16..24].try_into().expect("8 bytes")) as usize;
    let at = |i: usize, o: usize| u32::from_le_bytes(raw[32 + 8 * i + o..36 + 8 * i + o].try_into().expect("4 bytes"));
    (0..len).map(|i| (at(i, 0), at(i, 4))).collect()
}

/// XORs the byte at `pos` of `path` with `mask` (non-zero).
pub fn flip_byte(path: &Path, pos: u64, mask: u8) {
    assert_ne!(mask, 0, "a zero mask changes nothing");
    let mut raw = fs::read(path).expect("read file to corrupt");
    raw[usize::try_from(pos).expect("small file")] ^= mask;
    fs::write(path, raw).expect("write corrupted file");
}

/// Copies every regular file of `src` into `dst` (created if needed), except the `LOCK` file.
pub fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).expect("create copy directory");
    for item in fs::read_dir(src).expect("list source directory") {
        let path = item.expect("directory entry").path();
        if path.is_file() && path.file_name().is_some_and(|n| n != "LOCK") {
            fs::copy(&path, dst.join(path.file_name().expect("file name"))).expect("copy file");
        }
    }
}

/// Asserts that `err` is `Corrupt` naming `path` at byte `position`, and that its message says so.
pub fn assert_corrupt_at(err: &StorageError, path: &Path, position: u64) {
    match err {
        StorageError::Corrupt { path: p, position: at, .. } => {
            assert_eq!((p.as_path(), *at), (path, position), "{err}");
        }
        other => panic!("expected Corrupt at {}:{position}, got {other:?}", path.display()),
    }
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()) && msg.contains(&position.to_string()), "{msg}");
}
