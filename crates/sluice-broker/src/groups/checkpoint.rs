//! Checkpoints: keeping `__consumer_offsets` from growing with every commit.
//!
//! Every `checkpoint_interval_records` records, the coordinator writes one batch (one Raft
//! entry) holding a checkpoint marker and the records that rebuild every group of the partition
//! as it stands; replay forgets everything before a marker. With the partition's gate held
//! exclusively, no other write is in flight, so the checkpoint misses none.
//!
//! The log before the checkpoint is then trimmed like retention trims a topic
//! (`PartitionCommand::Trim`, then every replica's retention pass purges its own log). Only
//! once **every** replica holds the entries to be trimmed: a replica that lacked them would
//! catch up by installing a snapshot, which holds no records, and would miss the checkpoint
//! itself. A replica that stays behind (its broker is down) postpones trimming, not
//! checkpointing; a later checkpoint trims further.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice_raft::partition::{PartitionCommand, write};

use super::coordinator::{Coordinator, WRITE_TIMEOUT};
use super::records::encode_batch;

/// The largest checkpoint written: well within a partition log entry (16 MiB).
const MAX_CHECKPOINT_BYTES: usize = 8 * 1024 * 1024;
/// How long the trim waits for every replica to hold the checkpoint's predecessors.
const REPLICAS_WAIT: Duration = Duration::from_secs(5);

/// Writes a checkpoint of `coordinator`'s partition, then trims the log before it if every
/// replica holds it.
pub(super) async fn run(coordinator: Arc<Coordinator>) {
    let written = write_checkpoint(&coordinator).await;
    coordinator.checkpointing.store(false, Ordering::Release);
    let partition = coordinator.partition;
    match written {
        Ok(Some(base_offset)) => trim_before(&coordinator, base_offset).await,
        Ok(None) => {}
        Err(e) => tracing::warn!(partition, "checkpoint not written: {e}"),
    }
}

/// The checkpoint's base offset, once committed and applied; `None` if this coordinator no
/// longer serves.
async fn write_checkpoint(coordinator: &Arc<Coordinator>) -> Result<Option<u64>, String> {
    let _exclusive = Arc::clone(&coordinator.gate).write_owned().await;
    if coordinator.ready("").is_err() {
        return Ok(None);
    }
    let records = coordinator.state().checkpoint();
    // Sized before writing: the write encodes again, which is cheap next to the commit.
    let bytes = encode_batch(&records, 0).len();
    if bytes > MAX_CHECKPOINT_BYTES {
        coordinator.since_checkpoint.store(0, Ordering::Relaxed);
        return Err(format!(
            "it would be {bytes} bytes, over {MAX_CHECKPOINT_BYTES}: the partition holds too many groups or offsets to \
             compact, and keeps its whole log"
        ));
    }
    let base_offset = coordinator.write("", &records).await.map_err(|e| e.message)?;
    tracing::info!(
        partition = coordinator.partition,
        records = records.len(),
        bytes,
        base_offset,
        "wrote a group checkpoint"
    );
    Ok(Some(base_offset))
}

/// Trims the log before the checkpoint at `base_offset`, if every replica holds it.
async fn trim_before(coordinator: &Coordinator, base_offset: u64) {
    let partition = coordinator.partition;
    let Some(entry) = coordinator.ctx.partitions.log(coordinator.group_id).and_then(|l| l.find_offset(base_offset))
    else {
        return;
    };
    let Some(up_to) = entry.entry_index.checked_sub(1) else { return };
    let raft = &coordinator.raft;
    let wait = raft.wait(Some(REPLICAS_WAIT));
    // On the leader: every other voter is known to hold entry `up_to`.
    let held = wait.metrics(
        move |m| {
            let Some(replication) = m.replication.as_ref() else { return false };
            let mut voters = m.membership_config.membership().voter_ids();
            voters.all(|v| v == m.id || replication.get(&v).is_some_and(|h| h.is_some_and(|l| l.index >= up_to)))
        },
        "every replica holding the checkpoint",
    );
    if let Err(e) = held.await {
        tracing::info!(partition, "not trimming before the checkpoint yet (a replica is behind): {e}");
        return;
    }
    let trim = PartitionCommand::trim(up_to, base_offset);
    match tokio::time::timeout(WRITE_TIMEOUT, write(raft, trim)).await {
        Ok(Ok(_)) => tracing::info!(
            partition,
            up_to_index = up_to,
            log_start_offset = base_offset,
            "trimmed before a group checkpoint"
        ),
        Ok(Err(e)) => tracing::info!(partition, "trim before a group checkpoint not written: {e}"),
        Err(_elapsed) => {
            tracing::info!(partition, "trim before a group checkpoint not committed within {WRITE_TIMEOUT:?}")
        }
    }
}
