//! `sluice consume TOPIC --group G`: prints the messages of the partitions the group gives
//! this member, from the group's committed offsets, and commits each batch once it is
//! printed (so a message printed is never delivered to the group again, and one not printed
//! is). Without `--follow` it stops once its partitions reach the end offsets the topic had
//! when the command started; `--max` stops after that many messages, committing exactly
//! those. It leaves the group when it stops (Ctrl-C included).

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sluice_client::{Client, ErrorCode, GroupConsumer, GroupConsumerConfig, OffsetReset, SeekTo, TopicPartition};

use crate::args::{ConsumeArgs, IsolationLevel};
use crate::consume::{POLL_WAIT, before_end, write_record};

/// Without `--follow`, how long a member that was given no partition waits for one before
/// it stops (a crashed member's partitions are freed after its session timeout, 10 s).
const NO_PARTITIONS_WAIT: Duration = Duration::from_secs(15);

/// Where a member stands against the end offsets it stops at.
#[derive(Debug, PartialEq, Eq)]
enum Progress {
    /// Every partition it owns is at or past its end offset.
    CaughtUp,
    Reading,
    /// It owns no partition (other members have them all, or none was handed over yet).
    NoPartitions,
}

pub(crate) async fn run(client: &Client, args: ConsumeArgs, group: &str) -> Result<()> {
    let reset = match args.from {
        SeekTo::Earliest => OffsetReset::Earliest,
        SeekTo::Latest => OffsetReset::Latest,
        _ => bail!(
            "with --group, --from is earliest or latest: where to start the partitions the group has \
             committed nothing for. To move the group's offsets, stop its consumers and run \
             `sluice group reset {group} --topic {} --to ...`",
            args.topic
        ),
    };
    let description = client.admin().describe_topic(&args.topic).await?;
    let ends = if args.follow {
        None
    } else {
        // A read_committed member reads no further than the last stable offset: waiting for
        // the log end behind a transaction still open would never end.
        let committed = args.isolation.isolation == IsolationLevel::ReadCommitted;
        let mut ends = BTreeMap::new();
        for p in &description.partitions {
            let end = if committed { &p.last_stable_offset } else { &p.log_end_offset };
            let end = end.as_ref().map_err(|e| anyhow::anyhow!("{}/{}: {e}", args.topic, p.partition))?;
            ends.insert(p.partition, *end);
        }
        Some(ends)
    };
    // Each printed batch is committed exactly, so auto-commit is off.
    let policy = args.exec.policy.given().then(|| args.exec.policy.policy()).transpose().map_err(anyhow::Error::msg)?;
    let config = GroupConsumerConfig {
        retry: policy.as_ref().map(|p| p.retry.clone()),
        key_ordered: policy.as_ref().is_some_and(|p| p.key_ordered),
        auto_commit: false,
        auto_offset_reset: reset,
        filter: args.filter.filter()?,
        broadcast: args.broadcast,
        instance_id: args.instance_id.clone(),
        isolation: args.isolation.isolation.sdk(),
        ..GroupConsumerConfig::new(group)
    };
    if let Some(command) = args.exec.exec.clone() {
        return crate::consume_exec::run(client, config, &args, &command).await;
    }
    let mut consumer = client.group_consumer(config)?;
    consumer.subscribe(&[args.topic.as_str()]).await.with_context(|| format!("cannot join group {group}"))?;
    let printed = print_records(&mut consumer, &args, ends.as_ref()).await;
    let closed = consumer.close().await.with_context(|| format!("leaving group {group}"));
    printed.and(closed)
}

async fn print_records(
    consumer: &mut GroupConsumer,
    args: &ConsumeArgs,
    ends: Option<&BTreeMap<u32, u64>>,
) -> Result<()> {
    let mut out = BufWriter::new(std::io::stdout());
    let mut left = args.max.unwrap_or(u64::MAX);
    let mut had_partitions_at = Instant::now();
    let mut polled = false;
    while left > 0 {
        if let Some(ends) = ends.filter(|_| polled) {
            match progress(consumer, ends) {
                Progress::CaughtUp => break,
                Progress::NoPartitions if had_partitions_at.elapsed() >= NO_PARTITIONS_WAIT => {
                    eprintln!("group {} gave this member no partition of {}; stopping", consumer.group(), args.topic);
                    break;
                }
                Progress::NoPartitions => {}
                Progress::Reading => had_partitions_at = Instant::now(),
            }
        }
        let records = tokio::select! {
            records = consumer.poll(POLL_WAIT) => records?,
            _ = tokio::signal::ctrl_c() => break,
        };
        polled = true;
        // The next offset of each partition printed from.
        let mut done: BTreeMap<u32, u64> = BTreeMap::new();
        for record in records.iter().filter(|r| before_end(r, ends)) {
            if left == 0 {
                break;
            }
            write_record(&mut out, record, args.output.output)?;
            left -= 1;
            // A retry (attempt > 1) is of an offset already passed: it moves no position.
            if record.attempt() == 1 {
                let next = done.entry(record.partition()).or_default();
                *next = (*next).max(record.offset() + 1);
            }
        }
        out.flush()?;
        commit(consumer, &args.topic, done).await?;
    }
    out.flush()?;
    Ok(())
}

fn progress(consumer: &GroupConsumer, ends: &BTreeMap<u32, u64>) -> Progress {
    let owned = consumer.assignment();
    if owned.is_empty() {
        return Progress::NoPartitions;
    }
    let at_end = |tp: &TopicPartition| {
        let end = ends.get(&tp.partition()).copied().unwrap_or(0);
        consumer.position(tp).is_some_and(|position| position >= end)
    };
    if owned.iter().all(at_end) { Progress::CaughtUp } else { Progress::Reading }
}

/// Commits what was printed. A member that lost its partitions meanwhile cannot commit:
/// what it printed since its last commit will be delivered to the group again, which is
/// said on standard error, and reading goes on.
async fn commit(consumer: &mut GroupConsumer, topic: &str, done: BTreeMap<u32, u64>) -> Result<()> {
    if done.is_empty() {
        return Ok(());
    }
    let offsets = done.into_iter().map(|(partition, offset)| (TopicPartition::new(topic, partition), offset)).collect();
    match consumer.commit_offsets(&offsets).await {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.code(), Some(ErrorCode::UnknownMemberId | ErrorCode::FencedMemberEpoch)) => {
            eprintln!("warning: could not commit what was printed ({e}); it will be delivered again");
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("cannot commit to group {}", consumer.group())),
    }
}
