//! `RedriveDeadLetters` and `PurgeDeadLetters` (docs/adr/0012-retries.md §6).
//!
//! A redrive reads `<group>.dlq` from the group's redrive cursor (or its purge cursor, if that
//! is further) and, in one batch of group records, makes each read entry's original message due
//! now at attempt 1 — by reference, from the `sluice.dlq.*` properties — and moves the cursor
//! past them. It runs under the group's turn, so two redrives never read the same entries:
//! redriving twice delivers once.
//!
//! A purge moves the group's purge cursor: redrives skip the entries before it. The DLQ topic
//! itself is an ordinary topic, trimmed by its own retention; Sluice has no call that deletes
//! records before an offset of a client topic, so a purged entry stays readable with `Fetch`
//! until retention removes it.

use std::sync::Arc;

use sluice_common::record::RecordBatch;
use sluice_common::retry::Place;
use sluice_proto::v1::list_offsets_request::At;
use sluice_proto::v1::{
    FetchRequest, Isolation, ListOffsetsRequest, PurgeDeadLettersRequest, PurgeDeadLettersResponse,
    RedriveDeadLettersRequest, RedriveDeadLettersResponse, purge_dead_letters_request::Before,
};
use sluice_proto::{Error, ErrorCode, error_of};

use super::dlq::{KEY_HASH_PROPERTY, dlq_topic, leader_client};
use crate::groups::context::Context;
use crate::groups::coordinator::Coordinator;
use crate::groups::coordinators::Coordinators;

/// Entries a redrive takes when it names no maximum, and the most it may name.
const DEFAULT_REDRIVE: usize = 1_000;
const MAX_REDRIVE: usize = 10_000;
/// Bytes one redrive reads of the DLQ at most.
const REDRIVE_BYTES: u32 = 4 * 1024 * 1024;

impl Coordinators {
    pub async fn redrive_dead_letters(&self, request: RedriveDeadLettersRequest) -> RedriveDeadLettersResponse {
        let answer = match self.route(&request.group) {
            Ok(c) => redrive(&c, &request).await,
            Err(e) => Err(e),
        };
        answer
            .unwrap_or_else(|e| RedriveDeadLettersResponse { error: Some(e), ..RedriveDeadLettersResponse::default() })
    }

    pub async fn purge_dead_letters(&self, request: PurgeDeadLettersRequest) -> PurgeDeadLettersResponse {
        let answer = match self.route(&request.group) {
            Ok(c) => purge(&c, &request).await,
            Err(e) => Err(e),
        };
        answer.unwrap_or_else(|e| PurgeDeadLettersResponse { error: Some(e), ..PurgeDeadLettersResponse::default() })
    }
}

fn not_found(group: &str) -> Error {
    Error::new(ErrorCode::GroupNotFound, format!("group {group:?} does not exist"))
}

async fn redrive(c: &Arc<Coordinator>, req: &RedriveDeadLettersRequest) -> Result<RedriveDeadLettersResponse, Error> {
    let turn = c.turn(&req.group).await?;
    let cursors = c.state().retries_of(&req.group).map(|r| (r.dlq.redrive_offset, r.dlq.purge_offset));
    let (redrive_offset, purge_offset) = cursors.ok_or_else(|| not_found(&req.group))?;
    let max = match req.max_messages as usize {
        0 => DEFAULT_REDRIVE,
        n => n.min(MAX_REDRIVE),
    };
    let from = redrive_offset.max(purge_offset);
    let (read, next_offset) = read_dead_letters(&c.ctx, &dlq_topic(&req.group), from, max).await?;
    if next_offset > redrive_offset {
        let records = c.state().redrive(&req.group, &read, next_offset, c.retries.now_ms());
        c.write(&req.group, &records).await?;
    }
    drop(turn);
    let redriven = u32::try_from(read.len()).unwrap_or(u32::MAX);
    Ok(RedriveDeadLettersResponse { error: Some(Error::ok()), redriven, next_offset: next_offset.max(redrive_offset) })
}

/// Up to `max` dead letters of `topic` from offset `from`: their original places and key
/// hashes, and the offset after the last one read (`from` if none).
async fn read_dead_letters(
    ctx: &Context,
    topic: &str,
    from: u64,
    max: usize,
) -> Result<(Vec<(Place, Option<u64>)>, u64), Error> {
    if ctx.partition_home(topic, 0).is_none() {
        return Ok((Vec::new(), from));
    }
    let mut at = from;
    for _ in 0..2 {
        let request = FetchRequest {
            topic: topic.to_owned(),
            partition: 0,
            offset: at,
            max_bytes: REDRIVE_BYTES,
            isolation: Isolation::ReadUncommitted as i32,
            ..FetchRequest::default()
        };
        let answer = leader_client(ctx, topic, 0)?
            .fetch(request)
            .await
            .map_err(|s| Error::new(ErrorCode::Unavailable, s.message().to_owned()))?
            .into_inner();
        let error = error_of(answer.error.as_ref());
        match error.error_code() {
            ErrorCode::Ok => return Ok(entries_of(&answer.batches, at, max)),
            // Trimmed by retention: start at what is left.
            ErrorCode::OffsetOutOfRange if at < answer.log_start_offset => at = answer.log_start_offset,
            ErrorCode::OffsetOutOfRange => return Ok((Vec::new(), at)),
            _ => return Err(error),
        }
    }
    Ok((Vec::new(), at))
}

/// The dead letters of `batches` at or after `from`, at most `max`, and the offset after the
/// last one taken (`from` if none).
fn entries_of(batches: &[sluice_proto::v1::FetchedBatch], from: u64, max: usize) -> (Vec<(Place, Option<u64>)>, u64) {
    let mut out = Vec::new();
    let mut next = from;
    for b in batches {
        let Ok(batch) = RecordBatch::parse(b.batch.clone()) else { continue };
        for (offset, record) in (b.base_offset..).zip(batch.records()) {
            if offset < from {
                continue;
            }
            if out.len() == max {
                return (out, next);
            }
            next = offset + 1;
            let Ok(record) = record.map(|view| view.to_record()) else { continue };
            let prop = |k: &str| record.properties.iter().find(|(p, _)| p == k).map(|(_, v)| v.as_str());
            let place = (|| {
                let topic = prop("sluice.dlq.topic")?.to_owned();
                let partition = prop("sluice.dlq.partition")?.parse().ok()?;
                let offset = prop("sluice.dlq.offset")?.parse().ok()?;
                Some(Place { topic, partition, offset })
            })();
            if let Some(place) = place {
                out.push((place, prop(KEY_HASH_PROPERTY).and_then(|k| k.parse().ok())));
            }
        }
    }
    (out, next)
}

async fn purge(c: &Arc<Coordinator>, req: &PurgeDeadLettersRequest) -> Result<PurgeDeadLettersResponse, Error> {
    let before = match req.before {
        Some(Before::Offset(offset)) => offset,
        Some(Before::TimestampMs(ts)) => offset_at(&c.ctx, &dlq_topic(&req.group), ts).await?,
        None => return Err(Error::new(ErrorCode::InvalidRequest, "name an offset or a time to purge before")),
    };
    let turn = c.turn(&req.group).await?;
    let records = c.state().purge(&req.group, before);
    c.write(&req.group, &records).await?;
    let purge_offset =
        c.state().retries_of(&req.group).map(|r| r.dlq.purge_offset).ok_or_else(|| not_found(&req.group))?;
    drop(turn);
    Ok(PurgeDeadLettersResponse { error: Some(Error::ok()), purge_offset })
}

/// The first DLQ offset written at or after `timestamp_ms` (0 if the DLQ does not exist).
async fn offset_at(ctx: &Context, topic: &str, timestamp_ms: i64) -> Result<u64, Error> {
    if ctx.partition_home(topic, 0).is_none() {
        return Ok(0);
    }
    let request = ListOffsetsRequest {
        topic: topic.to_owned(),
        partition: 0,
        at: Some(At::TimestampMs(timestamp_ms)),
        isolation: Isolation::ReadUncommitted as i32,
    };
    let answer = leader_client(ctx, topic, 0)?
        .list_offsets(request)
        .await
        .map_err(|s| Error::new(ErrorCode::Unavailable, s.message().to_owned()))?
        .into_inner();
    let error = error_of(answer.error.as_ref());
    if error.is_ok() { Ok(answer.offset) } else { Err(error) }
}
