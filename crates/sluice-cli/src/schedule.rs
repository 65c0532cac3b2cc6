//! `sluice schedule create|list|delete`: recurring schedules (docs/DELAYS.md, "Schedules").

use anyhow::{Result, bail};
use sluice_client::{Cadence, Client, ProducerRecord, ScheduleInfo};

use crate::args::{Output, ScheduleCommand, ScheduleCreateArgs};

pub(crate) async fn run(client: &Client, command: ScheduleCommand) -> Result<()> {
    let admin = client.admin();
    match command {
        ScheduleCommand::Create(args) => {
            let (cadence, record) = spec(&args);
            let first = admin.create_schedule(&args.name, &cadence, &record).await?;
            crate::print(&format!(
                "created schedule {} on {}; first fire at {}\n",
                args.name,
                args.topic,
                time(first)
            ))?;
        }
        ScheduleCommand::List { topic, output } => {
            let schedules = admin.list_schedules(topic.as_deref()).await?;
            match output.output {
                Output::Plain => crate::print(&table(&schedules))?,
                Output::Json => crate::print_json(&json(&schedules))?,
            }
        }
        ScheduleCommand::Delete { name, topic } => {
            let topic = match topic {
                Some(topic) => topic,
                None => only_topic_with(client, &name).await?,
            };
            admin.delete_schedule(&topic, &name).await?;
            crate::print(&format!("deleted schedule {name} of {topic}\n"))?;
        }
    }
    Ok(())
}

fn spec(args: &ScheduleCreateArgs) -> (Cadence, ProducerRecord) {
    let cadence = match (&args.cron, args.every) {
        (Some(expr), _) => Cadence::Cron { expr: expr.clone(), time_zone: args.tz.clone() },
        (None, Some(every)) => Cadence::Every(every),
        (None, None) => unreachable!("clap requires --cron or --every"),
    };
    let mut record = ProducerRecord::new(args.topic.as_str(), args.value.clone());
    if let Some(key) = &args.key {
        record = record.key(key.clone());
    }
    if let Some(tag) = &args.tag {
        record = record.tag(tag.clone());
    }
    for (name, value) in &args.properties {
        record = record.property(name.clone(), value.clone());
    }
    (cadence, record)
}

/// The one topic holding a schedule `name`.
async fn only_topic_with(client: &Client, name: &str) -> Result<String> {
    let all = client.admin().list_schedules(None).await?;
    let topics: Vec<&str> = all.iter().filter(|s| s.name == name).map(|s| s.topic.as_str()).collect();
    match topics.as_slice() {
        [topic] => Ok((*topic).to_owned()),
        [] => bail!("no topic has a schedule named {name} (`sluice schedule list` shows them)"),
        several => bail!("topics {} each have a schedule named {name}: say which with --topic", several.join(", ")),
    }
}

fn time(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

fn table(schedules: &[ScheduleInfo]) -> String {
    let mut out = format!("{:<24} {:<16} {:>9} {:<36} {:<24}\n", "NAME", "TOPIC", "PARTITION", "CADENCE", "NEXT FIRE");
    for s in schedules {
        out.push_str(&format!(
            "{:<24} {:<16} {:>9} {:<36} {:<24}\n",
            s.name,
            s.topic,
            s.partition,
            s.cadence,
            time(s.next_due_ms)
        ));
    }
    out
}

fn json(schedules: &[ScheduleInfo]) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = schedules
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "topic": s.topic,
                "partition": s.partition,
                "cadence": s.cadence,
                "next_due_ms": s.next_due_ms,
                "key": s.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
                "tag": s.tag,
                "value_bytes": s.value_bytes,
            })
        })
        .collect();
    serde_json::Value::Array(rows)
}
