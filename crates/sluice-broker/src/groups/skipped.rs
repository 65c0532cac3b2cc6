//! What groups' filters skipped (docs/FILTERS.md), as their members report it: each heartbeat
//! carries the member's running count per topic. Kept in the coordinator's memory only — a
//! statistic for `DescribeGroup`, not state: after a failover the new coordinator counts from
//! the next reports of the members still there.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use sluice_proto::v1;

/// Per group: each live member's latest counts, and the totals of members gone since.
#[derive(Debug, Default)]
pub(crate) struct SkipCounts {
    groups: Mutex<HashMap<String, GroupSkips>>,
}

#[derive(Debug, Default)]
struct GroupSkips {
    members: HashMap<String, BTreeMap<String, u64>>,
    departed: BTreeMap<String, u64>,
}

impl GroupSkips {
    fn fold(&mut self, member: &str) {
        for (topic, count) in self.members.remove(member).into_iter().flatten() {
            *self.departed.entry(topic).or_default() += count;
        }
    }
}

impl SkipCounts {
    /// Takes `member`'s report (its counts since it joined); folds into the totals the counts
    /// of members `is_member` no longer knows, and `member`'s own if it `left`.
    pub fn report(
        &self,
        group: &str,
        member: &str,
        counts: &[v1::TopicCount],
        left: bool,
        is_member: impl Fn(&str) -> bool,
    ) {
        let mut groups = self.groups.lock().expect("skip counts lock");
        if counts.is_empty() && !groups.contains_key(group) {
            return;
        }
        let g = groups.entry(group.to_owned()).or_default();
        if !counts.is_empty() {
            g.members.insert(member.to_owned(), counts.iter().map(|c| (c.topic.clone(), c.count)).collect());
        }
        let gone: Vec<String> =
            g.members.keys().filter(|m| (left && *m == member) || (*m != member && !is_member(m))).cloned().collect();
        gone.iter().for_each(|m| g.fold(m));
    }

    /// What `group`'s filters skipped, per topic.
    pub fn of(&self, group: &str) -> Vec<v1::TopicCount> {
        let groups = self.groups.lock().expect("skip counts lock");
        let Some(g) = groups.get(group) else { return Vec::new() };
        let mut totals = g.departed.clone();
        for counts in g.members.values() {
            for (topic, count) in counts {
                *totals.entry(topic.clone()).or_default() += count;
            }
        }
        totals.into_iter().map(|(topic, count)| v1::TopicCount { topic, count }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(n: u64) -> Vec<v1::TopicCount> {
        vec![v1::TopicCount { topic: "t".into(), count: n }]
    }

    #[test]
    fn running_counts_replace_each_other_and_departed_members_still_count() {
        let s = SkipCounts::default();
        s.report("g", "a", &counts(5), false, |_| true);
        s.report("g", "a", &counts(7), false, |_| true);
        s.report("g", "b", &counts(3), false, |_| true);
        assert_eq!(s.of("g"), counts(10));
        s.report("g", "a", &[], true, |_| true);
        assert_eq!(s.of("g"), counts(10), "a left: its 7 stay counted");
        s.report("g", "c", &counts(1), false, |m| m != "b");
        assert_eq!(s.of("g"), counts(11), "b expired: folded, not lost");
        assert!(s.of("other").is_empty());
    }
}
