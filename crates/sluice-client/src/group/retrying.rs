//! The I/O of a member's per-message outcomes (docs/RETRIES.md), on [`Core`]: sending the
//! settles `settles.rs` batched, polling the coordinator for due retries of the partitions
//! the member owns and fetching each by its place, parking the messages of blocked keys, and
//! agreeing on the group's retry policy when the member joins.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use sluice_proto::ErrorCode;

use super::inner::Core;
use super::settles::Admit;
use crate::error::{Error, Result};
use crate::fetcher::fetch_one;
use crate::record::ConsumedRecord;
use crate::retries::{GroupRetryPolicy, SettleOutcome};
use crate::topic_partition::TopicPartition;

/// How often `poll` asks the coordinator for due retries: a retry is at most this late
/// because of the member (one small request per interval; nothing when none is due).
pub(super) const RETRY_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How many due retries one poll asks for. A full answer means more are due: the next `poll`
/// asks again at once instead of waiting an interval, so a member takes in retries as fast as
/// it handles them (at 250 ms a poll alone would cap it at four batches a second).
const RETRY_POLL_BATCH: u32 = 500;

impl Core {
    /// Agrees on the group's retry policy once the member has joined: sends this member's if
    /// it names one (refused `RETRY_POLICY_MISMATCH` if the group has another), else reads
    /// the group's, so that a member of a key-ordered group keeps key order either way.
    pub(super) async fn agree_retry_policy(&mut self) -> Result<()> {
        let admin = self.client.admin();
        let group = self.config.group.clone();
        let key_ordered = if self.config.retry.is_some() || self.config.key_ordered {
            let mine = GroupRetryPolicy {
                retry: self.config.retry.clone().unwrap_or_default(),
                key_ordered: self.config.key_ordered,
            };
            let member_id = self.membership.lock().member_id.clone();
            admin.set_retry_policy(&group, &mine, Some(&member_id)).await?.key_ordered
        } else {
            match admin.describe_retries(&group).await {
                Ok(description) => description.policy.key_ordered,
                Err(e) if e.code() == Some(ErrorCode::GroupNotFound) => false,
                Err(e) => return Err(e),
            }
        };
        self.settles.set_key_ordered(key_ordered);
        Ok(())
    }

    /// Sends the batched settles, in order, under the member's current epoch. Kept for the
    /// next try if this one fails.
    pub(super) async fn flush_settles(&mut self) -> Result<()> {
        if !self.settles.has_pending() {
            return Ok(());
        }
        let (member_id, epoch) = self.member()?;
        // Each batch stays in the book until it is stored, so a poll dropped while a batch is in
        // flight loses no settle: it is sent again (a repeat is stale at the coordinator). A
        // position is never committed past a nack or reject that was not stored.
        loop {
            let batch = self.settles.next_to_send(MAX_SETTLES_PER_CALL);
            if batch.is_empty() {
                return Ok(());
            }
            self.client.admin().settle(&self.config.group, (&member_id, epoch), &batch).await?;
            self.settles.sent(batch.len());
        }
    }

    /// Whether `poll` should ask for due retries before fetching: every
    /// [`RETRY_POLL_INTERVAL`], and at once after the assignment changed (a key-ordered
    /// member must know a new partition's blocked keys before it fetches it).
    /// Not while the member owns nothing (it is rejoining, or has no share): there is nothing
    /// to ask for.
    pub(super) fn retry_poll_due(&self) -> bool {
        let due = Instant::now() >= self.next_retry_poll || self.retry_polled_version != self.applied_version;
        due && self.fetcher.partitions().next().is_some()
    }

    /// The due retries of the owned partitions, each fetched by its place and marked with its
    /// attempt; learns the blocked keys on the way. A retry whose message is no longer held
    /// is rejected (it goes to the dead-letter queue marked missing rather than loop).
    pub(super) async fn poll_due_retries(&mut self) -> Result<Vec<ConsumedRecord>> {
        self.next_retry_poll = Instant::now() + RETRY_POLL_INTERVAL;
        self.flush_settles().await?;
        let member = self.member()?;
        let version = self.applied_version;
        let polled = self
            .client
            .admin()
            .poll_retries(&self.config.group, (&member.0, member.1), RETRY_POLL_BATCH, Duration::ZERO)
            .await?;
        if polled.retries.len() >= RETRY_POLL_BATCH as usize {
            self.next_retry_poll = Instant::now();
        }
        let owned = self.assignment();
        self.settles.set_blocked(&owned, polled.blocked);
        self.retry_polled_version = version;
        let mine: Vec<_> = polled
            .retries
            .into_iter()
            .map(|r| (TopicPartition::new(r.topic.clone(), r.partition), r))
            .filter(|(tp, _)| owned.contains(tp)) // given up since: the next owner is handed it
            .collect();
        // Fetched side by side: each is one small read from its partition's leader.
        let isolation = self.config.isolation;
        let fetched = join_all(mine.iter().map(|(tp, r)| fetch_one(&self.client, tp, r.offset, isolation))).await;
        let mut records = Vec::with_capacity(mine.len());
        for ((tp, retry), fetched) in mine.into_iter().zip(fetched) {
            match fetched {
                // Not handed to the application, so neither marked open nor settled: its lease
                // runs out and the coordinator counts a failed attempt (nothing is lost).
                Err(error) => tracing::warn!(%tp, offset = retry.offset, %error, "fetching a retry failed"),
                Ok(Some(mut record)) => {
                    record.attempt = retry.attempt;
                    self.settles.delivered_retry(&record);
                    records.push(record);
                }
                Ok(None) => self.reject_missing(&tp, retry.offset, retry.attempt),
            }
        }
        Ok(records)
    }

    fn reject_missing(&mut self, tp: &TopicPartition, offset: u64, attempt: u32) {
        tracing::warn!(%tp, offset, attempt, "a retry's message is no longer in its partition; dead-lettering it");
        let reason = "the message is no longer retained".to_owned();
        self.settles.push_missing(tp, offset, attempt, reason);
    }

    /// In a key-ordered group, drops the fetched records whose key is blocked (parked) and
    /// rewinds a partition to its first record whose key already came in this batch.
    pub(super) fn admit(&mut self, records: Vec<ConsumedRecord>) -> Vec<ConsumedRecord> {
        if !self.settles.key_ordered() {
            return records;
        }
        let verdicts = self.settles.admit(&records);
        let mut rewind: BTreeMap<TopicPartition, u64> = BTreeMap::new();
        let mut out = Vec::with_capacity(records.len());
        for (record, verdict) in records.into_iter().zip(verdicts) {
            match verdict {
                Admit::Return => out.push(record),
                Admit::Parked => {}
                Admit::Defer => {
                    rewind.entry(TopicPartition::new(record.topic(), record.partition())).or_insert(record.offset());
                }
            }
        }
        for (tp, offset) in rewind {
            self.fetcher.seek(&tp, offset);
        }
        out
    }

    /// Notes the application's outcome for a record `poll` returned.
    pub(super) fn settle(&mut self, record: &ConsumedRecord, outcome: SettleOutcome, reason: String) -> Result<()> {
        let tp = TopicPartition::new(record.topic(), record.partition());
        if !self.fetcher.contains(&tp) {
            return Err(Error::InvalidArgument(format!(
                "{tp} is not assigned to this member any more: its messages are delivered to their new owner"
            )));
        }
        self.settles.settle(record, outcome, reason);
        Ok(())
    }

    fn member(&self) -> Result<(String, i32)> {
        let state = self.membership.lock();
        if state.epoch <= 0 {
            let message =
                format!("this consumer is not a member of group {} now: it is (re)joining", self.config.group);
            return Err(Error::broker(ErrorCode::UnknownMemberId, message));
        }
        Ok((state.member_id.clone(), state.epoch))
    }
}

/// The coordinator's limit on one `SettleMessages`.
const MAX_SETTLES_PER_CALL: usize = 10_000;
