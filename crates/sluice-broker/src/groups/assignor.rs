//! Sets of partitions ([`Assignment`]) and the sticky, balanced assignor that computes a group's
//! target assignment at each group epoch. Pure and deterministic: the same members, previous
//! targets and partition counts always give the same result, whatever the order of the input.
//!
//! The assignor works in three steps:
//!
//! 1. **Keep**: every member keeps the partitions of its previous target that still exist and
//!    that it still subscribes to (a partition claimed twice goes to the smaller member id).
//! 2. **Fill**: partitions nobody kept go, one by one, to the least loaded member subscribed to
//!    their topic (ties: the smaller member id). Partitions with fewer eligible members go
//!    first, so a topic that only one member wants does not end up crowding that member.
//! 3. **Balance**: while some member owns at least two partitions more than a member that could
//!    take one of them, the most loaded such member hands one partition (its highest of that
//!    topic) to the least loaded eligible member.
//!
//! Each move of step 3 lowers the sum of the squared counts, so it ends; members with equal
//! subscriptions end with counts that differ by at most one, and only the surplus moves: three
//! members holding four partitions each hand exactly three over to a fourth member. With
//! heterogeneous subscriptions a single move may not be enough to even counts out (member A
//! wants only `t1`, C only `t2`, B both: A 3, B 2, C 1 would need B to pass a `t2` partition to
//! C *and* take a `t1` one from A); such chains are not searched for.

use std::collections::{BTreeMap, BTreeSet};

use sluice_proto::{internal, v1};

/// A set of partitions, by topic. Never stores a topic with no partitions, so two equal sets
/// compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Assignment(BTreeMap<String, BTreeSet<u32>>);

impl Assignment {
    /// The set of a stored record's partition lists.
    pub fn from_internal(lists: &[internal::TopicPartitions]) -> Assignment {
        let mut set = Assignment::default();
        for list in lists {
            for &p in &list.partitions {
                set.insert(&list.topic, p);
            }
        }
        set
    }

    /// The set of a request's partition lists.
    pub fn from_client(lists: &[v1::TopicPartitions]) -> Assignment {
        let mut set = Assignment::default();
        for list in lists {
            for &p in &list.partitions {
                set.insert(&list.topic, p);
            }
        }
        set
    }

    /// As stored in records: by topic, partitions ascending.
    pub fn to_internal(&self) -> Vec<internal::TopicPartitions> {
        let list = |(topic, ps): (&String, &BTreeSet<u32>)| internal::TopicPartitions {
            topic: topic.clone(),
            partitions: ps.iter().copied().collect(),
        };
        self.0.iter().map(list).collect()
    }

    /// As sent to clients: by topic, partitions ascending.
    pub fn to_client(&self) -> Vec<v1::TopicPartitions> {
        let list = |(topic, ps): (&String, &BTreeSet<u32>)| v1::TopicPartitions {
            topic: topic.clone(),
            partitions: ps.iter().copied().collect(),
        };
        self.0.iter().map(list).collect()
    }

    /// Adds a partition.
    pub fn insert(&mut self, topic: &str, partition: u32) {
        match self.0.get_mut(topic) {
            Some(ps) => {
                ps.insert(partition);
            }
            None => {
                self.0.insert(topic.to_owned(), BTreeSet::from([partition]));
            }
        }
    }

    /// Whether the set holds `partition` of `topic`.
    pub fn contains(&self, topic: &str, partition: u32) -> bool {
        self.0.get(topic).is_some_and(|ps| ps.contains(&partition))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of partitions.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.values().map(BTreeSet::len).sum()
    }

    /// Every partition, by topic then number.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u32)> {
        self.0.iter().flat_map(|(t, ps)| ps.iter().map(move |&p| (t.as_str(), p)))
    }

    /// The partitions of `self` that `other` also holds.
    pub fn intersection(&self, other: &Assignment) -> Assignment {
        self.filtered(|t, p| other.contains(t, p))
    }

    /// The partitions of `self` that `other` does not hold.
    pub fn difference(&self, other: &Assignment) -> Assignment {
        self.filtered(|t, p| !other.contains(t, p))
    }

    /// Whether the two sets share a partition.
    pub fn intersects(&self, other: &Assignment) -> bool {
        self.iter().any(|(t, p)| other.contains(t, p))
    }

    /// Adds every partition of `other`.
    pub fn extend(&mut self, other: &Assignment) {
        for (t, p) in other.iter() {
            self.insert(t, p);
        }
    }

    fn filtered(&self, keep: impl Fn(&str, u32) -> bool) -> Assignment {
        let mut set = Assignment::default();
        for (t, p) in self.iter().filter(|&(t, p)| keep(t, p)) {
            set.insert(t, p);
        }
        set
    }
}

/// What the assignor needs to know of one member.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemberSpec<'a> {
    /// The member id (unique in the group).
    pub id: &'a str,
    /// The topics it subscribes to.
    pub topics: &'a BTreeSet<String>,
    /// Its target at the previous group epoch: what it keeps if that stays balanced.
    pub previous: &'a Assignment,
}

/// The target assignment of every member of `members` (each present in the result, possibly
/// with nothing), given the partition counts of the topics that exist. Topics absent from
/// `partition_counts` contribute no partitions.
pub(crate) fn assign(
    members: &[MemberSpec<'_>],
    partition_counts: &BTreeMap<String, u32>,
) -> BTreeMap<String, Assignment> {
    let mut sorted: Vec<MemberSpec<'_>> = members.to_vec();
    sorted.sort_by(|a, b| a.id.cmp(b.id));
    let mut balancer = Balancer::new(&sorted, partition_counts);
    balancer.keep(&sorted);
    balancer.fill();
    balancer.balance();
    balancer.result(&sorted)
}

/// A partition inside the balancer: (topic index, partition number).
type Slot = (usize, u32);

/// The assignor's working state; members and topics are indices (members in id order).
struct Balancer<'a> {
    /// Subscribed topics that exist, by name, with their partition counts.
    topics: Vec<(&'a str, u32)>,
    /// Members subscribed to each topic, ascending.
    subscribers: Vec<Vec<usize>>,
    /// The member owning each partition of each topic.
    owner: Vec<Vec<Option<usize>>>,
    /// Partitions owned by each member.
    owned: Vec<BTreeSet<Slot>>,
}

impl<'a> Balancer<'a> {
    fn new(members: &[MemberSpec<'_>], partition_counts: &'a BTreeMap<String, u32>) -> Balancer<'a> {
        let mut topics = Vec::new();
        let mut subscribers = Vec::new();
        for (name, &count) in partition_counts {
            let subs: Vec<usize> = (0..members.len()).filter(|&m| members[m].topics.contains(name)).collect();
            if count > 0 && !subs.is_empty() {
                topics.push((name.as_str(), count));
                subscribers.push(subs);
            }
        }
        let owner = topics.iter().map(|&(_, count)| vec![None; count as usize]).collect();
        Balancer { topics, subscribers, owner, owned: vec![BTreeSet::new(); members.len()] }
    }

    fn topic_index(&self, name: &str) -> Option<usize> {
        self.topics.binary_search_by(|(t, _)| (*t).cmp(name)).ok()
    }

    fn give(&mut self, (t, p): Slot, to: usize) {
        if let Some(from) = self.owner[t][p as usize].replace(to) {
            self.owned[from].remove(&(t, p));
        }
        self.owned[to].insert((t, p));
    }

    /// Step 1: previous targets stay where they are when still valid.
    fn keep(&mut self, members: &[MemberSpec<'_>]) {
        for (m, spec) in members.iter().enumerate() {
            for (topic, p) in spec.previous.iter() {
                let Some(t) = self.topic_index(topic) else { continue };
                let valid = p < self.topics[t].1 && self.subscribers[t].binary_search(&m).is_ok();
                if valid && self.owner[t][p as usize].is_none() {
                    self.give((t, p), m);
                }
            }
        }
    }

    /// The least loaded member subscribed to topic `t`, other than `except`.
    fn least_loaded(&self, t: usize, except: Option<usize>) -> Option<usize> {
        self.subscribers[t].iter().copied().filter(|&m| Some(m) != except).min_by_key(|&m| (self.owned[m].len(), m))
    }

    /// Step 2: unowned partitions go to the least loaded eligible member.
    fn fill(&mut self) {
        let mut free: Vec<Slot> = Vec::new();
        for (t, owners) in self.owner.iter().enumerate() {
            free.extend((0..).zip(owners).filter(|(_, o)| o.is_none()).map(|(p, _)| (t, p)));
        }
        free.sort_by_key(|&(t, p)| (self.subscribers[t].len(), t, p));
        for slot in free {
            let m = self.least_loaded(slot.0, None).expect("only topics with subscribers are kept");
            self.give(slot, m);
        }
    }

    /// Step 3: moves single partitions from loaded members to members with two fewer.
    fn balance(&mut self) {
        let total: usize = self.topics.iter().map(|&(_, c)| c as usize).sum();
        // Each move lowers the sum of squared counts (at most total²) by at least two.
        for _ in 0..=total * total / 2 {
            let Some((slot, to)) = self.find_move() else { return };
            self.give(slot, to);
        }
        unreachable!("the balancing loop is bounded by the sum of squared counts");
    }

    fn find_move(&self) -> Option<(Slot, usize)> {
        let mut donors: Vec<usize> = (0..self.owned.len()).collect();
        donors.sort_by_key(|&m| (std::cmp::Reverse(self.owned[m].len()), m));
        for donor in donors {
            let load = self.owned[donor].len();
            let mut best: Option<(usize, usize, usize)> = None; // (receiver load, topic, receiver)
            let topics: BTreeSet<usize> = self.owned[donor].iter().map(|&(t, _)| t).collect();
            for t in topics {
                let Some(r) = self.least_loaded(t, Some(donor)) else { continue };
                let candidate = (self.owned[r].len(), t, r);
                if candidate.0 + 2 <= load && best.is_none_or(|b| candidate < b) {
                    best = Some(candidate);
                }
            }
            if let Some((_, t, r)) = best {
                let slot = *self.owned[donor].range((t, 0)..=(t, u32::MAX)).next_back().expect("donor owns topic");
                return Some((slot, r));
            }
        }
        None
    }

    fn result(&self, members: &[MemberSpec<'_>]) -> BTreeMap<String, Assignment> {
        let mut out = BTreeMap::new();
        for (m, spec) in members.iter().enumerate() {
            let mut set = Assignment::default();
            for &(t, p) in &self.owned[m] {
                set.insert(self.topics[t].0, p);
            }
            out.insert(spec.id.to_owned(), set);
        }
        out
    }
}

#[cfg(test)]
#[path = "assignor_tests.rs"]
mod tests;
