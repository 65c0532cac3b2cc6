//! Back-filling a log below its first entry: how a replica that caught up by snapshot gets the
//! entries retention still keeps between the log start and the snapshot.
//!
//! 1. [`Backfill`] stages entries `prev+1 ..= last` as ordinary segment files (with their
//!    offset and time indexes) in a staging directory `backfill.<n>/` inside the log's
//!    directory, in bounded pieces as they arrive. [`Backfill::finish`] seals every staged
//!    segment (fsynced) and then writes a manifest `| prev index u64 | prev term u64 |
//!    last index u64 | last term u64 |` (a state file): a staging without one is incomplete.
//! 2. [`Log::adopt_backfill`] moves a finished staging into the log once the snapshot covering
//!    `last` is durable: it purges the log up to `last` (so it is empty, as openraft's purge
//!    after installing a snapshot would leave it), hard-links the staged files into the log's
//!    directory, fsyncs the directory and only then lowers the purge point to `prev` (a state
//!    file written atomically): that write is the commit point.
//!
//! A crash before the commit point leaves the linked files below the purge point, and
//! [`Log::open`] deletes them like the rest of an interrupted purge; the staging is still
//! there, so adopting again completes it. A crash after it leaves a log that starts at
//! `prev+1`; adopting again finds the log already holds the range and only removes the staging.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cache::SegmentCache;
use crate::config::LogConfig;
use crate::entry::{Entry, EntryId};
use crate::error::{Result, StorageError};
use crate::log::{Log, PURGED_FILE, encode_entry_id, fitting};
use crate::offsets::push_batch;
use crate::recovery::open_segment;
use crate::segment::{NewSegment, Segment, SegmentPaths, WriteScratch};
use crate::state_file::{read_state_file, sync_dir, write_state_file};

/// Staging directories are `backfill.<n>`: one per snapshot being received, so two transfers
/// of a group (an old leader's and a new one's) never write the same files.
const STAGING_PREFIX: &str = "backfill.";
const MANIFEST: &str = "manifest";
static STAGINGS: AtomicU64 = AtomicU64::new(0);

/// Entries being staged to back-fill a log below its first entry (see the module doc).
pub struct Backfill {
    dir: PathBuf,
    config: LogConfig,
    cache: Arc<SegmentCache>,
    created_ms: i64,
    prev: EntryId,
    next: u64,
    last_term: u64,
    /// The last indexed batch's entry and the offset after it.
    indexed: Option<(u64, u64)>,
    segments: Vec<Segment>,
    scratch: WriteScratch,
    finished: bool,
}

impl Backfill {
    /// Starts staging, for `log`, the entries that follow `prev`.
    pub fn create(log: &Log, prev: EntryId) -> Result<Backfill> {
        let n = STAGINGS.fetch_add(1, Ordering::Relaxed);
        let dir = log.dir().join(format!("{STAGING_PREFIX}{n}"));
        remove_staging(&dir)?;
        fs::create_dir_all(&dir).map_err(StorageError::io("create directory", &dir))?;
        Ok(Backfill {
            dir,
            config: log.config().clone(),
            cache: Arc::clone(&log.cache),
            created_ms: log.clock.now_ms(),
            prev,
            next: prev.index + 1,
            last_term: prev.term,
            indexed: None,
            segments: Vec::new(),
            scratch: WriteScratch::default(),
            finished: false,
        })
    }

    /// Stages `entries`, which must continue the staged ones; segments roll by size as in the log.
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        for (i, e) in entries.iter().enumerate() {
            let want = self.next + i as u64;
            if e.index != want {
                return Err(StorageError::NotContiguous { expected: want, got: e.index });
            }
            if e.payload.len() > self.config.max_entry_bytes as usize {
                let max = self.config.max_entry_bytes;
                return Err(StorageError::EntryTooLarge { index: e.index, len: e.payload.len(), max });
            }
        }
        let (max_segment, interval) = (self.config.max_segment_bytes, self.config.index_interval_bytes);
        let mut rest = entries;
        while let Some(first) = rest.first() {
            let fit = self.segments.last().map_or(0, |seg| {
                let m = seg.meta();
                fitting(rest, m.size, m.next_index - seg.base_index, max_segment)
            });
            if fit == 0 {
                let new = NewSegment {
                    dir: &self.dir,
                    base: first.index,
                    created_ms: self.created_ms,
                    max_segment_bytes: max_segment,
                    interval,
                };
                self.segments.push(Segment::create(&new, &self.cache)?);
                continue;
            }
            self.segments.last().expect("a segment").append(&rest[..fit], &mut self.scratch, interval)?;
            rest = &rest[fit..];
        }
        if let Some(last) = entries.last() {
            self.next = last.index + 1;
            self.last_term = last.term;
        }
        Ok(())
    }

    /// Records that staged entry `entry_index` holds a batch of `count` messages from
    /// `base_offset` (as [`Log::index_batch`] does for the log): batches in order, offsets dense.
    pub fn index_batch(&mut self, entry_index: u64, base_offset: u64, count: u32, max_timestamp_ms: i64) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        if entry_index >= self.next
            || self.indexed.is_some_and(|(entry, next)| entry_index <= entry || base_offset != next)
        {
            return Err(StorageError::OffsetIndex(format!(
                "staged batch in entry {entry_index} at offset {base_offset} does not follow {:?}",
                self.indexed
            )));
        }
        let seg = self.segments.iter().rev().find(|s| s.base_index <= entry_index).expect("entry is staged");
        push_batch(seg, entry_index, base_offset, count, max_timestamp_ms)?;
        self.indexed = Some((entry_index, base_offset + u64::from(count)));
        Ok(())
    }

    /// Checks that the staged entries end at `last`, makes them durable and writes the
    /// manifest: from here on [`Log::adopt_backfill`] can take them, even after a restart.
    pub fn finish(mut self, last: EntryId) -> Result<()> {
        if self.next != last.index + 1 || self.last_term != last.term {
            let (next, term) = (self.next, self.last_term);
            return Err(StorageError::Backfill(format!(
                "staged entries end before {next} in term {term}, not at {last:?}"
            )));
        }
        for seg in &self.segments {
            seg.seal()?;
        }
        sync_dir(&self.dir)?;
        write_state_file(&self.dir, MANIFEST, &encode_manifest(self.prev, last))?;
        self.finished = true;
        Ok(())
    }
}

impl Drop for Backfill {
    /// An unfinished staging (the transfer failed) is of no use to anyone.
    fn drop(&mut self) {
        if !self.finished
            && let Err(e) = remove_staging(&self.dir)
        {
            tracing::warn!(dir = %self.dir.display(), "removing an unfinished back-fill: {e}");
        }
    }
}

impl Log {
    /// Moves the finished staging that ends at `last` into the log (see the module doc) and
    /// removes every staging. Returns whether the log now holds the staged entries. A log that
    /// holds `last` already keeps its entries; one with entries after `last` is left alone.
    pub fn adopt_backfill(&self, last: EntryId) -> Result<bool> {
        let mut chosen = None;
        for dir in staging_dirs(&self.dir)? {
            match read_state_file(&dir, MANIFEST) {
                Ok(Some(raw)) if chosen.is_none() && decode_manifest(&raw).is_some_and(|(_, l)| l == last) => {
                    chosen = decode_manifest(&raw).map(|(prev, _)| (dir, prev));
                }
                _ => remove_staging(&dir)?,
            }
        }
        let Some((staging, prev)) = chosen else { return Ok(false) };
        let adopted = self.adopt_from(&staging, prev, last);
        remove_staging(&staging)?;
        adopted
    }

    /// Removes every staging (a replica with no snapshot to adopt one for).
    pub fn discard_backfills(&self) -> Result<()> {
        staging_dirs(&self.dir)?.iter().try_for_each(|d| remove_staging(d))
    }

    fn adopt_from(&self, staging: &Path, prev: EntryId, last: EntryId) -> Result<bool> {
        if self.first_index() <= last.index && self.term_of(last.index)? == Some(last.term) {
            let holds = self.first_index() <= prev.index + 1;
            if !holds {
                tracing::warn!(dir = %self.dir.display(), ?prev, ?last, "log holds the snapshot's entry but starts after the retained start; not back-filled");
            }
            return Ok(holds);
        }
        if prev.index >= last.index {
            return Ok(false);
        }
        let bases = check_staged(staging, prev, last, &self.config, &self.cache)?;
        // Every entry the log holds lies at or before `last` (it does not hold `last`, and Raft
        // truncated any conflicting tail): it is emptied exactly as openraft's purge would.
        self.purge_to(last)?;
        let _writer = self.writer();
        let _index_guard = self.index_lock.lock().expect("index lock poisoned");
        if !self.shared().segments.is_empty() || self.shared().purged != Some(last) {
            tracing::warn!(dir = %self.dir.display(), ?last, "log moved on while back-filling; not back-filled");
            return Ok(false);
        }
        for &base in &bases {
            let (from, to) = (SegmentPaths::new(staging, base), SegmentPaths::new(&self.dir, base));
            for (src, dst) in from.all().into_iter().zip(to.all()) {
                if let Err(e) = fs::remove_file(dst)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    return Err(StorageError::io("delete", dst)(e));
                }
                fs::hard_link(src, dst).map_err(StorageError::io("link", dst))?;
            }
        }
        sync_dir(&self.dir).map_err(|e| self.fail(e.to_string()))?;
        write_state_file(&self.dir, PURGED_FILE, &encode_entry_id(prev))
            .map_err(|e| self.fail(format!("recording purge point: {e}")))?;
        let mut segments = Vec::with_capacity(bases.len());
        for (i, &base) in bases.iter().enumerate() {
            let rec = open_segment(&self.dir, base, &self.config, false, &self.cache)?;
            let rec = rec.ok_or_else(|| {
                StorageError::corrupt(SegmentPaths::new(&self.dir, base).log, 0, "linked segment has no header")
            })?;
            if i + 1 < bases.len() {
                rec.segment.release(); // sealed, and opened again only when read
            }
            segments.push(Arc::new(rec.segment));
        }
        let mut s = self.shared_mut();
        s.segments = segments;
        s.purged = Some(prev);
        s.last = Some(last);
        tracing::info!(dir = %self.dir.display(), ?prev, ?last, segments = bases.len(), "back-filled the log");
        Ok(true)
    }
}

/// The staged segments' bases, once checked to hold exactly `prev+1 ..= last`.
fn check_staged(
    staging: &Path,
    prev: EntryId,
    last: EntryId,
    config: &LogConfig,
    cache: &Arc<SegmentCache>,
) -> Result<Vec<u64>> {
    let mut bases = Vec::new();
    for item in fs::read_dir(staging).map_err(StorageError::io("list", staging))? {
        let name = item.map_err(StorageError::io("list", staging))?.file_name();
        let base = name.to_str().and_then(|n| n.strip_suffix(".log")).and_then(|stem| stem.parse::<u64>().ok());
        bases.extend(base);
    }
    bases.sort_unstable();
    let mut next = prev.index + 1;
    let mut term = prev.term;
    for &base in &bases {
        let rec = open_segment(staging, base, config, false, cache)?;
        let Some(rec) = rec.filter(|r| !r.cut && r.segment.base_index == next) else {
            return Err(StorageError::Backfill(format!("staged segment {base} does not continue at {next}")));
        };
        let m = rec.segment.meta();
        (next, term) = (m.next_index, m.last_term);
    }
    if next != last.index + 1 || term != last.term {
        return Err(StorageError::Backfill(format!(
            "staged entries end before {next} in term {term}, not at {last:?}"
        )));
    }
    Ok(bases)
}

fn staging_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for item in fs::read_dir(dir).map_err(StorageError::io("list", dir))? {
        let item = item.map_err(StorageError::io("list", dir))?;
        if item.file_name().to_str().is_some_and(|n| n.starts_with(STAGING_PREFIX)) {
            out.push(item.path());
        }
    }
    Ok(out)
}

fn remove_staging(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io("delete", dir)(e)),
    }
}

fn encode_manifest(prev: EntryId, last: EntryId) -> Vec<u8> {
    [encode_entry_id(prev), encode_entry_id(last)].concat()
}

fn decode_manifest(raw: &[u8]) -> Option<(EntryId, EntryId)> {
    let id = |b: &[u8]| {
        let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        EntryId::new(word(0), word(8))
    };
    (raw.len() == 32).then(|| (id(&raw[..16]), id(&raw[16..])))
}

#[cfg(test)]
mod tests;
