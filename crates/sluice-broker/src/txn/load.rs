//! Loading a transaction coordinator: replaying every committed record of its `__txn`
//! partition, after a barrier write in its own term (as `groups::load` does for groups, whose
//! barrier and log walk it shares).

use std::sync::Arc;
use std::time::Duration;

use sluice_common::record::RecordBatch;
use sluice_storage::Log;

use super::coordinator::{Phase, TxnCoordinator};
use super::records::decode_batch;
use super::state::TxnTable;
use crate::groups::load::{committed_range, for_each_committed};

/// The first pause after a failed load; it doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(2);

/// Loads `coordinator` and makes it serve, retrying until it succeeds or the coordinator
/// retires.
pub(super) async fn run(coordinator: Arc<TxnCoordinator>) {
    let mut pause = FIRST_RETRY;
    let mut phases = coordinator.phases();
    loop {
        match load(&coordinator).await {
            Ok(None) => return,
            Ok(Some(ids)) => {
                let (partition, term) = (coordinator.partition, coordinator.term);
                tracing::info!(partition, term, ids, "coordinating the transactions of this __txn partition");
                return;
            }
            Err(e) => tracing::info!(partition = coordinator.partition, "loading transactions, retrying: {e}"),
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = phases.wait_for(|p| *p == Phase::Retired) => return,
        }
        pause = (pause * 2).min(MAX_RETRY);
    }
}

/// One attempt; `Ok(None)` if the coordinator retired meanwhile, else how many ids it holds.
async fn load(coordinator: &Arc<TxnCoordinator>) -> Result<Option<usize>, String> {
    let _exclusive = Arc::clone(&coordinator.gate).write_owned().await;
    if coordinator.phase() == Phase::Retired {
        return Ok(None);
    }
    let (log, start, high_watermark) =
        committed_range(&coordinator.raft, &coordinator.ctx.partitions, coordinator.group_id).await?;
    let (table, records) = tokio::task::spawn_blocking(move || replay(&log, start, high_watermark))
        .await
        .map_err(|e| format!("the replay task failed: {e}"))??;
    if coordinator.phase() == Phase::Retired {
        return Ok(None);
    }
    let ids = table.iter().count();
    coordinator.install(table, records);
    Ok(Some(ids))
}

/// Replays the committed batches of `log` in `[start, high_watermark)` into a fresh table;
/// batches that hold no transaction records (the load barriers) are passed over. Returns the
/// table and how many records it applied.
pub(super) fn replay(log: &Log, start: u64, high_watermark: u64) -> Result<(TxnTable, u64), String> {
    let mut table = TxnTable::new();
    let mut records = 0u64;
    for_each_committed(log, start, high_watermark, |b| {
        let Ok(batch) = RecordBatch::parse(b.batch) else { return };
        if batch.header().count == 0 {
            return;
        }
        match decode_batch(&batch) {
            Ok(batch) => {
                records += batch.len() as u64;
                table.apply_batch(&batch);
            }
            Err(e) => tracing::warn!(base_offset = b.base_offset, "skipping a batch of no transaction records: {e}"),
        }
    })?;
    Ok((table, records))
}
