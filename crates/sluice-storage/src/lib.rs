//! Sluice's storage engine: a segmented, CRC-checked, indexed log of Raft entries.
//!
//! Each partition replica keeps its Raft log in one [`Log`] directory, and that log *is* the
//! partition's message log (docs/ARCHITECTURE.md, D1): one write per message per replica. The
//! crate is synchronous and knows nothing of tokio, openraft or the network; it is not a message
//! format either — entry payloads are opaque bytes.
//!
//! - [`Log`]: append batches with one vectored write, read ranges as [`bytes::Bytes`] slices of
//!   one buffer, `truncate_from` (Raft conflicts), `purge_to` (snapshots, retention), segment
//!   rolling by size and age, crash recovery on open, and a `LOCK` file per directory (or, with
//!   [`LockMode::Held`], none: the opener locks a directory above).
//! - [`Flusher`]: group commit. Appends return before they are durable; a flusher shared by all
//!   logs of a data directory fsyncs each log once per round and tells every waiter (D3). Under
//!   a relaxed [`FlushPolicy`] it instead fsyncs a log within an interval of its writes.
//! - Secondary indexes written at apply time: message offset → entry and timestamp → offset
//!   ([`Log::index_batch`], [`Log::find_offset`], [`Log::find_timestamp`]).
//! - [`SegmentCache`]: a bounded, least-recently-used set of open sealed segments shared by every
//!   log of a data directory. Only a log's active segment stays open for good, so a broker's open
//!   files and memory maps grow with what is read, not with what is stored. The cache also
//!   closes any segment's `.log` descriptor, the active one's included, once it has gone unused
//!   for [`DEFAULT_IDLE_CLOSE`]: an idle log holds no descriptor.
//! - [`write_state_file`] / [`read_state_file`]: small atomically replaced files (Raft's vote).
//!
//! Byte layouts are drawn in `format.rs`, `index.rs` and `docs/FORMAT.md`.

mod backfill;
mod cache;
mod clock;
mod config;
mod entry;
mod error;
mod flush_policy;
mod flusher;
pub mod format;
mod idle;
mod index;
mod lock;
mod log;
mod log_file;
mod offsets;
mod recovery;
mod retention;
mod segment;
mod segment_files;
mod space;
mod state_file;

pub use backfill::Backfill;
pub use cache::{CacheStats, DEFAULT_MAX_OPEN_FILES, FILES_PER_SEGMENT, SegmentCache};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{LogConfig, Retention};
pub use entry::{Entry, EntryId, IndexedEnd, OffsetLocation};
pub use error::{Result, StorageError};
pub use flush_policy::{FlushPolicy, MAX_FLUSH_INTERVAL_MS};
pub use flusher::{FlushCallback, Flusher, SyncObserver};
pub use idle::DEFAULT_IDLE_CLOSE;
pub use lock::{DirLock, LockMode};
pub use log::Log;
pub use space::{DiskSpace, disk_space};
pub use state_file::{read_state_file, sync_dir, write_state_file};
