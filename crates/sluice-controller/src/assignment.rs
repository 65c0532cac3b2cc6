//! Replica assignment: where a new partition's replicas go, and which of them is the preferred
//! leader. Deterministic — it depends only on the metadata — so every controller computes the
//! same assignment when it applies `CreateTopic`.
//!
//! # The rule
//!
//! Each partition of a new topic is placed in turn, counting the partitions placed before it:
//!
//! 1. **Replicas go to the live brokers with the fewest replicas** (water-filling). Sorting the
//!    live brokers by replica count, the first `rf` are taken — except that among brokers tied
//!    at the cut-off count, the ones with the *most* preferred leaderships are taken first.
//! 2. **The preferred leader is the chosen broker with the fewest preferred leaderships**; ties
//!    go to the broker with more replicas (one from the tied group of rule 1 when possible),
//!    then to the lower node id.
//! 3. The other replicas follow in node-id order.
//!
//! Rule 1 alone keeps replica counts within 1 of each other. The two tie-breaks keep preferred
//! leaderships within 1 too, with any mix of replication factors: they keep the brokers with an
//! extra leadership among those with an extra replica (or the other way round), so a broker that
//! still owes a leadership is always among the brokers that may take the next replica. Breaking
//! ties by node id only does not: on three brokers, one RF-3 partition then two RF-1 partitions
//! would give broker 1 two leaderships and broker 3 none.
//!
//! Both bounds hold while every broker is live and topics are only created. A deletion frees its
//! replicas wherever they were, so it can leave counts 2 or more apart; later placements fill the
//! emptiest brokers first and never widen the replica spread beyond `max(spread, 1)`, but
//! nothing moves existing replicas back into balance (that would be a reassignment, which moves
//! data).

use std::cmp::Reverse;
use std::collections::BTreeMap;

use sluice_common::NodeId;

/// How much one broker hosts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerLoad {
    /// Partition replicas assigned to it, over all topics.
    pub replicas: u32,
    /// Partitions whose preferred leader (first replica) it is.
    pub preferred_leaders: u32,
}

/// Every broker's load: derived from the topics, never stored in a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Loads {
    by_broker: BTreeMap<NodeId, BrokerLoad>,
}

impl Loads {
    /// The load of `node` (zero if it hosts nothing).
    pub(crate) fn get(&self, node: NodeId) -> BrokerLoad {
        self.by_broker.get(&node).copied().unwrap_or_default()
    }

    /// Counts a partition with `replicas` (preferred leader first).
    pub(crate) fn add(&mut self, replicas: &[NodeId]) {
        for (i, node) in replicas.iter().enumerate() {
            let load = self.by_broker.entry(*node).or_default();
            load.replicas += 1;
            load.preferred_leaders += u32::from(i == 0);
        }
    }

    /// Stops counting a partition with `replicas`, as [`Loads::add`] counted it.
    pub(crate) fn remove(&mut self, replicas: &[NodeId]) {
        for (i, node) in replicas.iter().enumerate() {
            let load = self.by_broker.get_mut(node).expect("removing a partition that was counted");
            load.replicas -= 1;
            load.preferred_leaders -= u32::from(i == 0);
            if load.replicas == 0 {
                // Forget it, so the loads equal those recounted from the topics (as after restore).
                self.by_broker.remove(node);
            }
        }
    }

    /// Chooses `rf` distinct brokers of `live` for a new partition, preferred leader first
    /// (the rule is in the module doc). Does not count it: call [`Loads::add`].
    pub(crate) fn place(&self, live: &[NodeId], rf: usize) -> Vec<NodeId> {
        assert!(rf >= 1 && rf <= live.len(), "placing {rf} replicas on {} live brokers", live.len());
        let mut by_replicas = live.to_vec();
        by_replicas.sort_by_key(|n| (self.get(*n).replicas, *n));
        let cutoff = self.get(by_replicas[rf - 1]).replicas;
        let (below, tied): (Vec<NodeId>, Vec<NodeId>) = by_replicas
            .into_iter()
            .filter(|n| self.get(*n).replicas <= cutoff)
            .partition(|n| self.get(*n).replicas < cutoff);
        let leader = *below
            .iter()
            .chain(&tied)
            .min_by_key(|n| (self.get(**n).preferred_leaders, Reverse(self.get(**n).replicas), **n))
            .expect("at least rf candidates");
        let mut tied: Vec<NodeId> = tied.into_iter().filter(|n| *n != leader).collect();
        tied.sort_by_key(|n| (Reverse(self.get(*n).preferred_leaders), *n));
        let mut followers: Vec<NodeId> = below.into_iter().filter(|n| *n != leader).collect();
        followers.extend(tied.into_iter().take(rf - 1 - followers.len()));
        followers.sort();
        let mut replicas = Vec::with_capacity(rf);
        replicas.push(leader);
        replicas.extend(followers);
        replicas
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(ids: &[u64]) -> Vec<NodeId> {
        ids.iter().map(|i| NodeId(*i)).collect()
    }

    fn place_and_add(loads: &mut Loads, live: &[NodeId], rf: usize) -> Vec<NodeId> {
        let replicas = loads.place(live, rf);
        loads.add(&replicas);
        replicas
    }

    fn spreads(loads: &Loads, live: &[NodeId]) -> (u32, u32) {
        let r: Vec<u32> = live.iter().map(|n| loads.get(*n).replicas).collect();
        let l: Vec<u32> = live.iter().map(|n| loads.get(*n).preferred_leaders).collect();
        let spread = |v: &[u32]| v.iter().max().unwrap() - v.iter().min().unwrap();
        (spread(&r), spread(&l))
    }

    #[test]
    fn rf3_on_three_brokers_rotates_the_preferred_leader() {
        let (mut loads, live) = (Loads::default(), nodes(&[1, 2, 3]));
        let placed: Vec<Vec<NodeId>> = (0..3).map(|_| place_and_add(&mut loads, &live, 3)).collect();
        assert_eq!(placed, vec![nodes(&[1, 2, 3]), nodes(&[2, 1, 3]), nodes(&[3, 1, 2])]);
    }

    #[test]
    fn replicas_go_to_the_emptiest_live_brokers() {
        let mut loads = Loads::default();
        loads.add(&nodes(&[1, 2]));
        loads.add(&nodes(&[2, 1]));
        assert_eq!(loads.place(&nodes(&[1, 2, 3, 4]), 2), nodes(&[3, 4]));
        // Broker 3 is not live: it gets nothing however empty it is.
        assert_eq!(loads.place(&nodes(&[1, 2, 4]), 2), nodes(&[4, 1]));
    }

    #[test]
    fn mixed_replication_factors_keep_leaderships_balanced() {
        let (mut loads, live) = (Loads::default(), nodes(&[1, 2, 3]));
        assert_eq!(place_and_add(&mut loads, &live, 3), nodes(&[1, 2, 3]));
        // Node-id tie-breaking would put both of these on broker 1.
        assert_eq!(place_and_add(&mut loads, &live, 1), nodes(&[2]));
        assert_eq!(place_and_add(&mut loads, &live, 1), nodes(&[3]));
        // Replicas (1, 2, 2), preferred leaderships (1, 1, 1).
        assert_eq!(spreads(&loads, &live), (1, 0));
    }

    #[test]
    fn removing_a_partition_frees_its_counts() {
        let mut loads = Loads::default();
        loads.add(&nodes(&[1, 2]));
        loads.remove(&nodes(&[1, 2]));
        assert_eq!(loads.get(NodeId(1)), BrokerLoad::default());
        assert_eq!(loads, Loads::default(), "as if never counted");
    }

    #[test]
    fn every_mix_of_replication_factors_stays_within_one() {
        // Exhaustive over short sequences: every RF sequence of length 6 on 4 brokers.
        let live = nodes(&[1, 2, 3, 4]);
        for seq in 0..4usize.pow(6) {
            let mut loads = Loads::default();
            for step in 0..6 {
                let rf = (seq / 4usize.pow(step)) % 4 + 1;
                let replicas = place_and_add(&mut loads, &live, rf);
                assert_eq!(replicas.len(), rf);
                let (r, l) = spreads(&loads, &live);
                assert!(r <= 1 && l <= 1, "sequence {seq} step {step}: spreads ({r}, {l})");
            }
        }
    }
}
