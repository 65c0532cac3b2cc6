//! Reads every partition of a topic from the beginning and prints what it finds, until no
//! new record arrives for two seconds.
//!
//! ```sh
//! cargo run -p sluice-client --example producer     # write something first
//! cargo run -p sluice-client --example consumer     # topic "example-orders"
//! ```

use std::time::Duration;

use sluice_client::{Client, ClientConfig, ConsumerConfig, SeekTo};

#[tokio::main]
async fn main() -> Result<(), sluice_client::Error> {
    let topic = std::env::args().nth(1).unwrap_or_else(|| "example-orders".to_owned());
    let client = Client::connect(ClientConfig::from_env()).await?;

    // Partitions not sought start at the latest offset; ask for the earliest instead.
    let config = ConsumerConfig { start: SeekTo::Earliest, ..ConsumerConfig::default() };
    let mut consumer = client.consumer(config)?;
    consumer.assign(&topic, &[]).await?; // an empty list means every partition

    loop {
        // Long poll: returns as soon as any partition has records, or empty after 2 s.
        let records = consumer.poll(Duration::from_secs(2)).await?;
        if records.is_empty() {
            break;
        }
        for record in records {
            let key = record.key().map(|k| String::from_utf8_lossy(k).into_owned());
            println!(
                "{}/{} offset {} key {:?} tag {:?} value {}",
                record.topic(),
                record.partition(),
                record.offset(),
                key,
                record.tag(),
                String::from_utf8_lossy(record.value()),
            );
        }
    }
    for partition in consumer.assignment() {
        println!("partition {partition}: next offset {:?}", consumer.position(partition));
    }
    Ok(())
}
