//! Checks that compare acknowledgements with reads: lost and unseen writes, duplicates,
//! inconsistent offsets, aborted reads, and producers whose sends went backwards.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::Found;
use super::index::Index;
use crate::report::{Anomaly, Place, Sighting};

/// Runs every write check.
pub(crate) fn check(index: &Index<'_>, found: &mut Found) {
    lost_and_unseen(index, found);
    duplicates_and_inconsistent(index, found);
    aborted_reads(index, found);
    nonmonotonic_sends(index, found);
}

/// An acknowledged value nobody read is lost if a later offset of its partition was read
/// (the reads went past it), unseen otherwise. Each value is counted once, under one kind.
fn lost_and_unseen(index: &Index<'_>, found: &mut Found) {
    let read: HashSet<&str> = index.reads.iter().map(|r| r.value).collect();
    for send in &index.sends {
        let Some(&(partition, offset, ack_event)) = send.acks.first() else { continue };
        if read.contains(send.value) {
            continue;
        }
        let value = send.value.to_owned();
        let highest = index.highest_read.get(&partition).copied();
        found.push(match highest {
            Some(highest_read) if offset <= highest_read => {
                Anomaly::LostWrite { value, partition, offset, ack_event, highest_read }
            }
            highest_read => Anomaly::Unseen { value, partition, offset, ack_event, highest_read },
        });
    }
}

/// Every place each value was acknowledged or read at, and every value each place showed,
/// each with the first event that showed it.
fn duplicates_and_inconsistent(index: &Index<'_>, found: &mut Found) {
    let mut places: HashMap<&str, BTreeMap<(u32, u64), u64>> = HashMap::new();
    let mut values: BTreeMap<(u32, u64), BTreeMap<&str, u64>> = BTreeMap::new();
    let sightings = index.acks().chain(index.reads.iter().map(|r| (r.partition, r.offset, r.value, r.event)));
    for (partition, offset, value, event) in sightings {
        let first = places.entry(value).or_default().entry((partition, offset)).or_insert(event);
        *first = (*first).min(event);
        let first = values.entry((partition, offset)).or_default().entry(value).or_insert(event);
        *first = (*first).min(event);
    }
    // Sends in invocation order, then values read but never sent, for a stable report.
    let mut order: Vec<&str> = index.sends.iter().map(|s| s.value).collect();
    let mut unsent: Vec<&str> = places.keys().copied().filter(|v| !index.by_value.contains_key(v)).collect();
    unsent.sort_unstable();
    order.extend(unsent);
    for value in order {
        let Some(at) = places.get(value).filter(|at| at.len() > 1) else { continue };
        let places = at.iter().map(|(&(partition, offset), &event)| Place { partition, offset, event }).collect();
        found.push(Anomaly::Duplicate { value: value.to_owned(), places });
    }
    for ((partition, offset), seen) in values.into_iter().filter(|(_, seen)| seen.len() > 1) {
        let values = seen.into_iter().map(|(value, event)| Sighting { value: value.to_owned(), event }).collect();
        found.push(Anomaly::InconsistentOffsets { partition, offset, values });
    }
}

/// A value whose send failed must never be read; counted once per value, at its first read.
fn aborted_reads(index: &Index<'_>, found: &mut Found) {
    let mut reported = HashSet::new();
    for read in &index.reads {
        let Some(fail_event) = index.send(read.value).and_then(|s| s.fail) else { continue };
        if reported.insert(read.value) {
            found.push(Anomaly::AbortedRead {
                value: read.value.to_owned(),
                fail_event,
                partition: read.partition,
                offset: read.offset,
                read_event: read.event,
            });
        }
    }
}

/// Per producer and partition, in the order the sends were invoked (a producer may have
/// several in flight, and their completions may be recorded in any order), each acknowledged
/// offset must exceed every earlier one. Equal offsets are a duplicate or an inconsistency,
/// which those checks report.
fn nonmonotonic_sends(index: &Index<'_>, found: &mut Found) {
    let mut highest: HashMap<(u32, u32), (u64, &str, u64)> = HashMap::new();
    for send in &index.sends {
        let Some(&(partition, offset, event)) = send.acks.first() else { continue };
        let key = (send.process, partition);
        match highest.get(&key) {
            Some(&(earlier_offset, earlier_value, earlier_event)) if offset < earlier_offset => {
                found.push(Anomaly::NonmonotonicSend {
                    process: send.process,
                    partition,
                    earlier_value: earlier_value.to_owned(),
                    earlier_offset,
                    earlier_event,
                    later_value: send.value.to_owned(),
                    later_offset: offset,
                    later_event: event,
                });
            }
            Some(&(earlier_offset, ..)) if offset == earlier_offset => {}
            _ => {
                highest.insert(key, (offset, send.value, event));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{History, only};
    use crate::checker::check;
    use crate::report::{Anomaly, AnomalyKind};

    #[test]
    fn an_acked_value_skipped_by_the_reads_is_a_lost_write() {
        let mut h = History::new();
        h.send_ok(0, "a", 0, 0).send_ok(0, "b", 0, 1).send_ok(0, "c", 0, 2);
        h.final_read(0, &[(0, "a"), (2, "c")]);
        let report = check(&h.events);
        let lost = only(&report, AnomalyKind::LostWrite, 1);
        assert_eq!(
            lost[0],
            Anomaly::LostWrite { value: "b".into(), partition: 0, offset: 1, ack_event: 3, highest_read: 2 }
        );
    }

    #[test]
    fn an_acked_value_above_every_read_is_unseen() {
        let mut h = History::new();
        h.send_ok(0, "a", 0, 0).send_ok(1, "b", 1, 0);
        h.final_read(0, &[(0, "a")]).final_read(1, &[]);
        let report = check(&h.events);
        let unseen = only(&report, AnomalyKind::Unseen, 1);
        assert!(
            matches!(&unseen[0], Anomaly::Unseen { value, partition: 1, offset: 0, highest_read: None, .. } if value == "b"),
            "{unseen:?}"
        );
    }

    #[test]
    fn a_value_at_two_offsets_is_a_duplicate() {
        let mut h = History::new();
        h.send_ok(0, "a", 0, 0).send_info(0, "b").send_ok(0, "c", 0, 3);
        // "b" was retried inside the client and written twice.
        h.final_read(0, &[(0, "a"), (1, "b"), (2, "b"), (3, "c")]);
        let report = check(&h.events);
        let dup = only(&report, AnomalyKind::Duplicate, 1);
        let Anomaly::Duplicate { value, places } = &dup[0] else { panic!("{dup:?}") };
        assert_eq!(value, "b");
        let at: Vec<(u32, u64)> = places.iter().map(|p| (p.partition, p.offset)).collect();
        assert_eq!(at, [(0, 1), (0, 2)]);
    }

    #[test]
    fn an_offset_read_with_another_value_than_acked_is_inconsistent() {
        let mut h = History::new();
        h.send_ok(0, "a", 0, 0).send_ok(1, "b", 0, 1).send_info(2, "x");
        // A poll saw "x" where "b" was acknowledged and where the final drain read "b".
        h.poll(5, None, &[(0, &[(0, "a"), (1, "x")])]);
        h.final_read(0, &[(0, "a"), (1, "b")]);
        let report = check(&h.events);
        let bad = only(&report, AnomalyKind::InconsistentOffsets, 1);
        let Anomaly::InconsistentOffsets { partition: 0, offset: 1, values } = &bad[0] else { panic!("{bad:?}") };
        let seen: Vec<&str> = values.iter().map(|s| s.value.as_str()).collect();
        assert_eq!(seen, ["b", "x"]);
    }

    #[test]
    fn a_failed_send_that_is_read_is_an_aborted_read() {
        let mut h = History::new();
        h.send_ok(0, "a", 0, 0).send_fail(0, "b");
        h.poll(5, None, &[(0, &[(0, "a"), (1, "b")])]);
        let read = h.last();
        h.final_read(0, &[(0, "a"), (1, "b")]);
        let report = check(&h.events);
        let aborted = only(&report, AnomalyKind::AbortedRead, 1);
        assert_eq!(
            aborted[0],
            Anomaly::AbortedRead { value: "b".into(), fail_event: 3, partition: 0, offset: 1, read_event: read }
        );
    }

    #[test]
    fn a_later_ack_below_an_earlier_one_is_a_nonmonotonic_send() {
        let mut h = History::new();
        h.send_ok(0, "a", 0, 1).send_ok(0, "b", 0, 0).send_ok(1, "c", 1, 0);
        h.final_read(0, &[(0, "b"), (1, "a")]).final_read(1, &[(0, "c")]);
        let report = check(&h.events);
        let sends = only(&report, AnomalyKind::NonmonotonicSend, 1);
        assert!(
            matches!(
                &sends[0],
                Anomaly::NonmonotonicSend {
                    process: 0,
                    partition: 0,
                    earlier_offset: 1,
                    later_offset: 0,
                    earlier_event: 1,
                    later_event: 3,
                    ..
                }
            ),
            "{sends:?}"
        );
    }

    #[test]
    fn sends_in_flight_together_are_ordered_by_invocation() {
        let mut h = History::new();
        // Completions recorded out of order are fine while the offsets follow the invocations.
        h.send_invoke(0, "a").send_invoke(0, "b").send_ack(0, "b", 0, 1).send_ack(0, "a", 0, 0);
        // Then "d", invoked after "c", lands below it.
        h.send_invoke(0, "c").send_invoke(0, "d").send_ack(0, "c", 0, 3).send_ack(0, "d", 0, 2);
        h.final_read(0, &[(0, "a"), (1, "b"), (2, "d"), (3, "c")]);
        let report = check(&h.events);
        let sends = only(&report, AnomalyKind::NonmonotonicSend, 1);
        assert!(
            matches!(
                &sends[0],
                Anomaly::NonmonotonicSend { earlier_offset: 3, later_offset: 2, earlier_event: 6, later_event: 7, .. }
            ),
            "{sends:?}"
        );
    }
}
