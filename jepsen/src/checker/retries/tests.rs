use super::super::testkit::{History, only};
use crate::checker::check;
use crate::history::{DeadLetter, Fate, Kind, Op, RetryAction, RetryGroup, RetryRead, WorkloadKind, fate_of, key_of};
use crate::report::{Anomaly, AnomalyKind, RetryCheck};

const MAX: u32 = 3;

/// A value of `fate` (and of key `key`, if given), not among `taken`.
fn value(fate: Fate, key: Option<&str>, taken: &[&str]) -> String {
    (0..)
        .map(|n| format!("0-{n}"))
        .find(|v| fate_of(v) == fate && key.is_none_or(|k| key_of(v) == k) && !taken.contains(&v.as_str()))
        .unwrap()
}

fn setup(h: &mut History) {
    let groups =
        vec![RetryGroup { name: "g".into(), key_ordered: false }, RetryGroup { name: "o".into(), key_ordered: true }];
    h.raw(
        u32::MAX,
        Kind::Ok,
        Op::RetrySetup { groups, ladder_ms: vec![1_000, 2_000], max_attempts: MAX, max_clock_skew_ms: 0 },
    );
}

/// A member's poll begun at `at_ms` and returned 10 ms later with (value, offset, attempt)
/// of partition 0, each acted on by its fate.
fn poll(h: &mut History, process: u32, group: &str, at_ms: u64, reads: &[(&str, u64, u32)]) {
    let reads: Vec<RetryRead> = reads
        .iter()
        .map(|&(value, offset, attempt)| RetryRead {
            partition: 0,
            offset,
            value: value.into(),
            attempt,
            action: RetryAction::decide(fate_of(value), attempt),
        })
        .collect();
    h.at_ms(at_ms).raw(process, Kind::Invoke, Op::RetryPoll { group: group.into(), reads: Vec::new() });
    h.at_ms(at_ms + 10).raw(process, Kind::Ok, Op::RetryPoll { group: group.into(), reads });
}

fn dead(h: &mut History, group: &str, entries: &[(&str, u64, u32)]) {
    let entries = entries
        .iter()
        .enumerate()
        .map(|(i, &(value, offset, attempts))| DeadLetter {
            offset: i as u64,
            value: value.into(),
            origin: Some((0, offset)),
            attempts: Some(attempts),
            reason: "failing".into(),
        })
        .collect();
    h.raw(u32::MAX, Kind::Ok, Op::DeadLetters { group: group.into(), entries });
}

/// The messages: an ok one, one failing once, one failing always (all of one key, in that
/// offset order) and a rejected one.
struct Messages {
    ok: String,
    once: String,
    always: String,
    reject: String,
}

fn messages() -> Messages {
    let once = value(Fate::FailOnce, None, &[]);
    let key = key_of(&once);
    let always = value(Fate::FailAlways, Some(&key), &[]);
    let ok = value(Fate::Ok, Some(&key), &[]);
    Messages { ok, once, always, reject: value(Fate::Reject, None, &[]) }
}

/// Both groups see every message through on time; `ordered` lets the ordered group's polls
/// be replaced.
fn run(m: &Messages, ordered: impl FnOnce(&mut History, &Messages), dead_o: &[(&str, u64, u32)]) -> History {
    let mut h = History::new();
    setup(&mut h);
    for (i, v) in [&m.once, &m.always, &m.ok, &m.reject].into_iter().enumerate() {
        h.send_ok(0, v, 0, i as u64);
    }
    // The unordered group: the ok one flows past the failing ones at once.
    poll(&mut h, 1, "g", 100, &[(&m.once, 0, 1), (&m.always, 1, 1), (&m.ok, 2, 1), (&m.reject, 3, 1)]);
    poll(&mut h, 1, "g", 1_200, &[(&m.once, 0, 2), (&m.always, 1, 2)]);
    poll(&mut h, 1, "g", 3_200, &[(&m.always, 1, 3)]);
    ordered(&mut h, m);
    dead(&mut h, "g", &[(&m.reject, 3, 1), (&m.always, 1, MAX)]);
    dead(&mut h, "o", dead_o);
    h.raw(u32::MAX, Kind::Ok, Op::RetryEnd { unresolved: 0 });
    h.final_read(0, &[(0, &m.once), (1, &m.always), (2, &m.ok), (3, &m.reject)]);
    h
}

/// The ordered group: its key waits behind each nack; the rejected one (another key) flows.
fn in_order(h: &mut History, m: &Messages) {
    poll(h, 2, "o", 100, &[(&m.once, 0, 1), (&m.reject, 3, 1)]);
    poll(h, 2, "o", 1_200, &[(&m.once, 0, 2)]);
    poll(h, 2, "o", 1_300, &[(&m.always, 1, 1)]);
    poll(h, 2, "o", 2_400, &[(&m.always, 1, 2)]);
    poll(h, 2, "o", 4_500, &[(&m.always, 1, 3)]);
    poll(h, 2, "o", 4_600, &[(&m.ok, 2, 1)]);
}

#[test]
fn retries_seen_through_on_time_in_key_order_with_each_dead_letter_once_are_clean() {
    let m = messages();
    let h = run(&m, in_order, &[(&m.reject, 3, 1), (&m.always, 1, MAX)]);
    let report = check(&h.events);
    assert_eq!(report.workload, WorkloadKind::Retry);
    only(&report, AnomalyKind::EarlyRetry, 0);
    let r = report.retry.clone().unwrap();
    assert_eq!((r.acked, r.max_attempts, r.unresolved), (4, MAX, Some(0)));
    let g = &r.groups[0];
    assert_eq!((g.deliveries.clone(), g.nacks, g.rejects, g.dead_letters), (vec![(1, 4), (2, 2), (3, 1)], 4, 1, 2));
    // once: 1,210 − (100 + 1,000); always: 1,210 − 1,100, then 3,210 − (1,200 + 2,000).
    assert_eq!(g.lateness.map(|l| (l.min_ms, l.max_ms)), Some((10, 110)));
    assert!(report.summary(Some(1)).contains("retries: policy 3 attempts"), "{}", report.summary(Some(1)));
}

fn finding(report: &crate::report::Report, kind: AnomalyKind, count: u64) -> (RetryCheck, String) {
    match only(report, kind, count).into_iter().next().unwrap() {
        Anomaly::Retry { check, group, .. } => (check, group),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_retry_before_its_wait_and_a_later_key_overtaking_a_nack_are_found() {
    let m = messages();
    let early = |h: &mut History, m: &Messages| {
        poll(h, 2, "o", 100, &[(&m.once, 0, 1), (&m.reject, 3, 1)]);
        // The key's next message while "once" waits: out of key order.
        poll(h, 2, "o", 200, &[(&m.always, 1, 1)]);
        // Attempt 2 of "once" 500 ms after its first poll began: before its 1 s wait.
        poll(h, 2, "o", 600, &[(&m.once, 0, 2)]);
        poll(h, 2, "o", 1_300, &[(&m.always, 1, 2)]);
        poll(h, 2, "o", 3_400, &[(&m.always, 1, 3)]);
        poll(h, 2, "o", 3_500, &[(&m.ok, 2, 1)]);
    };
    let report = check(&run(&m, early, &[(&m.reject, 3, 1), (&m.always, 1, MAX)]).events);
    assert_eq!(report.count(AnomalyKind::EarlyRetry), 1, "{}", report.to_json());
    assert_eq!(report.count(AnomalyKind::KeyOrder), 1, "{}", report.to_json());
}

#[test]
fn a_missing_duplicated_or_unexpected_dead_letter_and_a_lost_retry_are_found() {
    let m = messages();
    let missing = run(&m, in_order, &[(&m.reject, 3, 1)]);
    assert_eq!(finding(&check(&missing.events), AnomalyKind::DlqMissing, 1), (RetryCheck::DlqMissing, "o".into()));
    let twice = run(&m, in_order, &[(&m.reject, 3, 1), (&m.always, 1, MAX), (&m.always, 1, MAX)]);
    assert_eq!(finding(&check(&twice.events), AnomalyKind::DlqDuplicate, 1).0, RetryCheck::DlqDuplicate);
    let wrong = run(&m, in_order, &[(&m.reject, 3, 1), (&m.always, 1, MAX), (&m.ok, 2, 1)]);
    assert_eq!(finding(&check(&wrong.events), AnomalyKind::DlqUnexpected, 1).0, RetryCheck::DlqUnexpected);
    let short = run(&m, in_order, &[(&m.reject, 3, 1), (&m.always, 1, MAX - 1)]);
    assert_eq!(finding(&check(&short.events), AnomalyKind::DlqUnexpected, 1).0, RetryCheck::DlqUnexpected);
    let lost = |h: &mut History, m: &Messages| {
        poll(h, 2, "o", 100, &[(&m.once, 0, 1), (&m.reject, 3, 1)]);
    };
    let report = check(&run(&m, lost, &[(&m.reject, 3, 1)]).events);
    // "once" never came back, "ok" and "always" never came at all; "always" is not dead-lettered.
    assert_eq!((report.count(AnomalyKind::LostRetry), report.count(AnomalyKind::DlqMissing)), (3, 1));
}

#[test]
fn an_attempt_beyond_the_policy_is_found_and_a_fresh_delivery_explains_a_second_dead_letter() {
    let m = messages();
    let beyond = |h: &mut History, m: &Messages| {
        in_order(h, m);
        poll(h, 2, "o", 9_000, &[(&m.always, 1, MAX + 1)]);
    };
    let report = check(&run(&m, beyond, &[(&m.reject, 3, 1), (&m.always, 1, MAX)]).events);
    assert_eq!(finding(&report, AnomalyKind::RetryAttempts, 1).0, RetryCheck::Attempts);
    let replayed = |h: &mut History, m: &Messages| {
        in_order(h, m);
        // A replay from an uncommitted position: rejected afresh.
        poll(h, 3, "o", 9_000, &[(&m.reject, 3, 1)]);
    };
    let report = check(&run(&m, replayed, &[(&m.reject, 3, 1), (&m.always, 1, MAX), (&m.reject, 3, 1)]).events);
    assert!(report.is_clean(), "{}", report.to_json());
    assert_eq!(report.retry.unwrap().groups[1].redelivered_dead_letters, 1);
}

#[test]
fn the_runners_probes_carry_no_key_and_are_not_held_to_key_order() {
    let m = messages();
    let key = key_of(&m.ok);
    let probe = (0..).map(|n| format!("probe-{n}")).find(|v| fate_of(v) == Fate::FailOnce && key_of(v) == key).unwrap();
    let later = value(Fate::Ok, Some(&key), &[&m.ok]);
    // The probe nacked, and a later message of "its" key delivered before it comes back.
    let with_probe = |h: &mut History, m: &Messages| {
        in_order(h, m);
        poll(h, 2, "o", 5_000, &[(&probe, 4, 1)]);
        poll(h, 2, "o", 5_100, &[(&later, 5, 1)]);
        poll(h, 2, "o", 6_200, &[(&probe, 4, 2)]);
    };
    let mut h = run(&m, with_probe, &[(&m.reject, 3, 1), (&m.always, 1, MAX)]);
    h.send_ok(u32::MAX - 1, &probe, 0, 4).send_ok(0, &later, 0, 5);
    let report = check(&h.events);
    assert_eq!(report.count(AnomalyKind::KeyOrder), 0, "{}", report.to_json());
    // The same with a keyed message in the probe's place is out of order.
    let keyed = value(Fate::FailOnce, Some(&key), &[&m.once]);
    let with_keyed = |h: &mut History, m: &Messages| {
        in_order(h, m);
        poll(h, 2, "o", 5_000, &[(&keyed, 4, 1)]);
        poll(h, 2, "o", 5_100, &[(&later, 5, 1)]);
        poll(h, 2, "o", 6_200, &[(&keyed, 4, 2)]);
    };
    let mut h = run(&m, with_keyed, &[(&m.reject, 3, 1), (&m.always, 1, MAX)]);
    h.send_ok(0, &keyed, 0, 4).send_ok(0, &later, 0, 5);
    assert_eq!(check(&h.events).count(AnomalyKind::KeyOrder), 1);
}

#[test]
fn a_nack_of_a_replayed_dead_letter_holds_its_key_back_no_more() {
    let m = messages();
    let later = value(Fate::Ok, Some(&key_of(&m.always)), &[&m.ok]);
    let replayed = |h: &mut History, m: &Messages| {
        in_order(h, m);
        // "always" is dead-lettered at attempt 3; a replay delivers it afresh and it is nacked
        // again, which the coordinator ignores: the key's later message flows.
        poll(h, 3, "o", 9_000, &[(&m.always, 1, 1)]);
        poll(h, 3, "o", 9_100, &[(&later, 6, 1)]);
    };
    let mut h = run(&m, replayed, &[(&m.reject, 3, 1), (&m.always, 1, MAX)]);
    h.send_ok(0, &later, 0, 6);
    let report = check(&h.events);
    assert_eq!(report.count(AnomalyKind::KeyOrder), 0, "{}", report.to_json());
}
