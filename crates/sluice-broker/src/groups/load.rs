//! Loading a coordinator: replaying every committed record of its offsets partition.
//!
//! The coordinator first writes a *barrier* — an empty record batch, which the partition
//! commits and applies but which holds no message — through Raft in its own term. Its write
//! returning means every entry before it is applied here: the previous leader's, and any write
//! of this broker whose outcome was unknown. The records below the high watermark are then all
//! there is, and are read from the log start (a checkpoint, once the log before one was
//! trimmed) and replayed into a fresh state on a blocking thread. The partition's gate is held
//! exclusively throughout, so no group write runs meanwhile.

use std::sync::Arc;
use std::time::Duration;

use sluice_common::record::{BatchBuilder, ProducerStamp, RecordBatch};
use sluice_proto::internal::group_record::Change;
use sluice_raft::partition::{PartitionCommand, read_committed, write};
use sluice_storage::Log;

use super::coordinator::{Coordinator, Phase, WRITE_TIMEOUT};
use super::records::decode_batch;
use super::state::Coordinated;

/// Bytes read from the log at a time while replaying.
const READ_CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// The first pause after a failed load; it doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(50);
/// The longest pause between load attempts.
const MAX_RETRY: Duration = Duration::from_secs(2);

/// What replaying a partition's log produced.
pub(super) struct Replayed {
    pub state: Coordinated,
    /// Records after the last checkpoint (all of them if there is none).
    pub since_checkpoint: u64,
    /// How much was read.
    pub summary: Summary,
}

/// How much a replay read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Summary {
    /// Batches replayed.
    pub batches: u64,
    /// Records applied.
    pub records: u64,
    /// Batches that held no group records (a client's produce to the topic), skipped.
    pub skipped: u64,
}

/// Loads `coordinator` and makes it serve, retrying until it succeeds or the coordinator
/// retires.
pub(super) async fn run(coordinator: Arc<Coordinator>) {
    let mut pause = FIRST_RETRY;
    let mut phases = coordinator.phases();
    loop {
        let started = tokio::time::Instant::now();
        match load(&coordinator).await {
            Ok(None) => return,
            Ok(Some(s)) => {
                tracing::info!(
                    partition = coordinator.partition,
                    term = coordinator.term,
                    batches = s.batches,
                    records = s.records,
                    skipped = s.skipped,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "coordinating the groups of this offsets partition"
                );
                return;
            }
            Err(e) => tracing::info!(partition = coordinator.partition, "loading groups, retrying: {e}"),
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = phases.wait_for(|p| *p == Phase::Retired) => return,
        }
        pause = (pause * 2).min(MAX_RETRY);
    }
}

/// One attempt; `Ok(None)` if the coordinator retired meanwhile.
async fn load(coordinator: &Arc<Coordinator>) -> Result<Option<Summary>, String> {
    let _exclusive = Arc::clone(&coordinator.gate).write_owned().await;
    if coordinator.phase() == Phase::Retired {
        return Ok(None);
    }
    let (log, start, high_watermark) =
        committed_range(&coordinator.raft, &coordinator.ctx.partitions, coordinator.group_id).await?;
    let replayed = tokio::task::spawn_blocking(move || replay(&log, start, high_watermark))
        .await
        .map_err(|e| format!("the replay task failed: {e}"))??;
    if coordinator.phase() == Phase::Retired {
        return Ok(None);
    }
    coordinator.install(replayed.state, replayed.since_checkpoint);
    Ok(Some(replayed.summary))
}

/// Replays the committed batches of `log` in `[start, high_watermark)` into a fresh state.
pub(super) fn replay(log: &Log, start: u64, high_watermark: u64) -> Result<Replayed, String> {
    let mut state = Coordinated::new();
    let mut since_checkpoint = 0u64;
    let mut summary = Summary::default();
    for_each_committed(log, start, high_watermark, |b| {
        let records = RecordBatch::parse(b.batch)
            .map_err(|e| e.to_string())
            .and_then(|batch| decode_batch(&batch).map_err(|e| e.to_string()));
        let records = match records {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(base_offset = b.base_offset, "skipping a batch that holds no group records: {e}");
                summary.skipped += 1;
                return;
            }
        };
        state.apply_batch(&records);
        // As the coordinator counts: a checkpoint batch starts the count again.
        if matches!(records.first().and_then(|r| r.change.as_ref()), Some(Change::Checkpoint(_))) {
            since_checkpoint = 0;
        } else {
            since_checkpoint += records.len() as u64;
        }
        summary.batches += 1;
        summary.records += records.len() as u64;
    })?;
    Ok(Replayed { state, since_checkpoint, summary })
}

/// Writes a barrier — an empty record batch — through `raft` in the leader's term and waits for
/// it: once it is applied, so is every entry before it. Returns the partition's log and the
/// committed offsets to replay, `[log start, high watermark)`.
pub(crate) async fn committed_range(
    raft: &sluice_raft::typ::Raft<crate::controller::BrokerStateMachine>,
    partitions: &crate::partitions::Partitions,
    gid: u64,
) -> Result<(std::sync::Arc<Log>, u64, u64), String> {
    let barrier = BatchBuilder::new(ProducerStamp::NONE, 0).finish();
    match tokio::time::timeout(WRITE_TIMEOUT, write(raft, PartitionCommand::produce(&barrier))).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(format!("the barrier write failed: {e}")),
        Err(_) => return Err(format!("the barrier write was not committed within {WRITE_TIMEOUT:?}")),
    }
    let found = partitions.log(gid).zip(partitions.high_watermark(gid)).zip(partitions.log_start(gid));
    let Some(((log, high_watermark), log_start)) = found else {
        return Err("the partition is stopping here".into());
    };
    let high_watermark = *high_watermark.borrow();
    let start = log.first_indexed_offset().unwrap_or(high_watermark).max(log_start.borrow().offset).min(high_watermark);
    Ok((log, start, high_watermark))
}

/// Calls `each` with every committed batch of `log` in `[start, high_watermark)`, in order.
pub(crate) fn for_each_committed(
    log: &Log,
    start: u64,
    high_watermark: u64,
    mut each: impl FnMut(sluice_raft::partition::CommittedBatch),
) -> Result<(), String> {
    let mut offset = start;
    while offset < high_watermark {
        let batches = read_committed(log, offset, high_watermark, READ_CHUNK_BYTES)
            .map_err(|e| format!("reading offset {offset}: {e}"))?;
        let Some(last) = batches.last() else {
            return Err(format!("offset {offset} is below the high watermark {high_watermark} but not in the log"));
        };
        offset = last.base_offset + u64::from(last.count);
        batches.into_iter().for_each(&mut each);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use sluice_common::record::Record;
    use sluice_proto::internal::{GroupRecord, OffsetCommit};
    use sluice_storage::{Entry, LogConfig};

    use super::*;
    use crate::groups::records::encode_batch;

    fn commit(group: &str, partition: u32, offset: u64) -> GroupRecord {
        let commit = OffsetCommit {
            topic: "t".into(),
            partition,
            offset,
            metadata: String::new(),
            commit_timestamp_ms: 7,
            instance_id: String::new(),
        };
        GroupRecord { group: group.into(), change: Some(Change::Offset(commit)) }
    }

    /// Appends `batches` as produce entries and indexes them as the partition would.
    fn log_of(dir: &std::path::Path, batches: &[Bytes]) -> (Log, u64) {
        let log = Log::open(dir, LogConfig::default()).unwrap();
        let mut next_offset = 0;
        for (index, batch) in (1u64..).zip(batches) {
            log.append(&[Entry::new(index, 1, PartitionCommand::produce(batch).stored().clone())]).unwrap();
            let count = RecordBatch::parse(batch.clone()).unwrap().header().count;
            log.index_batch(index, next_offset, count, 1).unwrap();
            next_offset += u64::from(count);
        }
        (log, next_offset)
    }

    #[test]
    fn a_checkpoint_over_8_mib_is_replayed_whole_from_the_log_and_one_cut_short_is_ignored() {
        use crate::groups::checkpoint::{MAX_CHECKPOINT_PART_BYTES, split, tests::state_of};
        let state = state_of(3, 1_000, 3_000);
        let parts = split(state.checkpoint(), MAX_CHECKPOINT_PART_BYTES);
        assert_eq!(parts.len(), 2, "over 8 MiB: two parts");
        let (whole, abandoned) = (parts.iter().map(|p| encode_batch(p, 2)), encode_batch(&parts[0], 3));
        let mut batches: Vec<Bytes> = whole.collect();
        batches.extend([abandoned, encode_batch(&[commit("g0", 0, 42)], 4)]);
        let dir = tempfile::tempdir().unwrap();
        let (log, high_watermark) = log_of(dir.path(), &batches);

        let replayed = replay(&log, 0, high_watermark).unwrap();
        let mut expected = state.clone();
        expected.apply(&commit("g0", 0, 42));
        assert_eq!(
            replayed.state, expected,
            "the whole checkpoint, then the commit; the cut-short one changed nothing"
        );
        assert_eq!((replayed.since_checkpoint, replayed.summary.batches), (1, 4));
    }

    #[test]
    fn replay_rebuilds_the_state_skips_foreign_batches_and_counts_from_the_last_checkpoint() {
        let first = vec![commit("a", 0, 5), commit("b", 1, 9)];
        let mut before = Coordinated::new();
        first.iter().for_each(|r| before.apply(r));
        let mut foreign = BatchBuilder::new(ProducerStamp::NONE, 64);
        foreign.push(&Record::new("not a group record", 1));
        let after = vec![commit("a", 0, 6), commit("c", 2, 1), commit("c", 3, 1)];
        let batches =
            [encode_batch(&first, 1), foreign.finish(), encode_batch(&before.checkpoint(), 2), encode_batch(&after, 3)];
        let dir = tempfile::tempdir().unwrap();
        let (log, high_watermark) = log_of(dir.path(), &batches);

        let replayed = replay(&log, 0, high_watermark).unwrap();
        let mut expected = before.clone();
        after.iter().for_each(|r| expected.apply(r));
        assert_eq!(replayed.state, expected);
        assert_eq!(replayed.since_checkpoint, 3, "only the records after the checkpoint");
        assert_eq!((replayed.summary.batches, replayed.summary.skipped), (3, 1));

        tracing::info!("--- from the checkpoint on, as after a trim: the same state");
        let checkpoint_offset = 3;
        assert_eq!(replay(&log, checkpoint_offset, high_watermark).unwrap().state, expected);
        assert_eq!(replay(&log, high_watermark, high_watermark).unwrap().state, Coordinated::new());
    }
}
