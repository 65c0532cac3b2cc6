//! Retention: deleting a topic's old messages by age (`retention_ms`) or size
//! (`retention_bytes`), the same way on every replica of a partition.
//!
//! A partition's Raft log is its message data, so deleting messages is purging log entries, and
//! replicas must agree on where their logs start. Hence only the leader decides:
//!
//! 1. Every `retention_check_ms`, for each partition it leads, the broker asks the log for its
//!    retention point — the last entry of the longest prefix of whole sealed segments the limits
//!    let go ([`Log::retention_point`]). The limits are the topic's as the metadata has them now:
//!    `Partitions::reconcile` hands them to every hosted log on each metadata change, so an
//!    altered retention applies from the next pass. If it is past what was already trimmed, and applied, the
//!    leader maps it to the first offset after it through the offset index and proposes
//!    [`PartitionCommand::Trim`] with both. No clock of a follower is ever read: every replica
//!    trims at the index and offset the committed command carries.
//! 2. Applying the command records the new log start in the partition state (and so in its
//!    snapshots) and publishes it on the state machine's log start watch. From then on fetches
//!    below it are out of range, on every replica.
//! 3. Outside apply, in the same periodic pass, every replica whose log still holds trimmed
//!    entries has openraft build a snapshot (a few bytes: the partition state) and purge its
//!    log up to the trimmed index. openraft purges only entries a snapshot covers, and a
//!    follower that needs purged entries later installs that snapshot instead, receiving the
//!    retained entries up to it with it (docs/adr/0006-snapshot-catch-up.md).

use std::sync::Arc;
use std::time::Duration;

use sluice_raft::partition::{LogStart, PartitionCommand, write};
use sluice_raft::typ::{LogId, Raft, WatchReceiver};
use sluice_storage::{EntryId, Log};
use tokio::sync::watch;

use crate::controller::BrokerStateMachine;
use crate::partitions::Partitions;

/// The longest a trim proposal or a snapshot is waited for; past it, the next pass tries again.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// Applies retention to every hosted partition every `interval`, until `stop` turns true.
pub(crate) async fn run(partitions: Arc<Partitions>, interval: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
        // Dropped at once when the broker stops: a stopping group waits for every handle to
        // its log, and a pass may be waiting on a group.
        tokio::select! {
            () = pass(&partitions) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

/// One retention pass over the hosted partitions.
async fn pass(partitions: &Partitions) {
    for group in partitions.group_ids() {
        let Some((raft, log)) = partitions.raft(group).zip(partitions.log(group)) else { continue };
        let Some(start) = partitions.log_start(group).map(|w| *w.borrow()) else { continue };
        purge_trimmed(group, &raft, &log, start).await;
        if raft.is_leader() {
            propose_trim(partitions, group, &raft, &log, start).await;
        }
    }
}

/// Purges the replica's log up to the last trimmed entry, if it still holds some: first a
/// snapshot covering that entry, then openraft's purge (which may finish later, once no
/// replication stream is reading those entries).
async fn purge_trimmed(group: u64, raft: &Raft<BrokerStateMachine>, log: &Log, start: LogStart) {
    if start.trimmed_before <= log.first_index() {
        return;
    }
    let up_to = start.trimmed_before - 1;
    let covers = move |snapshot: Option<LogId>| snapshot.is_some_and(|s| s.index >= up_to);
    if !covers(raft.metrics().borrow_watched().snapshot) {
        if let Err(e) = raft.trigger().snapshot().await {
            tracing::debug!(group, "retention: snapshot not triggered: {e}");
            return;
        }
        let wait = raft.wait(Some(STEP_TIMEOUT));
        if let Err(e) = wait.metrics(|m| covers(m.snapshot), "a snapshot covering the trim").await {
            tracing::debug!(group, up_to, "retention: no snapshot yet, purging at the next pass: {e}");
            return;
        }
    }
    let raft_purged = raft.metrics().borrow_watched().purged.map(|p| p.index);
    if raft_purged.is_some_and(|p| p >= up_to) {
        // openraft purged past the trim already: this replica installed a snapshot and kept
        // the retained entries it carried, which openraft no longer reads. So nobody reads
        // them, and the log is purged directly.
        match log.term_of(up_to).and_then(|term| term.map_or(Ok(()), |t| log.purge_to(EntryId::new(up_to, t)))) {
            Ok(()) => tracing::debug!(group, up_to, "retention: purged the trimmed entries"),
            Err(e) => tracing::warn!(group, up_to, "retention: purging the trimmed entries: {e}"),
        }
        return;
    }
    match raft.trigger().purge_log(up_to).await {
        Ok(()) => tracing::debug!(group, up_to, "retention: purging the trimmed entries"),
        Err(e) => tracing::debug!(group, "retention: purge not triggered: {e}"),
    }
}

/// On the leader: proposes trimming up to the log's retention point if it moved past the last
/// trim and every entry up to it is applied (so the offset index maps it). It waits until every
/// live follower holds the entries it would trim: that follower would otherwise have to catch up
/// by snapshot, which then carries every retained entry up to it — far more to send than the
/// entries it lacks.
async fn propose_trim(
    partitions: &Partitions,
    group: u64,
    raft: &Raft<BrokerStateMachine>,
    log: &Log,
    start: LogStart,
) {
    let Some(point) = log.retention_point().map(|p| p.index) else { return };
    if live_followers_hold(partitions, raft).is_none_or(|held| held < point) {
        return;
    }
    if point < start.trimmed_before {
        return;
    }
    let applied = raft.metrics().borrow_watched().last_applied.map(|l| l.index);
    if applied.is_none_or(|a| a < point) {
        return;
    }
    // Read after `applied`: it covers every batch up to `point`.
    let Some(high_watermark) = partitions.high_watermark(group).map(|w| *w.borrow()) else { return };
    let log_start_offset = first_offset_after(log, point, high_watermark).max(start.offset);
    let trim = PartitionCommand::trim(point, log_start_offset);
    // `write` renews a lapsed leader lease first: an idle partition's leader sends no heartbeats.
    match tokio::time::timeout(STEP_TIMEOUT, write(raft, trim)).await {
        Ok(Ok(_)) => tracing::info!(group, up_to_index = point, log_start_offset, "retention: trimmed"),
        Ok(Err(e)) => tracing::debug!(group, "retention: trim not written: {e}"),
        Err(_elapsed) => tracing::debug!(group, "retention: trim not committed within {STEP_TIMEOUT:?}"),
    }
}

/// The last entry every live follower of the group holds (`u64::MAX` when there is none to
/// wait for). A follower that is down does not hold retention back: a partition would otherwise
/// keep everything for as long as one broker stays away.
fn live_followers_hold(partitions: &Partitions, raft: &Raft<BrokerStateMachine>) -> Option<u64> {
    let metrics = raft.metrics();
    let m = metrics.borrow_watched();
    let replication = m.replication.as_ref()?;
    let live = replication.iter().filter(|(node, _)| **node != m.id && partitions.is_live(**node));
    live.map(|(_, matched)| matched.as_ref().map(|id| id.index))
        .try_fold(u64::MAX, |floor, held| Some(floor.min(held?)))
}

/// The first offset whose batch lies after entry `up_to`, or `high_watermark` when none does:
/// a binary search of the offset index over the offsets it holds, `[first held, high_watermark)`.
/// Offsets rise with entry indexes, so "after `up_to`" is a monotone predicate; an offset not
/// found (purged meanwhile) lies before the log start, so at or before `up_to`.
fn first_offset_after(log: &Log, up_to: u64, high_watermark: u64) -> u64 {
    let (mut lo, mut hi) = (log.first_indexed_offset().unwrap_or(high_watermark).min(high_watermark), high_watermark);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if log.find_offset(mid).is_some_and(|at| at.entry_index > up_to) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use sluice_storage::{Entry, LogConfig};

    use super::*;

    #[test]
    fn the_first_offset_after_an_entry_skips_to_the_next_batch() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), LogConfig::default()).unwrap();
        let entries: Vec<Entry> = (1..=6).map(|i| Entry::new(i, 1, Bytes::from_static(b"x"))).collect();
        log.append(&entries).unwrap();
        // Batches of offsets 0..3 in entry 2, 3..5 in entry 3, 5..9 in entry 5; 4 and 6 hold none.
        for (entry, base, count) in [(2, 0, 3), (3, 3, 2), (5, 5, 4)] {
            log.index_batch(entry, base, count, 1).unwrap();
        }
        let after = |up_to| first_offset_after(&log, up_to, 9);
        assert_eq!([after(0), after(1), after(2), after(3), after(4), after(5), after(6)], [0, 0, 3, 5, 5, 9, 9]);
        assert_eq!(first_offset_after(&log, 2, 4), 3, "bounded by the high watermark");
    }
}
