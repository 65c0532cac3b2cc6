//! `Metadata`: brokers, the controller leader and topics, from this broker's applied metadata.

use std::collections::BTreeSet;

use sluice_common::TopicName;
use sluice_controller::Topic;
use sluice_proto::v1::{
    BrokerInfo, DiskFull, MetadataRequest, MetadataResponse, PartitionMetadata, TopicConfig, TopicMetadata,
};
use sluice_proto::{Error, ErrorCode};

use super::ClientService;
use super::errors::{error, unknown_topic};

impl ClientService {
    pub(super) async fn handle_metadata(&self, request: MetadataRequest) -> MetadataResponse {
        // Stale metadata would tell clients that topics do not exist: they ask another broker.
        if !self.controller.caught_up() {
            return MetadataResponse { error: Some(self.catching_up()), ..MetadataResponse::default() };
        }
        let controller_id = self.controller.leader().await;
        // Requested names, deduplicated and in name order; none means every topic.
        let wanted: BTreeSet<String> = request.topics.into_iter().collect();
        let (version, brokers, topics) = self.controller.metadata().read(|m| {
            let mut brokers: Vec<BrokerInfo> = m
                .brokers()
                .map(|b| {
                    // As this broker last heard them.
                    let heard = self.partitions.resources_of(b.node_id.0);
                    BrokerInfo {
                        node_id: b.node_id.0,
                        client_address: b.client_addr.clone(),
                        live: b.live,
                        disk_full: heard
                            .disk_full
                            .map(|d| DiskFull { free_bytes: d.free_bytes, threshold_bytes: d.threshold_bytes }),
                        replicas: m.load(b.node_id).replicas,
                        max_replicas: b.max_replicas,
                        offline_replicas: heard.offline_replicas,
                        under_replicated: heard.under_replicated,
                        stopping: self.partitions.is_stopping(b.node_id.0),
                    }
                })
                .collect();
            // Configured brokers that have not registered yet are listed, as not live.
            let unregistered: Vec<BrokerInfo> = self
                .peers
                .iter()
                .filter(|p| !brokers.iter().any(|b| b.node_id == p.node_id))
                .map(|p| BrokerInfo {
                    node_id: p.node_id,
                    client_address: p.client_addr.clone(),
                    live: false,
                    ..BrokerInfo::default()
                })
                .collect();
            brokers.extend(unregistered);
            brokers.sort_by_key(|b| b.node_id);
            let topics: Vec<Result<Topic, (String, Error)>> = if wanted.is_empty() {
                m.topics().cloned().map(Ok).collect()
            } else {
                wanted.iter().map(|name| lookup(m, name)).collect()
            };
            (m.version(), brokers, topics)
        });
        // Leaders are looked up outside the metadata lock.
        let topics = topics
            .into_iter()
            .map(|t| match t {
                Ok(t) => self.topic_metadata(&t),
                Err((name, e)) => TopicMetadata { error: Some(e), name, ..TopicMetadata::default() },
            })
            .collect();
        MetadataResponse { error: Some(Error::ok()), brokers, controller_id, topics, metadata_version: version }
    }

    /// `t` as clients see it: config, replicas, and each partition's leader — as this broker
    /// knows it, else as last reported to the controller.
    pub(super) fn topic_metadata(&self, t: &Topic) -> TopicMetadata {
        let partitions = (0u32..)
            .zip(&t.partitions)
            .map(|(i, p)| {
                let reported = p.leader.map(|l| (l.0, p.leader_term));
                let (leader, leader_term) = match self.partitions.leader_of(p.group_id).or(reported) {
                    Some((l, term)) => (Some(l), term),
                    None => (None, 0),
                };
                PartitionMetadata {
                    partition: i,
                    replicas: p.replicas.iter().map(|r| r.0).collect(),
                    leader,
                    leader_term,
                }
            })
            .collect();
        let config = config_pb(&t.config);
        TopicMetadata { error: Some(Error::ok()), name: t.name.to_string(), config: Some(config), partitions }
    }
}

/// A topic's settings as clients see them; every field set, compression included.
pub(super) fn config_pb(c: &sluice_controller::TopicConfig) -> TopicConfig {
    TopicConfig {
        partitions: c.partitions,
        replication_factor: c.replication_factor,
        retention_ms: c.retention_ms,
        retention_bytes: c.retention_bytes,
        max_message_bytes: Some(c.max_message_bytes),
        flush_interval_ms: c.flush_interval_ms,
        compression: Some(c.compression.name().to_owned()),
    }
}

/// Topic `name`, or the error to list it with.
fn lookup(m: &sluice_controller::Metadata, name: &str) -> Result<Topic, (String, Error)> {
    if let Err(e) = TopicName::new(name) {
        return Err((name.to_owned(), error(ErrorCode::InvalidTopicName, e.to_string())));
    }
    m.topic(name).cloned().ok_or_else(|| (name.to_owned(), unknown_topic(name)))
}
