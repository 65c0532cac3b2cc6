//! Replica divergence: each node's local copy of a partition (`node_log`, read from its data
//! directory after the run) must agree with every other copy at each offset both hold, and
//! must hold every acknowledged value below its end.
//!
//! Copies are compared only up to the partition's highest offset anyone acknowledged or read:
//! above it, entries were never committed as far as the history knows, and Raft may still
//! legitimately overwrite a follower's uncommitted tail.

use std::collections::BTreeMap;

use super::Found;
use super::index::Index;
use crate::history::{Event, Op};
use crate::report::Anomaly;

/// One node's copy of a partition.
struct Copy<'a> {
    node: u64,
    event: u64,
    entries: BTreeMap<u64, &'a str>,
}

/// Compares the copies of every partition with each other and with the acknowledgements.
pub(crate) fn check(events: &[Event], index: &Index<'_>, found: &mut Found) {
    let copies = collect(events);
    let mut committed: BTreeMap<u32, u64> = index.highest_read.clone();
    for (partition, offset, _, _) in index.acks() {
        let highest = committed.entry(partition).or_insert(offset);
        *highest = (*highest).max(offset);
    }
    for (partition, copies) in &copies {
        let Some(&bound) = committed.get(partition) else { continue };
        mismatches(*partition, copies, bound, found);
    }
    for (partition, offset, value, _) in index.acks() {
        for copy in copies.get(&partition).into_iter().flatten() {
            let end = copy.entries.last_key_value().map_or(0, |(o, _)| *o);
            let held = copy.entries.get(&offset).copied();
            if offset <= end && held != Some(value) {
                found.push(Anomaly::ReplicaMissing {
                    node: copy.node,
                    partition,
                    offset,
                    value: value.to_owned(),
                    found: held.map(str::to_owned),
                    event: copy.event,
                });
            }
        }
    }
}

/// Every partition's copies, by node; a later `node_log` of the same node replaces an earlier.
fn collect(events: &[Event]) -> BTreeMap<u32, Vec<Copy<'_>>> {
    let mut copies: BTreeMap<u32, Vec<Copy<'_>>> = BTreeMap::new();
    for event in events {
        let Op::NodeLog { node, partition, entries } = &event.op else { continue };
        let copy =
            Copy { node: *node, event: event.index, entries: entries.iter().map(|(o, v)| (*o, v.as_str())).collect() };
        let list = copies.entry(*partition).or_default();
        list.retain(|c| c.node != *node);
        list.push(copy);
    }
    for list in copies.values_mut() {
        list.sort_by_key(|c| c.node);
    }
    copies
}

/// One anomaly per offset (up to `bound`) where the copies holding it disagree.
fn mismatches(partition: u32, copies: &[Copy<'_>], bound: u64, found: &mut Found) {
    let mut at: BTreeMap<u64, Vec<(u64, &str)>> = BTreeMap::new();
    for copy in copies {
        for (&offset, &value) in copy.entries.range(..=bound) {
            at.entry(offset).or_default().push((copy.node, value));
        }
    }
    for (offset, replicas) in at {
        if replicas.iter().any(|(_, v)| *v != replicas[0].1) {
            let replicas = replicas.into_iter().map(|(n, v)| (n, v.to_owned())).collect();
            found.push(Anomaly::ReplicaMismatch { partition, offset, replicas });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{History, only};
    use crate::checker::check;
    use crate::report::{Anomaly, AnomalyKind};

    fn acked_and_drained() -> History {
        let mut h = History::new();
        h.send_ok(0, "a", 0, 0).send_ok(0, "b", 0, 1);
        h.final_read(0, &[(0, "a"), (1, "b")]);
        h
    }

    #[test]
    fn replicas_disagreeing_at_an_offset_diverge() {
        let mut h = acked_and_drained();
        h.node_log(1, 0, &[(0, "a"), (1, "b")]).node_log(2, 0, &[(0, "a"), (1, "b")]);
        // Node 3 holds "z" where "b" was acknowledged: it disagrees with the other copies,
        // and it misses an acknowledged value — two findings.
        h.node_log(3, 0, &[(0, "a"), (1, "z")]);
        let report = check(&h.events);
        let found = only(&report, AnomalyKind::Divergence, 2);
        let replicas = vec![(1, "b".to_owned()), (2, "b".to_owned()), (3, "z".to_owned())];
        assert_eq!(found[0], Anomaly::ReplicaMismatch { partition: 0, offset: 1, replicas });
        assert!(
            matches!(&found[1], Anomaly::ReplicaMissing { node: 3, offset: 1, found: Some(z), .. } if z == "z"),
            "{found:?}"
        );
    }

    #[test]
    fn a_replica_with_a_hole_below_its_end_misses_an_ack() {
        let mut h = acked_and_drained();
        h.send_ok(0, "c", 0, 2).final_read(0, &[(0, "a"), (1, "b"), (2, "c")]);
        h.node_log(1, 0, &[(0, "a"), (1, "b"), (2, "c")]).node_log(2, 0, &[(0, "a"), (2, "c")]);
        let event = h.last();
        let report = check(&h.events);
        let found = only(&report, AnomalyKind::Divergence, 1);
        let expected =
            Anomaly::ReplicaMissing { node: 2, partition: 0, offset: 1, value: "b".into(), found: None, event };
        assert_eq!(found[0], expected);
    }

    #[test]
    fn a_lagging_copy_and_an_uncommitted_tail_are_not_divergence() {
        let mut h = acked_and_drained();
        h.node_log(1, 0, &[(0, "a"), (1, "b")]).node_log(2, 0, &[(0, "a")]);
        h.node_log(3, 0, &[(0, "a"), (1, "b"), (2, "never-acked")]);
        h.node_log(1, 0, &[(0, "a"), (1, "b"), (2, "other")]);
        assert!(check(&h.events).is_clean());
    }
}
