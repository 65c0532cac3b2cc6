//! A coordinator's clock-driven work, one task per coordinator until it retires: aborting
//! transactions past their timeout (so none hangs and holds a last stable offset back,
//! docs/TRANSACTIONS.md), finishing decided transactions whatever cut their completion short,
//! checking back half transactions (`checkback`), and forgetting transactional ids idle past
//! their expiration.
//!
//! Deadlines are read from the replicated table with this broker's clock: a new coordinator
//! finds them where the old one left them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::coordinator::{Phase, TxnCoordinator};
use crate::groups::context::now_ms;

/// How often the table is scanned: the granularity of transaction timeouts.
const TICK: Duration = Duration::from_millis(100);
/// A decision this old whose markers are not all written is finished by the timer.
const STALE_DECISION: Duration = Duration::from_secs(2);
/// Expired ids and idle locks are looked for every this many ticks.
const SWEEP_TICKS: u32 = 100;

/// Runs until `coordinator` retires.
pub(super) async fn run(coordinator: Arc<TxnCoordinator>) {
    let mut phases = coordinator.phases();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u32;
    let mut aborting: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut finishing: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut deadlines = Deadlines::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = phases.wait_for(|p| *p == Phase::Retired) => return,
        }
        if coordinator.phase() != Phase::Active {
            continue;
        }
        let now = now_ms() as u64;
        // Each abort on its own task: one whose markers wait for a partition with no leader
        // must not hold the others back. One task per id at a time.
        aborting.retain(|_, task| !task.is_finished());
        for (id, epoch) in deadlines.expired(&coordinator.table().abortable(), Instant::now()) {
            if !aborting.contains_key(&id) {
                let (coordinator, key) = (Arc::clone(&coordinator), id.clone());
                aborting.insert(key, tokio::spawn(async move { abort_timed_out(&coordinator, &id, epoch).await }));
            }
        }
        finishing.retain(|_, task| !task.is_finished());
        for id in stale_decisions(&coordinator, now) {
            if !finishing.contains_key(&id) {
                let (coordinator, key) = (Arc::clone(&coordinator), id.clone());
                finishing.insert(key, tokio::spawn(async move { finish_stale(&coordinator, &id).await }));
            }
        }
        let checkers = Arc::clone(&coordinator.checkers);
        coordinator.check_due(&checkers).await;
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(SWEEP_TICKS) {
            forget_expired(&coordinator).await;
            coordinator.prune_locks();
        }
    }
}

/// When each ongoing transaction times out, by this coordinator's monotonic clock: from the
/// tick that first saw it (at most one tick after it began, or when this coordinator loaded).
#[derive(Default)]
struct Deadlines {
    by_transaction: HashMap<(String, i32), Instant>,
}

impl Deadlines {
    /// The transactions of `abortable` (id, epoch, timeout) past their deadline at `now`;
    /// forgets those no longer ongoing.
    fn expired(&mut self, abortable: &[(String, i32, u32)], now: Instant) -> Vec<(String, i32)> {
        let mut keep = HashMap::with_capacity(abortable.len());
        let mut expired = Vec::new();
        for (id, epoch, timeout_ms) in abortable {
            let key = (id.clone(), *epoch);
            let deadline =
                self.by_transaction.remove(&key).unwrap_or_else(|| now + Duration::from_millis(u64::from(*timeout_ms)));
            if deadline <= now {
                expired.push(key.clone());
            }
            keep.insert(key, deadline);
        }
        self.by_transaction = keep;
        expired
    }
}

/// Aborts `id`'s transaction of `epoch` (past its timeout) if it is still ongoing under the
/// id's turn.
async fn abort_timed_out(coordinator: &Arc<TxnCoordinator>, id: &str, epoch: i32) {
    let Ok(turn) = coordinator.turn(id).await else { return };
    let Some(plan) = coordinator.table().abort_expired(id, epoch, now_ms() as u64) else { return };
    let outcome = match coordinator.write(&plan.records).await {
        Ok(_) => coordinator.finish(id).await.map(drop),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => tracing::info!(id, "transaction aborted: it outlived its timeout"),
        Err(e) => tracing::warn!(id, "aborting a timed-out transaction, will retry: {}", e.message),
    }
    drop(turn);
}

/// Decided transactions whose decision is older than [`STALE_DECISION`]: whatever was writing
/// their markers gave up (a request cut short, an error), so the timer finishes them.
fn stale_decisions(coordinator: &TxnCoordinator, now_ms: u64) -> Vec<String> {
    let table = coordinator.table();
    let stale = |id: &String| table.get(id).is_some_and(|m| m.updated_ms + STALE_DECISION.as_millis() as u64 <= now_ms);
    table.pending_markers().into_iter().map(|(id, _)| id).filter(stale).collect()
}

/// Finishes `id`'s decided transaction, if it still is under the id's turn.
async fn finish_stale(coordinator: &Arc<TxnCoordinator>, id: &str) {
    let Ok(turn) = coordinator.turn(id).await else { return };
    let decided = coordinator.table().pending_markers().iter().any(|(i, _)| i == id);
    if decided {
        match coordinator.finish(id).await {
            Ok(_) => tracing::info!(id, "completed a decided transaction left unfinished"),
            Err(e) => tracing::info!(id, "completing a decided transaction, will retry: {}", e.message),
        }
    }
    drop(turn);
}

/// Removes the ids idle past `transactional_id_expiration_ms`.
async fn forget_expired(coordinator: &Arc<TxnCoordinator>) {
    let expiration = coordinator.config.transactional_id_expiration_ms;
    let expired = coordinator.table().expired_ids(now_ms() as u64, expiration);
    for id in expired {
        let Ok(turn) = coordinator.turn(&id).await else { return };
        let Some(record) = coordinator.table().remove(&id, now_ms() as u64, expiration) else { continue };
        if let Err(e) = coordinator.write(&[record]).await {
            tracing::warn!(id, "forgetting an expired transactional id: {}", e.message);
        }
        drop(turn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_times_out_by_the_monotonic_clock_from_when_it_was_first_seen() {
        let mut d = Deadlines::default();
        let t0 = Instant::now();
        let open = vec![("a".to_owned(), 3, 5_000), ("b".to_owned(), 1, 1_000)];
        assert!(d.expired(&open, t0).is_empty(), "first seen: a full timeout from now");
        assert_eq!(d.expired(&open, t0 + Duration::from_millis(1_000)), vec![("b".to_owned(), 1)]);
        // "a" began its next transaction (epoch 4): a new deadline; "b" ended: forgotten.
        let next = vec![("a".to_owned(), 4, 5_000)];
        assert!(d.expired(&next, t0 + Duration::from_millis(6_000)).is_empty());
        assert_eq!(d.by_transaction.len(), 1);
        assert_eq!(d.expired(&next, t0 + Duration::from_millis(11_000)), vec![("a".to_owned(), 4)]);
    }
}
