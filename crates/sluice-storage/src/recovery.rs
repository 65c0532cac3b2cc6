//! Opening segments after a clean stop or a crash.
//!
//! - A **sealed** segment (header flag SEALED, set only after its data and indexes were made
//!   durable) has its position index trusted if the index header matches and covers the file's
//!   exact length; then only the frames after the last index record are checked (to find the
//!   last entry). A missing or stale index is rebuilt by a full scan. A bad frame in a sealed
//!   segment is an error naming the file and byte position: committed data is never cut.
//! - Any other segment — the newest, or an older one rolled past but not yet sealed when the
//!   process stopped — is scanned in full: every frame's length, index and CRC is checked, and
//!   the file is cut at the first bad frame (a torn write). Its position index is rebuilt by the
//!   same scan. Cutting an older segment means every later one holds only entries written after
//!   the cut, none of them durable, so the caller deletes those.
//! - Offset and time indexes are opened as they are, or recreated empty when missing or invalid;
//!   [`crate::log`] then checks them across segments (see `Log::open`).
//! - A segment comes out of here open. The log closes each sealed one once it has checked it, so
//!   opening a log leaves only its active segment (and any awaiting their seal) open.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use crate::cache::SegmentCache;
use crate::config::LogConfig;
use crate::error::{Result, StorageError};
use crate::format::SEGMENT_HEADER_LEN;
use crate::index::{IndexFile, IndexKind, position_record, u32_at};
use crate::segment::{
    INITIAL_INDEX_RECORDS, ScanEnd, Segment, SegmentMeta, SegmentPaths, position_capacity, rel, scan_file,
};
use crate::segment_files::Indexes;

/// Whether a segment's offset and time index files could be opened as they were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecondaryStatus {
    /// Both files opened with valid headers.
    Present,
    /// At least one was missing or unreadable and was recreated empty.
    Recreated(String),
}

/// A segment as recovery left it.
pub(crate) struct Recovered {
    pub segment: Segment,
    pub secondary: SecondaryStatus,
    /// A torn end was cut off: no later segment can hold a durable entry.
    pub cut: bool,
}

/// Opens segment `base`. `Ok(None)` means a segment torn while it was being created (no complete
/// header). Its creation was never followed by a sync (which would have made the header
/// durable), so neither it nor any later segment holds a durable entry; the caller drops them.
pub(crate) fn open_segment(
    dir: &Path,
    base: u64,
    config: &LogConfig,
    tail: bool,
    cache: &Arc<SegmentCache>,
) -> Result<Option<Recovered>> {
    let paths = SegmentPaths::new(dir, base);
    let Some((paths, file, header)) = Segment::open_file(paths.clone(), base)? else {
        tracing::warn!(path = %paths.log.display(), "found a segment torn while being created");
        return Ok(None);
    };
    let size = file.metadata().map_err(StorageError::io("stat", &paths.log))?.len();
    let (pos, end, last_indexed_pos) = if header.sealed && !tail {
        open_sealed(&paths, &file, base, size, config)?
    } else {
        recover_unsealed(&paths, &file, base, size, config)?
    };
    let cut = end.pos < size;
    let (offsets, times, status) = open_secondary(&paths, base)?;
    let meta = SegmentMeta::new(end.pos, end.next_index, end.last_term.unwrap_or(0), last_indexed_pos);
    let indexes = Indexes { pos, offsets, times };
    let segment = Segment::from_parts(paths, file, header, meta, indexes, cache)?;
    Ok(Some(Recovered { segment, secondary: status, cut }))
}

/// Scans a whole segment that is not known to be sealed, cuts a torn end, and rebuilds its
/// position index.
fn recover_unsealed(
    paths: &SegmentPaths,
    file: &File,
    base: u64,
    size: u64,
    config: &LogConfig,
) -> Result<(IndexFile, ScanEnd, u64)> {
    // Room for the records this segment's bytes can need (the index grows if it is written on).
    let capacity = position_capacity(size.min(config.max_segment_bytes), config.index_interval_bytes);
    let (mut pos, end, last_indexed) = rebuild_position_index(paths, file, base, size, config, capacity)?;
    if let Some((at, reason)) = &end.error {
        tracing::warn!(
            path = %paths.log.display(),
            position = at,
            dropped_bytes = size - at,
            "cutting the torn end of a segment that was not sealed: {reason}"
        );
        file.set_len(*at).map_err(StorageError::io("truncate", &paths.log))?;
        file.sync_data().map_err(StorageError::io("fdatasync", &paths.log))?;
    }
    pos.set_covered(end.pos);
    Ok((pos, end, last_indexed))
}

/// Opens a sealed segment, trusting its position index when it is intact.
fn open_sealed(
    paths: &SegmentPaths,
    file: &File,
    base: u64,
    size: u64,
    config: &LogConfig,
) -> Result<(IndexFile, ScanEnd, u64)> {
    let max = config.max_entry_bytes;
    let trusted = match IndexFile::open(&paths.index, IndexKind::Position, base) {
        Ok(Some(index)) if index.covered() == size && !index.is_empty() => match check_position_records(&index, size) {
            Ok(()) => Some(index),
            Err(reason) => {
                tracing::warn!(path = %paths.index.display(), "position index is invalid ({reason}); rebuilding");
                None
            }
        },
        Ok(Some(_)) => {
            tracing::info!(path = %paths.index.display(), "position index is stale; rebuilding");
            None
        }
        Ok(None) => {
            tracing::info!(path = %paths.index.display(), "position index is missing; rebuilding");
            None
        }
        Err(reason) => {
            tracing::warn!(path = %paths.index.display(), "position index is invalid ({reason}); rebuilding");
            None
        }
    };
    let (index, end, last_indexed) = match trusted {
        Some(index) => {
            let last = index.record(index.len() - 1);
            let (last_rel, last_pos) = (u64::from(u32_at(last, 0)), u64::from(u32_at(last, 4)));
            let end = scan_file(file, &paths.log, last_pos, base + last_rel, size, max, |_, _| Ok(()))?;
            (index, end, last_pos)
        }
        None => {
            let (mut index, end, last_indexed) = rebuild_position_index(paths, file, base, size, config, 1)?;
            index.set_covered(end.pos);
            index.seal()?;
            (index, end, last_indexed)
        }
    };
    if let Some((at, reason)) = end.error {
        return Err(StorageError::corrupt(&paths.log, at, format!("{reason} inside a sealed segment")));
    }
    if end.next_index == base {
        return Err(StorageError::corrupt(&paths.log, SEGMENT_HEADER_LEN as u64, "sealed segment holds no entries"));
    }
    Ok((index, end, last_indexed))
}

/// Checks a position index's records against the rules the writer follows: the first entry at
/// the first byte after the header, entries and positions strictly rising, positions inside the
/// segment. Cheap (one pass over at most `size / interval` records) and catches a garbled file
/// whose header survived.
fn check_position_records(index: &IndexFile, size: u64) -> Result<(), String> {
    let mut prev: Option<(u32, u32)> = None;
    for i in 0..index.len() {
        let r = index.record(i);
        let (rel, pos) = (u32_at(r, 0), u32_at(r, 4));
        let ok = match prev {
            None => rel == 0 && u64::from(pos) == SEGMENT_HEADER_LEN as u64,
            Some((prel, ppos)) => rel > prel && pos > ppos && u64::from(pos) < size,
        };
        if !ok {
            return Err(format!("record {i} ({rel}, {pos}) breaks the index rules"));
        }
        prev = Some((rel, pos));
    }
    Ok(())
}

/// Scans a segment from its header and writes a fresh position index with the same sparseness
/// rule as the append path. Returns the index, how the scan ended, and the last record's position.
fn rebuild_position_index(
    paths: &SegmentPaths,
    file: &File,
    base: u64,
    size: u64,
    config: &LogConfig,
    capacity: usize,
) -> Result<(IndexFile, ScanEnd, u64)> {
    let mut index = IndexFile::create(&paths.index, IndexKind::Position, base, capacity)?;
    let interval = u64::from(config.index_interval_bytes);
    let mut last_indexed = 0u64;
    let end = scan_file(file, &paths.log, SEGMENT_HEADER_LEN as u64, base, size, config.max_entry_bytes, |h, pos| {
        if h.index == base || pos - last_indexed >= interval {
            index.push(&position_record(rel(base, h.index), u32::try_from(pos).expect("positions are 32-bit")))?;
            last_indexed = pos;
        }
        Ok(())
    })?;
    Ok((index, end, last_indexed))
}

/// Opens the offset and time indexes, recreating them empty when missing or invalid.
fn open_secondary(paths: &SegmentPaths, base: u64) -> Result<(IndexFile, IndexFile, SecondaryStatus)> {
    let offsets = IndexFile::open(&paths.offsets, IndexKind::Offset, base);
    let times = IndexFile::open(&paths.times, IndexKind::Time, base);
    match (offsets, times) {
        (Ok(Some(o)), Ok(Some(t))) => Ok((o, t, SecondaryStatus::Present)),
        (o, t) => {
            let why = match (o, t) {
                (Err(e), _) | (_, Err(e)) => e,
                _ => "missing".to_string(),
            };
            let offsets = IndexFile::create(&paths.offsets, IndexKind::Offset, base, INITIAL_INDEX_RECORDS)?;
            let times = IndexFile::create(&paths.times, IndexKind::Time, base, INITIAL_INDEX_RECORDS)?;
            Ok((offsets, times, SecondaryStatus::Recreated(why)))
        }
    }
}
