//! SDK-level helpers the tests share: reading a topic back whole, and bounding a test's time.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use sluice_client::{Client, ConsumedRecord, ConsumerConfig, MessageFilter, SeekTo};

/// How long one consumer poll waits.
const POLL_WAIT: Duration = Duration::from_secs(1);

/// Runs `test`, panicking if it takes longer than `limit`.
///
/// Keep a [`crate::Cluster`] outside the future: a future cut off by the time limit is dropped
/// before the panic, and a cluster dropped while not panicking neither prints its logs nor
/// keeps its files.
pub async fn within<T>(limit: Duration, what: &str, test: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, test).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not finish within {limit:?}"),
    }
}

/// Every message of every partition of `topic`, from the earliest offset to the end offsets
/// as they are when it starts, by partition in the order the consumer returned them (assign
/// mode). Panics if it takes longer than `limit`.
pub async fn read_topic(client: &Client, topic: &str, limit: Duration) -> BTreeMap<u32, Vec<ConsumedRecord>> {
    read_topic_filtered(client, topic, None, limit).await
}

/// [`read_topic`], receiving only the messages `filter` matches (the broker filters).
pub async fn read_topic_filtered(
    client: &Client,
    topic: &str,
    filter: Option<MessageFilter>,
    limit: Duration,
) -> BTreeMap<u32, Vec<ConsumedRecord>> {
    let config =
        ConsumerConfig { start: SeekTo::Earliest, fetch_max_bytes: 4 << 20, filter, ..ConsumerConfig::default() };
    let mut consumer = client.consumer(config).expect("a consumer");
    consumer.assign(topic, &[]).await.expect("assign every partition");
    let ends = consumer.end_offsets().await.expect("end offsets");
    let mut read: BTreeMap<u32, Vec<ConsumedRecord>> = ends.keys().map(|&p| (p, Vec::new())).collect();
    let deadline = Instant::now() + limit;
    let done = |c: &sluice_client::Consumer| ends.iter().all(|(&p, &end)| end == 0 || c.position(p) >= Some(end));
    while !done(&consumer) {
        assert!(Instant::now() < deadline, "reading {topic} did not reach the end offsets {ends:?} within {limit:?}");
        for record in consumer.poll(POLL_WAIT).await.expect("poll") {
            if record.offset() < ends[&record.partition()] {
                read.get_mut(&record.partition()).expect("an assigned partition").push(record);
            }
        }
    }
    read
}
