//! Acknowledgement levels (log workload): how the sends of each level ended, and the `leader`
//! and `none` messages never read. Those are allowed losses — a `leader` ack comes before
//! replication and fsync, and that leader may die or be deposed before the commit; a `none`
//! message is not acknowledged at all — so they are counted, never reported as anomalies.
//!
//! Everything else about such a message is checked as for any send, by the other checks: read
//! at two places (`duplicate`: a `leader` batch is idempotent, a `none` one never resent),
//! a place read with two values, a value read after its send failed, polls skipping or going
//! back, a group committing past it. What they never see is an offset from its `ok`: only
//! `all` acks are places to compare reads with (`index.rs`).

use std::collections::HashSet;

use super::index::Index;
use crate::history::{AckLevel, Event, Kind, Op};
use crate::report::{AckLevels, AllowedLoss, LOSS_EXAMPLES, LevelTotals};

/// The figures, or `None` when every send is at `all` (nothing to tell, and a report of a
/// history from before levels existed stays as it was).
pub(crate) fn measure(events: &[Event], index: &Index<'_>) -> Option<AckLevels> {
    if index.sends.iter().all(|s| s.level == AckLevel::All) {
        return None;
    }
    let read: HashSet<&str> = index.reads.iter().map(|r| r.value).collect();
    let mut figures = AckLevels { levels: totals(events), ..AckLevels::default() };
    for send in &index.sends {
        let ok = !send.acks.is_empty() || send.early_ack.is_some();
        if ok && read.contains(send.value) {
            figures.levels[position(send.level)].ok_read += 1;
        }
        let Some((partition, ack_event)) = send.early_ack.filter(|_| !read.contains(send.value)) else { continue };
        match send.level {
            AckLevel::Leader => figures.lost_leader_acked += 1,
            AckLevel::None => figures.lost_unacknowledged += 1,
            // An `all` send has no early ack (`Index`); its loss is the write checks' finding.
            AckLevel::All => continue,
        }
        if figures.lost_examples.len() < LOSS_EXAMPLES {
            let value = send.value.to_owned();
            figures.lost_examples.push(AllowedLoss { value, acks: send.level, partition, ack_event });
        }
    }
    Some(figures)
}

/// Invocations and completions of the sends of each level, in [`AckLevel::ALL`] order.
fn totals(events: &[Event]) -> Vec<LevelTotals> {
    let mut levels: Vec<LevelTotals> =
        AckLevel::ALL.iter().map(|&acks| LevelTotals { acks, ..Default::default() }).collect();
    for event in events {
        let Op::Send { acks, .. } = &event.op else { continue };
        let level = &mut levels[position(*acks)];
        match event.kind {
            Kind::Invoke => level.invoked += 1,
            Kind::Ok => level.ok += 1,
            Kind::Fail => level.fail += 1,
            Kind::Info => level.info += 1,
        }
    }
    levels
}

fn position(level: AckLevel) -> usize {
    AckLevel::ALL.iter().position(|&l| l == level).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{History, only};
    use crate::checker::check;
    use crate::history::{AckLevel, Kind, Op};
    use crate::report::AnomalyKind;

    /// An `all` send, a `leader` one and a `none` one to partition 0, all read.
    fn every_level_read() -> History {
        let mut h = History::new();
        h.send_ok(0, "0-0", 0, 0).send_early(0, "0-1", AckLevel::Leader, 0).send_early(0, "0-2", AckLevel::None, 0);
        h
    }

    #[test]
    fn a_lost_leader_ack_is_allowed_and_counted() {
        let mut h = every_level_read();
        h.send_early(0, "0-3", AckLevel::Leader, 0);
        let ack = h.last();
        h.send_ok(0, "0-4", 0, 3);
        // The leader that acknowledged "0-3" at (what would have been) offset 3 was deposed.
        h.final_read(0, &[(0, "0-0"), (1, "0-1"), (2, "0-2"), (3, "0-4")]);
        let report = check(&h.events);
        only(&report, AnomalyKind::LostWrite, 0);
        let acks = report.acks.as_ref().expect("levels are reported");
        assert_eq!((acks.lost_leader_acked, acks.lost_unacknowledged), (1, 0));
        assert_eq!(acks.lost_examples[0].value, "0-3");
        assert_eq!((acks.lost_examples[0].partition, acks.lost_examples[0].ack_event), (Some(0), ack));
        let leader = &acks.levels[1];
        assert_eq!((leader.acks, leader.invoked, leader.ok, leader.ok_read), (AckLevel::Leader, 2, 2, 1));
        let summary = report.summary(None);
        assert!(summary.starts_with("CLEAN"), "{summary}");
        assert!(summary.contains("allowed losses (never read): 1 leader-acknowledged, 0 unacknowledged"), "{summary}");
    }

    #[test]
    fn a_lost_none_send_is_allowed_and_counted_apart() {
        let mut h = every_level_read();
        h.send_early(0, "0-3", AckLevel::None, 1);
        h.final_read(0, &[(0, "0-0"), (1, "0-1"), (2, "0-2")]).final_read(1, &[]);
        let report = check(&h.events);
        only(&report, AnomalyKind::Unseen, 0);
        let acks = report.acks.unwrap();
        assert_eq!((acks.lost_leader_acked, acks.lost_unacknowledged), (0, 1));
    }

    #[test]
    fn a_lost_all_ack_is_still_a_lost_write_beside_leader_and_none_sends() {
        let mut h = every_level_read();
        h.send_ok(0, "0-3", 0, 3).send_ok(0, "0-4", 0, 4);
        h.final_read(0, &[(0, "0-0"), (1, "0-1"), (2, "0-2"), (4, "0-4")]);
        let report = check(&h.events);
        let lost = only(&report, AnomalyKind::LostWrite, 1);
        assert!(format!("{lost:?}").contains("0-3"), "{lost:?}");
        assert_eq!(report.acks.unwrap().lost_leader_acked, 0);
    }

    #[test]
    fn a_duplicated_leader_or_none_message_is_a_duplicate() {
        for level in [AckLevel::Leader, AckLevel::None] {
            let mut h = every_level_read();
            h.send_early(0, "0-3", level, 0);
            h.final_read(0, &[(0, "0-0"), (1, "0-1"), (2, "0-2"), (3, "0-3"), (4, "0-3")]);
            only(&check(&h.events), AnomalyKind::Duplicate, 1);
        }
    }

    #[test]
    fn a_failed_leader_send_that_is_read_is_an_aborted_read() {
        let mut h = every_level_read();
        h.raw(0, Kind::Invoke, Op::Send { value: "0-3".into(), partition: None, offset: None, acks: AckLevel::Leader });
        h.raw(0, Kind::Fail, Op::Send { value: "0-3".into(), partition: None, offset: None, acks: AckLevel::Leader });
        h.final_read(0, &[(0, "0-0"), (1, "0-1"), (2, "0-2"), (3, "0-3")]);
        only(&check(&h.events), AnomalyKind::AbortedRead, 1);
    }

    #[test]
    fn an_offset_given_with_an_early_ack_is_not_held_against_the_reads() {
        let mut h = every_level_read();
        // Acknowledged by a leader at offset 3 it never committed; the next leader wrote "0-4"
        // there. Were the offset held, that would be inconsistent offsets, a lost write and
        // (against "0-4", acked at 3 before it) a nonmonotonic send.
        h.raw(0, Kind::Invoke, Op::Send { value: "0-3".into(), partition: None, offset: None, acks: AckLevel::Leader });
        h.raw(
            0,
            Kind::Ok,
            Op::Send { value: "0-3".into(), partition: Some(0), offset: Some(3), acks: AckLevel::Leader },
        );
        h.send_ok(0, "0-4", 0, 3);
        h.final_read(0, &[(0, "0-0"), (1, "0-1"), (2, "0-2"), (3, "0-4")]);
        let report = check(&h.events);
        only(&report, AnomalyKind::Malformed, 0);
        assert_eq!(report.acks.unwrap().lost_leader_acked, 1);
    }

    #[test]
    fn an_all_ack_without_an_offset_is_malformed_and_a_level_change_too() {
        let mut h = History::new();
        h.raw(0, Kind::Invoke, Op::Send { value: "0-0".into(), partition: None, offset: None, acks: AckLevel::All });
        h.raw(0, Kind::Ok, Op::Send { value: "0-0".into(), partition: Some(0), offset: None, acks: AckLevel::All });
        h.raw(0, Kind::Invoke, Op::Send { value: "0-1".into(), partition: None, offset: None, acks: AckLevel::None });
        h.raw(0, Kind::Ok, Op::Send { value: "0-1".into(), partition: Some(0), offset: None, acks: AckLevel::All });
        h.final_read(0, &[(0, "0-0"), (1, "0-1")]);
        only(&check(&h.events), AnomalyKind::Malformed, 2);
    }

    #[test]
    fn a_history_without_levels_checks_as_before() {
        // Lines as written before sends had a level: no `acks` field.
        let text = [
            r#"{"index":0,"time_ns":0,"process":0,"type":"invoke","op":{"f":"send","value":"0-0","partition":null,"offset":null}}"#,
            r#"{"index":1,"time_ns":1,"process":0,"type":"ok","op":{"f":"send","value":"0-0","partition":0,"offset":0}}"#,
            r#"{"index":2,"time_ns":2,"process":0,"type":"invoke","op":{"f":"send","value":"0-1","partition":null,"offset":null}}"#,
            r#"{"index":3,"time_ns":3,"process":0,"type":"ok","op":{"f":"send","value":"0-1","partition":0,"offset":1}}"#,
            r#"{"index":4,"time_ns":4,"process":4294967295,"type":"ok","op":{"f":"final_read","partition":0,"reads":[[0,"0-0"]]}}"#,
        ]
        .join("\n");
        let events = crate::history::read(text.as_bytes()).unwrap();
        let report = check(&events);
        let unseen = only(&report, AnomalyKind::Unseen, 1);
        assert!(format!("{unseen:?}").contains("0-1"), "{unseen:?}");
        assert_eq!(report.acks, None);
        assert!(!report.to_json().contains("\"acks\""));
        assert!(!report.summary(None).contains("acks level"));
    }

    #[test]
    fn availability_counts_only_committed_acks() {
        let mut h = History::new();
        h.at_ms(0).send_ok(0, "0-0", 0, 0).at_ms(10).fault("kill", "start", &[1]);
        // A leader about to be deposed may still answer `leader` and `none` sends.
        h.at_ms(20).send_early(0, "0-1", AckLevel::Leader, 0).at_ms(30).send_early(0, "0-2", AckLevel::None, 0);
        h.at_ms(40).fault("kill", "heal", &[1]).at_ms(50).send_ok(0, "0-3", 0, 1);
        h.final_read(0, &[(0, "0-0"), (1, "0-3")]);
        let report = check(&h.events);
        let window = &report.availability.windows[0];
        // From the ack at 1 ms to the one at 51 ms.
        assert_eq!((window.longest_gap_ns, window.sends_ok), (50_000_000, 0));
        // Neither early ack was ever read: both are allowed losses, and nothing else.
        let acks = report.acks.as_ref().unwrap();
        assert_eq!((acks.lost_leader_acked, acks.lost_unacknowledged), (1, 1));
        assert!(report.is_clean());
    }
}
