//! Throughput: transactions of `--records-per-txn` messages against plain producers sending
//! the same number of messages (or for the same time).

use std::collections::VecDeque;

use futures_util::future::try_join_all;
use sluice_client::{Delivery, Producer, ProducerConfig, ProducerRecord, TransactionalConfig, TransactionalProducer};

use super::*;

/// What the throughput phase measured.
pub(super) struct Throughput {
    pub(super) records_per_txn: u32,
    pub(super) limit: Limit,
    /// Operations are transactions.
    pub(super) txn: Tally,
    /// Operations are acknowledged messages.
    pub(super) plain: Tally,
}

impl Throughput {
    /// Transactional msgs/s over plain msgs/s.
    pub(super) fn ratio(&self) -> Option<f64> {
        let plain = self.plain.rate();
        (plain > 0.0).then(|| self.txn.rate() / plain)
    }
}

/// How long a side may send, and how much.
#[derive(Debug, Clone, Copy)]
struct Bound {
    deadline: Instant,
    /// Operations (transactions, or messages) at most, if bounded by count.
    count: Option<u64>,
}

impl Bound {
    /// A side's bound from now, for `count` operations in all.
    fn starting_now(limit: Limit, count: Option<u64>) -> Bound {
        let deadline = Instant::now()
            + match limit {
                Limit::Seconds(seconds) => seconds,
                Limit::Messages(_) => MESSAGES_PHASE_LIMIT,
            };
        Bound { deadline, count }
    }

    /// Worker `index`'s part of it.
    fn share(self, producers: u32, index: u32) -> Bound {
        Bound { count: self.count.map(|count| share(count, producers, index)), ..self }
    }

    fn allows(&self, done: u64) -> bool {
        self.count.is_none_or(|count| done < count)
    }
}

/// With --messages: the transactions (whole ones) and the plain messages (as many as they
/// hold) each side sends.
pub(super) fn counts(limit: Limit, records_per_txn: u32) -> (Option<u64>, Option<u64>) {
    match limit {
        Limit::Seconds(_) => (None, None),
        Limit::Messages(messages) => {
            let transactions = messages.div_ceil(u64::from(records_per_txn));
            (Some(transactions), Some(transactions * u64::from(records_per_txn)))
        }
    }
}

pub(super) async fn run(ctx: &Ctx, records_per_txn: u32, limit: Limit) -> Result<Throughput> {
    let (transactions_count, plain_count) = counts(limit, records_per_txn);
    let txn = transactions(ctx, records_per_txn, limit, transactions_count).await?;
    let plain = plain(ctx, limit, plain_count).await?;
    Ok(Throughput { records_per_txn, limit, txn, plain })
}

fn describe(limit: Limit) -> String {
    match limit {
        Limit::Seconds(seconds) => format!("for {seconds:?}"),
        Limit::Messages(messages) => format!("{messages} messages"),
    }
}

async fn transactions(ctx: &Ctx, records_per_txn: u32, limit: Limit, count: Option<u64>) -> Result<Tally> {
    eprintln!("throughput: transactions of {records_per_txn} messages to {}, {}", ctx.txn_topic, describe(limit));
    let producers = try_join_all((0..ctx.producers).map(|index| {
        let config = TransactionalConfig::new(ctx.transactional_id("throughput", index));
        ctx.client.transactional_producer(config)
    }))
    .await?;
    let (started, bound) = (Instant::now(), Bound::starting_now(limit, count));
    let workers = (0..ctx.producers)
        .zip(producers)
        .map(|(index, producer)| {
            tokio::spawn(run_transactions(ctx.clone(), producer, records_per_txn, bound.share(ctx.producers, index)))
        })
        .collect();
    gather(workers, started, count).await
}

async fn run_transactions(
    ctx: Ctx,
    mut producer: TransactionalProducer,
    records_per_txn: u32,
    bound: Bound,
) -> Result<Tally> {
    let mut tally = Tally::new()?;
    let record = ProducerRecord::new(Arc::clone(&ctx.txn_topic), ctx.value.clone());
    while bound.allows(tally.ops) && ctx.running(bound.deadline) {
        let started = Instant::now();
        match one_transaction(&mut producer, &record, records_per_txn).await {
            Ok(()) => {
                tally.done(started, u64::from(records_per_txn));
                tally.bytes += u64::from(records_per_txn) * ctx.value.len() as u64;
            }
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

async fn one_transaction(
    producer: &mut TransactionalProducer,
    record: &ProducerRecord,
    records: u32,
) -> sluice_client::Result<()> {
    producer.begin()?;
    for _ in 0..records {
        producer.send(record.clone()).await?;
    }
    producer.commit().await
}

async fn plain(ctx: &Ctx, limit: Limit, count: Option<u64>) -> Result<Tally> {
    eprintln!("throughput: plain messages to {}, {}", ctx.plain_topic, describe(limit));
    let producers = try_join_all((0..ctx.producers).map(|_| ctx.client.producer(ProducerConfig::default()))).await?;
    let (started, bound) = (Instant::now(), Bound::starting_now(limit, count));
    let workers = (0..ctx.producers)
        .zip(producers)
        .map(|(index, producer)| tokio::spawn(send_plain(ctx.clone(), producer, bound.share(ctx.producers, index))))
        .collect();
    gather(workers, started, count).await
}

/// Offers messages as fast as the producer's buffer takes them (as `bench produce` does),
/// counting acknowledgements; stops offering at the bound or the first failure.
async fn send_plain(ctx: Ctx, producer: Producer, bound: Bound) -> Result<Tally> {
    let mut tally = Tally::new()?;
    let record = ProducerRecord::new(Arc::clone(&ctx.plain_topic), ctx.value.clone());
    let mut pending: VecDeque<(Instant, Delivery)> = VecDeque::new();
    let mut offered = 0u64;
    while bound.allows(offered) && ctx.running(bound.deadline) && tally.errors == 0 {
        match producer.enqueue(record.clone()).await {
            Ok(delivery) => pending.push_back((Instant::now(), delivery)),
            Err(e) => tally.fail(e),
        }
        offered += 1;
        while let Some(result) = pending.front().and_then(|(_, d)| d.try_result()) {
            let (sent, _) = pending.pop_front().expect("a front");
            count(&mut tally, sent, result, ctx.value.len());
        }
    }
    producer.flush().await;
    for (sent, delivery) in pending {
        count(&mut tally, sent, delivery.wait().await, ctx.value.len());
    }
    producer.close().await;
    Ok(tally)
}

fn count(tally: &mut Tally, sent: Instant, result: sluice_client::Result<sluice_client::RecordMetadata>, bytes: usize) {
    match result {
        Ok(_) => {
            tally.done(sent, 1);
            tally.bytes += bytes as u64;
        }
        Err(e) => tally.fail(e),
    }
}
