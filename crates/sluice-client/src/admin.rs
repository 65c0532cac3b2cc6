//! [`Admin`]: topics and the cluster's state (consumer groups: `group/admin.rs`).

use crate::Isolation;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use sluice_common::TopicName;
use sluice_proto::v1;

use crate::client::{Client, Route, unknown_topic};
use crate::config::SeekTo;
use crate::error::{Error, Result};
use crate::metadata::{BrokerInfo, ClusterMetadata, TopicConfig, TopicInfo};

/// How often `wait_for_leaders` looks again.
const LEADER_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Creates, alters, deletes and describes topics, reports the cluster's state, and lists,
/// describes and resets consumer groups.
#[derive(Clone)]
pub struct Admin {
    client: Client,
}

/// One partition as `describe_topic` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    /// The partition number.
    pub partition: u32,
    /// Replica node ids, preferred leader first.
    pub replicas: Vec<u64>,
    /// The current leader, if one is known.
    pub leader: Option<u64>,
    /// The leader's Raft term.
    pub leader_term: u64,
    /// The first offset still stored, or why it could not be read.
    pub log_start_offset: Result<u64, String>,
    /// The offset after the last committed message (the high watermark), or why it could not
    /// be read.
    pub log_end_offset: Result<u64, String>,
    /// The last stable offset: the first offset of the oldest open transaction, or the log end
    /// when none is open (docs/TRANSACTIONS.md); `read_committed` consumers read up to it.
    pub last_stable_offset: Result<u64, String>,
}

/// A topic with its partitions' leaders and offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// The topic's name.
    pub name: String,
    /// Its settings.
    pub config: TopicConfig,
    /// Its partitions in order.
    pub partitions: Vec<PartitionDescription>,
}

/// One broker in the cluster status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerStatus {
    /// The broker's node id, address and liveness.
    pub broker: BrokerInfo,
    /// Whether it leads the controller group.
    pub is_controller: bool,
    /// How many partitions it leads.
    pub partition_leaders: usize,
}

/// What `cluster_status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// Every broker, by node id.
    pub brokers: Vec<BrokerStatus>,
    /// The controller leader, if one is known.
    pub controller_id: Option<u64>,
    /// Number of topics.
    pub topics: usize,
    /// Partitions with no known leader.
    pub leaderless_partitions: usize,
    /// The controller metadata version.
    pub metadata_version: u64,
}

impl Admin {
    pub(crate) fn new(client: Client) -> Admin {
        Admin { client }
    }

    /// The client the calls go through.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Creates a topic. Returns once the controller committed it; its partitions may still be
    /// electing leaders (see [`Admin::wait_for_leaders`]).
    pub async fn create_topic(&self, name: &str, config: &TopicConfig) -> Result<TopicInfo> {
        check_name(name)?;
        if config.partitions == 0 || config.replication_factor == 0 {
            return Err(Error::InvalidArgument("partitions and replication factor must be at least 1".into()));
        }
        // The broker would answer NOT_ENOUGH_REPLICAS, which is retriable (brokers may come
        // back); a factor above the cluster's size can never be met, so say so at once.
        let brokers = self.client.metadata().brokers.len();
        if brokers > 0 && config.replication_factor as usize > brokers {
            return Err(Error::InvalidArgument(format!(
                "replication factor {} needs {} brokers but the cluster has {brokers}; lower it",
                config.replication_factor, config.replication_factor
            )));
        }
        let call = self.client.call("CreateTopic", Route::Controller);
        let answer = self
            .client
            .execute(call, |mut rpc| {
                let request = v1::CreateTopicRequest { name: name.to_owned(), config: Some(config.to_proto()) };
                async move { rpc.create_topic(request).await }
            })
            .await?;
        self.client.refresh_metadata().await?;
        Ok(answer.topic.as_ref().map_or_else(
            || TopicInfo { name: name.to_owned(), config: config.clone(), partitions: Vec::new() },
            TopicInfo::from_proto,
        ))
    }

    /// Waits until every partition of `topic` has a leader, or `timeout` passes.
    pub async fn wait_for_leaders(&self, topic: &str, timeout: Duration) -> Result<Arc<TopicInfo>> {
        let deadline = Instant::now() + timeout;
        loop {
            let info = self.client.fetch_topic(topic).await?.ok_or_else(|| unknown_topic(topic))?;
            let waiting = info.partitions.iter().filter(|p| p.leader.is_none()).count();
            if waiting == 0 && !info.partitions.is_empty() {
                return Ok(info);
            }
            if Instant::now() + LEADER_POLL_INTERVAL > deadline {
                let last = Error::broker(
                    sluice_proto::ErrorCode::Unavailable,
                    format!("{waiting} of {} partitions of {topic} have no leader", info.partitions.len()),
                );
                let operation = format!("waiting for leaders of {topic}");
                return Err(Error::Timeout { operation, elapsed: timeout, last: Box::new(last) });
            }
            tokio::time::sleep(LEADER_POLL_INTERVAL).await;
        }
    }

    /// The `limit` earliest pending delayed messages of `topic` (over all its partitions, from
    /// their leaders), and how many it has pending in all (docs/DELAYS.md).
    pub async fn list_delayed(&self, topic: &str, limit: u32) -> Result<crate::DelayedListing> {
        crate::delay::list(&self.client, topic, limit).await
    }

    /// Cancels delayed message `id` of `topic`, as [`Producer::cancel_delayed`](crate::Producer::cancel_delayed).
    pub async fn cancel_delayed(&self, topic: &str, id: crate::DelayedId) -> Result<crate::CancelOutcome> {
        crate::delay::cancel(&self.client, topic, id).await
    }

    /// Creates recurring schedule `name`: each time `cadence` fires, `record` (its value, key,
    /// tag and properties) is appended to its topic, once (docs/DELAYS.md, "Schedules").
    /// Returns the first fire time, in ms since the Unix epoch. SCHEDULE_EXISTS if the topic
    /// has a schedule of that name.
    pub async fn create_schedule(
        &self,
        name: &str,
        cadence: &crate::Cadence,
        record: &crate::ProducerRecord,
    ) -> Result<u64> {
        crate::schedule::create(&self.client, name, cadence, record).await
    }

    /// Deletes schedule `name` of `topic`; UNKNOWN_SCHEDULE if there is none.
    pub async fn delete_schedule(&self, topic: &str, name: &str) -> Result<()> {
        crate::schedule::delete(&self.client, topic, name).await
    }

    /// The schedules of `topic`, or of every topic, by name.
    pub async fn list_schedules(&self, topic: Option<&str>) -> Result<Vec<crate::ScheduleInfo>> {
        let topics: Vec<String> = match topic {
            Some(t) => vec![t.to_owned()],
            None => self.list_topics().await?.iter().map(|t| t.name.clone()).collect(),
        };
        let mut all = Vec::new();
        for topic in topics {
            all.extend(crate::schedule::list(&self.client, &topic).await?);
        }
        Ok(all)
    }

    /// Deletes a topic and, on every broker, its data.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        check_name(name)?;
        let call = self.client.call("DeleteTopic", Route::Controller);
        self.client
            .execute(call, |mut rpc| {
                let request = v1::DeleteTopicRequest { name: name.to_owned() };
                async move { rpc.delete_topic(request).await }
            })
            .await?;
        self.client.refresh_metadata().await?;
        Ok(())
    }

    /// Every topic, in name order, from fresh metadata.
    pub async fn list_topics(&self) -> Result<Vec<Arc<TopicInfo>>> {
        let metadata = self.client.refresh_metadata().await?;
        Ok(metadata.topics.values().cloned().collect())
    }

    /// A topic's settings and partitions, with each partition's log start and end offsets
    /// asked of its leader (all partitions at once).
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        check_name(name)?;
        let metadata = self.client.refresh_metadata().await?;
        let info = metadata.topics.get(name).cloned().ok_or_else(|| unknown_topic(name))?;
        let partitions = join_all(info.partitions.iter().map(|p| async move {
            let (start, end, stable) = tokio::join!(
                self.client.list_offset(name, p.partition, SeekTo::Earliest, Isolation::ReadUncommitted),
                self.client.list_offset(name, p.partition, SeekTo::Latest, Isolation::ReadUncommitted),
                self.client.list_offset(name, p.partition, SeekTo::Latest, Isolation::ReadCommitted),
            );
            PartitionDescription {
                partition: p.partition,
                replicas: p.replicas.clone(),
                leader: p.leader,
                leader_term: p.leader_term,
                log_start_offset: start.map_err(|e| e.to_string()),
                log_end_offset: end.map_err(|e| e.to_string()),
                last_stable_offset: stable.map_err(|e| e.to_string()),
            }
        }))
        .await;
        Ok(TopicDescription { name: info.name.clone(), config: info.config.clone(), partitions })
    }

    /// Brokers, their liveness, the controller leader and partition leaders per broker.
    pub async fn cluster_status(&self) -> Result<ClusterStatus> {
        let metadata = self.client.refresh_metadata().await?;
        Ok(status_of(&metadata))
    }
}

pub(crate) fn check_name(name: &str) -> Result<()> {
    TopicName::new(name).map(drop).map_err(|e| Error::InvalidArgument(e.to_string()))
}

fn status_of(metadata: &ClusterMetadata) -> ClusterStatus {
    let leaders: BTreeMap<u64, usize> = metadata.leaders_per_broker();
    let brokers = metadata
        .brokers
        .values()
        .map(|b| BrokerStatus {
            broker: b.clone(),
            is_controller: metadata.controller_id == Some(b.node_id),
            partition_leaders: leaders.get(&b.node_id).copied().unwrap_or(0),
        })
        .collect();
    let leaderless = metadata.topics.values().flat_map(|t| &t.partitions).filter(|p| p.leader.is_none()).count();
    ClusterStatus {
        brokers,
        controller_id: metadata.controller_id,
        topics: metadata.topics.len(),
        leaderless_partitions: leaderless,
        metadata_version: metadata.version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_topic_names_are_refused_before_any_call() {
        let e = check_name("a b").unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)));
        assert!(e.to_string().contains("[a-zA-Z0-9._-]"), "{e}");
        assert!(check_name("orders.v2").is_ok());
    }

    #[test]
    fn cluster_status_counts_leaders_and_marks_the_controller() {
        let response = v1::MetadataResponse {
            error: None,
            brokers: vec![
                v1::BrokerInfo {
                    node_id: 1,
                    client_address: "a:1".into(),
                    live: true,
                    replicas: 3,
                    max_replicas: 100,
                    ..v1::BrokerInfo::default()
                },
                v1::BrokerInfo {
                    node_id: 2,
                    client_address: "a:2".into(),
                    live: false,
                    disk_full: Some(v1::DiskFull { free_bytes: 10, threshold_bytes: 20 }),
                    replicas: 3,
                    offline_replicas: 2,
                    under_replicated: 1,
                    stopping: true,
                    ..v1::BrokerInfo::default()
                },
            ],
            controller_id: Some(1),
            topics: vec![v1::TopicMetadata {
                error: None,
                name: "t".into(),
                config: Some(TopicConfig::new(3, 2).to_proto()),
                partitions: (0..3)
                    .map(|p| v1::PartitionMetadata {
                        partition: p,
                        replicas: vec![1, 2],
                        leader: (p < 2).then_some(1),
                        leader_term: 1,
                    })
                    .collect(),
            }],
            metadata_version: 3,
        };
        let status = status_of(&ClusterMetadata::from_proto(&response));
        assert_eq!(status.brokers.len(), 2);
        assert!(status.brokers[0].is_controller && !status.brokers[1].is_controller);
        let full = crate::DiskFull { free_bytes: 10, threshold_bytes: 20 };
        assert_eq!((status.brokers[0].broker.disk_full, status.brokers[1].broker.disk_full), (None, Some(full)));
        assert_eq!((status.brokers[0].partition_leaders, status.brokers[1].partition_leaders), (2, 0));
        let capacity = |b: &crate::BrokerInfo| (b.replicas, b.max_replicas, b.offline_replicas);
        assert_eq!(
            (capacity(&status.brokers[0].broker), capacity(&status.brokers[1].broker)),
            ((3, 100, 0), (3, 0, 2))
        );
        let health = |b: &crate::BrokerInfo| (b.under_replicated, b.stopping);
        assert_eq!((health(&status.brokers[0].broker), health(&status.brokers[1].broker)), ((0, false), (1, true)));
        assert_eq!((status.topics, status.leaderless_partitions, status.metadata_version), (1, 1, 3));
    }
}
