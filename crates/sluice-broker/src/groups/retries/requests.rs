//! The retry calls a coordinator serves: `SettleMessages`, `PollRetries`, `SetRetryPolicy` and
//! `DescribeRetries` (`redrive` has the dead-letter ones).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_common::retry::Place;
use sluice_proto::v1::{
    AttemptCount, DescribeRetriesRequest, DescribeRetriesResponse, PollRetriesRequest, PollRetriesResponse,
    RetryDelivery, SetRetryPolicyRequest, SetRetryPolicyResponse, SettleMessagesRequest, SettleMessagesResponse,
};
use sluice_proto::{Error, ErrorCode};

use super::{dlq_topic, plan_and_write};
use crate::groups::coordinator::{Coordinator, Phase, refused};
use crate::groups::coordinators::Coordinators;
use crate::groups::state::{DueRetry, GroupRetries, policy_to_client};

/// The longest a `PollRetries` waits.
const MAX_POLL_WAIT: Duration = Duration::from_secs(30);
/// Retries a poll returns when it names no maximum, and the most it may name.
const DEFAULT_POLL_MESSAGES: usize = 100;
const MAX_POLL_MESSAGES: usize = 1_000;

impl Coordinators {
    pub async fn settle_messages(&self, request: SettleMessagesRequest) -> SettleMessagesResponse {
        let answer = match self.route(&request.group) {
            Ok(c) => settle(&c, &request).await,
            Err(e) => Err(e),
        };
        answer.unwrap_or_else(|e| SettleMessagesResponse { error: Some(e), ..SettleMessagesResponse::default() })
    }

    pub async fn poll_retries(&self, request: PollRetriesRequest) -> PollRetriesResponse {
        let answer = match self.route(&request.group) {
            Ok(c) => poll(&c, &request).await,
            Err(e) => Err(e),
        };
        answer.unwrap_or_else(|e| PollRetriesResponse { error: Some(e), ..PollRetriesResponse::default() })
    }

    pub async fn set_retry_policy(&self, request: SetRetryPolicyRequest) -> SetRetryPolicyResponse {
        let answer = match self.route(&request.group) {
            Ok(c) => set_policy(&c, &request).await,
            Err(e) => Err(e),
        };
        answer.unwrap_or_else(|e| SetRetryPolicyResponse { error: Some(e), ..SetRetryPolicyResponse::default() })
    }

    pub fn describe_retries(&self, request: &DescribeRetriesRequest) -> DescribeRetriesResponse {
        let failed = |e: Error| DescribeRetriesResponse { error: Some(e), ..DescribeRetriesResponse::default() };
        let c = match self.route(&request.group) {
            Ok(c) => c,
            Err(e) => return failed(e),
        };
        let state = c.state();
        let Some(retries) = state.retries_of(&request.group) else {
            return failed(Error::new(ErrorCode::GroupNotFound, format!("group {:?} does not exist", request.group)));
        };
        describe(&request.group, retries)
    }
}

async fn settle(c: &Arc<Coordinator>, req: &SettleMessagesRequest) -> Result<SettleMessagesResponse, Error> {
    let turn = c.turn(&req.group).await?;
    let now_ms = c.retries.now_ms();
    let planned = plan_and_write(c, &req.group, |c, pid| c.state().settle(req, now_ms, pid).map_err(refused)).await?;
    let mut leases = c.retries.leases();
    for s in &req.settles {
        let place = Place { topic: s.topic.clone(), partition: s.partition, offset: s.offset };
        leases.settled(&req.group, &place, s.attempt);
    }
    drop(leases);
    drop(turn);
    c.ctx.retry_counters.dead_lettered(&req.group, planned.dead_lettered);
    Ok(SettleMessagesResponse {
        error: Some(Error::ok()),
        dead_lettered: planned.dead_lettered,
        ignored: planned.ignored,
    })
}

/// Hands out what is due, waiting for it up to the request's wait.
async fn poll(c: &Arc<Coordinator>, req: &PollRetriesRequest) -> Result<PollRetriesResponse, Error> {
    let deadline = Instant::now() + Duration::from_millis(u64::from(req.max_wait_ms)).min(MAX_POLL_WAIT);
    let max = match req.max_messages as usize {
        0 => DEFAULT_POLL_MESSAGES,
        n => n.min(MAX_POLL_MESSAGES),
    };
    let lease_ms = c.ctx.config.retry_lease_ms;
    let mut phases = c.phases();
    loop {
        // Registered before looking, so a change in between is not missed.
        let changed = c.retries.changed.notified();
        c.ready(&req.group)?;
        let (due, blocked, next_due_ms, now_ms) = hand_out(c, req, max, lease_ms)?;
        if !due.is_empty() || Instant::now() >= deadline {
            for (_, entry) in &due {
                c.ctx.retry_counters.delivered(&req.group, entry.attempt);
            }
            let retries = due.into_iter().map(delivery).collect();
            return Ok(PollRetriesResponse { error: Some(Error::ok()), retries, blocked, lease_ms });
        }
        // Due but leased or not this member's: only a change (a settle, an expiry, a new
        // assignment) can give it one, and every change wakes it.
        let until_due = match next_due_ms {
            Some(due) if due > now_ms => Duration::from_millis(due - now_ms),
            _ => MAX_POLL_WAIT,
        };
        let wake = deadline.min(Instant::now() + until_due);
        tokio::select! {
            () = tokio::time::sleep_until(wake.into()) => {}
            () = changed => {}
            _ = phases.wait_for(|p| *p == Phase::Retired) => {}
        }
    }
}

/// What one look at the state hands out: the due retries of the member's partitions, leased to
/// it, its blocked keys, the next due time of the group and the clock's reading.
type HandOut = (Vec<DueRetry>, Vec<sluice_proto::v1::BlockedKeys>, Option<u64>, u64);

/// One look at the state for a poll.
fn hand_out(c: &Coordinator, req: &PollRetriesRequest, max: usize, lease_ms: u64) -> Result<HandOut, Error> {
    let now_ms = c.retries.now_ms();
    let state = c.state();
    let mut leases = c.retries.leases();
    // Leased to a member that still owns the partition (to this one, too: it has it).
    let leased = |p: &Place| leases.holder(&req.group, p).is_some_and(|m| state.owns(&req.group, m, p));
    let (due, blocked) = state.due_retries(req, now_ms, max, leased).map_err(refused)?;
    let lease = (Instant::now(), Duration::from_millis(lease_ms));
    for (place, entry) in &due {
        leases.lease((&req.group, &req.member_id), place, entry.attempt, lease);
    }
    if !due.is_empty() {
        c.retries.leased.notify_one();
    }
    let next_due_ms = state.retries_of(&req.group).and_then(|r| r.table.next_due_ms());
    Ok((due, blocked, next_due_ms, now_ms))
}

fn delivery((place, entry): DueRetry) -> RetryDelivery {
    RetryDelivery {
        topic: place.topic,
        partition: place.partition,
        offset: place.offset,
        attempt: entry.attempt,
        due_ms: entry.due_ms.unwrap_or_default(),
        first_failure_ms: entry.first_failure_ms,
        last_reason: entry.reason,
        key_hash: entry.key,
    }
}

async fn set_policy(c: &Arc<Coordinator>, req: &SetRetryPolicyRequest) -> Result<SetRetryPolicyResponse, Error> {
    let turn = c.turn(&req.group).await?;
    let records = c.state().set_retry_policy(req).map_err(refused)?;
    c.write(&req.group, &records).await?;
    let policy = c.state().retries_of(&req.group).map(|r| policy_to_client(&r.policy()));
    drop(turn);
    Ok(SetRetryPolicyResponse { error: Some(Error::ok()), policy })
}

fn describe(group: &str, r: &GroupRetries) -> DescribeRetriesResponse {
    let mut attempts: BTreeMap<u32, u64> = BTreeMap::new();
    let (mut parked, mut oldest) = (0, u64::MAX);
    for (_, e) in r.table.iter() {
        *attempts.entry(e.attempt).or_default() += 1;
        parked += u64::from(e.due_ms.is_none());
        if e.first_failure_ms > 0 {
            oldest = oldest.min(e.first_failure_ms);
        }
    }
    DescribeRetriesResponse {
        error: Some(Error::ok()),
        policy: Some(policy_to_client(&r.policy())),
        policy_set: r.policy.is_some(),
        waiting: r.table.len() as u64,
        parked,
        oldest_first_failure_ms: if oldest == u64::MAX { 0 } else { oldest },
        attempts: attempts.into_iter().map(|(attempt, count)| AttemptCount { attempt, count }).collect(),
        dlq_topic: dlq_topic(group),
        dead_letters_pending: r.dlq.pending.len() as u64,
        redrive_offset: r.dlq.redrive_offset,
        purge_offset: r.dlq.purge_offset,
        next_due_ms: r.table.next_due_ms().unwrap_or_default(),
    }
}
