//! `sluice produce TOPIC --transaction`: every message of the input in one transaction of a
//! [`TransactionalProducer`], committed at the end of the input (or aborted with `--abort`),
//! so `read_committed` consumers see all of them or none. The summary goes to standard error
//! like the plain produce's; `--output json` also prints it as one JSON object on standard
//! output.
//!
//! A failure or Ctrl-C before the end of the input aborts the transaction rather than leave
//! it open (and the partitions' last stable offsets held back) until its timeout.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};

use anyhow::{Context, Result, anyhow};
use sluice_client::{Client, TransactionalConfig, TransactionalProducer};

use crate::args::{Output, ProduceArgs};
use crate::produce::{Template, stdin_lines};

pub(crate) async fn run(client: &Client, args: ProduceArgs) -> Result<()> {
    let id = args.txn.transactional_id.clone().unwrap_or_else(default_transactional_id);
    let config = TransactionalConfig { timeout: args.txn.transaction_timeout, ..TransactionalConfig::new(&id) };
    let mut producer =
        client.transactional_producer(config).await.with_context(|| format!("cannot start transactional id {id}"))?;
    let (producer_id, epoch) = producer.identity();
    let mut summary = TxnSummary {
        transactional_id: id,
        producer_id,
        epoch,
        topic: args.topic.clone(),
        messages: 0,
        partitions: BTreeSet::new(),
        outcome: TxnOutcome::Aborted,
    };
    producer.begin()?;
    let template = Template::new(&args);
    let input = if args.values.is_empty() {
        send_stdin(&mut producer, &template, &mut summary).await
    } else {
        send_values(&mut producer, &template, args.values.clone(), &mut summary).await
    };
    let ended = end(&mut producer, input, args.txn.abort, &mut summary).await;
    eprintln!("{}", summary.plain());
    if args.output.output == Output::Json {
        crate::print_json(&summary.json())?;
    }
    ended
}

/// How the input ended.
enum Input {
    /// All of it was sent.
    Complete,
    /// Ctrl-C came first.
    Interrupted,
}

/// What happened to the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxnOutcome {
    Committed,
    Aborted,
    /// The commit failed: the coordinator decides (and aborts it at its timeout if nothing
    /// else ends it).
    Unknown,
}

/// What `produce --transaction` did.
#[derive(Debug)]
struct TxnSummary {
    transactional_id: String,
    producer_id: i64,
    epoch: i16,
    topic: String,
    messages: u64,
    partitions: BTreeSet<u32>,
    outcome: TxnOutcome,
}

/// `sluice-cli-PID-RANDOM`: unique enough that two runs never fence each other.
fn default_transactional_id() -> String {
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    format!("sluice-cli-{}-{:08x}", std::process::id(), random as u32)
}

async fn send_values(
    producer: &mut TransactionalProducer,
    template: &Template,
    values: Vec<String>,
    summary: &mut TxnSummary,
) -> Result<Input> {
    for value in values {
        let partition = producer.send(template.record(value.into())).await?;
        summary.add(partition);
    }
    Ok(Input::Complete)
}

async fn send_stdin(
    producer: &mut TransactionalProducer,
    template: &Template,
    summary: &mut TxnSummary,
) -> Result<Input> {
    let mut lines = stdin_lines();
    loop {
        let line = tokio::select! {
            line = lines.recv() => line,
            _ = tokio::signal::ctrl_c() => return Ok(Input::Interrupted),
        };
        let Some(line) = line else { return Ok(Input::Complete) };
        let line = line.context("cannot read standard input")?;
        let partition = producer.send(template.record(line.into())).await?;
        summary.add(partition);
    }
}

/// Commits or aborts as asked once the input is complete; aborts after a failure or Ctrl-C,
/// returning why.
async fn end(
    producer: &mut TransactionalProducer,
    input: Result<Input>,
    abort: bool,
    summary: &mut TxnSummary,
) -> Result<()> {
    let failure = match input {
        Ok(Input::Complete) if !abort => {
            let committed = producer.commit().await;
            summary.outcome = if committed.is_ok() { TxnOutcome::Committed } else { TxnOutcome::Unknown };
            return committed.with_context(|| {
                format!(
                    "the commit failed; the transaction's outcome is its coordinator's: see `sluice txn describe {}`",
                    summary.transactional_id
                )
            });
        }
        Ok(Input::Complete) => None,
        Ok(Input::Interrupted) => Some(anyhow!("interrupted")),
        Err(e) => Some(e),
    };
    let aborted = producer.abort().await;
    summary.outcome = if aborted.is_ok() { TxnOutcome::Aborted } else { TxnOutcome::Unknown };
    match (failure, aborted) {
        (None, aborted) => aborted.context("cannot abort the transaction"),
        (Some(failure), Ok(())) => Err(failure.context("the transaction was aborted")),
        (Some(failure), Err(e)) => Err(failure
            .context(format!("the transaction could not be aborted ({e}); its coordinator aborts it at its timeout"))),
    }
}

impl TxnOutcome {
    fn name(self) -> &'static str {
        match self {
            TxnOutcome::Committed => "committed",
            TxnOutcome::Aborted => "aborted",
            TxnOutcome::Unknown => "unknown",
        }
    }
}

impl TxnSummary {
    fn add(&mut self, partition: u32) {
        self.messages += 1;
        self.partitions.insert(partition);
    }

    fn partition_list(&self) -> String {
        self.partitions.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
    }

    /// The line for standard error.
    fn plain(&self) -> String {
        let (what, transaction) = match self.outcome {
            TxnOutcome::Committed => ("committed to", "one transaction"),
            TxnOutcome::Aborted => ("aborted on", "one transaction"),
            TxnOutcome::Unknown => ("sent to", "one transaction of unknown outcome"),
        };
        let partitions = match self.partitions.len() {
            0 => String::new(),
            1 => format!(", partition {}", self.partition_list()),
            _ => format!(", partitions {}", self.partition_list()),
        };
        format!(
            "{} messages {what} {} in {transaction} (transactional id {}, producer id {}, epoch {}{partitions})",
            self.messages, self.topic, self.transactional_id, self.producer_id, self.epoch
        )
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "transactional_id": self.transactional_id,
            "producer_id": self.producer_id,
            "epoch": self.epoch,
            "topic": self.topic,
            "messages": self.messages,
            "partitions": self.partitions,
            "outcome": self.outcome.name(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(outcome: TxnOutcome, partitions: &[u32]) -> TxnSummary {
        TxnSummary {
            transactional_id: "orders-1".into(),
            producer_id: 7,
            epoch: 3,
            topic: "orders".into(),
            messages: 5,
            partitions: partitions.iter().copied().collect(),
            outcome,
        }
    }

    #[test]
    fn default_ids_are_valid_and_distinct() {
        let (a, b) = (default_transactional_id(), default_transactional_id());
        assert_ne!(a, b);
        let prefix = format!("sluice-cli-{}-", std::process::id());
        assert!(a.starts_with(&prefix), "{a}");
        assert_eq!(a.len(), prefix.len() + 8, "{a}");
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)), "{a}");
    }

    #[test]
    fn the_summary_says_what_happened() {
        let committed = summary(TxnOutcome::Committed, &[0, 2]).plain();
        assert_eq!(
            committed,
            "5 messages committed to orders in one transaction (transactional id orders-1, producer id 7, \
             epoch 3, partitions 0,2)"
        );
        assert!(summary(TxnOutcome::Aborted, &[1]).plain().starts_with("5 messages aborted on orders"));
        assert!(summary(TxnOutcome::Aborted, &[1]).plain().ends_with("epoch 3, partition 1)"));
        assert_eq!(
            summary(TxnOutcome::Unknown, &[]).plain(),
            "5 messages sent to orders in one transaction of unknown outcome (transactional id orders-1, \
             producer id 7, epoch 3)"
        );
    }

    #[test]
    fn the_json_summary_is_one_object() {
        assert_eq!(
            summary(TxnOutcome::Committed, &[2, 0]).json(),
            serde_json::json!({
                "transactional_id": "orders-1", "producer_id": 7, "epoch": 3, "topic": "orders",
                "messages": 5, "partitions": [0, 2], "outcome": "committed"
            })
        );
    }
}
