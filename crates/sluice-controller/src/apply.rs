//! How each [`ControllerCommand`] changes [`Metadata`]. Every handler checks everything first and
//! changes the state only once nothing can fail, so a refused command leaves no trace.

use sluice_common::{NodeId, PartitionId, TopicName};

use crate::alter::TopicConfigChanges;
use crate::assignment::Loads;
use crate::broker::Broker;
use crate::command::ControllerCommand;
use crate::config::TopicConfig;
use crate::error::ControllerError;
use crate::limits::{MAX_BROKERS, MAX_CLUSTER_PARTITIONS, MAX_PRODUCER_ID};
use crate::metadata::{Metadata, check_address};
use crate::reply::{Applied, PartitionAssignment};
use crate::topic::{Partition, Topic};

impl Metadata {
    /// Applies `command`, committed at log `index`.
    pub(crate) fn execute(&mut self, index: u64, command: ControllerCommand) -> Result<Applied, ControllerError> {
        match command {
            ControllerCommand::RegisterBroker { node_id, raft_addr, client_addr, max_replicas } => {
                self.register_broker(index, node_id, (raft_addr, client_addr), max_replicas)
            }
            ControllerCommand::SetBrokerLive { node_id, live } => self.set_broker_live(node_id, live),
            ControllerCommand::CreateTopic { name, config } => self.create_topic(index, &name, config),
            ControllerCommand::DeleteTopic { name } => self.delete_topic(&name),
            ControllerCommand::ReportLeader { topic, partition, group_id, leader, term } => {
                self.report_leader(&topic, partition, group_id, leader, term)
            }
            ControllerCommand::AllocateProducerId => self.allocate_producer_id(),
            ControllerCommand::AlterTopicConfig { name, changes } => self.alter_topic_config(&name, &changes),
        }
    }

    fn alter_topic_config(&mut self, name: &str, changes: &TopicConfigChanges) -> Result<Applied, ControllerError> {
        let name = TopicName::new(name)?;
        let topic = self.topics.get_mut(&name).ok_or_else(|| ControllerError::UnknownTopic(name.to_string()))?;
        let config = changes.apply_to(&topic.config)?;
        let previous = std::mem::replace(&mut topic.config, config.clone());
        Ok(Applied::TopicConfigAltered { topic: name, previous, config })
    }

    fn allocate_producer_id(&mut self) -> Result<Applied, ControllerError> {
        let producer_id = self.next_producer_id;
        if producer_id > MAX_PRODUCER_ID {
            return Err(ControllerError::LimitExceeded(format!(
                "all {MAX_PRODUCER_ID} producer ids have been handed out; use non-idempotent producers"
            )));
        }
        self.next_producer_id += 1;
        Ok(Applied::ProducerIdAllocated { producer_id })
    }

    fn register_broker(
        &mut self,
        index: u64,
        node_id: NodeId,
        (raft_addr, client_addr): (String, String),
        max_replicas: u32,
    ) -> Result<Applied, ControllerError> {
        let invalid = |which, addr: &String, reason| ControllerError::InvalidBrokerAddress {
            node_id,
            which,
            addr: addr.clone(),
            reason,
        };
        check_address(&raft_addr).map_err(|r| invalid("raft", &raft_addr, r))?;
        check_address(&client_addr).map_err(|r| invalid("client", &client_addr, r))?;
        let reregistered = self.brokers.contains_key(&node_id);
        if !reregistered && self.brokers.len() >= MAX_BROKERS {
            return Err(ControllerError::LimitExceeded(format!(
                "the cluster has {MAX_BROKERS} brokers, the most it may have; reuse a retired broker's node id"
            )));
        }
        let broker = Broker { node_id, raft_addr, client_addr, live: true, registered_at_index: index, max_replicas };
        self.brokers.insert(node_id, broker);
        Ok(Applied::BrokerRegistered { node_id, registered_at_index: index, reregistered })
    }

    fn set_broker_live(&mut self, node_id: NodeId, live: bool) -> Result<Applied, ControllerError> {
        let broker = self.brokers.get_mut(&node_id).ok_or(ControllerError::UnknownBroker(node_id))?;
        let changed = broker.live != live;
        broker.live = live;
        Ok(Applied::BrokerLiveness { node_id, live, changed })
    }

    fn create_topic(&mut self, index: u64, name: &str, config: TopicConfig) -> Result<Applied, ControllerError> {
        let name = TopicName::new(name)?;
        config.validate()?;
        if self.topics.contains_key(&name) {
            return Err(ControllerError::TopicExists(name.to_string()));
        }
        let live = self.live_brokers();
        if (config.replication_factor as usize) > live.len() {
            return Err(ControllerError::NotEnoughLiveBrokers {
                replication_factor: config.replication_factor,
                live: live.len(),
            });
        }
        let total = self.partition_count() + u64::from(config.partitions);
        if total > MAX_CLUSTER_PARTITIONS {
            return Err(ControllerError::LimitExceeded(format!(
                "the cluster would have {total} partitions; the limit is {MAX_CLUSTER_PARTITIONS}: \
                 use fewer partitions or delete unused topics"
            )));
        }
        // Placed on a copy first: a topic that does not fit changes nothing.
        let mut loads = self.loads.clone();
        self.place_all(&mut loads, &live, &config)?;
        let partitions = self.assign(&live, &config);
        let assignments = assignments(&partitions);
        let topic = Topic { name: name.clone(), config, created_at_index: index, partitions };
        self.topics.insert(name.clone(), topic);
        Ok(Applied::TopicCreated { topic: name, partitions: assignments })
    }

    /// Places and counts each partition of a new topic on `loads`, on the live brokers with
    /// room under their `max_replicas`; fails if some partition has fewer than its replication
    /// factor of them.
    fn place_all(&self, loads: &mut Loads, live: &[NodeId], config: &TopicConfig) -> Result<(), ControllerError> {
        let rf = config.replication_factor as usize;
        for i in 0..config.partitions {
            let room = self.with_room(loads, live);
            if room.len() < rf {
                return Err(self.insufficient(loads, live, config, i));
            }
            loads.add(&loads.place(&room, rf));
        }
        Ok(())
    }

    /// The brokers of `live` that can take one more replica under `loads`.
    fn with_room(&self, loads: &Loads, live: &[NodeId]) -> Vec<NodeId> {
        let cap = |n: &NodeId| self.brokers.get(n).map_or(0, |b| b.max_replicas);
        live.iter().copied().filter(|n| cap(n) == 0 || loads.get(*n).replicas < cap(n)).collect()
    }

    /// Why partition `i` of a new topic does not fit: the live brokers at their limit.
    fn insufficient(&self, loads: &Loads, live: &[NodeId], config: &TopicConfig, i: u32) -> ControllerError {
        let full: Vec<String> = live
            .iter()
            .filter_map(|n| self.brokers.get(n).filter(|b| b.max_replicas > 0))
            .filter(|b| loads.get(b.node_id).replicas >= b.max_replicas)
            .map(|b| format!("broker {} ({} replicas)", b.node_id.0, b.max_replicas))
            .collect();
        ControllerError::InsufficientCapacity(format!(
            "{} partitions of replication factor {} do not fit: after {i} of them, {} at its limit \
             (max_replicas, from its open-file budget or its setting); delete topics, add brokers, or raise the \
             open-file limit",
            config.partitions,
            config.replication_factor,
            full.join(", ")
        ))
    }

    /// Places and counts each partition in turn, giving each the next group id.
    fn assign(&mut self, live: &[NodeId], config: &TopicConfig) -> Vec<Partition> {
        (0..config.partitions)
            .map(|_| {
                let room = self.with_room(&self.loads, live);
                let replicas = self.loads.place(&room, config.replication_factor as usize);
                self.loads.add(&replicas);
                let group_id = self.next_group_id;
                self.next_group_id += 1;
                Partition { group_id, replicas, leader: None, leader_term: 0 }
            })
            .collect()
    }

    fn delete_topic(&mut self, name: &str) -> Result<Applied, ControllerError> {
        let name = TopicName::new(name)?;
        let topic = self.topics.remove(&name).ok_or_else(|| ControllerError::UnknownTopic(name.to_string()))?;
        topic.partitions.iter().for_each(|p| self.loads.remove(&p.replicas));
        Ok(Applied::TopicDeleted { topic: name, partitions: assignments(&topic.partitions) })
    }

    fn report_leader(
        &mut self,
        topic: &str,
        partition: PartitionId,
        group_id: u64,
        leader: NodeId,
        term: u64,
    ) -> Result<Applied, ControllerError> {
        let name = TopicName::new(topic)?;
        let t = self.topics.get_mut(&name).ok_or_else(|| ControllerError::UnknownTopic(name.to_string()))?;
        let partitions = t.config.partitions;
        let p = usize::try_from(partition.0)
            .ok()
            .and_then(|i| t.partitions.get_mut(i))
            .ok_or_else(|| ControllerError::UnknownPartition { topic: name.to_string(), partition, partitions })?;
        if p.group_id != group_id {
            let (topic, current) = (name.to_string(), p.group_id);
            return Err(ControllerError::GroupMismatch { topic, partition, reported: group_id, current });
        }
        if !p.replicas.contains(&leader) {
            let replicas = p.replicas.iter().map(|n| n.0).collect();
            return Err(ControllerError::NotAReplica { topic: name.to_string(), partition, leader, replicas });
        }
        let accepted = term >= p.leader_term;
        if accepted {
            (p.leader, p.leader_term) = (Some(leader), term);
        }
        let recorded = p.leader.expect("a partition with a recorded term has a leader");
        Ok(Applied::LeaderReported { accepted, leader: recorded, term: p.leader_term })
    }
}

fn assignments(partitions: &[Partition]) -> Vec<PartitionAssignment> {
    (0u32..)
        .zip(partitions)
        .map(|(i, p)| PartitionAssignment {
            partition: PartitionId(i),
            group_id: p.group_id,
            replicas: p.replicas.clone(),
        })
        .collect()
}
