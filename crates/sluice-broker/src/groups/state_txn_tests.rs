//! Offsets committed in transactions: pending until the transaction ends, committed with it or
//! dropped, fetched as CONCURRENT_TRANSACTIONS meanwhile, and kept by checkpoints.

use sluice_proto::ErrorCode;
use sluice_proto::internal::GroupRecord;
use sluice_proto::v1;

use super::*;

fn offset(topic: &str, partition: u32, offset: u64) -> v1::OffsetToCommit {
    v1::OffsetToCommit { topic: topic.into(), partition, offset, metadata: String::new() }
}

fn fetch(group: &str, partitions: &[(&str, u32)]) -> v1::FetchOffsetsRequest {
    let partitions =
        partitions.iter().map(|(t, p)| v1::TopicPartitions { topic: (*t).into(), partitions: vec![*p] }).collect();
    v1::FetchOffsetsRequest { group: group.into(), partitions, instance_id: None }
}

fn applied(state: &mut Coordinated, records: Vec<GroupRecord>) {
    state.apply_batch(&records);
}

fn committed(state: &Coordinated, group: &str, topic: &str, partition: u32) -> Option<u64> {
    state.fetch_offsets(&fetch(group, &[(topic, partition)])).expect("stable").first().and_then(|o| o.offset)
}

#[test]
fn pending_offsets_become_committed_with_the_transaction_or_are_dropped_with_it() {
    let mut s = Coordinated::new();
    let first = s.txn_offsets("g", (7, 3), &[offset("t", 0, 10), offset("t", 1, 20)], 1).unwrap();
    applied(&mut s, first);
    let more = s.txn_offsets("g", (7, 3), &[offset("t", 1, 25)], 2).unwrap();
    applied(&mut s, more);
    let unstable = s.fetch_offsets(&fetch("g", &[("t", 1)])).unwrap_err();
    assert_eq!(unstable.code, ErrorCode::ConcurrentTransactions);
    assert!(unstable.message.contains("producer 7"), "{}", unstable.message);
    assert_eq!(s.fetch_offsets(&fetch("g", &[])).unwrap_err().code, ErrorCode::ConcurrentTransactions);
    assert!(s.fetch_offsets(&fetch("g", &[("t", 2)])).is_ok(), "other partitions stay readable");

    let end = s.end_txn_offsets("g", 7, true);
    applied(&mut s, end);
    assert_eq!((committed(&s, "g", "t", 0), committed(&s, "g", "t", 1)), (Some(10), Some(25)));
    assert!(s.end_txn_offsets("g", 7, true).is_empty(), "a retried end writes nothing");

    let aborted = s.txn_offsets("g", (8, 0), &[offset("t", 0, 99)], 3).unwrap();
    applied(&mut s, aborted);
    let end = s.end_txn_offsets("g", 8, false);
    applied(&mut s, end);
    assert_eq!(committed(&s, "g", "t", 0), Some(10), "an aborted transaction's offset is dropped");
}

#[test]
fn a_new_epoch_replaces_the_pending_offsets_and_checkpoints_keep_them() {
    let mut s = Coordinated::new();
    let old = s.txn_offsets("g", (7, 3), &[offset("t", 0, 10)], 1).unwrap();
    applied(&mut s, old);
    let new = s.txn_offsets("g", (7, 4), &[offset("t", 1, 5)], 2).unwrap();
    applied(&mut s, new);
    let mut rebuilt = Coordinated::new();
    rebuilt.apply_batch(&s.checkpoint());
    assert_eq!(rebuilt, s, "a checkpoint rebuilds the pending offsets");
    assert!(s.fetch_offsets(&fetch("g", &[("t", 0)])).is_ok(), "the older epoch's offsets were replaced");
    let end = s.end_txn_offsets("g", 7, true);
    applied(&mut s, end);
    assert_eq!((committed(&s, "g", "t", 0), committed(&s, "g", "t", 1)), (None, Some(5)));
    assert_eq!(s.txn_offsets("g", (7, 5), &[], 3).unwrap_err().code, ErrorCode::InvalidRequest);
}
