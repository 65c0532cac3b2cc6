//! Client, producer and consumer settings. Every field says its default; `validate` refuses
//! values that cannot work, with a message that names the field.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::filter::MessageFilter;
use sluice_common::record::{Compression, DEFAULT_ZSTD_LEVEL};
use sluice_common::retry::RetryPolicy;

/// The local three-node cluster of `cluster-configs/`.
pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9091,127.0.0.1:9092,127.0.0.1:9093";

/// The environment variable [`ClientConfig::from_env`] reads bootstrap addresses from.
pub const BOOTSTRAP_ENV: &str = "SLUICE_BOOTSTRAP";

/// How to reach a cluster and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `host:port` client addresses of some brokers; any one that answers is enough, the rest
    /// of the cluster is learned from metadata. Default: [`DEFAULT_BOOTSTRAP`].
    pub bootstrap: Vec<String>,
    /// How long to wait for a TCP connection to a broker. Default: 3 s.
    pub connect_timeout: Duration,
    /// How long one request may take before it is abandoned and retried (a fetch may take its
    /// long-poll wait on top). Default: 10 s.
    pub request_timeout: Duration,
    /// How long an admin, metadata or offset operation is retried on retriable errors before
    /// it fails with [`Error::Timeout`]. Default: 30 s.
    pub operation_timeout: Duration,
    /// Metadata older than this is refreshed in the background. Default: 10 s.
    pub metadata_max_age: Duration,
    /// First pause between retries; it doubles up to `retry_backoff_max`. Default: 25 ms.
    pub retry_backoff_min: Duration,
    /// Longest pause between retries. Default: 1 s.
    pub retry_backoff_max: Duration,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            bootstrap: parse_bootstrap(DEFAULT_BOOTSTRAP),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(30),
            metadata_max_age: Duration::from_secs(10),
            retry_backoff_min: Duration::from_millis(25),
            retry_backoff_max: Duration::from_secs(1),
        }
    }
}

impl ClientConfig {
    /// Defaults, with these bootstrap addresses.
    pub fn new<S: Into<String>>(bootstrap: impl IntoIterator<Item = S>) -> ClientConfig {
        ClientConfig { bootstrap: bootstrap.into_iter().map(Into::into).collect(), ..ClientConfig::default() }
    }

    /// Defaults, with bootstrap addresses from `SLUICE_BOOTSTRAP` (comma-separated) when it is
    /// set and not empty, else [`DEFAULT_BOOTSTRAP`].
    pub fn from_env() -> ClientConfig {
        let list = std::env::var(BOOTSTRAP_ENV).ok().filter(|s| !s.trim().is_empty());
        ClientConfig::new(parse_bootstrap(list.as_deref().unwrap_or(DEFAULT_BOOTSTRAP)))
    }

    /// Checks that the settings can work.
    pub fn validate(&self) -> Result<()> {
        if self.bootstrap.is_empty() {
            return Err(invalid("bootstrap: give at least one broker address (host:port)"));
        }
        for address in &self.bootstrap {
            check_address(address)?;
        }
        for (name, value) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
            ("operation_timeout", self.operation_timeout),
            ("metadata_max_age", self.metadata_max_age),
            ("retry_backoff_min", self.retry_backoff_min),
        ] {
            if value.is_zero() {
                return Err(invalid(format!("{name} must be greater than zero")));
            }
        }
        if self.retry_backoff_max < self.retry_backoff_min {
            return Err(invalid("retry_backoff_max must be at least retry_backoff_min"));
        }
        Ok(())
    }
}

/// Splits a comma-separated address list, dropping blanks.
pub fn parse_bootstrap(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn check_address(address: &str) -> Result<()> {
    let port = address.rsplit_once(':').map(|(host, port)| (host, port.parse::<u16>()));
    match port {
        Some((host, Ok(_))) if !host.is_empty() && !address.contains("://") => Ok(()),
        _ => Err(invalid(format!("bootstrap address {address:?} is not host:port (e.g. 127.0.0.1:9091)"))),
    }
}

/// How a [`Producer`](crate::Producer) batches, bounds memory and retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerConfig {
    /// How long a batch waits for more records before it is sent (it goes earlier once it is
    /// full or on [`flush`](crate::Producer::flush)). Default: 5 ms.
    pub linger: Duration,
    /// A batch is sent once it holds this many bytes; a single larger record travels alone.
    /// Default: 256 KiB.
    pub max_batch_bytes: usize,
    /// Records buffered and not yet acknowledged, in bytes, across all partitions; `send` waits
    /// when the buffer is full. Default: 32 MiB.
    pub buffer_memory_bytes: usize,
    /// Idempotent delivery: retries of a batch are written once (producer id, epoch and
    /// per-partition sequence numbers). Default: true. Off under [`Acks::None`], which never
    /// learns what was written and so cannot keep sequences.
    pub idempotence: bool,
    /// When the broker acknowledges a batch (docs/DURABILITY.md, "Acknowledgement levels").
    /// Default: [`Acks::All`].
    pub acks: Acks,
    /// The codec of each batch's values (docs/FORMAT.md, "Compressed batches"); consumers
    /// decompress without being told. Default: [`Compression::None`].
    pub compression: Compression,
    /// zstd's level (1–22) or gzip's (0–9, clamped); ignored by the other codecs. Default:
    /// [`DEFAULT_ZSTD_LEVEL`] (3).
    pub compression_level: i32,
    /// How long a batch may take from its creation until it is acknowledged, retries included,
    /// before its records fail with [`Error::Timeout`]. Default: 30 s.
    pub delivery_timeout: Duration,
    /// Records without a key or partition go to one partition until this many bytes of them
    /// went there, then to the next (Kafka's uniform sticky partitioner): larger batches, and
    /// an even spread over time. Default: 16 KiB (Kafka's `batch.size` default, which it uses).
    pub sticky_partition_bytes: usize,
}

impl Default for ProducerConfig {
    fn default() -> ProducerConfig {
        ProducerConfig {
            linger: Duration::from_millis(5),
            max_batch_bytes: 256 * 1024,
            buffer_memory_bytes: 32 * 1024 * 1024,
            idempotence: true,
            acks: Acks::All,
            compression: Compression::None,
            compression_level: DEFAULT_ZSTD_LEVEL,
            delivery_timeout: Duration::from_secs(30),
            sticky_partition_bytes: 16 * 1024,
        }
    }
}

impl ProducerConfig {
    /// Checks that the settings can work.
    pub fn validate(&self) -> Result<()> {
        if self.max_batch_bytes < 1024 {
            return Err(invalid("max_batch_bytes must be at least 1024"));
        }
        if self.sticky_partition_bytes == 0 {
            return Err(invalid("sticky_partition_bytes must be at least 1"));
        }
        if self.buffer_memory_bytes < self.max_batch_bytes {
            return Err(invalid("buffer_memory_bytes must be at least max_batch_bytes"));
        }
        if self.buffer_memory_bytes > u32::MAX as usize {
            return Err(invalid("buffer_memory_bytes must be below 4 GiB"));
        }
        if self.delivery_timeout.is_zero() {
            return Err(invalid("delivery_timeout must be greater than zero"));
        }
        Ok(())
    }
}

/// Where a consumer starts reading a partition, or moves to with `seek`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    /// The first offset still stored.
    Earliest,
    /// The offset after the last committed message: only new messages.
    Latest,
    /// This offset.
    Offset(u64),
    /// The first message whose timestamp is at or after this many ms since the Unix epoch
    /// (the latest offset if there is none).
    Timestamp(i64),
}

/// When a producer's batches are acknowledged, and so what an acknowledgement promises
/// (docs/DURABILITY.md, "Acknowledgement levels"). Kafka's `acks`, RocketMQ's send modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Acks {
    /// Once committed: fsynced by a majority of the partition's replicas. Survives any
    /// minority of crashes, a full-cluster power loss included. Kafka's `acks=all`.
    #[default]
    All,
    /// Once the partition's leader has checked the batch and queued it in its log, before
    /// replication and fsync: lost if that leader dies or is deposed first. Offsets are mostly
    /// not returned ([`RecordMetadata::NO_OFFSET`](crate::RecordMetadata::NO_OFFSET)): a
    /// producer's first batch under a new leader is written to completion (so the leader knows
    /// its sequence) and comes back with them. A batch that would follow a lost one is refused
    /// (`OUT_OF_ORDER_SEQUENCE`), never acknowledged and dropped. Kafka's `acks=1`.
    Leader,
    /// Not acknowledged: a record counts as sent once it is on its way to the leader, and
    /// failures are only counted ([`Producer::failures`](crate::Producer::failures)). No
    /// retries, no idempotence. Kafka's `acks=0`, RocketMQ's oneway send.
    None,
}

impl Acks {
    pub(crate) fn wire(self) -> sluice_proto::v1::Acks {
        match self {
            Acks::All => sluice_proto::v1::Acks::All,
            Acks::Leader => sluice_proto::v1::Acks::Leader,
            Acks::None => sluice_proto::v1::Acks::None,
        }
    }

    /// The name the CLI and configuration files use: `all`, `leader` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Acks::All => "all",
            Acks::Leader => "leader",
            Acks::None => "none",
        }
    }
}

impl std::fmt::Display for Acks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Acks {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Acks, String> {
        match s {
            "all" | "-1" => Ok(Acks::All),
            "leader" | "1" => Ok(Acks::Leader),
            "none" | "0" => Ok(Acks::None),
            other => Err(format!("acks must be all, leader or none (Kafka's -1, 1 or 0), not {other:?}")),
        }
    }
}

/// What a consumer sees of transactions (docs/TRANSACTIONS.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Isolation {
    /// Only committed transactions' messages, and nothing past the last stable offset (the
    /// first message of a transaction still open): what most consumers want.
    #[default]
    ReadCommitted,
    /// Everything written, up to the high watermark: messages of open and aborted transactions
    /// too (transaction markers are never returned).
    ReadUncommitted,
}

impl Isolation {
    pub(crate) fn wire(self) -> sluice_proto::v1::Isolation {
        match self {
            Isolation::ReadCommitted => sluice_proto::v1::Isolation::ReadCommitted,
            Isolation::ReadUncommitted => sluice_proto::v1::Isolation::ReadUncommitted,
        }
    }
}

/// How a [`Consumer`](crate::Consumer) fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Where a partition without a position starts (after `assign`, before any `seek`).
    /// Default: [`SeekTo::Latest`].
    pub start: SeekTo,
    /// Bytes asked for per partition per fetch; a larger batch still arrives whole.
    /// Default: 1 MiB.
    pub fetch_max_bytes: u32,
    /// How long a broker holds a fetch open when there is nothing new (long poll).
    /// Default: 500 ms.
    pub fetch_max_wait: Duration,
    /// Only the messages this filter matches, chosen on the broker (docs/FILTERS.md); the
    /// position moves past the others. Default: `None` (every message).
    pub filter: Option<MessageFilter>,
    /// What of transactions this consumer sees. Default: [`Isolation::ReadCommitted`].
    pub isolation: Isolation,
}

impl Default for ConsumerConfig {
    fn default() -> ConsumerConfig {
        ConsumerConfig {
            start: SeekTo::Latest,
            fetch_max_bytes: 1024 * 1024,
            fetch_max_wait: Duration::from_millis(500),
            filter: None,
            isolation: Isolation::ReadCommitted,
        }
    }
}

impl ConsumerConfig {
    /// Checks that the settings can work.
    pub fn validate(&self) -> Result<()> {
        if self.fetch_max_bytes == 0 {
            return Err(invalid("fetch_max_bytes must be greater than zero"));
        }
        if u32::try_from(self.fetch_max_wait.as_millis()).is_err() {
            return Err(invalid("fetch_max_wait is too long"));
        }
        self.filter.as_ref().map_or(Ok(()), MessageFilter::validate)
    }
}

/// Where a [`GroupConsumer`](crate::GroupConsumer) starts reading a partition for which its
/// group has no committed offset (or whose committed offset the partition no longer holds).
///
/// ```
/// use sluice_client::{GroupConsumerConfig, OffsetReset};
/// let config = GroupConsumerConfig { auto_offset_reset: OffsetReset::Earliest, ..GroupConsumerConfig::new("audit") };
/// assert_eq!(GroupConsumerConfig::new("g").auto_offset_reset, OffsetReset::Latest);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The first offset still stored: everything the partition holds.
    Earliest,
    /// The offset after the last committed message: only new messages. The default, as in
    /// Kafka.
    #[default]
    Latest,
}

impl OffsetReset {
    /// The same position as a [`SeekTo`].
    ///
    /// ```
    /// use sluice_client::{OffsetReset, SeekTo};
    /// assert_eq!(OffsetReset::Earliest.seek_to(), SeekTo::Earliest);
    /// ```
    pub fn seek_to(self) -> SeekTo {
        match self {
            OffsetReset::Earliest => SeekTo::Earliest,
            OffsetReset::Latest => SeekTo::Latest,
        }
    }
}

/// The longest group id or group instance id accepted, in bytes (as for topic names).
///
/// ```
/// use sluice_client::{GroupConsumerConfig, MAX_GROUP_ID_LEN};
/// assert!(GroupConsumerConfig::new("g".repeat(MAX_GROUP_ID_LEN + 1)).validate().is_err());
/// ```
pub const MAX_GROUP_ID_LEN: usize = 249;

/// How a [`GroupConsumer`](crate::GroupConsumer) takes part in its group, commits and fetches.
///
/// ```
/// use std::time::Duration;
/// use sluice_client::{GroupConsumerConfig, OffsetReset};
///
/// let config = GroupConsumerConfig {
///     instance_id: Some("billing-1".into()),
///     auto_offset_reset: OffsetReset::Earliest,
///     session_timeout: Duration::from_secs(30),
///     ..GroupConsumerConfig::new("billing")
/// };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GroupConsumerConfig {
    /// The group: members of one group share the partitions of the topics they subscribe to,
    /// and its committed offsets say where each partition is to be read from next. 1 to 249
    /// characters from `[A-Za-z0-9._-]`. No default.
    pub group: String,
    /// Set: a *static* member. When it closes it keeps its partitions (and the rest of the
    /// group keeps theirs) for `session_timeout`; a consumer started with the same id within
    /// that time takes them over without a rebalance. Give each process its own, stable id
    /// (a host name, a pod name). Default: `None` (a dynamic member, whose partitions move at
    /// once when it closes).
    pub instance_id: Option<String>,
    /// A member the coordinator hears nothing from for this long is removed from the group
    /// and its partitions move to others. Heartbeats are sent in the background, so this
    /// bounds how long a crashed process holds its partitions. Default: 10 s.
    pub session_timeout: Duration,
    /// How long the member may take to give up partitions the coordinator asks it to revoke
    /// (revocation happens inside [`poll`](crate::GroupConsumer::poll), so this also bounds
    /// the time between two polls during a rebalance). Default: 60 s.
    pub rebalance_timeout: Duration,
    /// Commit in the background of `poll`, every `auto_commit_interval`, the positions of
    /// records the application has finished with (those returned by the poll before the
    /// last), and commit the positions of revoked partitions before giving them up and of
    /// every partition on [`close`](crate::GroupConsumer::close). Default: true.
    pub auto_commit: bool,
    /// How often auto-commit commits. Default: 5 s.
    pub auto_commit_interval: Duration,
    /// Where a partition with no committed offset starts. Default: [`OffsetReset::Latest`].
    pub auto_offset_reset: OffsetReset,
    /// Bytes asked for per partition per fetch; a larger batch still arrives whole.
    /// Default: 1 MiB.
    pub fetch_max_bytes: u32,
    /// How long a broker holds a fetch open when there is nothing new (long poll).
    /// Default: 500 ms.
    pub fetch_max_wait: Duration,
    /// Only the messages this filter matches, chosen on the broker (docs/FILTERS.md); the
    /// committed positions move past the others. Default: `None` (every message).
    pub filter: Option<MessageFilter>,
    /// Broadcast consumption (RocketMQ's BROADCASTING): this member receives every partition
    /// of its topics, whatever the group's other members do, and its committed offsets are its
    /// own, kept by the group's coordinator under `instance_id` (required), so an instance that
    /// restarts resumes where it was. All members of a group consume one way. Default: false.
    pub broadcast: bool,
    /// What of transactions this member sees. Default: [`Isolation::ReadCommitted`].
    pub isolation: Isolation,
    /// The group's retry policy (docs/RETRIES.md): sent when the member joins, it becomes the
    /// group's if the group has none; a group with another refuses the member
    /// [`RetryPolicyMismatch`](crate::ErrorCode::RetryPolicyMismatch). Default: `None` (the
    /// group's, or 16 attempts, 1 s doubling to 2 h).
    pub retry: Option<RetryPolicy>,
    /// Key-ordered consumption: a nacked message holds back the later messages of its key
    /// (parked, redelivered after it in order) while the other keys keep flowing. Part of the
    /// group's retry policy, so every member must agree. Default: false.
    pub key_ordered: bool,
}

impl GroupConsumerConfig {
    /// Defaults, for a member of `group`.
    ///
    /// ```
    /// let config = sluice_client::GroupConsumerConfig::new("billing");
    /// assert!(config.auto_commit && config.instance_id.is_none());
    /// ```
    pub fn new(group: impl Into<String>) -> GroupConsumerConfig {
        GroupConsumerConfig {
            group: group.into(),
            instance_id: None,
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(60),
            auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            auto_offset_reset: OffsetReset::Latest,
            fetch_max_bytes: 1024 * 1024,
            fetch_max_wait: Duration::from_millis(500),
            filter: None,
            broadcast: false,
            isolation: Isolation::ReadCommitted,
            retry: None,
            key_ordered: false,
        }
    }

    /// Checks that the settings can work; the error names the field.
    ///
    /// ```
    /// use std::time::Duration;
    /// use sluice_client::GroupConsumerConfig;
    /// let bad = GroupConsumerConfig { session_timeout: Duration::ZERO, ..GroupConsumerConfig::new("g") };
    /// assert!(bad.validate().unwrap_err().to_string().contains("session_timeout"));
    /// ```
    pub fn validate(&self) -> Result<()> {
        check_group_id("group", &self.group)?;
        if let Some(id) = &self.instance_id {
            check_group_id("instance_id", id)?;
        }
        if let Some(retry) = &self.retry {
            retry.validate().map_err(|e| invalid(format!("retry: {e}")))?;
        }
        if self.broadcast && self.instance_id.is_none() {
            return Err(invalid(
                "broadcast needs an instance_id: each instance's offsets are kept under it, so it resumes where it was",
            ));
        }
        for (name, value, min) in [
            ("session_timeout", self.session_timeout, Duration::from_millis(100)),
            ("rebalance_timeout", self.rebalance_timeout, Duration::from_millis(100)),
            ("auto_commit_interval", self.auto_commit_interval, Duration::from_millis(1)),
        ] {
            if value < min {
                return Err(invalid(format!("{name} must be at least {} ms", min.as_millis())));
            }
            if u32::try_from(value.as_millis()).is_err() {
                return Err(invalid(format!("{name} is too long")));
            }
        }
        ConsumerConfig {
            start: SeekTo::Latest,
            fetch_max_bytes: self.fetch_max_bytes,
            fetch_max_wait: self.fetch_max_wait,
            filter: self.filter.clone(),
            isolation: self.isolation,
        }
        .validate()
    }
}

/// Checks a group id or instance id: 1 to 249 characters from `[A-Za-z0-9._-]`.
pub(crate) fn check_group_id(what: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_GROUP_ID_LEN {
        return Err(invalid(format!("{what} must be 1 to {MAX_GROUP_ID_LEN} characters long, not {}", id.len())));
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(invalid(format!("{what} {id:?} contains {c:?}; only [A-Za-z0-9._-] are allowed")));
    }
    Ok(())
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidArgument(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_lists_split_on_commas_and_drop_blanks() {
        assert_eq!(parse_bootstrap(" a:1, ,b:2,"), vec!["a:1", "b:2"]);
        assert_eq!(ClientConfig::default().bootstrap.len(), 3);
    }

    #[test]
    fn validation_names_the_bad_field() {
        assert!(ClientConfig::default().validate().is_ok());
        let bad = ClientConfig::new(["localhost"]).validate().unwrap_err().to_string();
        assert!(bad.contains("\"localhost\" is not host:port"), "{bad}");
        let bad = ClientConfig::new(["http://a:1"]).validate().unwrap_err().to_string();
        assert!(bad.contains("not host:port"), "{bad}");
        let empty = ClientConfig::new(Vec::<String>::new()).validate().unwrap_err().to_string();
        assert!(empty.contains("at least one broker"), "{empty}");
        let p = ProducerConfig { buffer_memory_bytes: 1024, ..ProducerConfig::default() };
        assert!(p.validate().unwrap_err().to_string().contains("buffer_memory_bytes"));
        assert!(ProducerConfig::default().validate().is_ok());
        assert!(ConsumerConfig::default().validate().is_ok());
    }

    #[test]
    fn group_settings_are_checked_field_by_field() {
        let ok = GroupConsumerConfig::new("billing.v2_eu-1");
        assert!(ok.validate().is_ok());
        assert_eq!((ok.auto_commit, ok.auto_offset_reset), (true, OffsetReset::Latest));
        let bad = |config: GroupConsumerConfig| config.validate().unwrap_err().to_string();
        assert!(bad(GroupConsumerConfig::new("")).contains("group must be 1 to 249"));
        assert!(bad(GroupConsumerConfig::new("a b")).contains("contains ' '"));
        assert!(bad(GroupConsumerConfig::new("g".repeat(250))).contains("not 250"));
        let instance = GroupConsumerConfig { instance_id: Some("x/y".into()), ..ok.clone() };
        assert!(bad(instance).starts_with("instance_id \"x/y\""));
        let session = GroupConsumerConfig { session_timeout: Duration::ZERO, ..ok.clone() };
        assert!(bad(session).contains("session_timeout must be at least"));
        let interval = GroupConsumerConfig { auto_commit_interval: Duration::from_secs(u64::MAX / 2000), ..ok.clone() };
        assert!(bad(interval).contains("auto_commit_interval is too long"));
        let fetch = GroupConsumerConfig { fetch_max_bytes: 0, ..ok };
        assert!(bad(fetch).contains("fetch_max_bytes"));
        assert_eq!(OffsetReset::Earliest.seek_to(), SeekTo::Earliest);
    }
}
