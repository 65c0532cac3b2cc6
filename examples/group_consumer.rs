//! Joins the consumer group `example-group` on the topic `example-orders` and prints the
//! records of the partitions the group gives it, until Ctrl-C; then commits and leaves the
//! group. Start it in two terminals to watch the partitions being shared, and moved back
//! when one stops. A second run of the same group starts where the first one stopped.
//!
//! ```sh
//! cargo run -p sluice-client --example producer                    # write something first
//! cargo run -p sluice-client --example group_consumer              # topic, group: the defaults
//! cargo run -p sluice-client --example group_consumer -- orders billing
//! ```

use std::time::Duration;

use sluice_client::{
    Client, ClientConfig, GroupConsumerConfig, GroupContext, OffsetReset, RebalanceListener, TopicPartition,
};

/// Says when partitions come and go. Auto-commit (on by default) has already committed a
/// revoked partition's position when `on_revoked` runs.
struct Announce;

impl RebalanceListener for Announce {
    async fn on_assigned(&mut self, group: &mut GroupContext<'_>, assigned: &[TopicPartition]) {
        for tp in assigned {
            println!("-- now reading {tp} (member {})", group.member_id());
        }
    }

    async fn on_revoked(&mut self, _group: &mut GroupContext<'_>, revoked: &[TopicPartition]) {
        for tp in revoked {
            println!("-- giving up {tp}");
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), sluice_client::Error> {
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "example-orders".to_owned());
    let group = args.next().unwrap_or_else(|| "example-group".to_owned());
    let client = Client::connect(ClientConfig::from_env()).await?;

    // A new group reads each partition from its start; afterwards, from where it committed.
    let config = GroupConsumerConfig { auto_offset_reset: OffsetReset::Earliest, ..GroupConsumerConfig::new(group) };
    let mut consumer = client.group_consumer(config)?.with_listener(Announce);
    consumer.subscribe(&[topic.as_str()]).await?;
    println!("joined group {} as member {}; Ctrl-C to stop", consumer.group(), consumer.member_id());

    loop {
        // Each poll also tells the consumer the previous records are processed: auto-commit
        // commits up to them (every 5 s, and before a partition moves to another member).
        let records = tokio::select! {
            records = consumer.poll(Duration::from_secs(1)) => records?,
            _ = tokio::signal::ctrl_c() => break,
        };
        for record in records {
            println!(
                "{}/{} offset {} value {}",
                record.topic(),
                record.partition(),
                record.offset(),
                String::from_utf8_lossy(record.value()),
            );
        }
    }
    // Commits what was printed, then leaves: the other members take over at once.
    consumer.close().await
}
