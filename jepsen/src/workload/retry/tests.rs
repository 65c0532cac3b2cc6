use super::*;
use crate::workload::WorkloadConfig;

fn read(value: &str, attempt: u32, action: RetryAction) -> RetryRead {
    RetryRead { partition: 0, offset: 0, value: value.into(), attempt, action }
}

/// A value of each fate.
fn of(fate: Fate) -> String {
    (0..).map(|n| format!("0-{n}")).find(|v| fate_of(v) == fate).unwrap()
}

#[test]
fn a_message_is_seen_through_once_its_fate_is_played_out_in_every_group() {
    let groups = groups("g");
    let mut tracker = Tracker { max_attempts: 3, ..Tracker::default() };
    let (once, always, reject) = (of(Fate::FailOnce), of(Fate::FailAlways), of(Fate::Reject));
    for v in [&once, &always, &reject] {
        tracker.acked(v);
    }
    assert_eq!(tracker.unresolved(&groups), 6);
    for g in &groups {
        tracker.received(&g.name, &[read(&once, 1, RetryAction::Nack), read(&always, 2, RetryAction::Nack)]);
        tracker.received(&g.name, &[read(&reject, 1, RetryAction::Reject)]);
    }
    assert_eq!(tracker.unresolved(&groups), 4, "the rejected one is through; the failing ones are not");
    for g in &groups {
        tracker.received(&g.name, &[read(&once, 2, RetryAction::Ack), read(&always, 3, RetryAction::Nack)]);
    }
    assert_eq!(tracker.unresolved(&groups), 0);
    assert_eq!(tracker.dead(), [always, reject].into_iter().collect());
}

#[test]
fn the_retry_workload_needs_producers_members_and_a_valid_policy() {
    let base = WorkloadConfig { kind: crate::history::WorkloadKind::Retry, ..WorkloadConfig::default() };
    assert!(base.validate().is_ok());
    let no_members = WorkloadConfig { members: 0, ..base.clone() };
    assert!(no_members.validate().unwrap_err().to_string().contains("needs producers and members"));
    let bad = WorkloadConfig { retry: RetryConfig { max_attempts: 0, ..RetryConfig::default() }, ..base };
    assert!(bad.validate().unwrap_err().to_string().contains("retry policy"));
}
