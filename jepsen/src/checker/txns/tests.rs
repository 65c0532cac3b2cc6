//! The txn checks on hand-made histories: a clean run with every outcome, then each anomaly
//! made on purpose.

use super::source_of;
use crate::checker::check;
use crate::checker::testkit::{History, only};
use crate::history::{Kind, Op, TxnOutcome, TxnPlan, WorkloadKind};
use crate::report::{Anomaly, AnomalyKind};

use TxnOutcome::{Abandoned, Aborted, Committed, Fenced, Unknown};
use TxnPlan::{Abandon, Abort, Commit, Fence};

/// The reader's and the LSO monitor's processes.
const READER: u32 = 5;
const MONITOR: u32 = 6;
const PROCESSOR: u32 = 2;

/// Two writers and the processor over topics `a` and `b` (2 partitions each) fed by `src` (1
/// partition): transactions committed, aborted, abandoned, fenced, two of unknown outcome (one
/// resolved each way), the processor committing, aborting and redoing an input; a reader
/// following along; LSO samples; the final drains and the group's offsets. Writes
/// and markers alternate, so the committed drains skip the aborted values and the markers.
fn clean_history() -> History {
    let mut h = History::new();
    h.txn_setup(&["a", "b"], 2, "src", 1, 5_000);
    h.txn_init(0, "w0").txn_init(1, "w1").txn_init(PROCESSOR, "x");
    h.txn_lso(MONITOR, &[("a", 0, 0, 0), ("b", 1, 0, 0)]);
    h.txn(0, "w0-0", Commit, Committed, &[("a", 0, "w0-0-0"), ("b", 1, "w0-0-1")]);
    h.txn(0, "w0-1", Abort, Aborted, &[("a", 0, "w0-1-0")]);
    h.txn(0, "w0-2", Abandon, Abandoned, &[("b", 0, "w0-2-0")]);
    h.txn(1, "w1-0", Fence, Fenced, &[("a", 1, "w1-0-0"), ("b", 1, "w1-0-1")]);
    h.txn_init(1, "w1");
    h.txn(1, "w1-1", Commit, Unknown, &[("a", 1, "w1-1-0"), ("b", 0, "w1-1-1")]);
    h.txn(1, "w1-2", Commit, Unknown, &[("a", 0, "w1-2-0")]);
    let x0 = [("a", 1, "out:s-0@x-0-0"), ("b", 0, "out:s-1@x-0-1")];
    h.txn_invoke(PROCESSOR, "x-0", Commit, &x0, &[(0, 2)]).txn_done(
        PROCESSOR,
        "x-0",
        Commit,
        &x0,
        &[(0, 2)],
        Committed,
    );
    let x1 = [("b", 0, "out:s-2@x-1-0")];
    h.txn_invoke(PROCESSOR, "x-1", Abort, &x1, &[(0, 3)]).txn_done(PROCESSOR, "x-1", Abort, &x1, &[(0, 3)], Aborted);
    let x2 = [("a", 0, "out:s-2@x-2-0")];
    h.txn_invoke(PROCESSOR, "x-2", Commit, &x2, &[(0, 3)]).txn_done(
        PROCESSOR,
        "x-2",
        Commit,
        &x2,
        &[(0, 3)],
        Committed,
    );
    h.txn_poll(READER, &[("a", 0, 0, "w0-0-0"), ("b", 1, 0, "w0-0-1")]);
    h.txn_poll(READER, &[("a", 1, 2, "w1-1-0"), ("b", 0, 2, "w1-1-1")]);
    h.txn_poll(READER, &[("a", 0, 6, "out:s-2@x-2-0"), ("a", 1, 4, "out:s-0@x-0-0"), ("b", 0, 4, "out:s-1@x-0-1")]);
    // a/0 was held at 0 (w0-0 open) and is stable 500 ms later.
    h.at_ms(100).txn_lso(MONITOR, &[("a", 0, 0, 1), ("b", 1, 2, 2)]);
    h.at_ms(600).txn_lso(MONITOR, &[("a", 0, 2, 2), ("b", 1, 4, 4)]);
    h.at_ms(20_000).txn_lso(MONITOR, &[("a", 0, 7, 7), ("b", 1, 4, 4)]);
    h.txn_end(true, true);
    h.txn_drain("a", 0, true, &[(0, "w0-0-0"), (6, "out:s-2@x-2-0")]);
    h.txn_drain("a", 1, true, &[(2, "w1-1-0"), (4, "out:s-0@x-0-0")]);
    h.txn_drain("b", 0, true, &[(2, "w1-1-1"), (4, "out:s-1@x-0-1")]);
    h.txn_drain("b", 1, true, &[(0, "w0-0-1")]);
    h.txn_drain("src", 0, true, &[(0, "s-0"), (1, "s-1"), (2, "s-2"), (3, "s-3")]);
    h.txn_drain("a", 0, false, &[(0, "w0-0-0"), (2, "w0-1-0"), (4, "w1-2-0"), (6, "out:s-2@x-2-0")]);
    h.txn_drain("a", 1, false, &[(0, "w1-0-0"), (2, "w1-1-0"), (4, "out:s-0@x-0-0")]);
    h.txn_drain("b", 0, false, &[(0, "w0-2-0"), (2, "w1-1-1"), (4, "out:s-1@x-0-1"), (6, "out:s-2@x-1-0")]);
    h.txn_drain("b", 1, false, &[(0, "w0-0-1"), (2, "w1-0-1")]);
    h.txn_offsets(&[(0, 3)]);
    // Node copies of the first topic, markers as empty values: they agree.
    h.node_log(1, 0, &[(0, "w0-0-0"), (1, ""), (2, "w0-1-0"), (3, "")]);
    h.node_log(2, 0, &[(0, "w0-0-0"), (1, ""), (2, "w0-1-0"), (3, "")]);
    h
}

#[test]
fn a_txn_run_with_every_outcome_is_clean() {
    let report = check(&clean_history().events);
    assert_eq!(report.workload, WorkloadKind::Txn);
    only(&report, AnomalyKind::Torn, 0);
    assert!(report.anomalies.contains_key(&AnomalyKind::StuckLso));
    assert!(!report.anomalies.contains_key(&AnomalyKind::LostWrite));
    let t = report.txn.clone().unwrap();
    assert_eq!(
        (t.transactions, t.committed, t.aborted, t.abandoned, t.fenced, t.failed, t.unknown),
        (9, 3, 2, 1, 1, 0, 2)
    );
    assert_eq!((t.unknown_committed, t.unknown_aborted, t.instances, t.processor_transactions), (1, 1, 4, 3));
    assert_eq!((t.values, t.visible, t.reader_reads), (13, 7, 7));
    assert_eq!((t.aborted_in_log, t.must_abort_values), (5, 5));
    assert_eq!((t.sources, t.consumed, t.exactly_once_checked), (4, 3, true));
    assert_eq!((t.caught_up, t.settled, t.lso_samples), (Some(true), Some(true), 4));
    // a/0: lagging from the sample asked at 100 ms to the one answered at 601 ms.
    assert_eq!(t.longest_lso_lag_ms, 501);
    let summary = report.summary(Some(1));
    assert!(summary.starts_with("CLEAN  (seed 1"), "{summary}");
    assert!(
        summary.contains("transactions: 9 invoked, 3 committed, 2 aborted, 1 abandoned, 1 fenced, 0 failed before commit, 2 unknown (1 resolved committed, 1 aborted)"),
        "{summary}"
    );
    assert!(summary.contains("aborted values in the log (read_uncommitted): 5 of 5"), "{summary}");
    assert!(summary.contains("processor: 3 transactions, 4 source values, 3 consumed"), "{summary}");
    assert!(summary.contains("stuck-lso") && summary.contains("not-exactly-once"), "{summary}");
}

#[test]
fn outputs_name_their_source() {
    assert_eq!(source_of("out:s-12@x-3-0"), Some("s-12"));
    assert_eq!(source_of("out:a@b@x-1-2"), Some("a@b"));
    assert_eq!(source_of("w0-1-2"), None);
    assert_eq!(source_of("out:nolabel"), None);
}

#[test]
fn a_value_of_an_aborted_abandoned_or_fenced_transaction_read_committed_is_an_aborted_read() {
    let mut h = clean_history();
    // The aborted one twice (one finding), the abandoned one by the reader, the fenced one in
    // a second final drain of b/1.
    h.txn_poll(READER, &[("a", 0, 2, "w0-1-0")]);
    let first = h.last();
    h.txn_poll(READER, &[("a", 0, 2, "w0-1-0"), ("b", 0, 0, "w0-2-0")]);
    h.txn_drain("b", 1, true, &[(0, "w0-0-1"), (2, "w1-0-1")]);
    let found = only(&check(&h.events), AnomalyKind::AbortedRead, 3);
    assert!(
        matches!(&found[0], Anomaly::TxnAbortedRead { label, outcome: Aborted, value, partition: 0, offset: 2, read_event, .. }
            if label == "w0-1" && value == "w0-1-0" && *read_event == first),
        "{found:?}"
    );
    assert!(matches!(&found[1], Anomaly::TxnAbortedRead { outcome: Abandoned, .. }), "{found:?}");
    assert!(matches!(&found[2], Anomaly::TxnAbortedRead { outcome: Fenced, topic, .. } if topic == "b"), "{found:?}");
    assert!(found[0].describe().contains("of transaction w0-1 (aborted"), "{}", found[0].describe());
}

#[test]
fn a_committed_transaction_missing_a_value_lost_its_commit() {
    let mut h = clean_history();
    h.txn(0, "w0-3", Commit, Committed, &[("a", 1, "w0-3-0"), ("b", 1, "w0-3-1")]);
    let commit = h.last();
    h.txn_drain("a", 1, true, &[(2, "w1-1-0"), (4, "out:s-0@x-0-0"), (6, "w0-3-0")]);
    let found = only(&check(&h.events), AnomalyKind::LostCommit, 1);
    let Anomaly::LostCommit { label, commit_event, fenced_first, missing, visible } = &found[0] else {
        panic!("{found:?}")
    };
    assert_eq!((label.as_str(), *commit_event, *fenced_first, *visible), ("w0-3", commit, false, 1));
    assert_eq!((missing.len(), missing[0].value.as_str(), missing[0].topic.as_str()), (1, "w0-3-1", "b"));
}

#[test]
fn a_fenced_instance_whose_commit_answered_ok_is_a_lost_commit_if_invisible_and_an_aborted_read_if_visible() {
    let mut h = clean_history();
    h.txn(0, "w0-3", Fence, Committed, &[("b", 1, "w0-3-0")]);
    let found = only(&check(&h.events), AnomalyKind::LostCommit, 1);
    assert!(matches!(&found[0], Anomaly::LostCommit { fenced_first: true, .. }), "{found:?}");
    assert!(found[0].describe().contains("after a new instance had fenced it"), "{}", found[0].describe());
    h.txn_drain("b", 1, true, &[(0, "w0-0-1"), (4, "w0-3-0")]);
    only(&check(&h.events), AnomalyKind::AbortedRead, 1);
}

#[test]
fn an_unknown_transaction_seen_in_part_at_the_end_is_torn() {
    let mut h = clean_history();
    // Two values, one in the drain; and one whose only value a reader saw but the drain lacks.
    h.txn(1, "w1-3", Commit, Unknown, &[("a", 1, "w1-3-0"), ("b", 1, "w1-3-1")]);
    h.txn(1, "w1-4", Commit, Unknown, &[("b", 1, "w1-4-0")]);
    h.txn_poll(READER, &[("b", 1, 6, "w1-4-0")]);
    h.txn_drain("a", 1, true, &[(2, "w1-1-0"), (4, "out:s-0@x-0-0"), (6, "w1-3-0")]);
    let report = check(&h.events);
    let found = only(&report, AnomalyKind::Torn, 2);
    let Anomaly::TornFinal { label, visible, missing, .. } = &found[0] else { panic!("{found:?}") };
    assert_eq!(
        (label.as_str(), visible.clone(), missing.clone()),
        ("w1-3", vec!["w1-3-0".into()], vec!["w1-3-1".into()])
    );
    assert!(matches!(&found[1], Anomaly::TornFinal { label, .. } if label == "w1-4"), "{found:?}");
    let t = report.txn.unwrap();
    assert_eq!((t.unknown, t.unknown_committed, t.unknown_aborted), (4, 1, 1));
}

#[test]
fn a_reader_that_returned_one_value_and_read_past_another_saw_a_torn_transaction() {
    let mut h = History::new();
    h.txn_setup(&["a", "b"], 1, "src", 1, 5_000);
    h.txn(0, "t", Commit, Committed, &[("a", 0, "t-0"), ("b", 0, "t-1")]);
    h.txn(0, "u", Commit, Committed, &[("b", 0, "u-0")]);
    let seen = h.last() + 2;
    // Reader 5 returns t-0, then u-0 past t-1 in b/0; reader 7 returns t-0 and t-1: fine.
    h.txn_poll(READER, &[("a", 0, 0, "t-0")]).txn_poll(READER, &[("b", 0, 2, "u-0")]);
    let passed = h.last();
    h.txn_poll(7, &[("a", 0, 0, "t-0"), ("b", 0, 0, "t-1"), ("b", 0, 2, "u-0")]);
    h.txn_drain("a", 0, true, &[(0, "t-0")]).txn_drain("b", 0, true, &[(0, "t-1"), (2, "u-0")]);
    let found = only(&check(&h.events), AnomalyKind::Torn, 1);
    assert_eq!(
        found[0],
        Anomaly::TornRead {
            label: "t".into(),
            process: READER,
            seen: "t-0".into(),
            seen_event: seen,
            missed: "t-1".into(),
            topic: "b".into(),
            partition: 0,
            offset: 0,
            passed_offset: 2,
            passed_event: passed,
        }
    );
    // A reader that has not read that far yet saw nothing torn.
    let mut h = History::new();
    h.txn_setup(&["a", "b"], 1, "src", 1, 5_000);
    h.txn(0, "t", Commit, Committed, &[("a", 0, "t-0"), ("b", 0, "t-1")]);
    h.txn_poll(READER, &[("a", 0, 0, "t-0")]);
    h.txn_drain("b", 0, false, &[(0, "t-1")]);
    assert!(check(&h.events).is_clean());
}

#[test]
fn a_value_at_two_places_is_a_duplicate_found_once() {
    let mut h = clean_history();
    // In topic b: the txn checks' finding; in topic a: the write checks'.
    h.txn_poll(READER, &[("b", 0, 8, "w1-1-1")]);
    let found = only(&check(&h.events), AnomalyKind::Duplicate, 1);
    let Anomaly::TxnDuplicate { value, places } = &found[0] else { panic!("{found:?}") };
    let at: Vec<(&str, u32, u64)> = places.iter().map(|p| (p.topic.as_str(), p.partition, p.offset)).collect();
    assert_eq!((value.as_str(), at), ("w1-1-1", vec![("b", 0, 2), ("b", 0, 8)]));
    let mut h = clean_history();
    h.txn_poll(READER, &[("a", 0, 8, "w0-0-0")]);
    let found = only(&check(&h.events), AnomalyKind::Duplicate, 1);
    assert!(matches!(&found[0], Anomaly::Duplicate { value, .. } if value == "w0-0-0"), "{found:?}");
}

#[test]
fn a_value_nobody_wrote_or_read_elsewhere_is_garbage_but_a_probe_is_not() {
    let mut h = clean_history();
    h.send_ok(u32::MAX - 1, "probe-0", 1, 9);
    h.txn_poll(READER, &[("a", 1, 9, "probe-0"), ("b", 1, 9, "zzz"), ("b", 1, 10, "zzz")]);
    h.txn_drain(
        "b",
        0,
        false,
        &[(0, "w0-2-0"), (2, "w1-1-1"), (4, "out:s-1@x-0-1"), (6, "out:s-2@x-1-0"), (8, "w0-0-0")],
    );
    let report = check(&h.events);
    // "zzz" read at two places is also a duplicate; w0-0-0 at b/0@8 too.
    assert_eq!(report.count(AnomalyKind::Duplicate), 2, "{}", report.to_json());
    let found = report.anomalies[&AnomalyKind::GarbageRead].examples.clone();
    assert_eq!(report.count(AnomalyKind::GarbageRead), 2, "{found:?}");
    assert!(matches!(&found[0], Anomaly::TxnGarbage { value, written_to: None, offset: 9, .. } if value == "zzz"));
    assert!(
        matches!(&found[1], Anomaly::TxnGarbage { value, written_to: Some((t, 0)), .. } if value == "w0-0-0" && t == "a"),
        "{found:?}"
    );
}

#[test]
fn outputs_must_match_the_groups_committed_offsets_exactly_once() {
    let mut h = clean_history();
    // s-0 output twice, s-1 never, s-3 (not consumed) once, and one of a source never drained.
    h.txn(PROCESSOR, "x-3", Commit, Committed, &[("b", 1, "out:s-0@x-3-0"), ("b", 1, "out:s-3@x-3-1")]);
    h.txn(PROCESSOR, "x-4", Commit, Committed, &[("b", 1, "out:s-9@x-4-0")]);
    h.txn_drain("b", 0, true, &[(2, "w1-1-1")]);
    h.txn_drain("b", 1, true, &[(0, "w0-0-1"), (4, "out:s-0@x-3-0"), (5, "out:s-3@x-3-1"), (7, "out:s-9@x-4-0")]);
    let report = check(&h.events);
    // The output of s-1 left b/0: a committed transaction (x-0) lost it too.
    assert_eq!(report.count(AnomalyKind::LostCommit), 1);
    let found = report.anomalies[&AnomalyKind::NotExactlyOnce].examples.clone();
    assert_eq!(report.count(AnomalyKind::NotExactlyOnce), 4, "{found:?}");
    let sources: Vec<&str> = found
        .iter()
        .map(|a| match a {
            Anomaly::NotExactlyOnce { source, .. } => source.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(sources, ["s-0", "s-1", "s-3", "s-9"]);
    assert!(matches!(&found[0], Anomaly::NotExactlyOnce { outputs, committed: Some(3), .. } if outputs.len() == 2));
    assert!(found[2].describe().contains("has 1 outputs where 0 is due"), "{}", found[2].describe());
    assert!(matches!(&found[3], Anomaly::NotExactlyOnce { partition: None, .. }));
}

#[test]
fn without_the_groups_offsets_or_a_drain_exactly_once_is_not_checked() {
    let mut h = History::new();
    h.txn_setup(&["a"], 1, "src", 1, 5_000);
    h.txn(PROCESSOR, "x-0", Commit, Committed, &[("a", 0, "out:s-0@x-0-0")]);
    h.txn_drain("a", 0, true, &[(0, "out:s-0@x-0-0")]).txn_drain("src", 0, true, &[(0, "s-0")]);
    let report = check(&h.events);
    assert!(report.is_clean() && !report.txn.unwrap().exactly_once_checked);
    h.txn_offsets(&[]);
    let found = only(&check(&h.events), AnomalyKind::NotExactlyOnce, 1);
    assert!(matches!(&found[0], Anomaly::NotExactlyOnce { committed: None, .. }), "{found:?}");
}

/// An LSO held at 3 below end 5 of `a/0` from 0 s, and a sample at `then_ms` still at 3.
fn lso_history(then_ms: u64, fault: Option<(u64, Option<u64>)>) -> History {
    let mut h = History::new();
    h.txn_setup(&["a"], 1, "src", 1, 5_000);
    h.at_ms(0).txn_lso(MONITOR, &[("a", 0, 3, 5)]);
    if let Some((start, heal)) = fault {
        h.at_ms(start).fault("kill", "start", &[1]);
        if let Some(heal) = heal {
            h.at_ms(heal).fault("kill", "heal", &[1]);
        }
    }
    h.at_ms(then_ms).txn_lso(MONITOR, &[("a", 0, 3, 6)]);
    h
}

#[test]
fn an_lso_held_past_the_timeout_without_faults_is_stuck() {
    // Allowed: answered at 1 ms + 5 s + 1 s + 2 s.
    assert!(check(&lso_history(8_000, None).events).is_clean());
    let found = only(&check(&lso_history(8_001, None).events), AnomalyKind::StuckLso, 1);
    assert_eq!(
        found[0],
        Anomaly::StuckLso {
            topic: "a".into(),
            partition: 0,
            lso: 3,
            end: 5,
            since_event: 2,
            seen_event: 4,
            lso_then: 3,
            waited_ms: 8_000,
            allowed_ms: 8_000,
        }
    );
    // Once stable past 5, nothing is held.
    let mut h = lso_history(8_001, None);
    h.events.pop();
    h.txn_lso(MONITOR, &[("a", 0, 5, 9)]);
    assert!(check(&h.events).is_clean());
}

#[test]
fn a_fault_extends_the_time_allowed_to_past_its_heal_and_one_never_healed_leaves_it_unjudged() {
    // A kill from 2 s to 4 s: allowed until 4 s + 5 s + 1 s + 20 s.
    assert!(check(&lso_history(29_999, Some((2_000, Some(4_000)))).events).is_clean());
    only(&check(&lso_history(30_001, Some((2_000, Some(4_000)))).events), AnomalyKind::StuckLso, 1);
    // A fault healed 10 s before the sample still counts; one healed 30 s before does not.
    let mut h = History::new();
    h.txn_setup(&["a"], 1, "src", 1, 5_000);
    h.at_ms(0).fault("kill", "start", &[1]).at_ms(1_000).fault("kill", "heal", &[1]);
    h.at_ms(11_000).txn_lso(MONITOR, &[("a", 0, 3, 5)]).at_ms(25_000).txn_lso(MONITOR, &[("a", 0, 3, 5)]);
    assert!(check(&h.events).is_clean());
    let mut h = History::new();
    h.txn_setup(&["a"], 1, "src", 1, 5_000);
    h.at_ms(0).fault("kill", "start", &[1]).at_ms(1_000).fault("kill", "heal", &[1]);
    h.at_ms(31_000).txn_lso(MONITOR, &[("a", 0, 3, 5)]).at_ms(40_000).txn_lso(MONITOR, &[("a", 0, 3, 5)]);
    only(&check(&h.events), AnomalyKind::StuckLso, 1);
    assert!(check(&lso_history(60_000, Some((2_000, None))).events).is_clean());
}

#[test]
fn a_stuck_stretch_is_one_finding() {
    let mut h = lso_history(9_000, None);
    for s in 10..30 {
        h.at_ms(s * 1_000).txn_lso(MONITOR, &[("a", 0, 3, 7)]);
    }
    only(&check(&h.events), AnomalyKind::StuckLso, 1);
}

#[test]
fn transactions_completing_oddly_are_malformed() {
    let mut h = History::new();
    h.txn_setup(&["a"], 1, "src", 1, 5_000);
    // A completion without an invocation; a value written by two transactions; an `ok`
    // completion saying aborted; a label invoked twice.
    h.txn_done(0, "w0-0", Commit, &[("a", 0, "v")], &[], Committed);
    h.txn_invoke(0, "w0-1", Commit, &[("a", 0, "v")], &[]).txn_invoke(1, "w1-0", Commit, &[("a", 0, "v")], &[]);
    h.txn_invoke(0, "w0-1", Commit, &[], &[]);
    h.txn_invoke(0, "w0-2", Abort, &[("a", 0, "u")], &[]);
    let op =
        Op::Txn { label: "w0-2".into(), plan: Abort, values: Vec::new(), offsets: Vec::new(), outcome: Some(Aborted) };
    h.raw(0, Kind::Ok, op);
    only(&check(&h.events), AnomalyKind::Malformed, 4);
}

#[test]
fn a_transaction_still_open_when_the_wait_gave_up_is_stuck() {
    let mut h = History::new();
    h.txn_setup(&["a"], 1, "src", 1, 5_000);
    h.at_ms(1_000).fault("pause", "start", &[3]).at_ms(7_000).fault("pause", "heal", &[3]);
    h.at_ms(60_000).txn_end_open(&["jepsen-txn-w2 PREPARE_COMMIT", "jepsen-txn-w0 ONGOING"]);
    let report = check(&h.events);
    let found = only(&report, AnomalyKind::StuckTransaction, 2);
    let expected = Anomaly::StuckTransaction {
        transaction: "jepsen-txn-w2 PREPARE_COMMIT".into(),
        event: 3,
        after_heal_ms: Some(53_000),
    };
    assert_eq!(found[0], expected);
    assert!(found[0].describe().contains("still open at its coordinator when the wait gave up"), "{found:?}");
    assert_eq!(report.txn.unwrap().settled, Some(false));
    // Settled: nothing open.
    let mut h = History::new();
    h.txn_setup(&["a"], 1, "src", 1, 5_000).txn_end(true, true);
    assert!(check(&h.events).is_clean());
}

#[test]
fn no_commit_for_a_whole_quiet_stretch_is_a_stall() {
    let history = |commits_ms: &[u64]| {
        let mut h = History::new();
        h.txn_setup(&["a"], 1, "src", 1, 5_000);
        h.at_ms(1_000).txn(0, "w0-0", Commit, Committed, &[("a", 0, "w0-0-0")]);
        h.at_ms(3_000).fault("pause", "start", &[3]).at_ms(5_000).fault("pause", "heal", &[3]);
        for (i, &ms) in commits_ms.iter().enumerate() {
            let (label, value) = (format!("w0-{}", i + 1), format!("w0-{}-0", i + 1));
            h.at_ms(ms).txn(0, &label, Commit, Committed, &[("a", 0, &value)]);
        }
        // The writer's last transaction fails at 80 s: the quiet stretch runs from the heal's
        // allowance (25 s) to there.
        h.at_ms(80_000).txn(0, "w0-last", Abort, Aborted, &[("a", 0, "w0-last-0")]);
        h
    };
    let stalled = check(&history(&[]).events);
    let found = only(&stalled, AnomalyKind::Stalled, 1);
    assert_eq!(found[0], Anomaly::Stalled { from_ms: 25_000, to_ms: 80_001 });
    assert!(found[0].describe().contains("no transaction committed from 25.0 s to 80.0 s"), "{found:?}");
    let live = check(&history(&[30_000, 55_000, 79_000]).events);
    assert_eq!(live.count(AnomalyKind::Stalled), 0, "{}", live.to_json());
}
