//! Offsets retention: a coordinator deletes the groups of its partition that have had no members
//! and no commit for `offsets_retention_ms`, so `__consumer_offsets` (and each checkpoint) does
//! not keep every group that ever existed.
//!
//! Every `offsets_retention_check_ms` the coordinator finds such groups by its own clock (the
//! commit times it compares with are its own stamps too), then, for each under the group's lock,
//! checks again and writes a `GroupDeleted` record. The record, not a clock, deletes the group:
//! every replica's replay, and every later coordinator, agrees.

use std::sync::Arc;
use std::time::Duration;

use super::context::now_ms;
use super::coordinator::{Coordinator, Phase};

/// Checks for expired groups until the coordinator retires.
pub(super) async fn run(coordinator: Arc<Coordinator>) {
    let every = Duration::from_millis(coordinator.ctx.config.offsets_retention_check_ms);
    let mut phases = coordinator.phases();
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = phases.wait_for(|p| *p == Phase::Retired) => return,
        }
        if coordinator.phase() == Phase::Active {
            delete_expired(&coordinator).await;
        }
    }
}

/// Deletes every group past its retention now; stops at the first failed write (the next check
/// tries again).
async fn delete_expired(coordinator: &Arc<Coordinator>) {
    let retention_ms = coordinator.ctx.config.offsets_retention_ms;
    let partition = coordinator.partition;
    let expired = coordinator.state().expired_groups(now_ms(), retention_ms);
    for group in expired {
        let Ok(turn) = coordinator.turn(&group).await else { return };
        // Under the lock: a member may have joined, or an offset been committed, meanwhile.
        let records = coordinator.state().delete_expired(&group, now_ms(), retention_ms);
        if records.is_empty() {
            continue;
        }
        match coordinator.write(&group, &records).await {
            Ok(_) => tracing::info!(partition, group, retention_ms, "deleted a group past its offsets retention"),
            Err(e) => {
                tracing::warn!(partition, group, "deleting a group past its offsets retention failed: {}", e.message);
                return;
            }
        }
        drop(turn);
    }
}
