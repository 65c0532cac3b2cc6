//! Reads: the transactions' topic from its earliest offset to its end, read_committed then
//! read_uncommitted.

use std::collections::BTreeMap;

use sluice_client::{Consumer, ConsumerConfig, SeekTo};

use super::*;
use crate::args::IsolationLevel;

/// How long one poll waits.
const POLL_WAIT: Duration = Duration::from_millis(200);

/// One read of the topic.
pub(super) struct ReadRow {
    pub(super) isolation: IsolationLevel,
    /// Operations are polls that returned records.
    pub(super) tally: Tally,
}

pub(super) async fn run(ctx: &Ctx) -> Result<Vec<ReadRow>> {
    let mut rows = Vec::new();
    for isolation in [IsolationLevel::ReadCommitted, IsolationLevel::ReadUncommitted] {
        if ctx.stop.load(Ordering::Relaxed) {
            break;
        }
        eprintln!("read: {} from the earliest offset, {}", ctx.txn_topic, isolation.name());
        rows.push(ReadRow { isolation, tally: read(ctx, isolation).await? });
    }
    Ok(rows)
}

/// Reads every partition from its earliest offset to the end offset it had at the start (the
/// last stable offset for read_committed), or until [`READ_LIMIT`].
async fn read(ctx: &Ctx, isolation: IsolationLevel) -> Result<Tally> {
    let config = ConsumerConfig { start: SeekTo::Earliest, isolation: isolation.sdk(), ..ConsumerConfig::default() };
    let mut consumer = ctx.client.consumer(config)?;
    consumer.assign(&ctx.txn_topic, &[]).await?;
    for partition in consumer.assignment() {
        consumer.seek(partition, SeekTo::Earliest).await?;
    }
    let ends = consumer.end_offsets().await?;
    let mut tally = Tally::new()?;
    let (started, deadline) = (Instant::now(), Instant::now() + READ_LIMIT);
    while !caught_up(&consumer, &ends) && ctx.running(deadline) {
        let polled = Instant::now();
        let records = match consumer.poll(POLL_WAIT).await {
            Ok(records) => records,
            Err(e) => {
                tally.fail(e);
                break;
            }
        };
        let (messages, bytes) = records
            .iter()
            .filter(|r| ends.get(&r.partition()).is_some_and(|&end| r.offset() < end))
            .fold((0, 0), |(m, b), r| (m + 1, b + r.value().len() as u64));
        if messages > 0 {
            tally.done(polled, messages);
            tally.bytes += bytes;
        }
    }
    tally.seconds = started.elapsed().as_secs_f64();
    tally.complete = caught_up(&consumer, &ends);
    Ok(tally)
}

fn caught_up(consumer: &Consumer, ends: &BTreeMap<u32, u64>) -> bool {
    ends.iter().all(|(&p, &end)| consumer.position(p).is_some_and(|position| position >= end))
}
