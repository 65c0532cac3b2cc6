//! [`Topic`] and its [`Partition`]s as the controller records them.

use sluice_common::{NodeId, PartitionId, TopicName};

use crate::config::TopicConfig;

/// The Raft group id of the controller's own metadata group; no partition ever gets it.
pub const CONTROLLER_GROUP_ID: u64 = 0;

/// The group id of the first partition ever created; every later partition gets the next one,
/// and an id is never reused, not even after its topic is deleted.
pub const FIRST_PARTITION_GROUP_ID: u64 = 1;

/// The first producer id ever allocated. 0 is never handed out, so a zeroed field can never be
/// mistaken for an allocated id.
pub const FIRST_PRODUCER_ID: u64 = 1;

/// A topic: its settings and its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    /// Its name.
    pub name: TopicName,
    /// Its settings.
    pub config: TopicConfig,
    /// The log index of the command that created it: tells a topic from an earlier one of the
    /// same name.
    pub created_at_index: u64,
    /// Its partitions, indexed by partition number.
    pub partitions: Vec<Partition>,
}

impl Topic {
    /// Partition `id`, if the topic has it.
    pub fn partition(&self, id: PartitionId) -> Option<&Partition> {
        self.partitions.get(usize::try_from(id.0).ok()?)
    }
}

/// One partition: where its replicas are and who leads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Its Raft group id, unique in the cluster forever; every peer RPC of the group carries it.
    pub group_id: u64,
    /// The brokers holding a replica, distinct; the first is the preferred leader.
    pub replicas: Vec<NodeId>,
    /// The latest reported leader, `None` until the group reports one.
    pub leader: Option<NodeId>,
    /// The Raft term of the latest accepted leader report (0 before any).
    pub leader_term: u64,
}

impl Partition {
    /// The preferred leader: the first replica.
    pub fn preferred_leader(&self) -> NodeId {
        self.replicas[0]
    }
}
