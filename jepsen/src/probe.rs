//! Single writes the runner makes itself, to learn what the cluster does with one write at a
//! given moment: the `disk-full` faults use them to check that writes are refused while a disk
//! is full, and that every partition takes writes again after the heal.
//!
//! A probe is one unary `Produce` request (not the SDK's producer) carrying one record with a
//! unique value (`probe-<n>`), without a producer id, sent once to the partition's leader as
//! the metadata names it and never resent. Its answer therefore tells what became of that one
//! sending, which an SDK delivery cannot: the SDK resends a batch after a retriable refusal
//! such as `STORAGE_FULL`, and the error a delivery ends with says nothing about the sendings
//! before its last (FINDINGS.md, F1). Every probe sent is recorded in the history as a send of
//! process [`PROBE_PROCESS`], and checked like the workload's sends: `ok` with its offset;
//! `fail` for `STORAGE_FULL` (a full disk: the broker's contract is that nothing was written)
//! and for the refusals the workload also counts as failures (non-retriable codes); `info` for
//! anything else, a lost answer included.

use std::time::Duration;

use sluice_client::{Client, ErrorCode};
use sluice_common::record::{BatchBuilder, ProducerStamp, Record};
use sluice_proto::v1::{self, sluice_client::SluiceClient};
use tonic::transport::Endpoint;

use crate::history::{AckLevel, Kind, Op};
use crate::workload::{PROBE_PROCESS, SharedRecorder, WorkloadError};

/// How long the metadata naming the leader may take.
const METADATA_LIMIT: Duration = Duration::from_secs(3);
/// How long connecting to the leader may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(1);
/// How long the broker may wait for the commit before it answers TIMEOUT (`timeout_ms`).
const COMMIT_WAIT: Duration = Duration::from_secs(2);
/// How long the answer may take in all; past it the probe is unknown.
const ANSWER_LIMIT: Duration = Duration::from_secs(4);
/// The code of a refusal for lack of disk space.
const STORAGE_FULL: i32 = ErrorCode::StorageFull as i32;

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Acknowledged at this offset.
    Written(u64),
    /// Refused with this code and message; recorded `fail` or `info` by [`refusal_kind`].
    Refused(i32, String),
    /// Sent, with no answer that says what happened (recorded `info`).
    Unknown(String),
    /// Never sent (no leader known, or it could not be connected to); not recorded.
    NotSent(String),
}

impl Answer {
    /// Whether the answer is the refusal of a full disk.
    pub fn is_storage_full(&self) -> bool {
        matches!(self, Answer::Refused(STORAGE_FULL, _))
    }
}

/// How a probe refused with `code` is recorded: `fail` (certainly not written) for
/// `STORAGE_FULL` and the non-retriable codes, `info` for the retriable ones and for codes this
/// build does not know. A probe is sent once, so its refusal is the answer to its only sending.
pub fn refusal_kind(code: i32) -> Kind {
    if code == STORAGE_FULL {
        return Kind::Fail;
    }
    match ErrorCode::try_from(code) {
        Ok(code) if code != ErrorCode::Ok && !code.is_retriable() => Kind::Fail,
        _ => Kind::Info,
    }
}

/// Sends probes to the partitions of one topic and records them.
pub struct Probe {
    client: Client,
    topic: String,
    partitions: u32,
    recorder: SharedRecorder,
    sent: u64,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe").field("topic", &self.topic).field("sent", &self.sent).finish_non_exhaustive()
    }
}

impl Probe {
    /// Probes of `topic`'s `partitions`, found through `client`'s metadata, recorded in
    /// `recorder`.
    pub fn new(client: Client, topic: impl Into<String>, partitions: u32, recorder: SharedRecorder) -> Probe {
        Probe { client, topic: topic.into(), partitions, recorder, sent: 0 }
    }

    /// The topic's partitions, in order.
    pub fn partitions(&self) -> std::ops::Range<u32> {
        0..self.partitions
    }

    /// Writes one new value to `partition`. Fails only if the history cannot be written.
    pub async fn write(&mut self, partition: u32) -> Result<Answer, WorkloadError> {
        let leader = match self.leader_address(partition).await {
            Ok(address) => address,
            Err(why) => return Ok(Answer::NotSent(why)),
        };
        let connect = Endpoint::from_shared(format!("http://{leader}"))
            .map(|endpoint| endpoint.connect_timeout(CONNECT_LIMIT).tcp_nodelay(true));
        let channel = match connect {
            Ok(endpoint) => match tokio::time::timeout(CONNECT_LIMIT, endpoint.connect()).await {
                Ok(Ok(channel)) => channel,
                Ok(Err(e)) => return Ok(Answer::NotSent(format!("connecting to {leader}: {e}"))),
                Err(_) => return Ok(Answer::NotSent(format!("connecting to {leader} timed out"))),
            },
            Err(e) => return Ok(Answer::NotSent(format!("leader address {leader:?}: {e}"))),
        };
        let value = format!("probe-{}", self.sent);
        self.sent += 1;
        let request = v1::ProduceRequest {
            topic: self.topic.clone(),
            partition,
            batch: batch_of(&value),
            timeout_ms: COMMIT_WAIT.as_millis() as u32,
            ..Default::default()
        };
        self.record(Kind::Invoke, &value, None, None)?;
        let answer = match tokio::time::timeout(ANSWER_LIMIT, SluiceClient::new(channel).produce(request)).await {
            Err(_) => Answer::Unknown(format!("no answer from {leader} within {ANSWER_LIMIT:?}")),
            Ok(Err(status)) => Answer::Unknown(format!("{leader}: {status}")),
            Ok(Ok(response)) => match response.into_inner() {
                v1::ProduceResponse { error: None, base_offset, .. } => Answer::Written(base_offset),
                v1::ProduceResponse { error: Some(e), base_offset, .. } if e.is_ok() => Answer::Written(base_offset),
                v1::ProduceResponse { error: Some(e), .. } => Answer::Refused(e.code, e.message),
            },
        };
        match &answer {
            Answer::Written(offset) => self.record(Kind::Ok, &value, Some((partition, *offset)), None)?,
            Answer::Refused(code, message) => {
                let error = format!("code {code} ({:?}): {message}", ErrorCode::try_from(*code).ok());
                self.record(refusal_kind(*code), &value, None, Some(error))?;
            }
            Answer::Unknown(why) => self.record(Kind::Info, &value, None, Some(why.clone()))?,
            Answer::NotSent(_) => unreachable!("recorded only once sent"),
        }
        Ok(answer)
    }

    /// The client address of `partition`'s leader, from fresh metadata.
    async fn leader_address(&self, partition: u32) -> Result<String, String> {
        let metadata = match tokio::time::timeout(METADATA_LIMIT, self.client.refresh_metadata()).await {
            Ok(Ok(metadata)) => metadata,
            Ok(Err(e)) => return Err(format!("metadata: {e}")),
            Err(_) => return Err("metadata: timed out".into()),
        };
        let leader = metadata
            .topics
            .get(&self.topic)
            .and_then(|t| t.partitions.get(partition as usize))
            .and_then(|p| p.leader)
            .ok_or_else(|| format!("partition {partition} has no leader in the metadata"))?;
        metadata.broker_address(leader).map(str::to_owned).ok_or_else(|| format!("no address for broker {leader}"))
    }

    fn record(
        &self,
        kind: Kind,
        value: &str,
        at: Option<(u32, u64)>,
        error: Option<String>,
    ) -> Result<(), WorkloadError> {
        // A probe asks for the default level (ACKS_ALL): its answer carries the offset.
        let op = Op::Send {
            value: value.to_owned(),
            partition: at.map(|a| a.0),
            offset: at.map(|a| a.1),
            acks: AckLevel::All,
        };
        let mut recorder = self.recorder.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        recorder
            .record_error(PROBE_PROCESS, kind, op, error)
            .map(drop)
            .map_err(|e| WorkloadError::History(format!("the probe: {e}")))
    }
}

/// A batch of one record holding `value`, without a producer id.
fn batch_of(value: &str) -> bytes::Bytes {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let record = Record::new(value.to_owned(), now_ms);
    let mut batch = BatchBuilder::new(ProducerStamp::NONE, 64 + value.len());
    batch.push(&record);
    batch.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_and_the_final_refusals_are_failures_the_rest_unknown() {
        assert_eq!(refusal_kind(STORAGE_FULL), Kind::Fail);
        for code in [ErrorCode::UnknownTopic, ErrorCode::UnknownPartition, ErrorCode::MessageTooLarge] {
            assert_eq!(refusal_kind(code as i32), Kind::Fail, "{code:?}");
        }
        for code in [ErrorCode::NotLeader, ErrorCode::Timeout, ErrorCode::Unavailable, ErrorCode::Internal] {
            assert_eq!(refusal_kind(code as i32), Kind::Info, "{code:?}");
        }
        assert_eq!(refusal_kind(ErrorCode::Ok as i32), Kind::Info, "OK is no refusal");
        assert_eq!(refusal_kind(9_999), Kind::Info, "a code this build does not know");
        assert!(Answer::Refused(STORAGE_FULL, "full".into()).is_storage_full());
        assert!(!Answer::Refused(ErrorCode::NotLeader as i32, "moved".into()).is_storage_full());
    }

    #[test]
    fn a_probe_batch_holds_its_one_value_without_a_producer_id() {
        let bytes = batch_of("probe-7");
        let batch = sluice_common::record::RecordBatch::parse(bytes).unwrap();
        assert_eq!(batch.header().count, 1);
        assert!(!batch.header().producer.is_idempotent());
        let values: Vec<Vec<u8>> = batch.records().map(|r| r.unwrap().value.to_vec()).collect();
        assert_eq!(values, [b"probe-7".to_vec()]);
    }
}
