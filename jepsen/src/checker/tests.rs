//! Whole-history tests: a run with every kind of legitimate oddity checks clean, and reports
//! count in full while keeping a bounded number of examples.

use super::check;
use super::testkit::{History, only};
use crate::report::{AnomalyKind, EXAMPLES_PER_KIND, Report};

/// Two producers, two partitions, a group whose members rebalance and redeliver, an
/// assign-mode reader that seeks and times out, unknown sends that were and were not written,
/// two faults, a lagging replica and one with an uncommitted tail: nothing anomalous.
fn clean_history() -> History {
    let mut h = History::new();
    h.send_ok(0, "a0", 0, 0).send_ok(1, "b0", 1, 0).send_ok(0, "a1", 0, 1).send_ok(1, "b1", 1, 1);
    h.assign(10, Some("g"), &[(0, 0), (1, 0)]);
    h.poll(10, Some("g"), &[(0, &[(0, "a0"), (1, "a1")]), (1, &[(0, "b0")])]);
    // Only "a0" and "b0" were processed before the member lost partition 0.
    h.commit(10, "g", &[(0, 1), (1, 1)]);
    h.fault("kill", "start", &[2]);
    // "a2" timed out but was written; "b2" timed out and was not.
    h.send_info(0, "a2").send_info(1, "b2").send_ok(1, "b3", 1, 2);
    h.fault("kill", "heal", &[2]);
    // Member 11 joins and takes partition 0 from the committed offset: "a1" is redelivered.
    h.assign(10, Some("g"), &[(1, 1)]).assign(11, Some("g"), &[(0, 1)]);
    h.poll(11, Some("g"), &[(0, &[(1, "a1"), (2, "a2")])]);
    h.poll(10, Some("g"), &[(1, &[(1, "b1"), (2, "b3")])]);
    h.commit(11, "g", &[(0, 3)]).commit(10, "g", &[(1, 3)]);
    h.assign(20, None, &[(0, 0)]).poll(20, None, &[(0, &[(0, "a0"), (1, "a1")])]);
    h.assign(20, None, &[(0, 0)]).poll(20, None, &[(0, &[(0, "a0")])]);
    h.poll_info(20, None).poll(20, None, &[(0, &[(2, "a2")])]);
    h.fault("partition", "start", &[1]).send_fail(0, "a3").send_ok(0, "a4", 0, 3);
    h.fault("partition", "heal", &[1]);
    let p0: &[(u64, &str)] = &[(0, "a0"), (1, "a1"), (2, "a2"), (3, "a4")];
    let p1: &[(u64, &str)] = &[(0, "b0"), (1, "b1"), (2, "b3")];
    h.final_read(0, p0).final_read(1, p1);
    h.node_log(1, 0, p0).node_log(2, 0, &p0[..2]).node_log(3, 0, p0);
    h.node_log(1, 1, p1).node_log(2, 1, p1).node_log(3, 1, &[(0, "b0"), (1, "b1"), (2, "b3"), (3, "b2")]);
    h.final_committed("g", &[(0, 3), (1, 3)]);
    h
}

#[test]
fn a_run_with_rebalances_redeliveries_unknown_sends_and_faults_is_clean() {
    let report = check(&clean_history().events);
    only(&report, AnomalyKind::LostWrite, 0);
    assert!(report.is_clean());
    let group = &report.groups[0];
    assert_eq!((group.group.as_str(), group.delivered, group.redeliveries), ("g", 6, 1));
    let send = report.totals.iter().find(|t| t.op == "send").unwrap();
    assert_eq!((send.invoked, send.ok, send.fail, send.info), (9, 6, 1, 2));
    assert_eq!(report.availability.windows.len(), 2);
    let summary = report.summary(Some(42));
    assert!(summary.starts_with("CLEAN  (seed 42"), "{summary}");
    assert!(summary.contains("sends: 9 invoked, 6 acknowledged, 1 failed, 2 unknown"), "{summary}");
    assert!(summary.contains("partition"), "{summary}");
}

#[test]
fn anomalies_are_counted_in_full_with_a_bounded_number_of_examples() {
    let mut h = History::new();
    for offset in 0..30 {
        h.send_ok(0, &format!("v{offset}"), 0, offset);
    }
    h.final_read(0, &[(29, "v29")]);
    let report = check(&h.events);
    let lost = only(&report, AnomalyKind::LostWrite, 29);
    assert_eq!(lost.len(), EXAMPLES_PER_KIND);
    let summary = report.summary(None);
    assert!(summary.starts_with("ANOMALIES FOUND  (seed none"), "{summary}");
    assert!(summary.contains("lost-write"), "{summary}");
    assert!(summary.contains("\"v0\" acked at p0@0"), "{summary}");
}

#[test]
fn a_report_round_trips_through_its_json_file() {
    let mut h = clean_history();
    h.send_ok(0, "lost", 0, 1);
    let report = check(&h.events);
    assert!(!report.is_clean());
    let path = std::env::temp_dir().join(format!("sluice-jepsen-report-{}.json", std::process::id()));
    report.write_json(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(text.contains("\"inconsistent-offsets\""), "{text}");
    assert_eq!(Report::from_json(&text).unwrap(), report);
    assert!(Report::from_json("{}").unwrap_err().to_string().contains("report"));
}
