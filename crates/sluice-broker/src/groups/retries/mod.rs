//! Retries and dead letters on the coordinator (docs/adr/0012-retries.md): the `Groups` calls
//! `SettleMessages`, `PollRetries`, `SetRetryPolicy`, `DescribeRetries`, `RedriveDeadLetters`
//! and `PurgeDeadLetters`, and two tasks per coordinator — leases that run out become failed
//! attempts (`leases`), and reserved dead letters are written to `<group>.dlq` (`dlq`).
//!
//! What a request implies is planned by the pure state (`state::settle`) and written through
//! the group's turn, as every group change is. What is not replicated lives here, in
//! [`RetryRuntime`]: the leases, and the clock retries are handed out by (`clock`).

mod clock;
mod dlq;
mod leases;
pub(crate) mod metrics;
mod redrive;
mod requests;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sluice_common::retry::Place;
use sluice_proto::Error;
use sluice_proto::internal::GroupRecord;
use sluice_proto::internal::group_record::Change;
use tokio::sync::Notify;

use self::clock::HandOutClock;
use self::leases::Leases;
use super::coordinator::{Coordinator, Phase};
use super::state::{NeedsProducer, SettlePlan};
use crate::delays::wall_clock_ms;

pub(super) use self::dlq::dlq_topic;

/// How soon a failed lease expiry or dead-letter write is tried again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// What a coordinator keeps of retries besides the replicated state: leases, the hand-out
/// clock, and wake-ups for long polls and the dead-letter writer.
#[derive(Debug, Default)]
pub(super) struct RetryRuntime {
    leases: Mutex<Leases>,
    clock: Mutex<HandOutClock>,
    /// Retry state changed: long polls look again, the lease task recomputes its wait.
    changed: Notify,
    /// Dead letters were reserved: the writer looks.
    reserved: Notify,
    /// Leases were taken: the lease task recomputes its wait.
    leased: Notify,
}

impl RetryRuntime {
    fn leases(&self) -> MutexGuard<'_, Leases> {
        self.leases.lock().expect("retry leases")
    }

    /// The hand-out clock's reading now. Due times are computed from it too (a nack's, a
    /// redrive's), so a wall clock stepping back cannot make a backoff shorter than its wait.
    fn now_ms(&self) -> u64 {
        self.clock.lock().expect("retry clock").now_ms(wall_clock_ms(), Instant::now())
    }

    /// Called with every batch of records applied: any of them (a settle, an assignment) may
    /// make a retry due for a waiting poll.
    pub fn applied(&self, records: &[GroupRecord]) {
        self.changed.notify_waiters();
        if records.iter().any(|r| matches!(r.change, Some(Change::DeadLetter(_)))) {
            self.reserved.notify_one();
        }
    }

    /// A state was installed (load, reload): every waiter looks again.
    pub fn installed(&self) {
        self.changed.notify_waiters();
        self.reserved.notify_one();
    }
}

/// Starts the lease and dead-letter tasks of a coordinator that just started serving.
pub(super) fn start(coordinator: &Arc<Coordinator>) {
    tokio::spawn(run_leases(Arc::clone(coordinator)));
    tokio::spawn(dlq::run(Arc::clone(coordinator)));
}

/// Plans with `plan` under `group`'s turn (held by the caller) and writes the records; when the
/// plan needs a DLQ producer id the group lacks, allocates one and plans again.
async fn plan_and_write(
    c: &Arc<Coordinator>,
    group: &str,
    plan: impl Fn(&Coordinator, Option<i64>) -> Result<Result<SettlePlan, NeedsProducer>, Error>,
) -> Result<SettlePlan, Error> {
    let planned = match plan(c, None)? {
        Ok(planned) => planned,
        Err(NeedsProducer) => {
            let producer_id = crate::txn::ids::allocate(&c.ctx).await?;
            plan(c, Some(producer_id))?.map_err(|NeedsProducer| {
                Error::new(sluice_proto::ErrorCode::Internal, "a dead letter still lacks a producer id")
            })?
        }
    };
    c.write(group, &planned.records).await?;
    Ok(planned)
}

/// Writes failed attempts for leases that ran out, until the coordinator retires.
async fn run_leases(c: Arc<Coordinator>) {
    let mut phases = c.phases();
    loop {
        let next = c.retries.leases().next_expiry();
        let wait = next.map_or(Duration::from_secs(3600), |at| at.saturating_duration_since(Instant::now()));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = c.retries.changed.notified() => continue,
            () = c.retries.leased.notified() => continue,
            _ = phases.wait_for(|p| *p == Phase::Retired) => return,
        }
        let expired = c.retries.leases().expired(Instant::now());
        for (group, place, attempt) in expired {
            if let Err(e) = expire_lease(&c, &group, &place, attempt).await {
                tracing::debug!(group, "writing an expired retry lease failed, trying again: {}", e.message);
                tokio::time::sleep(RETRY_PAUSE).await;
                break;
            }
        }
    }
}

/// Writes the failed attempt of an expired lease (unless a settle of it came first).
async fn expire_lease(c: &Arc<Coordinator>, group: &str, place: &Place, attempt: u32) -> Result<(), Error> {
    let turn = c.turn(group).await?;
    // Settled meanwhile, or handed to the partition's new owner under a new lease.
    if !c.retries.leases().ran_out(group, place, Instant::now()) {
        return Ok(());
    }
    let now_ms = c.retries.now_ms();
    let planned =
        plan_and_write(c, group, |c, pid| Ok(c.state().lease_expired(group, (place, attempt), now_ms, pid))).await?;
    c.retries.leases().settled(group, place, attempt);
    drop(turn);
    if !planned.records.is_empty() {
        tracing::debug!(
            group,
            topic = place.topic,
            partition = place.partition,
            offset = place.offset,
            attempt,
            "retry lease expired"
        );
    }
    Ok(())
}
