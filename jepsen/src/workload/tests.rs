//! What can be tested without a cluster: configuration, value names, how SDK errors become
//! `fail` or `info`, how reads are grouped, and reading a replica from a data directory.
//! The whole workload against a cluster is tested in tests/workload/main.rs.

use std::io::BufReader;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_client::{Error, ErrorCode};
use sluice_common::record::{BatchBuilder, ProducerStamp, Record};
use sluice_raft::codec::KIND_BLANK;
use sluice_raft::partition::PartitionCommand;
use sluice_storage::{Entry, Log, LogConfig};

use super::member::starts;
use super::node_log::record_node_logs;
use super::outcome::{delivery_failure, enqueue_failure, value_name};
use super::*;
use crate::history::{self, Kind, Op, Recorder};

#[test]
fn the_default_configuration_is_the_documented_one_and_valid() {
    let config = WorkloadConfig::default();
    assert_eq!((config.topic.as_str(), config.partitions, config.producers), ("jepsen", 6, 2));
    assert_eq!((config.group.as_str(), config.members, config.readers), ("jepsen-group", 2, 1));
    assert_eq!((config.sends_per_second, config.leader_percent, config.none_percent), (200, 15, 15));
    assert_eq!((config.filtered_members, config.filtered_group().as_str()), (1, "jepsen-group-filtered"));
    config.validate().unwrap();
    assert_eq!(config.processes(), 6);
}

#[test]
fn a_bad_configuration_is_refused_naming_the_field() {
    let bad = |config: WorkloadConfig| config.validate().unwrap_err().to_string();
    let base = WorkloadConfig::default();
    assert!(bad(WorkloadConfig { topic: "a b".into(), ..base.clone() }).contains("topic"));
    assert!(bad(WorkloadConfig { group: String::new(), ..base.clone() }).contains("group"));
    assert!(bad(WorkloadConfig { partitions: 0, ..base.clone() }).contains("partitions"));
    assert!(bad(WorkloadConfig { sends_per_second: 0, ..base.clone() }).contains("sends_per_second"));
    let fast = WorkloadConfig { sends_per_second: MAX_SENDS_PER_SECOND + 1, ..base.clone() };
    assert!(bad(fast).contains("sends_per_second must be 1 to 10000"));
    let levels = WorkloadConfig { leader_percent: 60, none_percent: 41, ..base.clone() };
    assert!(bad(levels).contains("leader_percent + none_percent must be at most 100, not 60 + 41"));
    let idle = WorkloadConfig { producers: 0, members: 0, filtered_members: 0, readers: 0, ..base };
    assert!(bad(idle).contains("producers + members + filtered members + readers"));
}

#[test]
fn values_name_their_producer_and_number() {
    assert_eq!(value_name(0, 0), "0-0");
    assert_eq!(value_name(3, 41), "3-41");
    assert_ne!(value_name(1, 11), value_name(11, 1));
}

fn broker(code: ErrorCode) -> Error {
    Error::broker(code, "refused")
}

fn transport() -> Error {
    Error::Transport { address: "127.0.0.1:1".into(), code: tonic::Code::Unavailable, message: "reset".into() }
}

#[test]
fn only_refusals_that_wrote_nothing_are_failures() {
    for code in [
        ErrorCode::MessageTooLarge,
        ErrorCode::InvalidRequest,
        ErrorCode::OutOfOrderSequence,
        ErrorCode::ProducerFenced,
        ErrorCode::UnknownTopic,
        ErrorCode::UnknownPartition,
    ] {
        assert_eq!(delivery_failure(&broker(code)), Kind::Fail, "{code:?}");
    }
    assert_eq!(delivery_failure(&Error::Closed), Kind::Fail);
    let too_large = Error::RecordTooLarge { size: 2, limit: 1, limit_name: "the limit" };
    assert_eq!(delivery_failure(&too_large), Kind::Fail);
}

#[test]
fn retriable_transport_and_timeout_errors_leave_a_send_unknown() {
    for code in [
        ErrorCode::NotLeader,
        ErrorCode::NotEnoughReplicas,
        ErrorCode::Timeout,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ] {
        assert_eq!(delivery_failure(&broker(code)), Kind::Info, "{code:?}");
    }
    assert_eq!(delivery_failure(&transport()), Kind::Info);
    let timeout = Error::Timeout {
        operation: "produce to jepsen/0".into(),
        elapsed: Duration::from_secs(10),
        last: Box::new(broker(ErrorCode::InvalidRequest)),
    };
    assert_eq!(delivery_failure(&timeout), Kind::Info, "a timeout is unknown whatever came last");
    // A full disk's refusal wrote nothing, but the SDK resent the batch until it gave up, and
    // an earlier sending may have been written: unknown, as a bare refusal or as the last
    // answer of a timeout.
    assert_eq!(delivery_failure(&broker(ErrorCode::StorageFull)), Kind::Info);
    let full = Error::Timeout {
        operation: "produce to jepsen/0".into(),
        elapsed: Duration::from_secs(10),
        last: Box::new(broker(ErrorCode::StorageFull)),
    };
    assert_eq!(delivery_failure(&full), Kind::Info);
    let protocol = Error::Protocol { address: "b".into(), message: "odd".into() };
    assert_eq!(delivery_failure(&protocol), Kind::Info);
    assert_eq!(delivery_failure(&Error::NoBroker { addresses: "a".into(), last_error: "x".into() }), Kind::Info);
}

#[test]
fn a_failed_enqueue_buffered_nothing() {
    assert_eq!(enqueue_failure(&broker(ErrorCode::UnknownTopic)), Kind::Fail);
    assert_eq!(enqueue_failure(&transport()), Kind::Fail, "metadata it could not get: nothing was buffered");
}

#[test]
fn reads_are_grouped_per_partition_in_the_order_returned() {
    let records: [(u32, u64, &[u8]); 5] =
        [(3, 7, b"0-1"), (1, 2, b"1-0"), (3, 8, b"0-2"), (1, 3, b"1-1"), (0, 0, b"\xff")];
    let reads = group_reads(records);
    let text = |v: &[(u64, &str)]| v.iter().map(|&(o, s)| (o, s.to_owned())).collect::<Vec<_>>();
    assert_eq!(
        reads,
        vec![(0, text(&[(0, "\u{fffd}")])), (1, text(&[(2, "1-0"), (3, "1-1")])), (3, text(&[(7, "0-1"), (8, "0-2")])),]
    );
    assert!(group_reads(std::iter::empty()).is_empty());
}

#[test]
fn an_assignment_starts_where_the_poll_began_reading() {
    let reads = vec![(1, vec![(10, "a".to_owned()), (11, "b".to_owned())])];
    let position = |p: u32| match p {
        0 => Some(4),
        1 => Some(12),
        _ => None,
    };
    assert_eq!(starts(&[0, 1, 2], &reads, position), vec![(0, 4), (1, 10)], "2 has no position yet");
    assert!(starts(&[], &reads, position).is_empty());
}

#[test]
fn partition_directories_are_recognised_by_topic_and_number() {
    use super::node_log::partition_of;
    assert_eq!(partition_of("jepsen-3.g17", "jepsen"), Some(3));
    assert_eq!(partition_of("jepsen-2-0.g5", "jepsen"), None, "partition 0 of topic jepsen-2");
    assert_eq!(partition_of("jepsen-2-0.g5", "jepsen-2"), Some(0));
    assert_eq!(partition_of("jepsen-x.g1", "jepsen"), None);
    assert_eq!(partition_of("jepsen-1.g", "jepsen"), None);
    assert_eq!(partition_of("jepsenx-1.g1", "jepsen"), None);
}

fn batch(values: &[&str], stamp: ProducerStamp) -> Vec<u8> {
    let mut builder = BatchBuilder::new(stamp, 64);
    values.iter().for_each(|v| builder.push(&Record::new(v.to_string(), 1)));
    builder.finish().to_vec()
}

fn produce(index: u64, batch: &[u8]) -> Entry {
    Entry::new(index, 1, PartitionCommand::produce(batch).stored().clone())
}

/// A replica as a broker leaves it: data batches around a blank entry and a duplicate the
/// state machine did not index, and an appended batch it has not applied yet.
fn write_replica(dir: &std::path::Path) {
    let log = Log::open(dir, LogConfig::default()).unwrap();
    let first = batch(&["0-0", "0-1"], ProducerStamp::NONE);
    let entries = [
        Entry::new(1, 1, vec![KIND_BLANK]),
        produce(2, &first),
        produce(3, &first),
        produce(4, &batch(&["1-0"], ProducerStamp::NONE)),
        produce(5, &batch(&["unapplied"], ProducerStamp::NONE)),
    ];
    log.append(&entries).unwrap();
    log.index_batch(2, 0, 2, 1).unwrap();
    log.index_batch(4, 2, 1, 1).unwrap();
    log.sync().unwrap();
}

fn recorder_at(path: &std::path::Path) -> SharedRecorder {
    let file = std::fs::File::create(path).unwrap();
    Arc::new(Mutex::new(Recorder::new(std::io::BufWriter::new(file))))
}

#[test]
fn a_replica_is_recorded_as_the_data_its_state_machine_applied() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node1");
    std::fs::create_dir_all(data.join("partitions/jepsen-1.g12")).unwrap();
    std::fs::create_dir_all(data.join("partitions/jepsen-0.g11")).unwrap();
    std::fs::create_dir_all(data.join("partitions/other-0.g3")).unwrap();
    write_replica(&data.join("partitions/jepsen-1.g12"));
    let path = dir.path().join("history.jsonl");
    let recorder = recorder_at(&path);
    record_node_logs(&recorder, 1, &data, "jepsen").unwrap();
    let events = history::read(BufReader::new(std::fs::File::open(&path).unwrap())).unwrap();
    let logs: Vec<(u32, Kind, Op)> = events.into_iter().map(|e| (e.process, e.kind, e.op)).collect();
    let expected = |partition: u32, entries: &[(u64, &str)]| {
        let entries = entries.iter().map(|&(o, v)| (o, v.to_owned())).collect();
        (RUNNER_PROCESS, Kind::Ok, Op::NodeLog { node: 1, partition, entries })
    };
    assert_eq!(logs, vec![expected(0, &[]), expected(1, &[(0, "0-0"), (1, "0-1"), (2, "1-0")])]);
}

#[test]
fn a_data_directory_without_partitions_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = recorder_at(&dir.path().join("history.jsonl"));
    let error = record_node_logs(&recorder, 2, &dir.path().join("missing"), "jepsen").unwrap_err().to_string();
    assert!(error.starts_with("node 2's copy of topic jepsen"), "{error}");
    assert!(error.contains("missing/partitions"), "{error}");
}

#[test]
fn a_partition_with_two_directories_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("partitions/jepsen-0.g1")).unwrap();
    std::fs::create_dir_all(dir.path().join("partitions/jepsen-0.g9")).unwrap();
    let recorder = recorder_at(&dir.path().join("history.jsonl"));
    let error = record_node_logs(&recorder, 3, dir.path(), "jepsen").unwrap_err().to_string();
    assert!(error.contains("partition 0 has two directories"), "{error}");
}
