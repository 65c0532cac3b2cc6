//! Exactly-once consume-transform-produce (docs/TRANSACTIONS.md): a processor reads
//! `example-words` in a consumer group and writes each word's length to `example-lengths`,
//! committing its outputs and its input offsets in one transaction per poll. Kill it at any
//! point and run it again: every word's length appears once in what `read_committed` consumers
//! read.
//!
//! Start the cluster (`scripts/start-cluster.sh`), then:
//!
//! ```sh
//! cargo run -p sluice-client --example exactly_once
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_client::{
    Client, ClientConfig, ErrorCode, GroupConsumerConfig, OffsetReset, ProducerConfig, ProducerRecord, TopicConfig,
    TopicPartition, TransactionalConfig,
};

const INPUT: &str = "example-words";
const OUTPUT: &str = "example-lengths";
const GROUP: &str = "example-word-lengths";

#[tokio::main]
async fn main() -> Result<(), sluice_client::Error> {
    let client = Client::connect(ClientConfig::from_env()).await?;
    for topic in [INPUT, OUTPUT] {
        match client.admin().create_topic(topic, &TopicConfig::new(3, 3)).await {
            Err(e) if e.code() != Some(ErrorCode::TopicExists) => return Err(e),
            _ => {}
        }
        client.admin().wait_for_leaders(topic, Duration::from_secs(10)).await?;
    }
    let words = client.producer(ProducerConfig::default()).await?;
    for word in ["exactly", "once", "consume", "transform", "produce"] {
        words.send(ProducerRecord::new(INPUT, word)).await?;
    }

    let config = GroupConsumerConfig {
        auto_commit: false, // offsets go in the transactions
        auto_offset_reset: OffsetReset::Earliest,
        ..GroupConsumerConfig::new(GROUP)
    };
    let mut consumer = client.group_consumer(config)?;
    consumer.subscribe(&[INPUT]).await?;
    // The same id on every run: a new run fences the last one and aborts what it left open.
    let mut producer = client.transactional_producer(TransactionalConfig::new(GROUP)).await?;
    for _ in 0..10 {
        let records = consumer.poll(Duration::from_secs(1)).await?;
        if records.is_empty() {
            continue;
        }
        producer.begin()?;
        let mut offsets = BTreeMap::new();
        for r in &records {
            let word = String::from_utf8_lossy(r.value()).into_owned();
            producer.send(ProducerRecord::new(OUTPUT, format!("{word}={}", word.len())).key(word)).await?;
            offsets.insert(TopicPartition::new(INPUT, r.partition()), r.offset() + 1);
        }
        producer.send_offsets(GROUP, &offsets).await?;
        producer.commit().await?;
        println!("processed {} words in one transaction", records.len());
    }
    consumer.close().await
}
