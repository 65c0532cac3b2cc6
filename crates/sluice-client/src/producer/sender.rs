//! The sender: one task per partition the producer writes to. It takes the partition's next
//! ready batch, sends it to the partition's leader and retries it (same bytes, same sequence)
//! until it is acknowledged, refused for good, or out of time.
//!
//! Exactly one batch per partition is in flight. The broker assigns offsets in the order it
//! *commits* batches, and two requests on one connection are not guaranteed to reach the
//! partition's Raft log in the order they were sent; a second batch overtaking the first would
//! be refused as out of order (or, without idempotence, reorder the records). One in flight
//! keeps records in send order through every retry, and needs no more than one slot of the
//! broker's five-batch deduplication window. Throughput comes from batches: while one is in
//! flight the next fills up to `max_batch_bytes`, and partitions are sent in parallel.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use sluice_proto::v1;

use super::Shared;
use super::queue::{BatchDone, Identity, Next, PartitionQueue, PendingBatch};
use crate::client::{Call, Route};
use crate::error::{Error, Result};

/// One partition's queue and the signal that wakes its sender.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: u32,
    pub(crate) queue: Mutex<PartitionQueue>,
    pub(crate) wake: tokio::sync::Notify,
}

impl Slot {
    pub(crate) fn new(topic: Arc<str>, partition: u32, identity: Identity) -> Slot {
        Slot { topic, partition, queue: Mutex::new(PartitionQueue::new(identity)), wake: tokio::sync::Notify::new() }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, PartitionQueue> {
        self.queue.lock().expect("partition queue lock")
    }
}

/// Sends the slot's batches until the producer is closed and the slot drained.
pub(crate) async fn run(shared: Arc<Shared>, slot: Arc<Slot>) {
    while let Some(batch) = next_batch(&shared, &slot).await {
        deliver(&shared, &slot, batch).await;
    }
}

async fn next_batch(shared: &Shared, slot: &Slot) -> Option<PendingBatch> {
    loop {
        let next = slot.lock().next(Instant::now(), shared.config.linger);
        match next {
            Next::Send(batch) => return Some(batch),
            Next::Finished => return None,
            // `notify_one` keeps a permit when nobody waits, so a wake-up sent between the
            // check above and the wait below is not lost.
            Next::Idle => slot.wake.notified().await,
            Next::WaitUntil(at) => {
                tokio::select! {
                    () = slot.wake.notified() => {}
                    () = tokio::time::sleep_until(at.into()) => {}
                }
            }
        }
    }
}

/// Sends one batch with retries and reports its outcome to every record in it.
async fn deliver(shared: &Shared, slot: &Slot, batch: PendingBatch) {
    let deadline = batch.created + shared.config.delivery_timeout;
    let count = batch.count();
    let (result, done) = match stamp(shared, slot, count, deadline).await {
        Ok(stamp) => {
            let (bytes, done) = batch.encode(stamp);
            (produce(shared, slot, bytes, deadline).await, done)
        }
        Err(e) => (Err(e), batch.encode(sluice_common::record::ProducerStamp::NONE).1),
    };
    finish(shared, slot, done, result);
}

/// The stamp the batch must carry, after getting a new producer id if the partition lost
/// its identity.
async fn stamp(
    shared: &Shared,
    slot: &Slot,
    count: u32,
    deadline: Instant,
) -> Result<sluice_common::record::ProducerStamp> {
    if slot.lock().identity() == Identity::Lost {
        let (producer_id, epoch) = init_producer(&shared.client, deadline).await?;
        slot.lock().install(producer_id, epoch, count);
    }
    Ok(slot.lock().expected_stamp())
}

async fn produce(shared: &Shared, slot: &Slot, batch: bytes::Bytes, deadline: Instant) -> Result<u64> {
    let call = Call {
        kind: "Produce",
        route: Route::Leader { topic: &slot.topic, partition: slot.partition },
        deadline,
        attempt_timeout: shared.client.config().request_timeout,
    };
    let answer = shared
        .client
        .execute(call, |mut rpc| {
            let request = v1::ProduceRequest {
                topic: slot.topic.to_string(),
                partition: slot.partition,
                batch: batch.clone(),
                timeout_ms: 0,
            };
            async move { rpc.produce(request).await }
        })
        .await?;
    Ok(answer.base_offset)
}

fn finish(shared: &Shared, slot: &Slot, done: BatchDone, result: Result<u64>) {
    if let Err(e) = &result {
        tracing::debug!(topic = %slot.topic, partition = slot.partition, error = %e, ambiguous = e.is_ambiguous(), "batch failed");
    }
    slot.lock().finished(done.count, result.is_ok());
    done.outcome.complete(result);
    shared.memory.add_permits(done.reserved_bytes);
}

/// Asks the controller for a fresh producer id and epoch.
pub(crate) async fn init_producer(client: &crate::Client, deadline: Instant) -> Result<(i64, i16)> {
    let call = Call { deadline, ..client.call("InitProducer", Route::Controller) };
    let answer =
        client.execute(call, |mut rpc| async move { rpc.init_producer(v1::InitProducerRequest {}).await }).await?;
    let producer_id = i64::try_from(answer.producer_id).ok().filter(|&id| id > 0);
    let epoch = i16::try_from(answer.epoch).ok();
    match (producer_id, epoch) {
        (Some(id), Some(epoch)) => Ok((id, epoch)),
        _ => Err(Error::Protocol {
            address: "the controller".into(),
            message: format!("producer id {} epoch {} do not fit the batch format", answer.producer_id, answer.epoch),
        }),
    }
}
