//! The SDK against three broker processes: 100,000 keyed messages produced through the
//! `Producer` are all consumed back through the `Consumer`, each once, with its key and value,
//! at the offset its acknowledgement named, in the partition its key hashes to, and every
//! partition's offsets are dense and in order.

use std::sync::Arc;
use std::time::Duration;

use sluice_client::partitioner::partition_for_key;
use sluice_client::{ProducerConfig, ProducerRecord, RecordMetadata, TopicConfig};
use sluice_system_tests::{Cluster, read_topic, within};

const TOPIC: &str = "sdk-round-trip";
const MESSAGES: usize = 100_000;
const PARTITIONS: u32 = 6;
/// Distinct keys: many per partition, so the partitioner spreads them.
const KEYS: usize = 1_000;
const LIMIT: Duration = Duration::from_secs(150);

fn key(i: usize) -> String {
    format!("customer-{}", i % KEYS)
}

/// A unique value of about 60 bytes whose every byte depends on `i`.
fn value(i: usize) -> String {
    format!("message {i:06} {:016x} {:016x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15), !(i as u64))
}

/// The message number a value was made from.
fn number(value: &[u8]) -> usize {
    let text = std::str::from_utf8(value).expect("values are UTF-8");
    text.split(' ').nth(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("not a test value: {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_return_100000_produced_messages_once_each_in_dense_offset_order() {
    let cluster = Cluster::start(3).await;
    within(LIMIT, "the SDK round trip", async {
        let client = cluster.client().await;
        let admin = client.admin();
        admin.create_topic(TOPIC, &TopicConfig::new(PARTITIONS, 3)).await.expect("create the topic");
        admin.wait_for_leaders(TOPIC, Duration::from_secs(30)).await.expect("every partition elects a leader");

        let producer = client.producer(ProducerConfig::default()).await.expect("a producer");
        let topic: Arc<str> = Arc::from(TOPIC);
        let mut deliveries = Vec::with_capacity(MESSAGES);
        for i in 0..MESSAGES {
            let record = ProducerRecord::new(Arc::clone(&topic), value(i)).key(key(i));
            deliveries.push(producer.enqueue(record).await.expect("enqueue a message"));
        }
        producer.flush().await;
        let mut acked: Vec<RecordMetadata> = Vec::with_capacity(MESSAGES);
        for (i, delivery) in deliveries.into_iter().enumerate() {
            acked.push(delivery.await.unwrap_or_else(|e| panic!("message {i} was not acknowledged: {e}")));
        }

        let read = read_topic(&client, TOPIC, Duration::from_secs(60)).await;
        let mut seen = vec![false; MESSAGES];
        for (&partition, records) in &read {
            assert!(records.len() > MESSAGES / (4 * PARTITIONS as usize), "partition {partition} got few keys");
            for (expected_offset, record) in (0u64..).zip(records) {
                assert_eq!(record.offset(), expected_offset, "partition {partition}: offsets dense and in order");
                let i = number(record.value());
                assert!(!seen[i], "message {i} was read twice");
                seen[i] = true;
                assert_eq!(&record.value()[..], value(i).as_bytes(), "message {i}'s value");
                let record_key = record.key().unwrap_or_else(|| panic!("message {i} lost its key"));
                assert_eq!(&record_key[..], key(i).as_bytes(), "message {i}'s key");
                assert_eq!(partition, partition_for_key(record_key, PARTITIONS), "message {i}: key-hashed partition");
                assert_eq!(
                    acked[i],
                    RecordMetadata { partition, offset: expected_offset, delayed_id: None },
                    "message {i}'s ack"
                );
            }
        }
        let missing: Vec<usize> = (0..MESSAGES).filter(|&i| !seen[i]).take(10).collect();
        assert!(missing.is_empty(), "messages never read back (first 10): {missing:?}");
    })
    .await;
}
