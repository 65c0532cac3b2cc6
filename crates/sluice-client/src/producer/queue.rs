//! One partition's side of the producer: the batch being filled, the batches waiting to be
//! sent, and the idempotence bookkeeping (identity and sequence numbers). Pure state, no I/O,
//! so the batching rules are tested with made-up clocks.
//!
//! Life of a batch: *open* (records are appended) → *sealed* (full, lingered long enough, the
//! partition has nothing in flight, or flushed) → *in flight* (its sender owns it; a few per
//! partition, see `sender.rs`) → acknowledged or failed.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sluice_common::record::{BATCH_HEADER_LEN, BatchBuilder, Compression, DELIVER_AT_PROPERTY, ProducerStamp, Record};
use tokio::sync::Notify;

use crate::error::{Error, Result};

/// Where the idempotence fields sit in a batch header (docs/FORMAT.md, "Record batch").
const PRODUCER_ID_AT: usize = 12;
const EPOCH_AT: usize = 20;
const BASE_SEQUENCE_AT: usize = 22;
const CRC_COVERS_FROM: usize = 4;

/// Room reserved per record on top of its encoding, for the timestamp delta that depends on
/// the batch's first record (at most a 10-byte varint; the estimate uses a zero delta).
pub(crate) const RECORD_SLACK_BYTES: usize = 10;

/// The shared result of one batch: its base offset, or why it failed. Every record's
/// [`Delivery`](crate::Delivery) holds an `Arc` of it plus its index in the batch, so a batch
/// of many records needs one allocation, not one per record.
#[derive(Debug, Default)]
pub(crate) struct BatchOutcome {
    result: OnceLock<Result<u64>>,
    done: Notify,
}

impl BatchOutcome {
    /// Sets the result (the first one wins) and wakes every waiter.
    pub(crate) fn complete(&self, result: Result<u64>) {
        let _ = self.result.set(result);
        self.done.notify_waiters();
    }

    /// The result, if the batch is finished.
    pub(crate) fn get(&self) -> Option<&Result<u64>> {
        self.result.get()
    }

    /// Waits for the result.
    pub(crate) async fn wait(&self) -> &Result<u64> {
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            // Registered before checking, so a completion in between is not missed.
            notified.as_mut().enable();
            if let Some(result) = self.result.get() {
                return result;
            }
            notified.await;
        }
    }
}

/// Who the partition's batches are from, for deduplication on the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Identity {
    /// Idempotence is off: batches carry no producer id.
    Off,
    /// Batches carry this producer id and epoch.
    Known { producer_id: i64, epoch: i16 },
    /// A batch failed in a way that leaves the broker's sequence unknown (it may or may not
    /// have been written); a new producer id is needed before the next batch.
    Lost,
}

/// A batch with the records appended so far.
#[derive(Debug)]
pub(crate) struct PendingBatch {
    builder: BatchBuilder,
    stamp: ProducerStamp,
    pub(crate) outcome: Arc<BatchOutcome>,
    pub(crate) created: Instant,
    /// Buffer memory its records hold, returned when the batch finishes.
    pub(crate) reserved_bytes: usize,
    /// Delayed records (each with a delivery time); a batch holds only one kind.
    pub(crate) delayed: bool,
}

impl PendingBatch {
    fn new(
        stamp: ProducerStamp,
        capacity: usize,
        now: Instant,
        delayed: bool,
        (codec, level): (Compression, i32),
    ) -> PendingBatch {
        PendingBatch {
            delayed,
            builder: BatchBuilder::new(stamp, capacity).delayed(delayed).compression(codec, level),
            stamp,
            outcome: Arc::new(BatchOutcome::default()),
            created: now,
            reserved_bytes: 0,
        }
    }

    /// Records in the batch.
    pub(crate) fn count(&self) -> u32 {
        self.builder.count()
    }

    /// The encoded batch, stamped `wanted`. The batch was stamped when it was opened; only
    /// when that guess is wrong (after a lost identity) are the header fields rewritten.
    pub(crate) fn encode(self, wanted: ProducerStamp) -> (Bytes, BatchDone) {
        let done = BatchDone {
            outcome: self.outcome,
            reserved_bytes: self.reserved_bytes,
            count: self.builder.count(),
            delayed: self.delayed,
        };
        let bytes = self.builder.finish();
        let bytes = if self.stamp == wanted { bytes } else { restamp(&bytes, wanted) };
        (bytes, done)
    }
}

/// What is left of a batch once its bytes are on their way.
#[derive(Debug)]
pub(crate) struct BatchDone {
    pub(crate) outcome: Arc<BatchOutcome>,
    pub(crate) reserved_bytes: usize,
    pub(crate) count: u32,
    pub(crate) delayed: bool,
}

/// A copy of `batch` with another producer stamp and a new checksum.
pub(crate) fn restamp(batch: &[u8], stamp: ProducerStamp) -> Bytes {
    assert!(batch.len() >= BATCH_HEADER_LEN, "a finished batch has a header");
    let mut b = BytesMut::from(batch);
    b[PRODUCER_ID_AT..EPOCH_AT].copy_from_slice(&stamp.producer_id.to_le_bytes());
    b[EPOCH_AT..BASE_SEQUENCE_AT].copy_from_slice(&stamp.epoch.to_le_bytes());
    b[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&stamp.base_sequence.to_le_bytes());
    let crc = crc32fast::hash(&b[CRC_COVERS_FROM..]);
    b[..CRC_COVERS_FROM].copy_from_slice(&crc.to_le_bytes());
    b.freeze()
}

/// Where an appended record went.
#[derive(Debug)]
pub(crate) struct Appended {
    pub(crate) outcome: Arc<BatchOutcome>,
    pub(crate) index: u32,
    /// The sender should look again: a batch was sealed, or a new one started its linger.
    pub(crate) wake: bool,
}

/// What the sender should do next.
#[derive(Debug)]
pub(crate) enum Next {
    /// Send this batch (it is now in flight).
    Send(PendingBatch),
    /// Nothing to send before this instant (the open batch's linger ends).
    WaitUntil(Instant),
    /// Nothing buffered; wait to be woken.
    Idle,
    /// Closed and drained: the sender can stop.
    Finished,
}

/// One partition's batches.
#[derive(Debug)]
pub(crate) struct PartitionQueue {
    open: Option<PendingBatch>,
    sealed: VecDeque<PendingBatch>,
    /// Outcomes of the batches in flight, oldest first (for `flush`).
    in_flight: VecDeque<Arc<BatchOutcome>>,
    identity: Identity,
    /// The sequence the next batch handed to the sender starts at: the broker expects it once
    /// every batch in flight is written.
    sent_sequence: i32,
    /// The sequence the open batch (or the next one opened) starts at, if every batch before
    /// it is acknowledged in order.
    open_sequence: i32,
    closed: bool,
    /// The codec and level batches are compressed with.
    compression: (Compression, i32),
}

impl PartitionQueue {
    /// An empty queue whose batches carry `identity`.
    pub(crate) fn new(identity: Identity) -> PartitionQueue {
        PartitionQueue {
            open: None,
            sealed: VecDeque::new(),
            in_flight: VecDeque::new(),
            identity,
            sent_sequence: 0,
            open_sequence: 0,
            closed: false,
            compression: (Compression::None, 0),
        }
    }

    /// The queue, compressing its batches' values with `codec` at `level`.
    pub(crate) fn with_compression(mut self, codec: Compression, level: i32) -> PartitionQueue {
        self.compression = (codec, level);
        self
    }

    /// Appends `record`, which holds `reserved_bytes` of buffer memory. A full open batch is
    /// sealed first; a batch that reaches `max_batch_bytes` is sealed at once.
    pub(crate) fn append(
        &mut self,
        record: &Record,
        reserved_bytes: usize,
        now: Instant,
        max_batch_bytes: usize,
    ) -> Result<Appended> {
        if self.closed {
            return Err(Error::Closed);
        }
        let estimate = record.encoded_len(record.timestamp_ms) + RECORD_SLACK_BYTES;
        let delayed = is_delayed(record);
        let mut wake = false;
        let other_kind = |b: &PendingBatch| b.delayed != delayed;
        if self
            .open
            .as_ref()
            .is_some_and(|b| !b.builder.is_empty() && (b.builder.len() + estimate > max_batch_bytes || other_kind(b)))
        {
            self.seal_open();
            wake = true;
        }
        if self.open.is_none() {
            let stamp = self.stamp_for_next();
            let capacity = max_batch_bytes.max(BATCH_HEADER_LEN + estimate);
            self.open = Some(PendingBatch::new(stamp, capacity, now, delayed, self.compression));
            wake = true;
        }
        let open = self.open.as_mut().expect("opened above");
        let index = open.builder.count();
        open.builder.push(record);
        open.reserved_bytes += reserved_bytes;
        let outcome = Arc::clone(&open.outcome);
        if open.builder.len() >= max_batch_bytes {
            self.seal_open();
            wake = true;
        }
        Ok(Appended { outcome, index, wake })
    }

    /// The next batch to send, if any is ready at `now`. The returned batch is in flight
    /// until [`PartitionQueue::finished`] is called for it (batches finish in the order they
    /// were sent).
    ///
    /// The open batch goes when its linger is over, or at once if nothing is in flight (as
    /// Nagle's rule sends when nothing is unacknowledged): lingering only pays while an
    /// earlier batch's round trip gives records time to accumulate.
    pub(crate) fn next(&mut self, now: Instant, linger: Duration) -> Next {
        let lingered = self.open.as_ref().map(|b| b.created + linger);
        let idle = self.in_flight.is_empty();
        if self.sealed.is_empty() && (self.closed || idle || lingered.is_some_and(|at| at <= now)) {
            self.seal_open();
        }
        if let Some(batch) = self.sealed.pop_front() {
            self.in_flight.push_back(Arc::clone(&batch.outcome));
            return Next::Send(batch);
        }
        match lingered {
            Some(at) => Next::WaitUntil(at),
            None if self.closed => Next::Finished,
            None => Next::Idle,
        }
    }

    /// Seals the open batch so it goes without lingering, and returns every unfinished
    /// batch's outcome (for `flush`).
    pub(crate) fn flush(&mut self) -> Vec<Arc<BatchOutcome>> {
        self.seal_open();
        self.in_flight.iter().chain(self.sealed.iter().map(|b| &b.outcome)).cloned().collect()
    }

    /// Refuses new records; what is buffered is still sent.
    pub(crate) fn close(&mut self) {
        self.closed = true;
    }

    /// The oldest batch in flight finished. A failure loses the identity, because the
    /// broker's sequence is no longer known: a new producer id starts again at 0.
    pub(crate) fn finished(&mut self, success: bool) {
        self.in_flight.pop_front();
        if !success {
            self.lose_identity();
        }
    }

    /// Drops the identity (the partition no longer knows it): the sender gets a new producer id
    /// before it sends again.
    pub(crate) fn lose_identity(&mut self) {
        if matches!(self.identity, Identity::Known { .. }) {
            self.identity = Identity::Lost;
        }
    }

    /// The identity batches are sent with now.
    pub(crate) fn identity(&self) -> Identity {
        self.identity
    }

    /// Starts a fresh identity (a new producer id) just before a batch is stamped, with
    /// nothing in flight: sequences restart at 0 with that batch. `taken_count` is the records
    /// of the batch just taken for sending (no longer among the sealed ones).
    pub(crate) fn install(&mut self, producer_id: i64, epoch: i16, taken_count: u32) {
        self.identity = Identity::Known { producer_id, epoch };
        self.sent_sequence = 0;
        let waiting: u32 = self.sealed.iter().map(PendingBatch::count).sum();
        self.open_sequence = taken_count.wrapping_add(waiting) as i32;
    }

    /// The stamp for the batch of `count` records about to be sent, which moves the sequence
    /// on. `None` if the identity is lost, or would run out of sequence numbers (brokers refuse
    /// negative ones): the sender gets a new producer id first.
    pub(crate) fn stamp_next(&mut self, count: u32) -> Option<ProducerStamp> {
        match self.identity {
            Identity::Off => Some(ProducerStamp::NONE),
            Identity::Lost => None,
            Identity::Known { producer_id, epoch } => {
                let base_sequence = self.sent_sequence;
                match i32::try_from(count).ok().and_then(|c| base_sequence.checked_add(c)) {
                    Some(next) => {
                        self.sent_sequence = next;
                        Some(ProducerStamp { producer_id, epoch, base_sequence })
                    }
                    None => {
                        self.identity = Identity::Lost;
                        None
                    }
                }
            }
        }
    }

    /// Whether nothing is buffered or in flight.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.open.is_none() && self.sealed.is_empty() && self.in_flight.is_empty()
    }

    fn stamp_for_next(&self) -> ProducerStamp {
        match self.identity {
            Identity::Known { producer_id, epoch } => {
                ProducerStamp { producer_id, epoch, base_sequence: self.open_sequence }
            }
            Identity::Off | Identity::Lost => ProducerStamp::NONE,
        }
    }

    fn seal_open(&mut self) {
        if let Some(batch) = self.open.take() {
            self.open_sequence = self.open_sequence.wrapping_add(batch.count() as i32);
            self.sealed.push_back(batch);
        }
    }
}

/// Whether `record` is delayed: it carries a delivery time ([`DELIVER_AT_PROPERTY`]).
fn is_delayed(record: &Record) -> bool {
    record.properties.iter().any(|(name, _)| name == DELIVER_AT_PROPERTY)
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
