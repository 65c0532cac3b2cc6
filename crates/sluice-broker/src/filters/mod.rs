//! Broker-side subscription filters (docs/FILTERS.md): a fetch that carries a tag or SQL
//! expression gets back only the matching messages, and the offset to continue from past the
//! ones it skipped.
//!
//! - [`FilterCache`] compiles each expression once and keeps it while subscriptions use it.
//! - [`Scan`] walks committed batches in offset order: a batch whose tag summary rules out the
//!   tag expression is skipped without decoding a record; a batch whose messages all match is
//!   passed on as stored; otherwise the matching messages are copied into a new batch, sent
//!   with each message's offset (`FetchedBatch.offset_deltas`). Evaluation reads the tag, key
//!   and properties of a record, never its value.
//! - A scan is bounded by bytes returned and by bytes examined, so a filter that matches
//!   nothing cannot keep a fetch busy for long; the consumer continues from `next_offset`.

mod cache;

use std::time::{Duration, Instant};

use sluice_common::filter::Filter;
use sluice_common::record::{
    BatchBuilder, BatchError, Compression, ProducerStamp, RecordBatch, RecordView, peek_header,
};
use sluice_proto::v1::FetchedBatch;
use sluice_raft::partition::{CommittedBatch, Stable, read_committed};
use sluice_storage::{Log, StorageError};

pub use cache::FilterCache;

/// The most batch bytes one filtered fetch examines before it answers, matches or not: about
/// 20 ms of evaluation on this hardware, and a bound on the memory a fetch holds.
pub const MAX_SCAN_BYTES: usize = 32 * 1024 * 1024;

/// What a filter did to the messages one fetch examined.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanStats {
    /// Messages that matched and were returned.
    pub matched: u64,
    /// Messages examined that did not match (evaluation errors included).
    pub skipped: u64,
    /// Messages whose evaluation failed (a type mismatch): they did not match.
    pub errors: u64,
    /// Batches skipped whole by their tag summary.
    pub batches_skipped: u64,
    /// Time spent evaluating.
    pub evaluating: Duration,
}

/// A stored batch that fails its checks while being filtered.
#[derive(Debug, thiserror::Error)]
#[error("the stored batch at offset {base_offset} fails its checks: {source}")]
pub struct CorruptBatch {
    /// Its first offset.
    pub base_offset: u64,
    /// What is wrong.
    #[source]
    pub source: sluice_common::record::BatchError,
}

/// How much a filtered scan reads from the log at a time, filtering as it goes.
const READ_BYTES: usize = 1024 * 1024;

/// Why a filtered scan stopped short.
#[derive(Debug, thiserror::Error)]
pub enum ScanFailure {
    /// Retention trimmed `offset` away while it was being read.
    #[error("offset {offset} was trimmed while it was read")]
    Purged {
        /// Where the read was.
        offset: u64,
    },
    /// The log could not be read.
    #[error("reading from offset {offset}: {source}")]
    Read {
        /// Where the read was.
        offset: u64,
        /// What failed.
        #[source]
        source: StorageError,
    },
    /// A stored batch fails its checks.
    #[error(transparent)]
    Corrupt(#[from] CorruptBatch),
}

/// Reads committed batches from `scan.next_offset` up to `high_watermark` and filters them
/// into `scan`, until it [`Scan::is_done`] or reaches the high watermark. Blocking: file reads
/// and CPU (run it off the async runtime).
pub fn scan_committed(
    log: &Log,
    filter: &Filter,
    scan: &mut Scan,
    high_watermark: u64,
    max_bytes: usize,
) -> Result<(), ScanFailure> {
    while scan.next_offset < high_watermark && !scan.is_done(max_bytes) {
        let offset = scan.next_offset;
        let batches = match read_committed(log, offset, high_watermark, READ_BYTES) {
            Ok(batches) if batches.is_empty() => return Ok(()),
            Ok(batches) => batches,
            Err(StorageError::Purged { .. }) => return Err(ScanFailure::Purged { offset }),
            Err(source) => return Err(ScanFailure::Read { offset, source }),
        };
        scan.add(filter, batches, max_bytes)?;
    }
    Ok(())
}

/// One filtered fetch's progress over the committed batches it reads.
#[derive(Debug)]
pub struct Scan {
    /// The next offset to examine.
    pub next_offset: u64,
    /// What to return.
    pub batches: Vec<FetchedBatch>,
    /// Bytes of `batches`.
    pub returned_bytes: usize,
    /// Bytes of the stored batches examined.
    pub scanned_bytes: usize,
    /// Counts for the filter metrics.
    pub stats: ScanStats,
    /// For a `read_committed` fetch, the aborted ranges whose batches (and the markers) are left
    /// out before filtering.
    pub hidden: Option<Stable>,
}

impl Scan {
    /// A scan starting at `offset`.
    pub fn new(offset: u64) -> Scan {
        Scan {
            next_offset: offset,
            batches: Vec::new(),
            returned_bytes: 0,
            scanned_bytes: 0,
            stats: ScanStats::default(),
            hidden: None,
        }
    }

    /// Whether it has found enough to answer, or looked at as much as one fetch may.
    pub fn is_done(&self, max_bytes: usize) -> bool {
        self.returned_bytes >= max_bytes || self.scanned_bytes >= MAX_SCAN_BYTES
    }

    /// Filters `batches` (in offset order, as `read_committed` returns them from
    /// `next_offset`), stopping early once [`Scan::is_done`].
    pub fn add(&mut self, filter: &Filter, batches: Vec<CommittedBatch>, max_bytes: usize) -> Result<(), CorruptBatch> {
        let started = Instant::now();
        let result = batches.into_iter().try_for_each(|b| {
            if self.is_done(max_bytes) || b.base_offset + u64::from(b.count) <= self.next_offset {
                return Ok(());
            }
            self.batch(filter, b)
        });
        self.stats.evaluating += started.elapsed();
        result
    }

    fn batch(&mut self, filter: &Filter, stored: CommittedBatch) -> Result<(), CorruptBatch> {
        let CommittedBatch { base_offset, count, batch } = stored;
        let corrupt = |source| CorruptBatch { base_offset, source };
        let first = (self.next_offset.saturating_sub(base_offset)) as u32;
        self.scanned_bytes += batch.len();
        self.next_offset = base_offset + u64::from(count);
        let header = peek_header(&batch).map_err(corrupt)?;
        if self.hidden.as_ref().is_some_and(|s| s.hides(&header, base_offset)) {
            return Ok(());
        }
        // The log checked the entry's checksum when it read it: a batch ruled out by its
        // header is skipped without a second pass over its bytes.
        if !filter.batch_may_match(&header) {
            self.stats.skipped += u64::from(count - first);
            self.stats.batches_skipped += 1;
            return Ok(());
        }
        let parsed = RecordBatch::parse(batch).map_err(corrupt)?;
        let mut kept: Vec<(u32, RecordView)> = Vec::new();
        // Keys, tags and properties only: a compressed batch is not decompressed to be judged.
        for (i, record) in parsed.metadata().enumerate().skip(first as usize) {
            let record = record.map_err(corrupt)?;
            match filter.matches(&record) {
                Ok(true) => kept.push((i as u32, record)),
                Ok(false) => self.stats.skipped += 1,
                Err(_) => {
                    self.stats.skipped += 1;
                    self.stats.errors += 1;
                }
            }
        }
        self.stats.matched += kept.len() as u64;
        if kept.is_empty() {
            return Ok(());
        }
        let fetched = if first == 0 && kept.len() == count as usize {
            FetchedBatch { base_offset, batch: parsed.bytes().clone(), offset_deltas: Vec::new() }
        } else {
            with_values(&parsed, &mut kept).map_err(corrupt)?;
            rebuilt(base_offset, &parsed, &kept)
        };
        self.returned_bytes += fetched.batch.len();
        self.batches.push(fetched);
        Ok(())
    }
}

/// Gives the `kept` messages of a compressed batch, judged by their metadata, their values
/// (decompressing the batch once): only a batch a filter keeps part of is decompressed.
fn with_values(parsed: &RecordBatch, kept: &mut [(u32, RecordView)]) -> Result<(), BatchError> {
    if parsed.header().compression == Compression::None {
        return Ok(());
    }
    let mut wanted = kept.iter_mut().peekable();
    for (i, record) in parsed.records().enumerate() {
        let record = record?;
        if let Some((_, view)) = wanted.next_if(|(at, _)| *at as usize == i) {
            *view = record;
        }
    }
    Ok(())
}

/// A batch of the `kept` messages of `parsed`, with their offsets as deltas from `base_offset`.
fn rebuilt(base_offset: u64, parsed: &RecordBatch, kept: &[(u32, RecordView)]) -> FetchedBatch {
    let bytes: usize = kept.iter().map(|(_, r)| r.value.len() + 32).sum();
    let mut builder = BatchBuilder::new(ProducerStamp::NONE, bytes).transactional(parsed.header().transactional);
    kept.iter().for_each(|(_, r)| builder.push_view(r));
    FetchedBatch { base_offset, batch: builder.finish(), offset_deltas: kept.iter().map(|(i, _)| *i).collect() }
}

#[cfg(test)]
mod tests;
