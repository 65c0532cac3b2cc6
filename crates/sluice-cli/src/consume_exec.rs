//! `sluice consume TOPIC --group G --exec CMD`: a worker that runs `sh -c CMD` once per message
//! (docs/RETRIES.md). The value goes to its standard input, the rest to its environment
//! (SLUICE_KEY, SLUICE_TAG, SLUICE_TOPIC, SLUICE_PARTITION, SLUICE_OFFSET, SLUICE_ATTEMPT and
//! SLUICE_PROP_<name>); exit status 0 acknowledges the message, any other nacks it, so the
//! group's retry policy and dead-letter queue apply. Up to `--concurrency` commands run at
//! once. Positions are auto-committed (a message is committed once its command has ended and
//! the worker polled again: at least once). Runs until interrupted, then leaves the group.

use std::io::Write;
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{Context, Result};
use futures_util::StreamExt;
use sluice_client::{Client, ConsumedRecord, GroupConsumer, GroupConsumerConfig};

use crate::args::ConsumeArgs;
use crate::consume::POLL_WAIT;

pub(crate) async fn run(client: &Client, config: GroupConsumerConfig, args: &ConsumeArgs, command: &str) -> Result<()> {
    let group = config.group.clone();
    let mut consumer = client.group_consumer(GroupConsumerConfig { auto_commit: true, ..config })?;
    consumer.subscribe(&[args.topic.as_str()]).await.with_context(|| format!("cannot join group {group}"))?;
    let worked = work(&mut consumer, command, args.exec.concurrency as usize).await;
    let closed = consumer.close().await.with_context(|| format!("leaving group {group}"));
    worked.and(closed)
}

async fn work(consumer: &mut GroupConsumer, command: &str, concurrency: usize) -> Result<()> {
    loop {
        let polled = tokio::select! {
            polled = consumer.poll(POLL_WAIT) => polled,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let records = match polled {
            Ok(records) => records,
            // A broker or coordinator moving: the member carries on.
            Err(e) if e.is_retriable() => {
                eprintln!("warning: {e}; retrying");
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("consuming as a member of group {}", consumer.group())),
        };
        let runs = records.iter().map(|record| run_one(command, record));
        let statuses: Vec<_> = futures_util::stream::iter(runs).buffered(concurrency).collect().await;
        for (record, status) in records.iter().zip(statuses) {
            match status {
                Ok(status) if status.success() => consumer.ack(record)?,
                Ok(status) => consumer.nack_because(record, None, format!("{command}: {status}"))?,
                Err(e) => consumer.nack_because(record, None, format!("cannot run {command}: {e}"))?,
            }
        }
    }
}

/// Runs the command for one record on a blocking thread (the runtime does not spawn
/// processes itself), feeding it the value.
async fn run_one(command: &str, record: &ConsumedRecord) -> std::io::Result<ExitStatus> {
    let mut child = Command::new("sh");
    child.arg("-c").arg(command).envs(environment(record)).stdin(Stdio::piped());
    let value = record.value().clone();
    let ran = tokio::task::spawn_blocking(move || {
        let mut child = child.spawn()?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // A command that does not read its input closes the pipe: not a failure of its own.
        if let Err(e) = stdin.write_all(&value)
            && e.kind() != std::io::ErrorKind::BrokenPipe
        {
            return Err(e);
        }
        drop(stdin);
        child.wait()
    });
    ran.await.map_err(std::io::Error::other)?
}

/// The record's place and fields as environment variables. Property names become
/// `SLUICE_PROP_` followed by the name with every character other than a letter, digit or
/// `_` replaced by `_`.
fn environment(record: &ConsumedRecord) -> Vec<(String, String)> {
    let mut vars = vec![
        ("SLUICE_TOPIC".to_owned(), record.topic().to_owned()),
        ("SLUICE_PARTITION".to_owned(), record.partition().to_string()),
        ("SLUICE_OFFSET".to_owned(), record.offset().to_string()),
        ("SLUICE_ATTEMPT".to_owned(), record.attempt().to_string()),
        ("SLUICE_KEY".to_owned(), record.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default()),
        ("SLUICE_TAG".to_owned(), record.tag().unwrap_or_default().to_owned()),
    ];
    for (name, value) in record.properties() {
        let name: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
        vars.push((format!("SLUICE_PROP_{name}"), value.to_owned()));
    }
    vars
}
