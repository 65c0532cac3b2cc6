//! A topic whose `compression` setting names a codec stores every batch with it (Kafka's
//! `compression.type`): a produced batch with another codec is rebuilt here, before it is
//! proposed, with the same header fields (producer, sequence, flags, timestamps), so
//! idempotence and transactions see the same batch. The new bytes get a new checksum: the
//! producer's own is checked first (`check_batch`) and does not travel past this broker.

use bytes::Bytes;
use sluice_common::record::{BatchBuilder, Compression, DEFAULT_ZSTD_LEVEL, RecordBatch, TopicCompression};
use sluice_proto::{Error, ErrorCode};

use super::errors::error;

/// gzip's level when the broker compresses (zlib's default).
const GZIP_LEVEL: i32 = 6;

/// `batch` (already checked) as the topic's `policy` wants it stored: as it came, or rebuilt
/// with the topic's codec.
pub(super) fn as_stored(batch: Bytes, policy: TopicCompression) -> Result<Bytes, Error> {
    let TopicCompression::Codec(codec) = policy else { return Ok(batch) };
    let parsed = RecordBatch::parse(batch).map_err(|e| internal(&e))?;
    let h = *parsed.header();
    if h.compression == codec {
        return Ok(parsed.bytes().clone());
    }
    let level = if codec == Compression::Gzip { GZIP_LEVEL } else { DEFAULT_ZSTD_LEVEL };
    let mut builder = BatchBuilder::new(h.producer, parsed.bytes().len())
        .transactional(h.transactional)
        .delayed(h.delayed)
        .compression(codec, level);
    for record in parsed.records() {
        builder.push_view(&record.map_err(|e| internal(&e))?);
    }
    Ok(builder.finish())
}

/// A batch `check_batch` accepted could not be read again: a bug, not the producer's fault.
fn internal(e: &dyn std::fmt::Display) -> Error {
    error(ErrorCode::Internal, format!("recompressing a checked batch failed: {e}"))
}

#[cfg(test)]
mod tests {
    use sluice_common::record::{ProducerStamp, Record};

    use super::*;

    #[test]
    fn a_batch_is_rebuilt_with_the_topics_codec_keeping_its_header_and_records() {
        let stamp = ProducerStamp { producer_id: 9, epoch: 2, base_sequence: 40 };
        let mut b = BatchBuilder::new(stamp, 256).compression(Compression::Lz4, 3);
        let records: Vec<Record> = (0..20)
            .map(|i| Record {
                tag: Some(format!("t{}", i % 3)),
                properties: vec![("i".into(), i.to_string())],
                ..Record::new(format!("value {i} {}", "x".repeat(i)), 1_000 + i as i64)
            })
            .collect();
        records.iter().for_each(|r| b.push(r));
        let produced = b.finish();
        for policy in [TopicCompression::Producer, TopicCompression::Codec(Compression::Lz4)] {
            assert_eq!(as_stored(produced.clone(), policy).unwrap(), produced, "{policy}: kept as produced");
        }
        for codec in [Compression::None, Compression::Gzip, Compression::Zstd, Compression::Snappy] {
            let stored =
                RecordBatch::parse(as_stored(produced.clone(), TopicCompression::Codec(codec)).unwrap()).unwrap();
            let original = RecordBatch::parse(produced.clone()).unwrap();
            assert_eq!(stored.header().compression, codec);
            assert_eq!(
                (stored.header().producer, stored.header().tag_summary, stored.header().max_timestamp_ms),
                (original.header().producer, original.header().tag_summary, original.header().max_timestamp_ms)
            );
            let got: Vec<Record> = stored.records().map(|r| r.unwrap().to_record()).collect();
            assert_eq!(got, records, "{codec}");
        }
    }
}
