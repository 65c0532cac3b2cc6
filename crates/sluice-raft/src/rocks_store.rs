//! A Raft log store in RocksDB, for small, rarely written groups such as the controller's
//! metadata group (docs/ARCHITECTURE.md §Controller). Partitions use the segment log instead (D1).
//!
//! Column families: `log` maps a big-endian index to `| term u64 LE | payload |` (the payload
//! as [`codec`] encodes entries); `state` holds `vote` and `purged`. Every write is synced
//! before openraft is told it is saved, on a blocking thread so the runtime is never stalled
//! by an fsync. Truncations and purges run as single atomic write batches.

use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use rocksdb::{ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};

use crate::codec;
use crate::log_store::{bounds, decode_vote, encode_vote};
use crate::typ::{LogId, PartitionConfig, RaftEntry, Vote, log_id};

const CF_LOG: &str = "log";
const CF_STATE: &str = "state";
const KEY_VOTE: &[u8] = b"vote";
const KEY_PURGED: &[u8] = b"purged";

/// A RocksDB-backed Raft log store; cheap to clone (the database is shared).
#[derive(Clone)]
pub struct RocksLogStore {
    db: Arc<Db>,
}

/// The open database, and a flag set once it is closed. The flag, not a `Weak`'s count, tells
/// [`ReleaseToken`] holders: the count reads zero as soon as the last `Arc` starts dropping,
/// before RocksDB has closed and released its `LOCK`, so a reopen racing that drop failed
/// ("lock hold by current process") when a broker restarted in the same process.
struct Db {
    db: Option<DB>,
    closed: Arc<AtomicBool>,
}

impl std::ops::Deref for Db {
    type Target = DB;

    fn deref(&self) -> &DB {
        self.db.as_ref().expect("open until dropped")
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        drop(self.db.take()); // closes the database, releasing its LOCK
        self.closed.store(true, Ordering::Release);
    }
}

/// The memtables' total size, and so the size of each preallocated write-ahead log file.
const DB_WRITE_BUFFER_BYTES: usize = 8 << 20;

impl RocksLogStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> io::Result<RocksLogStore> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // The controller's metadata is small. RocksDB preallocates each write-ahead log file at
        // 1.1 times the write buffer (64 MiB by default): 70 MiB of a broker's disk for nothing,
        // and on a small or nearly full disk the first thing to run out. Capping the memtables'
        // total (db_write_buffer_size) caps the preallocation: measured, 8 MiB.
        opts.set_db_write_buffer_size(DB_WRITE_BUFFER_BYTES);
        opts.set_keep_log_file_num(3);
        opts.set_max_log_file_size(1 << 20);
        let cfs = [CF_LOG, CF_STATE].map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(|e| db_error("open", dir, e))?;
        Ok(RocksLogStore { db: Arc::new(Db { db: Some(db), closed: Arc::new(AtomicBool::new(false)) }) })
    }

    /// A token that tells when every handle to this store (including the clones openraft's tasks
    /// hold) has been dropped and the database closed, so the same directory can be opened again
    /// in this process.
    pub fn release_token(&self) -> ReleaseToken {
        ReleaseToken(Arc::clone(&self.db.closed))
    }

    /// Writes `batch` durably on a blocking thread.
    async fn write(&self, batch: WriteBatch) -> io::Result<()> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let mut opts = WriteOptions::default();
            opts.set_sync(true);
            db.write_opt(batch, &opts).map_err(|e| db_error("write", db.path(), e))
        })
        .await
        .map_err(io::Error::other)?
    }

    fn get_state(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(CF_STATE), key).map_err(|e| db_error("read", self.db.path(), e))
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("column families are created on open")
    }

    fn entries(&self, start: u64, end: u64) -> io::Result<Vec<RaftEntry>> {
        let from = start.to_be_bytes();
        let iter = self.db.iterator_cf(self.cf(CF_LOG), IteratorMode::From(&from, Direction::Forward));
        let mut out = Vec::new();
        for item in iter {
            let (key, value) = item.map_err(|e| db_error("read", self.db.path(), e))?;
            let index = u64::from_be_bytes(key[..8].try_into().map_err(|_| corrupt("log key"))?);
            if index >= end {
                break;
            }
            out.push(decode_value(index, &value)?);
        }
        Ok(out)
    }
}

/// See [`RocksLogStore::release_token`].
pub struct ReleaseToken(Arc<AtomicBool>);

impl ReleaseToken {
    /// Whether the store has been closed.
    pub fn is_released(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

fn decode_value(index: u64, value: &[u8]) -> io::Result<RaftEntry> {
    if value.len() < 8 {
        return Err(corrupt("log value shorter than its term"));
    }
    let term = u64::from_le_bytes(value[..8].try_into().expect("8 bytes"));
    codec::decode(sluice_storage::Entry::new(index, term, Bytes::copy_from_slice(&value[8..])))
}

fn decode_log_id(raw: &[u8]) -> io::Result<LogId> {
    let field = |at: usize| raw.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    match (field(0), field(8)) {
        (Some(term), Some(index)) if raw.len() == 16 => Ok(log_id(term, index)),
        _ => Err(corrupt("purged log id")),
    }
}

fn encode_log_id(id: &LogId) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&id.leader_id.term.to_le_bytes());
    b[8..].copy_from_slice(&id.index.to_le_bytes());
    b
}

impl RaftLogReader<PartitionConfig> for RocksLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<RaftEntry>> {
        let (start, end) = bounds(&range);
        self.entries(start, end)
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        match self.get_state(KEY_VOTE)? {
            Some(raw) => decode_vote(&raw).map(Some).ok_or_else(|| corrupt("vote")),
            None => Ok(None),
        }
    }
}

impl RaftLogStorage<PartitionConfig> for RocksLogStore {
    type LogReader = RocksLogStore;

    async fn get_log_state(&mut self) -> io::Result<LogState<PartitionConfig>> {
        let purged = self.get_state(KEY_PURGED)?.map(|raw| decode_log_id(&raw)).transpose()?;
        let last = match self.db.iterator_cf(self.cf(CF_LOG), IteratorMode::End).next() {
            Some(item) => {
                let (key, value) = item.map_err(|e| db_error("read", self.db.path(), e))?;
                let index = u64::from_be_bytes(key[..8].try_into().map_err(|_| corrupt("log key"))?);
                Some(decode_value(index, &value)?.log_id)
            }
            None => purged,
        };
        Ok(LogState { last_purged_log_id: purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_STATE), KEY_VOTE, encode_vote(vote));
        self.write(batch).await
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<PartitionConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = RaftEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        for entry in entries {
            let stored = codec::encode(&entry);
            let mut value = Vec::with_capacity(8 + stored.payload.len());
            value.extend_from_slice(&stored.term.to_le_bytes());
            value.extend_from_slice(&stored.payload);
            batch.put_cf(self.cf(CF_LOG), stored.index.to_be_bytes(), value);
        }
        // The write is synced before it returns: readable and durable at once.
        let result = self.write(batch).await;
        let reported = result.as_ref().map(|_| ()).map_err(|e| io::Error::new(e.kind(), e.to_string()));
        callback.io_completed(reported);
        result
    }

    async fn truncate_after(&mut self, last: Option<LogId>) -> io::Result<()> {
        let from = last.map_or(0, |id| id.index + 1);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf(CF_LOG), from.to_be_bytes(), u64::MAX.to_be_bytes());
        self.write(batch).await
    }

    async fn purge(&mut self, upto: LogId) -> io::Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_STATE), KEY_PURGED, encode_log_id(&upto));
        batch.delete_range_cf(self.cf(CF_LOG), 0u64.to_be_bytes(), (upto.index + 1).to_be_bytes());
        self.write(batch).await
    }
}

fn db_error(op: &str, path: &Path, e: rocksdb::Error) -> io::Error {
    io::Error::other(format!("rocksdb {op} {}: {e}", path.display()))
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("rocksdb log store: malformed {what}"))
}
