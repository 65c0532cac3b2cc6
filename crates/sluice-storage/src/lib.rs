//! Sluice's storage engine: a segmented, CRC-checked, indexed log of Raft entries.
//!
//! Each partition replica keeps its Raft log in one [`Log`] directory, and that log *is* the
//! partition's message log (docs/ARCHITECTURE.md, D1): one write per message per replica. The
//! crate is synchronous and knows nothing of tokio, openraft or the network; it is not a message
//! format either — entry payloads are opaque bytes.
//!
//! - [`Log`]: append batches with one vectored write, read ranges as [`bytes::Bytes`] slices of
//!   one buffer, `truncate_from` (Raft conflicts), `purge_to` (snapshots, retention), segment
//!   rolling by size and age, crash recovery on open, and a `LOCK` file per directory.
//! - [`Flusher`]: group commit. Appends return before they are durable; a flusher shared by all
//!   logs of a data directory fsyncs each log once per round and tells every waiter (D3). Under
//!   a relaxed [`FlushPolicy`] it instead fsyncs a log within an interval of its writes.
//! - Secondary indexes written at apply time: message offset → entry and timestamp → offset
//!   ([`Log::index_batch`], [`Log::find_offset`], [`Log::find_timestamp`]).
//! - [`write_state_file`] / [`read_state_file`]: small atomically replaced files (Raft's vote).
//!
//! Byte layouts are drawn in `format.rs`, `index.rs` and `docs/FORMAT.md`.

mod backfill;
mod clock;
mod config;
mod entry;
mod error;
mod flush_policy;
mod flusher;
pub mod format;
mod index;
mod lock;
mod log;
mod offsets;
mod recovery;
mod retention;
mod segment;
mod space;
mod state_file;

pub use backfill::Backfill;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{LogConfig, Retention};
pub use entry::{Entry, EntryId, IndexedEnd, OffsetLocation};
pub use error::{Result, StorageError};
pub use flush_policy::{FlushPolicy, MAX_FLUSH_INTERVAL_MS};
pub use flusher::{FlushCallback, Flusher, SyncObserver};
pub use lock::DirLock;
pub use log::Log;
pub use space::{DiskSpace, disk_space};
pub use state_file::{read_state_file, sync_dir, write_state_file};
