//! The txn workload end to end against a real three-broker cluster without faults: ten seconds
//! of transactional writers (committing, aborting, abandoning, fencing), the processor and its
//! source, a `read_committed` reader and the LSO monitor, the drain, and each stopped broker's
//! copy of the first topic, all recorded; the history read back must be complete and clean,
//! the processor caught up and every transaction settled.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, BufWriter};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_jepsen::checker;
use sluice_jepsen::history::{self, Event, Kind, Op, WorkloadKind};
use sluice_jepsen::workload::{SharedRecorder, TxnConfig, Workload, WorkloadConfig, record_node_logs};
use sluice_system_tests::{Cluster, within};

const RUN: Duration = Duration::from_secs(10);
const PARTITIONS: u32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_txn_run_without_faults_records_a_complete_and_clean_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    let file = std::fs::File::create(&path).unwrap();
    let recorder: SharedRecorder = Arc::new(Mutex::new(history::Recorder::new(BufWriter::new(file))));
    let mut cluster = Cluster::start(3).await;
    // Many aborts, abandons and fences, and a short timeout so the abandoned ones end soon.
    let txn = TxnConfig {
        rate: 20,
        abort_percent: 15,
        abandon_percent: 10,
        fence_percent: 10,
        timeout: Duration::from_secs(2),
        ..TxnConfig::default()
    };
    let config = WorkloadConfig {
        kind: WorkloadKind::Txn,
        topic: txn.topics[0].clone(),
        txn,
        partitions: PARTITIONS,
        ..WorkloadConfig::default()
    };
    within(Duration::from_secs(180), "the txn workload", async {
        let workload = Workload::setup(&cluster.bootstrap(), config).await.expect("set up the workload");
        workload.run(Arc::clone(&recorder), tokio::time::Instant::now() + RUN).await;
        workload.drain(Arc::clone(&recorder), Duration::from_secs(60)).await.expect("drain");
    })
    .await;
    cluster.stop_all().await;
    for node in cluster.node_ids() {
        record_node_logs(&recorder, node, cluster.data_dir(node), "txn-a").expect("read the node's partitions");
    }
    let events = history::read(BufReader::new(std::fs::File::open(&path).unwrap())).unwrap();

    assert_complete(&events);
    let report = checker::check(&events);
    eprintln!("{}", report.summary(None));
    assert_eq!(report.workload, WorkloadKind::Txn);
    assert!(report.is_clean(), "the checker found anomalies");
    let t = report.txn.clone().expect("txn figures");
    // Enough for the checks to mean something, on a machine as loaded as it may be (50 in a
    // run beside two failure-injection runs).
    assert!(t.committed >= 10, "only {} transactions committed in {RUN:?}: {t:?}", t.committed);
    assert!(t.aborted > 0 && t.abandoned > 0 && t.fenced > 0, "every outcome happens: {t:?}");
    assert_eq!(t.unknown, 0, "no commit fails without faults: {t:?}");
    assert!(t.aborted_in_log > 0, "aborted values are in the log: {t:?}");
    assert!(t.visible > 0 && t.reader_reads > 0, "{t:?}");
    assert!(t.exactly_once_checked && t.consumed > 50 && t.consumed == t.sources, "{t:?}");
    assert_eq!((t.caught_up, t.settled), (Some(true), Some(true)), "{t:?}");
    assert!(t.lso_samples > 10, "{t:?}");
    let copies = events.iter().filter(|e| matches!(e.op, Op::NodeLog { .. })).count();
    assert_eq!(copies, 3 * PARTITIONS as usize, "node logs recorded");
}

/// Every invocation is followed by exactly one completion of the same process and operation:
/// transactions are matched by label, polls, inits and LSO samples by process; the parameters
/// come first.
fn assert_complete(events: &[Event]) {
    assert!(matches!(events[0].op, Op::TxnSetup { .. }), "{:?}", events[0]);
    let mut txns: HashMap<&str, u32> = HashMap::new();
    let mut open: HashSet<(u32, &str)> = HashSet::new();
    for event in events {
        let kind = match &event.op {
            Op::Txn { label, .. } => {
                if event.kind == Kind::Invoke {
                    assert!(txns.insert(label, event.process).is_none(), "{label} invoked twice");
                } else {
                    assert_eq!(txns.remove(label.as_str()), Some(event.process), "{event:?} completes nothing");
                }
                continue;
            }
            Op::TxnPoll { .. } => "poll",
            Op::TxnInit { .. } => "init",
            Op::TxnLso { .. } => "lso",
            _ => continue,
        };
        if event.kind == Kind::Invoke {
            assert!(open.insert((event.process, kind)), "process {} runs two {kind}s at once", event.process);
        } else {
            assert!(open.remove(&(event.process, kind)), "{event:?} completes nothing");
        }
    }
    assert!(txns.is_empty() && open.is_empty(), "never completed: {txns:?}, {open:?}");
}
