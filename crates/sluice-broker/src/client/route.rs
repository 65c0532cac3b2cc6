//! Finding the partition a partition-scoped call names, and checking that this broker leads it.

use std::sync::Arc;

use sluice_common::record::TopicCompression;
use sluice_common::{NodeId, PartitionId, TopicName};
use sluice_proto::{Error, ErrorCode};
use sluice_raft::typ::Raft;
use sluice_storage::Log;

use super::ClientService;
use super::errors::{error, unknown_topic};
use crate::controller::BrokerStateMachine;

/// A partition this broker leads, ready to serve.
pub(super) struct Led {
    /// The topic, as the request named it.
    pub topic: String,
    /// The partition number.
    pub partition: u32,
    /// Its Raft group.
    pub group_id: u64,
    /// The group's Raft member on this broker.
    pub raft: Raft<BrokerStateMachine>,
    /// The partition's log on this broker.
    pub log: Arc<Log>,
    /// The topic's largest message.
    pub max_message_bytes: u32,
    /// The brokers holding its replicas.
    pub replicas: Vec<u64>,
    /// How the topic wants its batches compressed.
    pub compression: TopicCompression,
}

/// What the metadata says about the partition.
struct Assigned {
    group_id: u64,
    replicas: Vec<NodeId>,
    reported_leader: Option<NodeId>,
    max_message_bytes: u32,
    compression: TopicCompression,
}

impl ClientService {
    /// The partition `topic`/`partition` if this broker leads it; otherwise the error to answer:
    /// the topic or partition does not exist, another broker leads it (`NOT_LEADER` with the
    /// leader), or it has no leader yet here (`UNAVAILABLE`).
    pub(super) fn led_partition(&self, topic: &str, partition: u32) -> Result<Led, Error> {
        let a = self.assigned(topic, partition)?;
        let gid = a.group_id;
        let hosted = || Some((self.partitions.raft(gid)?, self.partitions.log(gid)?));
        match self.partitions.leader_of(gid) {
            Some((leader, _)) if leader == self.node_id => match hosted() {
                Some((raft, log)) => Ok(Led {
                    topic: topic.to_owned(),
                    partition,
                    group_id: gid,
                    raft,
                    log,
                    max_message_bytes: a.max_message_bytes,
                    replicas: a.replicas.iter().map(|r| r.0).collect(),
                    compression: a.compression,
                }),
                None => Err(self.not_running(topic, partition)),
            },
            Some((leader, _)) => Err(self.not_leader(topic, partition, Some(leader))),
            None if a.replicas.contains(&NodeId(self.node_id)) => Err(error(
                ErrorCode::Unavailable,
                format!("{topic}/{partition} has no leader yet (its replicas are electing one); retry shortly"),
            )),
            None => Err(self.not_leader(topic, partition, a.reported_leader.map(|n| n.0))),
        }
    }

    /// The group is being started or stopped here.
    fn not_running(&self, topic: &str, partition: u32) -> Error {
        error(
            ErrorCode::Unavailable,
            format!("{topic}/{partition} is starting or stopping on broker {}; retry shortly", self.node_id),
        )
    }

    fn assigned(&self, topic: &str, partition: u32) -> Result<Assigned, Error> {
        let name = TopicName::new(topic).map_err(|e| error(ErrorCode::InvalidTopicName, e.to_string()))?;
        let found = self.controller.metadata().read(|m| {
            let t = m.topic(name.as_str())?;
            Some(match t.partition(PartitionId(partition)) {
                Some(p) => Ok(Assigned {
                    group_id: p.group_id,
                    replicas: p.replicas.clone(),
                    reported_leader: p.leader,
                    max_message_bytes: t.config.max_message_bytes,
                    compression: t.config.compression,
                }),
                None => Err(t.config.partitions),
            })
        });
        if !matches!(found, Some(Ok(_))) && !self.controller.caught_up() {
            return Err(self.catching_up());
        }
        match found {
            None => Err(unknown_topic(topic)),
            Some(Ok(assigned)) => Ok(assigned),
            Some(Err(count)) => Err(error(
                ErrorCode::UnknownPartition,
                format!(
                    "topic {topic:?} has {count} partitions (0 to {}); partition {partition} does not exist",
                    count.saturating_sub(1)
                ),
            )),
        }
    }
}
