//! The retry table: retries scheduled by the policy, stale settles ignored, the last attempt
//! sent to the dead-letter queue, and a key's later messages held back until it is settled.

use super::*;
use crate::retry::policy::Backoff;

fn at(partition: u32, offset: u64) -> Place {
    Place { topic: "orders".into(), partition, offset }
}

fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy { backoff: Backoff::Ladder(vec![1000, 5000]), max_attempts }
}

fn nack(t: &mut RetryTable, place: &Place, attempt: u32, now: u64, key: Option<u64>, p: &RetryPolicy) -> NackPlan {
    let plan = t.plan_nack(place, attempt, now, "boom", key, (p, 0));
    if let NackPlan::Retry(change) = &plan {
        t.apply(change);
    }
    plan
}

#[test]
fn a_nacked_message_is_due_after_its_backoff_and_an_ack_of_its_retry_removes_it() {
    let (mut t, p) = (RetryTable::new(), policy(5));
    let m = at(0, 42);
    assert!(matches!(nack(&mut t, &m, 1, 10_000, None, &p), NackPlan::Retry(_)));
    assert_eq!(t.get(&m).map(|e| (e.attempt, e.due_ms, e.first_failure_ms)), Some((2, Some(11_000), 10_000)));
    assert!(t.due(10_999, 10, |_| true).is_empty(), "never early");
    assert_eq!(t.due(11_000, 10, |_| true), [(m.clone(), 2)]);
    assert_eq!(t.next_due_ms(), Some(11_000));
    assert_eq!(nack(&mut t, &m, 1, 10_500, None, &p), NackPlan::Stale, "a repeated nack changes nothing");
    assert_eq!(t.plan_ack(&m, 1, 11_100), None, "an ack of a settled attempt changes nothing");
    assert!(matches!(nack(&mut t, &m, 2, 11_100, None, &p), NackPlan::Retry(_)));
    assert_eq!(t.get(&m).map(|e| (e.attempt, e.due_ms, e.first_failure_ms)), Some((3, Some(16_100), 10_000)));
    let done = t.plan_ack(&m, 3, 16_200).expect("an ack of the current attempt");
    t.apply(&done);
    assert!(t.is_empty() && t.due(u64::MAX, 10, |_| true).is_empty());
    assert_eq!(t.plan_ack(&at(0, 7), 1, 0), None, "a first delivery is settled by the commit");
}

#[test]
fn the_last_attempt_goes_to_the_dead_letter_queue_with_its_first_failure() {
    let (mut t, p) = (RetryTable::new(), policy(2));
    let m = at(1, 5);
    nack(&mut t, &m, 1, 1_000, None, &p);
    assert_eq!(nack(&mut t, &m, 2, 3_000, None, &p), NackPlan::DeadLetter { attempts: 2, first_failure_ms: 1_000 });
    t.apply(&RetryChange::Done { place: m.clone(), at_ms: 3_001 });
    assert!(t.is_empty());
    let once = policy(1);
    assert_eq!(
        nack(&mut RetryTable::new(), &m, 1, 9, None, &once),
        NackPlan::DeadLetter { attempts: 1, first_failure_ms: 9 },
        "max_attempts 1: the first failure is the last"
    );
}

#[test]
fn a_keys_later_messages_wait_behind_its_failing_one_while_other_keys_flow() {
    let (mut t, p) = (RetryTable::new(), policy(3));
    let head = at(0, 10);
    nack(&mut t, &head, 1, 1_000, Some(7), &p);
    assert!(t.key_blocked("orders", 0, 7) && !t.key_blocked("orders", 0, 8) && !t.key_blocked("orders", 1, 7));
    for offset in [12, 15] {
        let park = t.plan_park(&at(0, offset), 7).expect("parked");
        t.apply(&park);
    }
    assert_eq!(t.plan_park(&at(0, 12), 7), None, "parking twice changes nothing");
    assert_eq!(t.blocked_keys("orders", 0), [7]);
    assert_eq!(t.due(u64::MAX, 10, |_| true), [(head.clone(), 2)], "only the key's head is ever due");
    assert_eq!(nack(&mut t, &at(0, 12), 1, 1_500, Some(7), &p), NackPlan::Stale, "a parked message was not delivered");

    // The head fails again, then is acknowledged: the next of its key is due at once.
    nack(&mut t, &head, 2, 2_000, Some(7), &p);
    t.apply(&t.plan_ack(&head, 3, 7_500).expect("acked"));
    assert_eq!(t.due(7_500, 10, |_| true), [(at(0, 12), 1)]);
    // That one goes straight to the dead-letter queue after its attempts; the last is released.
    nack(&mut t, &at(0, 12), 1, 7_600, Some(7), &p);
    nack(&mut t, &at(0, 12), 2, 8_700, Some(7), &p);
    assert!(matches!(nack(&mut t, &at(0, 12), 3, 14_000, Some(7), &p), NackPlan::DeadLetter { attempts: 3, .. }));
    t.apply(&RetryChange::Done { place: at(0, 12), at_ms: 14_001 });
    assert_eq!(t.due(14_001, 10, |_| true), [(at(0, 15), 1)]);
    t.apply(&t.plan_ack(&at(0, 15), 1, 14_100).expect("acked"));
    assert!(t.is_empty() && t.blocked_keys("orders", 0).is_empty(), "the key flows again");
}

#[test]
fn a_message_parked_after_its_keys_head_was_settled_is_due_at_once() {
    let mut t = RetryTable::new();
    t.apply(&RetryChange::Park { place: at(2, 3), key: 1 });
    assert_eq!(t.due(0, 10, |_| true), [(at(2, 3), 1)]);
}

#[test]
fn replaying_the_same_changes_gives_the_same_table_and_due_filters_by_place() {
    let (mut a, p) = (RetryTable::new(), policy(4));
    let mut changes = Vec::new();
    for offset in 0..20u64 {
        let place = at((offset % 3) as u32, offset);
        if let NackPlan::Retry(c) = a.plan_nack(&place, 1, 100 + offset, "x", Some(offset % 4), (&p, offset)) {
            a.apply(&c);
            changes.push(c);
        }
    }
    let mut b = RetryTable::new();
    changes.iter().for_each(|c| b.apply(c));
    assert_eq!(a, b);
    let owned: Vec<(Place, u32)> = a.due(u64::MAX, 100, |place| place.partition == 1);
    assert!(!owned.is_empty() && owned.iter().all(|(place, _)| place.partition == 1));
}
