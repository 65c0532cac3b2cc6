//! Checkpoints: keeping `__txn` from growing with every transaction.
//!
//! Every `checkpoint_interval_records` records, the coordinator rewrites every transactional
//! id's state as `put` records, in batches of at most [`MAX_PART_BYTES`], with the partition's
//! gate held exclusively (no other write in flight, so the records are the table as it stands
//! at that log position). Records are whole states, so replaying from the checkpoint's first
//! batch on rebuilds the table, and so does replaying from further back: a checkpoint cut
//! short by a failure changes nothing. Once every batch is committed, the log before the first
//! is trimmed as groups' checkpoints are (`groups::checkpoint::trim_before`: only once every
//! replica holds it).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prost::Message;
use sluice_proto::internal::TxnRecord;
use sluice_proto::internal::txn_record::Change;

use super::coordinator::TxnCoordinator;
use crate::groups::checkpoint::trim_before;

/// The largest batch of a checkpoint: well within a partition log entry (16 MiB).
const MAX_PART_BYTES: usize = 8 * 1024 * 1024;

/// Writes a checkpoint of `coordinator`'s partition, then trims the log before it.
pub(super) async fn run(coordinator: Arc<TxnCoordinator>) {
    let written = write_checkpoint(&coordinator).await;
    coordinator.checkpointing.store(false, Ordering::Release);
    match written {
        Ok(Some(base_offset)) => {
            let ids = (coordinator.group_id, coordinator.partition);
            trim_before(&coordinator.ctx, ids, &coordinator.raft, base_offset).await;
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(partition = coordinator.partition, "transaction checkpoint not written: {e}"),
    }
}

/// The checkpoint's base offset once committed; `None` if the coordinator no longer serves or
/// holds no id.
async fn write_checkpoint(coordinator: &Arc<TxnCoordinator>) -> Result<Option<u64>, String> {
    let _exclusive = Arc::clone(&coordinator.gate).write_owned().await;
    if coordinator.ready("").is_err() {
        return Ok(None);
    }
    let records: Vec<TxnRecord> = coordinator
        .table()
        .iter()
        .map(|(id, meta)| TxnRecord { transactional_id: id.to_owned(), change: Some(Change::Put(meta.clone())) })
        .collect();
    let parts = split(records, MAX_PART_BYTES);
    let mut first = None;
    for (n, part) in (1..).zip(&parts) {
        let base_offset =
            coordinator.write(part).await.map_err(|e| format!("part {n} of {}: {}", parts.len(), e.message))?;
        first.get_or_insert(base_offset);
    }
    coordinator.since_checkpoint.store(0, Ordering::Relaxed);
    let ids = parts.iter().map(Vec::len).sum::<usize>();
    tracing::info!(partition = coordinator.partition, ids, parts = parts.len(), "wrote a transaction checkpoint");
    Ok(first.flatten())
}

/// `records` in batches of at most about `max_bytes` each (a record larger than that alone).
fn split(records: Vec<TxnRecord>, max_bytes: usize) -> Vec<Vec<TxnRecord>> {
    let mut parts: Vec<Vec<TxnRecord>> = Vec::new();
    let mut bytes = max_bytes;
    for record in records {
        // The key repeats the id; 32 bytes cover a record's framing.
        let size = record.encoded_len() + record.transactional_id.len() + 32;
        if bytes + size > max_bytes {
            parts.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        parts.last_mut().expect("a part was opened").push(record);
    }
    parts
}

#[cfg(test)]
mod tests {
    use sluice_proto::internal::TxnMeta;

    use super::*;

    fn put(id: usize) -> TxnRecord {
        TxnRecord { transactional_id: format!("id-{id}"), change: Some(Change::Put(TxnMeta::default())) }
    }

    #[test]
    fn records_are_split_into_parts_under_the_limit_in_order() {
        let records: Vec<TxnRecord> = (0..1_000).map(put).collect();
        let parts = split(records.clone(), 4_096);
        assert!(parts.len() > 5, "{} parts", parts.len());
        for part in &parts {
            let bytes: usize = part.iter().map(|r| r.encoded_len() + r.transactional_id.len() + 32).sum();
            assert!(bytes <= 4_096 && !part.is_empty(), "{bytes}");
        }
        assert_eq!(parts.concat(), records);
        assert!(split(Vec::new(), 4_096).is_empty(), "no id: nothing to write");
    }
}
