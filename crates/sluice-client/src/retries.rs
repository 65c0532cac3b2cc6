//! Retries and dead letters of consumer groups (docs/adr/0012-retries.md), the low-level calls
//! on [`Admin`]: a member's settles and polls of its due retries, a group's retry policy, and
//! redriving and purging its dead-letter queue `<group>.dlq`. Each goes to the group's
//! coordinator and is retried, as every group call is, while the coordinator moves or loads.
//!
//! They are the building blocks of `GroupConsumer`'s ack, nack and reject
//! (`group/settles.rs`, `group/retrying.rs`).

use std::time::{Duration, Instant};

use sluice_common::retry::{Backoff, RetryPolicy};
use sluice_proto::v1;

use crate::admin::Admin;
use crate::config::check_group_id;
use crate::error::{Error, Result};
use crate::group::coordinator::Coordinator;

/// What happened to a delivered message.
#[derive(Debug, Clone, PartialEq)]
pub enum SettleOutcome {
    /// Processed. Needed only for a retry: a first delivery is settled by the commit.
    Ack,
    /// Failed: retried after the group's backoff, or after `delay` if given; dead-lettered
    /// if this was its last attempt.
    Nack {
        /// A wait of its own instead of the policy's.
        delay: Option<Duration>,
    },
    /// Straight to the dead-letter queue.
    Reject,
    /// Key-ordered groups: its key is blocked; it waits behind the key's failing message.
    Park,
}

/// One settle: a message by its place, the attempt it was delivered as, and its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Settle {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The offset.
    pub offset: u64,
    /// The attempt delivered (1 for a first delivery).
    pub attempt: u32,
    /// What happened.
    pub outcome: SettleOutcome,
    /// Why it failed (at most 256 bytes are kept).
    pub reason: String,
    /// Key-ordered groups: the 64-bit hash of its key.
    pub key_hash: Option<u64>,
}

/// What [`Admin::settle`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// Settles that sent their message to the dead-letter queue.
    pub dead_lettered: u32,
    /// Stale or repeated settles, ignored.
    pub ignored: u32,
}

/// A retry handed to a member by [`Admin::poll_retries`]: fetch the message at its place,
/// process it, and settle it with its attempt before its lease runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryDelivery {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The offset.
    pub offset: u64,
    /// The attempt this delivery is.
    pub attempt: u32,
    /// When it was due (ms since the Unix epoch).
    pub due_ms: u64,
    /// When it first failed (0 for a redriven or released parked message).
    pub first_failure_ms: u64,
    /// Why it last failed.
    pub last_reason: String,
    /// Key-ordered groups: its key's hash.
    pub key_hash: Option<u64>,
}

/// What [`Admin::poll_retries`] answered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolledRetries {
    /// Due retries, leased to the member for `lease`.
    pub retries: Vec<RetryDelivery>,
    /// Key-ordered groups: per owned partition (topic, partition), the key hashes whose later
    /// messages must be parked.
    pub blocked: Vec<(String, u32, Vec<u64>)>,
    /// How long each retry is the member's.
    pub lease: Duration,
}

/// A group's retry policy: the backoff and attempts, and whether it consumes in key order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GroupRetryPolicy {
    /// Waits and attempts.
    pub retry: RetryPolicy,
    /// A failing message holds back the later messages of its key.
    pub key_ordered: bool,
}

/// A group's retries and dead-letter queue, as [`Admin::describe_retries`] reports them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RetriesDescription {
    /// The policy in force (the default when none was set).
    pub policy: GroupRetryPolicy,
    /// Whether one was set.
    pub policy_set: bool,
    /// Messages waiting for another attempt, parked ones included.
    pub waiting: u64,
    /// Of them, parked behind their key's failing message.
    pub parked: u64,
    /// The first failure of the longest-failing one (0: none waits).
    pub oldest_first_failure_ms: u64,
    /// Waiting messages by the attempt their next delivery is.
    pub attempts: Vec<(u32, u64)>,
    /// The group's dead-letter topic.
    pub dlq_topic: String,
    /// Dead letters reserved and not yet written.
    pub dead_letters_pending: u64,
    /// The DLQ offset the next redrive reads from.
    pub redrive_offset: u64,
    /// Dead letters before this offset are purged.
    pub purge_offset: u64,
    /// The earliest due time (0: none).
    pub next_due_ms: u64,
}

/// Where to purge a dead-letter queue up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeBefore {
    /// Every entry before this offset.
    Offset(u64),
    /// Every entry written before this time (ms since the Unix epoch).
    TimestampMs(i64),
}

/// The 64-bit hash a key-ordered group blocks a key by (64-bit FNV-1a of the key's bytes).
/// The coordinator only compares the hashes its members send, so every member must use this
/// one; two keys with the same hash are ordered as one key (over-blocking, never reordering).
pub fn key_hash(key: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    key.iter().fold(OFFSET_BASIS, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(PRIME))
}

impl Admin {
    /// Settles messages member `member_id` (at `member_epoch`) of `group` was delivered.
    /// Refused [`crate::ErrorCode::FencedMemberEpoch`] for a partition it does not own.
    pub async fn settle(
        &self,
        group: &str,
        (member_id, member_epoch): (&str, i32),
        settles: &[Settle],
    ) -> Result<Settled> {
        let request = v1::SettleMessagesRequest {
            group: group.to_owned(),
            member_id: member_id.to_owned(),
            member_epoch,
            settles: settles.iter().map(to_proto).collect(),
        };
        let a = self
            .group_call(group, "SettleMessages", |mut rpc, r| async move { rpc.settle_messages(r).await }, request)
            .await?;
        Ok(Settled { dead_lettered: a.dead_lettered, ignored: a.ignored })
    }

    /// The retries due in the partitions the member owns, waiting up to `max_wait` (bounded
    /// by the client's request timeout) for one; at most `max` (0: the broker's default).
    pub async fn poll_retries(
        &self,
        group: &str,
        (member_id, member_epoch): (&str, i32),
        max: u32,
        max_wait: Duration,
    ) -> Result<PolledRetries> {
        let bound = self.client().config().request_timeout.saturating_sub(Duration::from_secs(1));
        let request = v1::PollRetriesRequest {
            group: group.to_owned(),
            member_id: member_id.to_owned(),
            member_epoch,
            max_messages: max,
            max_wait_ms: u32::try_from(max_wait.min(bound).as_millis()).unwrap_or(u32::MAX),
        };
        let a = self
            .group_call(group, "PollRetries", |mut rpc, r| async move { rpc.poll_retries(r).await }, request)
            .await?;
        Ok(PolledRetries {
            retries: a.retries.into_iter().map(delivery).collect(),
            blocked: a.blocked.into_iter().map(|b| (b.topic, b.partition, b.key_hashes)).collect(),
            lease: Duration::from_millis(a.lease_ms),
        })
    }

    /// Sets `group`'s retry policy. As an operator (`member_id` `None`) it replaces the
    /// group's; as a member it sets it only if the group has none, and is refused
    /// [`crate::ErrorCode::RetryPolicyMismatch`] if the group has another. Returns the group's.
    pub async fn set_retry_policy(
        &self,
        group: &str,
        policy: &GroupRetryPolicy,
        member_id: Option<&str>,
    ) -> Result<GroupRetryPolicy> {
        policy.retry.validate().map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let request = v1::SetRetryPolicyRequest {
            group: group.to_owned(),
            policy: Some(policy_to_proto(policy)),
            member_id: member_id.unwrap_or_default().to_owned(),
        };
        let a = self
            .group_call(group, "SetRetryPolicy", |mut rpc, r| async move { rpc.set_retry_policy(r).await }, request)
            .await?;
        Ok(a.policy.as_ref().map(policy_from_proto).unwrap_or_default())
    }

    /// `group`'s retry policy, what waits for a retry, and where its dead-letter queue stands.
    pub async fn describe_retries(&self, group: &str) -> Result<RetriesDescription> {
        let request = v1::DescribeRetriesRequest { group: group.to_owned() };
        let a = self
            .group_call(group, "DescribeRetries", |mut rpc, r| async move { rpc.describe_retries(r).await }, request)
            .await?;
        Ok(RetriesDescription {
            policy: a.policy.as_ref().map(policy_from_proto).unwrap_or_default(),
            policy_set: a.policy_set,
            waiting: a.waiting,
            parked: a.parked,
            oldest_first_failure_ms: a.oldest_first_failure_ms,
            attempts: a.attempts.iter().map(|c| (c.attempt, c.count)).collect(),
            dlq_topic: a.dlq_topic,
            dead_letters_pending: a.dead_letters_pending,
            redrive_offset: a.redrive_offset,
            purge_offset: a.purge_offset,
            next_due_ms: a.next_due_ms,
        })
    }

    /// Re-delivers up to `max` (0: 1,000) of `group`'s dead letters from its redrive cursor, at
    /// attempt 1, and moves the cursor past them: redriving twice delivers once. Returns how
    /// many were read and the cursor.
    pub async fn redrive_dead_letters(&self, group: &str, max: u32) -> Result<(u32, u64)> {
        let request = v1::RedriveDeadLettersRequest { group: group.to_owned(), max_messages: max };
        let a = self
            .group_call(
                group,
                "RedriveDeadLetters",
                |mut rpc, r| async move { rpc.redrive_dead_letters(r).await },
                request,
            )
            .await?;
        Ok((a.redriven, a.next_offset))
    }

    /// Purges `group`'s dead letters before `before`: redrives skip them. Returns the purge
    /// cursor (a DLQ offset).
    pub async fn purge_dead_letters(&self, group: &str, before: PurgeBefore) -> Result<u64> {
        let before = match before {
            PurgeBefore::Offset(o) => v1::purge_dead_letters_request::Before::Offset(o),
            PurgeBefore::TimestampMs(t) => v1::purge_dead_letters_request::Before::TimestampMs(t),
        };
        let request = v1::PurgeDeadLettersRequest { group: group.to_owned(), before: Some(before) };
        let a = self
            .group_call(group, "PurgeDeadLetters", |mut rpc, r| async move { rpc.purge_dead_letters(r).await }, request)
            .await?;
        Ok(a.purge_offset)
    }

    /// Sends `request` to `group`'s coordinator with `op` until it is answered or the client's
    /// operation timeout passes.
    async fn group_call<Q, R, F, Fut>(&self, group: &str, kind: &'static str, op: F, request: Q) -> Result<R>
    where
        Q: Clone,
        R: crate::client::Answer,
        F: Fn(crate::client::GroupsRpc, Q) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
    {
        check_group_id("group", group)?;
        let client = self.client();
        let coordinator = Coordinator::new(client.clone(), group);
        let deadline = Instant::now() + client.config().operation_timeout;
        coordinator.call(kind, deadline, |rpc| op(rpc, request.clone())).await
    }
}

fn to_proto(s: &Settle) -> v1::Settle {
    let (outcome, delay_ms) = match &s.outcome {
        SettleOutcome::Ack => (v1::SettleOutcome::Ack, None),
        SettleOutcome::Nack { delay } => {
            (v1::SettleOutcome::Nack, delay.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
        }
        SettleOutcome::Reject => (v1::SettleOutcome::Reject, None),
        SettleOutcome::Park => (v1::SettleOutcome::Park, None),
    };
    v1::Settle {
        topic: s.topic.clone(),
        partition: s.partition,
        offset: s.offset,
        attempt: s.attempt,
        outcome: outcome as i32,
        delay_ms,
        reason: s.reason.clone(),
        key_hash: s.key_hash,
    }
}

fn delivery(r: v1::RetryDelivery) -> RetryDelivery {
    RetryDelivery {
        topic: r.topic,
        partition: r.partition,
        offset: r.offset,
        attempt: r.attempt,
        due_ms: r.due_ms,
        first_failure_ms: r.first_failure_ms,
        last_reason: r.last_reason,
        key_hash: r.key_hash,
    }
}

fn policy_to_proto(p: &GroupRetryPolicy) -> v1::RetryPolicy {
    let backoff = match &p.retry.backoff {
        Backoff::Exponential { initial_ms, multiplier, max_ms, jitter } => {
            v1::retry_policy::Backoff::Exponential(v1::ExponentialBackoff {
                initial_ms: *initial_ms,
                multiplier: *multiplier,
                max_ms: *max_ms,
                jitter: *jitter,
            })
        }
        Backoff::Ladder(steps) => v1::retry_policy::Backoff::Ladder(v1::LadderBackoff { steps_ms: steps.clone() }),
    };
    v1::RetryPolicy { backoff: Some(backoff), max_attempts: p.retry.max_attempts, key_ordered: p.key_ordered }
}

fn policy_from_proto(p: &v1::RetryPolicy) -> GroupRetryPolicy {
    let default = RetryPolicy::default();
    let backoff = match &p.backoff {
        Some(v1::retry_policy::Backoff::Exponential(e)) => Backoff::Exponential {
            initial_ms: e.initial_ms,
            multiplier: e.multiplier,
            max_ms: e.max_ms,
            jitter: e.jitter,
        },
        Some(v1::retry_policy::Backoff::Ladder(l)) => Backoff::Ladder(l.steps_ms.clone()),
        None => default.backoff,
    };
    let max_attempts = if p.max_attempts == 0 { default.max_attempts } else { p.max_attempts };
    GroupRetryPolicy { retry: RetryPolicy { backoff, max_attempts }, key_ordered: p.key_ordered }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_and_settles_cross_the_wire_unchanged() {
        for retry in [RetryPolicy::default(), RetryPolicy::rocketmq()] {
            let policy = GroupRetryPolicy { retry, key_ordered: true };
            assert_eq!(policy_from_proto(&policy_to_proto(&policy)), policy);
        }
        let nack = Settle {
            topic: "orders".into(),
            partition: 3,
            offset: 9,
            attempt: 2,
            outcome: SettleOutcome::Nack { delay: Some(Duration::from_secs(5)) },
            reason: "db down".into(),
            key_hash: Some(11),
        };
        let wire = to_proto(&nack);
        assert_eq!((wire.outcome(), wire.delay_ms, wire.key_hash), (v1::SettleOutcome::Nack, Some(5_000), Some(11)));
        assert_eq!(to_proto(&Settle { outcome: SettleOutcome::Reject, ..nack }).outcome(), v1::SettleOutcome::Reject);
    }

    #[test]
    fn key_hash_is_64_bit_fnv1a() {
        // The published FNV-1a test vectors.
        assert_eq!(key_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(key_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(key_hash(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
