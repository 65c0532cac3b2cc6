//! Delayed messages in the client API (docs/DELAYS.md): checking a delayed batch's delivery
//! times before it is proposed, `CancelDelayed` and `ListDelayed`.

use std::time::Duration;

use bytes::Bytes;
use sluice_common::delay::deliver_at_of;
use sluice_common::record::RecordBatch;
use sluice_proto::v1::{
    CancelDelayedRequest, CancelDelayedResponse, CancelOutcome as WireOutcome, DelayedMessage, ListDelayedRequest,
    ListDelayedResponse,
};
use sluice_proto::{Error, ErrorCode};
use sluice_raft::Reply;
use sluice_raft::partition::delay::CancelOutcome;
use sluice_raft::partition::{PartitionCommand, WriteError};

use super::ClientService;
use super::errors::error;
use crate::delays::wall_clock_ms;

/// The longest a cancel waits for its commit.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages `ListDelayed` returns at most.
const MAX_LIST: u32 = 10_000;

impl ClientService {
    /// Refuses a delayed batch with a record whose delivery time is missing, malformed or
    /// beyond `max_delay_ms` from now (a time in the past is due at once).
    pub(super) fn check_delays(&self, batch: &Bytes) -> Result<(), Error> {
        let parsed = RecordBatch::parse(batch.clone()).map_err(|e| error(ErrorCode::InvalidRequest, e.to_string()))?;
        let latest = wall_clock_ms().saturating_add(self.max_delay_ms);
        for (i, record) in parsed.records().enumerate() {
            let record = record.map_err(|e| error(ErrorCode::InvalidRequest, e.to_string()))?;
            let at = deliver_at_of(&record).map_err(|e| error(ErrorCode::InvalidDelay, format!("message {i}: {e}")))?;
            if at > latest {
                let message = format!(
                    "message {i} is due at {at} ms, more than the brokers' max_delay_ms ({} ms, {} days) ahead: \
                     deliver it sooner, or raise max_delay_ms",
                    self.max_delay_ms,
                    self.max_delay_ms / 86_400_000
                );
                return Err(error(ErrorCode::InvalidDelay, message));
            }
        }
        Ok(())
    }

    pub(super) async fn handle_cancel_delayed(&self, request: CancelDelayedRequest) -> CancelDelayedResponse {
        match self.cancel_delayed(&request).await {
            Ok(outcome) => CancelDelayedResponse { error: Some(Error::ok()), outcome: outcome as i32 },
            Err(e) => CancelDelayedResponse { error: Some(e), ..CancelDelayedResponse::default() },
        }
    }

    async fn cancel_delayed(&self, request: &CancelDelayedRequest) -> Result<WireOutcome, Error> {
        let led = self.led_partition(&request.topic, request.partition)?;
        let delays = self
            .partitions
            .delays()
            .ok_or_else(|| error(ErrorCode::Internal, "this broker keeps no delayed messages"))?;
        // Not beside a release of the partition: each must be built knowing the other's effect.
        let command = PartitionCommand::cancel(request.seq);
        let outcome = delays.write_serialised(led.group_id, &led.raft, command, CANCEL_TIMEOUT).await;
        let name = format!("{}/{}", led.topic, led.partition);
        match outcome {
            Some(Ok(Reply::Cancel(CancelOutcome::Cancelled))) => Ok(WireOutcome::Cancelled),
            Some(Ok(Reply::Cancel(CancelOutcome::AlreadyDelivered))) => Ok(WireOutcome::AlreadyDelivered),
            Some(Ok(Reply::Cancel(CancelOutcome::Unknown))) => Err(error(
                ErrorCode::InvalidRequest,
                format!(
                    "{name} has no delayed message {}-{}: it never gave out that number",
                    led.partition, request.seq
                ),
            )),
            Some(Ok(other)) => Err(error(ErrorCode::Internal, format!("{name} answered {other:?} to a cancel"))),
            Some(Err(WriteError::NotLeader { leader })) => Err(self.not_leader(&led.topic, led.partition, leader)),
            Some(Err(e)) => Err(error(ErrorCode::Unavailable, format!("{name}: {e}; retry"))),
            None => Err(error(
                ErrorCode::Timeout,
                format!(
                    "{name}: the cancel was not committed within {CANCEL_TIMEOUT:?}; retry (a repeated cancel is safe)"
                ),
            )),
        }
    }

    pub(super) async fn handle_list_delayed(&self, request: ListDelayedRequest) -> ListDelayedResponse {
        match self.list_delayed(&request).await {
            Ok((messages, pending)) => ListDelayedResponse { error: Some(Error::ok()), messages, pending },
            Err(e) => ListDelayedResponse { error: Some(e), ..ListDelayedResponse::default() },
        }
    }

    async fn list_delayed(&self, request: &ListDelayedRequest) -> Result<(Vec<DelayedMessage>, u64), Error> {
        let led = self.led_partition(&request.topic, request.partition)?;
        let name = format!("{}/{}", led.topic, led.partition);
        // The leader's store once it has applied what it inherited: what it would release.
        if !self.partitions.leader_caught_up_within(led.group_id, Duration::from_secs(2)).await {
            return Err(error(ErrorCode::Unavailable, format!("{name}: the leader is catching up; retry")));
        }
        let delays = self
            .partitions
            .delays()
            .ok_or_else(|| error(ErrorCode::Internal, "this broker keeps no delayed messages"))?;
        let limit = match request.limit {
            0 => 100,
            n => n.min(MAX_LIST),
        } as usize;
        let (store, group, from) = (std::sync::Arc::clone(delays.store()), led.group_id, request.from_due_ms);
        let read = tokio::task::spawn_blocking(move || {
            Ok::<_, std::io::Error>((store.pending(group, from, u64::MAX, limit, usize::MAX)?, store.count(group)?))
        });
        let (rows, pending) = read
            .await
            .map_err(|e| error(ErrorCode::Internal, e.to_string()))?
            .map_err(|e| error(ErrorCode::Internal, format!("{name}: reading its delayed messages: {e}")))?;
        let messages = rows.iter().filter_map(|row| describe(row.seq, row.due_ms, &row.batch)).collect();
        Ok((messages, pending))
    }
}

/// A pending message as `ListDelayed` shows it (its value's size, not the value).
fn describe(seq: u64, due_ms: u64, batch: &Bytes) -> Option<DelayedMessage> {
    let view = RecordBatch::parse(batch.clone()).ok()?.records().next()?.ok()?;
    Some(DelayedMessage {
        seq,
        due_ms,
        key: view.key.clone(),
        tag: view.tag().map(str::to_owned),
        timestamp_ms: view.timestamp_ms,
        value_bytes: view.value.len() as u32,
    })
}
