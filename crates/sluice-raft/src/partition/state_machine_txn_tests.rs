//! Transactions applied by the state machine (docs/TRANSACTIONS.md): the LSO, markers, aborted
//! ranges, fencing of late writes, stale markers, and agreement between replicas and snapshots.

use std::sync::Arc;

use bytes::Bytes;
use openraft::EntryPayload;
use openraft::entry::RaftEntry as _;
use sluice_common::record::marker::marker_batch;
use sluice_common::record::{BatchBuilder, ProducerStamp, Record};
use sluice_storage::{Log, LogConfig};

use super::*;
use crate::partition::AbortedRange;
use crate::typ::Command;

fn txn_batch(pid: i64, epoch: i16, seq: i32, values: &[&str]) -> Command {
    let mut b =
        BatchBuilder::new(ProducerStamp { producer_id: pid, epoch, base_sequence: seq }, 128).transactional(true);
    values.iter().for_each(|v| b.push(&Record::new(v.to_string(), 1)));
    stamped(&b.finish())
}

fn plain(pid: i64, epoch: i16, seq: i32) -> Command {
    let mut b = BatchBuilder::new(ProducerStamp { producer_id: pid, epoch, base_sequence: seq }, 64);
    b.push(&Record::new("plain", 1));
    stamped(&b.finish())
}

fn marker(pid: i64, epoch: i16, commit: bool) -> Command {
    stamped(&marker_batch(pid, epoch, commit, 2))
}

fn stamped(batch: &Bytes) -> Command {
    PartitionCommand::produce_at(
        batch,
        &LeaderStamp { now_ms: 1_000, producer_id_expiration_ms: 60_000, max_producers: 100, from_zero: true },
    )
}

/// A fresh replica that applies `commands` as entries 1, 2, ...; its replies, the state machine.
fn replica(dir: &std::path::Path, commands: &[Command]) -> (Vec<Reply>, PartitionStateMachine) {
    let log = Arc::new(Log::open(dir, LogConfig::default()).unwrap());
    let mut sm = PartitionStateMachine::open(Arc::clone(&log)).unwrap();
    let mut replies = Vec::new();
    for (index, command) in (1u64..).zip(commands) {
        let entry = RaftEntry::new(crate::typ::log_id(1, index), EntryPayload::Normal(command.clone()));
        log.append(&[crate::codec::encode(&entry)]).unwrap();
        replies.push(sm.apply_one(entry).unwrap());
    }
    sm.publish();
    (replies, sm)
}

fn appended(base_offset: u64, count: u32) -> Reply {
    Reply::Appended { base_offset, count }
}

fn code(reply: &Reply) -> u16 {
    match reply {
        Reply::Rejected { code, .. } => *code,
        other => panic!("not a refusal: {other:?}"),
    }
}

#[test]
fn an_open_transaction_holds_the_lso_until_its_marker_and_an_abort_is_recorded_as_a_range() {
    let dir = tempfile::tempdir().unwrap();
    let commands = [
        plain(9, 0, 0),                  // 0
        txn_batch(1, 0, 0, &["a", "b"]), // 1-2
        txn_batch(2, 4, 0, &["x"]),      // 3
        txn_batch(1, 0, 2, &["c"]),      // 4
        marker(1, 1, true),              // 5
        marker(2, 5, false),             // 6
    ];
    let (replies, sm) = replica(dir.path(), &commands[..4]);
    assert_eq!(replies, [appended(0, 1), appended(1, 2), appended(3, 1), appended(4, 1)]);
    assert_eq!((sm.stable().borrow().offset, sm.next_offset()), (1, 5), "held at the first open transaction");

    let dir = tempfile::tempdir().unwrap();
    let (replies, sm) = replica(dir.path(), &commands);
    assert_eq!(replies[4..], [appended(5, 1), appended(6, 1)], "markers get offsets");
    let stable = sm.stable().borrow().clone();
    assert_eq!(stable.offset, 7);
    assert_eq!(&*stable.aborted, [AbortedRange { producer_id: 2, first_offset: 3, last_offset: 6 }]);
    let txns = sm.txns();
    assert!(txns.open().is_empty());
}

#[test]
fn after_a_marker_late_writes_of_the_ended_transaction_are_fenced_and_the_next_epoch_starts_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let commands = [
        txn_batch(1, 3, 0, &["a"]),
        marker(1, 4, false),
        txn_batch(1, 3, 1, &["late"]), // a retry stuck in the network: fenced
        txn_batch(1, 4, 0, &["next"]), // the next transaction, sequence 0 again
        plain(1, 4, 1),                // outside the open transaction: refused
        marker(1, 4, true),            // a deposed coordinator's retry of the abort: stale
        marker(1, 5, true),
        marker(1, 5, true), // a retry of that commit: nothing open, nothing written
    ];
    let (replies, sm) = replica(dir.path(), &commands);
    assert_eq!(replies[..2], [appended(0, 1), appended(1, 1)]);
    assert_eq!(code(&replies[2]), reject::PRODUCER_FENCED);
    assert_eq!(replies[3], appended(2, 1));
    assert_eq!(code(&replies[4]), reject::INVALID_TXN_STATE);
    assert_eq!(code(&replies[5]), reject::STALE_MARKER);
    assert_eq!(replies[6..], [appended(3, 1), Reply::Done]);
    assert_eq!((sm.next_offset(), sm.stable().borrow().offset), (4, 4));
    assert_eq!(sm.stable().borrow().aborted.len(), 1, "only the first transaction aborted");
}

#[test]
fn transactional_batches_without_a_producer_or_delayed_and_malformed_markers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut anonymous = BatchBuilder::new(ProducerStamp::NONE, 64).transactional(true);
    anonymous.push(&Record::new("v", 1));
    let mut bogus = BatchBuilder::new(ProducerStamp { producer_id: 1, epoch: 1, base_sequence: -1 }, 64).control(true);
    bogus.push(&Record::new("not a marker", 1));
    let commands = [stamped(&anonymous.finish()), stamped(&bogus.finish()), marker(5, 1, true)];
    let (replies, sm) = replica(dir.path(), &commands);
    assert_eq!(code(&replies[0]), reject::INVALID_BATCH);
    assert_eq!(code(&replies[1]), reject::INVALID_BATCH);
    assert_eq!(replies[2], Reply::Done, "a marker where the producer wrote nothing writes nothing");
    assert_eq!(sm.next_offset(), 0);
}

#[test]
fn replicas_and_a_snapshot_agree_on_open_transactions_and_aborted_ranges() {
    let commands =
        [txn_batch(1, 0, 0, &["a"]), txn_batch(2, 0, 0, &["b"]), marker(2, 1, false), txn_batch(3, 7, 0, &["c", "d"])];
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (replies_a, sm_a) = replica(a.path(), &commands);
    let (replies_b, sm_b) = replica(b.path(), &commands);
    assert_eq!((replies_a, &sm_a.state), (replies_b, &sm_b.state));
    let restored = PartitionState::decode(&sm_a.state.encode()).unwrap();
    assert_eq!(restored.txns, sm_a.state.txns);
    assert_eq!(restored.txns.last_stable_offset(restored.next_offset), 0);
    assert_eq!(restored.txns.open().keys().copied().collect::<Vec<_>>(), [1, 3]);
}
