//! `sluice bench retry`: what retries cost, side by side in one run (docs/RETRIES.md), each
//! case on a topic and group of its own:
//!
//! 1. **fail-rate**: one member processes `--messages` messages, then the same with 1 % of
//!    them failing once (nacked at attempt 1, acked at attempt 2, a 100 ms backoff): the
//!    group's throughput past the failing messages (until every message that did not fail is
//!    processed), and when the retried ones are done too.
//! 2. **nacks**: one member nacks every message of `--messages` (each retried an hour later):
//!    nacks per second the coordinators store (the settles go in batches, replicated).
//! 3. **lateness**: `--rate` messages a second for `--duration`, each nacked at once with a
//!    2 s backoff, so `--rate` retries fall due a second: each retry's receipt less its nack
//!    time plus the backoff (p50, p99, max).
//! 4. **poison**: a key-ordered group over 16 keys, without and with a poison key (every
//!    message of key `k0` fails always): the throughput of the 15 other keys in both.

mod cases;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde_json::json;
use sluice_client::{Client, ProducerConfig, ProducerRecord};

use crate::args::{BenchRetryArgs, Output};
use crate::bench::{ensure_topic, latency_json, latency_ms_line, now_ms};
use crate::{print, print_json};

/// Keys of the poison case.
const KEYS: u64 = 16;

/// What one run measured.
#[derive(Debug, Default)]
struct Figures {
    /// Messages a second processed with none failing, and with 1 % failing once (until every
    /// message not failing was processed), and how long until every message was.
    clean_per_s: f64,
    failing_per_s: f64,
    clean_all: Duration,
    failing_all: Duration,
    /// Nacks a second stored.
    nacks_per_s: f64,
    /// Retry lateness, µs, and the retries due a second it was measured at.
    lateness: Option<Histogram<u64>>,
    /// Messages a second of the keys other than `k0`, without and with `k0` poisoned.
    other_keys_per_s: f64,
    other_keys_poisoned_per_s: f64,
}

pub(crate) async fn run(client: &Client, args: BenchRetryArgs) -> Result<()> {
    let run_id = now_ms();
    let topic = |case: &str| format!("sluice-bench-retry-{run_id}-{case}");
    let mut f = Figures::default();
    eprintln!("fail-rate: {} messages, none failing, then 1 % failing once", args.messages);
    let clean = setup(client, &args, &topic("clean"), false).await?;
    (f.clean_per_s, f.clean_all) = cases::fail_rate(client, &clean, &args, 0).await?;
    let failing = setup(client, &args, &topic("failing"), false).await?;
    (f.failing_per_s, f.failing_all) = cases::fail_rate(client, &failing, &args, 1).await?;
    eprintln!("nacks: {} messages, each nacked", args.messages);
    f.nacks_per_s = cases::nacks(client, &setup(client, &args, &topic("nacks"), false).await?, &args).await?;
    eprintln!("lateness: {} retries due a second for {:?}", args.rate, args.duration);
    let late = topic("lateness");
    ensure_topic(client, &late, args.partitions, args.replication_factor).await?;
    f.lateness = Some(cases::lateness(client, &late, &args).await?);
    eprintln!("poison: a key-ordered group of {KEYS} keys, without and with key k0 failing always");
    f.other_keys_per_s =
        cases::poison(client, &setup(client, &args, &topic("keys"), true).await?, &args, false).await?;
    let poisoned = setup(client, &args, &topic("poison"), true).await?;
    f.other_keys_poisoned_per_s = cases::poison(client, &poisoned, &args, true).await?;
    match args.output.output {
        Output::Json => print_json(&json_of(&f, &args))?,
        Output::Plain => print(&plain(&f, &args))?,
    }
    Ok(())
}

/// Creates `topic` and fills it with `--messages` messages (keyed `k0`..`k15` round robin if
/// `keyed`); returns its name.
async fn setup(client: &Client, args: &BenchRetryArgs, topic: &str, keyed: bool) -> Result<String> {
    ensure_topic(client, topic, args.partitions, args.replication_factor).await?;
    let producer = client.producer(ProducerConfig::default()).await.context("cannot create a producer")?;
    let mut deliveries = Vec::with_capacity(args.messages as usize);
    for n in 0..args.messages {
        let mut record = ProducerRecord::new(topic.to_owned(), format!("{n}"));
        if keyed {
            record = record.key(format!("k{}", n % KEYS));
        }
        deliveries.push(producer.enqueue(record).await.context("cannot send")?);
    }
    for delivery in deliveries {
        delivery.await.context("a message was not acknowledged")?;
    }
    Ok(topic.to_owned())
}

/// Messages a second: `n` in `elapsed`.
fn per_second(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Seconds since `start`, for progress lines.
fn since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

fn json_of(f: &Figures, args: &BenchRetryArgs) -> serde_json::Value {
    json!({
        "messages": args.messages,
        "partitions": args.partitions,
        "fail_rate": {
            "none_failing_msgs_per_s": f.clean_per_s,
            "one_percent_failing_once_msgs_per_s": f.failing_per_s,
            "ratio": f.failing_per_s / f.clean_per_s.max(1e-9),
            "none_failing_all_done_s": f.clean_all.as_secs_f64(),
            "one_percent_failing_all_done_s": f.failing_all.as_secs_f64(),
        },
        "nacks_per_s": f.nacks_per_s,
        "lateness": {
            "retries_due_per_s": args.rate,
            "ms": f.lateness.as_ref().map(latency_json),
        },
        "poison": {
            "other_keys_msgs_per_s": f.other_keys_per_s,
            "other_keys_with_poison_msgs_per_s": f.other_keys_poisoned_per_s,
            "ratio": f.other_keys_poisoned_per_s / f.other_keys_per_s.max(1e-9),
        },
    })
}

fn plain(f: &Figures, args: &BenchRetryArgs) -> String {
    let late = f.lateness.as_ref().map_or_else(|| "-".to_owned(), latency_ms_line);
    format!(
        "messages {} over {} partitions\n\
         fail-rate: none failing {:.0} msgs/s; 1 % failing once {:.0} msgs/s past them ({:.1} %), all retried \
         and done after {:.2} s (none failing: {:.2} s)\n\
         nacks: {:.0} nacks/s\n\
         lateness at {} retries due/s (ms): {late}\n\
         poison: other keys {:.0} msgs/s; with key k0 poisoned {:.0} msgs/s ({:.1} %)\n",
        args.messages,
        args.partitions,
        f.clean_per_s,
        f.failing_per_s,
        100.0 * f.failing_per_s / f.clean_per_s.max(1e-9),
        f.failing_all.as_secs_f64(),
        f.clean_all.as_secs_f64(),
        f.nacks_per_s,
        args.rate,
        f.other_keys_per_s,
        f.other_keys_poisoned_per_s,
        100.0 * f.other_keys_poisoned_per_s / f.other_keys_per_s.max(1e-9),
    )
}
