//! The routing table clients use, and what each broker must host — both read from [`Metadata`].

use sluice_common::{NodeId, PartitionId, TopicName};

use crate::broker::Broker;
use crate::metadata::Metadata;
use crate::topic::{Partition, Topic};

/// Every topic's routes, as of one metadata version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    /// The metadata version these routes are from (see [`Metadata::version`]).
    pub version: u64,
    /// One entry per topic, by name.
    pub topics: Vec<TopicRoute>,
}

/// Where one topic's partitions are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRoute {
    /// The topic.
    pub topic: TopicName,
    /// Its partitions, by partition number.
    pub partitions: Vec<PartitionRoute>,
}

/// Where one partition is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRoute {
    /// The partition.
    pub partition: PartitionId,
    /// Its Raft group id.
    pub group_id: u64,
    /// Its replicas, preferred leader first.
    pub replicas: Vec<ReplicaRoute>,
    /// The last reported leader, if any. It may be stale: a broker that is no longer leader
    /// redirects the client.
    pub leader: Option<LeaderRoute>,
}

/// One replica of a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRoute {
    /// The broker holding it.
    pub node_id: NodeId,
    /// Where clients reach that broker.
    pub client_addr: String,
    /// Where peers reach it for Raft.
    pub raft_addr: String,
    /// Whether the controller considers it live.
    pub live: bool,
}

/// A partition's last reported leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderRoute {
    /// The leader.
    pub node_id: NodeId,
    /// The Raft term it was reported in.
    pub term: u64,
    /// Where clients reach it.
    pub client_addr: String,
}

/// A partition replica a broker must host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostedPartition {
    /// The topic.
    pub topic: TopicName,
    /// The partition.
    pub partition: PartitionId,
    /// Its Raft group id: the group the broker runs for it.
    pub group_id: u64,
    /// All its replicas (the group's voters), preferred leader first.
    pub replicas: Vec<NodeId>,
}

impl Metadata {
    /// The routes of every topic.
    pub fn routes(&self) -> Routes {
        Routes { version: self.version, topics: self.topics.values().map(|t| self.topic_route(t)).collect() }
    }

    /// The routes of one topic, if it exists.
    pub fn route(&self, topic: &str) -> Option<TopicRoute> {
        self.topic(topic).map(|t| self.topic_route(t))
    }

    /// Every partition replica `node_id` must host, by topic then partition.
    pub fn partitions_of(&self, node_id: NodeId) -> Vec<HostedPartition> {
        let mut hosted = Vec::new();
        for t in self.topics.values() {
            for (partition, p) in (0u32..).zip(&t.partitions) {
                if p.replicas.contains(&node_id) {
                    hosted.push(HostedPartition {
                        topic: t.name.clone(),
                        partition: PartitionId(partition),
                        group_id: p.group_id,
                        replicas: p.replicas.clone(),
                    });
                }
            }
        }
        hosted
    }

    fn topic_route(&self, t: &Topic) -> TopicRoute {
        let partitions = (0u32..).zip(&t.partitions).map(|(i, p)| self.partition_route(PartitionId(i), p)).collect();
        TopicRoute { topic: t.name.clone(), partitions }
    }

    fn partition_route(&self, partition: PartitionId, p: &Partition) -> PartitionRoute {
        let replicas = p.replicas.iter().map(|n| replica_route(*n, self.brokers.get(n))).collect();
        let leader = p.leader.map(|node_id| LeaderRoute {
            node_id,
            term: p.leader_term,
            client_addr: self.brokers.get(&node_id).map(|b| b.client_addr.clone()).unwrap_or_default(),
        });
        PartitionRoute { partition, group_id: p.group_id, replicas, leader }
    }
}

fn replica_route(node_id: NodeId, broker: Option<&Broker>) -> ReplicaRoute {
    // Replicas are always registered brokers (Metadata::check); the fallback is never taken.
    let (client_addr, raft_addr, live) =
        broker.map(|b| (b.client_addr.clone(), b.raft_addr.clone(), b.live)).unwrap_or_default();
    ReplicaRoute { node_id, client_addr, raft_addr, live }
}
