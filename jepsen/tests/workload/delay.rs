//! The delay workload end to end against a real three-broker cluster without faults: eight
//! seconds of delayed sends, cancels and consumers, the drain, and each stopped broker's copy
//! of the partitions, all recorded; the history read back must be complete and clean, and
//! every message the workload expected must have arrived.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufReader, BufWriter};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_jepsen::checker;
use sluice_jepsen::history::{self, Event, Kind, Op, Recorder, WorkloadKind};
use sluice_jepsen::workload::{DelayConfig, SharedRecorder, Workload, WorkloadConfig, record_node_logs};
use sluice_system_tests::{Cluster, within};

const RUN: Duration = Duration::from_secs(8);
const PARTITIONS: u32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_run_without_faults_records_a_complete_and_clean_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    let file = std::fs::File::create(&path).unwrap();
    let recorder: SharedRecorder = Arc::new(Mutex::new(Recorder::new(BufWriter::new(file))));
    let mut cluster = Cluster::start(3).await;
    let delay = DelayConfig { max_delay_ms: 2_000, cancel_percent: 30, ..DelayConfig::default() };
    let config = WorkloadConfig {
        kind: WorkloadKind::Delay,
        delay,
        partitions: PARTITIONS,
        readers: 2,
        sends_per_second: 50,
        ..WorkloadConfig::default()
    };
    within(Duration::from_secs(120), "the delay workload", async {
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
    let report = checker::check(&events);
    eprintln!("{}", report.summary(None));
    assert_eq!(report.workload, WorkloadKind::Delay);
    assert!(report.is_clean(), "the checker found anomalies");
    let d = report.delay.clone().expect("delay figures");
    // 2 × 50/s asked for; a loaded machine with debug brokers gets less.
    assert!(d.acked > 100, "only {} delayed sends acknowledged in {RUN:?}", d.acked);
    assert!(d.cancelled > 0, "nothing was cancelled: {d:?}");
    assert!(d.received >= d.expected && d.expected > 0, "{d:?}");
    assert!(d.lateness.is_some_and(|l| l.min_ms >= 0), "released early without clock faults: {d:?}");
    let end = events.iter().find_map(|e| match e.op {
        Op::DelayEnd { missing, .. } => Some(missing),
        _ => None,
    });
    assert_eq!(end, Some(0), "the drain stopped with messages missing");
    assert_node_logs_hold_what_was_read(&events);
}

/// Every invocation is followed by exactly one completion of the same process and operation:
/// sends and cancels are matched by value, polls by process; the parameters come first.
fn assert_complete(events: &[Event]) {
    assert!(matches!(events[0].op, Op::DelaySetup { .. }), "{:?}", events[0]);
    let mut sends: HashMap<&str, u32> = HashMap::new();
    let mut cancels: HashMap<&str, u32> = HashMap::new();
    let mut polls: HashSet<u32> = HashSet::new();
    for event in events {
        match (&event.op, event.kind) {
            (Op::DelaySend { value, .. }, Kind::Invoke) => {
                assert!(sends.insert(value, event.process).is_none(), "{value} invoked twice");
            }
            (Op::DelaySend { value, .. }, _) => {
                assert_eq!(sends.remove(value.as_str()), Some(event.process), "{event:?} completes nothing");
            }
            (Op::Cancel { value, .. }, Kind::Invoke) => {
                assert!(cancels.insert(value, event.process).is_none(), "{value} cancelled twice");
            }
            (Op::Cancel { value, .. }, _) => {
                assert_eq!(cancels.remove(value.as_str()), Some(event.process), "{event:?} completes nothing");
            }
            (Op::DelayPoll { .. }, Kind::Invoke) => {
                assert!(polls.insert(event.process), "process {} polls twice at once", event.process);
            }
            (Op::DelayPoll { .. }, _) => assert!(polls.remove(&event.process), "{event:?} completes nothing"),
            _ => {}
        }
    }
    assert!(sends.is_empty() && cancels.is_empty(), "never completed: sends {sends:?}, cancels {cancels:?}");
    assert!(polls.is_empty(), "polls of {polls:?} never completed");
}

/// Every node recorded every partition, and each copy holds what the consumers read there.
fn assert_node_logs_hold_what_was_read(events: &[Event]) {
    let mut read: BTreeMap<(u32, u64), &str> = BTreeMap::new();
    for event in events {
        if let Op::DelayPoll { reads, .. } = &event.op {
            read.extend(reads.iter().map(|r| ((r.partition, r.offset), r.value.as_str())));
        }
    }
    let mut copies = 0;
    for event in events {
        if let Op::NodeLog { node, partition, entries } = &event.op {
            copies += 1;
            let held: BTreeMap<u64, &str> = entries.iter().map(|(o, v)| (*o, v.as_str())).collect();
            for (&(_, offset), value) in read.range((*partition, 0)..=(*partition, u64::MAX)) {
                assert_eq!(held.get(&offset), Some(value), "node {node} partition {partition} offset {offset}");
            }
        }
    }
    assert_eq!(copies, 3 * PARTITIONS, "node logs recorded");
}
