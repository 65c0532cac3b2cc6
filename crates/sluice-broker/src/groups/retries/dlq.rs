//! The dead-letter writer (docs/adr/0012-retries.md §5): a message's step to the DLQ is one
//! group record that removes its retry state and reserves DLQ entry `sequence` of the group's
//! DLQ producer id. This task then writes each reserved entry to `<group>.dlq` (created on
//! first use, one partition), as an idempotent batch stamped with that producer id and
//! sequence, and records it written. A new coordinator redoes every reservation not recorded
//! written, with the same sequence: the partition drops a batch it holds already (a duplicate
//! of one of the producer's last batches, or older than them), so each entry is written once.
//!
//! A group's entries are written in sequence order, one at a time, as an idempotent producer
//! must. The entry is the original message — key, tag, value, properties — read from its
//! partition by offset, plus `sluice.dlq.*` properties saying where it came from and why.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_common::record::{BatchBuilder, ProducerStamp, Record, RecordBatch};
use sluice_proto::v1::sluice_client::SluiceClient;
use sluice_proto::v1::{CreateTopicRequest, FetchRequest, Isolation, ProduceRequest, TopicConfig};
use sluice_proto::{Error, ErrorCode, error_of};
use tonic::transport::Channel;

use super::RETRY_PAUSE;
use crate::groups::context::Context;
use crate::groups::coordinator::{Coordinator, Phase};
use crate::groups::state::{Coordinated, Reserved};

/// The dead-letter topic of `group`.
pub(crate) fn dlq_topic(group: &str) -> String {
    format!("{group}.dlq")
}

/// The property naming the key hash of a dead letter of a key-ordered group (for a redrive).
pub(super) const KEY_HASH_PROPERTY: &str = "sluice.dlq.key_hash";

/// How long one call to another broker may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest pause between attempts to write a dead letter that keeps failing.
const MAX_PAUSE: Duration = Duration::from_secs(10);

/// Writes reserved dead letters, until the coordinator retires.
pub(super) async fn run(c: Arc<Coordinator>) {
    let mut phases = c.phases();
    let mut failing = RETRY_PAUSE;
    loop {
        let reserved = c.retries.reserved.notified();
        // A DLQ that cannot be written (too few live brokers for its replicas) is tried again,
        // less and less often.
        let pause = match write_pending(&c).await {
            Ok(()) => {
                failing = RETRY_PAUSE;
                Duration::from_secs(3600)
            }
            Err(()) => {
                let pause = failing;
                failing = (failing * 2).min(MAX_PAUSE);
                pause
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = reserved => {}
            _ = phases.wait_for(|p| *p == Phase::Retired) => return,
        }
    }
}

/// Writes every group's reserved entries; `Err` at the first that fails (its group's later
/// ones wait: sequences go in order).
async fn write_pending(c: &Arc<Coordinator>) -> Result<(), ()> {
    if c.phase() != Phase::Active {
        return Ok(());
    }
    let pending = c.state().pending_dead_letters();
    let mut outcome = Ok(());
    for (group, producer, entries) in pending {
        for (sequence, reserved) in entries {
            let written = write_one(c, &group, (producer, sequence), &reserved).await;
            if let Err(e) = written {
                if e.error_code() == ErrorCode::UnknownProducer {
                    // Idle past its expiration, the group's producer id is forgotten by the DLQ
                    // partition, which takes an unknown producer only from its sequence 0.
                    let restarted = restart_producer(c, &group, sequence).await;
                    tracing::info!(
                        group,
                        sequence,
                        ?restarted,
                        "the dead-letter queue no longer knew the group's producer id; writing under a new one"
                    );
                } else {
                    tracing::info!(group, sequence, "writing a dead letter failed, trying again: {}", e.message);
                }
                outcome = Err(());
                break;
            }
        }
    }
    outcome
}

/// Moves `group`'s dead letters from `sequence` on to a new producer id, from its sequence 0.
async fn restart_producer(c: &Arc<Coordinator>, group: &str, sequence: i32) -> Result<(), Error> {
    let producer_id = crate::txn::ids::allocate(&c.ctx).await?;
    let turn = c.turn(group).await?;
    let records = c.state().restart_dead_letters(group, producer_id, sequence);
    c.write(group, &records).await?;
    drop(turn);
    Ok(())
}

/// Writes entry `sequence` to the group's DLQ, then records it written.
async fn write_one(
    c: &Arc<Coordinator>,
    group: &str,
    ((producer_id, base), sequence): ((i64, i32), i32),
    reserved: &Reserved,
) -> Result<(), Error> {
    let topic = dlq_topic(group);
    ensure_topic(&c.ctx, &topic).await?;
    let original = read_original(&c.ctx, reserved).await?;
    let batch = dead_letter_batch(group, (producer_id, sequence.wrapping_sub(base)), reserved, original);
    produce(&c.ctx, &topic, batch).await?;
    let turn = c.turn(group).await?;
    // Recorded once: a reload in between may have found it written already.
    let still = c.state().retries_of(group).is_some_and(|r| r.dlq.pending.contains_key(&sequence));
    if still {
        c.write(group, &[Coordinated::dead_letter_written(group, sequence)]).await?;
        c.ctx.retry_counters.dlq_written(group);
    }
    drop(turn);
    Ok(())
}

/// Creates `topic` (one partition) if it does not exist, through the controller leader.
async fn ensure_topic(ctx: &Context, topic: &str) -> Result<(), Error> {
    if ctx.partition_home(topic, 0).is_some() {
        return Ok(());
    }
    if ctx.controller.is_leader() {
        return ctx.create_internal_topic(topic, 1).await;
    }
    let unavailable = || Error::new(ErrorCode::Unavailable, format!("no controller leader to create {topic}"));
    let leader = ctx.controller.leader().await.ok_or_else(unavailable)?;
    let address = ctx.broker_address(leader).ok_or_else(unavailable)?;
    let config =
        TopicConfig { partitions: 1, replication_factor: ctx.internal_replication_factor(), ..TopicConfig::default() };
    let request = CreateTopicRequest { name: topic.to_owned(), config: Some(config) };
    let answer = client_at(ctx, &address.client_address)?.create_topic(request).await;
    let answer = answer.map_err(|s| Error::new(ErrorCode::Unavailable, s.message().to_owned()))?.into_inner();
    match error_of(answer.error.as_ref()) {
        e if e.is_ok() || e.error_code() == ErrorCode::TopicExists => Ok(()),
        e => Err(e),
    }
}

/// A client of the broker at `address`.
fn client_at(ctx: &Context, address: &str) -> Result<SluiceClient<Channel>, Error> {
    Ok(SluiceClient::new(ctx.channel(address)?).max_decoding_message_size(usize::MAX))
}

/// A client of the leader of `topic`/`partition`, as this broker knows it.
pub(super) fn leader_client(ctx: &Context, topic: &str, partition: u32) -> Result<SluiceClient<Channel>, Error> {
    let unavailable = || Error::new(ErrorCode::Unavailable, format!("{topic}/{partition} has no known leader"));
    let home = ctx.partition_home(topic, partition).ok_or_else(unavailable)?;
    let leader = ctx.leader_of(&home).ok_or_else(unavailable)?;
    let address = ctx.broker_address(leader).ok_or_else(unavailable)?;
    client_at(ctx, &address.client_address)
}

/// The original message of `reserved`; `None` if its partition no longer holds it (trimmed
/// by retention, or its topic deleted): the entry then says so instead of carrying it.
async fn read_original(ctx: &Context, reserved: &Reserved) -> Result<Option<Record>, Error> {
    let p = &reserved.place;
    if ctx.partition_home(&p.topic, p.partition).is_none() {
        return Ok(None);
    }
    let request = FetchRequest {
        topic: p.topic.clone(),
        partition: p.partition,
        offset: p.offset,
        max_bytes: 1,
        isolation: Isolation::ReadUncommitted as i32,
        ..FetchRequest::default()
    };
    let fetched = tokio::time::timeout(CALL_TIMEOUT, leader_client(ctx, &p.topic, p.partition)?.fetch(request)).await;
    let answer = fetched
        .map_err(|_| Error::new(ErrorCode::Timeout, "reading a dead letter's message timed out"))?
        .map_err(|s| Error::new(ErrorCode::Unavailable, s.message().to_owned()))?
        .into_inner();
    match error_of(answer.error.as_ref()).error_code() {
        ErrorCode::Ok => {}
        ErrorCode::OffsetOutOfRange => return Ok(None),
        _ => return Err(error_of(answer.error.as_ref())),
    }
    let at = |b: &sluice_proto::v1::FetchedBatch| -> Option<Record> {
        let skip = usize::try_from(p.offset.checked_sub(b.base_offset)?).ok()?;
        let batch = RecordBatch::parse(b.batch.clone()).ok()?;
        batch.records().nth(skip)?.ok().map(|view| view.to_record())
    };
    Ok(answer.batches.iter().find(|b| b.offset_deltas.is_empty()).and_then(at))
}

/// The DLQ entry of `reserved` as an idempotent batch stamped `(producer_id, sequence)`.
fn dead_letter_batch(
    group: &str,
    (producer_id, sequence): (i64, i32),
    r: &Reserved,
    original: Option<Record>,
) -> Bytes {
    let missing = original.is_none();
    let mut record = original.unwrap_or_default();
    record.timestamp_ms = crate::groups::context::now_ms();
    let mut props = vec![
        ("sluice.dlq.topic", r.place.topic.clone()),
        ("sluice.dlq.partition", r.place.partition.to_string()),
        ("sluice.dlq.offset", r.place.offset.to_string()),
        ("sluice.dlq.group", group.to_owned()),
        ("sluice.dlq.attempts", r.attempts.to_string()),
        ("sluice.dlq.first_failure_ms", r.first_failure_ms.to_string()),
        ("sluice.dlq.last_failure_ms", r.last_failure_ms.to_string()),
        ("sluice.dlq.reason", r.reason.clone()),
    ];
    if let Some(key) = r.key {
        props.push((KEY_HASH_PROPERTY, key.to_string()));
    }
    if missing {
        props.push(("sluice.dlq.missing", "the original message is no longer retained".to_owned()));
    }
    record.properties.retain(|(k, _)| !k.starts_with("sluice.dlq."));
    record.properties.extend(props.into_iter().map(|(k, v)| (k.to_owned(), v)));
    let stamp = ProducerStamp { producer_id, epoch: 0, base_sequence: sequence };
    let mut builder = BatchBuilder::new(stamp, sluice_common::record::BATCH_HEADER_LEN + record.value.len() + 1024);
    builder.push(&record);
    builder.finish()
}

/// Produces `batch` to partition 0 of `topic`: written, or found written before (a duplicate,
/// or a sequence older than the partition's last ones for the producer).
async fn produce(ctx: &Context, topic: &str, batch: Bytes) -> Result<(), Error> {
    let request = ProduceRequest { topic: topic.to_owned(), partition: 0, batch, ..ProduceRequest::default() };
    let sent = tokio::time::timeout(CALL_TIMEOUT, leader_client(ctx, topic, 0)?.produce(request)).await;
    let answer = sent
        .map_err(|_| Error::new(ErrorCode::Timeout, format!("writing to {topic} timed out")))?
        .map_err(|s| Error::new(ErrorCode::Unavailable, s.message().to_owned()))?
        .into_inner();
    let error = error_of(answer.error.as_ref());
    match error.error_code() {
        ErrorCode::Ok => Ok(()),
        ErrorCode::OutOfOrderSequence if error.message.contains("which is older") => Ok(()),
        _ => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use sluice_common::retry::Place;

    use super::*;

    #[test]
    fn a_dead_letter_keeps_the_message_and_says_where_it_came_from() {
        let reserved = Reserved {
            place: Place { topic: "orders".into(), partition: 2, offset: 41 },
            attempts: 3,
            first_failure_ms: 1_000,
            last_failure_ms: 9_000,
            reason: "boom".into(),
            key: Some(7),
        };
        let original = Record {
            key: Some(Bytes::from_static(b"k")),
            value: Bytes::from_static(b"v"),
            tag: Some("t".into()),
            properties: vec![("a".into(), "b".into()), ("sluice.dlq.reason".into(), "forged".into())],
            timestamp_ms: 5,
        };
        let batch = RecordBatch::parse(dead_letter_batch("billing", (9, 4), &reserved, Some(original))).unwrap();
        assert_eq!(batch.header().producer, ProducerStamp { producer_id: 9, epoch: 0, base_sequence: 4 });
        let record = batch.records().next().unwrap().unwrap().to_record();
        assert_eq!(
            (record.key.as_deref(), &record.value[..], record.tag.as_deref()),
            (Some(&b"k"[..]), &b"v"[..], Some("t"))
        );
        let prop = |k: &str| record.properties.iter().find(|(p, _)| p == k).map(|(_, v)| v.as_str());
        assert_eq!(prop("a"), Some("b"));
        assert_eq!(prop("sluice.dlq.reason"), Some("boom"), "a forged property is replaced");
        assert_eq!(
            (prop("sluice.dlq.topic"), prop("sluice.dlq.partition"), prop("sluice.dlq.offset")),
            (Some("orders"), Some("2"), Some("41"))
        );
        assert_eq!((prop("sluice.dlq.group"), prop("sluice.dlq.attempts")), (Some("billing"), Some("3")));
        assert_eq!(
            (prop("sluice.dlq.first_failure_ms"), prop("sluice.dlq.last_failure_ms")),
            (Some("1000"), Some("9000"))
        );
        assert_eq!(prop(KEY_HASH_PROPERTY), Some("7"));
        let gone = RecordBatch::parse(dead_letter_batch("billing", (9, 5), &reserved, None)).unwrap();
        let record = gone.records().next().unwrap().unwrap().to_record();
        assert!(record.properties.iter().any(|(k, _)| k == "sluice.dlq.missing"));
    }
}
