//! The command line, as clap parses it, and the parsers for values clap cannot read alone
//! (`--from`, `--property`, durations).

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sluice_client::{DEFAULT_BOOTSTRAP, SeekTo};

pub use crate::args_bench::{
    BenchCommand, BenchCommitArgs, BenchConsumeArgs, BenchDelayArgs, BenchProduceArgs, BenchRetryArgs, BenchRun,
    DelayBenchMode,
};
pub use crate::args_retry::{DlqCommand, DlqListArgs, ExecArgs, PolicyArgs, SetRetryArgs};
pub use crate::args_topic::{AlterArgs, CreateArgs, TopicCommand};
pub use crate::args_txn::{BenchTxnArgs, IsolationArg, IsolationLevel, TransactionArgs, TxnCommand};

/// Command-line client for a Sluice cluster.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, propagate_version = true)]
pub struct Cli {
    /// Brokers to bootstrap from: comma-separated host:port client addresses.
    #[arg(long, env = "SLUICE_BOOTSTRAP", default_value = DEFAULT_BOOTSTRAP, global = true)]
    pub bootstrap: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, describe, alter and delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Send messages: the VALUEs given, or each line of standard input.
    Produce(ProduceArgs),
    /// Print messages from a topic, alone or as a member of a consumer group.
    Consume(ConsumeArgs),
    /// List, describe and reset consumer groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// The cluster's brokers and leaders.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Measure produce, consume, consumer-group commit and transaction throughput and latency,
    /// and rebalance times.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// List and cancel pending delayed messages.
    #[command(subcommand)]
    Delay(DelayCommand),
    /// Create, list and delete recurring schedules: a message sent each time a cron expression
    /// or an interval fires.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// List and describe transactions, and commit or abort one its producer will not end.
    #[command(subcommand)]
    Txn(TxnCommand),
    /// List, redrive and purge a consumer group's dead-letter queue.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

/// `sluice schedule ...`
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Creates a schedule: each time it fires, the message is appended to the topic, once.
    Create(ScheduleCreateArgs),
    /// Lists schedules, with their next fire.
    List {
        /// Only this topic's (default: every topic's).
        #[arg(long)]
        topic: Option<String>,
        /// Output format.
        #[command(flatten)]
        output: OutputArg,
    },
    /// Deletes a schedule.
    Delete {
        /// The schedule's name.
        name: String,
        /// Its topic; needed only if several topics have a schedule of that name.
        #[arg(long)]
        topic: Option<String>,
    },
}

/// `sluice schedule create`
#[derive(Debug, Args)]
pub struct ScheduleCreateArgs {
    /// The schedule's name, unique on its topic.
    pub name: String,
    /// The topic its messages go to.
    #[arg(long)]
    pub topic: String,
    /// A cron expression with seconds: `sec min hour dom mon dow [year]` ('0 */5 * * * *').
    #[arg(long, conflicts_with = "every", required_unless_present = "every")]
    pub cron: Option<String>,
    /// The cron expression's IANA time zone (default UTC), e.g. Europe/Berlin.
    #[arg(long, requires = "cron")]
    pub tz: Option<String>,
    /// Fire every this long instead (at least 100ms): 500ms, 30s, 5m.
    #[arg(long, value_parser = parse_duration)]
    pub every: Option<Duration>,
    /// The message's value.
    #[arg(long)]
    pub value: String,
    /// The message's key.
    #[arg(long)]
    pub key: Option<String>,
    /// The message's tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// A string header `name=value` of the message; repeat for more.
    #[arg(long = "property", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
}

/// `sluice delay ...`
#[derive(Debug, Subcommand)]
pub enum DelayCommand {
    /// A topic's pending delayed messages, earliest due first, and how many there are.
    List {
        /// The topic.
        topic: String,
        /// Show at most this many.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// Output format.
        #[command(flatten)]
        output: OutputArg,
    },
    /// Cancels a pending delayed message: says CANCELLED, or ALREADY_DELIVERED if it was
    /// delivered first.
    Cancel {
        /// The topic.
        topic: String,
        /// The message's id, PARTITION-SEQ, as `sluice produce --delay` printed it.
        id: sluice_client::DelayedId,
    },
}

/// How a read command prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Output {
    /// For people: tables and plain values.
    #[default]
    Plain,
    /// For scripts: JSON (one object per line for `consume`).
    Json,
}

/// The `--output` flag of read commands.
#[derive(Debug, Clone, Copy, Args)]
pub struct OutputArg {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Plain)]
    pub output: Output,
}

/// `sluice produce`
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// The topic.
    pub topic: String,
    /// Key of every message (messages with one key go to one partition). Without a key,
    /// messages fill one partition for 16 KiB, then the next (Kafka's sticky partitioner).
    #[arg(long)]
    pub key: Option<String>,
    /// Tag of every message.
    #[arg(long)]
    pub tag: Option<String>,
    /// Send to this partition instead of by key or in 16 KiB turns.
    #[arg(long)]
    pub partition: Option<u32>,
    /// A string header `name=value`; repeat for more.
    #[arg(long = "property", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
    /// Deliver every message this long after it is sent (500ms, 30s, 2m, 1h): it waits in its
    /// partition, invisible to consumers, until then. Prints each message's delayed id.
    #[arg(long, value_parser = parse_duration, conflicts_with = "deliver_at")]
    pub delay: Option<Duration>,
    /// Deliver every message at this RFC 3339 time (2026-12-24T18:00:00Z). Prints each
    /// message's delayed id.
    #[arg(long, value_parser = parse_time)]
    pub deliver_at: Option<u64>,
    /// When a message counts as sent: `all` — committed and fsynced on a majority of its
    /// replicas (the default); `leader` — queued in its leader's log, lost if that leader dies
    /// before replicating it, no offsets; `none` — not acknowledged at all, failures only
    /// counted (docs/DURABILITY.md).
    #[arg(long, default_value = "all", value_name = "all|leader|none", conflicts_with_all = ["oneway", "transaction"])]
    pub acks: sluice_client::Acks,
    /// RocketMQ's oneway send: the same as --acks none.
    #[arg(long, conflicts_with = "transaction")]
    pub oneway: bool,
    /// Compress each batch's values: none (the default), gzip, snappy, lz4 or zstd. Consumers
    /// decompress without being told; filters work on compressed batches (docs/FORMAT.md).
    #[command(flatten)]
    pub compression: CompressionArgs,
    /// All messages in one transaction.
    #[command(flatten)]
    pub txn: TransactionArgs,
    /// How acknowledgements print: delayed messages' ids (plain), or every message's partition
    /// and offset or delayed id (json, one object per line).
    #[command(flatten)]
    pub output: OutputArg,
    /// Messages to send, one per argument. Without any, each line of standard input is one.
    pub values: Vec<String>,
}

/// `--compression` and `--compression-level`: how a producer compresses its batches.
#[derive(Debug, Clone, Copy, Args)]
pub struct CompressionArgs {
    /// Codec of every batch's values: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none", value_name = "none|gzip|snappy|lz4|zstd", value_parser = parse_compression)]
    pub compression: sluice_client::Compression,
    /// With --compression zstd (1 to 22) or gzip (0 to 9): higher is smaller and slower.
    /// Default: zstd's 3, gzip's 6.
    #[arg(long, value_name = "LEVEL", value_parser = clap::value_parser!(i32).range(0..=22))]
    pub compression_level: Option<i32>,
}

impl CompressionArgs {
    /// The level to compress at: the one given, or the codec's default.
    pub fn level(&self) -> i32 {
        self.compression_level.unwrap_or(match self.compression {
            sluice_client::Compression::Gzip => 6,
            _ => sluice_client::DEFAULT_ZSTD_LEVEL,
        })
    }
}

/// A codec named on the command line.
fn parse_compression(name: &str) -> Result<sluice_client::Compression, String> {
    sluice_client::Compression::from_name(name)
        .ok_or_else(|| format!("compression must be none, gzip, snappy, lz4 or zstd, not {name:?}"))
}

/// `sluice consume`
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// The topic.
    pub topic: String,
    /// Read only this partition (default: all).
    #[arg(long, conflicts_with = "group")]
    pub partition: Option<u32>,
    /// Where to start: earliest, latest, an offset, or an RFC 3339 time (2024-05-01T12:00:00Z).
    /// With --group: where the group has committed nothing (earliest or latest).
    #[arg(long, default_value = "earliest", value_parser = parse_from)]
    pub from: SeekTo,
    /// Read as a member of this consumer group: share the topic's partitions with the
    /// group's other members, start where the group committed, and commit each message once
    /// it is printed. Without --follow, stop once the partitions this member was given reach
    /// the end offsets they had at the start.
    #[arg(long)]
    pub group: Option<String>,
    /// With --group: broadcast consumption — this instance reads every message of the topic
    /// whatever the group's other members read, from its own committed offsets (kept by the
    /// brokers under --instance-id, so a restarted instance resumes where it was).
    #[arg(long, requires_all = ["group", "instance_id"])]
    pub broadcast: bool,
    /// With --group: this consumer's stable instance id (a static member; required with
    /// --broadcast).
    #[arg(long, requires = "group")]
    pub instance_id: Option<String>,
    /// Stop after this many messages.
    #[arg(long)]
    pub max: Option<u64>,
    /// Keep waiting for new messages (default: stop at what the topic held at the start).
    #[arg(long)]
    pub follow: bool,
    /// Which messages to receive.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// What of transactions to read.
    #[command(flatten)]
    pub isolation: IsolationArg,
    /// Output format: the value per line, or one JSON object per message.
    #[command(flatten)]
    pub output: OutputArg,
    /// With --group: run a command per message, and the group's retry policy.
    #[command(flatten)]
    pub exec: ExecArgs,
}

/// `--tag` and `--filter`: which messages a consumer receives, chosen by the broker
/// (docs/FILTERS.md).
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Only messages with one of these tags: `TagA`, `TagA || TagB`, or `*` for all.
    #[arg(long = "tag", value_name = "TAGS")]
    pub tags: Option<String>,
    /// Only messages for which this SQL92 expression over their properties, `TAGS` and `KEY`
    /// is true, e.g. "price > 100 AND region IN ('eu', 'us')".
    #[arg(long = "filter", value_name = "SQL")]
    pub sql: Option<String>,
}

impl FilterArgs {
    /// The filter, if either flag was given; checked, so a malformed expression fails early
    /// with its position.
    pub fn filter(&self) -> sluice_client::Result<Option<sluice_client::MessageFilter>> {
        if self.tags.is_none() && self.sql.is_none() {
            return Ok(None);
        }
        let filter = sluice_client::MessageFilter::tags(self.tags.clone().unwrap_or_default())
            .and_sql(self.sql.clone().unwrap_or_default());
        filter.validate()?;
        Ok(Some(filter))
    }
}

/// `sluice group ...`
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List the consumer groups: state and number of members.
    List(OutputArg),
    /// Show a group's members and assignment, and per partition the committed offset, the
    /// end offset and the lag in messages and seconds.
    Describe {
        /// The group.
        group: String,
        /// Output format.
        #[command(flatten)]
        output: OutputArg,
    },
    /// Set a group's committed offsets of a topic. Refused while any consumer of the group
    /// runs: stop them first.
    Reset(ResetArgs),
    /// Change the filter a group consumes a topic with (docs/FILTERS.md); without --tag and
    /// --filter, the group consumes every message. Refused while a consumer of the group
    /// reads the topic: stop them, change it, start them with the new filter.
    SetFilter(SetFilterArgs),
    /// Set a group's retry policy (docs/RETRIES.md) for every member: the waits between
    /// attempts, the attempts before the dead-letter queue, and key order.
    SetRetry(SetRetryArgs),
}

/// `sluice group set-filter`
#[derive(Debug, Args)]
pub struct SetFilterArgs {
    /// The group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The new filter.
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `sluice group reset`
#[derive(Debug, Args)]
pub struct ResetArgs {
    /// The group.
    pub group: String,
    /// The topic whose partitions' offsets are set (all of its partitions).
    #[arg(long)]
    pub topic: String,
    /// The new position: earliest, latest, an offset (kept within what each partition
    /// holds), or an RFC 3339 time (the first message at or after it).
    #[arg(long, value_parser = parse_from)]
    pub to: SeekTo,
}

/// `sluice cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Brokers, liveness, the controller leader and partition leaders per broker.
    Status(OutputArg),
}

/// A rebalance that `sluice bench rebalance` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum RebalanceScenario {
    /// A third member joins a group of two: until it reads a partition it was given.
    Join,
    /// One of three members stops heartbeating without leaving: until each of its partitions
    /// has delivered a message to another member.
    Crash,
    /// One of three members closes (leaves the group): the same.
    Leave,
}

/// `sluice bench rebalance`
#[derive(Debug, Args)]
pub struct BenchRebalanceArgs {
    /// The topic (created if missing, with --partitions and --replication-factor).
    #[arg(long, default_value = "sluice-bench-rebalance")]
    pub topic: String,
    /// Times each scenario is repeated, each time with a new group.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub trials: u32,
    /// The scenarios to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [RebalanceScenario::Join, RebalanceScenario::Crash, RebalanceScenario::Leave])]
    pub scenarios: Vec<RebalanceScenario>,
    /// The members' session timeout, e.g. 10s, 3s: how long a crashed member keeps its
    /// partitions.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub session_timeout: Duration,
    /// Messages per second the background producer writes, spread evenly over the
    /// partitions, so that every partition has something to deliver.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate: u32,
    /// Partitions of the topic if it has to be created (at least 3: one per member).
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(3..))]
    pub partitions: u32,
    /// Replication factor of the topic if it has to be created.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub replication_factor: u32,
    /// Output format of the summary.
    #[command(flatten)]
    pub output: OutputArg,
}

/// Parses `--from`: `earliest`, `latest`, an offset, or an RFC 3339 time.
pub fn parse_from(text: &str) -> Result<SeekTo, String> {
    match text {
        "earliest" => return Ok(SeekTo::Earliest),
        "latest" => return Ok(SeekTo::Latest),
        _ => {}
    }
    if let Ok(offset) = text.parse::<u64>() {
        return Ok(SeekTo::Offset(offset));
    }
    match chrono::DateTime::parse_from_rfc3339(text) {
        Ok(time) => Ok(SeekTo::Timestamp(time.timestamp_millis())),
        Err(e) => Err(format!(
            "{text:?} is not earliest, latest, an offset, or an RFC 3339 time such as 2024-05-01T12:00:00Z ({e})"
        )),
    }
}

/// Parses an RFC 3339 time into ms since the Unix epoch.
pub fn parse_time(text: &str) -> Result<u64, String> {
    let time = chrono::DateTime::parse_from_rfc3339(text)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time such as 2026-12-24T18:00:00Z ({e})"))?;
    u64::try_from(time.timestamp_millis()).map_err(|_| format!("{text} is before 1970"))
}

/// Parses `name=value`.
pub fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not name=value")),
    }
}

/// Parses a duration such as `500ms`, `30s`, `2m` or `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration such as 500ms, 30s or 2m"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "s" | "" => Duration::from_secs(number),
        "m" => Duration::from_secs(number * 60),
        "h" => Duration::from_secs(number * 3600),
        _ => return Err(format!("{text:?} has unit {unit:?}; use ms, s, m or h")),
    };
    if duration.is_zero() {
        return Err("the duration must be greater than zero".into());
    }
    Ok(duration)
}

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;
