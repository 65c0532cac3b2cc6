//! Readers running while an appender writes: every read returns a gap-free run of correct
//! entries starting at the requested index, across segment rolls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use sluice_storage::{Entry, Log, LogConfig};

use super::support::{SetOnDrop, entry, len_for, open, payload, read_all, small_config};

/// Entries the writer appends.
const ENTRIES: u64 = 20_000;
/// Upper bound on each reader's reads, so a stuck writer cannot hang the test.
const MAX_READS: usize = 1_000_000;

/// The term of entry `index` (it rises every 4,000 entries).
fn term_of(index: u64) -> u64 {
    1 + index / 4_000
}

/// A small xorshift generator, so the readers' choices vary without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Appends entries `1..=ENTRIES` in batches of 1 to 97 entries.
fn write_all(log: &Log) {
    let mut next = 1;
    let mut size = 1;
    while next <= ENTRIES {
        let end = (next + size).min(ENTRIES + 1);
        let batch: Vec<Entry> = (next..end).map(|i| entry(i, term_of(i), len_for(i))).collect();
        log.append(&batch).expect("append");
        next = end;
        size = size % 97 + 1;
    }
}

/// Checks one read of `start..end` with `budget` against the deterministic content: non-empty
/// (the entry existed before the read began), contiguous from `start`, and within `end`.
fn check_read(log: &Log, start: u64, end: u64, budget: usize) {
    let got = log.read(start, end, budget).unwrap_or_else(|e| panic!("read {start}..{end}: {e}"));
    assert!(!got.is_empty(), "read {start}..{end} (budget {budget}) returned nothing");
    for (e, want) in got.iter().zip(start..) {
        assert_eq!(e.index, want, "read {start}..{end} has a gap");
        assert_eq!(e.term, term_of(want), "term of {want}");
        assert_eq!(e.payload, payload(want, len_for(want)), "payload of {want}");
    }
    assert!(got.last().expect("non-empty").index < end);
}

/// Reads random ranges up to the last appended entry until `done` is set (one more read after
/// it is seen); returns how many reads were made.
fn read_until_done(log: &Log, done: &AtomicBool, seed: u64) -> usize {
    let mut rng = Rng(seed);
    let mut reads = 0;
    for round in 0..MAX_READS {
        let finished = done.load(Ordering::Acquire);
        if let Some(last) = log.last_id() {
            let start = 1 + rng.below(last.index);
            let end = start + 1 + rng.below(300);
            let budget = [0, 700, 16 * 1024, usize::MAX][rng.below(4) as usize];
            check_read(log, start, end, budget);
            reads += 1;
            if round % 16 == 0 {
                assert_eq!(log.term_of(start).expect("term_of"), Some(term_of(start)));
            }
        }
        if finished {
            break;
        }
    }
    reads
}

/// Checks that three readers racing one appender over many segment rolls see no errors, no
/// gaps and no wrong bytes, and that the log holds every entry at the end.
#[test]
fn given_an_appender_concurrent_readers_should_see_contiguous_correct_entries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = LogConfig { max_segment_bytes: 256 * 1024, ..small_config() };
    let log = open(dir.path(), &config);
    let done = AtomicBool::new(false);
    let reads: Vec<usize> = thread::scope(|s| {
        let (log, done) = (&log, &done);
        let readers: Vec<_> =
            (1..=3u64).map(|seed| s.spawn(move || read_until_done(log, done, seed * 0x2545_F491_4F6C_DD1D))).collect();
        let stop_readers = SetOnDrop(done);
        write_all(log);
        drop(stop_readers);
        readers.into_iter().map(|r| r.join().expect("reader panicked")).collect()
    });
    assert!(reads.iter().all(|&n| n > 0), "every reader read something: {reads:?}");
    assert!(log.segment_count() > 10, "the appender rolled segments: {}", log.segment_count());
    let all = read_all(&log);
    assert_eq!(all.len() as u64, ENTRIES);
    assert!(all.iter().zip(1..).all(|(e, i)| e.index == i && e.payload == payload(i, len_for(i))));
}
