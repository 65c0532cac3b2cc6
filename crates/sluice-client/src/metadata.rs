//! What the client knows about the cluster: brokers, the controller leader, topics and their
//! partitions' leaders. A snapshot is immutable; the [`Client`](crate::Client) swaps in a new
//! one on refresh.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use sluice_common::record::TopicCompression;
use sluice_proto::v1;

/// Settings of a topic: the shape it is created with and its limits. Retention,
/// `max_message_bytes` and `compression` can be altered later
/// ([`Admin::alter_topic_config`](crate::Admin::alter_topic_config)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    /// Number of partitions.
    pub partitions: u32,
    /// Replicas per partition.
    pub replication_factor: u32,
    /// Messages older than this are deleted; `None`: the broker default (keep everything).
    pub retention_ms: Option<u64>,
    /// Each partition is trimmed to about this size; `None`: the broker default (no limit).
    pub retention_bytes: Option<u64>,
    /// The largest message accepted; `None` at creation: 1 MiB.
    pub max_message_bytes: Option<u32>,
    /// `None` (the default): a write is acknowledged once it is fsynced on a majority of the
    /// partition's replicas. `Some(ms)`: once it is in the memory (page cache) of a majority,
    /// each replica fsyncing at least every `ms` — faster, but a crash of a majority at once
    /// can lose up to `ms` of acknowledged writes (docs/DURABILITY.md).
    pub flush_interval_ms: Option<u64>,
    /// How the brokers store the topic's batches: [`TopicCompression::Producer`] (the default)
    /// keeps them as the producer sent them; a codec has every batch stored with it. A name
    /// this build does not know (from a newer broker) reads as `Producer`.
    pub compression: TopicCompression,
}

impl TopicConfig {
    /// A topic of `partitions` partitions with `replication_factor` replicas each, and broker
    /// defaults for everything else.
    pub fn new(partitions: u32, replication_factor: u32) -> TopicConfig {
        TopicConfig {
            partitions,
            replication_factor,
            retention_ms: None,
            retention_bytes: None,
            max_message_bytes: None,
            flush_interval_ms: None,
            compression: TopicCompression::Producer,
        }
    }

    /// Keeps messages for this many milliseconds.
    pub fn retention_ms(mut self, ms: u64) -> TopicConfig {
        self.retention_ms = Some(ms);
        self
    }

    /// Trims each partition to about this many bytes.
    pub fn retention_bytes(mut self, bytes: u64) -> TopicConfig {
        self.retention_bytes = Some(bytes);
        self
    }

    /// Refuses messages larger than this.
    pub fn max_message_bytes(mut self, bytes: u32) -> TopicConfig {
        self.max_message_bytes = Some(bytes);
        self
    }

    /// Acknowledges writes once they are in the memory of a majority of replicas, each fsyncing
    /// at least every `ms` (1 to 3,600,000) instead of before every acknowledgement. See
    /// [`TopicConfig::flush_interval_ms`](#structfield.flush_interval_ms) for what that risks.
    pub fn flush_interval_ms(mut self, ms: u64) -> TopicConfig {
        self.flush_interval_ms = Some(ms);
        self
    }

    /// Has the brokers store every batch with this compression (default: as the producer sent
    /// it).
    pub fn compression(mut self, compression: TopicCompression) -> TopicConfig {
        self.compression = compression;
        self
    }

    pub(crate) fn to_proto(&self) -> v1::TopicConfig {
        v1::TopicConfig {
            partitions: self.partitions,
            replication_factor: self.replication_factor,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            max_message_bytes: self.max_message_bytes,
            flush_interval_ms: self.flush_interval_ms,
            // Unset for the default, which a broker from before the setting understands too.
            compression: (self.compression != TopicCompression::Producer).then(|| self.compression.name().to_owned()),
        }
    }

    pub(crate) fn from_proto(config: &v1::TopicConfig) -> TopicConfig {
        TopicConfig {
            partitions: config.partitions,
            replication_factor: config.replication_factor,
            retention_ms: config.retention_ms,
            retention_bytes: config.retention_bytes,
            max_message_bytes: config.max_message_bytes,
            flush_interval_ms: config.flush_interval_ms,
            compression: compression_of(config.compression.as_deref()),
        }
    }
}

/// The compression a broker reports: unset (a broker from before the setting) and names this
/// build does not know read as the default, so that metadata never fails to load over it.
pub(crate) fn compression_of(name: Option<&str>) -> TopicCompression {
    name.and_then(|n| TopicCompression::from_name(n).ok()).unwrap_or_default()
}

/// A broker as the controller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// The broker's node id.
    pub node_id: u64,
    /// `host:port` of its client API.
    pub address: String,
    /// Whether the controller considers it live.
    pub live: bool,
    /// Set while its disk is below its free-space threshold: it refuses writes to its
    /// partitions (STORAGE_FULL) and serves reads. As the answering broker last heard it.
    pub disk_full: Option<DiskFull>,
    /// Partition replicas assigned to it.
    pub replicas: u32,
    /// The most it can host (topic creations beyond are refused, INSUFFICIENT_CAPACITY); 0: no
    /// limit.
    pub max_replicas: u32,
    /// Assigned replicas it is not running: parked after running out of a resource, failing to
    /// start, or not started yet. As the answering broker last heard it.
    pub offline_replicas: u32,
    /// Partitions it leads in which some replica is not caught up (not live, or more than a
    /// few entries behind): Kafka's under-replicated partitions. As the answering broker last
    /// heard it. A rolling restart waits for 0 everywhere before it stops the next broker.
    pub under_replicated: u32,
    /// Whether it is stopping: handing its leaderships over before it shuts down.
    pub stopping: bool,
}

/// A broker's full disk: what is free, and the threshold below which it refuses writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskFull {
    /// Free bytes.
    pub free_bytes: u64,
    /// The threshold it is below.
    pub threshold_bytes: u64,
}

/// One partition's replicas and leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The partition number.
    pub partition: u32,
    /// Replica node ids, preferred leader first.
    pub replicas: Vec<u64>,
    /// The current leader, if one is known.
    pub leader: Option<u64>,
    /// The leader's Raft term.
    pub leader_term: u64,
}

/// A topic, its settings and its partitions in partition order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic's name.
    pub name: String,
    /// Its settings.
    pub config: TopicConfig,
    /// Its partitions, indexed by partition number.
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    pub(crate) fn from_proto(topic: &v1::TopicMetadata) -> TopicInfo {
        let mut partitions: Vec<PartitionInfo> = topic
            .partitions
            .iter()
            .map(|p| PartitionInfo {
                partition: p.partition,
                replicas: p.replicas.clone(),
                leader: p.leader,
                leader_term: p.leader_term,
            })
            .collect();
        partitions.sort_by_key(|p| p.partition);
        let config = topic.config.as_ref().map(TopicConfig::from_proto).unwrap_or_else(|| TopicConfig::new(0, 0));
        TopicInfo { name: topic.name.clone(), config, partitions }
    }

    /// Number of partitions (the partitioner's modulus).
    pub fn partition_count(&self) -> u32 {
        u32::try_from(self.partitions.len()).expect("fewer than 2^32 partitions")
    }

    /// A partition by number.
    pub fn partition(&self, partition: u32) -> Option<&PartitionInfo> {
        self.partitions.get(partition as usize).filter(|p| p.partition == partition)
    }
}

/// A snapshot of the cluster's metadata.
#[derive(Debug, Clone)]
pub struct ClusterMetadata {
    /// Brokers by node id.
    pub brokers: BTreeMap<u64, BrokerInfo>,
    /// The controller leader, if one is known.
    pub controller_id: Option<u64>,
    /// Topics by name.
    pub topics: BTreeMap<String, Arc<TopicInfo>>,
    /// The controller metadata version this reflects.
    pub version: u64,
    /// When the client received it.
    pub(crate) fetched_at: Instant,
}

impl ClusterMetadata {
    /// Metadata that knows nothing (before the first answer).
    pub(crate) fn empty() -> ClusterMetadata {
        ClusterMetadata {
            brokers: BTreeMap::new(),
            controller_id: None,
            topics: BTreeMap::new(),
            version: 0,
            fetched_at: Instant::now(),
        }
    }

    /// Builds a snapshot from a `Metadata` answer. Topics the answer marks with an error are
    /// left out: they do not exist.
    pub(crate) fn from_proto(response: &v1::MetadataResponse) -> ClusterMetadata {
        let brokers = response
            .brokers
            .iter()
            .map(|b| {
                let disk_full =
                    b.disk_full.map(|d| DiskFull { free_bytes: d.free_bytes, threshold_bytes: d.threshold_bytes });
                let info = BrokerInfo {
                    node_id: b.node_id,
                    address: b.client_address.clone(),
                    live: b.live,
                    disk_full,
                    replicas: b.replicas,
                    max_replicas: b.max_replicas,
                    offline_replicas: b.offline_replicas,
                    under_replicated: b.under_replicated,
                    stopping: b.stopping,
                };
                (b.node_id, info)
            })
            .collect();
        let topics = response
            .topics
            .iter()
            .filter(|t| sluice_proto::error_of(t.error.as_ref()).is_ok())
            .map(|t| (t.name.clone(), Arc::new(TopicInfo::from_proto(t))))
            .collect();
        ClusterMetadata {
            brokers,
            controller_id: response.controller_id,
            topics,
            version: response.metadata_version,
            fetched_at: Instant::now(),
        }
    }

    /// The client address of a broker.
    pub fn broker_address(&self, node_id: u64) -> Option<&str> {
        self.brokers.get(&node_id).map(|b| b.address.as_str())
    }

    /// The client address of the controller leader, if known.
    pub fn controller_address(&self) -> Option<&str> {
        self.controller_id.and_then(|id| self.broker_address(id))
    }

    /// The client address of a partition's leader, if known.
    pub fn leader_address(&self, topic: &str, partition: u32) -> Option<&str> {
        let leader = self.topics.get(topic)?.partition(partition)?.leader?;
        self.broker_address(leader)
    }

    /// How many partitions each broker leads.
    pub fn leaders_per_broker(&self) -> BTreeMap<u64, usize> {
        let mut counts: BTreeMap<u64, usize> = self.brokers.keys().map(|&id| (id, 0)).collect();
        for leader in self.topics.values().flat_map(|t| t.partitions.iter().filter_map(|p| p.leader)) {
            *counts.entry(leader).or_default() += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response() -> v1::MetadataResponse {
        let partition =
            |partition, leader| v1::PartitionMetadata { partition, replicas: vec![1, 2, 3], leader, leader_term: 4 };
        v1::MetadataResponse {
            error: Some(sluice_proto::Error::ok()),
            brokers: vec![
                v1::BrokerInfo { node_id: 1, client_address: "h:1".into(), live: true, ..Default::default() },
                v1::BrokerInfo { node_id: 2, client_address: "h:2".into(), live: false, ..Default::default() },
            ],
            controller_id: Some(2),
            topics: vec![
                v1::TopicMetadata {
                    error: Some(sluice_proto::Error::ok()),
                    name: "t".into(),
                    config: Some(TopicConfig::new(2, 3).to_proto()),
                    partitions: vec![partition(1, None), partition(0, Some(1))],
                },
                v1::TopicMetadata {
                    error: Some(sluice_proto::Error::new(sluice_proto::ErrorCode::UnknownTopic, "no")),
                    name: "gone".into(),
                    config: None,
                    partitions: vec![],
                },
            ],
            metadata_version: 9,
        }
    }

    #[test]
    fn snapshots_route_to_leaders_and_drop_unknown_topics() {
        let m = ClusterMetadata::from_proto(&response());
        assert_eq!(m.controller_address(), Some("h:2"));
        assert_eq!(m.leader_address("t", 0), Some("h:1"));
        assert_eq!(m.leader_address("t", 1), None);
        assert_eq!(m.leader_address("t", 2), None);
        assert!(!m.topics.contains_key("gone"));
        let t = &m.topics["t"];
        assert_eq!(t.partition_count(), 2);
        assert_eq!(t.partition(1).unwrap().partition, 1, "partitions are sorted by number");
        assert_eq!(m.leaders_per_broker(), BTreeMap::from([(1, 1), (2, 0)]));
        assert_eq!(m.version, 9);
    }

    #[test]
    fn topic_configs_round_trip_through_the_protocol_with_their_flush_interval() {
        for config in [TopicConfig::new(2, 3), TopicConfig::new(1, 1).flush_interval_ms(250).retention_ms(9)] {
            assert_eq!(TopicConfig::from_proto(&config.to_proto()), config);
        }
        assert_eq!(TopicConfig::new(1, 3).flush_interval_ms(40).to_proto().flush_interval_ms, Some(40));
        assert_eq!(TopicConfig::new(1, 3).to_proto().flush_interval_ms, None, "unset: fsync before every ack");
    }

    #[test]
    fn compression_round_trips_and_unset_or_unknown_names_read_as_producer() {
        let zstd = TopicCompression::Codec(sluice_common::record::Compression::Zstd);
        let config = TopicConfig::new(1, 3).compression(zstd);
        assert_eq!(config.to_proto().compression.as_deref(), Some("zstd"));
        assert_eq!(TopicConfig::from_proto(&config.to_proto()), config);
        assert_eq!(TopicConfig::new(1, 3).to_proto().compression, None, "the default is left unset");
        let reported =
            |name: Option<&str>| v1::TopicConfig { compression: name.map(str::to_owned), ..config.to_proto() };
        assert_eq!(TopicConfig::from_proto(&reported(None)).compression, TopicCompression::Producer);
        assert_eq!(TopicConfig::from_proto(&reported(Some("producer"))).compression, TopicCompression::Producer);
        assert_eq!(TopicConfig::from_proto(&reported(Some("brotli"))).compression, TopicCompression::Producer);
    }
}
