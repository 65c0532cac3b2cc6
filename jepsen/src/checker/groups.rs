//! Consumer groups: at-least-once delivery. Every offset below a group's final committed
//! offset must have reached some member of the group (redelivery is allowed and counted; loss
//! is not). A group with a tag filter (`subscribe`) owes only the messages its filter selects
//! ([`tag_of`] of their value), and must never receive another (`filter-leak`). The range checked starts at the lowest position any `assign` of the group named
//! for the partition (a group reading from `latest` never owed the earlier offsets), or at 0
//! when no assign named one.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::Found;
use super::index::Index;
use crate::history::{Event, Kind, Op, tag_of};
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
    /// The tags its filter selects, if it has one.
    filter: Option<BTreeSet<String>>,
}

impl Group {
    /// Whether its filter (if any) selects a message with `value`.
    fn selects(&self, value: &str) -> bool {
        self.filter.as_ref().is_none_or(|tags| tag_of(value).is_some_and(|t| tags.contains(&t)))
    }
}

/// Checks every group and returns their delivery figures, in group-name order.
pub(crate) fn check(events: &[Event], index: &Index<'_>, found: &mut Found) -> Vec<GroupStats> {
    let groups = collect(events);
    let at: HashMap<(u32, u64), &str> = index.reads.iter().map(|r| ((r.partition, r.offset), r.value)).collect();
    let held: BTreeMap<(u32, u64), &str> = at.iter().map(|(k, v)| (*k, *v)).collect();
    leaks(events, &groups, found);
    let mut stats = Vec::with_capacity(groups.len());
    for (name, group) in &groups {
        for &(partition, committed) in &group.committed {
            if group.filter.is_some() {
                lost_filtered(name, group, partition, committed, &held, found);
            } else {
                lost(name, group, partition, committed, &at, found);
            }
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
            (Op::Subscribe { group: name, tags }, _) => {
                groups.entry(name).or_default().filter = Some(tags.iter().cloned().collect());
            }
            (Op::FinalCommitted { group: name, offsets }, _) => {
                groups.entry(name).or_default().committed.clone_from(offsets);
            }
            _ => {}
        }
    }
    groups
}

/// Reports every message a filtered group's members received that its filter does not select.
fn leaks(events: &[Event], groups: &BTreeMap<&str, Group>, found: &mut Found) {
    for event in events {
        let (Op::Poll { group: Some(name), reads }, Kind::Ok) = (&event.op, event.kind) else { continue };
        let Some(group) = groups.get(name.as_str()).filter(|g| g.filter.is_some()) else { continue };
        for (partition, entries) in reads {
            for (offset, value) in entries.iter().filter(|(_, v)| !group.selects(v)) {
                found.push(Anomaly::FilterLeak {
                    group: name.clone(),
                    partition: *partition,
                    offset: *offset,
                    value: value.clone(),
                    event: event.index,
                });
            }
        }
    }
}

/// [`lost`] for a filtered group: of the messages the partition holds in [start, committed),
/// those its filter selects that no member received, and any offset committed past the end of
/// what the partition holds.
fn lost_filtered(
    name: &str,
    group: &Group,
    partition: u32,
    committed: u64,
    held: &BTreeMap<(u32, u64), &str>,
    found: &mut Found,
) {
    let start = group.lowest_start.get(&partition).copied().unwrap_or(0);
    if committed <= start {
        return;
    }
    for (&(_, offset), value) in held.range((partition, start)..(partition, committed)) {
        if group.selects(value) && !group.delivered.contains(&(partition, offset)) {
            let value = Some((*value).to_owned());
            found.push(Anomaly::GroupLost { group: name.to_owned(), partition, offset, committed, value });
        }
    }
    let end = held.range((partition, 0)..=(partition, u64::MAX)).next_back().map_or(0, |(&(_, o), _)| o + 1);
    if committed > end.max(start) {
        found.count_more(AnomalyKind::GroupLost, committed - end.max(start));
    }
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

    /// Values `0-n` carry tag `t{n % 4}`; the group's filter selects t0 and t2 (even n).
    fn filtered_history() -> History {
        let mut h = History::new();
        h.subscribe("f", &["t0", "t2"]);
        for n in 0..4u64 {
            h.send_ok(0, &format!("0-{n}"), 0, n);
        }
        h.final_read(0, &[(0, "0-0"), (1, "0-1"), (2, "0-2"), (3, "0-3")]);
        h.assign(5, Some("f"), &[(0, 0)]);
        h
    }

    #[test]
    fn a_filtered_group_owes_only_what_its_filter_selects_and_may_skip_the_rest() {
        let mut h = filtered_history();
        h.poll(5, Some("f"), &[(0, &[(0, "0-0")])]).poll(5, Some("f"), &[(0, &[(2, "0-2")])]);
        h.final_committed("f", &[(0, 4)]);
        let report = check(&h.events);
        only(&report, AnomalyKind::GroupLost, 0);
        assert_eq!(report.groups[0].delivered, 2);
    }

    #[test]
    fn untagged_probes_are_owed_to_no_filtered_group() {
        let mut h = filtered_history();
        h.send_ok(u32::MAX - 1, "probe-4", 0, 4)
            .final_read(0, &[(0, "0-0"), (1, "0-1"), (2, "0-2"), (3, "0-3"), (4, "probe-4")]);
        h.poll(5, Some("f"), &[(0, &[(0, "0-0"), (2, "0-2")])]);
        h.final_committed("f", &[(0, 5)]);
        only(&check(&h.events), AnomalyKind::GroupLost, 0);
        assert_eq!(crate::history::tag_of("probe-12"), None);
        assert_eq!(crate::history::tag_of("3-14").as_deref(), Some("t2"));
    }

    #[test]
    fn a_filtered_group_receiving_what_its_filter_leaves_out_is_a_filter_leak() {
        let mut h = filtered_history();
        h.poll(5, Some("f"), &[(0, &[(0, "0-0"), (1, "0-1"), (2, "0-2")])]);
        h.final_committed("f", &[(0, 3)]);
        let leak = only(&check(&h.events), AnomalyKind::FilterLeak, 1);
        assert!(matches!(&leak[0], Anomaly::FilterLeak { offset: 1, value, .. } if value == "0-1"), "{leak:?}");
    }

    #[test]
    fn a_filtered_group_that_commits_past_a_selected_message_it_never_received_lost_it() {
        let mut h = filtered_history();
        h.poll(5, Some("f"), &[(0, &[(0, "0-0")])]);
        h.final_committed("f", &[(0, 4)]);
        let lost = only(&check(&h.events), AnomalyKind::GroupLost, 1);
        assert!(matches!(&lost[0], Anomaly::GroupLost { offset: 2, .. }), "{lost:?}");
        let mut past_the_end = filtered_history();
        past_the_end.poll(5, Some("f"), &[(0, &[(0, "0-0"), (2, "0-2")])]).final_committed("f", &[(0, 6)]);
        only(&check(&past_the_end.events), AnomalyKind::GroupLost, 2);
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
