//! The partition log store and state machine against openraft's own storage conformance suite
//! (under both flush policies), plus what the suite does not check: durability reported only
//! after the group commit's fsync — or, under a relaxed policy, at once with the fsync following
//! within the interval — the vote surviving a reopen, and reads that skip a purged head.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::entry::RaftEntry as _;
use openraft::storage::{IOFlushed, RaftLogStorage, RaftLogStorageExt};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{EntryPayload, RaftLogReader, StorageError};
use sluice_raft::typ::{RaftEntry, Vote, log_id};
use sluice_raft::{Command, PartitionConfig, PartitionLogStore, PartitionStateMachine};
use sluice_storage::{FlushPolicy, Flusher, Log, LogConfig};
use tempfile::TempDir;

/// Builds stores under the given flush policy.
struct Builder(FlushPolicy);

impl StoreBuilder<PartitionConfig, PartitionLogStore, PartitionStateMachine, (TempDir, Arc<Flusher>)> for Builder {
    async fn build(
        &self,
    ) -> Result<((TempDir, Arc<Flusher>), PartitionLogStore, PartitionStateMachine), StorageError<PartitionConfig>>
    {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = Arc::new(Log::open(dir.path(), LogConfig::default()).expect("open log"));
        let flusher = Arc::new(Flusher::start("test", 2));
        let sm = PartitionStateMachine::open(Arc::clone(&log)).expect("open state machine");
        let store = PartitionLogStore::new(log, Arc::clone(&flusher)).with_flush_policy(self.0);
        Ok(((dir, flusher), store, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partition_log_store_and_state_machine_pass_openrafts_conformance_suite() {
    Suite::test_all(Builder(FlushPolicy::EveryAppend)).await.expect("openraft log store suite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_relaxed_flush_policy_the_store_still_passes_openrafts_conformance_suite() {
    let relaxed = FlushPolicy::Interval(Duration::from_millis(50));
    Suite::test_all(Builder(relaxed)).await.expect("openraft log store suite, relaxed");
}

fn open(dir: &std::path::Path) -> (PartitionLogStore, Arc<Flusher>) {
    open_with(dir, FlushPolicy::EveryAppend)
}

fn open_with(dir: &std::path::Path, policy: FlushPolicy) -> (PartitionLogStore, Arc<Flusher>) {
    let log = Arc::new(Log::open(dir, LogConfig::default()).expect("open log"));
    let flusher = Arc::new(Flusher::start("test", 1));
    (PartitionLogStore::new(log, Arc::clone(&flusher)).with_flush_policy(policy), flusher)
}

/// Polls (bounded by `limit`) until `log` has `index` durable; how long that took.
async fn wait_synced(log: &Log, index: u64, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if log.synced_index() >= Some(index) {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
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

#[tokio::test]
async fn given_a_flush_interval_appends_are_reported_saved_before_the_fsync_which_follows_within_it() {
    let interval = Duration::from_millis(300);
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _flusher) = open_with(dir.path(), FlushPolicy::Interval(interval));
    assert_eq!(store.flush_policy(), FlushPolicy::Interval(interval));
    let reported = Instant::now();
    store.blocking_append(commands(1..101)).await.expect("reported saved");
    assert_eq!(store.log().synced_index(), None, "a relaxed append must not wait for its fsync");
    let took = wait_synced(store.log(), 100, Duration::from_secs(3)).await.expect("never fsynced");
    let since_report = reported.elapsed();
    assert!(took + Duration::from_millis(20) >= interval, "fsynced after {took:?}, sooner than the interval");
    assert!(since_report < interval + Duration::from_millis(900), "fsynced {since_report:?} after the write");

    tracing::info!("--- the vote is fsynced at once, with the log before it");
    store.blocking_append(commands(101..111)).await.expect("reported saved");
    store.save_vote(&Vote::new(4, 1)).await.unwrap();
    assert_eq!(store.log().synced_index(), Some(110), "save_vote returned before the log it follows was durable");
}

#[tokio::test]
async fn given_a_flush_interval_closing_the_store_fsyncs_its_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _flusher) = open_with(dir.path(), FlushPolicy::Interval(Duration::from_secs(3600)));
    store.blocking_append(commands(1..21)).await.expect("reported saved");
    let log = Arc::clone(store.log());
    assert_eq!(log.synced_index(), None);
    drop(store);
    assert_eq!(log.synced_index(), Some(20), "the closed store left its tail unsynced");
}
