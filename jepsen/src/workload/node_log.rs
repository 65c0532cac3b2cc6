//! Each stopped broker's own copy of the topic's partitions, read from its data directory
//! (`partitions/{topic}-{partition}.g{group}`, a `sluice_storage::Log` holding the partition's
//! Raft log; see crates/sluice-broker/src/partitions.rs).
//!
//! What is recorded is what the replica's state machine applied: the batches its offset index
//! names, read the way a broker serves a fetch (`sluice_raft::partition::read_committed`).
//! Entries that are not data — blank and membership entries, duplicates and refused batches —
//! are never included, and neither is an unapplied tail, which replicas may legitimately
//! disagree on; applied data they must agree on, offset for offset.

use std::path::{Path, PathBuf};
use std::sync::PoisonError;

use sluice_common::record::RecordBatch;
use sluice_raft::partition::read_committed;
use sluice_storage::{Log, LogConfig};

use super::{RUNNER_PROCESS, SharedRecorder, WorkloadError, value_text};
use crate::history::{Kind, Op};

/// Bytes read from a log per call.
const READ_CHUNK_BYTES: usize = 4 << 20;

/// After the brokers stopped: records each node's local copy of every partition of `topic`
/// (`NodeLog` events) from its data directory.
///
/// Every partition directory of the topic is read; a partition that cannot be read is named
/// in the error, after the others were recorded. Opening a log recovers it (a torn tail
/// written by a killed broker is cut), so call this only on a stopped broker's directory.
pub fn record_node_logs(
    recorder: &SharedRecorder,
    node: u64,
    data_dir: &Path,
    topic: &str,
) -> Result<(), WorkloadError> {
    let failed = |message: String| WorkloadError::NodeLog {
        node,
        topic: topic.to_owned(),
        dir: data_dir.display().to_string(),
        message,
    };
    let dirs = partition_dirs(data_dir, topic).map_err(failed)?;
    let mut failures = Vec::new();
    for (partition, dir) in dirs {
        match read_replica(&dir) {
            Ok(entries) => {
                let op = Op::NodeLog { node, partition, entries };
                let mut recorder = recorder.lock().unwrap_or_else(PoisonError::into_inner);
                recorder.record(RUNNER_PROCESS, Kind::Ok, op).map_err(|e| WorkloadError::History(e.to_string()))?;
            }
            Err(message) => failures.push(format!("partition {partition} ({}): {message}", dir.display())),
        }
    }
    recorder
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .flush()
        .map_err(|e| WorkloadError::History(e.to_string()))?;
    if failures.is_empty() { Ok(()) } else { Err(failed(failures.join("; "))) }
}

/// The directories of `topic`'s partitions under `data_dir/partitions`, by partition; an
/// error if a partition has two (a topic deleted and created again is not what the workload
/// does, and which copy is current could not be told).
fn partition_dirs(data_dir: &Path, topic: &str) -> Result<Vec<(u32, PathBuf)>, String> {
    let parent = data_dir.join("partitions");
    let entries = std::fs::read_dir(&parent).map_err(|e| format!("cannot list {}: {e}", parent.display()))?;
    let mut found: Vec<(u32, PathBuf)> = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("cannot list {}: {e}", parent.display()))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if let Some(partition) = partition_of(&name, topic) {
            found.push((partition, path));
        }
    }
    found.sort();
    if let Some(pair) = found.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(format!("partition {} has two directories: {:?} and {:?}", pair[0].0, pair[0].1, pair[1].1));
    }
    Ok(found)
}

/// The partition a directory named `{topic}-{partition}.g{group}` holds, if that is its name.
pub(super) fn partition_of(name: &str, topic: &str) -> Option<u32> {
    let rest = name.strip_prefix(topic)?.strip_prefix('-')?;
    let (partition, group) = rest.split_once(".g")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(partition) && digits(group)).then(|| partition.parse().ok()).flatten()
}

/// Every (offset, value) the replica in `dir` applied, in offset order.
fn read_replica(dir: &Path) -> Result<Vec<(u64, String)>, String> {
    let log = Log::open(dir, LogConfig::default()).map_err(|e| format!("cannot open the log: {e}"))?;
    let (Some(first), Some(end)) = (log.first_indexed_offset(), log.indexed_end()) else { return Ok(Vec::new()) };
    let end = end.next_offset;
    let mut entries = Vec::with_capacity(usize::try_from(end.saturating_sub(first)).unwrap_or(0));
    let mut next = first;
    while next < end {
        let batches = read_committed(&log, next, end, READ_CHUNK_BYTES).map_err(|e| format!("offset {next}: {e}"))?;
        let mut advanced = false;
        for batch in batches {
            let after = batch.base_offset + u64::from(batch.count);
            let parsed = RecordBatch::parse(batch.batch)
                .map_err(|e| format!("the batch at offset {}: {e}", batch.base_offset))?;
            for (offset, record) in (batch.base_offset..).zip(parsed.records()) {
                let record = record.map_err(|e| format!("the record at offset {offset}: {e}"))?;
                if offset >= next {
                    entries.push((offset, value_text(&record.value)));
                }
            }
            advanced |= after > next;
            next = next.max(after);
        }
        if !advanced {
            return Err(format!("offset {next} is not indexed although the index reaches offset {end}"));
        }
    }
    Ok(entries)
}
