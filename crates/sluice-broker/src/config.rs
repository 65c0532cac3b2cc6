//! The broker's configuration (docs/ARCHITECTURE.md, D8), read from a TOML file;
//! `cluster-configs/` holds the local three-node cluster's. Every field is documented with its
//! default; [`BrokerConfig::validate`] checks the whole of it before anything starts.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use crate::txn::TxnConfig;
use sluice_raft::typ::RaftConfig;
use sluice_storage::LogConfig;

/// Where `--dev` keeps its data: relative, so under the working directory.
pub const DEV_DATA_DIR: &str = "sluice-dev-data";
/// `--dev`'s client API address.
pub const DEV_CLIENT_ADDR: &str = "127.0.0.1:9091";
/// `--dev`'s peer (Raft) address.
pub const DEV_RAFT_ADDR: &str = "127.0.0.1:9101";
/// `--dev`'s metrics endpoint address.
pub const DEV_METRICS_ADDR: &str = "127.0.0.1:9190";

/// Why a configuration cannot be used. The message names the field and says what is expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading config {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("parsing config {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said (line, column, field).
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The most runtime threads `worker_threads` may ask for.
pub const MAX_WORKER_THREADS: usize = 1024;

/// One broker of the cluster, as every broker's configuration lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The broker's node id. Required.
    pub node_id: u64,
    /// Where its peer (Raft) service listens, `host:port`. Required.
    pub raft_addr: String,
    /// Where its client API listens, `host:port`. Required.
    pub client_addr: String,
}

/// Raft timings. The controller group is one group with its own fast timers. Partition groups
/// are many and quiescent (docs/adr/0004): they exchange nothing while idle, and brokers detect
/// each other's failure through one node heartbeat per broker pair instead.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTimings {
    /// Controller group heartbeat, in ms. Default: 100.
    pub controller_heartbeat_ms: u64,
    /// Controller group election timeout range `[min, max]`, in ms. Default: [500, 1000].
    pub controller_election_timeout_ms: [u64; 2],
    /// Partition groups' Raft deadline, in ms: a replication request must be answered within
    /// it, and a just-elected leader heartbeats at this interval until its followers hear of it
    /// through node heartbeats. Default: 250.
    pub partition_heartbeat_ms: u64,
    /// Partition group election timeout range `[min, max]`, in ms, used only while a group has
    /// no live leader; the max is also openraft's leader lease, which a partition's followers
    /// wait out before electing a new leader. Shorter timeouts make elections collide when the
    /// machine is starved of CPU, as when many groups form at once. Default: [500, 1000].
    pub partition_election_timeout_ms: [u64; 2],
    /// How often a broker sends every other broker its node heartbeat, in ms. Default: 100.
    pub node_heartbeat_ms: u64,
    /// A broker not heard from for this long is down, and its partitions' followers start
    /// electing, in ms. A failed broker's partitions are writable again after about this plus
    /// the partition election timeout. Default: 800.
    pub node_timeout_ms: u64,
    /// Once a broker has been live this long, partitions it is the preferred leader of (the
    /// controller spreads those evenly) hand their leadership back to it, in ms; 0 never does.
    /// Default: 10000.
    pub leader_rebalance_delay_ms: u64,
}

impl Default for RaftTimings {
    fn default() -> Self {
        RaftTimings {
            controller_heartbeat_ms: 100,
            controller_election_timeout_ms: [500, 1000],
            partition_heartbeat_ms: 250,
            partition_election_timeout_ms: [500, 1000],
            node_heartbeat_ms: 100,
            node_timeout_ms: 800,
            leader_rebalance_delay_ms: 10_000,
        }
    }
}

impl RaftTimings {
    /// The openraft settings of the controller group.
    pub fn controller(&self) -> Result<RaftConfig, ConfigError> {
        raft_config("controller", self.controller_heartbeat_ms, 2, self.controller_election_timeout_ms)
    }

    /// The node heartbeat interval and timeout, checked.
    pub fn node_liveness(&self) -> Result<(Duration, Duration), ConfigError> {
        let (beat, timeout) = (self.node_heartbeat_ms, self.node_timeout_ms);
        if beat == 0 || timeout < 3 * beat {
            return Err(ConfigError::Invalid(format!(
                "raft.node_*: need node_heartbeat_ms ({beat}) > 0 and node_timeout_ms ({timeout}) at least 3 \
                 heartbeats, so that one late heartbeat does not make a broker look down"
            )));
        }
        Ok((Duration::from_millis(beat), Duration::from_millis(timeout)))
    }

    /// The openraft settings of a partition group. Snapshots never purge its log. Its
    /// heartbeat may be close to its election timeout: a partition follower only runs its
    /// election timer while no live broker claims to lead the group.
    pub fn partition(&self) -> Result<RaftConfig, ConfigError> {
        let config = raft_config("partition", self.partition_heartbeat_ms, 1, self.partition_election_timeout_ms)?;
        // A partition's Raft log is its message data (docs/ARCHITECTURE.md, D1) and its snapshot
        // holds only the next offset and the producer table. openraft's default purges all but
        // 1,000 entries after every snapshot (one per 5,000 entries), which deleted unexpired
        // messages; the log start must move only by retention (or an explicit purge), never by a
        // snapshot.
        Ok(RaftConfig { max_in_snapshot_log_to_keep: u64::MAX, ..config })
    }
}

/// openraft settings; `ratio` is how many heartbeats must fit in the minimum election timeout.
fn raft_config(group: &str, heartbeat_ms: u64, ratio: u64, [min, max]: [u64; 2]) -> Result<RaftConfig, ConfigError> {
    if heartbeat_ms == 0 || min <= heartbeat_ms * ratio || max <= min {
        return Err(ConfigError::Invalid(format!(
            "raft.{group}_*: need 0 < heartbeat ({heartbeat_ms} ms) < election min / {ratio} ({min} ms) and min < \
             max ({max} ms)"
        )));
    }
    let config = RaftConfig {
        cluster_name: format!("sluice-{group}"),
        heartbeat_interval: heartbeat_ms,
        election_timeout_min: min,
        election_timeout_max: max,
        // Installing a snapshot includes fsyncs on a slow disk: give it room.
        install_snapshot_timeout: 5_000,
        // A member whose heartbeats arrive late (a slow disk, a busy runtime) asks first whether
        // it could win, instead of raising the term and deposing a healthy leader.
        enable_pre_vote: Some(true),
        // A restarted leader stands for election again (standard Raft) instead of resuming in
        // its old term. Resuming broke log matching once its log had lost an unsynced tail that
        // followers held: it wrote different entries at the same term and index, and replicas
        // diverged in committed data (jepsen finding F4).
        enable_leader_restore: Some(false),
        // Per-entry latency tracking openraft keeps for its runtime statistics, which nothing
        // here reads: a short ring per group instead of 1,024 entries (a broker hosts thousands).
        log_stage_capacity: Some(8),
        ..RaftConfig::default()
    };
    config.validate().map_err(|e| ConfigError::Invalid(format!("raft.{group}_*: {e}")))
}

/// Consumer groups (docs/adr/0005-consumer-groups.md): the internal `__consumer_offsets` topic
/// and the defaults of members that do not choose their own timeouts. The `[groups]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupConfig {
    /// Partitions of `__consumer_offsets`, which the controller leader creates on the first
    /// `FindCoordinator`; a group lives in one of them. Read only then: changing it later does
    /// not repartition the topic (groups would move). Default: 12.
    pub offsets_partitions: u32,
    /// A member that sends no heartbeat for this long is removed, when it does not choose its
    /// own, in ms. Default: 10000.
    pub session_timeout_ms: u32,
    /// How long a member may keep partitions it was asked to give up, when it does not choose
    /// its own, in ms. Default: 60000.
    pub rebalance_timeout_ms: u32,
    /// How often members are told to heartbeat, in ms. Default: 1000.
    pub heartbeat_interval_ms: u32,
    /// After this many group records have been written to an offsets partition since its last
    /// checkpoint, its coordinator writes a new one (the records that rebuild every group of
    /// the partition), and the log before it may be trimmed. Default: 10000.
    pub checkpoint_interval_records: u64,
    /// A group with no members and no offset committed for this long is deleted, with its
    /// offsets, by a record in its offsets partition (Kafka's `offsets.retention.minutes`), in
    /// ms. Default: 604800000 (7 days).
    pub offsets_retention_ms: u64,
    /// How often a coordinator looks for groups past `offsets_retention_ms`, in ms (Kafka's
    /// `offsets.retention.check.interval.ms`). Default: 600000 (10 minutes).
    pub offsets_retention_check_ms: u64,
    /// How long a retry handed to a member by `PollRetries` is its alone; one not settled by
    /// then counts as a failed attempt (docs/adr/0012-retries.md), in ms. Default: 30000.
    pub retry_lease_ms: u64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            offsets_partitions: 12,
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 60_000,
            heartbeat_interval_ms: 1_000,
            checkpoint_interval_records: 10_000,
            offsets_retention_ms: 7 * 24 * 3_600_000,
            offsets_retention_check_ms: 600_000,
            retry_lease_ms: 30_000,
        }
    }
}

impl GroupConfig {
    /// The fewest records between checkpoints: a checkpoint holds every group's records, so
    /// writing one more often than this would grow the log rather than shrink it.
    pub const MIN_CHECKPOINT_INTERVAL_RECORDS: u64 = 100;

    /// Checks every field; the error names the one at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(format!("groups.{m}")));
        let max = sluice_controller::limits::MAX_PARTITIONS_PER_TOPIC;
        if self.offsets_partitions == 0 || self.offsets_partitions > max {
            return invalid(format!("offsets_partitions is {}; use 1 to {max}", self.offsets_partitions));
        }
        let (beat, session) = (self.heartbeat_interval_ms, self.session_timeout_ms);
        if beat == 0 || session < 3 * beat {
            return invalid(format!(
                "heartbeat_interval_ms ({beat}) must be at least 1 and session_timeout_ms ({session}) at least 3 \
                 heartbeats, so that one late heartbeat does not remove a member"
            ));
        }
        if self.rebalance_timeout_ms == 0 {
            return invalid(
                "rebalance_timeout_ms is 0; members need time to give partitions up (60000 is usual)".into(),
            );
        }
        let min = Self::MIN_CHECKPOINT_INTERVAL_RECORDS;
        if self.checkpoint_interval_records < min {
            return invalid(format!(
                "checkpoint_interval_records is {}; use at least {min}",
                self.checkpoint_interval_records
            ));
        }
        if self.offsets_retention_ms == 0 || self.offsets_retention_check_ms == 0 {
            return invalid(format!(
                "offsets_retention_ms ({}) and offsets_retention_check_ms ({}) must be at least 1",
                self.offsets_retention_ms, self.offsets_retention_check_ms
            ));
        }
        if !(100..=24 * 3_600_000).contains(&self.retry_lease_ms) {
            return invalid(format!("retry_lease_ms is {}; use 100 to 86400000 (a day)", self.retry_lease_ms));
        }
        Ok(())
    }
}

/// A broker's whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// This broker's node id; must appear in `peers`. Required.
    pub node_id: u64,
    /// Directory for everything this broker stores. Required.
    pub data_dir: PathBuf,
    /// Address the peer (Raft) service binds, `ip:port`. Default: this node's `raft_addr` in
    /// `peers`.
    #[serde(default)]
    pub raft_listen: Option<SocketAddr>,
    /// Address the client API binds, `ip:port`. Default: this node's `client_addr` in `peers`
    /// (set this when that is a host name, or to listen on `0.0.0.0`).
    #[serde(default)]
    pub client_listen: Option<SocketAddr>,
    /// Address the Prometheus metrics endpoint (`GET /metrics`, docs/METRICS.md) binds,
    /// `ip:port`; port 0 picks a free one. Default: none, and no endpoint is served.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Every broker of the cluster, this one included. They are the controller group's voters:
    /// a new cluster forms from them without a manual init step. Required, at least one.
    pub peers: Vec<PeerConfig>,
    /// Where this broker connects to a peer whose advertised `raft_addr` is the key: the
    /// `[peer_dial]` table, `"ip:port" = "ip:port"`, the key written exactly as the peer's
    /// `raft_addr` (in `peers` and so in the cluster metadata). Only this broker's outgoing
    /// peer (Raft) connections follow it; what the cluster advertises does not change. For a
    /// broker that reaches its peers behind NAT or through a sidecar proxy, and for the
    /// failure-injection suite's per-link proxies (jepsen/README.md). Default: empty, every
    /// peer is dialed at its `raft_addr`.
    #[serde(default)]
    pub peer_dial: BTreeMap<String, String>,
    /// Raft timings. Default: see [`RaftTimings`].
    #[serde(default)]
    pub raft: RaftTimings,
    /// A broker that has not acknowledged the controller leader for this long is marked dead
    /// in the metadata (and live again when it answers). Default: 6000.
    #[serde(default = "default_session_timeout_ms")]
    pub broker_session_timeout_ms: u64,
    /// The largest record batch a produce request may carry, in bytes; larger ones are refused
    /// with MESSAGE_TOO_LARGE. At most the partition log's entry limit less the 22 bytes a
    /// produce entry adds (16 MiB - 22).
    /// Default: 8388608 (8 MiB).
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: u32,
    /// How often the broker applies retention, in ms: for each partition it leads, it asks
    /// the log which whole segments the topic's `retention_ms` / `retention_bytes` let go and
    /// proposes trimming them through Raft; every replica then purges its own log. Default:
    /// 30000.
    #[serde(default = "default_retention_check_ms")]
    pub retention_check_ms: u64,
    /// A partition's active log segment is rolled (sealed, a new one started) once it holds
    /// entries and is this old, in ms, besides rolling at 128 MiB. Retention deletes whole
    /// sealed segments only, so this bounds how long data outlives `retention_ms` on a quiet
    /// partition. Default: 604800000 (7 days).
    #[serde(default = "default_segment_roll_ms")]
    pub segment_roll_ms: u64,
    /// An idempotent producer id that has written nothing to a partition for this long is
    /// forgotten there (Kafka's `producer.id.expiration.ms`): its next batch is then refused
    /// UNKNOWN_PRODUCER unless it starts at sequence 0 (the SDK starts again under a new id).
    /// Measured on the partition's replicated clock, the latest leader time stamped into its
    /// produces, in ms. The leader's setting applies (it travels in each produce). Default:
    /// 604800000 (7 days).
    #[serde(default = "default_producer_id_expiration_ms")]
    pub producer_id_expiration_ms: u64,
    /// The most idempotent producer ids a partition tracks: a batch from a new id beyond it is
    /// refused with TOO_MANY_PRODUCER_IDS until an id expires. An id costs about 300 bytes of
    /// memory and 100 bytes of snapshot per replica (docs/DURABILITY.md). The leader's setting
    /// applies. Default: 10000 (about 3 MiB of memory per partition replica at worst).
    #[serde(default = "default_max_producers_per_partition")]
    pub max_producers_per_partition: u32,
    /// The longest delay a delayed message may ask for (docs/DELAYS.md): a `deliver_at` further
    /// ahead of the leader's clock is refused with INVALID_DELAY. In ms. Default: 31536000000
    /// (365 days).
    #[serde(default = "default_max_delay_ms")]
    pub max_delay_ms: u64,
    /// The free-space guard: while the file system of `data_dir` has less free space than the
    /// larger of this and `disk_min_free_percent`, the broker refuses writes to every partition
    /// with a replica on it (STORAGE_FULL) and keeps serving reads, consumer groups and
    /// replication, which the space left holds; writes resume by themselves once space is freed
    /// (docs/OPERATIONS.md). 0 with `disk_min_free_percent = 0` turns the guard off. In bytes.
    /// Default: 1073741824 (1 GiB).
    #[serde(default = "default_disk_min_free_bytes")]
    pub disk_min_free_bytes: u64,
    /// The guard's threshold as a percentage of the file system's size (see
    /// `disk_min_free_bytes`), 0 to 50. Default: 5.
    #[serde(default = "default_disk_min_free_percent")]
    pub disk_min_free_percent: u8,
    /// How often the broker checks its data directory's free space, in ms. Default: 1000.
    #[serde(default = "default_disk_check_interval_ms")]
    pub disk_check_interval_ms: u64,
    /// The most partition replicas this broker hosts: a topic creation that would put more on
    /// it is refused with INSUFFICIENT_CAPACITY, before anything is created. 0 derives it from
    /// the open-file limit (raised to the hard limit at start): a replica in use holds one
    /// descriptor, and 1,024 are kept for the rest (docs/OPERATIONS.md). Default: 0.
    #[serde(default)]
    pub max_replicas: u32,
    /// How long a stopping broker (SIGTERM, SIGINT) may spend handing the leadership of its
    /// partitions, coordinators and the controller to caught-up replicas before it stops
    /// anyway, in ms (docs/OPERATIONS.md, "Rolling restarts"). 0 stops at once, leaving its
    /// groups to elect new leaders once they miss it. Default: 10000.
    #[serde(default = "default_shutdown_transfer_timeout_ms")]
    pub shutdown_transfer_timeout_ms: u64,
    /// Consumer groups. Default: see [`GroupConfig`].
    #[serde(default)]
    pub groups: GroupConfig,
    /// Transactions. Default: see [`TxnConfig`].
    #[serde(default)]
    pub transactions: TxnConfig,
    /// Threads of the broker's async runtime, which serves clients and runs every Raft group
    /// (fsyncs run on threads of their own). 0 means one per CPU core. When several brokers
    /// share a machine, as the local cluster of `cluster-configs/` does, give each its share:
    /// threads beyond the cores only add context switches (measured: 1 thread per broker for
    /// three brokers on two cores took 5-35% more writes, at a lower p99, than 2;
    /// docs/BENCHMARKS.md).
    /// Default: 0.
    #[serde(default)]
    pub worker_threads: usize,
}

fn default_shutdown_transfer_timeout_ms() -> u64 {
    10_000
}

fn default_session_timeout_ms() -> u64 {
    6_000
}

fn default_retention_check_ms() -> u64 {
    30_000
}

fn default_segment_roll_ms() -> u64 {
    7 * 24 * 3_600_000
}

fn default_producer_id_expiration_ms() -> u64 {
    sluice_raft::partition::DEFAULT_PRODUCER_ID_EXPIRATION_MS
}

fn default_max_delay_ms() -> u64 {
    sluice_common::delay::DEFAULT_MAX_DELAY_MS
}

fn default_max_producers_per_partition() -> u32 {
    sluice_raft::partition::DEFAULT_MAX_PRODUCERS
}

fn default_disk_min_free_bytes() -> u64 {
    1 << 30
}

fn default_disk_min_free_percent() -> u8 {
    5
}

fn default_disk_check_interval_ms() -> u64 {
    1_000
}

fn default_max_batch_bytes() -> u32 {
    8 * 1024 * 1024
}

/// The largest `max_batch_bytes` accepted: a batch is one partition log entry, behind the entry
/// kind, the command tag and the leader's stamp.
pub fn max_batch_bytes_limit() -> u32 {
    LogConfig::default().max_entry_bytes - sluice_raft::partition::PRODUCE_OVERHEAD_BYTES
}

/// The largest `max_delay_ms` accepted: 100 years, far from any overflow of a u64 of ms.
const MAX_DELAY_LIMIT_MS: u64 = 100 * 365 * 24 * 3_600_000;

/// The largest `max_producers_per_partition` accepted: 1,000,000 ids are about 300 MiB of
/// memory per partition replica.
pub const MAX_PRODUCERS_PER_PARTITION_LIMIT: u32 = 1_000_000;

impl BrokerConfig {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<BrokerConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let config: BrokerConfig =
            toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        config.validate()?;
        Ok(config)
    }

    /// The single-node configuration of `sluice-broker --dev`: node 1, data in
    /// [`DEV_DATA_DIR`] under the working directory, clients on [`DEV_CLIENT_ADDR`], peers on
    /// [`DEV_RAFT_ADDR`], metrics on [`DEV_METRICS_ADDR`], every other setting at its default.
    pub fn dev() -> BrokerConfig {
        BrokerConfig {
            node_id: 1,
            data_dir: PathBuf::from(DEV_DATA_DIR),
            raft_listen: None,
            client_listen: None,
            metrics_listen: Some(DEV_METRICS_ADDR.parse().expect("a valid address")),
            peers: vec![PeerConfig {
                node_id: 1,
                raft_addr: DEV_RAFT_ADDR.into(),
                client_addr: DEV_CLIENT_ADDR.into(),
            }],
            peer_dial: BTreeMap::new(),
            raft: RaftTimings::default(),
            broker_session_timeout_ms: default_session_timeout_ms(),
            max_batch_bytes: default_max_batch_bytes(),
            retention_check_ms: default_retention_check_ms(),
            segment_roll_ms: default_segment_roll_ms(),
            producer_id_expiration_ms: default_producer_id_expiration_ms(),
            max_producers_per_partition: default_max_producers_per_partition(),
            max_delay_ms: default_max_delay_ms(),
            disk_min_free_bytes: default_disk_min_free_bytes(),
            disk_min_free_percent: default_disk_min_free_percent(),
            disk_check_interval_ms: default_disk_check_interval_ms(),
            max_replicas: 0,
            shutdown_transfer_timeout_ms: default_shutdown_transfer_timeout_ms(),
            groups: GroupConfig::default(),
            transactions: TxnConfig::default(),
            worker_threads: 0,
        }
    }

    /// `max_replicas`, or when it is 0 what the open-file limit, the memory-map limit and the
    /// memory in force allow (`None` then: the bounds, for the log).
    pub fn max_replicas_or_budget(&self) -> (u32, Option<crate::files::Capacity>) {
        match self.max_replicas {
            0 => {
                let capacity = crate::files::Capacity::of_this_process();
                (capacity.replicas(), Some(capacity))
            }
            set => (set, None),
        }
    }

    /// The free-space guard's settings.
    pub(crate) fn disk_guard(&self) -> crate::disk::GuardConfig {
        crate::disk::GuardConfig {
            min_free_bytes: self.disk_min_free_bytes,
            min_free_percent: self.disk_min_free_percent,
            check_interval: Duration::from_millis(self.disk_check_interval_ms),
        }
    }

    /// Checks the whole configuration; the error names the field at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.peers.is_empty() {
            return invalid("peers: list every broker of the cluster, this one included".into());
        }
        let ids: BTreeSet<u64> = self.peers.iter().map(|p| p.node_id).collect();
        if ids.len() != self.peers.len() {
            return invalid("peers: node ids must be unique".into());
        }
        if !ids.contains(&self.node_id) {
            return invalid(format!("node_id {} is not among peers {ids:?}", self.node_id));
        }
        for p in &self.peers {
            for (field, addr) in [("raft_addr", &p.raft_addr), ("client_addr", &p.client_addr)] {
                if !addr.contains(':') || addr.len() > 255 {
                    return invalid(format!("peers[node_id = {}].{field} = {addr:?}: expected host:port", p.node_id));
                }
            }
        }
        for (advertised, dialed) in &self.peer_dial {
            if advertised.parse::<SocketAddr>().is_err() || dialed.parse::<SocketAddr>().is_err() {
                return invalid(format!(
                    "peer_dial: {advertised:?} = {dialed:?}: both sides must be ip:port (a peer's raft_addr, the \
                     address to reach it through)"
                ));
            }
        }
        if self.raft_listen().is_none() {
            return invalid(format!(
                "raft_listen: not set and this node's raft_addr ({}) is not ip:port",
                self.me().raft_addr
            ));
        }
        if self.client_listen().is_none() {
            return invalid(format!(
                "client_listen: not set and this node's client_addr ({}) is not ip:port",
                self.me().client_addr
            ));
        }
        if let Some(metrics) = self.metrics_listen.filter(|a| a.port() != 0) {
            let taken = [("client", self.client_listen()), ("peer (raft)", self.raft_listen())];
            if let Some((which, _)) = taken.iter().find(|(_, a)| *a == Some(metrics)) {
                return invalid(format!(
                    "metrics_listen {metrics} is also this broker's {which} address; pick another"
                ));
            }
        }
        let limit = max_batch_bytes_limit();
        if self.max_batch_bytes == 0 || self.max_batch_bytes > limit {
            return invalid(format!("max_batch_bytes is {}; use 1 to {limit}", self.max_batch_bytes));
        }
        if self.retention_check_ms == 0 || self.segment_roll_ms == 0 {
            return invalid(format!(
                "retention_check_ms ({}) and segment_roll_ms ({}) must be at least 1",
                self.retention_check_ms, self.segment_roll_ms
            ));
        }
        if self.disk_min_free_percent > 50 || self.disk_check_interval_ms == 0 {
            return invalid(format!(
                "disk_min_free_percent is {} (use 0 to 50) and disk_check_interval_ms {} (use at least 1)",
                self.disk_min_free_percent, self.disk_check_interval_ms
            ));
        }
        if self.producer_id_expiration_ms == 0 {
            return invalid(
                "producer_id_expiration_ms is 0; idle producers need time to retry (604800000, 7 days, is usual)"
                    .into(),
            );
        }
        let most = MAX_PRODUCERS_PER_PARTITION_LIMIT;
        if self.max_producers_per_partition == 0 || self.max_producers_per_partition > most {
            return invalid(format!(
                "max_producers_per_partition is {}; use 1 to {most}",
                self.max_producers_per_partition
            ));
        }
        if self.max_delay_ms == 0 || self.max_delay_ms > MAX_DELAY_LIMIT_MS {
            return invalid(format!(
                "max_delay_ms is {}; use 1 to {MAX_DELAY_LIMIT_MS} (100 years)",
                self.max_delay_ms
            ));
        }
        if self.worker_threads > MAX_WORKER_THREADS {
            return invalid(format!(
                "worker_threads is {}; use 0 (one per core) to {MAX_WORKER_THREADS}",
                self.worker_threads
            ));
        }
        self.groups.validate()?;
        self.transactions.validate()?;
        self.raft.controller()?;
        self.raft.partition()?;
        self.raft.node_liveness()?;
        if self.broker_session_timeout_ms <= self.raft.controller_election_timeout_ms[1] {
            return invalid(format!(
                "broker_session_timeout_ms ({}) must exceed the controller election timeout max ({} ms)",
                self.broker_session_timeout_ms, self.raft.controller_election_timeout_ms[1]
            ));
        }
        Ok(())
    }

    /// This broker's own entry in `peers`.
    pub fn me(&self) -> &PeerConfig {
        self.peers.iter().find(|p| p.node_id == self.node_id).expect("validated: node_id is a peer")
    }

    /// The address the peer service binds.
    pub fn raft_listen(&self) -> Option<SocketAddr> {
        self.raft_listen.or_else(|| self.me().raft_addr.parse().ok())
    }

    /// The address the client API binds.
    pub fn client_listen(&self) -> Option<SocketAddr> {
        self.client_listen.or_else(|| self.me().client_addr.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE: &str = r#"
        node_id = 2
        data_dir = "data/node2"
        [[peers]]
        node_id = 1
        raft_addr = "127.0.0.1:9101"
        client_addr = "127.0.0.1:9091"
        [[peers]]
        node_id = 2
        raft_addr = "127.0.0.1:9102"
        client_addr = "127.0.0.1:9092"
    "#;

    /// Jepsen finding F4: a leader resuming its old term after losing an unsynced log tail
    /// rewrote committed indexes. Every group must stand for election after a restart.
    #[test]
    fn restarted_leaders_are_elected_again_never_restored() {
        let timings = RaftTimings::default();
        for config in [timings.controller().unwrap(), timings.partition().unwrap()] {
            assert_eq!(config.enable_leader_restore, Some(false), "{}: leader restore is on", config.cluster_name);
        }
    }

    #[test]
    fn parses_with_defaults_and_validates() {
        let c: BrokerConfig = toml::from_str(THREE).unwrap();
        c.validate().unwrap();
        assert_eq!(c.raft_listen(), Some("127.0.0.1:9102".parse().unwrap()));
        assert_eq!(c.client_listen(), Some("127.0.0.1:9092".parse().unwrap()));
        assert_eq!(c.max_batch_bytes, 8 * 1024 * 1024);
        assert_eq!((c.retention_check_ms, c.segment_roll_ms), (30_000, 604_800_000));
        assert_eq!((c.producer_id_expiration_ms, c.max_producers_per_partition), (604_800_000, 10_000));
        assert_eq!(c.metrics_listen, None, "no metrics endpoint unless configured");
        assert_eq!(c.raft, RaftTimings::default());
        assert_eq!(c.raft.partition().unwrap().heartbeat_interval, 250);
        assert_eq!(c.raft.partition().unwrap().max_in_snapshot_log_to_keep, u64::MAX, "snapshots never purge");
        assert_eq!(c.groups, GroupConfig::default());
        assert_eq!(c.groups.offsets_partitions, 12);
        assert_eq!((c.groups.session_timeout_ms, c.groups.rebalance_timeout_ms), (10_000, 60_000));
        assert_eq!((c.groups.offsets_retention_ms, c.groups.offsets_retention_check_ms), (604_800_000, 600_000));
    }

    #[test]
    fn group_settings_parse_and_are_checked() {
        let c: BrokerConfig = toml::from_str(&format!("{THREE}\n[groups]\noffsets_partitions = 3")).unwrap();
        c.validate().unwrap();
        assert_eq!((c.groups.offsets_partitions, c.groups.heartbeat_interval_ms), (3, 1_000));
        let error = |change: fn(&mut GroupConfig)| {
            let mut c: BrokerConfig = toml::from_str(THREE).unwrap();
            change(&mut c.groups);
            c.validate().unwrap_err().to_string()
        };
        assert!(error(|g| g.offsets_partitions = 0).contains("groups.offsets_partitions is 0"));
        assert!(error(|g| g.session_timeout_ms = 2_999).contains("groups.heartbeat_interval_ms"));
        assert!(error(|g| g.heartbeat_interval_ms = 0).contains("groups.heartbeat_interval_ms (0)"));
        assert!(error(|g| g.rebalance_timeout_ms = 0).contains("groups.rebalance_timeout_ms"));
        assert!(error(|g| g.checkpoint_interval_records = 1).contains("groups.checkpoint_interval_records"));
        assert!(error(|g| g.offsets_retention_ms = 0).contains("groups.offsets_retention_ms (0)"));
        assert!(error(|g| g.offsets_retention_check_ms = 0).contains("offsets_retention_check_ms (0)"));
        let unknown = toml::from_str::<BrokerConfig>(&format!("{THREE}\n[groups]\nbogus = 1")).unwrap_err();
        assert!(unknown.to_string().contains("bogus"), "{unknown}");
    }

    #[test]
    fn the_local_cluster_configs_load_and_agree() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cluster-configs");
        let configs: Vec<BrokerConfig> =
            (1..=3).map(|n| BrokerConfig::load(&dir.join(format!("node{n}.toml"))).unwrap()).collect();
        for (i, c) in configs.iter().enumerate() {
            assert_eq!(c.node_id, i as u64 + 1);
            assert_eq!(c.peers, configs[0].peers, "every broker lists the same peers");
            assert_eq!(c.metrics_listen, Some(format!("127.0.0.1:{}", 9191 + i).parse().unwrap()));
        }
    }

    #[test]
    fn errors_name_the_field() {
        let c: BrokerConfig =
            toml::from_str(&THREE.replace("node_id = 2\n        data_dir", "node_id = 7\n        data_dir")).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("node_id 7"));
        let unknown = toml::from_str::<BrokerConfig>(&format!("{THREE}\nbogus = 1")).unwrap_err().to_string();
        assert!(unknown.contains("bogus"), "{unknown}");
        let mut c: BrokerConfig = toml::from_str(THREE).unwrap();
        c.raft.partition_election_timeout_ms = [100, 50];
        assert!(c.validate().unwrap_err().to_string().contains("raft.partition"));
        let mut c: BrokerConfig = toml::from_str(THREE).unwrap();
        c.raft.node_timeout_ms = 2 * c.raft.node_heartbeat_ms;
        assert!(c.validate().unwrap_err().to_string().contains("raft.node_"));
        let mut c: BrokerConfig = toml::from_str(THREE).unwrap();
        c.peers[1].client_addr = "broker-2.internal:9092".into();
        assert!(c.validate().unwrap_err().to_string().contains("client_listen"));
        c.client_listen = Some("0.0.0.0:9092".parse().unwrap());
        c.validate().unwrap();
        c.max_batch_bytes = max_batch_bytes_limit() + 1;
        assert!(c.validate().unwrap_err().to_string().contains("max_batch_bytes"));
        let mut c: BrokerConfig = toml::from_str(&format!("retention_check_ms = 0\n{THREE}")).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("retention_check_ms (0)"));
        c.retention_check_ms = 1;
        c.validate().unwrap();
        c.producer_id_expiration_ms = 0;
        assert!(c.validate().unwrap_err().to_string().contains("producer_id_expiration_ms is 0"));
        c.producer_id_expiration_ms = 1;
        c.max_producers_per_partition = 0;
        assert!(c.validate().unwrap_err().to_string().contains("max_producers_per_partition is 0"));
        c.max_producers_per_partition = MAX_PRODUCERS_PER_PARTITION_LIMIT + 1;
        assert!(c.validate().unwrap_err().to_string().contains("use 1 to 1000000"));
        c.max_producers_per_partition = 1;
        c.validate().unwrap();
        let mut c: BrokerConfig = toml::from_str(&format!("metrics_listen = \"127.0.0.1:9092\"\n{THREE}")).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("metrics_listen 127.0.0.1:9092 is also"));
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.validate().unwrap();
        c.worker_threads = MAX_WORKER_THREADS + 1;
        assert!(c.validate().unwrap_err().to_string().contains("worker_threads is 1025"));
    }

    #[test]
    fn peer_dial_overrides_parse_and_must_be_ip_port() {
        let table = "\n[peer_dial]\n\"127.0.0.1:9101\" = \"127.0.0.1:19012\"\n";
        let c: BrokerConfig = toml::from_str(&format!("{THREE}{table}")).unwrap();
        c.validate().unwrap();
        assert_eq!(c.peer_dial.get("127.0.0.1:9101").map(String::as_str), Some("127.0.0.1:19012"));
        assert!(toml::from_str::<BrokerConfig>(THREE).unwrap().peer_dial.is_empty(), "empty by default");
        for (advertised, dialed) in [("broker-1:9101", "127.0.0.1:19012"), ("127.0.0.1:9101", "127.0.0.1")] {
            let mut c = c.clone();
            c.peer_dial = BTreeMap::from([(advertised.to_owned(), dialed.to_owned())]);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("peer_dial") && e.contains(advertised) && e.contains("ip:port"), "{e}");
        }
    }

    #[test]
    fn the_dev_config_is_one_valid_node_under_the_working_directory() {
        let c = BrokerConfig::dev();
        c.validate().unwrap();
        assert_eq!((c.node_id, c.peers.len()), (1, 1));
        assert!(c.data_dir.is_relative());
        assert_eq!(c.client_listen(), Some(DEV_CLIENT_ADDR.parse().unwrap()));
        assert_eq!(c.raft_listen(), Some(DEV_RAFT_ADDR.parse().unwrap()));
        assert_eq!(c.metrics_listen, Some(DEV_METRICS_ADDR.parse().unwrap()));
    }
}
