//! Opening segments after a clean stop or a crash.
//!
//! - The **tail** (newest) segment is scanned in full: every frame's length, index and CRC is
//!   checked, and the file is cut at the first bad frame (a torn write). Its position index is
//!   rebuilt by the same scan.
//! - A **sealed** segment was fsynced with its indexes when it was rolled, so its position index
//!   is trusted if its header matches and covers the file's exact length; then only the frames
//!   after the last index record are checked (to find the last entry). A missing or stale index
//!   is rebuilt by a full scan. A bad frame in a sealed segment is an error naming the file and
//!   byte position: committed data is never silently cut.
//! - Offset and time indexes are opened as they are, or recreated empty when missing or invalid;
//!   [`crate::log`] then checks them across segments (see `Log::open`).

use std::fs::File;
use std::path::Path;

use crate::config::LogConfig;
use crate::error::{Result, StorageError};
use crate::format::SEGMENT_HEADER_LEN;
use crate::index::{IndexFile, IndexKind, position_record, u32_at};
use crate::segment::{ScanEnd, Segment, SegmentMeta, SegmentPaths, position_capacity, rel, scan_file};

/// Whether a segment's offset and time index files could be opened as they were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecondaryStatus {
    /// Both files opened with valid headers.
    Present,
    /// At least one was missing or unreadable and was recreated empty.
    Recreated(String),
}

/// Opens segment `base`. `Ok(None)` means a tail segment torn while it was being created (no
/// complete header, so it cannot hold data); its files have been removed.
pub(crate) fn open_segment(
    dir: &Path,
    base: u64,
    config: &LogConfig,
    tail: bool,
) -> Result<Option<(Segment, SecondaryStatus)>> {
    let paths = SegmentPaths::new(dir, base);
    let Some((paths, file, header)) = Segment::open_file(paths.clone(), base)? else {
        if !tail {
            return Err(StorageError::corrupt(&paths.log, 0, "sealed segment has no complete header"));
        }
        tracing::warn!(path = %paths.log.display(), "removing a segment torn while being created");
        Segment::delete_files(&paths)?;
        return Ok(None);
    };
    let size = file.metadata().map_err(StorageError::io("stat", &paths.log))?.len();
    let (pos, end, last_indexed_pos) = if tail {
        recover_tail(&paths, &file, base, size, config)?
    } else {
        open_sealed(&paths, &file, base, size, config)?
    };
    let (offsets, times, status) = open_secondary(&paths, base)?;
    let meta = SegmentMeta {
        size: end.pos,
        next_index: end.next_index,
        last_term: end.last_term.unwrap_or(0),
        pos,
        last_indexed_pos,
        offsets,
        times,
    };
    Ok(Some((Segment::from_parts(paths, file, header, meta), status)))
}

/// Scans the whole tail segment, cuts a torn tail, and rebuilds its position index.
fn recover_tail(
    paths: &SegmentPaths,
    file: &File,
    base: u64,
    size: u64,
    config: &LogConfig,
) -> Result<(IndexFile, ScanEnd, u64)> {
    let capacity = position_capacity(config.max_segment_bytes, config.index_interval_bytes);
    let (mut pos, end, last_indexed) = rebuild_position_index(paths, file, base, size, config, capacity)?;
    if let Some((at, reason)) = &end.error {
        tracing::warn!(
            path = %paths.log.display(),
            position = at,
            dropped_bytes = size - at,
            "cutting torn tail of the newest segment: {reason}"
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
        Ok(Some(index)) if index.covered() == size && !index.is_empty() => Some(index),
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
            let offsets = IndexFile::create(&paths.offsets, IndexKind::Offset, base, 4096)?;
            let times = IndexFile::create(&paths.times, IndexKind::Time, base, 1024)?;
            Ok((offsets, times, SecondaryStatus::Recreated(why)))
        }
    }
}
