//! Round trips, every-byte truncation and corruption, and a no-panic property over the codec.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

fn sample() -> Vec<Record> {
    vec![
        Record::new("plain", 1_700_000_000_000),
        Record {
            key: Some(Bytes::from_static(b"order-42")),
            value: Bytes::from(vec![7u8; 300]),
            tag: Some("TagA".into()),
            properties: vec![("trace".into(), "abc".into()), ("ü".into(), "".into())],
            timestamp_ms: 1_699_999_999_000,
        },
        Record { key: Some(Bytes::new()), value: Bytes::new(), timestamp_ms: 1_700_000_000_500, ..Record::default() },
    ]
}

fn build(records: &[Record], producer: ProducerStamp) -> Bytes {
    let mut b = BatchBuilder::new(producer, 256);
    for r in records {
        b.push(r);
    }
    b.finish()
}

#[test]
fn batch_round_trips_every_field() {
    let producer = ProducerStamp { producer_id: 9, epoch: 2, base_sequence: 40 };
    let records = sample();
    let bytes = build(&records, producer);
    let expected_len = BATCH_HEADER_LEN + records.iter().map(|r| r.encoded_len(records[0].timestamp_ms)).sum::<usize>();
    assert_eq!(bytes.len(), expected_len);
    let batch = RecordBatch::parse(bytes).unwrap();
    let h = batch.header();
    assert_eq!((h.count, h.producer, h.transactional, h.control), (3, producer, false, false));
    assert_eq!((h.first_timestamp_ms, h.max_timestamp_ms), (1_700_000_000_000, 1_700_000_000_500));
    let decoded: Vec<Record> = batch.records().map(|r| r.unwrap().to_record()).collect();
    assert_eq!(decoded, records);
    let second = batch.records().nth(1).unwrap().unwrap();
    assert_eq!(second.tag(), Some("TagA"));
    assert_eq!(second.properties().collect::<Vec<_>>(), vec![("trace", "abc"), ("ü", "")]);
}

#[test]
fn empty_and_transactional_batches_parse() {
    let empty = RecordBatch::parse(BatchBuilder::new(ProducerStamp::NONE, 0).finish()).unwrap();
    assert_eq!(empty.header().count, 0);
    assert_eq!(empty.records().count(), 0);
    let mut b = BatchBuilder::new(ProducerStamp::NONE, 0).transactional(true);
    b.push(&Record::new("x", 5));
    assert!(RecordBatch::parse(b.finish()).unwrap().header().transactional);
}

#[test]
fn every_truncation_and_every_bit_flip_is_rejected() {
    let bytes = build(&sample(), ProducerStamp::NONE);
    for cut in 0..bytes.len() {
        assert!(RecordBatch::parse(bytes.slice(..cut)).is_err(), "cut at {cut} accepted");
    }
    for i in 0..bytes.len() {
        let mut bad = bytes.to_vec();
        bad[i] ^= 0x10;
        assert!(RecordBatch::parse(Bytes::from(bad)).is_err(), "flip at byte {i} accepted");
    }
}

#[test]
fn unknown_format_and_codec_say_so() {
    let mut raw = build(&sample(), ProducerStamp::NONE).to_vec();
    raw[5] = 6; // a compression codec no version defines
    let crc = crc32fast::hash(&raw[4..]);
    raw[..4].copy_from_slice(&crc.to_le_bytes());
    let err = RecordBatch::parse(Bytes::from(raw.clone())).unwrap_err();
    assert_eq!(err, BatchError::Compression(6));
    assert!(err.to_string().contains("compression codec 6"));
    raw[4] = 9;
    raw[5] = 0;
    let crc = crc32fast::hash(&raw[4..]);
    raw[..4].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(RecordBatch::parse(Bytes::from(raw)).unwrap_err(), BatchError::Magic(9));
}

/// `raw` with its checksum recomputed, parsed: what a field check answers, not the CRC.
fn reparse(mut raw: Vec<u8>) -> Result<RecordBatch, BatchError> {
    let crc = crc32fast::hash(&raw[4..]);
    raw[..4].copy_from_slice(&crc.to_le_bytes());
    RecordBatch::parse(Bytes::from(raw))
}

/// All of `batch`'s records, or the first error the iterator yields.
fn decode_all(batch: &RecordBatch) -> Result<Vec<RecordView>, BatchError> {
    batch.records().collect()
}

#[test]
fn a_nonzero_reserved_field_or_reserved_attribute_bit_is_refused() {
    let good = build(&sample(), ProducerStamp::NONE).to_vec();
    let mut raw = good.clone();
    raw[6] = 1;
    let err = reparse(raw).unwrap_err();
    assert_eq!(err, BatchError::Reserved(1));
    assert!(err.to_string().contains("reserved field (bytes 6-7) is 0x0001; it must be 0"), "{err}");
    let mut raw = good.clone();
    raw[7] = 0x80;
    assert_eq!(reparse(raw).unwrap_err(), BatchError::Reserved(0x8000));
    for bit in [0x40u8, 0x80] {
        let mut raw = good.clone();
        raw[5] = bit | 0x08;
        let err = reparse(raw).unwrap_err();
        assert_eq!(err, BatchError::Attributes(bit | 0x08));
        assert!(err.to_string().contains("reserved bits 6-7"), "{err}");
    }
    assert!(reparse(good).is_ok(), "the same batch with the fields at 0 parses");
}

#[test]
fn first_ts_ms_must_be_the_first_records_timestamp() {
    // Record 0's timestamp is first_ts_ms + its ts_delta, so the rule is: that delta is 0.
    for (delta, zigzagged) in [(-3i64, 5u8), (1, 2)] {
        assert_eq!(varint::zigzag(delta), u64::from(zigzagged));
        let mut raw = build(&sample(), ProducerStamp::NONE).to_vec();
        // Record 0's ts_delta: right after the header and its one-byte body_len.
        let at = BATCH_HEADER_LEN + 1;
        assert_eq!(raw[at], 0);
        raw[at] = zigzagged;
        let err = decode_all(&reparse(raw).unwrap()).unwrap_err();
        let header = 1_700_000_000_000;
        assert_eq!(err, BatchError::FirstTimestamp { header, record: header + delta });
        assert!(err.to_string().contains("first_ts_ms must be the first record's timestamp"), "{err}");
    }
}

#[test]
fn max_ts_ms_must_be_exactly_the_newest_timestamp() {
    let good = build(&sample(), ProducerStamp::NONE).to_vec();
    let newest = 1_700_000_000_500i64;
    for wrong in [newest - 1, newest + 1, 1_700_000_000_000, i64::MAX] {
        let mut raw = good.clone();
        raw[34..42].copy_from_slice(&wrong.to_le_bytes());
        let batch = reparse(raw).unwrap();
        let err = decode_all(&batch).unwrap_err();
        assert_eq!(err, BatchError::MaxTimestamp { header: wrong, newest }, "max_ts_ms {wrong}");
        assert!(err.to_string().contains("must be the largest record timestamp"), "{err}");
        let records = batch.records().filter(Result::is_ok).count();
        assert_eq!(records, 3, "every record decodes; the end check fails");
    }
    // An empty batch has no newest record: its max_ts_ms is its first_ts_ms.
    let mut empty = BatchBuilder::new(ProducerStamp::NONE, 0).finish().to_vec();
    empty[34..42].copy_from_slice(&7i64.to_le_bytes());
    assert_eq!(decode_all(&reparse(empty).unwrap()).unwrap_err(), BatchError::MaxTimestamp { header: 7, newest: 0 });
}

#[test]
fn a_wrong_record_count_is_reported_after_the_last_record() {
    let mut raw = build(&sample(), ProducerStamp::NONE).to_vec();
    raw[8..12].copy_from_slice(&5u32.to_le_bytes());
    let crc = crc32fast::hash(&raw[4..]);
    raw[..4].copy_from_slice(&crc.to_le_bytes());
    let batch = RecordBatch::parse(Bytes::from(raw)).unwrap();
    let results: Vec<_> = batch.records().collect();
    assert_eq!(results.len(), 4);
    assert_eq!(results[3], Err(BatchError::Count { header: 5, found: 3 }));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary records section bytes under a valid header and checksum: decoding may fail,
    /// but never panics and never reads past the batch.
    #[test]
    fn garbage_records_never_panic(section in proptest::collection::vec(any::<u8>(), 0..200), count in 0u32..8) {
        let mut raw = build(&[], ProducerStamp::NONE).to_vec();
        raw.extend_from_slice(&section);
        raw[8..12].copy_from_slice(&count.to_le_bytes());
        raw[42..46].copy_from_slice(&(section.len() as u32).to_le_bytes());
        let crc = crc32fast::hash(&raw[4..]);
        raw[..4].copy_from_slice(&crc.to_le_bytes());
        let batch = RecordBatch::parse(Bytes::from(raw)).unwrap();
        for view in batch.records().take(1000).flatten() {
            let _ = view.to_record();
        }
    }

    /// Any records round-trip.
    #[test]
    fn arbitrary_records_round_trip(
        values in proptest::collection::vec((proptest::option::of(".{0,8}"), ".{0,40}", proptest::option::of("[a-zA-Z]{1,6}"), -5_000i64..5_000), 0..20)
    ) {
        let records: Vec<Record> = values.into_iter().map(|(k, v, t, ts)| Record {
            key: k.map(Bytes::from),
            value: Bytes::from(v),
            tag: t,
            properties: vec![("k".into(), "v".into())],
            timestamp_ms: 1_700_000_000_000 + ts,
        }).collect();
        let batch = RecordBatch::parse(build(&records, ProducerStamp::NONE)).unwrap();
        let decoded: Vec<Record> = batch.records().map(|r| r.unwrap().to_record()).collect();
        prop_assert_eq!(decoded, records);
    }
}
