//! Compressed batches at the broker (docs/FORMAT.md, "Compressed batches"): a topic with a
//! `compression` setting stores what it is sent with that codec; a batch that would expand
//! beyond the broker's batch limit, or whose values do not decompress, is refused before
//! anything is written.

use bytes::{Bytes, BytesMut};
use sluice_common::record::{BATCH_HEADER_LEN, BatchBuilder, Compression, ProducerStamp, Record, RecordBatch};
use sluice_proto::v1::TopicConfig;
use sluice_proto::{Error, ErrorCode, error_of};

use super::client::{code, create_topic, fetch_from_leader, fetch_request, produce, produce_request, single_broker};
use super::cluster::TEST_MAX_BATCH_BYTES;

fn batch(codec: Compression, values: &[Vec<u8>]) -> Bytes {
    let mut b = BatchBuilder::new(ProducerStamp::NONE, 1024).compression(codec, 3);
    values.iter().for_each(|v| b.push(&Record::new(v.clone(), 5)));
    b.finish()
}

/// `good` with its compressed values damaged and its checksum fixed: only decompression can
/// tell.
fn damaged(good: &Bytes) -> Bytes {
    let mut b = BytesMut::from(&good[..]);
    let meta_len = u32::from_le_bytes(b[BATCH_HEADER_LEN..BATCH_HEADER_LEN + 4].try_into().unwrap()) as usize;
    let values_at = BATCH_HEADER_LEN + 8 + meta_len;
    for byte in b[values_at + 2..].iter_mut().step_by(3) {
        *byte ^= 0x6b;
    }
    let crc = crc32fast::hash(&b[4..]);
    b[..4].copy_from_slice(&crc.to_le_bytes());
    b.freeze()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_stores_its_codec_and_bombs_and_undecompressible_batches_are_refused() {
    let cluster = single_broker().await;
    let config =
        TopicConfig { partitions: 1, replication_factor: 1, compression: Some("zstd".into()), ..Default::default() };
    assert_eq!(create_topic(&cluster, "packed", config).await, Error::ok());
    let values: Vec<Vec<u8>> = (0..50).map(|i| format!("event {i} {}", "abc".repeat(i)).into_bytes()).collect();
    for codec in [Compression::None, Compression::Lz4] {
        let r = produce(&cluster, "packed", 0, batch(codec, &values)).await;
        assert_eq!(code(r.error.as_ref()), ErrorCode::Ok, "{codec}: {r:?}");
    }
    let fetched = fetch_from_leader(&cluster, fetch_request("packed", 0, 0, 0)).await;
    assert_eq!(fetched.batches.len(), 2);
    for stored in &fetched.batches {
        let parsed = RecordBatch::parse(stored.batch.clone()).expect("a stored batch");
        assert_eq!(parsed.header().compression, Compression::Zstd, "stored with the topic's codec");
        let got: Vec<Vec<u8>> = parsed.records().map(|r| r.expect("a record").value.to_vec()).collect();
        assert_eq!(got, values, "the records survive recompression");
    }

    let config = TopicConfig { partitions: 1, replication_factor: 1, ..Default::default() };
    assert_eq!(create_topic(&cluster, "raw", config).await, Error::ok());
    // Once this is written the partition has a leader, and the refusals below are the batches'.
    let first = produce(&cluster, "raw", 0, batch(Compression::Snappy, &values)).await;
    assert_eq!(code(first.error.as_ref()), ErrorCode::Ok, "{first:?}");
    let mut client = cluster.client(0).await;
    let zeros = vec![vec![0u8; 64 * 1024]; (TEST_MAX_BATCH_BYTES as usize / (64 * 1024)) + 1];
    let bomb = batch(Compression::Zstd, &zeros);
    assert!(bomb.len() < 4096, "{} bytes compressed", bomb.len());
    let refused = client.produce(produce_request("raw", 0, bomb)).await.expect("rpc").into_inner();
    let error = error_of(refused.error.as_ref());
    assert_eq!(error.error_code(), ErrorCode::MessageTooLarge, "{error:?}");
    assert!(error.message.contains("expands to"), "{error:?}");

    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let bad = damaged(&batch(codec, &values));
        let refused = client.produce(produce_request("raw", 0, bad)).await.expect("rpc").into_inner();
        let error = error_of(refused.error.as_ref());
        assert_eq!(error.error_code(), ErrorCode::InvalidRequest, "{codec}: {error:?}");
    }
    let fetched = fetch_from_leader(&cluster, fetch_request("raw", 0, 0, 0)).await;
    assert_eq!(fetched.batches.len(), 1, "nothing refused was written");
    cluster.shutdown().await;
}
