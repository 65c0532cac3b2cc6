//! Consumer groups: at-least-once delivery. Every offset below a group's final committed
//! offset must have reached some member of the group (redelivery is allowed and counted; loss
//! is not). The range checked starts at the lowest position any `assign` of the group named
//! for the partition (a group reading from `latest` never owed the earlier offsets), or at 0
//! when no assign named one.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::Found;
use super::index::Index;
use crate::history::{Event, Kind, Op};
use crate::report::{Anomaly, AnomalyKind, EXAMPLES_PER_KIND, GroupStats};

/// What the history says about one group.
#[derive(Debug, Default)]
struct Group {
    /// Every (partition, offset) a member received.
    delivered: BTreeSet<(u32, u64)>,
    /// Deliveries in total, redeliveries included.
    deliveries: u64,
    /// The lowest position an assign named, per partition.
    lowest_start: HashMap<u32, u64>,
    /// The last `final_committed` offsets.
    committed: Vec<(u32, u64)>,
}

/// Checks every group and returns their delivery figures, in group-name order.
pub(crate) fn check(events: &[Event], index: &Index<'_>, found: &mut Found) -> Vec<GroupStats> {
    let groups = collect(events);
    let at: HashMap<(u32, u64), &str> = index.reads.iter().map(|r| ((r.partition, r.offset), r.value)).collect();
    let mut stats = Vec::with_capacity(groups.len());
    for (name, group) in &groups {
        for &(partition, committed) in &group.committed {
            lost(name, group, partition, committed, &at, found);
        }
        stats.push(GroupStats {
            group: name.to_string(),
            delivered: group.delivered.len() as u64,
            redeliveries: group.deliveries - group.delivered.len() as u64,
            committed: group.committed.clone(),
        });
    }
    stats
}

fn collect(events: &[Event]) -> BTreeMap<&str, Group> {
    let mut groups: BTreeMap<&str, Group> = BTreeMap::new();
    for event in events {
        match (&event.op, event.kind) {
            (Op::Poll { group: Some(name), reads }, Kind::Ok) => {
                let group = groups.entry(name).or_default();
                for (partition, entries) in reads {
                    for &(offset, _) in entries {
                        group.delivered.insert((*partition, offset));
                        group.deliveries += 1;
                    }
                }
            }
            (Op::Assign { group: Some(name), positions, .. }, Kind::Ok) => {
                let group = groups.entry(name).or_default();
                for &(partition, position) in positions {
                    let lowest = group.lowest_start.entry(partition).or_insert(position);
                    *lowest = (*lowest).min(position);
                }
            }
            (Op::Commit { group: name, .. }, _) => {
                groups.entry(name).or_default();
            }
            (Op::FinalCommitted { group: name, offsets }, _) => {
                groups.entry(name).or_default().committed.clone_from(offsets);
            }
            _ => {}
        }
    }
    groups
}

/// Reports the offsets of `partition` in [start, committed) no member received: all are
/// counted, the first few kept as evidence. Counting by arithmetic keeps a wild committed
/// offset (a bug that commits `u64::MAX`) from turning into a loop over every offset.
fn lost(name: &str, group: &Group, partition: u32, committed: u64, at: &HashMap<(u32, u64), &str>, found: &mut Found) {
    let start = group.lowest_start.get(&partition).copied().unwrap_or(0);
    if committed <= start {
        return;
    }
    let received = group.delivered.range((partition, start)..(partition, committed)).count() as u64;
    let missing = committed - start - received;
    let mut shown = 0;
    let mut offset = start;
    while shown < missing.min(EXAMPLES_PER_KIND as u64) {
        if !group.delivered.contains(&(partition, offset)) {
            found.push(Anomaly::GroupLost {
                group: name.to_owned(),
                partition,
                offset,
                committed,
                value: at.get(&(partition, offset)).map(|v| (*v).to_owned()),
            });
            shown += 1;
        }
        offset += 1;
    }
    found.count_more(AnomalyKind::GroupLost, missing - shown);
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{History, only};
    use crate::checker::check;
    use crate::report::{Anomaly, AnomalyKind};

    #[test]
    fn an_offset_committed_past_but_never_received_is_group_lost() {
        let mut h = History::new();
        h.send_ok(0, "a", 0, 0).send_ok(0, "b", 0, 1).send_ok(0, "c", 0, 2);
        h.assign(5, Some("g"), &[(0, 0)]).poll(5, Some("g"), &[(0, &[(0, "a")])]);
        // The member's position jumped (its poll timed out) and the group committed past "b".
        h.poll_info(5, Some("g")).poll(5, Some("g"), &[(0, &[(2, "c")])]);
        h.commit(5, "g", &[(0, 3)]);
        h.final_read(0, &[(0, "a"), (1, "b"), (2, "c")]).final_committed("g", &[(0, 3)]);
        let report = check(&h.events);
        let lost = only(&report, AnomalyKind::GroupLost, 1);
        let expected =
            Anomaly::GroupLost { group: "g".into(), partition: 0, offset: 1, committed: 3, value: Some("b".into()) };
        assert_eq!(lost[0], expected);
        assert_eq!((report.groups[0].delivered, report.groups[0].redeliveries), (2, 0));
    }

    #[test]
    fn a_wild_committed_offset_is_counted_in_full_without_looping_over_it() {
        let mut h = History::new();
        h.send_ok(0, "a", 0, 0).final_read(0, &[(0, "a")]);
        h.assign(5, Some("g"), &[(0, 0)]).poll(5, Some("g"), &[(0, &[(0, "a")])]);
        h.final_committed("g", &[(0, u64::MAX)]);
        let report = check(&h.events);
        let lost = only(&report, AnomalyKind::GroupLost, u64::MAX - 1);
        assert_eq!(lost.len(), crate::report::EXAMPLES_PER_KIND);
        assert!(matches!(lost[0], Anomaly::GroupLost { offset: 1, value: None, .. }), "{lost:?}");
    }
}
