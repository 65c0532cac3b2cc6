//! `sluice delay list|cancel`: a topic's pending delayed messages (docs/DELAYS.md).

use anyhow::Result;
use sluice_client::{CancelOutcome, Client, DelayedListing};

use crate::args::{DelayCommand, Output};

pub(crate) async fn run(client: &Client, command: DelayCommand) -> Result<()> {
    match command {
        DelayCommand::List { topic, limit, output } => {
            let listing = client.admin().list_delayed(&topic, limit).await?;
            match output.output {
                Output::Plain => crate::print(&table(&listing))?,
                Output::Json => crate::print_json(&json(&listing))?,
            }
        }
        DelayCommand::Cancel { topic, id } => {
            let outcome = client.admin().cancel_delayed(&topic, id).await?;
            let word = match outcome {
                CancelOutcome::Cancelled => "CANCELLED",
                CancelOutcome::AlreadyDelivered => "ALREADY_DELIVERED",
            };
            crate::print(&format!("{word}\n"))?;
        }
    }
    Ok(())
}

fn due(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

fn table(listing: &DelayedListing) -> String {
    let mut out = format!("{} pending\n", listing.pending);
    if listing.messages.is_empty() {
        return out;
    }
    out.push_str(&format!("{:<16} {:<24} {:<16} {:<16} {:>8}\n", "ID", "DUE", "KEY", "TAG", "BYTES"));
    for m in &listing.messages {
        let key = m.key.as_ref().map_or_else(String::new, |k| String::from_utf8_lossy(k).into_owned());
        out.push_str(&format!(
            "{:<16} {:<24} {:<16} {:<16} {:>8}\n",
            m.id.to_string(),
            due(m.due_ms),
            key,
            m.tag.as_deref().unwrap_or(""),
            m.value_bytes
        ));
    }
    out
}

fn json(listing: &DelayedListing) -> serde_json::Value {
    let messages: Vec<serde_json::Value> = listing
        .messages
        .iter()
        .map(|m| {
            serde_json::json!({
                "id": m.id.to_string(),
                "due_ms": m.due_ms,
                "key": m.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
                "tag": m.tag,
                "timestamp_ms": m.timestamp_ms,
                "value_bytes": m.value_bytes,
            })
        })
        .collect();
    serde_json::json!({"pending": listing.pending, "messages": messages})
}
