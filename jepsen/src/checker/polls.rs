//! Each consumer's reads of a partition must continue exactly where its previous read of that
//! partition ended: offsets are dense in Sluice (every offset holds a message), so a poll that
//! starts lower went backwards and one that starts higher skipped messages. An `assign` (a
//! rebalance or a seek) resets the expectation to the position it names; a partition it
//! names no position for may restart anywhere. A member of a group with a filter (`subscribe`)
//! skips what its filter leaves out: only going backwards is an anomaly there (what it must
//! not skip, `groups` checks).

use std::collections::{HashMap, HashSet};

use super::Found;
use crate::history::{Event, Kind, Op};
use crate::report::Anomaly;

/// Where a consumer must read a partition from next, and the event that said so.
#[derive(Debug, Clone, Copy)]
struct Expect {
    next: u64,
    set_by: u64,
}

/// Checks every consumer's successive polls.
pub(crate) fn check(events: &[Event], found: &mut Found) {
    let mut expect: HashMap<(u32, u32), Expect> = HashMap::new();
    let mut filtered: HashSet<&str> = HashSet::new();
    for event in events {
        match (&event.op, event.kind) {
            (Op::Subscribe { group, .. }, _) => {
                filtered.insert(group);
            }
            (Op::Assign { positions, .. }, Kind::Ok) => {
                expect.retain(|&(process, _), _| process != event.process);
                for &(partition, next) in positions {
                    expect.insert((event.process, partition), Expect { next, set_by: event.index });
                }
            }
            // An assignment or poll whose outcome is unknown may have moved the consumer's
            // positions without the history seeing where to: its next reads may start anywhere.
            (Op::Assign { .. } | Op::Poll { .. }, Kind::Info) => {
                expect.retain(|&(process, _), _| process != event.process);
            }
            (Op::Poll { reads, group }, Kind::Ok) => {
                let skips = group.as_deref().is_some_and(|g| filtered.contains(g));
                for (partition, entries) in reads {
                    let key = (event.process, *partition);
                    for &(offset, _) in entries {
                        if let Some(&Expect { next, set_by }) = expect.get(&key)
                            && !(skips && offset > next)
                        {
                            flag(event, *partition, next, offset, set_by, found);
                        }
                        expect.insert(key, Expect { next: offset + 1, set_by: event.index });
                    }
                }
            }
            _ => {}
        }
    }
}

fn flag(event: &Event, partition: u32, expected: u64, got: u64, previous_event: u64, found: &mut Found) {
    let (process, event_index) = (event.process, event.index);
    if got < expected {
        found.push(Anomaly::NonmonotonicPoll { process, partition, expected, got, previous_event, event: event_index });
    } else if got > expected {
        found.push(Anomaly::PollSkip { process, partition, expected, got, previous_event, event: event_index });
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{History, only};
    use crate::checker::check;
    use crate::report::{Anomaly, AnomalyKind};

    /// Three messages in partition 0, acknowledged and drained.
    fn three_sent() -> History {
        let mut h = History::new();
        h.send_ok(0, "a", 0, 0).send_ok(0, "b", 0, 1).send_ok(0, "c", 0, 2);
        h
    }

    #[test]
    fn a_poll_that_goes_back_without_a_seek_is_nonmonotonic() {
        let mut h = three_sent();
        h.poll(7, None, &[(0, &[(0, "a"), (1, "b")])]);
        let first = h.last();
        h.poll(7, None, &[(0, &[(1, "b"), (2, "c")])]);
        let second = h.last();
        h.final_read(0, &[(0, "a"), (1, "b"), (2, "c")]);
        let report = check(&h.events);
        let back = only(&report, AnomalyKind::NonmonotonicPoll, 1);
        let expected = Anomaly::NonmonotonicPoll {
            process: 7,
            partition: 0,
            expected: 2,
            got: 1,
            previous_event: first,
            event: second,
        };
        assert_eq!(back[0], expected);
    }

    #[test]
    fn a_gap_inside_one_poll_is_a_skip() {
        let mut h = three_sent();
        h.poll(7, None, &[(0, &[(0, "a"), (2, "c")])]);
        h.final_read(0, &[(0, "a"), (1, "b"), (2, "c")]);
        let report = check(&h.events);
        let skip = only(&report, AnomalyKind::PollSkip, 1);
        assert!(matches!(skip[0], Anomaly::PollSkip { process: 7, partition: 0, expected: 1, got: 2, .. }), "{skip:?}");
    }

    #[test]
    fn after_an_assign_the_next_read_must_start_at_its_position() {
        let mut h = three_sent();
        h.poll(7, None, &[(0, &[(0, "a"), (1, "b"), (2, "c")])]);
        // A seek back to 0 is fine; one to 1 that reads from 2 skipped offset 1.
        h.assign(7, None, &[(0, 0)]).poll(7, None, &[(0, &[(0, "a")])]);
        h.assign(7, None, &[(0, 1)]);
        let seek = h.last();
        h.poll(7, None, &[(0, &[(2, "c")])]);
        h.final_read(0, &[(0, "a"), (1, "b"), (2, "c")]);
        let report = check(&h.events);
        let skip = only(&report, AnomalyKind::PollSkip, 1);
        assert!(
            matches!(skip[0], Anomaly::PollSkip { expected: 1, got: 2, previous_event, .. } if previous_event == seek),
            "{skip:?}"
        );
    }

    #[test]
    fn a_timed_out_poll_lets_the_next_one_start_anywhere() {
        let mut h = three_sent();
        h.poll(7, None, &[(0, &[(0, "a")])]).poll_info(7, None);
        h.poll(7, None, &[(0, &[(2, "c")])]).poll(8, None, &[(0, &[(1, "b")])]);
        h.final_read(0, &[(0, "a"), (1, "b"), (2, "c")]);
        assert!(check(&h.events).is_clean());
    }
}
