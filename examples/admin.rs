//! Creates a topic, describes it, shows the cluster's status, and deletes the topic again.
//!
//! ```sh
//! cargo run -p sluice-client --example admin
//! ```

use std::time::Duration;

use sluice_client::{Client, ClientConfig, TopicConfig};

#[tokio::main]
async fn main() -> Result<(), sluice_client::Error> {
    let client = Client::connect(ClientConfig::from_env()).await?;
    let admin = client.admin();

    let status = admin.cluster_status().await?;
    println!("controller: {:?}, metadata version {}", status.controller_id, status.metadata_version);
    for b in &status.brokers {
        println!(
            "  broker {} at {} live={} controller={} leads {} partitions",
            b.broker.node_id, b.broker.address, b.broker.live, b.is_controller, b.partition_leaders
        );
    }

    let topic = "example-admin";
    // Keep messages for a day; refuse messages over 64 KiB.
    let config = TopicConfig::new(2, 3).retention_ms(24 * 3600 * 1000).max_message_bytes(64 * 1024);
    admin.create_topic(topic, &config).await?;
    admin.wait_for_leaders(topic, Duration::from_secs(10)).await?;

    let description = admin.describe_topic(topic).await?;
    println!(
        "{} ({} partitions, replication factor {})",
        description.name, description.config.partitions, description.config.replication_factor
    );
    for p in &description.partitions {
        println!(
            "  partition {} leader {:?} replicas {:?} offsets {:?}..{:?}",
            p.partition, p.leader, p.replicas, p.log_start_offset, p.log_end_offset
        );
    }

    let names: Vec<String> = admin.list_topics().await?.iter().map(|t| t.name.clone()).collect();
    println!("topics: {}", names.join(", "));

    admin.delete_topic(topic).await?;
    println!("deleted {topic}");
    Ok(())
}
