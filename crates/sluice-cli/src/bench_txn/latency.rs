//! Latency: plain sends, then transactions over 1, 4 and 8 partitions, N of each, each
//! awaited before the next on its producer.

use futures_util::future::try_join_all;
use sluice_client::{Producer, ProducerConfig, ProducerRecord, TransactionalConfig, TransactionalProducer};

use super::*;

/// One row of the latency table.
pub(super) struct LatencyRow {
    /// Partitions per transaction; `None` for the plain sends.
    pub(super) width: Option<u32>,
    pub(super) tally: Tally,
}

pub(super) async fn run(ctx: &Ctx, widths: &[u32], count: u64) -> Result<Vec<LatencyRow>> {
    let mut rows = vec![LatencyRow { width: None, tally: plain(ctx, count).await? }];
    for &width in widths {
        if ctx.stop.load(Ordering::Relaxed) {
            break;
        }
        rows.push(LatencyRow { width: Some(width), tally: transactions(ctx, width, count).await? });
    }
    Ok(rows)
}

/// The partition of message `j` of operation `n` of worker `index`: operations rotate over
/// the partitions so each is written as often.
fn partition_of(ctx: &Ctx, n: u64, index: u32, width: u32, j: u32) -> u32 {
    let first = (n * u64::from(ctx.producers) + u64::from(index)) * u64::from(width);
    ((first + u64::from(j)) % u64::from(ctx.partitions)) as u32
}

async fn plain(ctx: &Ctx, count: u64) -> Result<Tally> {
    eprintln!("latency: {count} plain sends to {}", ctx.plain_topic);
    // No linger: a send is acknowledged as soon as the cluster can, as a commit's writes are.
    let config = ProducerConfig { linger: Duration::ZERO, ..ProducerConfig::default() };
    let producers = try_join_all((0..ctx.producers).map(|_| ctx.client.producer(config.clone()))).await?;
    let deadline = Instant::now() + LATENCY_PHASE_LIMIT;
    let started = Instant::now();
    let workers = (0..ctx.producers)
        .zip(producers)
        .map(|(index, producer)| tokio::spawn(send_plain(ctx.clone(), producer, index, count, deadline)))
        .collect();
    gather(workers, started, Some(count)).await
}

async fn send_plain(ctx: Ctx, producer: Producer, index: u32, count: u64, deadline: Instant) -> Result<Tally> {
    let mut tally = Tally::new()?;
    let record = ProducerRecord::new(Arc::clone(&ctx.plain_topic), ctx.value.clone());
    for n in 0..share(count, ctx.producers, index) {
        if !ctx.running(deadline) {
            break;
        }
        let started = Instant::now();
        match producer.send(record.clone().partition(partition_of(&ctx, n, index, 1, 0))).await {
            Ok(_) => tally.done(started, 1),
            Err(e) => {
                tally.fail(e);
                break;
            }
        }
    }
    producer.close().await;
    Ok(tally)
}

async fn transactions(ctx: &Ctx, width: u32, count: u64) -> Result<Tally> {
    eprintln!("latency: {count} transactions writing {width} partition(s) of {}", ctx.txn_topic);
    let phase = format!("{width}p");
    let producers = try_join_all((0..ctx.producers).map(|index| {
        let config = TransactionalConfig::new(ctx.transactional_id(&phase, index));
        ctx.client.transactional_producer(config)
    }))
    .await?;
    let deadline = Instant::now() + LATENCY_PHASE_LIMIT;
    let started = Instant::now();
    let workers = (0..ctx.producers)
        .zip(producers)
        .map(|(index, producer)| tokio::spawn(run_transactions(ctx.clone(), producer, index, width, count, deadline)))
        .collect();
    gather(workers, started, Some(count)).await
}

async fn run_transactions(
    ctx: Ctx,
    mut producer: TransactionalProducer,
    index: u32,
    width: u32,
    count: u64,
    deadline: Instant,
) -> Result<Tally> {
    let mut tally = Tally::new()?;
    let record = ProducerRecord::new(Arc::clone(&ctx.txn_topic), ctx.value.clone());
    for n in 0..share(count, ctx.producers, index) {
        if !ctx.running(deadline) {
            break;
        }
        let started = Instant::now();
        let partitions = (0..width).map(|j| partition_of(&ctx, n, index, width, j));
        match one_transaction(&mut producer, &record, partitions).await {
            Ok(()) => tally.done(started, u64::from(width)),
            Err(e) => {
                // Not left open until its timeout, holding back the partitions' stable offsets.
                let _ = producer.abort().await;
                tally.fail(e);
                break;
            }
        }
    }
    Ok(tally)
}

/// One transaction: `record` to each of `partitions`, committed.
async fn one_transaction(
    producer: &mut TransactionalProducer,
    record: &ProducerRecord,
    partitions: impl Iterator<Item = u32>,
) -> sluice_client::Result<()> {
    producer.begin()?;
    for partition in partitions {
        producer.send(record.clone().partition(partition)).await?;
    }
    producer.commit().await
}
