//! Compressed batches: round trips per codec, metadata without decompression, and refusals of
//! damaged or inflated sections.

use bytes::{BufMut, Bytes, BytesMut};

use super::*;

fn records() -> Vec<Record> {
    (0..200)
        .map(|i| Record {
            key: (i % 3 == 0).then(|| Bytes::from(format!("key-{i}"))),
            value: Bytes::from(format!("{{\"n\":{i},\"payload\":\"{}\"}}", "abc".repeat(i % 40))),
            tag: (i % 2 == 0).then(|| format!("Tag{}", i % 5)),
            properties: vec![("n".into(), i.to_string())],
            timestamp_ms: 1_700_000_000_000 + i as i64 % 17,
        })
        .collect()
}

fn build(codec: Compression, records: &[Record]) -> Bytes {
    let mut b = BatchBuilder::new(ProducerStamp::NONE, 256).compression(codec, DEFAULT_ZSTD_LEVEL);
    records.iter().for_each(|r| b.push(r));
    b.finish()
}

#[test]
fn every_codec_round_trips_a_batch_and_its_header_names_the_codec() {
    let input = records();
    let plain = build(Compression::None, &input);
    for codec in Compression::ALL {
        let bytes = build(codec, &input);
        let batch = RecordBatch::parse(bytes.clone()).unwrap_or_else(|e| panic!("{codec}: {e}"));
        assert_eq!(batch.header().compression, codec);
        assert_eq!(batch.header().tag_summary, RecordBatch::parse(plain.clone()).unwrap().header().tag_summary);
        let got: Vec<Record> =
            batch.records().map(|r| r.unwrap_or_else(|e| panic!("{codec}: {e}")).to_record()).collect();
        assert_eq!(got, input, "{codec}");
        if codec != Compression::None {
            assert!(bytes.len() * 2 < plain.len(), "{codec}: {} bytes against {}", bytes.len(), plain.len());
            let values: usize = input.iter().map(|r| r.value.len()).sum();
            assert!(batch.expanded_len().unwrap() > values + BATCH_HEADER_LEN, "{codec}: expanded length");
        }
    }
}

#[test]
fn metadata_reads_keys_tags_and_properties_without_the_values() {
    let input = records();
    for codec in Compression::ALL.into_iter().skip(1) {
        let batch = RecordBatch::parse(build(codec, &input)).unwrap();
        let meta: Vec<RecordView> = batch.metadata().map(|r| r.unwrap_or_else(|e| panic!("{codec}: {e}"))).collect();
        assert_eq!(meta.len(), input.len());
        for (m, r) in meta.iter().zip(&input) {
            assert_eq!((m.key.as_ref(), m.tag(), m.timestamp_ms), (r.key.as_ref(), r.tag.as_deref(), r.timestamp_ms));
            assert_eq!(m.properties().map(|(k, v)| (k.to_owned(), v.to_owned())).collect::<Vec<_>>(), r.properties);
            assert!(m.value.is_empty(), "{codec}: values are not read");
        }
    }
}

/// `bytes` with its records section replaced by `section` and the checksum and length fixed.
fn with_section(bytes: &Bytes, section: &[u8]) -> Bytes {
    let mut b = BytesMut::from(&bytes[..BATCH_HEADER_LEN]);
    b[42..46].copy_from_slice(&(section.len() as u32).to_le_bytes());
    b.put_slice(section);
    let crc = crc32fast::hash(&b[4..]);
    b[..4].copy_from_slice(&crc.to_le_bytes());
    b.freeze()
}

#[test]
fn damaged_truncated_or_inflated_sections_are_refused_with_a_reason() {
    let input = records();
    for codec in Compression::ALL.into_iter().skip(1) {
        let good = build(codec, &input);
        let section = &good[BATCH_HEADER_LEN..];
        let meta_len = u32::from_le_bytes(section[..4].try_into().unwrap()) as usize;
        let values_at = 8 + meta_len;

        let mut damaged = section.to_vec();
        for b in damaged[values_at + 4..].iter_mut().step_by(5) {
            *b ^= 0xa5;
        }
        let truncated = &section[..values_at + (section.len() - values_at) / 2];
        let mut inflated = section.to_vec();
        inflated[4..8].copy_from_slice(&(512u32 << 20).to_le_bytes());
        let mut overstated = section.to_vec();
        let stated = u32::from_le_bytes(section[4..8].try_into().unwrap());
        overstated[4..8].copy_from_slice(&(stated + 1).to_le_bytes());
        let mut short_meta = section.to_vec();
        short_meta[..4].copy_from_slice(&(section.len() as u32).to_le_bytes());

        for (what, section) in [
            ("damaged", &damaged[..]),
            ("truncated", truncated),
            ("inflated", &inflated[..]),
            ("overstated", &overstated[..]),
            ("meta past the end", &short_meta[..]),
        ] {
            let batch = RecordBatch::parse(with_section(&good, section)).expect("the checksum is fixed");
            let outcome: Result<Vec<RecordView>, BatchError> = batch.records().collect();
            match outcome {
                Err(e) => assert!(!e.to_string().is_empty(), "{codec} {what}"),
                Ok(records) => {
                    let values: Vec<Bytes> = records.into_iter().map(|r| r.value).collect();
                    let expected: Vec<Bytes> = input.iter().map(|r| r.value.clone()).collect();
                    assert_ne!(values, expected, "{codec} {what}: damage went unnoticed and unchanged");
                }
            }
        }
    }
}

#[test]
fn an_unknown_codec_is_refused_at_the_header() {
    let mut bytes = BytesMut::from(&build(Compression::None, &records()[..1])[..]);
    bytes[5] |= 0b101;
    let crc = crc32fast::hash(&bytes[4..]);
    bytes[..4].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(RecordBatch::parse(bytes.freeze()).unwrap_err(), BatchError::Compression(5));
}
