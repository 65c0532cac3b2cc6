//! `sluice consume`: prints a topic's messages, from `--from` up to what the topic held when
//! the command started (its partitions' latest offsets, read first), or forever with
//! `--follow`. With `--group`, as a member of a consumer group (`consume_group.rs`).

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::time::Duration;

use anyhow::{Result, bail};
use sluice_client::{Client, ConsumedRecord, Consumer, ConsumerConfig};

use crate::args::{ConsumeArgs, Output};
use crate::output::RecordJson;

/// How long one poll waits; also how quickly Ctrl-C is noticed between polls.
pub(crate) const POLL_WAIT: Duration = Duration::from_millis(500);

pub(crate) async fn run(client: &Client, args: ConsumeArgs) -> Result<()> {
    if let Some(group) = args.group.clone() {
        return crate::consume_group::run(client, args, &group).await;
    }
    let filter = args.filter.filter()?;
    let isolation = args.isolation.isolation.sdk();
    let mut consumer =
        client.consumer(ConsumerConfig { start: args.from, filter, isolation, ..ConsumerConfig::default() })?;
    let partitions: Vec<u32> = args.partition.into_iter().collect();
    consumer.assign(&args.topic, &partitions).await?;
    for partition in consumer.assignment() {
        consumer.seek(partition, args.from).await?;
    }
    // Without --follow, stop at the end offsets as they are now (read_committed: the last
    // stable offsets, as far as such a consumer can read).
    let ends = if args.follow { None } else { Some(consumer.end_offsets().await?) };
    if let Some((partition, end)) = ends.iter().flatten().find(|&(&p, &end)| consumer.position(p) > Some(end)) {
        bail!(
            "--from {} is past the end of {}/{partition}, whose next offset is {end}",
            consumer.position(*partition).unwrap_or_default(),
            args.topic
        );
    }
    let mut out = BufWriter::new(std::io::stdout());
    let mut left = args.max.unwrap_or(u64::MAX);
    while left > 0 && !caught_up(&consumer, ends.as_ref()) {
        let records = tokio::select! {
            records = consumer.poll(POLL_WAIT) => records?,
            _ = tokio::signal::ctrl_c() => break,
        };
        for record in records.iter().filter(|r| before_end(r, ends.as_ref())) {
            if left == 0 {
                break;
            }
            write_record(&mut out, record, args.output.output)?;
            left -= 1;
        }
        out.flush()?;
    }
    out.flush()?;
    Ok(())
}

/// Whether every partition's position reached its end offset (never, when following).
fn caught_up(consumer: &Consumer, ends: Option<&BTreeMap<u32, u64>>) -> bool {
    ends.is_some_and(|ends| ends.iter().all(|(&p, &end)| consumer.position(p).is_some_and(|pos| pos >= end)))
}

pub(crate) fn before_end(record: &ConsumedRecord, ends: Option<&BTreeMap<u32, u64>>) -> bool {
    ends.is_none_or(|ends| ends.get(&record.partition()).is_some_and(|&end| record.offset() < end))
}

pub(crate) fn write_record(out: &mut impl Write, record: &ConsumedRecord, format: Output) -> std::io::Result<()> {
    match format {
        Output::Plain => {
            out.write_all(record.value())?;
            out.write_all(b"\n")
        }
        Output::Json => {
            serde_json::to_writer(&mut *out, &RecordJson::from(record))?;
            out.write_all(b"\n")
        }
    }
}
