//! `sluice produce`: sends the VALUEs given, or each line of standard input, batched by the
//! SDK's producer, and reports on standard error how many were acknowledged. With
//! `--transaction`, all of them in one transaction instead (`produce_txn.rs`).

use std::collections::VecDeque;
use std::io::BufRead;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use sluice_client::{Acks as AckLevel, Client, Delivery, ProducerConfig, ProducerRecord};
use tokio::sync::mpsc;

use crate::args::{Output, ProduceArgs};

/// Lines read ahead of the producer.
const STDIN_QUEUE_LINES: usize = 4096;

pub(crate) async fn run(client: &Client, args: ProduceArgs) -> Result<()> {
    if args.txn.transaction {
        return crate::produce_txn::run(client, args).await;
    }
    let level = if args.oneway { AckLevel::None } else { args.acks };
    let config = ProducerConfig {
        acks: level,
        compression: args.compression.compression,
        compression_level: args.compression.level(),
        ..ProducerConfig::default()
    };
    let producer = client.producer(config).await?;
    let template = Template::new(&args);
    let mut acks = Acks { output: args.output.output, ..Acks::default() };
    let outcome = if args.values.is_empty() {
        send_stdin(&producer, &template, &mut acks).await
    } else {
        send_values(&producer, &template, args.values, &mut acks).await
    };
    producer.flush().await;
    acks.wait_all().await;
    if acks.sent > 0 || outcome.is_ok() {
        eprintln!("{}", summary(&acks, level, &args.topic, producer.failed_batches()));
    }
    outcome?;
    if let Some(error) = acks.first_error {
        bail!("{} messages were not acknowledged: {error}", acks.sent - acks.acknowledged);
    }
    Ok(())
}

async fn send_values(
    producer: &sluice_client::Producer,
    template: &Template,
    values: Vec<String>,
    acks: &mut Acks,
) -> Result<()> {
    for value in values {
        acks.push(producer.enqueue(template.record(value.into())).await?);
    }
    Ok(())
}

async fn send_stdin(producer: &sluice_client::Producer, template: &Template, acks: &mut Acks) -> Result<()> {
    let mut lines = stdin_lines();
    while let Some(line) = lines.recv().await {
        let line = line.context("cannot read standard input")?;
        acks.push(producer.enqueue(template.record(line.into())).await?);
        acks.reap();
    }
    Ok(())
}

/// Each line of standard input, read ahead of the producer.
pub(crate) fn stdin_lines() -> mpsc::Receiver<std::io::Result<String>> {
    let (lines_tx, lines) = mpsc::channel(STDIN_QUEUE_LINES);
    // A plain thread: a blocked read of standard input must not keep the runtime from exiting.
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if lines_tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    lines
}

/// Everything but the value, the same for every message.
pub(crate) struct Template {
    topic: Arc<str>,
    key: Option<Bytes>,
    tag: Option<String>,
    partition: Option<u32>,
    properties: Vec<(String, String)>,
    delay: Option<std::time::Duration>,
    deliver_at: Option<u64>,
}

impl Template {
    pub(crate) fn new(args: &ProduceArgs) -> Template {
        Template {
            topic: Arc::from(args.topic.as_str()),
            key: args.key.clone().map(Bytes::from),
            tag: args.tag.clone(),
            partition: args.partition,
            properties: args.properties.clone(),
            delay: args.delay,
            deliver_at: args.deliver_at,
        }
    }

    pub(crate) fn record(&self, value: Bytes) -> ProducerRecord {
        let mut record = ProducerRecord::new(Arc::clone(&self.topic), value);
        if let Some(key) = &self.key {
            record = record.key(key.clone());
        }
        if let Some(tag) = &self.tag {
            record = record.tag(tag.clone());
        }
        if let Some(partition) = self.partition {
            record = record.partition(partition);
        }
        for (name, value) in &self.properties {
            record = record.property(name.clone(), value.clone());
        }
        if let Some(delay) = self.delay {
            record = record.delay(delay);
        }
        if let Some(at) = self.deliver_at {
            record = record.deliver_at(at);
        }
        record
    }
}

/// What the producer says of the messages once they are all done, by acknowledgement level.
fn summary(acks: &Acks, level: AckLevel, topic: &str, failed_batches: u64) -> String {
    let (done, sent) = (acks.acknowledged, acks.sent);
    match level {
        AckLevel::All => format!("{done} of {sent} messages acknowledged by {topic}"),
        AckLevel::Leader => format!(
            "{done} of {sent} messages acknowledged by {topic}'s leaders (not yet replicated: a leader dying now \
             loses them)"
        ),
        AckLevel::None if failed_batches == 0 => {
            format!("{done} of {sent} messages sent to {topic} unacknowledged; no failure seen")
        }
        AckLevel::None => format!(
            "{done} of {sent} messages sent to {topic} unacknowledged; {failed_batches} batches or streams failed \
             (some messages may be lost)"
        ),
    }
}

/// Counts acknowledgements without keeping finished deliveries around.
#[derive(Default)]
struct Acks {
    pending: VecDeque<Delivery>,
    sent: u64,
    acknowledged: u64,
    first_error: Option<sluice_client::Error>,
    output: Output,
}

impl Acks {
    fn push(&mut self, delivery: Delivery) {
        self.sent += 1;
        self.pending.push_back(delivery);
    }

    /// Counts the deliveries at the front that have finished.
    fn reap(&mut self) {
        while let Some(result) = self.pending.front().and_then(Delivery::try_result) {
            self.pending.pop_front();
            self.count(result);
        }
    }

    async fn wait_all(&mut self) {
        while let Some(delivery) = self.pending.pop_front() {
            let result = delivery.wait().await;
            self.count(result);
        }
    }

    fn count(&mut self, result: sluice_client::Result<sluice_client::RecordMetadata>) {
        match result {
            Ok(meta) => {
                self.acknowledged += 1;
                print_ack(&meta, self.output);
            }
            Err(e) => {
                self.first_error.get_or_insert(e);
            }
        }
    }
}

/// Prints a delayed message's id (plain), or any message's place (json). A closed standard
/// output does not stop the sending.
fn print_ack(meta: &sluice_client::RecordMetadata, output: Output) {
    let line = match (output, meta.delayed_id) {
        (Output::Plain, Some(id)) => format!("{id}\n"),
        (Output::Plain, None) => return,
        (Output::Json, Some(id)) => {
            format!("{}\n", serde_json::json!({"partition": meta.partition, "delayed_id": id.to_string()}))
        }
        // Acknowledged before its commit (--acks leader or none): no offset yet.
        (Output::Json, None) => {
            let offset = meta.has_offset().then_some(meta.offset);
            format!("{}\n", serde_json::json!({"partition": meta.partition, "offset": offset}))
        }
    };
    let _ = crate::print(&line);
}
