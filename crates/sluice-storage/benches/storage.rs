//! Criterion benchmarks for `sluice-storage`: what one [`Log`] writes, reads and reopens, next to
//! what the same disk does with plain file writes.
//!
//! Run them all (release profile; about two minutes after the build on a 2-core machine), or
//! some of them by passing a criterion filter, a regex over the id `group/shape/variant`:
//!
//! ```text
//! cargo bench -p sluice-storage
//! cargo bench -p sluice-storage -- '^append/'
//! cargo bench -p sluice-storage -- '^(append|raw_disk)/1x1MiB/sync$'
//! ```
//!
//! Throughputs count **log bytes**: payloads plus the 24-byte frame header of each entry, so
//! `append` and `raw_disk` count the same bytes and their ratio is the ratio of their times.
//! Entries per second is the number of entries per iteration (in the id, and printed when a
//! benchmark sets up) divided by the time per iteration.
//!
//! - `append/{1000x100B,1x1MiB}/{no_sync,sync}`: one iteration is one `Log::append` of a batch
//!   built before timing (1,000 × 100 B = 124,000 log bytes, or 1 × 1 MiB = 1,048,600), plus one
//!   `Log::sync()` in the `sync` variant. All iterations append to one log with 128 MiB
//!   segments; a roll does not wait for the disk (the next `sync` seals the old segment, and
//!   that is timed in the `sync` variant). Past 2 GiB the log is replaced by an empty one, untimed.
//! - `raw_disk/{1000x100B,1x1MiB}/{no_sync,sync}`: the baseline: the same bytes as one
//!   `File::write_all` per batch to an append-mode file, plus `sync_data` in the `sync` variant;
//!   the file is recreated past 2 GiB. Each `raw_disk` case runs right after its `append` case.
//!   Neither `no_sync` variant waits for the device: both measure the CPU cost of getting bytes
//!   into the page cache (for `append`: framing, CRC and index upkeep on top of the copy).
//! - `read/{100B,1MiB}`: one iteration reads a 256 MiB log, written as batches of 1,000 × 100 B
//!   or of one 1 MiB entry, from first to last entry with `Log::read(next, u64::MAX, 1 MiB)`.
//!   The log was just written and is in the page cache: this measures the read path (pread,
//!   buffers, CRC checks), not the device.
//! - `read_sealed/{1x100B,64KiB}/{warm,cold}`: one iteration is one `Log::read` of one 100 B
//!   entry (budget 0) or of 64 KiB of them, from a 64 MiB log of 1 MiB sealed segments; each
//!   iteration reads from a different segment than the last (stepping through all of them). In
//!   `warm` the log's `SegmentCache` holds every sealed segment open; in `cold` its bound is zero,
//!   so every read reopens the segment's `.log` file and maps its three index files, then closes
//!   them: the cost of reading a segment the cache has evicted. Page cache hot in both.
//! - `open/{4KiB,1MiB}/{intact,no_index}`: one iteration is `Log::open` of a 1 GiB log of 4 KiB
//!   or 1 MiB entries in 128 MiB segments, written once (page cache hot). `intact` opens it as a
//!   clean stop left it; `no_index` first deletes every `*.index` file (untimed), so each sealed
//!   segment is scanned and its position index rebuilt. Both include the full scan of the tail
//!   segment that every open makes, and its final fdatasync and directory fsync.
//!
//! Data goes to temporary directories under Cargo's `CARGO_TARGET_TMPDIR` (`target/tmp`), on the
//! build's filesystem rather than a tmpfs; at most about 2.2 GiB at a time. Deletions are
//! fsynced untimed, so that their journal commit is not charged to the next benchmark. Under
//! `cargo test --benches` each benchmark runs once on 1/64 of the data, as a smoke test.

use std::fs::{self, File, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, SamplingMode, Throughput};
use criterion::{criterion_group, criterion_main};
use sluice_storage::format::ENTRY_HEADER_LEN;
use sluice_storage::{Entry, Log, LogConfig, SegmentCache};
use tempfile::TempDir;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const GIB: u64 = 1 << 30;
const SEGMENT_BYTES: u64 = 128 * MIB as u64;
/// A write benchmark starts over with an empty log (or file) once it has written this much.
const WRITE_LIMIT: u64 = 2 * GIB;
/// Payload budget of each `Log::read` call.
const READ_BUDGET: usize = MIB;

/// A batch shape: `entries` entries of `payload` bytes each.
#[derive(Clone, Copy)]
struct Shape {
    name: &'static str,
    entries: usize,
    payload: usize,
}

const SMALL_BATCH: Shape = Shape { name: "1000x100B", entries: 1000, payload: 100 };
const LARGE_BATCH: Shape = Shape { name: "1x1MiB", entries: 1, payload: MIB };
const READ_SHAPES: [Shape; 2] =
    [Shape { name: "100B", entries: 1000, payload: 100 }, Shape { name: "1MiB", entries: 1, payload: MIB }];
const OPEN_SHAPES: [Shape; 2] =
    [Shape { name: "4KiB", entries: 256, payload: 4 * KIB }, Shape { name: "1MiB", entries: 1, payload: MIB }];

impl Shape {
    /// Log bytes of one batch: payloads plus frame headers.
    const fn frame_bytes(self) -> u64 {
        (self.entries * (ENTRY_HEADER_LEN + self.payload)) as u64
    }

    /// A batch of entries sharing one payload; indexes are set by [`renumber`].
    fn batch(self) -> Vec<Entry> {
        let payload = Bytes::from(pattern(self.payload));
        (0..self.entries).map(|_| Entry::new(0, 1, payload.clone())).collect()
    }
}

/// `len` bytes of a non-repeating-looking pattern.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

fn renumber(batch: &mut [Entry], first: u64) {
    for (i, e) in batch.iter_mut().enumerate() {
        e.index = first + i as u64;
    }
}

fn config() -> LogConfig {
    LogConfig { max_segment_bytes: SEGMENT_BYTES, max_segment_age: None, ..LogConfig::default() }
}

/// Whether this is a real benchmark run (`cargo bench`) rather than `cargo test --benches`.
fn full_run() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

/// `full` bytes for a benchmark run, 1/64 of it for a test run.
fn scaled(full: u64) -> u64 {
    if full_run() { full } else { full / 64 }
}

/// A fresh directory on the build's filesystem, removed when dropped.
fn scratch_dir() -> TempDir {
    tempfile::Builder::new().prefix("sluice-bench-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("create tempdir")
}

/// Fsyncs `dir` so that the journal commits what was just deleted there (and, on a filesystem
/// mounted with `discard`, the device discards it) now, untimed, not in the next timed fsync.
fn settle(dir: &Path) {
    File::open(dir).and_then(|d| d.sync_all()).expect("fsync directory");
}

/// Drops a benchmark's data and settles the filesystem before the next benchmark.
fn clean_up<T>(state: Option<T>) {
    drop(state);
    settle(Path::new(env!("CARGO_TARGET_TMPDIR")));
}

fn open_log(dir: &Path) -> Log {
    Log::open(dir, config()).expect("open log")
}

fn sync_name(sync: bool) -> &'static str {
    if sync { "sync" } else { "no_sync" }
}

fn describe(id: &str, entries: u64, bytes: u64) {
    eprintln!("{id}: {entries} entries, {bytes} log bytes per iteration");
}

/// Sample settings shared by all groups: few samples, flat sampling (iterations are slow or,
/// for appends, uneven because of segment rolls).
fn configure(group: &mut BenchmarkGroup<'_, WallTime>, measure_secs: u64) {
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(measure_secs));
}

/// Something written one batch per iteration: a log or a plain file.
trait BatchWriter {
    /// Untimed work before a batch.
    fn prepare(&mut self);
    /// The timed work: write one batch, and fsync it when `sync`.
    fn write(&mut self, sync: bool);
    /// Untimed bookkeeping after a batch.
    fn finish(&mut self);
}

/// Writes `iters` batches and returns the time spent in [`BatchWriter::write`] alone.
fn time_writes(w: &mut impl BatchWriter, sync: bool, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        w.prepare();
        let start = Instant::now();
        w.write(sync);
        total += start.elapsed();
        w.finish();
    }
    total
}

/// One log appended to across iterations, replaced once it passes [`WRITE_LIMIT`].
struct AppendLog {
    root: TempDir,
    generation: u32,
    log: Log,
    batch: Vec<Entry>,
    next: u64,
    written: u64,
}

impl AppendLog {
    fn new(shape: Shape) -> AppendLog {
        let root = scratch_dir();
        let log = open_log(&root.path().join("log0"));
        AppendLog { root, generation: 0, log, batch: shape.batch(), next: 1, written: 0 }
    }

    fn replace_log(&mut self) {
        self.generation += 1;
        let fresh = open_log(&self.root.path().join(format!("log{}", self.generation)));
        let old = std::mem::replace(&mut self.log, fresh);
        let old_dir = old.dir().to_owned();
        drop(old);
        fs::remove_dir_all(&old_dir).expect("remove old log");
        settle(self.root.path());
        (self.next, self.written) = (1, 0);
    }
}

impl BatchWriter for AppendLog {
    fn prepare(&mut self) {
        renumber(&mut self.batch, self.next);
    }

    fn write(&mut self, sync: bool) {
        self.log.append(&self.batch).expect("append");
        if sync {
            self.log.sync().expect("sync");
        }
    }

    fn finish(&mut self) {
        self.next += self.batch.len() as u64;
        self.written += self.batch.iter().map(|e| (ENTRY_HEADER_LEN + e.payload.len()) as u64).sum::<u64>();
        if self.written > WRITE_LIMIT {
            self.replace_log();
        }
    }
}

/// One plain append-mode file, recreated once it passes [`WRITE_LIMIT`].
struct RawFile {
    root: TempDir,
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    written: u64,
}

impl RawFile {
    fn new(shape: Shape) -> RawFile {
        let root = scratch_dir();
        let path = root.path().join("raw");
        let file = create_append(&path);
        let buf = pattern(shape.frame_bytes() as usize);
        RawFile { root, path, file, buf, written: 0 }
    }
}

fn create_append(path: &Path) -> File {
    OpenOptions::new().append(true).create(true).truncate(false).open(path).expect("create raw file")
}

impl BatchWriter for RawFile {
    fn prepare(&mut self) {}

    fn write(&mut self, sync: bool) {
        self.file.write_all(&self.buf).expect("write");
        if sync {
            self.file.sync_data().expect("fdatasync");
        }
    }

    fn finish(&mut self) {
        self.written += self.buf.len() as u64;
        if self.written > WRITE_LIMIT {
            fs::remove_file(&self.path).expect("remove raw file");
            settle(self.root.path());
            self.file = create_append(&self.path);
            self.written = 0;
        }
    }
}

/// One write benchmark, `group/shape/variant`.
fn write_bench<W: BatchWriter>(c: &mut Criterion, name: &str, shape: Shape, sync: bool, make: fn(Shape) -> W) {
    let mut group = c.benchmark_group(name);
    configure(&mut group, 5);
    group.throughput(Throughput::Bytes(shape.frame_bytes()));
    let id = format!("{}/{}", shape.name, sync_name(sync));
    let mut state = None;
    group.bench_function(&id, |b| {
        let w = state.get_or_insert_with(|| {
            describe(&format!("{name}/{id}"), shape.entries as u64, shape.frame_bytes());
            make(shape)
        });
        b.iter_custom(|iters| time_writes(w, sync, iters));
    });
    group.finish();
    clean_up(state);
}

/// The `append` and `raw_disk` groups, run in pairs (each `append` case right before the
/// `raw_disk` case it is compared with) so that drifting background load skews a ratio less.
fn writes(c: &mut Criterion) {
    for shape in [SMALL_BATCH, LARGE_BATCH] {
        for sync in [false, true] {
            write_bench(c, "append", shape, sync, AppendLog::new);
            write_bench(c, "raw_disk", shape, sync, RawFile::new);
        }
    }
}

/// A pre-written log: `batches` batches of `shape`, at least `target` log bytes (1/64 of it in
/// a test run).
#[derive(Clone, Copy)]
struct Plan {
    shape: Shape,
    batches: u64,
}

impl Plan {
    fn new(shape: Shape, target: u64) -> Plan {
        Plan { shape, batches: scaled(target).div_ceil(shape.frame_bytes()) }
    }

    fn entries(self) -> u64 {
        self.batches * self.shape.entries as u64
    }

    /// Log bytes in frames (segment headers not included).
    fn bytes(self) -> u64 {
        self.batches * self.shape.frame_bytes()
    }

    /// Writes the plan to a new log in `dir` (entries from index 1), syncs it and returns it.
    fn write(self, dir: &Path) -> Log {
        eprintln!("writing {} entries of {} ({} log bytes)", self.entries(), self.shape.name, self.bytes());
        let log = open_log(dir);
        let mut batch = self.shape.batch();
        for i in 0..self.batches {
            renumber(&mut batch, 1 + i * self.shape.entries as u64);
            log.append(&batch).expect("append");
        }
        log.sync().expect("sync");
        log
    }
}

/// A log written once and read over and over.
struct ReadLog {
    _root: TempDir,
    log: Log,
    entries: u64,
}

impl ReadLog {
    fn new(plan: Plan) -> ReadLog {
        let root = scratch_dir();
        let log = plan.write(&root.path().join("log"));
        ReadLog { _root: root, log, entries: plan.entries() }
    }

    /// Reads every entry in [`READ_BUDGET`] steps; returns the payload bytes seen.
    fn read_all(&self) -> u64 {
        let (mut next, mut payload) = (1, 0);
        while next <= self.entries {
            let got = self.log.read(next, u64::MAX, READ_BUDGET).expect("read");
            next = got.last().expect("the log holds entries up to the end").index + 1;
            payload += got.iter().map(|e| e.payload.len() as u64).sum::<u64>();
            black_box(got);
        }
        payload
    }
}

fn read(c: &mut Criterion) {
    let mut group = c.benchmark_group("read");
    configure(&mut group, 5);
    for shape in READ_SHAPES {
        let plan = Plan::new(shape, 256 * MIB as u64);
        group.throughput(Throughput::Bytes(plan.bytes()));
        let mut state = None;
        group.bench_function(shape.name, |b| {
            let r = state.get_or_insert_with(|| {
                describe(&format!("read/{}", shape.name), plan.entries(), plan.bytes());
                ReadLog::new(plan)
            });
            b.iter(|| r.read_all());
        });
        clean_up(state);
    }
    group.finish();
}

/// Segment size of the `read_sealed` logs: small, so that 64 MiB makes many sealed segments.
const SEALED_SEGMENT_BYTES: u64 = MIB as u64;

/// A log of sealed segments, reopened with a cache of `max_open_files`, read from a different
/// segment each time.
struct SealedLog {
    _root: TempDir,
    log: Log,
    entries: u64,
    /// Entries per segment, roughly: the step between two reads.
    stride: u64,
    next: u64,
}

impl SealedLog {
    fn new(plan: Plan, max_open_files: usize) -> SealedLog {
        let root = scratch_dir();
        let dir = root.path().join("log");
        let config =
            LogConfig { max_segment_bytes: SEALED_SEGMENT_BYTES, max_entry_bytes: 64 * KIB as u32, ..config() };
        let log = Log::open(&dir, config.clone()).expect("open log");
        let mut batch = plan.shape.batch();
        for i in 0..plan.batches {
            renumber(&mut batch, 1 + i * plan.shape.entries as u64);
            log.append(&batch).expect("append");
        }
        log.sync().expect("sync");
        drop(log);
        let log = Log::open_with(&dir, config, Arc::new(SegmentCache::new(max_open_files))).expect("reopen log");
        let stride = plan.entries() / log.segment_count() as u64 + 1;
        eprintln!("{} sealed segments, reading every {stride}th entry", log.segment_count() - 1);
        SealedLog { _root: root, log, entries: plan.entries(), stride, next: 1 }
    }

    /// Reads `budget` bytes (at least one entry) from the next segment's entries.
    fn read_next(&mut self, budget: usize) -> usize {
        let got = self.log.read(self.next, u64::MAX, budget).expect("read");
        self.next += self.stride;
        if self.next > self.entries {
            self.next = 1 + self.next % self.stride.max(1);
        }
        got.len()
    }
}

fn read_sealed(c: &mut Criterion) {
    let mut group = c.benchmark_group("read_sealed");
    configure(&mut group, 3);
    let plan = Plan::new(Shape { name: "100B", entries: 1000, payload: 100 }, 64 * MIB as u64);
    for (name, budget) in [("1x100B", 0), ("64KiB", 64 * KIB)] {
        for (variant, max_open_files) in [("warm", sluice_storage::DEFAULT_MAX_OPEN_FILES), ("cold", 0)] {
            let mut state = None;
            group.bench_function(format!("{name}/{variant}"), |b| {
                let r = state.get_or_insert_with(|| SealedLog::new(plan, max_open_files));
                b.iter(|| r.read_next(budget));
            });
            if let Some(r) = &state {
                eprintln!("read_sealed/{name}/{variant}: {:?}", r.log.segment_cache().stats());
            }
            clean_up(state);
        }
    }
    group.finish();
}

/// A closed 1 GiB log, written once for the `open` benchmarks of one shape.
struct OpenLog {
    _root: TempDir,
    dir: PathBuf,
}

impl OpenLog {
    fn new(plan: Plan) -> OpenLog {
        let root = scratch_dir();
        let dir = root.path().join("log");
        drop(plan.write(&dir));
        OpenLog { _root: root, dir }
    }

    /// Deletes every position index (`*.index`) file.
    fn delete_indexes(&self) {
        for item in fs::read_dir(&self.dir).expect("list log dir") {
            let path = item.expect("list log dir").path();
            if path.extension().is_some_and(|ext| ext == "index") {
                fs::remove_file(&path).expect("delete index");
            }
        }
    }
}

fn open(c: &mut Criterion) {
    let mut group = c.benchmark_group("open");
    configure(&mut group, 5);
    for shape in OPEN_SHAPES {
        let plan = Plan::new(shape, GIB);
        group.throughput(Throughput::Bytes(plan.bytes()));
        let mut fixture: Option<OpenLog> = None;
        for no_index in [false, true] {
            let id = format!("{}/{}", shape.name, if no_index { "no_index" } else { "intact" });
            let mut told = false;
            group.bench_function(&id, |b| {
                if !std::mem::replace(&mut told, true) {
                    describe(&format!("open/{id}"), plan.entries(), plan.bytes());
                }
                let f = fixture.get_or_insert_with(|| OpenLog::new(plan));
                let setup = || {
                    if no_index {
                        f.delete_indexes()
                    }
                };
                b.iter_batched(setup, |()| open_log(&f.dir), BatchSize::PerIteration);
            });
        }
        clean_up(fixture);
    }
    group.finish();
}

criterion_group!(benches, writes, read, read_sealed, open);
criterion_main!(benches);
