//! What the txn workload does without a cluster: its settings, the shape of its transactions
//! and how plans are drawn. The workload against a cluster is tested in tests/workload/txn.rs.

use std::time::Duration;

use super::writer::{MAX_VALUES, choose_plan, choose_values};
use super::*;
use crate::schedule::SplitMix64;
use crate::workload::{WorkloadConfig, WorkloadKind};

fn txn_config() -> WorkloadConfig {
    WorkloadConfig { kind: WorkloadKind::Txn, topic: "txn-a".into(), ..WorkloadConfig::default() }
}

#[test]
fn the_default_txn_settings_are_the_documented_ones_and_valid() {
    let config = txn_config();
    let t = &config.txn;
    assert_eq!(
        (t.topics.clone(), t.source.as_str(), t.source_partitions),
        (vec!["txn-a".into(), "txn-b".into()], "txn-src", 3)
    );
    assert_eq!((t.writers, t.rate, t.source_rate, t.timeout), (3, 10, 20, Duration::from_secs(5)));
    assert_eq!((t.abort_percent, t.abandon_percent, t.fence_percent), (10, 3, 3));
    assert_eq!((t.lso_allowance, t.heal_allowance), (Duration::from_secs(2), Duration::from_secs(20)));
    config.validate().unwrap();
    // Three writers, the processor, the feeder, one reader, the monitor.
    assert_eq!(config.processes(), 7);
    assert_eq!(t.settle_limit(), Duration::from_secs(31));
}

#[test]
fn bad_txn_settings_are_refused_naming_them() {
    let bad = |config: WorkloadConfig| config.validate().unwrap_err().to_string();
    let base = txn_config();
    assert!(bad(WorkloadConfig { topic: "jepsen".into(), ..base.clone() }).contains("first topic must be"));
    assert!(bad(WorkloadConfig { readers: 0, ..base.clone() }).contains("at least one writer, reader"));
    let with = |change: fn(&mut TxnConfig)| {
        let mut config = base.clone();
        change(&mut config.txn);
        bad(config)
    };
    assert!(with(|t| t.writers = 0).contains("at least one writer"));
    assert!(with(|t| t.source = "txn-b".into()).contains("must all differ"));
    assert!(with(|t| t.topics = vec!["txn-a".into(), "txn-a".into()]).contains("must all differ"));
    assert!(with(|t| t.topics[1] = "a b".into()).contains("topic a b"));
    assert!(with(|t| t.abort_percent = 95).contains("add up to 100"));
    assert!(with(|t| t.timeout = Duration::from_millis(10)).contains("100 ms to 900 s"));
    assert!(with(|t| t.group = String::new()).contains("group"));
    // The log workload's own checks still apply.
    assert!(bad(WorkloadConfig { partitions: 0, ..base }).contains("partitions"));
}

#[test]
fn transactions_write_one_to_eight_unique_values_over_every_partition_of_both_topics() {
    let topics = vec!["txn-a".to_owned(), "txn-b".to_owned()];
    let mut rng = SplitMix64::new(7);
    let mut counts = std::collections::BTreeSet::new();
    let mut places = std::collections::BTreeSet::new();
    for n in 0..200 {
        let values = choose_values(&mut rng, &format!("w1-{n}"), &topics, 6);
        counts.insert(values.len() as u64);
        for (i, v) in values.iter().enumerate() {
            assert_eq!(v.value, format!("w1-{n}-{i}"));
            places.insert((v.topic.clone(), v.partition));
        }
    }
    assert_eq!(counts, (1..=MAX_VALUES).collect());
    assert_eq!(places.len(), 12);
}

#[test]
fn plans_are_drawn_by_their_shares() {
    let txn = TxnConfig { abort_percent: 20, abandon_percent: 10, fence_percent: 10, ..TxnConfig::default() };
    let mut rng = SplitMix64::new(3);
    let mut drawn = std::collections::BTreeMap::new();
    for _ in 0..10_000 {
        *drawn.entry(format!("{:?}", choose_plan(&mut rng, &txn))).or_insert(0u32) += 1;
    }
    let share = |plan: &str| drawn.get(plan).copied().unwrap_or(0);
    assert!((1_800..2_200).contains(&share("Abort")), "{drawn:?}");
    assert!((800..1_200).contains(&share("Abandon")) && (800..1_200).contains(&share("Fence")), "{drawn:?}");
    assert!((5_700..6_300).contains(&share("Commit")), "{drawn:?}");
    let never = TxnConfig { abort_percent: 0, abandon_percent: 0, fence_percent: 0, ..TxnConfig::default() };
    assert!((0..100).all(|_| choose_plan(&mut rng, &never) == TxnPlan::Commit));
}

#[test]
fn a_transaction_ends_ok_committed_info_unknown_and_fail_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let recorder: SharedRecorder = Arc::new(Mutex::new(crate::history::Recorder::new(file)));
    let history = History { recorder: Arc::clone(&recorder), process: 0 };
    let values = [TxnValue { topic: "txn-a".into(), partition: 1, value: "w0-0-0".into() }];
    let outcomes = [TxnOutcome::Committed, TxnOutcome::Unknown, TxnOutcome::Fenced, TxnOutcome::Abandoned];
    for outcome in outcomes {
        let ended = Ended { outcome, error: Some("why".into()), reusable: true };
        record_end(&history, "w0-0", TxnPlan::Commit, &values, &[(2, 9)], &ended).unwrap();
    }
    recorder.lock().unwrap().flush().unwrap();
    let events = crate::history::read(std::io::BufReader::new(std::fs::File::open(&path).unwrap())).unwrap();
    let kinds: Vec<Kind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [Kind::Ok, Kind::Info, Kind::Fail, Kind::Fail]);
    let expected = txn_op("w0-0", TxnPlan::Commit, &values, &[(2, 9)], Some(TxnOutcome::Fenced));
    assert_eq!((&events[2].op, events[2].error.as_deref()), (&expected, Some("why")));
}
