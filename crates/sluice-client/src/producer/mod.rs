//! [`Producer`]: batches records per partition and sends them to partition leaders.
//!
//! `send` picks the partition (see [`crate::partitioner`]), waits for buffer memory, appends
//! the record to the partition's open batch and returns once the record is acknowledged.
//! [`Producer::enqueue`] returns as soon as the record is buffered, with a [`Delivery`] to
//! await later: that is how many records are kept in flight from one task.
//!
//! Guarantees, with idempotence on (the default): records of one partition are written in
//! the order they were enqueued, once each, even when a batch is retried after a timeout or a
//! leader change. A record whose delivery fails with a retriable error (see
//! [`Error::is_retriable`]) may nevertheless have been written; records enqueued after it are
//! sent under a new producer id, so they are never mistaken for duplicates.
//!
//! Each partition keeps up to five batches in flight on one ordered stream to its leader (see
//! `sender.rs`). A batch goes as soon as nothing of its partition is in flight, and otherwise
//! when it is full or has lingered `linger`: under load batches grow while earlier ones are
//! on their way, and partitions are written in parallel.

mod queue;
mod sender;

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Semaphore;

use self::queue::{BatchOutcome, Identity, PartitionQueue, RECORD_SLACK_BYTES};
use self::sender::Slot;
use crate::client::Client;
use crate::config::ProducerConfig;
use crate::error::{Error, Result};
use crate::partitioner::{Sticky, choose};
use crate::record::{ProducerRecord, RecordMetadata};
use sluice_common::delay::DelayedId;

use crate::delay::CancelOutcome;

/// A topic's `max_message_bytes` when the topic does not say.
const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Sends records to a cluster. Cheap to clone; clones share buffers and batches.
///
/// Dropping the last clone stops accepting records and sends what is buffered in the
/// background; call [`Producer::close`] to wait for that.
#[derive(Clone)]
pub struct Producer {
    handle: Arc<Handle>,
}

/// Owned by the `Producer` clones only (the sender tasks hold `Shared`), so its drop means
/// the application is done with the producer.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// What the producer's clones and sender tasks share.
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) config: ProducerConfig,
    /// Buffer memory in bytes: a record holds its share from `send` until its batch finishes.
    pub(crate) memory: Semaphore,
    slots: Mutex<Slots>,
    sticky: Sticky,
    /// The identity new partitions start with.
    identity: Identity,
    pub(crate) failures: Failures,
}

/// A send that failed, as [`Producer::failures`] tells it.
#[derive(Debug, Clone)]
pub struct SendFailure {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: u32,
    /// How many records failed; `None` when the broker ended an [`Acks::None`](crate::Acks::None)
    /// stream over one of its batches, which the producer no longer tracks.
    pub records: Option<u32>,
    /// Why.
    pub error: Error,
}

/// Failed sends: counted, and told to whoever subscribed.
pub(crate) struct Failures {
    records: std::sync::atomic::AtomicU64,
    batches: std::sync::atomic::AtomicU64,
    tell: tokio::sync::broadcast::Sender<SendFailure>,
}

/// Failures a subscriber that does not keep up may fall behind by before it misses some.
const FAILURES_BUFFERED: usize = 1024;

impl Failures {
    fn new() -> Failures {
        Failures {
            records: Default::default(),
            batches: Default::default(),
            tell: tokio::sync::broadcast::channel(FAILURES_BUFFERED).0,
        }
    }

    pub(crate) fn failed(&self, failure: SendFailure) {
        use std::sync::atomic::Ordering::Relaxed;
        self.batches.fetch_add(1, Relaxed);
        self.records.fetch_add(u64::from(failure.records.unwrap_or(0)), Relaxed);
        // No subscriber is not an error: the counts are the record.
        let _ = self.tell.send(failure);
    }
}

#[derive(Default)]
struct Slots {
    by_partition: HashMap<(Arc<str>, u32), Arc<Slot>>,
    closed: bool,
}

impl Shared {
    /// The slot of a partition, with its sender task started on first use.
    fn slot(self: &Arc<Self>, topic: &Arc<str>, partition: u32) -> Result<Arc<Slot>> {
        let mut slots = self.slots.lock().expect("slot map lock");
        if slots.closed {
            return Err(Error::Closed);
        }
        if let Some(slot) = slots.by_partition.get(&(Arc::clone(topic), partition)) {
            return Ok(Arc::clone(slot));
        }
        let queue =
            PartitionQueue::new(self.identity).with_compression(self.config.compression, self.config.compression_level);
        let slot = Arc::new(Slot::new(Arc::clone(topic), partition, queue));
        slots.by_partition.insert((Arc::clone(topic), partition), Arc::clone(&slot));
        tokio::spawn(sender::run(Arc::clone(self), Arc::clone(&slot)));
        Ok(slot)
    }

    fn all_slots(&self) -> Vec<Arc<Slot>> {
        self.slots.lock().expect("slot map lock").by_partition.values().cloned().collect()
    }

    /// Refuses new records; senders send what is buffered and stop.
    fn close(&self) {
        let slots = {
            let mut slots = self.slots.lock().expect("slot map lock");
            slots.closed = true;
            slots.by_partition.values().cloned().collect::<Vec<_>>()
        };
        for slot in slots {
            slot.lock().close();
            slot.wake.notify_one();
        }
    }
}

impl Producer {
    /// A producer on `client`; with idempotence on, it first gets a producer id from the
    /// controller.
    pub(crate) async fn new(client: Client, config: ProducerConfig) -> Result<Producer> {
        config.validate()?;
        let identity = if config.idempotence && config.acks != crate::config::Acks::None {
            let deadline = Instant::now() + client.config().operation_timeout;
            let (producer_id, epoch) = sender::init_producer(&client, deadline).await?;
            Identity::Known { producer_id, epoch }
        } else {
            Identity::Off
        };
        let shared = Arc::new(Shared {
            memory: Semaphore::new(config.buffer_memory_bytes),
            sticky: Sticky::new(config.sticky_partition_bytes),
            client,
            config,
            slots: Mutex::new(Slots::default()),
            identity,
            failures: Failures::new(),
        });
        Ok(Producer { handle: Arc::new(Handle { shared }) })
    }

    /// Sends `record` and waits until it is acknowledged, as the producer's
    /// [`acks`](ProducerConfig::acks) says: by default once committed on a majority of the
    /// partition's replicas and fsynced there.
    pub async fn send(&self, record: ProducerRecord) -> Result<RecordMetadata> {
        self.enqueue(record).await?.wait().await
    }

    /// Sends `record` without waiting for anything but buffer room: RocketMQ's oneway send, for
    /// log shipping and metrics. Returns once the record is buffered; its delivery is not
    /// reported to the caller, and a failure is only counted ([`Producer::failed_records`]) and
    /// told to [`Producer::failures`] subscribers. On a producer with [`Acks::None`](crate::Acks::None)
    /// nothing waits for the broker either. Fails, buffering nothing, for what
    /// [`Producer::enqueue`] refuses at once (an unknown topic, a record too large).
    pub async fn send_oneway(&self, record: ProducerRecord) -> Result<()> {
        self.enqueue(record).await.map(drop)
    }

    /// Records whose delivery failed so far (those of [`Acks::None`](crate::Acks::None) batches
    /// the broker refused after accepting them are not known one by one, and not included).
    pub fn failed_records(&self) -> u64 {
        self.handle.shared.failures.records.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Batches whose delivery failed so far, and refusals that ended an
    /// [`Acks::None`](crate::Acks::None) stream.
    pub fn failed_batches(&self) -> u64 {
        self.handle.shared.failures.batches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every failed send from now on, as it happens (the last 1,024 are kept for a subscriber
    /// that falls behind; it then learns how many it missed).
    pub fn failures(&self) -> tokio::sync::broadcast::Receiver<SendFailure> {
        self.handle.shared.failures.tell.subscribe()
    }

    /// Buffers `record` for sending and returns at once with a [`Delivery`] that resolves
    /// when it is acknowledged. Waits only while the buffer is full (back-pressure).
    ///
    /// Fails without buffering anything if the topic or partition does not exist, the record
    /// exceeds the topic's `max_message_bytes` or the buffer, or the producer is closed.
    pub async fn enqueue(&self, mut record: ProducerRecord) -> Result<Delivery> {
        let shared = &self.handle.shared;
        let topic = shared.client.topic(record.topic()).await?;
        let limit = topic.config.max_message_bytes.map_or(DEFAULT_MAX_MESSAGE_BYTES, |b| b as usize);
        if record.size_bytes() > limit {
            let size = record.size_bytes();
            return Err(Error::RecordTooLarge { size, limit, limit_name: "the topic's max_message_bytes" });
        }
        let partitions = topic.partition_count();
        if partitions == 0 {
            return Err(Error::broker(
                sluice_proto::ErrorCode::UnknownPartition,
                format!("topic {} has no partitions", topic.name),
            ));
        }
        let key = record.key_bytes().map(|k| &k[..]);
        let partition = choose(record.explicit_partition(), key, partitions, &shared.sticky, record.size_bytes());
        if partition >= partitions {
            let message =
                format!("topic {} has {partitions} partitions; there is no partition {partition}", topic.name);
            return Err(Error::broker(sluice_proto::ErrorCode::UnknownPartition, message));
        }
        record.stamp_now();
        let delayed = record.is_delayed();
        let reserved = record.record.encoded_len(record.record.timestamp_ms) + RECORD_SLACK_BYTES;
        if reserved > shared.config.buffer_memory_bytes {
            let limit = shared.config.buffer_memory_bytes;
            return Err(Error::RecordTooLarge {
                size: reserved,
                limit,
                limit_name: "the producer's buffer_memory_bytes",
            });
        }
        let permits = u32::try_from(reserved).expect("validated below buffer_memory_bytes, itself below 4 GiB");
        shared.memory.acquire_many(permits).await.map_err(|_| Error::Closed)?.forget();
        let appended = shared.slot(record.topic_arc(), partition).and_then(|slot| {
            let appended =
                slot.lock().append(&record.record, reserved, Instant::now(), shared.config.max_batch_bytes)?;
            if appended.wake {
                slot.wake.notify_one();
            }
            Ok(appended)
        });
        match appended {
            Ok(a) => Ok(Delivery { outcome: a.outcome, index: a.index, partition, delayed }),
            Err(e) => {
                shared.memory.add_permits(reserved);
                Err(e)
            }
        }
    }

    /// Sends every buffered record now, without waiting for linger, and waits until each
    /// record enqueued before the call is acknowledged or has failed (failures are reported to
    /// their [`Delivery`]).
    pub async fn flush(&self) {
        let mut outcomes = Vec::new();
        for slot in self.handle.shared.all_slots() {
            outcomes.extend(slot.lock().flush());
            slot.wake.notify_one();
        }
        for outcome in outcomes {
            outcome.wait().await;
        }
    }

    /// Stops accepting records (later sends fail with [`Error::Closed`]), sends what is
    /// buffered, and waits for it like [`Producer::flush`].
    pub async fn close(&self) {
        self.handle.shared.close();
        self.flush().await;
    }

    /// Cancels delayed record `id` of `topic` (from its [`RecordMetadata::delayed_id`]):
    /// [`CancelOutcome::Cancelled`] if it will never be delivered, `AlreadyDelivered` if it
    /// was delivered first. Repeating a cancel is safe.
    pub async fn cancel_delayed(&self, topic: &str, id: DelayedId) -> Result<CancelOutcome> {
        crate::delay::cancel(&self.handle.shared.client, topic, id).await
    }

    /// Bytes of buffer memory free now.
    pub fn available_buffer_bytes(&self) -> usize {
        self.handle.shared.memory.available_permits()
    }
}

/// The pending acknowledgement of one record, from [`Producer::enqueue`]. Await it (or call
/// [`Delivery::wait`]) for the record's partition and offset.
#[derive(Debug)]
pub struct Delivery {
    outcome: Arc<BatchOutcome>,
    index: u32,
    partition: u32,
    delayed: bool,
}

impl Delivery {
    /// The partition the record was sent to.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The outcome if the record's batch has finished, without waiting.
    pub fn try_result(&self) -> Option<Result<RecordMetadata>> {
        self.outcome.get().map(|r| self.metadata(r))
    }

    /// Waits until the record is acknowledged or has failed.
    pub async fn wait(self) -> Result<RecordMetadata> {
        let result = self.outcome.wait().await;
        self.metadata(result)
    }

    fn metadata(&self, result: &Result<u64>) -> Result<RecordMetadata> {
        match result {
            // Answered before the commit (acks leader or none): no offsets, no delayed id.
            Ok(RecordMetadata::NO_OFFSET) => {
                Ok(RecordMetadata { partition: self.partition, offset: RecordMetadata::NO_OFFSET, delayed_id: None })
            }
            Ok(base) if self.delayed => {
                let id = DelayedId { partition: self.partition, seq: base + u64::from(self.index) };
                Ok(RecordMetadata {
                    partition: self.partition,
                    offset: RecordMetadata::NO_OFFSET,
                    delayed_id: Some(id),
                })
            }
            Ok(base_offset) => Ok(RecordMetadata {
                partition: self.partition,
                offset: base_offset + u64::from(self.index),
                delayed_id: None,
            }),
            Err(e) => Err(e.clone()),
        }
    }
}

impl IntoFuture for Delivery {
    type Output = Result<RecordMetadata>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<RecordMetadata>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.wait())
    }
}
