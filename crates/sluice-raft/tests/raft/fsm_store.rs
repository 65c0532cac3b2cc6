//! The RocksDB log store with the generic state-machine adapter against openraft's conformance
//! suite, and an `Fsm` replicated by a single-node group that restarts from its snapshot.

use std::time::Duration;

use bytes::Bytes;
use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use sluice_raft::typ::Raft;
use sluice_raft::{Command, Fsm, FsmStateMachine, PartitionConfig, Reply, RocksLogStore};
use tempfile::TempDir;

use crate::partition::single_node;

/// A counter that sums the numbers it is sent: enough to see every command applied exactly once,
/// in order, across snapshots and restarts.
#[derive(Default)]
struct Sum {
    total: u64,
    commands: u64,
}

impl Fsm for Sum {
    fn apply(&mut self, _index: u64, command: &[u8]) -> Bytes {
        let Ok(raw) = <[u8; 8]>::try_from(command) else { return Bytes::from_static(b"bad command") };
        self.total += u64::from_le_bytes(raw);
        self.commands += 1;
        Bytes::copy_from_slice(&self.total.to_le_bytes())
    }

    fn snapshot(&self) -> Bytes {
        let mut b = self.total.to_le_bytes().to_vec();
        b.extend_from_slice(&self.commands.to_le_bytes());
        Bytes::from(b)
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let field = |at: usize| snapshot.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8")));
        match (field(0), field(8)) {
            (Some(total), Some(commands)) if snapshot.len() == 16 => {
                (self.total, self.commands) = (total, commands);
                Ok(())
            }
            _ => Err(format!("a Sum snapshot is 16 bytes, got {}", snapshot.len())),
        }
    }
}

struct Builder;

impl StoreBuilder<PartitionConfig, RocksLogStore, FsmStateMachine<Sum>, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, RocksLogStore, FsmStateMachine<Sum>), StorageError<PartitionConfig>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = RocksLogStore::open(&dir.path().join("raft")).expect("open rocksdb");
        let sm = FsmStateMachine::open(dir.path(), Sum::default()).expect("open state machine");
        Ok((dir, store, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rocksdb_log_store_and_fsm_adapter_pass_openrafts_conformance_suite() {
    Suite::test_all(Builder).await.expect("openraft log store suite");
}

/// Opens the store, waiting (up to 10 s) for a previous instance's RocksDB lock to go: openraft's
/// `shutdown` returns before every task holding the store has dropped it.
async fn open_store(dir: &std::path::Path) -> RocksLogStore {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match RocksLogStore::open(&dir.join("raft")) {
            Ok(store) => return store,
            Err(e) if e.to_string().contains("lock") && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("open rocksdb: {e}"),
        }
    }
}

async fn start(dir: &std::path::Path) -> (Raft<FsmStateMachine<Sum>>, sluice_raft::FsmHandle<Sum>) {
    let store = open_store(dir).await;
    let sm = FsmStateMachine::open(dir, Sum::default()).expect("open state machine");
    let handle = sm.handle();
    (single_node(store, sm).await, handle)
}

async fn add(raft: &Raft<FsmStateMachine<Sum>>, n: u64) -> u64 {
    match raft.client_write(Command::new(&n.to_le_bytes())).await.expect("client_write").data {
        Reply::Fsm(total) => u64::from_le_bytes(total[..].try_into().expect("8-byte total")),
        other => panic!("expected an Fsm reply, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_fsm_applies_each_command_once_and_restarts_from_snapshot_plus_log() {
    let dir = tempfile::tempdir().unwrap();
    let (raft, handle) = start(dir.path()).await;
    for n in 1..=50 {
        assert_eq!(add(&raft, n).await, n * (n + 1) / 2);
    }
    raft.trigger().snapshot().await.unwrap();
    raft.wait(Some(Duration::from_secs(10))).metrics(|m| m.snapshot.is_some(), "snapshot taken").await.unwrap();
    for n in 51..=60 {
        add(&raft, n).await;
    }
    assert_eq!(handle.read(|s| (s.total, s.commands)), (1830, 60));
    raft.shutdown().await.unwrap();
    drop(raft);

    let (raft, handle) = start(dir.path()).await;
    assert_eq!(add(&raft, 1).await, 1831, "snapshot plus re-applied log give the state before the restart");
    assert_eq!(handle.read(|s| s.commands), 61);
    raft.shutdown().await.unwrap();
}
