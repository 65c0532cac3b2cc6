//! Segment handles against the cache: least recently used out first, a reader's handle
//! outliving eviction and deletion, and a deleted segment never reopened or cached again.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::cache::{FILES_PER_SEGMENT, SegmentCache};
use crate::entry::Entry;
use crate::segment::{NewSegment, WriteScratch};

/// A sealed segment of ten entries at `base`, cold (as recovery leaves it).
fn cold_segment(dir: &Path, base: u64, cache: &Arc<SegmentCache>) -> Segment {
    let new = NewSegment { dir, base, created_ms: 0, max_segment_bytes: 1 << 20, interval: 64 };
    let seg = Segment::create(&new, cache).unwrap();
    let entries: Vec<Entry> = (base..base + 10).map(|i| Entry::new(i, 1, vec![i as u8; 100])).collect();
    seg.append(&entries, &mut WriteScratch::default(), 64).unwrap();
    seg.seal().unwrap();
    seg.release();
    seg
}

fn first_payload_byte(files: &SegmentFiles) -> u8 {
    let mut b = [0u8; 1];
    let (file, _) = files.log.get(|| false).unwrap();
    file.read_exact_at(&mut b, (crate::format::SEGMENT_HEADER_LEN + crate::format::ENTRY_HEADER_LEN) as u64).unwrap();
    b[0]
}

#[test]
fn the_least_recently_used_segment_is_evicted_first() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(SegmentCache::new(2 * FILES_PER_SEGMENT));
    let segs: Vec<Segment> = [1, 11, 21].iter().map(|&b| cold_segment(dir.path(), b, &cache)).collect();
    drop(segs[0].files().unwrap());
    drop(segs[1].files().unwrap());
    drop(segs[0].files().unwrap()); // a hit: segment 0 is now the most recently used
    drop(segs[2].files().unwrap()); // evicts segment 1
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.evictions, stats.open_files), (1, 3, 1, 2 * FILES_PER_SEGMENT));
    drop(segs[0].files().unwrap());
    assert_eq!(cache.stats().hits, 2, "segment 0 stayed cached");
    drop(segs[1].files().unwrap());
    assert_eq!(cache.stats().misses, 4, "segment 1 was the one evicted");
}

#[test]
fn a_readers_handle_outlives_eviction_and_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(SegmentCache::new(FILES_PER_SEGMENT));
    let seg = cold_segment(dir.path(), 5, &cache);
    let held = seg.files().unwrap().expect("open");
    cache.clear();
    assert_eq!(cache.stats().open_files, 0);
    assert!(Arc::ptr_eq(&held, &seg.files().unwrap().unwrap()), "a held handle is shared, not reopened");
    assert_eq!((cache.stats().misses, cache.stats().open_files), (1, FILES_PER_SEGMENT), "and cached again");
    seg.delete().unwrap();
    assert!(!seg.paths.log.exists());
    assert_eq!(cache.stats().open_files, 0, "a deleted segment leaves the cache");
    assert_eq!(first_payload_byte(&held), 5, "the reader still reads the unlinked file");
    assert!(!held.indexes().pos.is_empty());
    assert!(seg.files().unwrap().is_none(), "later reads find the segment gone");
    assert!(seg.pin().is_err());
    assert_eq!(cache.stats().open_files, 0);
}

#[test]
fn a_pinned_segment_is_not_cached_until_unpinned() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(SegmentCache::new(4 * FILES_PER_SEGMENT));
    let seg = cold_segment(dir.path(), 1, &cache);
    seg.pin().unwrap();
    drop(seg.files().unwrap());
    assert_eq!(cache.stats(), crate::cache::CacheStats { max_open_files: 16, ..Default::default() });
    seg.unpin();
    assert_eq!(cache.stats().open_files, FILES_PER_SEGMENT);
    drop(seg);
    assert_eq!(cache.stats().open_files, 0, "a dropped segment leaves the cache");
}
