//! `sluice dlq list|redrive|purge` (docs/RETRIES.md): a consumer group's dead-letter queue,
//! the topic `<group>.dlq`. `list` reads it like any topic and shows each entry's origin,
//! attempts, reason, failure times and value from its `sluice.dlq.*` properties; `redrive` and
//! `purge` ask the group's coordinator, which keeps the cursors.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde_json::json;
use sluice_client::{Client, ConsumedRecord, ConsumerConfig, ErrorCode, PurgeBefore, SeekTo};

use crate::args::{DlqCommand, DlqListArgs, Output};
use crate::consume::POLL_WAIT;
use crate::{print, print_json};

pub(crate) async fn run(client: &Client, command: DlqCommand) -> Result<()> {
    let admin = client.admin();
    match command {
        DlqCommand::List(args) => list(client, &args).await,
        DlqCommand::Redrive { group, max, to: Some(topic), rate } => {
            let max = max.map_or(u64::MAX, u64::from);
            let done = client
                .redrive_dead_letters_to(&group, &topic, max, rate)
                .await
                .with_context(|| format!("cannot copy the dead letters of group {group} to {topic}"))?;
            eprintln!(
                "copied {} dead letters of group {group} to {topic}; the next copy to {topic} reads from offset {}",
                done.copied, done.next_offset
            );
            Ok(())
        }
        DlqCommand::Redrive { group, max, to: None, rate } => redrive(client, &group, max, rate).await,
        DlqCommand::Purge { group, before } => {
            // All: those written before now, not the queue's future entries.
            let before_ms = before.unwrap_or_else(wall_ms);
            let before = PurgeBefore::TimestampMs(i64::try_from(before_ms).context("--before is too far away")?);
            let cursor = admin
                .purge_dead_letters(&group, before)
                .await
                .with_context(|| format!("cannot purge the dead letters of group {group}"))?;
            eprintln!("dead letters of group {group} before offset {cursor} are purged");
            Ok(())
        }
    }
}

/// Redrives to the group itself: one call (the coordinator's default of 1000, or `max`), or,
/// paced at `rate` a second, calls of a tenth of a second's worth until `max` (default 1000)
/// are redriven or none is left.
async fn redrive(client: &Client, group: &str, max: Option<u32>, rate: Option<u32>) -> Result<()> {
    let admin = client.admin();
    let Some(rate) = rate else {
        let (redriven, cursor) = admin
            .redrive_dead_letters(group, max.unwrap_or(0))
            .await
            .with_context(|| format!("cannot redrive the dead letters of group {group}"))?;
        eprintln!("redrove {redriven} dead letters of group {group}; the next redrive reads from offset {cursor}");
        return Ok(());
    };
    let max = max.unwrap_or(1000);
    let began = std::time::Instant::now();
    let (mut total, mut cursor) = (0u32, 0u64);
    while total < max {
        let chunk = (rate / 10).clamp(1, 10_000).min(max - total);
        let (redriven, at) = admin
            .redrive_dead_letters(group, chunk)
            .await
            .with_context(|| format!("cannot redrive the dead letters of group {group}"))?;
        (total, cursor) = (total + redriven, at);
        if redriven < chunk {
            break;
        }
        let due = began + std::time::Duration::from_secs_f64(f64::from(total) / f64::from(rate));
        tokio::time::sleep_until(due.into()).await;
    }
    eprintln!("redrove {total} dead letters of group {group}; the next redrive reads from offset {cursor}");
    Ok(())
}

/// One dead letter, as its properties describe it.
struct Letter<'a> {
    record: &'a ConsumedRecord,
    props: BTreeMap<&'a str, &'a str>,
}

impl Letter<'_> {
    fn get(&self, name: &str) -> &str {
        self.props.get(format!("sluice.dlq.{name}").as_str()).copied().unwrap_or_default()
    }

    fn ms(&self, name: &str) -> u64 {
        self.get(name).parse().unwrap_or_default()
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "dlq_offset": self.record.offset(),
            "topic": self.get("topic"),
            "partition": self.get("partition").parse::<u32>().ok(),
            "offset": self.get("offset").parse::<u64>().ok(),
            "attempts": self.get("attempts").parse::<u32>().ok(),
            "reason": self.get("reason"),
            "first_failure_ms": self.ms("first_failure_ms"),
            "last_failure_ms": self.ms("last_failure_ms"),
            "key": self.record.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            "value": String::from_utf8_lossy(self.record.value()),
        })
    }

    fn plain(&self) -> String {
        format!(
            "{}\t{}/{}@{}\tattempts={}\tfirst={}\tlast={}\treason={:?}\t{}\n",
            self.record.offset(),
            self.get("topic"),
            self.get("partition"),
            self.get("offset"),
            self.get("attempts"),
            time(self.ms("first_failure_ms")),
            time(self.ms("last_failure_ms")),
            self.get("reason"),
            String::from_utf8_lossy(self.record.value()),
        )
    }
}

fn time(ms: u64) -> String {
    let at = i64::try_from(ms).ok().and_then(chrono::DateTime::from_timestamp_millis);
    at.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

async fn list(client: &Client, args: &DlqListArgs) -> Result<()> {
    let topic = format!("{}.dlq", args.group);
    let records = match read_all(client, &topic).await {
        Err(e) if e.downcast_ref::<sluice_client::Error>().and_then(|e| e.code()) == Some(ErrorCode::UnknownTopic) => {
            eprintln!("group {} has no dead letters ({topic} does not exist yet)", args.group);
            return Ok(());
        }
        other => other?,
    };
    let since_ms = args.since.map(|s| wall_ms().saturating_sub(u64::try_from(s.as_millis()).unwrap_or(u64::MAX)));
    let letters = records.iter().map(|record| Letter { record, props: record.properties().collect() });
    let shown = letters
        .filter(|l| args.topic.as_deref().is_none_or(|t| l.get("topic") == t))
        .filter(|l| since_ms.is_none_or(|since| l.ms("last_failure_ms") >= since));
    for letter in shown {
        match args.output.output {
            Output::Json => print_json(&letter.json())?,
            Output::Plain => print(&letter.plain())?,
        }
    }
    Ok(())
}

/// Every record of `topic`'s partitions up to their end offsets now.
async fn read_all(client: &Client, topic: &str) -> Result<Vec<ConsumedRecord>> {
    let mut consumer = client.consumer(ConsumerConfig { start: SeekTo::Earliest, ..ConsumerConfig::default() })?;
    consumer.assign(topic, &[]).await?;
    let ends = consumer.end_offsets().await?;
    let mut out = Vec::new();
    let done = |c: &sluice_client::Consumer| ends.iter().all(|(&p, &end)| c.position(p).is_some_and(|at| at >= end));
    while !done(&consumer) {
        let polled = consumer.poll(POLL_WAIT).await?;
        out.extend(polled.into_iter().filter(|r| r.offset() < ends[&r.partition()]));
    }
    Ok(out)
}

fn wall_ms() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
