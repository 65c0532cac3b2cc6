//! Checkpoints: keeping `__consumer_offsets` from growing with every commit.
//!
//! Every `checkpoint_interval_records` records, the coordinator writes one batch (one Raft
//! entry) holding a checkpoint marker and the records that rebuild every group of the partition
//! as it stands; replay forgets everything before a marker. With the partition's gate held
//! exclusively, no other write is in flight, so the checkpoint misses none.
//!
//! A checkpoint larger than [`MAX_CHECKPOINT_PART_BYTES`] is written as several consecutive
//! batches ([`split`]), each opened by a marker numbering it, part `k` of `n`. Replay
//! (`Coordinated::apply_batch`) rebuilds them apart and lets them replace the state only with
//! part `n`; any other batch after a part abandons the checkpoint. So a checkpoint whose writer
//! failed part-way (its parts may still commit) is never taken for the state, and a complete
//! one is read whole. Parts are written one after another under the exclusive gate, so no other
//! batch comes between them unless the writer gave up.
//!
//! The log before the checkpoint (before its first part, once every part is committed) is then
//! trimmed like retention trims a topic
//! (`PartitionCommand::Trim`, then every replica's retention pass purges its own log). Only
//! once **every** replica holds the entries to be trimmed: a replica that lacked them would
//! catch up by installing a snapshot, which holds no records, and would miss the checkpoint
//! itself. A replica that stays behind (its broker is down) postpones trimming, not
//! checkpointing; a later checkpoint trims further.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice_common::record::BATCH_HEADER_LEN;
use sluice_proto::internal::group_record::Change;
use sluice_proto::internal::{Checkpoint, GroupRecord};
use sluice_raft::partition::{PartitionCommand, write};

use sluice_raft::typ::Raft;

use super::context::Context;
use super::coordinator::{Coordinator, WRITE_TIMEOUT};
use super::records::message_bytes;
use crate::controller::BrokerStateMachine;

/// The largest batch of a checkpoint: well within a partition log entry (16 MiB).
pub(super) const MAX_CHECKPOINT_PART_BYTES: usize = 8 * 1024 * 1024;
/// How long the trim waits for every replica to hold the checkpoint's predecessors.
const REPLICAS_WAIT: Duration = Duration::from_secs(5);

/// Writes a checkpoint of `coordinator`'s partition, then trims the log before it if every
/// replica holds it.
pub(super) async fn run(coordinator: Arc<Coordinator>) {
    let written = write_checkpoint(&coordinator).await;
    coordinator.checkpointing.store(false, Ordering::Release);
    let partition = coordinator.partition;
    match written {
        Ok(Some(base_offset)) => {
            let ids = (coordinator.group_id, coordinator.partition);
            trim_before(&coordinator.ctx, ids, &coordinator.raft, base_offset).await;
        }
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
    let parts = split(coordinator.state().checkpoint(), MAX_CHECKPOINT_PART_BYTES);
    let mut first = None;
    for (n, part) in (1..).zip(&parts) {
        let written = coordinator.write("", part).await;
        let base_offset = written.map_err(|e| format!("part {n} of {}: {}", parts.len(), e.message))?;
        first.get_or_insert(base_offset);
    }
    tracing::info!(
        partition = coordinator.partition,
        records = parts.iter().map(Vec::len).sum::<usize>(),
        parts = parts.len(),
        base_offset = first,
        "wrote a group checkpoint"
    );
    Ok(first)
}

/// The batches of the checkpoint `records` (as `Coordinated::checkpoint` makes them, marker
/// first): the records themselves if they fit in `max_bytes` — one batch, written as before
/// parts existed — or else parts of at most `max_bytes` each (a record larger than that alone
/// in its part), each opened by a marker numbering it.
pub(super) fn split(records: Vec<GroupRecord>, max_bytes: usize) -> Vec<Vec<GroupRecord>> {
    let marker = |part, parts| GroupRecord {
        group: String::new(),
        change: Some(Change::Checkpoint(Checkpoint { part, parts })),
    };
    let budget = max_bytes.saturating_sub(BATCH_HEADER_LEN + message_bytes(&marker(u32::MAX, u32::MAX)));
    let mut parts: Vec<Vec<GroupRecord>> = vec![Vec::new()];
    let mut bytes = 0;
    for record in records.into_iter().skip(1) {
        let size = message_bytes(&record);
        let current = parts.last_mut().expect("never empty");
        if bytes + size > budget && !current.is_empty() {
            parts.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        parts.last_mut().expect("never empty").push(record);
    }
    let count = u32::try_from(parts.len()).expect("fewer parts than records");
    for (part, records) in (1..).zip(&mut parts) {
        let numbered = if count == 1 { marker(0, 0) } else { marker(part, count) };
        records.insert(0, numbered);
    }
    parts
}

/// Trims the log of internal partition `(group_id, partition)` before the checkpoint at
/// `base_offset`, if every replica holds it (shared with the transaction coordinators).
pub(crate) async fn trim_before(
    ctx: &Context,
    (group_id, partition): (u64, u32),
    raft: &Raft<BrokerStateMachine>,
    base_offset: u64,
) {
    let Some(entry) = ctx.partitions.log(group_id).and_then(|l| l.find_offset(base_offset)) else {
        return;
    };
    let Some(up_to) = entry.entry_index.checked_sub(1) else { return };
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
            "trimmed before a checkpoint"
        ),
        Ok(Err(e)) => tracing::info!(partition, "trim before a checkpoint not written: {e}"),
        Err(_elapsed) => tracing::info!(partition, "trim before a checkpoint not committed within {WRITE_TIMEOUT:?}"),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use sluice_common::record::RecordBatch;
    use sluice_proto::internal::OffsetCommit;

    use super::*;
    use crate::groups::records::{decode_batch, encode_batch};
    use crate::groups::state::Coordinated;

    /// A state with `groups` groups of `offsets` offsets each, every offset's metadata
    /// `metadata_bytes` long.
    pub(in crate::groups) fn state_of(groups: usize, offsets: u32, metadata_bytes: usize) -> Coordinated {
        let mut state = Coordinated::new();
        for g in 0..groups {
            let records: Vec<GroupRecord> = (0..offsets)
                .map(|partition| {
                    let commit = OffsetCommit {
                        topic: "t".into(),
                        partition,
                        offset: u64::from(partition),
                        metadata: "m".repeat(metadata_bytes),
                        commit_timestamp_ms: 1,
                        instance_id: String::new(),
                    };
                    GroupRecord { group: format!("g{g}"), change: Some(Change::Offset(commit)) }
                })
                .collect();
            state.apply_batch(&records);
        }
        state
    }

    fn part_of(records: &[GroupRecord]) -> (u32, u32) {
        match records.first().and_then(|r| r.change.as_ref()) {
            Some(Change::Checkpoint(c)) => (c.part, c.parts),
            other => panic!("a part opens with a checkpoint marker, not {other:?}"),
        }
    }

    #[test]
    fn a_checkpoint_above_the_limit_is_split_into_numbered_parts_that_rebuild_the_state() {
        let state = state_of(3, 1_000, 3_000);
        let whole = encode_batch(&state.checkpoint(), 0).len();
        assert!(whole > MAX_CHECKPOINT_PART_BYTES, "the state is {whole} bytes");

        let parts = split(state.checkpoint(), MAX_CHECKPOINT_PART_BYTES);
        assert_eq!(parts.len(), 2);
        let mut rebuilt = Coordinated::new();
        for (n, part) in (1..).zip(&parts) {
            assert_eq!(part_of(part), (n, 2));
            let bytes = encode_batch(part, 0);
            assert!(bytes.len() <= MAX_CHECKPOINT_PART_BYTES, "part {n} is {} bytes", bytes.len());
            rebuilt.apply_batch(&decode_batch(&RecordBatch::parse(bytes).unwrap()).unwrap());
        }
        assert_eq!(rebuilt, state);
    }

    #[test]
    fn a_checkpoint_abandoned_part_way_never_stands_for_the_state() {
        let state = state_of(4, 3, 100);
        let parts = split(state.checkpoint(), 1_000);
        assert!(parts.len() >= 3, "{} parts", parts.len());
        let last = parts.len() - 1;
        let commit = |offset| {
            let commit = OffsetCommit {
                topic: "t".into(),
                partition: 0,
                offset,
                metadata: String::new(),
                commit_timestamp_ms: 2,
                instance_id: String::new(),
            };
            vec![GroupRecord { group: "g0".into(), change: Some(Change::Offset(commit)) }]
        };

        tracing::info!("--- over the state, parts change nothing until a batch abandons them");
        let mut s = state.clone();
        parts[..last].iter().for_each(|p| s.apply_batch(p));
        assert_eq!(s.checkpoint(), state.checkpoint());
        s.apply_batch(&commit(9));
        let mut expected = state.clone();
        expected.apply_batch(&commit(9));
        assert_eq!(s, expected);

        tracing::info!("--- read from its first part, as after a trim: nothing until the last part");
        let mut from_start = Coordinated::new();
        parts[..last].iter().for_each(|p| from_start.apply_batch(p));
        assert_eq!(from_start.checkpoint(), Coordinated::new().checkpoint(), "a checkpoint cut short is not the state");
        from_start.apply_batch(&parts[last]);
        assert_eq!(from_start, state);

        tracing::info!("--- a checkpoint started again after an abandoned first part; parts without a first");
        let mut restarted = Coordinated::new();
        restarted.apply_batch(&parts[0]);
        parts.iter().for_each(|p| restarted.apply_batch(p));
        assert_eq!(restarted, state);
        let mut orphans = Coordinated::new();
        parts[1..].iter().for_each(|p| orphans.apply_batch(p));
        assert_eq!(orphans, Coordinated::new());
    }

    #[test]
    fn a_checkpoint_within_the_limit_is_one_batch_encoded_as_before_parts_existed() {
        let state = state_of(2, 3, 10);
        assert_eq!(split(state.checkpoint(), MAX_CHECKPOINT_PART_BYTES), [state.checkpoint()]);
        assert_eq!(split(Coordinated::new().checkpoint(), 1), [Coordinated::new().checkpoint()], "nothing to split");
        let one_per_part = split(state.checkpoint(), 1);
        assert_eq!(one_per_part.len(), 8, "each group's epoch and 3 offsets, each alone: over the limit");
        assert!(one_per_part.iter().all(|p| p.len() == 2));
    }
}
