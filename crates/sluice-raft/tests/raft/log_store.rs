//! The partition log store and state machine against openraft's own storage conformance suite,
//! plus what the suite does not check: durability reported only after the group commit's fsync,
//! the vote surviving a reopen, and reads that skip a purged head.

use std::sync::Arc;

use openraft::entry::RaftEntry as _;
use openraft::storage::{IOFlushed, RaftLogStorage, RaftLogStorageExt};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{EntryPayload, RaftLogReader, StorageError};
use sluice_raft::typ::{RaftEntry, Vote, log_id};
use sluice_raft::{Command, PartitionConfig, PartitionLogStore, PartitionStateMachine};
use sluice_storage::{Flusher, Log, LogConfig};
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<PartitionConfig, PartitionLogStore, PartitionStateMachine, (TempDir, Arc<Flusher>)> for Builder {
    async fn build(
        &self,
    ) -> Result<((TempDir, Arc<Flusher>), PartitionLogStore, PartitionStateMachine), StorageError<PartitionConfig>>
    {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = Arc::new(Log::open(dir.path(), LogConfig::default()).expect("open log"));
        let flusher = Arc::new(Flusher::start("test", 2));
        let sm = PartitionStateMachine::open(Arc::clone(&log)).expect("open state machine");
        let store = PartitionLogStore::new(log, Arc::clone(&flusher));
        Ok(((dir, flusher), store, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partition_log_store_and_state_machine_pass_openrafts_conformance_suite() {
    Suite::test_all(Builder).await.expect("openraft log store suite");
}

fn open(dir: &std::path::Path) -> (PartitionLogStore, Arc<Flusher>) {
    let log = Arc::new(Log::open(dir, LogConfig::default()).expect("open log"));
    let flusher = Arc::new(Flusher::start("test", 1));
    (PartitionLogStore::new(log, Arc::clone(&flusher)), flusher)
}

fn commands(range: std::ops::Range<u64>) -> Vec<RaftEntry> {
    range.map(|i| RaftEntry::new(log_id(1, i), EntryPayload::Normal(Command::new(&i.to_le_bytes())))).collect()
}

#[tokio::test]
async fn appends_are_reported_saved_only_once_fsynced_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _flusher) = open(dir.path());
    store.blocking_append(commands(1..101)).await.expect("the flusher reports the append saved");
    assert_eq!(store.log().synced_index(), Some(100), "reported saved before the fsync covered it");
    store.save_vote(&Vote::new_committed(3, 2)).await.unwrap();
    drop(store);

    let (mut store, _flusher) = open(dir.path());
    let mut reader = store.get_log_reader().await;
    assert_eq!(reader.read_vote().await.unwrap(), Some(Vote::new_committed(3, 2)));
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(1, 100)));
    let entries = reader.try_get_log_entries(1..=100).await.unwrap();
    assert_eq!(entries, commands(1..101));
}

#[tokio::test]
async fn reads_skip_a_purged_head_and_limited_reads_return_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _flusher) = open(dir.path());
    store.append(commands(1..51), IOFlushed::noop()).await.unwrap();
    store.purge(log_id(1, 20)).await.unwrap();
    let mut reader = store.get_log_reader().await;
    let entries = reader.try_get_log_entries(0..51).await.unwrap();
    assert_eq!(entries.first().map(|e| e.log_id.index), Some(21));
    let limited = reader.limited_get_log_entries(21, 51).await.unwrap();
    assert_eq!(limited, commands(21..51), "small entries all fit in one replication message");
    let state = store.get_log_state().await.unwrap();
    assert_eq!((state.last_purged_log_id, state.last_log_id), (Some(log_id(1, 20)), Some(log_id(1, 50))));
}
