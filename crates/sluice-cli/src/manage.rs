//! `topic ...` and `cluster status`.

use std::time::Duration;

use anyhow::{Context, Result};
use sluice_client::{Client, TopicConfig};

use crate::args::{ClusterCommand, Output, TopicCommand};
use crate::{output, print, print_json};

/// How long `topic create` waits for the new partitions to elect leaders.
const LEADER_WAIT: Duration = Duration::from_secs(15);

pub(crate) async fn topic(client: &Client, command: TopicCommand) -> Result<()> {
    let admin = client.admin();
    match command {
        TopicCommand::Create(a) => {
            let mut config = TopicConfig::new(a.partitions, a.replication_factor);
            config.retention_ms = a.retention_ms;
            config.retention_bytes = a.retention_bytes;
            config.max_message_bytes = a.max_message_bytes;
            config.flush_interval_ms = a.flush_interval_ms;
            config.compression = a.compression.unwrap_or_default();
            admin.create_topic(&a.name, &config).await.with_context(|| format!("cannot create topic {}", a.name))?;
            match admin.wait_for_leaders(&a.name, LEADER_WAIT).await {
                Ok(_) => eprintln!(
                    "created topic {}: {} partitions, replication factor {}",
                    a.name, a.partitions, a.replication_factor
                ),
                Err(e) => eprintln!("created topic {}, but not every partition has a leader yet: {e}", a.name),
            }
        }
        TopicCommand::List(o) => {
            let topics = admin.list_topics().await?;
            match o.output {
                Output::Json => print_json(&output::topic_list_json(&topics))?,
                Output::Plain => print(&output::topic_list_plain(&topics))?,
            }
        }
        TopicCommand::Describe { name, output: o } => {
            let description = admin.describe_topic(&name).await?;
            match o.output {
                Output::Json => print_json(&output::describe_json(&description))?,
                Output::Plain => print(&output::describe_plain(&description))?,
            }
        }
        TopicCommand::Alter(a) => {
            let altered = admin
                .alter_topic_config(&a.name, &a.changes())
                .await
                .with_context(|| format!("cannot alter topic {}", a.name))?;
            print(&output::altered_plain(&altered))?;
        }
        TopicCommand::Delete { name } => {
            admin.delete_topic(&name).await.with_context(|| format!("cannot delete topic {name}"))?;
            eprintln!("deleted topic {name}");
        }
    }
    Ok(())
}

pub(crate) async fn cluster(client: &Client, command: ClusterCommand) -> Result<()> {
    let ClusterCommand::Status(o) = command;
    let status = client.admin().cluster_status().await?;
    match o.output {
        Output::Json => print_json(&output::status_json(&status))?,
        Output::Plain => print(&output::status_plain(&status))?,
    }
    Ok(())
}
