//! The workload end to end against a real three-broker cluster without faults: ten seconds of
//! producers, group members and a reader, the drain, and each stopped broker's copy of the
//! partitions, all recorded; the history read back must be complete, consistent and clean.
//! The delay workload's run is in `delay.rs`, the txn workload's in `txn.rs`, in this one
//! test binary.

mod delay;
mod txn;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{BufReader, BufWriter};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_jepsen::checker;
use sluice_jepsen::history::{self, Event, Kind, Op, Recorder};
use sluice_jepsen::report::Report;
use sluice_jepsen::workload::{SharedRecorder, Workload, WorkloadConfig, record_node_logs};
use sluice_system_tests::{Cluster, within};

const RUN: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_without_faults_records_a_complete_and_clean_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    let file = std::fs::File::create(&path).unwrap();
    let recorder: SharedRecorder = Arc::new(Mutex::new(Recorder::new(BufWriter::new(file))));
    let mut cluster = Cluster::start(3).await;
    let config = WorkloadConfig { sends_per_second: 100, ..WorkloadConfig::default() };
    within(Duration::from_secs(120), "the workload", async {
        let workload = Workload::setup(&cluster.bootstrap(), config).await.expect("set up the workload");
        workload.run(Arc::clone(&recorder), tokio::time::Instant::now() + RUN).await;
        workload.drain(Arc::clone(&recorder), Duration::from_secs(30)).await.expect("drain");
    })
    .await;
    cluster.stop_all().await;
    for node in cluster.node_ids() {
        record_node_logs(&recorder, node, cluster.data_dir(node), "jepsen").expect("read the node's partitions");
    }
    let events = history::read(BufReader::new(std::fs::File::open(&path).unwrap())).unwrap();

    assert_complete(&events);
    let acked = acked_sends(&events);
    // 2 × 100/s asked for; a loaded machine with debug brokers gets about half of it.
    assert!(acked.len() > 200, "only {} sends acknowledged in {RUN:?}", acked.len());
    assert_final_reads_cover(&events, &acked);
    assert_consumers_read(&events);
    assert_node_logs_match(&events);
    let report = checker::check(&events);
    eprintln!("{}", report.summary(None));
    assert!(report.is_clean(), "the checker found anomalies");
    assert_every_level_sent_and_nothing_lost(&report);
}

/// Sends went out at every acknowledgement level, and without faults no leader ever died or
/// was deposed: not one `leader` or `none` message may be missing either.
fn assert_every_level_sent_and_nothing_lost(report: &Report) {
    let acks = report.acks.as_ref().expect("sends at leader and none are reported");
    for level in &acks.levels {
        assert!(level.ok > 0, "no send completed ok at acks {}", level.acks.name());
    }
    assert_eq!((acks.lost_leader_acked, acks.lost_unacknowledged), (0, 0), "{:?}", acks.lost_examples);
}

/// Every invocation is followed by exactly one completion of the same process and operation:
/// sends are matched by value (a producer keeps a few in flight), polls by process (a consumer
/// polls one at a time).
fn assert_complete(events: &[Event]) {
    let mut sends: HashMap<&str, u32> = HashMap::new();
    let mut polls: HashSet<u32> = HashSet::new();
    for event in events {
        match (&event.op, event.kind) {
            (Op::Send { value, .. }, Kind::Invoke) => {
                assert!(sends.insert(value, event.process).is_none(), "{value} invoked twice");
            }
            (Op::Send { value, .. }, _) => {
                assert_eq!(sends.remove(value.as_str()), Some(event.process), "{event:?} completes nothing");
            }
            (Op::Poll { .. }, Kind::Invoke) => {
                assert!(polls.insert(event.process), "process {} polls twice at once", event.process);
            }
            (Op::Poll { .. }, _) => assert!(polls.remove(&event.process), "{event:?} completes nothing"),
            _ => {}
        }
    }
    assert!(sends.is_empty() && polls.is_empty(), "never completed: sends {sends:?}, polls of {polls:?}");
}

/// value → (partition, offset) of every acknowledged send.
fn acked_sends(events: &[Event]) -> HashMap<String, (u32, u64)> {
    let mut acked = HashMap::new();
    for event in events.iter().filter(|e| e.kind == Kind::Ok) {
        // `leader` and `none` sends are acknowledged without an offset.
        if let Op::Send { value, partition: Some(p), offset: Some(o), .. } = &event.op {
            assert!(acked.insert(value.clone(), (*p, *o)).is_none(), "{value} acknowledged twice");
        }
    }
    acked
}

/// The final reads hold every partition once, densely, and every acknowledged value where it
/// was acknowledged.
fn assert_final_reads_cover(events: &[Event], acked: &HashMap<String, (u32, u64)>) {
    let mut final_reads: BTreeMap<u32, BTreeMap<u64, &str>> = BTreeMap::new();
    for event in events {
        if let Op::FinalRead { partition, reads } = &event.op {
            assert!(final_reads.insert(*partition, BTreeMap::new()).is_none(), "partition {partition} read twice");
            let offsets: Vec<u64> = reads.iter().map(|(o, _)| *o).collect();
            assert!(offsets.iter().copied().eq(0..offsets.len() as u64), "partition {partition} is not dense");
            final_reads.get_mut(partition).unwrap().extend(reads.iter().map(|(o, v)| (*o, v.as_str())));
        }
    }
    assert_eq!(final_reads.keys().copied().collect::<Vec<_>>(), (0..6).collect::<Vec<_>>());
    for (value, (partition, offset)) in acked {
        assert_eq!(
            final_reads[partition].get(offset).copied(),
            Some(value.as_str()),
            "{value} at {partition}/{offset}"
        );
    }
    let committed = events.iter().find_map(|e| match &e.op {
        Op::FinalCommitted { group, offsets } => Some((group.clone(), offsets.clone())),
        _ => None,
    });
    let (group, offsets) = committed.expect("the group's committed offsets are recorded");
    assert_eq!(group, "jepsen-group");
    assert!(!offsets.is_empty(), "the members committed nothing");
}

/// The group members and the reader polled records, and each recorded its assignment first.
fn assert_consumers_read(events: &[Event]) {
    let mut read_by: BTreeMap<u32, usize> = BTreeMap::new();
    let mut assigned: BTreeSet<u32> = BTreeSet::new();
    for event in events.iter().filter(|e| e.kind == Kind::Ok) {
        match &event.op {
            Op::Assign { .. } => {
                assigned.insert(event.process);
            }
            Op::Poll { reads, .. } if !reads.is_empty() => {
                assert!(assigned.contains(&event.process), "process {} read before any assign", event.process);
                *read_by.entry(event.process).or_default() += reads.iter().map(|(_, r)| r.len()).sum::<usize>();
            }
            _ => {}
        }
    }
    assert!(read_by.contains_key(&4), "the reader (process 4) read nothing: {read_by:?}");
    assert!(read_by.contains_key(&2) || read_by.contains_key(&3), "no group member read anything: {read_by:?}");
}

/// Every node recorded every partition, and without faults all copies are the final reads.
fn assert_node_logs_match(events: &[Event]) {
    let final_reads: BTreeMap<u32, &Vec<(u64, String)>> = events
        .iter()
        .filter_map(|e| match &e.op {
            Op::FinalRead { partition, reads } => Some((*partition, reads)),
            _ => None,
        })
        .collect();
    let mut seen = BTreeSet::new();
    for event in events {
        if let Op::NodeLog { node, partition, entries } = &event.op {
            assert!(seen.insert((*node, *partition)), "node {node} partition {partition} recorded twice");
            assert_eq!(entries, final_reads[partition], "node {node}'s copy of partition {partition}");
        }
    }
    assert_eq!(seen.len(), 3 * 6, "node logs recorded: {seen:?}");
}
