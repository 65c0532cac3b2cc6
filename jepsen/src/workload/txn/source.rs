//! The processor's source: a plain idempotent producer writing `s-{n}` (each its own key, which
//! spreads them over the partitions) at a bounded rate until the end of the run. Not recorded:
//! the final drain of the source topic is what the exactly-once check reads, whatever was
//! acknowledged.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use sluice_client::{Client, ProducerRecord};
use tokio::time::{Instant, MissedTickBehavior};

use crate::workload::producer::{ENQUEUE_LIMIT, GRACE, IN_FLIGHT, start};
use crate::workload::{RUNNER_PROCESS, WorkloadConfig, WorkloadError};

/// Runs the feeder until `until`.
pub(super) async fn run(client: Client, config: Arc<WorkloadConfig>, until: Instant) -> Result<(), WorkloadError> {
    let Some(producer) = start(&client, RUNNER_PROCESS, until).await else { return Ok(()) };
    let topic: Arc<str> = Arc::from(config.txn.source.as_str());
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / config.txn.source_rate);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pending = FuturesUnordered::new();
    let mut n = 0u64;
    loop {
        tokio::select! {
            biased;
            () = tokio::time::sleep_until(until) => break,
            Some(_) = pending.next() => {}
            _ = ticker.tick(), if pending.len() < IN_FLIGHT => {
                let value = format!("s-{n}");
                n += 1;
                let record = ProducerRecord::new(Arc::clone(&topic), value.clone()).key(value);
                if let Ok(Ok(delivery)) = tokio::time::timeout(ENQUEUE_LIMIT, producer.enqueue(record)).await {
                    pending.push(delivery.wait());
                }
            }
        }
    }
    let grace = Instant::now() + GRACE;
    while let Ok(Some(_)) = tokio::time::timeout_at(grace, pending.next()).await {}
    tracing::info!(sent = n, "the source feeder stopped");
    Ok(())
}
