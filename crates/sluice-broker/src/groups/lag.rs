//! Consumer lag: how far a group's committed offsets are behind the end of each partition, in
//! messages and in time.
//!
//! Lag is `end − max(committed, log start)` messages (an offset retention trimmed away counts
//! from the log start, as a consumer resuming there would), and the age of the message at that
//! offset, 0 when the group is caught up. The end offset, the log start and that message are
//! read from this broker's replica when it leads the partition, and otherwise fetched from the
//! leader through the client API (one small fetch per partition): partition groups are
//! quiescent, so a follower's high watermark can stay a write behind on an idle partition
//! (docs/adr/0004). A follower replica here is the fallback when the leader cannot be asked.

use std::time::Duration;

use sluice_common::PartitionId;
use sluice_common::record::RecordBatch;
use sluice_proto::v1::sluice_client::SluiceClient;
use sluice_proto::v1::{FetchRequest, FetchResponse};
use sluice_proto::{ErrorCode, error_of};
use sluice_raft::partition::read_committed;

use super::context::{Context, now_ms};

/// One partition's lag for one group, as the metrics export it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupLag {
    /// The group.
    pub group: String,
    /// The consumed topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// Messages between the committed offset (clamped to the log start) and the end.
    pub messages: u64,
    /// Age of the first unconsumed message, in seconds (0 when caught up).
    pub seconds: f64,
}

/// Where a partition stands relative to a committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Position {
    /// The high watermark.
    pub end_offset: u64,
    /// The first offset still stored.
    pub log_start: u64,
    /// Messages from the committed offset (clamped to the log start) to the end.
    pub lag_messages: u64,
    /// Age of the message at that offset in ms; 0 when there is none.
    pub lag_ms: u64,
}

impl Position {
    fn of(end_offset: u64, log_start: u64, committed: Option<u64>, timestamp_ms: Option<i64>) -> Position {
        let from = committed.unwrap_or(log_start).max(log_start);
        let lag_messages = end_offset.saturating_sub(from);
        let lag_ms = match timestamp_ms {
            Some(ts) if lag_messages > 0 => u64::try_from(now_ms().saturating_sub(ts)).unwrap_or(0),
            _ => 0,
        };
        Position { end_offset, log_start, lag_messages, lag_ms }
    }
}

/// The timestamp of the message at `offset` in `batch` (whose first message is `base_offset`).
fn timestamp_at(batch: bytes::Bytes, base_offset: u64, offset: u64) -> Option<i64> {
    let skip = usize::try_from(offset.checked_sub(base_offset)?).ok()?;
    let parsed = RecordBatch::parse(batch).ok()?;
    parsed.records().nth(skip)?.ok().map(|r| r.timestamp_ms)
}

impl Context {
    /// Where `topic`/`partition` stands relative to `committed`; `None` when neither this
    /// broker's replica nor the leader could tell within `limit`.
    pub(super) async fn position(
        &self,
        topic: &str,
        partition: u32,
        committed: Option<u64>,
        limit: Duration,
    ) -> Option<Position> {
        let gid = self
            .controller
            .metadata()
            .read(|m| m.topic(topic)?.partition(PartitionId(partition)).map(|p| p.group_id))?;
        let led_here = self.partitions.raft(gid).is_some_and(|r| r.is_leader());
        if led_here && let Some(p) = self.local_position(gid, committed) {
            return Some(p);
        }
        let remote = tokio::time::timeout(limit, self.remote_position(topic, partition, gid, committed)).await;
        remote.ok().flatten().or_else(|| self.local_position(gid, committed))
    }

    /// From this broker's replica, if it hosts one that holds the message wanted.
    fn local_position(&self, gid: u64, committed: Option<u64>) -> Option<Position> {
        let end = *self.partitions.high_watermark(gid)?.borrow();
        let retained = self.partitions.log_start(gid)?.borrow().offset;
        let log = self.partitions.log(gid)?;
        let start = log.first_indexed_offset().unwrap_or(end).max(retained).min(end);
        let at = committed.unwrap_or(start).max(start);
        if at >= end {
            return Some(Position::of(end, start, committed, None));
        }
        let batch = read_committed(&log, at, end, 1).ok()?.into_iter().next()?;
        let ts = timestamp_at(batch.batch, batch.base_offset, at)?;
        Some(Position::of(end, start, committed, Some(ts)))
    }

    /// From the partition's leader: one fetch of at least one batch at the committed offset
    /// (or at the log start, when the offset was trimmed away).
    async fn remote_position(&self, topic: &str, partition: u32, gid: u64, committed: Option<u64>) -> Option<Position> {
        let reported =
            self.controller.metadata().read(|m| m.topic(topic)?.partition(PartitionId(partition))?.leader.map(|l| l.0));
        let leader = self.partitions.leader_of(gid).map(|(l, _)| l).or(reported)?;
        let address = self.broker_address(leader)?.client_address;
        let mut client = SluiceClient::new(self.channel(&address).ok()?).max_decoding_message_size(usize::MAX);
        let fetch = |offset| FetchRequest {
            topic: topic.into(),
            partition,
            offset,
            max_bytes: 1,
            max_wait_ms: 0,
            ..FetchRequest::default()
        };
        let mut at = committed.unwrap_or(0);
        for _ in 0..2 {
            let answer: FetchResponse = client.fetch(fetch(at)).await.ok()?.into_inner();
            let (end, start) = (answer.high_watermark, answer.log_start_offset);
            match error_of(answer.error.as_ref()).error_code() {
                ErrorCode::Ok => {
                    let ts = answer.batches.into_iter().next().and_then(|b| timestamp_at(b.batch, b.base_offset, at));
                    return Some(Position::of(end, start, committed, ts));
                }
                ErrorCode::OffsetOutOfRange if at < start => at = start,
                // Past the end (the partition lost data the group had consumed): nothing is due.
                ErrorCode::OffsetOutOfRange => return Some(Position::of(end, start, committed, None)),
                _ => return None,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use sluice_common::record::{BatchBuilder, ProducerStamp, Record};

    use super::*;

    #[test]
    fn lag_counts_from_the_committed_offset_clamped_to_the_log_start() {
        let p = Position::of(100, 40, Some(10), None);
        assert_eq!((p.lag_messages, p.lag_ms), (60, 0), "a trimmed-away offset counts from the log start");
        assert_eq!(Position::of(100, 40, Some(90), None).lag_messages, 10);
        assert_eq!(Position::of(100, 40, None, None).lag_messages, 60, "nothing committed: from the log start");
        let caught_up = Position::of(100, 0, Some(100), Some(1));
        assert_eq!((caught_up.lag_messages, caught_up.lag_ms), (0, 0), "caught up: no age");
        let old = Position::of(100, 0, Some(50), Some(now_ms() - 5_000));
        assert!((5_000..6_000).contains(&old.lag_ms), "{}", old.lag_ms);
        assert_eq!(Position::of(100, 0, Some(50), Some(now_ms() + 60_000)).lag_ms, 0, "a future timestamp is no age");
    }

    #[test]
    fn the_timestamp_is_the_wanted_message_s() {
        let mut b = BatchBuilder::new(ProducerStamp::NONE, 256);
        for i in 0..3 {
            b.push(&Record::new(format!("m{i}"), 1_000 + i));
        }
        let batch = b.finish();
        assert_eq!(timestamp_at(batch.clone(), 10, 12), Some(1_002));
        assert_eq!(timestamp_at(batch.clone(), 10, 9), None, "before the batch");
        assert_eq!(timestamp_at(batch, 10, 13), None, "after the batch");
    }
}
