//! How big the idempotent-producer table grows under a client that sends a million distinct
//! producer ids, measured with a counting allocator (so it has a binary of its own). Ignored by
//! default; run with
//!
//! ```text
//! cargo test -p sluice-raft --test producer_memory -- --ignored --nocapture
//! ```
//!
//! Each batch goes through the calls the partition state machine makes when it applies a
//! stamped produce (`advance`, `check`, `record`), one batch per producer id, the leader's clock
//! moving 1 ms per batch. Unbounded (no expiry, no cap) is how the table behaved before it was
//! bounded.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use sluice_common::record::ProducerStamp;
use sluice_raft::partition::{
    Check, DEFAULT_MAX_PRODUCERS, DEFAULT_PRODUCER_ID_EXPIRATION_MS, PartitionState, ProducerTable,
};

/// Counts the bytes allocated and not yet freed.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// A global allocator is `unsafe` by definition; this one is allowed in this measurement binary
// alone.
// SAFETY: every call is forwarded unchanged to the system allocator, which upholds the
// `GlobalAlloc` contract; the counter beside it allocates nothing.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const PRODUCERS: i64 = 1_000_000;

struct Measured {
    entries: usize,
    heap_bytes: usize,
    snapshot_bytes: usize,
    refused: u64,
}

/// Applies one batch from each of `PRODUCERS` distinct ids under the given limits.
fn apply_distinct_ids(expiration_ms: u64, max_producers: usize) -> Measured {
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let mut state = PartitionState::default();
    let table: &mut ProducerTable = &mut state.producers;
    let mut refused = 0;
    for id in 0..PRODUCERS {
        let now_ms = 1_700_000_000_000 + id as u64;
        table.advance(now_ms, expiration_ms);
        let stamp = ProducerStamp { producer_id: id, epoch: 0, base_sequence: 0 };
        match table.check_under(&stamp, 1, max_producers, true) {
            Check::Accept => table.record(&stamp, 1, id as u64),
            Check::TooManyProducers { .. } => refused += 1,
            other => panic!("a new id answered {other:?}"),
        }
    }
    let heap_bytes = LIVE_BYTES.load(Ordering::Relaxed) - before;
    let snapshot_bytes = state.encode().len();
    Measured { entries: state.producers.len(), heap_bytes, snapshot_bytes, refused }
}

fn report(what: &str, m: &Measured) {
    println!(
        "{what:<44} entries {:>9}  heap {:>7.1} MiB ({:>3} B/entry)  snapshot {:>6.1} MiB  refused {:>9}",
        m.entries,
        m.heap_bytes as f64 / 1_048_576.0,
        m.heap_bytes / m.entries.max(1),
        m.snapshot_bytes as f64 / 1_048_576.0,
        m.refused
    );
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn a_million_distinct_producer_ids() {
    let unbounded = apply_distinct_ids(u64::MAX, usize::MAX);
    report("unbounded (no expiry, no cap: as before)", &unbounded);
    assert_eq!(unbounded.entries, PRODUCERS as usize, "without bounds every id stays");

    let defaults = apply_distinct_ids(DEFAULT_PRODUCER_ID_EXPIRATION_MS, DEFAULT_MAX_PRODUCERS as usize);
    report("defaults (7-day expiry, cap 10000)", &defaults);
    assert_eq!(defaults.entries, DEFAULT_MAX_PRODUCERS as usize);
    assert_eq!(defaults.refused, PRODUCERS as u64 - u64::from(DEFAULT_MAX_PRODUCERS));

    let expiring = apply_distinct_ids(60_000, usize::MAX);
    report("60 s expiry, no cap, ids 1 ms apart", &expiring);
    assert_eq!(expiring.entries, 60_000, "only the last minute's ids stay");
}
