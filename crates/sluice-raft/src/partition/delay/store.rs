//! The pending delayed messages of every partition replica on a broker, in one RocksDB per
//! data directory (docs/adr/0009-delayed-messages.md). The store holds each pending message
//! itself, not a pointer into the partition's log, so a message delayed for a year never pins
//! the log's retention; RocksDB keeps it on disk, sorted by due time, with only what is read
//! in memory.
//!
//! ```text
//! key                                    value
//! 'p' group u64 | due_ms u64 | seq u64   the message, as a one-record batch (CRC-checked)
//! 'i' group u64 | seq u64                due_ms u64
//! 'x' group u64 | seq u64                (empty): cancelled
//! 'n' group u64                          pending count u64
//! 'm' group u64                          the last Raft index whose effects are stored
//! 's' group u64 | name                   a recurring schedule (`schedules.rs`)
//! 'f' group u64 | due_ms u64 | name      (empty): the schedule's next fire
//! ```
//! All integers big-endian in keys (so keys sort by them), little-endian in values.
//!
//! Writes are made at apply, one RocksDB write batch per entry, with the entry's index as the
//! group's mark in the same batch: after a crash the store is a prefix of the applied entries,
//! and the mark says which. The WAL is not synced per write (the Raft log is, D3); it is synced
//! before a snapshot is stored, so the mark never falls behind the snapshot.

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use rocksdb::{BlockBasedOptions, Cache, DB, Direction, IteratorMode, Options, ReadOptions, WriteBatch};

const PENDING: u8 = b'p';
const BY_SEQ: u8 = b'i';
const CANCELLED: u8 = b'x';
const COUNT: u8 = b'n';
const MARK: u8 = b'm';
pub(super) const SCHEDULE: u8 = b's';
pub(super) const FIRE: u8 = b'f';
/// Every key prefix, for dropping a group.
const PREFIXES: [u8; 7] = [PENDING, BY_SEQ, CANCELLED, COUNT, MARK, SCHEDULE, FIRE];

/// RocksDB memory: two 8 MiB memtables, a 16 MiB block cache, and the table files' index
/// blocks (about 0.2 % of the data with 16 KiB blocks: 3 MiB for ten million pending messages
/// of 100 bytes), under the 64 MiB the index may use (docs/DELAYS.md).
const MEMTABLE_BYTES: usize = 8 << 20;
const BLOCK_CACHE_BYTES: usize = 16 << 20;
const BLOCK_BYTES: usize = 16 << 10;

/// One pending message read back for release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Its sequence number in the partition.
    pub seq: u64,
    /// When it is due, ms since the Unix epoch.
    pub due_ms: u64,
    /// The message as a one-record batch.
    pub batch: Bytes,
}

/// What cancelling found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was pending and never will be released (also for a repeated cancel).
    Cancelled,
    /// It was released before the cancel reached the log.
    AlreadyDelivered,
    /// No delayed message of the partition has this number.
    Unknown,
}

/// The pending delayed messages of a broker's partition replicas.
pub struct DelayStore {
    pub(super) db: DB,
    pub(super) path: PathBuf,
}

impl std::fmt::Debug for DelayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DelayStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl DelayStore {
    /// Opens (creating if missing) the store in `dir`.
    pub fn open(dir: &Path) -> io::Result<DelayStore> {
        std::fs::create_dir_all(dir)?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_write_buffer_size(MEMTABLE_BYTES);
        opts.set_max_write_buffer_number(2);
        // RocksDB preallocates 4 MiB for each manifest by default: on every broker, before any
        // message is delayed, and on a nearly full disk out of the guard's margin. The manifest
        // of this single-column-family store stays a few KiB.
        opts.set_manifest_preallocation_size(64 << 10);
        opts.set_keep_log_file_num(3);
        opts.set_max_log_file_size(1 << 20);
        let mut table = BlockBasedOptions::default();
        let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES).map_err(|e| db_error("cache", dir, e))?;
        table.set_block_cache(&cache);
        // Index blocks stay with their table files, not in the block cache: there a burst's
        // data blocks evicted them, and every lookup of a release read and decoded a table's
        // whole index again (measured: a release of 10,000 took over 5 s).
        table.set_block_size(BLOCK_BYTES);
        opts.set_block_based_table_factory(&table);
        let db = DB::open(&opts, dir).map_err(|e| db_error("open", dir, e))?;
        Ok(DelayStore { db, path: dir.to_path_buf() })
    }

    /// The last Raft index of `group` whose effects the store holds (0: none).
    pub fn mark(&self, group: u64) -> io::Result<u64> {
        Ok(self.get(&key(MARK, group, &[]))?.map_or(0, |v| le64(&v)))
    }

    /// Pending messages of `group`.
    pub fn count(&self, group: u64) -> io::Result<u64> {
        Ok(self.get(&key(COUNT, group, &[]))?.map_or(0, |v| le64(&v)))
    }

    /// The due time of pending message `seq`, if it is pending.
    pub fn due_of(&self, group: u64, seq: u64) -> io::Result<Option<u64>> {
        Ok(self.get(&key(BY_SEQ, group, &[seq]))?.map(|v| le64(&v)))
    }

    /// The earliest due time in `group`: of a pending message or a schedule's next fire.
    pub fn next_due(&self, group: u64) -> io::Result<Option<u64>> {
        self.next_due_from(group, (0, 0))
    }

    /// [`DelayStore::next_due`], knowing that no pending message sorts before `from`
    /// (`(due_ms, seq)`): the scan starts there, past the deletions of released messages that
    /// RocksDB would otherwise step over one by one until it compacts them away.
    pub fn next_due_from(&self, group: u64, from: (u64, u64)) -> io::Result<Option<u64>> {
        let message = self.pending_from(group, from, u64::MAX, 1, usize::MAX)?.first().map(|p| p.due_ms);
        let fire = self.due_fires(group, u64::MAX, 1)?.first().map(|(due, _)| *due);
        Ok(message.into_iter().chain(fire).min())
    }

    /// Pending messages of `group` due at or before `up_to_ms`, earliest first: at most `limit`,
    /// and past the first, no more than `max_bytes` of them.
    pub fn pending(
        &self,
        group: u64,
        from_ms: u64,
        up_to_ms: u64,
        limit: usize,
        max_bytes: usize,
    ) -> io::Result<Vec<Pending>> {
        self.pending_from(group, (from_ms, 0), up_to_ms, limit, max_bytes)
    }

    /// [`DelayStore::pending`] from key `(due_ms, seq)` on (see [`DelayStore::next_due_from`]).
    pub fn pending_from(
        &self,
        group: u64,
        (from_ms, from_seq): (u64, u64),
        up_to_ms: u64,
        limit: usize,
        max_bytes: usize,
    ) -> io::Result<Vec<Pending>> {
        let start = key(PENDING, group, &[from_ms, from_seq]);
        let mut read = ReadOptions::default();
        read.set_iterate_upper_bound(key(PENDING, group, &[up_to_ms.saturating_add(1)]));
        if up_to_ms == u64::MAX {
            read.set_iterate_upper_bound(key(PENDING, group + 1, &[]));
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        for item in self.db.iterator_opt(IteratorMode::From(&start, Direction::Forward), read) {
            let (k, v) = item.map_err(|e| db_error("read", &self.path, e))?;
            if out.len() >= limit || (!out.is_empty() && bytes + v.len() > max_bytes) {
                break;
            }
            bytes += v.len();
            out.push(Pending { due_ms: be64(&k[9..17]), seq: be64(&k[17..25]), batch: Bytes::from(v.into_vec()) });
        }
        Ok(out)
    }

    /// Whether `seq` of `group` was cancelled.
    pub fn was_cancelled(&self, group: u64, seq: u64) -> io::Result<bool> {
        Ok(self.get(&key(CANCELLED, group, &[seq]))?.is_some())
    }

    /// Starts the writes of entry `index` of `group`.
    pub fn batch(&self, group: u64, index: u64) -> io::Result<StoreBatch<'_>> {
        Ok(StoreBatch { store: self, group, index, batch: WriteBatch::default(), count: self.count(group)? })
    }

    /// Forgets `group` entirely (its replica is deleted, or replaced by a snapshot).
    pub fn delete_group(&self, group: u64) -> io::Result<()> {
        if self.holds_nothing_of(group)? {
            return Ok(()); // no write: a broker that never delayed a message keeps an empty log
        }
        let mut batch = WriteBatch::default();
        for prefix in PREFIXES {
            batch.delete_range(key(prefix, group, &[]), key(prefix, group + 1, &[]));
        }
        self.db.write(batch).map_err(|e| db_error("write", &self.path, e))
    }

    /// Replaces everything of `group` with `carried`, as of entry `index` (a replica installing
    /// a snapshot), atomically.
    pub fn replace_group(&self, group: u64, index: u64, carried: &super::transfer::Carried) -> io::Result<()> {
        let (rows, schedules) = (&carried.pending, &carried.schedules);
        if rows.is_empty() && schedules.is_empty() && carried.cancelled.is_empty() && self.holds_nothing_of(group)? {
            // Nothing to replace and no mark needed: with no stored effects, every entry after
            // the snapshot is fresh, as the mark would say.
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for prefix in PREFIXES {
            batch.delete_range(key(prefix, group, &[]), key(prefix, group + 1, &[]));
        }
        let mut writes = StoreBatch { store: self, group, index, batch, count: 0 };
        for row in rows {
            writes.add(row.seq, row.due_ms, &row.batch);
        }
        for (name, row) in schedules {
            writes.put_schedule(name, row);
        }
        for seq in &carried.cancelled {
            writes.batch.put(key(CANCELLED, group, &[*seq]), []);
        }
        writes.commit()
    }

    /// Makes every write so far durable: called before a snapshot is stored, so that the mark
    /// is never behind a stored snapshot.
    pub fn sync(&self) -> io::Result<()> {
        self.db.flush_wal(true).map_err(|e| db_error("sync", &self.path, e))
    }

    /// Everything of `group` — pending messages, cancelled numbers, schedules — and the mark
    /// they stand for, read at one point of the store (a RocksDB snapshot), for a replica that
    /// catches up by snapshot (`transfer`).
    pub fn export(&self, group: u64) -> io::Result<super::transfer::Carried> {
        let snap = self.db.snapshot();
        let read_err = |e| db_error("read", &self.path, e);
        let mark = snap.get(key(MARK, group, &[])).map_err(read_err)?.map_or(0, |v| le64(&v));
        let scan = |prefix: u8| {
            let mut read = ReadOptions::default();
            read.set_iterate_upper_bound(key(prefix, group + 1, &[]));
            let start = key(prefix, group, &[]);
            snap.iterator_opt(IteratorMode::From(&start, Direction::Forward), read)
        };
        let mut carried = super::transfer::Carried { mark, ..Default::default() };
        for item in scan(PENDING) {
            let (k, v) = item.map_err(read_err)?;
            let batch = Bytes::from(v.into_vec());
            carried.pending.push(Pending { due_ms: be64(&k[9..17]), seq: be64(&k[17..25]), batch });
        }
        for item in scan(CANCELLED) {
            carried.cancelled.push(be64(&item.map_err(read_err)?.0[9..17]));
        }
        for item in scan(SCHEDULE) {
            let (k, v) = item.map_err(read_err)?;
            let name = String::from_utf8_lossy(&k[9..]).into_owned();
            if let Some(row) = super::ScheduleRow::decode(&Bytes::from(v.into_vec())) {
                carried.schedules.push((name, row));
            }
        }
        Ok(carried)
    }

    /// Whether no key of `group` is stored.
    fn holds_nothing_of(&self, group: u64) -> io::Result<bool> {
        for prefix in PREFIXES {
            let mut read = ReadOptions::default();
            read.set_iterate_upper_bound(key(prefix, group + 1, &[]));
            let start = key(prefix, group, &[]);
            if let Some(item) = self.db.iterator_opt(IteratorMode::From(&start, Direction::Forward), read).next() {
                item.map_err(|e| db_error("read", &self.path, e))?;
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        self.db.get(key).map_err(|e| db_error("read", &self.path, e))
    }
}

/// The writes one entry makes, written atomically with the group's mark by [`StoreBatch::commit`].
pub struct StoreBatch<'a> {
    pub(super) store: &'a DelayStore,
    pub(super) group: u64,
    index: u64,
    pub(super) batch: WriteBatch,
    count: u64,
}

impl StoreBatch<'_> {
    /// Adds a pending message.
    pub fn add(&mut self, seq: u64, due_ms: u64, one_record_batch: &[u8]) {
        self.batch.put(key(PENDING, self.group, &[due_ms, seq]), one_record_batch);
        self.batch.put(key(BY_SEQ, self.group, &[seq]), due_ms.to_le_bytes());
        self.count += 1;
    }

    /// Removes released messages `(seq, due_ms)`, looked up in one batched read (a release
    /// holds up to 10,000); returns the numbers of those that were not pending.
    pub fn release_all(&mut self, items: &[(u64, u64)]) -> io::Result<Vec<u64>> {
        let keys = items.iter().map(|(seq, _)| key(BY_SEQ, self.group, &[*seq]));
        let found = self.store.db.multi_get(keys);
        let mut missing = Vec::new();
        for (&(seq, due_ms), due) in items.iter().zip(found) {
            match due.map_err(|e| db_error("read", &self.store.path, e))? {
                Some(v) if le64(&v) == due_ms => self.remove(seq, due_ms),
                _ => missing.push(seq),
            }
        }
        Ok(missing)
    }

    /// Cancels `seq`; `issued` is how many delayed messages the partition has numbered.
    pub fn cancel(&mut self, seq: u64, issued: u64) -> io::Result<CancelOutcome> {
        if let Some(due_ms) = self.store.due_of(self.group, seq)? {
            self.remove(seq, due_ms);
            self.batch.put(key(CANCELLED, self.group, &[seq]), []);
            return Ok(CancelOutcome::Cancelled);
        }
        Ok(if self.store.was_cancelled(self.group, seq)? {
            CancelOutcome::Cancelled
        } else if seq < issued {
            CancelOutcome::AlreadyDelivered
        } else {
            CancelOutcome::Unknown
        })
    }

    fn remove(&mut self, seq: u64, due_ms: u64) {
        self.batch.delete(key(PENDING, self.group, &[due_ms, seq]));
        self.batch.delete(key(BY_SEQ, self.group, &[seq]));
        self.count = self.count.saturating_sub(1);
    }

    /// Writes the entry's changes and moves the group's mark to its index, atomically.
    pub fn commit(mut self) -> io::Result<()> {
        self.batch.put(key(COUNT, self.group, &[]), self.count.to_le_bytes());
        self.batch.put(key(MARK, self.group, &[]), self.index.to_le_bytes());
        self.store.db.write(self.batch).map_err(|e| db_error("write", &self.store.path, e))
    }
}

pub(super) fn key(prefix: u8, group: u64, rest: &[u64]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + 8 * rest.len());
    k.push(prefix);
    k.extend_from_slice(&group.to_be_bytes());
    for v in rest {
        k.extend_from_slice(&v.to_be_bytes());
    }
    k
}

pub(super) fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b.try_into().expect("8 bytes"))
}

fn le64(b: &[u8]) -> u64 {
    b.get(..8).map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

pub(super) fn db_error(op: &str, path: &Path, e: rocksdb::Error) -> io::Error {
    io::Error::other(format!("delay store {op} {}: {e}", path.display()))
}
