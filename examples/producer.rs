//! Sends a few keyed records and prints where each was written.
//!
//! Start the cluster (`scripts/start-cluster.sh`), then:
//!
//! ```sh
//! cargo run -p sluice-client --example producer            # topic "example-orders"
//! SLUICE_BOOTSTRAP=127.0.0.1:9091 cargo run -p sluice-client --example producer -- my-topic
//! ```
//!
//! The topic is created (3 partitions, 3 replicas) if it does not exist.

use std::time::Duration;

use sluice_client::{Client, ClientConfig, ErrorCode, ProducerConfig, ProducerRecord, TopicConfig};

#[tokio::main]
async fn main() -> Result<(), sluice_client::Error> {
    let topic = std::env::args().nth(1).unwrap_or_else(|| "example-orders".to_owned());
    // Bootstrap addresses come from SLUICE_BOOTSTRAP, else the local three-node cluster.
    let client = Client::connect(ClientConfig::from_env()).await?;

    let admin = client.admin();
    match admin.create_topic(&topic, &TopicConfig::new(3, 3)).await {
        Err(e) if e.code() != Some(ErrorCode::TopicExists) => return Err(e),
        _ => {}
    }
    admin.wait_for_leaders(&topic, Duration::from_secs(10)).await?;

    // Idempotent by default: a batch retried after a leader change is written once.
    let producer = client.producer(ProducerConfig::default()).await?;

    // `enqueue` returns as soon as the record is buffered, so all ten travel in few batches;
    // awaiting each `Delivery` then gives its partition and offset.
    let mut deliveries = Vec::new();
    for i in 0..10 {
        let record = ProducerRecord::new(topic.as_str(), format!("order {i} placed"))
            .key(format!("customer-{}", i % 3))
            .tag("created")
            .property("source", "example");
        deliveries.push(producer.enqueue(record).await?);
    }
    for delivery in deliveries {
        let written = delivery.await?;
        println!("{topic}/{} offset {}", written.partition, written.offset);
    }
    producer.close().await;
    Ok(())
}
