//! Planning retries (docs/adr/0012-retries.md): the records a member's settles, an expired
//! lease, a policy change, a redrive or a purge imply, computed against the state without
//! changing it; and what a member's poll may be handed.
//!
//! Each settle is planned against the group's table as it stands; a second settle of the same
//! message in one request is ignored, so planning needs no copy of the table.

use std::collections::BTreeSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use sluice_common::retry::{NackPlan, Place, RetryChange, RetryEntry, RetryPolicy};
use sluice_proto::internal::group_record::Change;
use sluice_proto::internal::{self, GroupRecord};
use sluice_proto::{ErrorCode, v1};

use super::plan::check_member_owns;
use super::retries::{GroupPolicy, Reserved, bounded_reason, change_to_record, policy_to_record, reserved_record};
use super::{Coordinated, Group, GroupError, record, validate_group_id, validate_topic};

/// The longest wait a nack may ask for instead of the policy's: a day.
const MAX_NACK_DELAY_MS: u64 = 24 * 3600 * 1000;
/// The most settles one request may carry.
const MAX_SETTLES: usize = 10_000;

/// What settling implies: records to write, then the counts to answer with.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SettlePlan {
    /// To write as one batch.
    pub records: Vec<GroupRecord>,
    /// Settles that reserved a dead letter.
    pub dead_lettered: u32,
    /// Stale or repeated settles.
    pub ignored: u32,
}

/// One settle, as planning sees it (a member's, or an expired lease's nack).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SettleOne {
    pub place: Place,
    pub attempt: u32,
    pub outcome: v1::SettleOutcome,
    pub delay_ms: Option<u64>,
    pub reason: String,
    pub key: Option<u64>,
}

impl SettleOne {
    fn from_client(s: &v1::Settle) -> SettleOne {
        SettleOne {
            place: Place { topic: s.topic.clone(), partition: s.partition, offset: s.offset },
            attempt: s.attempt,
            outcome: s.outcome(),
            delay_ms: s.delay_ms,
            reason: bounded_reason(&s.reason),
            key: s.key_hash,
        }
    }
}

/// A group's reserved dead letters: its name, DLQ producer id and sequence base, and the
/// entries by sequence.
pub(crate) type PendingDeadLetters = (String, (i64, i32), Vec<(i32, Reserved)>);

/// A retry due for a member: its place and entry.
pub(crate) type DueRetry = (Place, RetryEntry);

impl Coordinated {
    /// Plans a member's settles at `now_ms`. A settle that dead-letters needs the group's DLQ
    /// producer id, or `producer_id` if the group has none yet: [`NeedsProducer`] when neither
    /// is there (allocate one and plan again).
    pub fn settle(
        &self,
        req: &v1::SettleMessagesRequest,
        now_ms: u64,
        producer_id: Option<i64>,
    ) -> Result<Result<SettlePlan, NeedsProducer>, GroupError> {
        validate_group_id(&req.group)?;
        if req.settles.len() > MAX_SETTLES {
            return Err(GroupError::new(
                ErrorCode::InvalidRequest,
                format!("{} settles in one request; send at most {MAX_SETTLES}", req.settles.len()),
            ));
        }
        for s in &req.settles {
            validate_topic(&s.topic)?;
        }
        let group = self.groups.get(&req.group);
        let places = req.settles.iter().map(|s| (s.topic.as_str(), s.partition));
        check_member_owns(group, &req.group, (&req.member_id, req.member_epoch), places, true)?;
        let settles: Vec<SettleOne> = req.settles.iter().map(SettleOne::from_client).collect();
        plan_settles(group, &req.group, &settles, now_ms, producer_id)
    }

    /// Plans the failed attempt of an expired lease: a nack saying so.
    pub fn lease_expired(
        &self,
        group: &str,
        (place, attempt): (&Place, u32),
        now_ms: u64,
        producer_id: Option<i64>,
    ) -> Result<SettlePlan, NeedsProducer> {
        let settle = SettleOne {
            place: place.clone(),
            attempt,
            outcome: v1::SettleOutcome::Nack,
            delay_ms: None,
            reason: "lease expired".to_owned(),
            key: None,
        };
        let planned = plan_settles(self.groups.get(group), group, &[settle], now_ms, producer_id);
        planned.unwrap_or_else(|_| Ok(SettlePlan::default()))
    }

    /// The retries due at `now_ms` in the partitions `member` owns (not those it is giving up),
    /// at most `max`, leaving out those `leased`; and, in a key-ordered group, the blocked keys
    /// of each partition it owns.
    pub fn due_retries(
        &self,
        req: &v1::PollRetriesRequest,
        now_ms: u64,
        max: usize,
        leased: impl Fn(&Place) -> bool,
    ) -> Result<(Vec<DueRetry>, Vec<v1::BlockedKeys>), GroupError> {
        validate_group_id(&req.group)?;
        let group = self.groups.get(&req.group);
        check_member_owns(group, &req.group, (&req.member_id, req.member_epoch), std::iter::empty(), false)?;
        let Some(g) = group else { return Ok((Vec::new(), Vec::new())) };
        let member = &g.members[&req.member_id];
        let owned = |p: &Place| member.assigned.contains(&p.topic, p.partition);
        let due = g.retries.table.due(now_ms, max, |p| owned(p) && !leased(p));
        let due = due.into_iter().filter_map(|(p, _)| g.retries.table.get(&p).cloned().map(|e| (p, e))).collect();
        let blocked =
            if g.retries.policy().key_ordered { blocked_keys(g, &member.assigned.to_client()) } else { Vec::new() };
        Ok((due, blocked))
    }

    /// Whether `member` of `group` owns the partition of `place` (or is giving it up).
    pub fn owns(&self, group: &str, member: &str, place: &Place) -> bool {
        let m = self.groups.get(group).and_then(|g| g.members.get(member));
        m.is_some_and(|m| {
            m.assigned.contains(&place.topic, place.partition)
                || m.pending_revocation.contains(&place.topic, place.partition)
        })
    }

    /// Plans setting `req.group`'s retry policy: a member's sets it only if the group has none
    /// (refused RETRY_POLICY_MISMATCH if it has another); an operator's (no member id) replaces
    /// it. Empty when nothing changes.
    pub fn set_retry_policy(&self, req: &v1::SetRetryPolicyRequest) -> Result<Vec<GroupRecord>, GroupError> {
        validate_group_id(&req.group)?;
        let Some(wanted) = req.policy.as_ref() else {
            return Err(GroupError::new(ErrorCode::InvalidRequest, "set the policy"));
        };
        let wanted = super::retries::policy_from_client(wanted);
        wanted.retry.validate().map_err(|e| GroupError::new(ErrorCode::InvalidRequest, e.to_string()))?;
        let kept = self.groups.get(&req.group).and_then(|g| g.retries.policy.as_ref());
        match kept {
            Some(kept) if *kept == wanted => Ok(Vec::new()),
            Some(kept) if !req.member_id.is_empty() => Err(GroupError::new(
                ErrorCode::RetryPolicyMismatch,
                format!(
                    "group {} retries with {}, and this member asked for {}: every member of a group follows \
                     its one policy. Use the group's policy, or change it with `sluice group set-retry {}`",
                    req.group,
                    describe_policy(kept),
                    describe_policy(&wanted),
                    req.group
                ),
            )),
            _ => Ok(vec![record(&req.group, Change::RetryPolicy(policy_to_record(&wanted)))]),
        }
    }

    /// The group's retry state, for `DescribeRetries` and the metrics; `None` if no such group.
    pub fn retries_of(&self, group: &str) -> Option<&super::retries::GroupRetries> {
        self.groups.get(group).map(|g| &g.retries)
    }

    /// Every group's retry state, by name (groups that never used retries left out).
    pub fn all_retries(&self) -> impl Iterator<Item = (&str, &super::retries::GroupRetries)> {
        let used = |g: &&Group| g.retries != super::retries::GroupRetries::default();
        self.groups.iter().filter(move |(_, g)| used(g)).map(|(name, g)| (name.as_str(), &g.retries))
    }

    /// Every group with dead letters reserved and not written, with them by sequence.
    pub fn pending_dead_letters(&self) -> Vec<PendingDeadLetters> {
        let pending = |(name, g): (&String, &Group)| {
            let d = &g.retries.dlq;
            (!d.pending.is_empty()).then(|| {
                (
                    name.clone(),
                    (d.producer_id, d.sequence_base),
                    d.pending.iter().map(|(s, r)| (*s, r.clone())).collect(),
                )
            })
        };
        self.groups.iter().filter_map(pending).collect()
    }

    /// Plans a redrive that read the DLQ up to `next_offset`: the dead letters `read` (their
    /// original places and keys) are due at attempt 1 at `now_ms` — those not already waiting —
    /// and the cursor moves, in one batch.
    pub fn redrive(
        &self,
        group: &str,
        read: &[(Place, Option<u64>)],
        next_offset: u64,
        now_ms: u64,
    ) -> Vec<GroupRecord> {
        let Some(g) = self.groups.get(group) else { return Vec::new() };
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (place, key) in read {
            if g.retries.table.get(place).is_some() || !seen.insert(place.clone()) {
                continue;
            }
            let change = RetryChange::Retry {
                place: place.clone(),
                attempt: 1,
                due_ms: now_ms,
                key: *key,
                failed_ms: now_ms,
                reason: "redriven from the dead-letter queue".to_owned(),
            };
            out.push(record(group, Change::Retry(change_to_record(&change))));
        }
        let mut cursors = cursors_of(g);
        cursors.redrive_offset = cursors.redrive_offset.max(next_offset);
        out.push(record(group, Change::DeadLetterCursors(cursors)));
        out
    }

    /// Plans moving the purge cursor to `offset` (never back).
    pub fn purge(&self, group: &str, offset: u64) -> Vec<GroupRecord> {
        let Some(g) = self.groups.get(group) else { return Vec::new() };
        let mut cursors = cursors_of(g);
        if offset <= cursors.purge_offset {
            return Vec::new();
        }
        cursors.purge_offset = offset;
        vec![record(group, Change::DeadLetterCursors(cursors))]
    }

    /// Plans writing `group`'s dead letters from `sequence` on under `producer_id`, from its
    /// sequence 0: the DLQ partition no longer knows the group's producer id.
    pub fn restart_dead_letters(&self, group: &str, producer_id: i64, sequence: i32) -> Vec<GroupRecord> {
        let Some(g) = self.groups.get(group) else { return Vec::new() };
        let mut cursors = cursors_of(g);
        cursors.producer_id = producer_id;
        cursors.sequence_base = sequence;
        vec![record(group, Change::DeadLetterCursors(cursors))]
    }

    /// The record marking DLQ entry `sequence` of `group` written.
    pub fn dead_letter_written(group: &str, sequence: i32) -> GroupRecord {
        record(group, Change::DeadLetterWritten(internal::DeadLetterWritten { sequence }))
    }
}

/// Settles need a DLQ producer id the group does not have yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NeedsProducer;

fn cursors_of(g: &Group) -> internal::DeadLetterCursors {
    g.retries.cursors_record()
}

/// The blocked keys of every partition in `owned`.
fn blocked_keys(g: &Group, owned: &[v1::TopicPartitions]) -> Vec<v1::BlockedKeys> {
    let mut out = Vec::new();
    for tp in owned {
        for &partition in &tp.partitions {
            let key_hashes = g.retries.table.blocked_keys(&tp.topic, partition);
            if !key_hashes.is_empty() {
                out.push(v1::BlockedKeys { topic: tp.topic.clone(), partition, key_hashes });
            }
        }
    }
    out
}

/// Plans `settles` of `name` (whose member was checked) at `now_ms`.
fn plan_settles(
    group: Option<&Group>,
    name: &str,
    settles: &[SettleOne],
    now_ms: u64,
    producer_id: Option<i64>,
) -> Result<Result<SettlePlan, NeedsProducer>, GroupError> {
    let empty = super::retries::GroupRetries::default();
    let retries = group.map_or(&empty, |g| &g.retries);
    let policy = retries.policy();
    let producer = (retries.dlq.producer_id >= 0).then_some(retries.dlq.producer_id).or(producer_id);
    let mut plan = SettlePlan::default();
    let mut touched = BTreeSet::new();
    let mut sequence = retries.dlq.next_sequence;
    for s in settles {
        if !touched.insert(s.place.clone()) {
            plan.ignored += 1;
            continue;
        }
        let Some(step) = plan_one(retries, &policy, s, now_ms)? else {
            plan.ignored += 1;
            continue;
        };
        match step {
            Step::Change(change) => plan.records.push(record(name, Change::Retry(change_to_record(&change)))),
            Step::Nothing => {}
            Step::DeadLetter(reserved) => {
                let Some(producer_id) = producer else { return Ok(Err(NeedsProducer)) };
                plan.records.push(record(name, Change::DeadLetter(reserved_record(sequence, producer_id, &reserved))));
                sequence = sequence.wrapping_add(1);
                plan.dead_lettered += 1;
            }
        }
    }
    Ok(Ok(plan))
}

/// What one settle does.
enum Step {
    Change(RetryChange),
    DeadLetter(Reserved),
    /// Nothing to write, and not stale (the ack of a first delivery: the commit settles it).
    Nothing,
}

/// One settle's step; `None` if it is stale.
fn plan_one(
    retries: &super::retries::GroupRetries,
    policy: &GroupPolicy,
    s: &SettleOne,
    now_ms: u64,
) -> Result<Option<Step>, GroupError> {
    let table = &retries.table;
    let key = s.key.filter(|_| policy.key_ordered);
    let known = table.get(&s.place);
    Ok(match s.outcome {
        v1::SettleOutcome::Ack => match table.plan_ack(&s.place, s.attempt, now_ms) {
            Some(done) => Some(Step::Change(done)),
            None if known.is_none() && s.attempt == 1 => Some(Step::Nothing),
            None => None,
        },
        v1::SettleOutcome::Park => {
            let Some(key) = key else {
                return Err(GroupError::new(
                    ErrorCode::InvalidRequest,
                    format!(
                        "a PARK of {}/{}@{} needs a key hash in a key-ordered group",
                        s.place.topic, s.place.partition, s.place.offset
                    ),
                ));
            };
            table.plan_park(&s.place, key).map(Step::Change)
        }
        // A first delivery's settle, repeated or replayed, of a message dead-lettered already.
        v1::SettleOutcome::Nack | v1::SettleOutcome::Reject if known.is_none() && retries.dlq.holds(&s.place) => None,
        v1::SettleOutcome::Nack | v1::SettleOutcome::Reject => {
            // A reject is a nack under a policy whose every attempt is the last.
            let reject = RetryPolicy { max_attempts: 1, ..policy.retry.clone() };
            let rule = if s.outcome == v1::SettleOutcome::Reject { &reject } else { &policy.retry };
            match table.plan_nack(&s.place, s.attempt, now_ms, &s.reason, key, (rule, spread(&s.place, s.attempt))) {
                NackPlan::Stale => None,
                NackPlan::Retry(change) => Some(Step::Change(with_delay(change, s.delay_ms, now_ms))),
                NackPlan::DeadLetter { attempts, first_failure_ms } => Some(Step::DeadLetter(Reserved {
                    place: s.place.clone(),
                    attempts,
                    first_failure_ms,
                    last_failure_ms: now_ms,
                    reason: s.reason.clone(),
                    key: known.map_or(key, |e| e.key),
                })),
            }
        }
    })
}

/// A nack's own wait instead of the policy's.
fn with_delay(change: RetryChange, delay_ms: Option<u64>, now_ms: u64) -> RetryChange {
    match (change, delay_ms) {
        (RetryChange::Retry { place, attempt, key, failed_ms, reason, .. }, Some(delay)) => RetryChange::Retry {
            place,
            attempt,
            due_ms: now_ms.saturating_add(delay.clamp(1, MAX_NACK_DELAY_MS)),
            key,
            failed_ms,
            reason,
        },
        (change, _) => change,
    }
}

/// The jitter pick of a nack: a hash of the message's place and attempt, so messages failing
/// together retry apart.
fn spread(place: &Place, attempt: u32) -> u64 {
    let mut h = DefaultHasher::new();
    (place, attempt).hash(&mut h);
    h.finish()
}

/// For messages: `max 5 attempts, exponential 1000 ms ×2 up to 60000 ms ±20 %, key-ordered`.
fn describe_policy(p: &GroupPolicy) -> String {
    let backoff = match &p.retry.backoff {
        sluice_common::retry::Backoff::Exponential { initial_ms, multiplier, max_ms, jitter } => {
            format!("exponential {initial_ms} ms ×{multiplier} up to {max_ms} ms ±{:.0} %", jitter * 100.0)
        }
        sluice_common::retry::Backoff::Ladder(steps) => format!("ladder {steps:?} ms"),
    };
    let order = if p.key_ordered { ", key-ordered" } else { "" };
    format!("max {} attempts, {backoff}{order}", p.retry.max_attempts)
}
