//! openraft's log storage over a `sluice_storage::Log` (docs/ARCHITECTURE.md, D1): the
//! partition's Raft log is its segment log, one write per entry per replica.
//!
//! Durability (D3): `append` writes the entries (readable at once) and hands the log to
//! the data directory's shared [`Flusher`]; openraft is told the entries are saved only when the
//! group commit that covers them has fsynced. The vote is fsynced before `save_vote` returns,
//! and only after every earlier append is durable too: openraft treats a completed I/O as
//! proof that all I/O submitted before it completed.
//!
//! Under a relaxed [`FlushPolicy::Interval`] (a topic's `flush_interval_ms`) openraft is told the
//! entries are saved once they are written to the operating system, and the flusher fsyncs them
//! within the interval; so a leader commits what a majority holds in memory. The vote is still
//! fsynced (with the log before it) before `save_vote` returns, and a store closed cleanly
//! fsyncs its log. `docs/DURABILITY.md` says what this can lose.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut};
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use sluice_storage::{EntryId, FlushPolicy, Flusher, Log, read_state_file, write_state_file};
use tokio::sync::watch;

use crate::codec;
use crate::exhaustion::{self, Exhaustion};
use crate::partition::LogStart;
use crate::tail_cache::{self, TailCache};
use crate::typ::{LogId, PartitionConfig, RaftEntry, Vote, log_id};

/// Name of the file, in the log's directory, that holds the vote.
const VOTE_FILE: &str = "vote";
/// One AppendEntries carries at most this many bytes of entries (at least one entry), so a
/// follower far behind is caught up in pieces rather than with one huge message.
pub const MAX_REPLICATION_BYTES: usize = 4 * 1024 * 1024;

/// The log storage of one partition replica.
pub struct PartitionLogStore {
    log: Arc<Log>,
    tail: Arc<Mutex<TailCache>>,
    flusher: Arc<Flusher>,
    /// `Some` under a relaxed policy: appends count as saved once written, fsynced within this.
    relaxed: Option<Duration>,
    /// A partition's log start: entries from it on are never purged (see `retaining`).
    retained: Option<watch::Receiver<LogStart>>,
    /// Notes a write that failed for want of a resource (see `noting_exhaustion`).
    exhaustion: Option<Arc<Exhaustion>>,
}

/// A reader of the same log, for openraft's replication tasks; cheap to clone.
#[derive(Clone)]
pub struct PartitionLogReader {
    log: Arc<Log>,
    tail: Arc<Mutex<TailCache>>,
}

impl PartitionLogStore {
    /// A store over `log`, made durable by `flusher` (shared by every log on the data directory),
    /// that reports an append saved only once fsynced ([`FlushPolicy::EveryAppend`]).
    pub fn new(log: Arc<Log>, flusher: Arc<Flusher>) -> PartitionLogStore {
        PartitionLogStore {
            log,
            tail: tail_cache::registered(),
            flusher,
            relaxed: None,
            retained: None,
            exhaustion: None,
        }
    }

    /// The same store under `policy`: when appends are reported saved to openraft.
    pub fn with_flush_policy(mut self, policy: FlushPolicy) -> PartitionLogStore {
        self.relaxed = policy.interval();
        self
    }

    /// The same store, noting in `flag` a write that fails for want of disk space, files or
    /// memory. openraft stops the group on any storage error; its owner reads the flag to tell
    /// an exhausted resource (the write failed cleanly: the log cut the partial write, and the
    /// replica can restart once the resource is back) from a failure that must stop the
    /// broker. A failed fsync is never noted: it stops the log for good (docs/DURABILITY.md).
    pub fn noting_exhaustion(mut self, flag: Arc<Exhaustion>) -> PartitionLogStore {
        self.exhaustion = Some(flag);
        self
    }

    /// `e`, noted in the exhaustion flag.
    fn note(&self, e: io::Error) -> io::Error {
        exhaustion::note(self.exhaustion.as_deref(), e)
    }

    /// The policy the store reports appends saved by.
    pub fn flush_policy(&self) -> FlushPolicy {
        self.relaxed.map_or(FlushPolicy::EveryAppend, FlushPolicy::Interval)
    }

    /// The underlying log (the partition state machine reads and indexes it).
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }
}

impl RaftLogReader<PartitionConfig> for PartitionLogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<RaftEntry>> {
        let (start, end) = bounds(&range);
        read_entries(&self.log, &self.tail, start, end, usize::MAX)
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        read_vote(&self.log)
    }

    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> io::Result<Vec<RaftEntry>> {
        read_entries(&self.log, &self.tail, start, end, MAX_REPLICATION_BYTES)
    }
}

impl RaftLogStorage<PartitionConfig> for PartitionLogStore {
    type LogReader = PartitionLogReader;

    async fn get_log_state(&mut self) -> io::Result<LogState<PartitionConfig>> {
        let as_log_id = |id: EntryId| log_id(id.term, id.index);
        Ok(LogState {
            last_purged_log_id: self.log.purged_id().map(as_log_id),
            last_log_id: self.log.last_id().map(as_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        PartitionLogReader { log: Arc::clone(&self.log), tail: Arc::clone(&self.tail) }
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        // Appends submitted before this vote must not be reported durable after it (see the
        // module doc), so they are made durable first. Votes change only at elections, but then
        // in many groups at once: the fsyncs run on a blocking thread, never on the runtime's.
        let (log, bytes) = (Arc::clone(&self.log), encode_vote(vote));
        let saved = tokio::task::spawn_blocking(move || -> io::Result<()> {
            log.sync()?;
            write_state_file(log.dir(), VOTE_FILE, &bytes)?;
            Ok(())
        })
        .await
        .map_err(io::Error::other)?;
        saved.map_err(|e| self.note(e))
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<PartitionConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = RaftEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<RaftEntry> = entries.into_iter().collect();
        let batch: Vec<sluice_storage::Entry> = entries.iter().map(codec::encode).collect();
        self.log.append(&batch).map_err(|e| self.note(e.into()))?;
        // Before openraft hears of the append, so a reader it sends for these entries finds them.
        let sized = entries.into_iter().zip(batch.iter().map(|e| e.payload.len())).collect();
        lock(&self.tail).push(sized);
        match self.relaxed {
            None => self
                .flusher
                .request(&self.log, Box::new(move |result| callback.io_completed(result.map_err(io::Error::from)))),
            Some(within) => {
                // In the page cache is enough under this policy; the fsync follows within the
                // interval. Reported only after `sync_within` succeeded, so entries written
                // after the flusher stopped are never claimed saved.
                self.flusher.sync_within(&self.log, within)?;
                callback.io_completed(Ok(()));
            }
        }
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let from = last_log_id.map_or_else(|| self.log.first_index(), |id| id.index + 1);
        // The cache goes first: a reader must never see entries the log no longer holds.
        lock(&self.tail).truncate_from(from);
        self.log.truncate_from(from)?;
        Ok(())
    }

    async fn purge(&mut self, upto: LogId) -> io::Result<()> {
        lock(&self.tail).purge_to(upto.index);
        if let Some(upto) = self.purge_point(upto)? {
            self.log.purge_to(upto)?;
        }
        Ok(())
    }
}

impl PartitionLogStore {
    /// The same store for a partition whose log start `start` publishes: it never purges an
    /// entry retention keeps, since the log is the partition's data. openraft purges a log up to
    /// a snapshot it installed, which would delete the retained entries the snapshot brought.
    pub fn retaining(mut self, start: watch::Receiver<LogStart>) -> PartitionLogStore {
        self.retained = Some(start);
        self
    }

    /// Where to purge for openraft's `upto`: there, unless the log holds `upto` and retention
    /// keeps entries at or below it; then below the first kept entry (`None`: nothing).
    fn purge_point(&self, upto: LogId) -> io::Result<Option<EntryId>> {
        let upto = EntryId::new(upto.index, upto.leader_id.term);
        let Some(start) = &self.retained else { return Ok(Some(upto)) };
        // Nothing trimmed yet: no retained start to keep (an explicit purge goes through).
        let keep_from = start.borrow().trimmed_before;
        if keep_from == 0 {
            return Ok(Some(upto));
        }
        // A log behind `upto` (after a snapshot it lacks entries before) must be emptied to it.
        let holds = self.log.first_index() <= upto.index && self.log.term_of(upto.index)? == Some(upto.term);
        if !holds || keep_from > upto.index {
            return Ok(Some(upto));
        }
        let Some(below) = keep_from.checked_sub(1).filter(|b| *b >= self.log.first_index()) else { return Ok(None) };
        Ok(self.log.term_of(below)?.map(|term| EntryId::new(below, term)))
    }
}

impl Drop for PartitionLogStore {
    /// A relaxed store's unsynced tail is fsynced when it closes (the broker stops or the group is
    /// removed), so a clean stop followed by a power loss loses nothing. openraft drops the store
    /// once, when the group shuts down; the one fsync it may block for is the price of that.
    fn drop(&mut self) {
        if self.relaxed.is_some()
            && let Err(e) = self.log.sync()
        {
            tracing::error!(dir = %self.log.dir().display(), "fsync of a closing partition log: {e}");
        }
    }
}

/// Reads `[start, end)` within `max_bytes` (at least one entry), from the tail cache when it holds
/// `start`, skipping a purged head: openraft may ask for a range that starts below the log's
/// first index.
fn read_entries(
    log: &Log,
    tail: &Mutex<TailCache>,
    start: u64,
    end: u64,
    max_bytes: usize,
) -> io::Result<Vec<RaftEntry>> {
    let start = start.max(log.first_index());
    if start >= end {
        return Ok(Vec::new());
    }
    if let Some(cached) = lock(tail).get(start, end, max_bytes) {
        return Ok(cached);
    }
    log.read(start, end, max_bytes)?.into_iter().map(codec::decode).collect()
}

fn lock(tail: &Mutex<TailCache>) -> std::sync::MutexGuard<'_, TailCache> {
    tail.lock().expect("tail cache lock poisoned")
}

pub(crate) fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s + 1,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

/// `| term u64 | voted_for u64 | committed u8 |`, little-endian.
pub(crate) fn encode_vote(vote: &Vote) -> Vec<u8> {
    let mut b = Vec::with_capacity(17);
    b.put_u64_le(vote.leader_id.term);
    b.put_u64_le(vote.leader_id.voted_for);
    b.put_u8(u8::from(vote.committed));
    b
}

fn read_vote(log: &Log) -> io::Result<Option<Vote>> {
    let Some(raw) = read_state_file(log.dir(), VOTE_FILE)? else { return Ok(None) };
    decode_vote(&raw).map(Some).ok_or_else(|| {
        let why = format!("vote file in {} is malformed ({} bytes)", log.dir().display(), raw.len());
        io::Error::new(io::ErrorKind::InvalidData, why)
    })
}

/// Inverse of [`encode_vote`]; `None` if malformed.
pub(crate) fn decode_vote(raw: &[u8]) -> Option<Vote> {
    if raw.len() != 17 || raw[16] > 1 {
        return None;
    }
    let mut b = raw;
    let (term, voted_for, committed) = (b.get_u64_le(), b.get_u64_le(), b.get_u8() == 1);
    let mut vote = Vote::new(term, voted_for);
    vote.committed = committed;
    Some(vote)
}
