//! [`Metadata`]: the controller's replicated state and the [`Fsm`] over it.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use sluice_common::{NodeId, TopicName};
use sluice_raft::Fsm;

use crate::assignment::{BrokerLoad, Loads};
use crate::broker::Broker;
use crate::command::ControllerCommand;
use crate::error::ControllerError;
use crate::limits::{MAX_ADDRESS_LEN, MAX_BROKERS, MAX_CLUSTER_PARTITIONS, MAX_PRODUCER_ID};
use crate::reply::ControllerReply;
use crate::topic::{FIRST_PARTITION_GROUP_ID, FIRST_PRODUCER_ID, Partition, Topic};
use crate::wire::snapshot;

/// The cluster's metadata: brokers, topics, partition assignments and leaders.
///
/// Changed only by [`Fsm::apply`] (commands in log order), read through the query methods.
/// Everything in it derives from the commands and their log indexes alone, so every controller
/// holds the same metadata after the same log prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub(crate) brokers: BTreeMap<NodeId, Broker>,
    pub(crate) topics: BTreeMap<TopicName, Topic>,
    /// The group id the next partition gets; only ever grows.
    pub(crate) next_group_id: u64,
    /// The producer id the next `AllocateProducerId` hands out; starts at 1, only ever grows.
    pub(crate) next_producer_id: u64,
    /// Log index of the last applied command.
    pub(crate) version: u64,
    /// Replicas and preferred leaderships per broker, derived from `topics`.
    pub(crate) loads: Loads,
}

impl Default for Metadata {
    fn default() -> Metadata {
        Metadata::new()
    }
}

impl Metadata {
    /// Empty metadata: no brokers, no topics, version 0.
    pub fn new() -> Metadata {
        Metadata {
            brokers: BTreeMap::new(),
            topics: BTreeMap::new(),
            next_group_id: FIRST_PARTITION_GROUP_ID,
            next_producer_id: FIRST_PRODUCER_ID,
            version: 0,
            loads: Loads::default(),
        }
    }

    /// The log index of the last applied command: it grows with every command (refused ones
    /// included), so a client's cached routes are current while the version is unchanged.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Every registered broker, by node id.
    pub fn brokers(&self) -> impl Iterator<Item = &Broker> {
        self.brokers.values()
    }

    /// Broker `node_id`, if registered.
    pub fn broker(&self, node_id: NodeId) -> Option<&Broker> {
        self.brokers.get(&node_id)
    }

    /// The live brokers' node ids, ascending.
    pub fn live_brokers(&self) -> Vec<NodeId> {
        self.brokers.values().filter(|b| b.live).map(|b| b.node_id).collect()
    }

    /// Topic `name`, if it exists (an invalid name simply does not).
    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.get(&TopicName::new(name).ok()?)
    }

    /// Every topic, by name.
    pub fn topics(&self) -> impl Iterator<Item = &Topic> {
        self.topics.values()
    }

    /// How many replicas and preferred leaderships `node_id` has.
    pub fn load(&self, node_id: NodeId) -> BrokerLoad {
        self.loads.get(node_id)
    }

    /// The group id the next partition will get.
    pub fn next_group_id(&self) -> u64 {
        self.next_group_id
    }

    /// The producer id the next allocation will hand out.
    pub fn next_producer_id(&self) -> u64 {
        self.next_producer_id
    }

    /// Partitions in the cluster, over all topics.
    pub fn partition_count(&self) -> u64 {
        self.topics.values().map(|t| t.partitions.len() as u64).sum()
    }

    /// Checks every invariant of the metadata; `Err` names the first one broken. [`Fsm::restore`]
    /// runs it on every snapshot, so a damaged one is refused rather than served.
    pub fn check(&self) -> Result<(), String> {
        if self.brokers.len() > MAX_BROKERS {
            return Err(format!("{} brokers; the limit is {MAX_BROKERS}", self.brokers.len()));
        }
        self.brokers.iter().try_for_each(|(id, b)| check_broker(*id, b))?;
        if !(FIRST_PRODUCER_ID..=MAX_PRODUCER_ID + 1).contains(&self.next_producer_id) {
            return Err(format!("next producer id {} is out of range", self.next_producer_id));
        }
        if self.partition_count() > MAX_CLUSTER_PARTITIONS {
            return Err(format!("{} partitions; the limit is {MAX_CLUSTER_PARTITIONS}", self.partition_count()));
        }
        let mut group_ids = BTreeSet::new();
        for (name, topic) in &self.topics {
            self.check_topic(name, topic, &mut group_ids)?;
        }
        let mut loads = Loads::default();
        self.topics.values().flat_map(|t| &t.partitions).for_each(|p| loads.add(&p.replicas));
        if loads != self.loads {
            return Err("broker loads disagree with the topics".into());
        }
        Ok(())
    }

    fn check_topic(&self, name: &TopicName, t: &Topic, group_ids: &mut BTreeSet<u64>) -> Result<(), String> {
        let fail = |what: String| Err(format!("topic {name}: {what}"));
        if &t.name != name {
            return fail(format!("filed under the wrong name {}", t.name));
        }
        t.config.validate().map_err(|e| format!("topic {name}: {e}"))?;
        if t.partitions.len() != t.config.partitions as usize {
            return fail(format!("{} partitions, config says {}", t.partitions.len(), t.config.partitions));
        }
        for (i, p) in t.partitions.iter().enumerate() {
            self.check_partition(t, p).map_err(|e| format!("topic {name} partition {i}: {e}"))?;
            if !group_ids.insert(p.group_id) {
                return fail(format!("partition {i} shares group id {} with another partition", p.group_id));
            }
        }
        Ok(())
    }

    fn check_partition(&self, t: &Topic, p: &Partition) -> Result<(), String> {
        if !(FIRST_PARTITION_GROUP_ID..self.next_group_id).contains(&p.group_id) {
            return Err(format!("group id {} not below the next group id {}", p.group_id, self.next_group_id));
        }
        let distinct: BTreeSet<NodeId> = p.replicas.iter().copied().collect();
        if p.replicas.len() != t.config.replication_factor as usize || distinct.len() != p.replicas.len() {
            return Err(format!("replicas {:?} are not {} distinct brokers", p.replicas, t.config.replication_factor));
        }
        if let Some(unknown) = p.replicas.iter().find(|n| !self.brokers.contains_key(n)) {
            return Err(format!("replica {unknown} is not a registered broker"));
        }
        match p.leader {
            Some(leader) if !distinct.contains(&leader) => Err(format!("leader {leader} is not a replica")),
            None if p.leader_term != 0 => Err(format!("no leader but term {}", p.leader_term)),
            _ => Ok(()),
        }
    }
}

fn check_broker(id: NodeId, b: &Broker) -> Result<(), String> {
    if b.node_id != id {
        return Err(format!("broker {} filed under node id {id}", b.node_id));
    }
    check_address(&b.raft_addr).and(check_address(&b.client_addr)).map_err(|e| format!("broker {id}: address {e}"))
}

/// Why `addr` cannot be a broker address, if it cannot.
pub(crate) fn check_address(addr: &str) -> Result<(), String> {
    if addr.is_empty() {
        return Err("is empty; give host:port".into());
    }
    if addr.len() > MAX_ADDRESS_LEN {
        return Err(format!("is {} bytes long; the limit is {MAX_ADDRESS_LEN}", addr.len()));
    }
    Ok(())
}

impl Fsm for Metadata {
    /// Applies one command. `index` must exceed the previous one (the Raft layer applies in log
    /// order); a command that cannot be decoded or applied is answered with a rejection.
    fn apply(&mut self, index: u64, command: &[u8]) -> Bytes {
        assert!(index > self.version, "applying index {index} after {}: out of log order", self.version);
        self.version = index;
        let result =
            ControllerCommand::decode(command).map_err(ControllerError::from).and_then(|c| self.execute(index, c));
        ControllerReply::from(result).encode()
    }

    fn snapshot(&self) -> Bytes {
        snapshot::encode(self)
    }

    fn restore(&mut self, raw: &[u8]) -> Result<(), String> {
        let restored = snapshot::decode(raw)?;
        restored.check().map_err(|e| format!("inconsistent controller snapshot: {e}"))?;
        *self = restored;
        Ok(())
    }
}
