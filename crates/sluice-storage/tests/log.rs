//! Integration and property tests of `sluice-storage`, in one test binary: crash recovery
//! (every cut of the newest segment, torn tails, corrupt sealed segments, lost or garbled
//! indexes, sealing after a roll), the segment lifecycle (rolling by size and age, retention, truncation, purging),
//! the offset and time indexes, sealed segments opened on demand through a bounded cache,
//! descriptors closed while idle,
//! readers racing an appender, the directory lock across two
//! processes, the group-commit flusher, and rejection of bad input.
//!
//! A crate root's modules live next to it, so each one names its file under `log/`.

#[path = "log/bad_input.rs"]
mod bad_input;
#[path = "log/cache.rs"]
mod cache;
#[path = "log/concurrency.rs"]
mod concurrency;
#[path = "log/cuts.rs"]
mod cuts;
#[path = "log/flusher.rs"]
mod flusher;
#[path = "log/idle.rs"]
mod idle;
#[path = "log/lifecycle.rs"]
mod lifecycle;
#[path = "log/offsets.rs"]
mod offsets;
#[path = "log/process.rs"]
mod process;
#[path = "log/recovery.rs"]
mod recovery;
#[path = "log/sealing.rs"]
mod sealing;
#[path = "log/support.rs"]
mod support;
#[path = "log/truncate_purge.rs"]
mod truncate_purge;
