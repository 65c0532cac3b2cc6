//! The filtered scan over committed batches: what is skipped, passed on as stored, or rebuilt.

use bytes::Bytes;
use sluice_common::filter::Filter;
use sluice_common::record::{BatchBuilder, ProducerStamp, Record, RecordBatch};
use sluice_raft::partition::CommittedBatch;

use super::*;

fn record(tag: Option<&str>, price: i64) -> Record {
    Record {
        tag: tag.map(str::to_owned),
        properties: vec![("price".into(), price.to_string())],
        ..Record::new(format!("value-{price}"), 1_700_000_000_000 + price)
    }
}

fn stored(base_offset: u64, records: &[Record]) -> CommittedBatch {
    let mut b = BatchBuilder::new(ProducerStamp::NONE, 256);
    records.iter().for_each(|r| b.push(r));
    CommittedBatch { base_offset, count: records.len() as u32, batch: b.finish() }
}

fn filter(tags: &str, sql: &str) -> Filter {
    Filter::compile(tags, sql).unwrap().unwrap()
}

/// (offset, price) of every message the scan returned.
fn returned(scan: &Scan) -> Vec<(u64, i64)> {
    let mut out = Vec::new();
    for b in &scan.batches {
        let parsed = RecordBatch::parse(b.batch.clone()).unwrap();
        for (i, r) in parsed.records().enumerate() {
            let offset = b.base_offset + b.offset_deltas.get(i).map_or(i as u64, |d| u64::from(*d));
            let price = r.unwrap().properties().next().unwrap().1.parse().unwrap();
            out.push((offset, price));
        }
    }
    out
}

#[test]
fn a_batch_without_the_tags_is_skipped_whole_and_a_fully_matching_one_is_passed_on_as_stored() {
    let other = stored(0, &[record(Some("Other"), 1), record(None, 2)]);
    let all_a = stored(2, &[record(Some("TagA"), 3), record(Some("TagA"), 4)]);
    let kept_bytes = all_a.batch.clone();
    let mut scan = Scan::new(0);
    scan.add(&filter("TagA", ""), vec![other, all_a], 1 << 20).unwrap();
    assert_eq!(returned(&scan), [(2, 3), (3, 4)]);
    assert_eq!(scan.batches[0].batch, kept_bytes, "the stored bytes, not a copy");
    assert!(scan.batches[0].offset_deltas.is_empty());
    assert_eq!(scan.next_offset, 4);
    assert_eq!((scan.stats.matched, scan.stats.skipped, scan.stats.batches_skipped), (2, 2, 1));
}

#[test]
fn a_partly_matching_batch_is_rebuilt_with_each_messages_offset() {
    let b =
        stored(10, &[record(Some("TagA"), 1), record(Some("TagB"), 200), record(Some("TagA"), 300), record(None, 400)]);
    let mut scan = Scan::new(10);
    scan.add(&filter("TagA || TagB", "price > 100"), vec![b], 1 << 20).unwrap();
    assert_eq!(returned(&scan), [(11, 200), (12, 300)]);
    assert_eq!(scan.batches[0].offset_deltas, [1, 2]);
    let rebuilt = RecordBatch::parse(scan.batches[0].batch.clone()).unwrap();
    let values: Vec<Bytes> = rebuilt.records().map(|r| r.unwrap().value).collect();
    assert_eq!(values, [Bytes::from("value-200"), Bytes::from("value-300")], "values travel untouched");
    assert_eq!(rebuilt.header().max_timestamp_ms, 1_700_000_000_300);
    assert_eq!(scan.next_offset, 14);
}

#[test]
fn messages_below_the_offset_asked_for_are_not_examined() {
    let b = stored(0, &[record(Some("TagA"), 1), record(Some("TagA"), 2), record(Some("TagA"), 3)]);
    let mut scan = Scan::new(1);
    scan.add(&filter("TagA", ""), vec![b], 1 << 20).unwrap();
    assert_eq!(returned(&scan), [(1, 2), (2, 3)]);
    assert_eq!(scan.batches[0].offset_deltas, [1, 2], "a batch that starts before the offset is rebuilt");
    assert_eq!((scan.stats.matched, scan.stats.skipped), (2, 0));
}

#[test]
fn evaluation_errors_are_counted_and_do_not_match() {
    let mut bad = record(None, 5);
    bad.properties = vec![("price".into(), "cheap".into())];
    let b = stored(0, &[bad, record(None, 500)]);
    let mut scan = Scan::new(0);
    scan.add(&filter("", "price > 100"), vec![b], 1 << 20).unwrap();
    assert_eq!(returned(&scan), [(1, 500)]);
    assert_eq!((scan.stats.matched, scan.stats.skipped, scan.stats.errors), (1, 1, 1));
}

#[test]
fn a_scan_stops_adding_once_it_has_max_bytes() {
    let batches: Vec<CommittedBatch> = (0..10).map(|i| stored(i, &[record(Some("TagA"), i as i64)])).collect();
    let one = batches[0].batch.len();
    let mut scan = Scan::new(0);
    scan.add(&filter("TagA", ""), batches, 3 * one).unwrap();
    assert_eq!(scan.batches.len(), 3);
    assert_eq!(scan.next_offset, 3, "the next fetch continues after the last batch examined");
    assert!(scan.is_done(3 * one));
}

fn stored_compressed(base_offset: u64, records: &[Record]) -> CommittedBatch {
    let mut b = BatchBuilder::new(ProducerStamp::NONE, 256).compression(Compression::Zstd, 3);
    records.iter().for_each(|r| b.push(r));
    CommittedBatch { base_offset, count: records.len() as u32, batch: b.finish() }
}

#[test]
fn compressed_batches_are_judged_by_their_metadata_and_kept_whole_or_rebuilt_with_their_values() {
    let whole = stored_compressed(0, &[record(Some("TagA"), 150), record(Some("TagA"), 160)]);
    let stored_bytes = whole.batch.clone();
    let part = stored_compressed(2, &[record(Some("TagA"), 1), record(Some("TagA"), 200), record(None, 300)]);
    let none = stored_compressed(5, &[record(Some("TagA"), 2)]);
    let mut scan = Scan::new(0);
    scan.add(&filter("TagA", "price > 100"), vec![whole, part, none], 1 << 20).unwrap();
    assert_eq!(returned(&scan), [(0, 150), (1, 160), (3, 200)]);
    assert_eq!(scan.batches[0].batch, stored_bytes, "a wholly matching compressed batch is served as stored");
    let rebuilt = RecordBatch::parse(scan.batches[1].batch.clone()).unwrap();
    assert_eq!(rebuilt.header().compression, Compression::None, "a partly matching one is rebuilt plain");
    let values: Vec<Bytes> = rebuilt.records().map(|r| r.unwrap().value).collect();
    assert_eq!(values, [Bytes::from("value-200")], "with its values decompressed");
    assert_eq!((scan.stats.matched, scan.stats.skipped), (3, 3));
}
