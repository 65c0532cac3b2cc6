//! Temporary smoke test.
use sluice_storage::*;
#[test]
fn smoke() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        max_segment_bytes: 64 * 1024,
        max_entry_bytes: 16 * 1024,
        index_interval_bytes: 256,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), cfg.clone()).unwrap();
    let entries: Vec<Entry> = (1..=5000u64)
        .map(|i| Entry::new(i, i / 1000 + 1, format!("payload-{i}").repeat((i % 7 + 1) as usize)))
        .collect();
    for chunk in entries.chunks(100) {
        log.append(chunk).unwrap();
    }
    log.sync().unwrap();
    assert!(log.segment_count() > 3, "{}", log.segment_count());
    let all = log.read(1, 5001, usize::MAX).unwrap();
    assert_eq!(all, entries);
    let some = log.read(1234, 1300, 1000).unwrap();
    assert_eq!(some[0], entries[1233]);
    assert!(some.len() < 66);
    for i in (1..=5000).step_by(37) {
        assert_eq!(log.entry(i).unwrap().unwrap(), entries[i as usize - 1]);
        assert_eq!(log.term_of(i).unwrap(), Some(entries[i as usize - 1].term));
    }
    log.truncate_from(4000).unwrap();
    assert_eq!(log.last_id(), Some(EntryId::new(3999, 4)));
    log.append(&[Entry::new(4000, 9, "new")]).unwrap();
    log.purge_to(EntryId::new(2000, 3)).unwrap();
    assert!(log.read(1999, 2001, 100).is_err());
    drop(log);
    let log = Log::open(dir.path(), cfg.clone()).unwrap();
    assert_eq!(log.last_id(), Some(EntryId::new(4000, 9)));
    assert_eq!(log.first_index(), 2001);
    let all = log.read(2001, 5000, usize::MAX).unwrap();
    assert_eq!(all.len(), 2000);
    assert_eq!(&all[..1999], &entries[2000..3999]);
    // offsets
    let mut off = 0;
    for i in 2001..=4000u64 {
        log.index_batch(i, off, 3, i as i64 * 10).unwrap();
        off += 3;
    }
    assert_eq!(log.find_offset(7).unwrap().entry_index, 2003);
    assert_eq!(log.find_timestamp(30_000), Some(3 * 999));
    assert_eq!(log.indexed_end().unwrap().next_offset, 6000);
    drop(log);
    let log = Log::open(dir.path(), cfg).unwrap();
    assert_eq!(log.indexed_end().unwrap().next_offset, 6000);
    assert_eq!(log.find_offset(5999).unwrap().entry_index, 4000);
}
