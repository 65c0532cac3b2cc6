//! A stopped broker's partition replicas, read straight from its data directory: each replica
//! is a segment log (`sluice_storage::Log`) under `partitions/{topic}-{partition}.g{group}`
//! (crates/sluice-broker/src/partitions.rs), whose entries are the partition's Raft log.
//!
//! Open them only while the broker is stopped: a log's directory lock admits one owner.

use std::path::{Path, PathBuf};

use sluice_common::record::RecordBatch;
use sluice_raft::partition::produce_batch;
use sluice_storage::{Entry, Log, LogConfig};

/// Bytes read from a log per call while walking it.
const READ_CHUNK_BYTES: usize = 1 << 20;

/// The directory of `topic`'s `partition` in a broker's data directory; panics unless there is
/// exactly one.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    let parent = data_dir.join("partitions");
    let prefix = format!("{topic}-{partition}.g");
    let entries = std::fs::read_dir(&parent).unwrap_or_else(|e| panic!("list {}: {e}", parent.display()));
    let found: Vec<PathBuf> = entries
        .map(|e| e.expect("read a directory entry").path())
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            name.strip_prefix(&prefix).is_some_and(|gid| !gid.is_empty() && gid.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    assert_eq!(found.len(), 1, "expected one {prefix}* directory in {}, found {found:?}", parent.display());
    found.into_iter().next().expect("one")
}

/// Opens the log of `topic`'s `partition` in a stopped broker's data directory.
pub fn open(data_dir: &Path, topic: &str, partition: u32) -> Log {
    let dir = partition_dir(data_dir, topic, partition);
    Log::open(&dir, LogConfig::default()).unwrap_or_else(|e| panic!("open the log in {}: {e}", dir.display()))
}

/// The index of the last entry `log` holds (0 if it holds none).
pub fn last_index(log: &Log) -> u64 {
    log.last_id().map_or(0, |id| id.index)
}

/// Calls `visit` with every entry of `log` in `from..=to`, in order; panics on a gap.
pub fn for_each_entry(log: &Log, from: u64, to: u64, mut visit: impl FnMut(&Entry)) {
    let mut next = from;
    while next <= to {
        let chunk = log.read(next, to + 1, READ_CHUNK_BYTES).unwrap_or_else(|e| panic!("read {next}..: {e}"));
        assert!(!chunk.is_empty(), "{}: no entry {next} (last {:?})", log.dir().display(), log.last_id());
        for entry in &chunk {
            assert_eq!(entry.index, next, "{}: entries out of sequence", log.dir().display());
            visit(entry);
            next += 1;
        }
    }
}

/// The index of the entry holding a produced record whose value is `value`, if any.
pub fn find_value(log: &Log, value: &[u8]) -> Option<u64> {
    let mut found = None;
    for_each_entry(log, log.first_index(), last_index(log), |entry| {
        if found.is_none() && batch_values(entry).iter().any(|v| v == value) {
            found = Some(entry.index);
        }
    });
    found
}

/// The values of the records in a produce entry (none for any other entry).
pub fn batch_values(entry: &Entry) -> Vec<bytes::Bytes> {
    let Some(batch) = produce_batch(&entry.payload) else { return Vec::new() };
    let batch = RecordBatch::parse(batch).unwrap_or_else(|e| panic!("entry {}: a bad record batch: {e}", entry.index));
    batch.records().map(|r| r.unwrap_or_else(|e| panic!("entry {}: a bad record: {e}", entry.index)).value).collect()
}

/// Asserts every log holds entries through `end`, and that their entries from the first index
/// through `end` are identical (index, term and payload), naming the replicas that differ.
pub fn assert_identical(logs: &[(u64, &Log)], end: u64) {
    let (first_node, first) = logs[0];
    for &(node, log) in logs {
        assert!(
            log.last_id().is_some_and(|id| id.index >= end),
            "node {node}'s replica ends at {:?}, before entry {end}",
            log.last_id()
        );
        assert_eq!(log.first_index(), first.first_index(), "nodes {first_node} and {node} start at different entries");
    }
    let mut reference = Vec::new();
    for_each_entry(first, first.first_index(), end, |e| reference.push((e.index, e.term, e.payload.clone())));
    for &(node, log) in &logs[1..] {
        let mut i = 0;
        for_each_entry(log, log.first_index(), end, |e| {
            let (index, term, payload) = &reference[i];
            assert!(
                e.index == *index && e.term == *term && e.payload == *payload,
                "entry {index} differs between nodes {first_node} (term {term}) and {node} (term {})",
                e.term
            );
            i += 1;
        });
    }
}
