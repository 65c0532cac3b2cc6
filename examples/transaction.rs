//! A transaction over two topics (docs/TRANSACTIONS.md): a debit and a credit written together,
//! then a second transfer aborted; a `read_committed` consumer sees the first transfer's two
//! messages and nothing of the second, a `read_uncommitted` one sees all four.
//!
//! Start the cluster (`scripts/start-cluster.sh`), then:
//!
//! ```sh
//! cargo run -p sluice-client --example transaction
//! ```

use std::time::Duration;

use sluice_client::{
    Client, ClientConfig, ConsumerConfig, ErrorCode, Isolation, ProducerRecord, SeekTo, TopicConfig,
    TransactionalConfig,
};

const TOPICS: [&str; 2] = ["example-debits", "example-credits"];

#[tokio::main]
async fn main() -> Result<(), sluice_client::Error> {
    let client = Client::connect(ClientConfig::from_env()).await?;
    for topic in TOPICS {
        match client.admin().create_topic(topic, &TopicConfig::new(3, 3)).await {
            Err(e) if e.code() != Some(ErrorCode::TopicExists) => return Err(e),
            _ => {}
        }
        client.admin().wait_for_leaders(topic, Duration::from_secs(10)).await?;
    }
    let ends = end_offsets(&client).await?;

    // One transactional id per producer: a restarted instance with the same id fences this one.
    let mut producer = client.transactional_producer(TransactionalConfig::new("example-transfers")).await?;
    producer.begin()?;
    producer.send(ProducerRecord::new(TOPICS[0], "alice -10").key("transfer-1")).await?;
    producer.send(ProducerRecord::new(TOPICS[1], "bob +10").key("transfer-1")).await?;
    producer.commit().await?;
    println!("transfer-1 committed");

    producer.begin()?;
    producer.send(ProducerRecord::new(TOPICS[0], "carol -99").key("transfer-2")).await?;
    producer.send(ProducerRecord::new(TOPICS[1], "dave +99").key("transfer-2")).await?;
    producer.flush().await?; // written, so that the abort has something to hide
    producer.abort().await?;
    println!("transfer-2 aborted");

    for isolation in [Isolation::ReadCommitted, Isolation::ReadUncommitted] {
        let values = read_from(&client, &ends, isolation).await?;
        println!("{isolation:?} reads {values:?}");
    }
    Ok(())
}

/// Where each partition of both topics ends now (the last stable offset).
async fn end_offsets(client: &Client) -> Result<Vec<(&'static str, Vec<(u32, u64)>)>, sluice_client::Error> {
    let mut ends = Vec::new();
    for topic in TOPICS {
        let mut consumer = client.consumer(ConsumerConfig::default())?;
        consumer.assign(topic, &[]).await?;
        ends.push((topic, consumer.end_offsets().await?.into_iter().collect()));
    }
    Ok(ends)
}

/// The values written after `ends`, read at `isolation` for two seconds.
async fn read_from(
    client: &Client,
    ends: &[(&'static str, Vec<(u32, u64)>)],
    isolation: Isolation,
) -> Result<Vec<String>, sluice_client::Error> {
    let mut values = Vec::new();
    for (topic, partitions) in ends {
        let mut consumer = client.consumer(ConsumerConfig { isolation, ..ConsumerConfig::default() })?;
        consumer.assign(topic, &[]).await?;
        for (partition, offset) in partitions {
            consumer.seek(*partition, SeekTo::Offset(*offset)).await?;
        }
        for _ in 0..4 {
            let records = consumer.poll(Duration::from_millis(500)).await?;
            values.extend(records.iter().map(|r| String::from_utf8_lossy(r.value()).into_owned()));
        }
    }
    Ok(values)
}
