//! The cases of `sluice bench retry`, each one member of a group of its own.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use sluice_client::{
    Backoff, Client, ConsumedRecord, GroupConsumer, GroupConsumerConfig, OffsetReset, ProducerConfig, ProducerRecord,
    RetryPolicy,
};

use super::{KEYS, per_second, since};
use crate::args::BenchRetryArgs;
use crate::bench::{new_histogram, record_latency};

/// How long one case may take before the benchmark gives up on it.
const CASE_LIMIT: Duration = Duration::from_secs(600);

/// How long one poll waits.
const POLL: Duration = Duration::from_millis(100);

/// The lateness case's backoff.
const LATENESS_BACKOFF: Duration = Duration::from_secs(2);

/// A member of `<topic>-g`, subscribed, with `retry`.
async fn member(client: &Client, topic: &str, retry: RetryPolicy, key_ordered: bool) -> Result<GroupConsumer> {
    let config = GroupConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        retry: Some(retry),
        key_ordered,
        ..GroupConsumerConfig::new(format!("{topic}-g"))
    };
    let mut consumer = client.group_consumer(config).context("cannot create a group consumer")?;
    consumer.subscribe(&[topic]).await.context("cannot join the group")?;
    Ok(consumer)
}

fn ladder(steps_ms: Vec<u64>, max_attempts: u32) -> RetryPolicy {
    RetryPolicy { backoff: Backoff::Ladder(steps_ms), max_attempts }
}

/// The number a benchmark message carries.
fn number(record: &ConsumedRecord) -> u64 {
    std::str::from_utf8(record.value()).ok().and_then(|v| v.parse().ok()).unwrap_or(u64::MAX)
}

/// Polls until `done` says so (or the case's limit passes), handing each record to `handle`.
async fn consume(
    consumer: &mut GroupConsumer,
    what: &str,
    mut handle: impl FnMut(&mut GroupConsumer, &ConsumedRecord) -> Result<()>,
    done: impl Fn() -> bool,
) -> Result<Duration> {
    let start = Instant::now();
    let mut next_report = start + Duration::from_secs(5);
    while !done() {
        if start.elapsed() > CASE_LIMIT {
            bail!("{what}: not done after {CASE_LIMIT:?}");
        }
        for record in consumer.poll(POLL).await.with_context(|| format!("{what}: a poll failed"))? {
            handle(consumer, &record)?;
        }
        if Instant::now() >= next_report {
            eprintln!("  {what}: {:.0} s", since(start));
            next_report += Duration::from_secs(5);
        }
    }
    Ok(start.elapsed())
}

/// When `percent` % of the messages fail once: messages a second until every message that did
/// not fail was processed (the flow past the failing ones), and the time until the failing
/// ones were processed too.
pub(super) async fn fail_rate(
    client: &Client,
    topic: &str,
    args: &BenchRetryArgs,
    percent: u64,
) -> Result<(f64, Duration)> {
    let mut consumer = member(client, topic, ladder(vec![100], 3), false).await?;
    let failing = |n: u64| n % 100 < percent;
    let flowing = (0..args.messages).filter(|&n| !failing(n)).count() as u64;
    let (flowed, processed) = (std::cell::Cell::new(0u64), std::cell::RefCell::new(HashSet::new()));
    let flow_done: std::cell::Cell<Option<Duration>> = std::cell::Cell::new(None);
    let start = Instant::now();
    let handle = |c: &mut GroupConsumer, r: &ConsumedRecord| {
        let n = number(r);
        if r.attempt() == 1 && failing(n) {
            return Ok(c.nack(r, None)?);
        }
        if r.attempt() > 1 {
            c.ack(r)?;
        }
        if processed.borrow_mut().insert(n) && !failing(n) {
            flowed.set(flowed.get() + 1);
            if flowed.get() == flowing {
                flow_done.set(Some(start.elapsed()));
            }
        }
        Ok(())
    };
    let what = format!("fail-rate {percent} %");
    let all = consume(&mut consumer, &what, handle, || processed.borrow().len() as u64 >= args.messages).await?;
    consumer.close().await.context("cannot leave the group")?;
    Ok((per_second(flowing, flow_done.get().unwrap_or(all)), all))
}

/// Nacks a second: every message nacked at once, retried an hour later.
pub(super) async fn nacks(client: &Client, topic: &str, args: &BenchRetryArgs) -> Result<f64> {
    let mut consumer = member(client, topic, ladder(vec![3_600_000], 2), false).await?;
    let nacked = std::cell::RefCell::new(HashSet::new());
    let handle = |c: &mut GroupConsumer, r: &ConsumedRecord| {
        c.nack(r, None)?;
        nacked.borrow_mut().insert((r.partition(), r.offset()));
        Ok(())
    };
    let mut elapsed = consume(&mut consumer, "nacks", handle, || nacked.borrow().len() as u64 >= args.messages).await?;
    let flush = Instant::now();
    consumer.flush_settles().await.context("cannot send the last nacks")?;
    elapsed += flush.elapsed();
    consumer.close().await.context("cannot leave the group")?;
    Ok(per_second(args.messages, elapsed))
}

/// Retry lateness, µs: `--rate` messages a second for `--duration`, each nacked at once.
pub(super) async fn lateness(client: &Client, topic: &str, args: &BenchRetryArgs) -> Result<Histogram<u64>> {
    let mut consumer = member(client, topic, ladder(vec![LATENESS_BACKOFF.as_millis() as u64], 2), false).await?;
    let sent = u64::from(args.rate) * args.duration.as_secs().max(1);
    let sender = tokio::spawn(send_steadily(client.clone(), topic.to_owned(), args.rate, sent));
    let nacked_at: std::cell::RefCell<HashMap<(u32, u64), Instant>> = std::cell::RefCell::new(HashMap::new());
    let histogram = std::cell::RefCell::new(new_histogram()?);
    let retried = std::cell::RefCell::new(HashSet::new());
    let handle = |c: &mut GroupConsumer, r: &ConsumedRecord| {
        let place = (r.partition(), r.offset());
        if r.attempt() == 1 {
            nacked_at.borrow_mut().entry(place).or_insert_with(Instant::now);
            return Ok(c.nack(r, None)?);
        }
        c.ack(r)?;
        if let Some(at) = nacked_at.borrow().get(&place)
            && retried.borrow_mut().insert(place)
        {
            let due = *at + LATENESS_BACKOFF;
            record_latency(&mut histogram.borrow_mut(), Instant::now().saturating_duration_since(due));
        }
        Ok(())
    };
    consume(&mut consumer, "lateness", handle, || retried.borrow().len() as u64 >= sent).await?;
    sender.await.context("the sender panicked")??;
    consumer.close().await.context("cannot leave the group")?;
    Ok(histogram.into_inner())
}

/// Sends `total` messages at `rate` a second, in steps of 10 ms.
async fn send_steadily(client: Client, topic: String, rate: u32, total: u64) -> Result<()> {
    let producer = client.producer(ProducerConfig::default()).await.context("cannot create a producer")?;
    let per_step = (u64::from(rate) / 100).max(1);
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    let mut deliveries = Vec::new();
    let mut n = 0;
    while n < total {
        ticker.tick().await;
        for _ in 0..per_step.min(total - n) {
            deliveries.push(producer.enqueue(ProducerRecord::new(topic.clone(), format!("{n}"))).await?);
            n += 1;
        }
    }
    for delivery in deliveries {
        delivery.await.context("a message was not acknowledged")?;
    }
    Ok(())
}

/// Messages a second of the keys other than `k0` in a key-ordered group, `k0` failing always
/// if `poisoned`.
pub(super) async fn poison(client: &Client, topic: &str, args: &BenchRetryArgs, poisoned: bool) -> Result<f64> {
    let mut consumer = member(client, topic, ladder(vec![100], 3), true).await?;
    let others = (0..args.messages).filter(|n| !n.is_multiple_of(KEYS)).count() as u64;
    let processed = std::cell::RefCell::new(HashSet::new());
    let handle = |c: &mut GroupConsumer, r: &ConsumedRecord| {
        let n = number(r);
        if n.is_multiple_of(KEYS) {
            if poisoned {
                c.nack(r, None)?;
            }
            return Ok(());
        }
        if r.attempt() > 1 {
            c.ack(r)?;
        }
        processed.borrow_mut().insert(n);
        Ok(())
    };
    let what = if poisoned { "poison, k0 poisoned" } else { "poison, no poison" };
    let elapsed = consume(&mut consumer, what, handle, || processed.borrow().len() as u64 >= others).await?;
    consumer.close().await.context("cannot leave the group")?;
    Ok(per_second(others, elapsed))
}
