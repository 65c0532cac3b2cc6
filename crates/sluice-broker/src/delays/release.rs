//! The releaser: on every partition this broker leads, proposes the release of the delayed
//! messages that are due, as soon as they are (docs/DELAYS.md, "Release").
//!
//! It sleeps until the earliest due time on the [`Board`](super::board::Board), woken early by
//! notes of earlier ones (a delayed batch applied here, a release that left more). Once a
//! second it also sweeps the partitions it leads and notes each one's earliest due message
//! from the store: that is how a new leader, or a restarted broker, finds what was pending.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use sluice_common::record::{BatchBuilder, DELIVER_AT_PROPERTY, ProducerStamp, RecordBatch};
use sluice_raft::Reply;
use sluice_raft::partition::PartitionCommand;
use sluice_raft::partition::delay::Pending;
use sluice_raft::partition::reject;
use sluice_raft::typ::{Raft, WatchReceiver};
use tokio::sync::watch;

use super::Delays;
use crate::controller::BrokerStateMachine;
use crate::partitions::Partitions;

/// How often the releaser sweeps the partitions it leads for pending messages.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Messages in one release at most.
const RELEASE_MESSAGES: usize = 10_000;
/// Partitions released at once. (4 instead drained a burst of a million no faster and left
/// other producers no better off on this machine: the drain is bound by CPU, docs/BENCHMARKS.md
/// "Delayed messages".)
const GROUPS_AT_ONCE: usize = 32;
/// The longest a release commit is waited for before the partition is tried again.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed release, the partition is tried again this much later.
const RETRY_AFTER_MS: u64 = 200;
/// Releases one partition makes in a row before others get their turn.
const ROUNDS_IN_A_ROW: usize = 16;
/// Schedules of one partition fired in one turn at most.
const FIRES_AT_ONCE: usize = 64;
/// The property naming the schedule a fired message comes from.
pub const SCHEDULE_PROPERTY: &str = "sluice.schedule";

/// Releases due messages until `stop` turns true.
pub(crate) async fn run(partitions: Arc<Partitions>, delays: Arc<Delays>, mut stop: watch::Receiver<bool>) {
    let mut sweep_at = tokio::time::Instant::now();
    loop {
        if *stop.borrow() {
            return;
        }
        let now = tokio::time::Instant::now();
        if now >= sweep_at {
            sweep(&partitions, &delays).await;
            sweep_at = now + SWEEP_EVERY;
        }
        let due = delays.board.lock().expect("board lock").take_due(wall_clock_ms());
        if !due.is_empty() {
            futures_util::stream::iter(due)
                .for_each_concurrent(GROUPS_AT_ONCE, |group| release_group(&partitions, &delays, group))
                .await;
            continue;
        }
        let first = delays.board.lock().expect("board lock").first_due();
        let until_first = first.map(|due| Duration::from_millis(due.saturating_sub(wall_clock_ms())));
        let sleep = until_first.map_or(SWEEP_EVERY, |d| d.min(SWEEP_EVERY));
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = delays.wake.notified() => {}
            _ = stop.changed() => {}
        }
    }
}

/// Notes the earliest pending message of every partition this broker leads.
async fn sweep(partitions: &Partitions, delays: &Arc<Delays>) {
    let led: Vec<(u64, u64)> = partitions
        .group_ids()
        .into_iter()
        .filter_map(|group| partitions.raft(group).filter(|r| r.is_leader()).map(|raft| (group, term_of(&raft))))
        .collect();
    let swept = delays
        .off_runtime(move |delays| {
            for (group, term) in led {
                if let Some(due) = delays.next_due(group, term)? {
                    delays.note(group, due);
                }
            }
            Ok(())
        })
        .await;
    if let Err(e) = swept {
        tracing::error!("reading the delay store: {e}");
    }
}

/// Releases what is due in `group`, if this broker leads it, in rounds of at most
/// [`RELEASE_MESSAGES`]; notes the group again for what is left.
async fn release_group(partitions: &Partitions, delays: &Arc<Delays>, group: u64) {
    let Some(raft) = partitions.raft(group).filter(|r| r.is_leader()) else { return };
    // Built from what this replica applied: it must hold everything its predecessors committed.
    if !partitions.leader_caught_up_within(group, COMMIT_TIMEOUT).await {
        delays.note(group, wall_clock_ms() + RETRY_AFTER_MS);
        return;
    }
    let Some(lane) = partitions.delay_lane(group) else { return };
    let term = term_of(&raft);
    let (mut more, mut released_to) = (false, 0);
    for _ in 0..ROUNDS_IN_A_ROW {
        // Another write of the group on its way (a cancel, or a release that outlasted its
        // wait): the store does not show its effect yet, so nothing is built from it.
        let Some(serialised) = delays.try_lock(group) else {
            delays.note(group, wall_clock_ms() + RETRY_AFTER_MS);
            return;
        };
        let latest = lane.max_release_ms.load(std::sync::atomic::Ordering::Acquire);
        let Some(now) = release_clock(wall_clock_ms(), latest) else {
            delays.note(group, latest);
            return;
        };
        released_to = now;
        // The mark before the rows: rows read after a later write are refused as stale, never
        // accepted as fresh.
        let floor = delays.start_scan(group, term);
        let read = delays
            .off_runtime(move |delays| {
                let built_at = delays.store.mark(group)?;
                let rows = delays.store.pending_from(group, floor, now, RELEASE_MESSAGES, delays.release_bytes)?;
                let last = rows.last().map(|r| (r.due_ms, r.seq + 1));
                Ok((built_at, rows.len(), last, release_batch(group, &rows)))
            })
            .await;
        let (built_at, read_rows, last, built) = match read {
            Ok(read) => read,
            Err(e) => {
                tracing::error!(group, "reading the delay store: {e}");
                delays.note(group, now + RETRY_AFTER_MS);
                return;
            }
        };
        let Some(last) = last else { break };
        let Some((items, batch)) = built else {
            delays.note(group, now + RETRY_AFTER_MS);
            return;
        };
        let full = read_rows == RELEASE_MESSAGES;
        let command = PartitionCommand::release(now, built_at, &items, &batch);
        match Delays::write_holding(serialised, &raft, command, COMMIT_TIMEOUT).await {
            Some(Ok(Reply::Appended { .. })) => {
                delays.metrics.released(group, wall_clock_ms(), items.iter().map(|i| i.1));
                delays.raise_floor(group, term, last);
            }
            Some(Ok(Reply::Rejected { code: reject::STALE_RELEASE, message })) => {
                delays.metrics.stale();
                tracing::debug!(group, "release refused as stale ({message}); building it again");
                delays.note(group, now);
                return;
            }
            Some(Ok(other)) => {
                tracing::error!(group, "a release was refused: {other:?}");
                delays.note(group, now + RETRY_AFTER_MS);
                return;
            }
            Some(Err(e)) => {
                tracing::debug!(group, "release not committed (will retry if still leader): {e}");
                delays.note(group, now + RETRY_AFTER_MS);
                return;
            }
            None => {
                tracing::warn!(group, "release not committed within {COMMIT_TIMEOUT:?}; waiting for it");
                delays.note(group, now + RETRY_AFTER_MS);
                return;
            }
        }
        more = full;
        if !full {
            break;
        }
    }
    if !fire_due(&raft, delays, group).await {
        delays.note(group, wall_clock_ms() + RETRY_AFTER_MS);
        return;
    }
    match delays.off_runtime(move |delays| delays.next_due(group, term)).await {
        // Still due after a round that took all it could: only a damaged message is left, and
        // it is not retried in a tight loop.
        Ok(Some(due)) if !more && due <= released_to => delays.note(group, wall_clock_ms() + RETRY_AFTER_MS),
        Ok(Some(due)) => delays.note(group, due),
        Ok(None) => {}
        Err(e) => tracing::error!(group, "reading the delay store: {e}"),
    }
}

/// Fires the schedules of `group` that are due, one entry each; false if one failed.
async fn fire_due(raft: &Raft<BrokerStateMachine>, delays: &Delays, group: u64) -> bool {
    let now = wall_clock_ms();
    let due = match delays.store.due_fires(group, now, FIRES_AT_ONCE) {
        Ok(due) => due,
        Err(e) => {
            tracing::error!(group, "reading the delay store: {e}");
            return false;
        }
    };
    for (due_ms, name) in due {
        // Built from the store under the group's lock, its mark read first (as a release).
        let Some(serialised) = delays.try_lock(group) else { return false };
        let read = delays.store.mark(group).and_then(|built_at| Ok((built_at, delays.store.schedule(group, &name)?)));
        let (built_at, row) = match read {
            Ok((built_at, Some(row))) if row.next_due_ms == due_ms => (built_at, row),
            Ok(_) => continue, // deleted or fired since it was listed
            Err(e) => {
                tracing::error!(group, "reading the delay store: {e}");
                return false;
            }
        };
        let Some(batch) = fire_batch(&name, due_ms, now, &row.batch) else {
            tracing::error!(group, name, "a stored schedule's message is damaged; it does not fire");
            continue;
        };
        let command = PartitionCommand::fire(now, built_at, due_ms, &name, &batch);
        match Delays::write_holding(serialised, raft, command, COMMIT_TIMEOUT).await {
            Some(Ok(Reply::Appended { .. })) => delays.metrics.fired(wall_clock_ms(), due_ms),
            outcome => {
                tracing::debug!(group, name, "schedule fire not committed (will retry if still leader): {outcome:?}");
                return false;
            }
        }
    }
    true
}

/// The message of one fire of schedule `name`: the stored record, stamped with the fire's
/// time, its due time as `deliver_at` and the schedule's name.
fn fire_batch(name: &str, due_ms: u64, now: u64, stored: &bytes::Bytes) -> Option<bytes::Bytes> {
    let view = RecordBatch::parse(stored.clone()).ok()?.records().next()?.ok()?;
    let mut record = view.to_record();
    record.timestamp_ms = now as i64;
    record.properties.retain(|(k, _)| k != DELIVER_AT_PROPERTY && k != SCHEDULE_PROPERTY);
    record.properties.push((DELIVER_AT_PROPERTY.to_owned(), due_ms.to_string()));
    record.properties.push((SCHEDULE_PROPERTY.to_owned(), name.to_owned()));
    let mut b = BatchBuilder::new(ProducerStamp::NONE, stored.len() + 64);
    b.push(&record);
    Some(b.finish())
}

/// The release of `rows`: their `(seq, due_ms)` and one batch of their messages. A stored
/// message that fails its checksum stays pending and is reported (`None` if none is left).
fn release_batch(group: u64, rows: &[Pending]) -> Option<(Vec<(u64, u64)>, bytes::Bytes)> {
    let bytes: usize = rows.iter().map(|r| r.batch.len()).sum();
    let mut builder = BatchBuilder::new(ProducerStamp::NONE, bytes);
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        let record = RecordBatch::parse(row.batch.clone())
            .map_err(|e| e.to_string())
            .and_then(|b| b.records().next().ok_or_else(|| "no record".to_string())?.map_err(|e| e.to_string()));
        match record {
            Ok(view) => {
                builder.push_view(&view);
                items.push((row.seq, row.due_ms));
            }
            Err(e) => tracing::error!(group, seq = row.seq, "a stored delayed message is damaged ({e}); kept pending"),
        }
    }
    (!items.is_empty()).then(|| (items, builder.finish()))
}

/// The time a release built now is stamped with: the clock, unless a release already
/// committed is stamped later — a new leader whose clock is behind its predecessor's, or a
/// clock that jumped back — and then none until the clock has passed it (docs/DELAYS.md, "What
/// is guaranteed"), so no message is released earlier than one before it was.
fn release_clock(now_ms: u64, latest_committed_ms: u64) -> Option<u64> {
    (now_ms >= latest_committed_ms).then_some(now_ms)
}

/// The current term of a group's Raft node.
fn term_of(raft: &Raft<BrokerStateMachine>) -> u64 {
    raft.metrics().borrow_watched().current_term
}

/// This broker's wall clock in ms since the Unix epoch.
pub(crate) fn wall_clock_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_that_jumps_back_releases_nothing_until_it_passes_the_latest_release() {
        let mut latest = 0;
        for (clock, stamped) in [
            (1_000, Some(1_000)),
            (5_000, Some(5_000)),
            (2_000, None),
            (4_999, None),
            (5_000, Some(5_000)),
            (5_001, Some(5_001)),
        ] {
            assert_eq!(release_clock(clock, latest), stamped, "clock {clock}, latest {latest}");
            latest = latest.max(stamped.unwrap_or(0));
        }
    }
}
