//! The retained entries a partition snapshot carries: every entry from the log start retention
//! left up to the snapshot's last entry. A replica that catches up by snapshot receives them
//! with it and back-fills its log, so that its log starts where the leader's does and it can
//! serve every retained offset (docs/adr/0006-snapshot-catch-up.md).
//!
//! They travel after the snapshot's state, in chunks of whole entries (docs/FORMAT.md):
//!
//! ```text
//! | index u64 | term u64 | base_offset u64 | payload_len u32 | payload |*      little-endian
//! ```
//! `base_offset` is the offset the leader's state machine gave the entry's batch, or
//! `u64::MAX` when the entry holds no batch that was given offsets (a trim, a membership, a
//! duplicate or refused batch). The receiver indexes each batch at that offset, with the count
//! and timestamp from the batch's own header. Neither side holds more than one chunk in memory.

use std::io;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use sluice_common::record::parse_header;
use sluice_storage::{Backfill, Entry, EntryId, Log};

use super::command::produce_batch;
use super::snapshot::PartitionState;

/// `base_offset` of an entry without an indexed batch.
const NOT_INDEXED: u64 = u64::MAX;
/// Bytes of a frame before its payload.
const FRAME_HEADER: usize = 28;

/// The entries a snapshot carries: those after `prev`, up to and including `last` (the
/// snapshot's last entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetainedRange {
    /// The entry before the first one carried: the receiver's new purge point.
    pub prev: EntryId,
    /// The snapshot's last entry.
    pub last: EntryId,
}

/// What a snapshot with partition state `state`, ending at `last`, carries from `log`: the
/// entries from the log start (or the log's first entry, if later) to `last`. `None` when
/// there are none: nothing was trimmed yet, or the entry before them is unknown.
pub fn range_to_send(log: &Log, state: &[u8], last: EntryId) -> io::Result<Option<RetainedRange>> {
    let state = PartitionState::decode(state).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let first = state.trimmed_before.max(log.first_index());
    // Before any trim there is no retained start: a log purged otherwise keeps nothing below it.
    if state.trimmed_before == 0 || first > last.index {
        return Ok(None);
    }
    let prev = log.term_of(first - 1)?.map(|term| EntryId::new(first - 1, term));
    Ok(prev.map(|prev| RetainedRange { prev, last }))
}

/// Reads a range from the sender's log, one chunk at a time.
pub struct RetainedReader {
    log: Arc<Log>,
    next: u64,
    last: u64,
}

impl RetainedReader {
    /// A reader of `range` from `log`.
    pub fn new(log: Arc<Log>, range: RetainedRange) -> RetainedReader {
        RetainedReader { log, next: range.prev.index + 1, last: range.last.index }
    }

    /// The next chunk: entries whose payloads fit in `max_bytes` (at least one), encoded;
    /// `None` after the last. Fails if the log no longer holds them (retention moved on: the
    /// leader then sends a newer snapshot).
    pub fn next_chunk(&mut self, max_bytes: usize) -> io::Result<Option<Bytes>> {
        if self.next > self.last {
            return Ok(None);
        }
        let entries = self.log.read(self.next, self.last + 1, max_bytes)?;
        let Some(end) = entries.last().map(|e| e.index) else {
            return Err(io::Error::other(format!("retained entry {} is no longer in the log", self.next)));
        };
        let mut batches = self.log.batches_between(self.next, end).into_iter().peekable();
        let mut chunk = BytesMut::with_capacity(entries.iter().map(|e| FRAME_HEADER + e.payload.len()).sum());
        for e in &entries {
            let base = batches.next_if(|at| at.entry_index == e.index).map_or(NOT_INDEXED, |at| at.base_offset);
            chunk.put_u64_le(e.index);
            chunk.put_u64_le(e.term);
            chunk.put_u64_le(base);
            chunk.put_u32_le(u32::try_from(e.payload.len()).expect("entries are at most 4 GiB"));
            chunk.put_slice(&e.payload);
        }
        self.next = end + 1;
        Ok(Some(chunk.freeze()))
    }
}

/// Stages a received range in the receiver's log directory until the snapshot is installed
/// ([`Log::adopt_backfill`]).
pub struct RetainedWriter {
    fill: Backfill,
    last: EntryId,
}

impl RetainedWriter {
    /// Starts staging `range` for `log`.
    pub fn new(log: &Log, range: RetainedRange) -> io::Result<RetainedWriter> {
        if range.prev.index >= range.last.index {
            return Err(invalid(format!("an empty retained range {range:?}")));
        }
        Ok(RetainedWriter { fill: Backfill::create(log, range.prev)?, last: range.last })
    }

    /// Stages one chunk; its entries must continue the staged ones.
    pub fn push(&mut self, mut chunk: Bytes) -> io::Result<()> {
        let (mut entries, mut batches) = (Vec::new(), Vec::new());
        while !chunk.is_empty() {
            if chunk.len() < FRAME_HEADER {
                return Err(invalid(format!("a retained entry frame cut at {} bytes", chunk.len())));
            }
            let (index, term, base) = (chunk.get_u64_le(), chunk.get_u64_le(), chunk.get_u64_le());
            let len = chunk.get_u32_le() as usize;
            if chunk.len() < len || index > self.last.index {
                return Err(invalid(format!("retained entry {index} of {len} bytes does not fit the snapshot")));
            }
            let payload = chunk.split_to(len);
            if base != NOT_INDEXED {
                let header = produce_batch(&payload).and_then(|batch| parse_header(&batch).ok());
                let header = header.ok_or_else(|| invalid(format!("retained entry {index} holds no batch")))?;
                batches.push((index, base, header.count, header.max_timestamp_ms));
            }
            entries.push(Entry::new(index, term, payload));
        }
        self.fill.append(&entries)?;
        for (index, base, count, max_timestamp_ms) in batches {
            self.fill.index_batch(index, base, count, max_timestamp_ms)?;
        }
        Ok(())
    }

    /// Checks that every entry arrived and makes the staging durable.
    pub fn finish(self) -> io::Result<()> {
        Ok(self.fill.finish(self.last)?)
    }
}

fn invalid(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}
