//! `Produce`: one record batch, checked, then committed as one entry of the partition's Raft log.
//!
//! The batch is checked here — its checksum and every record parsed, each message's size against
//! the topic's limit, the batch's against the broker's — so a bad batch never reaches the log.
//! The batch bytes are copied once, into the Raft entry that the log stores and peers receive.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sluice_common::filter::tag_summary_bit;
use sluice_common::record::{BatchError, Compression, ProducerStamp, RecordBatch, RecordView};
use sluice_proto::v1::{Acks, ProduceRequest, ProduceResponse};
use sluice_proto::{Error, ErrorCode};
use sluice_raft::Reply;
use sluice_raft::partition::{LeaderStamp, PartitionCommand, PendingWrite, WriteError, lease_fresh, reject, write};
use sluice_raft::typ::ack_ages;

use super::early::EarlyBatch;
use super::errors::error;
use super::recompress;
use super::route::Led;
use super::{ClientService, DEFAULT_PRODUCE_TIMEOUT, MAX_PRODUCE_TIMEOUT};
use crate::disk::mib;

impl ClientService {
    pub(super) async fn handle_produce(&self, request: ProduceRequest) -> ProduceResponse {
        let started = Instant::now();
        let response = self
            .produce(request)
            .await
            .unwrap_or_else(|e| ProduceResponse { error: Some(e), ..ProduceResponse::default() });
        let code = response.error.as_ref().map_or(ErrorCode::Ok, Error::error_code);
        self.metrics.produce_answered(code, started.elapsed());
        response
    }

    async fn produce(&self, request: ProduceRequest) -> Result<ProduceResponse, Error> {
        let prepared = self.prepare_produce(request)?;
        let early = prepared.acks != Acks::All && lease_fresh(&prepared.led.raft, self.pipeline_lease_window);
        if early && let Some(submitted) = self.early.submit(&prepared.early(), prepared.command.clone()).await {
            return self.answer_early(prepared, submitted);
        }
        let outcome = tokio::time::timeout(prepared.timeout, write(&prepared.led.raft, prepared.command.clone())).await;
        self.written(&prepared, &outcome).await;
        self.conclude_produce(&prepared.led, prepared.batch_bytes, prepared.delayed, prepared.timeout, outcome)
    }

    /// After a write to completion: under `ACKS_LEADER` or `ACKS_NONE`, an appended batch
    /// lets its producer's next ones be answered early.
    pub(super) async fn written(
        &self,
        prepared: &PreparedProduce,
        outcome: &Result<Result<Reply, WriteError>, tokio::time::error::Elapsed>,
    ) {
        if prepared.acks != Acks::All && matches!(outcome, Ok(Ok(Reply::Appended { .. }))) {
            self.early.appended(&prepared.early()).await;
        }
    }

    /// `ACKS_LEADER` (and a unary `ACKS_NONE`): answered once the batch is in the leader's log
    /// queue; the commit is waited for on a task of its own, for the metrics and the log.
    fn answer_early(
        &self,
        prepared: PreparedProduce,
        submitted: Result<PendingWrite, WriteError>,
    ) -> Result<ProduceResponse, Error> {
        match early_commit(Arc::new(self.clone()), prepared, submitted) {
            Ok((answer, commit)) => {
                tokio::spawn(commit);
                Ok(answer)
            }
            Err(answer) => answer,
        }
    }

    /// Counts and logs the outcome of a batch answered before its commit.
    pub(super) async fn concluded_early(
        &self,
        prepared: &PreparedProduce,
        outcome: Result<Result<Reply, WriteError>, tokio::time::error::Elapsed>,
    ) -> Option<Error> {
        let (led, delayed) = (&prepared.led, prepared.delayed);
        let error = self.conclude_produce(led, prepared.batch_bytes, delayed, prepared.timeout, outcome).err()?;
        self.early.failed(led.group_id, prepared.producer).await;
        self.metrics.produce_early_failed(error.error_code());
        tracing::debug!(topic = %led.topic, partition = led.partition, message = %error.message, "a batch answered before its commit failed");
        Some(error)
    }

    /// Finds the led partition and checks the batch: everything before the batch is proposed.
    pub(super) fn prepare_produce(&self, request: ProduceRequest) -> Result<PreparedProduce, Error> {
        if request.topic.starts_with("__") {
            let message = format!(
                "{} is an internal topic, written only by the brokers (names starting with `__` are reserved); \
                 produce to a topic of your own",
                request.topic
            );
            return Err(error(ErrorCode::InvalidTopicName, message));
        }
        let led = self.led_partition(&request.topic, request.partition)?;
        self.check_disks(&led)?;
        let acks = request.acks();
        let Checked { delayed, count, transactional, producer } =
            check_batch(&request.batch, led.max_message_bytes, self.max_batch_bytes)?;
        if transactional && acks != Acks::All {
            let message = format!(
                "a transactional batch must be acknowledged once committed (ACKS_ALL), not {}: its transaction \
                 commits only what its partitions hold",
                acks.as_str_name()
            );
            return Err(error(ErrorCode::InvalidRequest, message));
        }
        if delayed {
            self.check_delays(&request.batch)?;
        }
        let timeout = match request.timeout_ms {
            0 => DEFAULT_PRODUCE_TIMEOUT,
            ms => Duration::from_millis(u64::from(ms)).min(MAX_PRODUCE_TIMEOUT),
        };
        // The command holds the only copy needed from here on; the request (and its receive
        // buffer) is dropped on return rather than after the commit wait. The stamp carries this
        // leader's clock and producer limits to every replica (docs/adr/0007-producer-expiry.md).
        let stamp = LeaderStamp {
            now_ms: wall_clock_ms(),
            producer_id_expiration_ms: self.producer_id_expiration_ms,
            max_producers: self.max_producers_per_partition,
            from_zero: true,
        };
        let batch = recompress::as_stored(request.batch, led.compression)?;
        let command = PartitionCommand::produce_at(&batch, &stamp);
        Ok(PreparedProduce { batch_bytes: batch.len(), led, timeout, command, delayed, count, acks, producer })
    }

    /// STORAGE_FULL while a broker holding a replica of the partition is below its free-space
    /// threshold (`disk.rs`): a follower short of space must not be sent what it cannot store.
    fn check_disks(&self, led: &Led) -> Result<(), Error> {
        let Some((node, full)) = led.replicas.iter().find_map(|&n| Some((n, self.partitions.disk_full(n)?))) else {
            return Ok(());
        };
        let message = format!(
            "{}/{}: broker {node}'s disk has {} free, below the {} threshold; writes resume when space is freed \
             (nothing was written)",
            led.topic,
            led.partition,
            mib(full.free_bytes),
            mib(full.threshold_bytes)
        );
        Err(error(ErrorCode::StorageFull, message))
    }

    /// The answer to a produce whose write ended with `outcome` (or did not end in `timeout`).
    pub(super) fn conclude_produce(
        &self,
        led: &Led,
        batch_bytes: usize,
        delayed: bool,
        timeout: Duration,
        outcome: Result<Result<Reply, WriteError>, tokio::time::error::Elapsed>,
    ) -> Result<ProduceResponse, Error> {
        match outcome {
            Ok(Ok(reply)) => {
                if let Reply::Appended { count, .. } = reply {
                    self.metrics.produced(led.group_id, count, batch_bytes, || self.partitions.group_ids());
                }
                answer(reply, delayed)
            }
            Ok(Err(WriteError::NotLeader { leader })) => Err(self.not_leader(&led.topic, led.partition, leader)),
            Ok(Err(WriteError::LeaseExpired)) => Err(error(
                ErrorCode::Unavailable,
                format!("{}/{}: the leader is renewing its lease; retry", led.topic, led.partition),
            )),
            Ok(Err(WriteError::Raft(e))) => {
                Err(error(ErrorCode::Unavailable, format!("{}/{}: {e}; retry", led.topic, led.partition)))
            }
            Err(_elapsed) => Err(self.timed_out(led, timeout)),
        }
    }

    /// A commit wait ran out: `NOT_ENOUGH_REPLICAS` if too few replicas have acknowledged the
    /// leader lately to make a majority, else `TIMEOUT`. Either way the batch may still commit.
    fn timed_out(&self, led: &Led, after: Duration) -> Error {
        let window = self.replica_ack_window;
        let ages = ack_ages(&led.raft);
        let others = ages.iter().filter(|(node, age)| **node != self.node_id && age.is_some_and(|a| a < window));
        let acked = 1 + others.count();
        let majority = led.replicas.len() / 2 + 1;
        let (topic, partition) = (&led.topic, led.partition);
        let retry = "it may still be committed: retry (an idempotent producer's retry is acknowledged once)";
        if acked < majority {
            let message = format!(
                "{topic}/{partition}: only {acked} of its {} replicas acknowledged the leader in the last \
                 {window:?}, and a majority ({majority}) must hold the batch to commit it; {retry}",
                led.replicas.len()
            );
            return error(ErrorCode::NotEnoughReplicas, message);
        }
        error(ErrorCode::Timeout, format!("{topic}/{partition}: the batch was not committed within {after:?}; {retry}"))
    }
}

/// A batch submitted to be answered before its commit: the answer (no offsets), and the future
/// of its commit, which counts and logs the outcome and resolves to its error if it failed.
/// `Err`: the submit itself failed, and this is the answer instead (as for a write that did).
pub(super) fn early_commit<S>(
    service: S,
    prepared: PreparedProduce,
    submitted: Result<PendingWrite, WriteError>,
) -> Result<(ProduceResponse, impl Future<Output = Option<Error>> + Send + 'static), Result<ProduceResponse, Error>>
where
    S: std::ops::Deref<Target = ClientService> + Send + Sync + 'static,
{
    let pending = match submitted {
        Ok(pending) => pending,
        Err(e) => {
            let PreparedProduce { led, batch_bytes, delayed, timeout, .. } = prepared;
            return Err(service.conclude_produce(&led, batch_bytes, delayed, timeout, Ok(Err(e))));
        }
    };
    let answer = prepared.leader_only();
    Ok((answer, async move {
        let outcome = tokio::time::timeout(prepared.timeout, pending).await;
        service.concluded_early(&prepared, outcome).await
    }))
}

/// A checked produce request, ready to be proposed.
pub(super) struct PreparedProduce {
    pub led: Led,
    pub command: sluice_raft::Command,
    pub batch_bytes: usize,
    /// A delayed batch (answered with delayed-message numbers, not offsets).
    pub delayed: bool,
    /// How long the commit may take before the answer is `TIMEOUT`.
    pub timeout: Duration,
    /// Messages in the batch.
    pub count: u32,
    /// When the producer wants its answer.
    pub acks: Acks,
    /// The batch's producer id, epoch and first sequence.
    pub producer: ProducerStamp,
}

impl PreparedProduce {
    /// The batch, as [`EarlyAnswers`](super::early::EarlyAnswers) checks it.
    pub(super) fn early(&self) -> EarlyBatch<'_> {
        EarlyBatch { group_id: self.led.group_id, raft: &self.led.raft, producer: self.producer, count: self.count }
    }

    /// The answer given before the commit (`ACKS_LEADER`, `ACKS_NONE`): no offsets.
    pub(super) fn leader_only(&self) -> ProduceResponse {
        ProduceResponse {
            error: Some(Error::ok()),
            count: self.count,
            delayed: self.delayed,
            leader_only: true,
            ..ProduceResponse::default()
        }
    }
}

/// This broker's wall clock in ms since the Unix epoch (0 if it reads before the epoch, which
/// leaves the partition clock where it is).
fn wall_clock_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The response for what applying the batch answered; `delayed` if the batch was.
fn answer(reply: Reply, delayed: bool) -> Result<ProduceResponse, Error> {
    let ok = Some(Error::ok());
    let response = ProduceResponse { error: ok, ..ProduceResponse::default() };
    match reply {
        Reply::Appended { base_offset, count } => Ok(ProduceResponse { base_offset, count, ..response }),
        // The producer table remembers a delayed batch's first number where it keeps offsets.
        Reply::Duplicate { base_offset, count } if delayed => {
            Ok(ProduceResponse { delayed, delayed_base_seq: base_offset, count, duplicate: true, ..response })
        }
        Reply::Duplicate { base_offset, count } => {
            Ok(ProduceResponse { base_offset, count, duplicate: true, ..response })
        }
        Reply::Delayed { base_seq, count } => {
            Ok(ProduceResponse { delayed: true, delayed_base_seq: base_seq, count, ..response })
        }
        Reply::Rejected { code: reject::DELAYS_UNAVAILABLE, message } => Err(error(ErrorCode::Internal, message)),
        Reply::Rejected { code: reject::INVALID_BATCH, message } => {
            Err(error(ErrorCode::InvalidRequest, format!("{message}; rebuild the batch (docs/FORMAT.md)")))
        }
        Reply::Rejected { code: reject::PRODUCER_FENCED, message } => Err(error(
            ErrorCode::ProducerFenced,
            format!("{message}: a newer instance of this producer took over; stop this one"),
        )),
        // The partition's message says whether the sequence is ahead (a gap) or older.
        Reply::Rejected { code: reject::OUT_OF_ORDER_SEQUENCE, message } => {
            Err(error(ErrorCode::OutOfOrderSequence, message))
        }
        Reply::Rejected { code: reject::UNKNOWN_PRODUCER, message } => Err(error(ErrorCode::UnknownProducer, message)),
        Reply::Rejected { code: reject::INVALID_TXN_STATE, message } => Err(error(ErrorCode::InvalidTxnState, message)),
        Reply::Rejected { code: reject::TOO_MANY_PRODUCER_IDS, message } => Err(error(
            ErrorCode::TooManyProducerIds,
            format!(
                "{message}: reuse one producer per process rather than creating many, produce without \
                 idempotence, or raise the brokers' max_producers_per_partition; ids idle for \
                 producer_id_expiration_ms are forgotten and make room"
            ),
        )),
        other => Err(error(ErrorCode::Internal, format!("the partition answered {other:?} to a produce"))),
    }
}

/// Checks `batch` before it is proposed: size, checksum, header fields, every record, and each
/// message against `max_message_bytes`.
fn check_batch(batch: &Bytes, max_message_bytes: u32, max_batch_bytes: u32) -> Result<Checked, Error> {
    if batch.len() > max_batch_bytes as usize {
        return Err(error(
            ErrorCode::MessageTooLarge,
            format!(
                "the batch is {} bytes; this broker accepts batches of at most {max_batch_bytes} bytes \
                 (max_batch_bytes): split it into smaller batches",
                batch.len()
            ),
        ));
    }
    let invalid = |what: String| error(ErrorCode::InvalidRequest, what);
    let parsed = RecordBatch::parse(batch.clone())
        .map_err(|e| invalid(format!("{e}; build batches as docs/FORMAT.md describes (the SDK does)")))?;
    let h = parsed.header();
    if h.count == 0 {
        return Err(invalid("the batch holds no records; send at least one".into()));
    }
    if h.control {
        return Err(invalid(
            "control batches (transaction markers) are written by transaction coordinators only; send plain or \
             transactional batches"
                .into(),
        ));
    }
    check_producer(&h.producer, h.count).map_err(invalid)?;
    check_expansion(&parsed, max_batch_bytes)?;
    let mut tag_summary = 0;
    for (i, record) in parsed.records().enumerate() {
        let record =
            record.map_err(|e| invalid(format!("{e}; build batches as docs/FORMAT.md describes (the SDK does)")))?;
        tag_summary |= record.tag().map_or(0, tag_summary_bit);
        let size = message_bytes(&record);
        if size > max_message_bytes as usize {
            return Err(error(
                ErrorCode::MessageTooLarge,
                format!(
                    "message {i} of the batch is {size} bytes (key, value, tag and properties); the topic \
                     accepts at most {max_message_bytes} (max_message_bytes): shrink the message, or raise \
                     the topic's limit (`sluice topic alter TOPIC --max-message-bytes N`)"
                ),
            ));
        }
    }
    // A tag filter skips a batch by its summary: one that left out a tag would hide messages.
    if let Some(header) = h.tag_summary
        && header != tag_summary
    {
        return Err(invalid(format!("{}", BatchError::TagSummary { header, computed: tag_summary })));
    }
    Ok(Checked { delayed: h.delayed, count: h.count, transactional: h.transactional, producer: h.producer })
}

/// A compressed batch must not expand beyond what the broker accepts uncompressed (a
/// decompression bomb), which is checked from its stated lengths before anything is
/// decompressed. The records are then read, values decompressed, like any batch's: a payload
/// that does not decompress is refused here, never acknowledged and then failing every consumer.
fn check_expansion(parsed: &RecordBatch, max_batch_bytes: u32) -> Result<(), Error> {
    if parsed.header().compression == Compression::None {
        return Ok(());
    }
    let expanded = parsed.expanded_len().map_err(|e| {
        error(ErrorCode::InvalidRequest, format!("{e}; build batches as docs/FORMAT.md describes (the SDK does)"))
    })?;
    if expanded > max_batch_bytes as usize {
        let message = format!(
            "the {} batch expands to {expanded} bytes; this broker accepts batches of at most {max_batch_bytes} \
             bytes uncompressed (max_batch_bytes): split it into smaller batches",
            parsed.header().compression
        );
        return Err(error(ErrorCode::MessageTooLarge, message));
    }
    Ok(())
}

/// What [`check_batch`] learnt of a valid batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Checked {
    delayed: bool,
    count: u32,
    transactional: bool,
    producer: ProducerStamp,
}

/// Checks a batch's producer fields (docs/FORMAT.md, "Header fields"): all three -1 when not
/// idempotent, as in Kafka; otherwise an id and epoch `InitProducer` could have returned and a
/// sequence range that does not pass `i32::MAX` (sequences count records and do not wrap).
fn check_producer(p: &ProducerStamp, count: u32) -> Result<(), String> {
    let (id, epoch, base) = (p.producer_id, p.epoch, p.base_sequence);
    if id == -1 {
        if (epoch, base) == (-1, -1) {
            return Ok(());
        }
        return Err(format!(
            "producer id -1 (not idempotent) with epoch {epoch} and base sequence {base}: a batch that is not \
             idempotent carries epoch -1 and base sequence -1"
        ));
    }
    if id < 1 || epoch < 0 || base < 0 {
        return Err(format!(
            "producer id {id}, epoch {epoch}, base sequence {base}: an idempotent batch carries the id (at \
             least 1) and epoch (at least 0) InitProducer returned and a base sequence of at least 0; a batch \
             that is not idempotent carries -1 in all three"
        ));
    }
    let last = i64::from(base) + i64::from(count) - 1;
    if last > i64::from(i32::MAX) {
        return Err(format!(
            "base sequence {base} with {count} records would reach sequence {last}, past 2^31 - 1: sequences do \
             not wrap; continue under a new producer id (InitProducer)"
        ));
    }
    Ok(())
}

/// A message's size as its topic's `max_message_bytes` counts it: key, value, tag and
/// properties (names and values), without the framing.
fn message_bytes(r: &RecordView) -> usize {
    let properties: usize = r.properties().map(|(k, v)| k.len() + v.len()).sum();
    r.key.as_ref().map_or(0, Bytes::len) + r.value.len() + r.tag().map_or(0, str::len) + properties
}

#[cfg(test)]
mod tests {
    use sluice_common::record::{BatchBuilder, Record};

    use super::*;

    fn batch(stamp: ProducerStamp, records: &[Record]) -> Bytes {
        let mut b = BatchBuilder::new(stamp, 256);
        records.iter().for_each(|r| b.push(r));
        b.finish()
    }

    fn code(result: Result<Checked, Error>) -> ErrorCode {
        result.unwrap_err().error_code()
    }

    #[test]
    fn messages_count_key_value_tag_and_properties() {
        let r = Record {
            key: Some(Bytes::from_static(b"kk")),
            value: Bytes::from_static(b"vvvv"),
            tag: Some("t".into()),
            properties: vec![("a".into(), "bcd".into())],
            timestamp_ms: 5,
        };
        let b = batch(ProducerStamp::NONE, std::slice::from_ref(&r));
        assert_eq!(check_batch(&b, 11, 1024).map(|c| c.delayed), Ok(false));
        let e = check_batch(&b, 10, 1024).unwrap_err();
        assert_eq!(e.error_code(), ErrorCode::MessageTooLarge);
        assert!(e.message.contains("11 bytes") && e.message.contains("at most 10"), "{}", e.message);
    }

    #[test]
    fn oversize_corrupt_empty_and_badly_stamped_batches_are_refused() {
        let b = batch(ProducerStamp::NONE, &[Record::new("x".repeat(100), 1)]);
        let e = check_batch(&b, 1024, 64).unwrap_err();
        assert_eq!(e.error_code(), ErrorCode::MessageTooLarge);
        assert!(e.message.contains("at most 64 bytes"), "{}", e.message);
        let mut damaged = b.to_vec();
        *damaged.last_mut().unwrap() ^= 1;
        assert_eq!(code(check_batch(&Bytes::from(damaged), 1024, 1024)), ErrorCode::InvalidRequest);
        assert_eq!(code(check_batch(&batch(ProducerStamp::NONE, &[]), 1024, 1024)), ErrorCode::InvalidRequest);
        let stamp = ProducerStamp { producer_id: 3, epoch: 0, base_sequence: -5 };
        assert_eq!(code(check_batch(&batch(stamp, &[Record::new("v", 1)]), 1024, 1024)), ErrorCode::InvalidRequest);
        let ok = ProducerStamp { producer_id: 3, epoch: 0, base_sequence: 0 };
        assert_eq!(check_batch(&batch(ok, &[Record::new("v", 1)]), 1024, 1024).map(|c| c.delayed), Ok(false));
    }

    #[test]
    fn a_tag_summary_that_leaves_out_a_tag_is_refused() {
        let tagged = Record { tag: Some("TagA".into()), ..Record::new("v", 1) };
        let good = batch(ProducerStamp::NONE, &[tagged, Record::new("w", 2)]);
        assert_eq!(check_batch(&good, 1024, 1024).map(|c| c.delayed), Ok(false));
        let mut raw = good.to_vec();
        raw[46..54].copy_from_slice(&0u64.to_le_bytes());
        let crc = crc32fast::hash(&raw[4..]);
        raw[..4].copy_from_slice(&crc.to_le_bytes());
        let e = check_batch(&Bytes::from(raw), 1024, 1024).unwrap_err();
        assert_eq!(e.error_code(), ErrorCode::InvalidRequest);
        assert!(
            e.message.contains("tag_summary 0x0000000000000000 but its records' tags give 0x0000000001000000"),
            "{e:?}"
        );
    }

    #[test]
    fn producer_fields_are_all_minus_one_or_a_valid_idempotent_stamp() {
        let stamp = |producer_id, epoch, base_sequence| ProducerStamp { producer_id, epoch, base_sequence };
        let check = |s: ProducerStamp, count: u32| {
            let mut b = BatchBuilder::new(s, 64);
            (0..count).for_each(|i| b.push(&Record::new("v", i64::from(i))));
            check_batch(&b.finish(), 1024, 1 << 20).map(drop)
        };
        assert_eq!(check(ProducerStamp::NONE, 1), Ok(()));
        assert_eq!(check(stamp(1, 0, 0), 1), Ok(()));
        for (epoch, base) in [(0, 0), (5, 7), (-1, 0), (0, -1)] {
            let e = check(stamp(-1, epoch, base), 1).unwrap_err();
            assert_eq!(e.error_code(), ErrorCode::InvalidRequest);
            let says = format!("producer id -1 (not idempotent) with epoch {epoch} and base sequence {base}");
            assert!(e.message.contains(&says) && e.message.contains("carries epoch -1 and base sequence -1"), "{e:?}");
        }
        for bad in [stamp(-2, -1, -1), stamp(0, 0, 0), stamp(3, -1, 0), stamp(3, 0, -5)] {
            let e = check(bad, 1).unwrap_err();
            assert_eq!(e.error_code(), ErrorCode::InvalidRequest);
            assert!(e.message.contains("an idempotent batch carries the id (at least 1)"), "{bad:?}: {e:?}");
        }
        assert_eq!(check(stamp(3, 0, i32::MAX - 1), 2), Ok(()), "up to sequence 2^31 - 1");
        let e = check(stamp(3, 0, i32::MAX - 1), 3).unwrap_err();
        assert!(e.message.contains("would reach sequence 2147483648") && e.message.contains("do not wrap"), "{e:?}");
    }

    #[test]
    fn state_machine_replies_map_to_client_codes() {
        let dup = answer(Reply::Duplicate { base_offset: 4, count: 2 }, false).unwrap();
        assert_eq!((dup.base_offset, dup.count, dup.duplicate, dup.delayed), (4, 2, true, false));
        let dup = answer(Reply::Duplicate { base_offset: 4, count: 2 }, true).unwrap();
        assert_eq!((dup.delayed_base_seq, dup.count, dup.duplicate, dup.delayed), (4, 2, true, true));
        let delayed = answer(Reply::Delayed { base_seq: 9, count: 3 }, true).unwrap();
        assert_eq!((delayed.delayed_base_seq, delayed.count, delayed.delayed), (9, 3, true));
        let rejected = |code| answer(Reply::Rejected { code, message: "m".into() }, false).unwrap_err().error_code();
        assert_eq!(rejected(reject::INVALID_BATCH), ErrorCode::InvalidRequest);
        assert_eq!(rejected(reject::PRODUCER_FENCED), ErrorCode::ProducerFenced);
        assert_eq!(rejected(reject::OUT_OF_ORDER_SEQUENCE), ErrorCode::OutOfOrderSequence);
        assert_eq!(rejected(reject::UNKNOWN_PRODUCER), ErrorCode::UnknownProducer);
        assert_eq!(rejected(99), ErrorCode::Internal);
        assert_eq!(answer(Reply::Done, false).unwrap_err().error_code(), ErrorCode::Internal);
    }
}
