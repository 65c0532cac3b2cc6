//! The command line, as clap parses it, and the parsers for values clap cannot read alone
//! (`--from`, `--property`, durations).

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sluice_client::{DEFAULT_BOOTSTRAP, SeekTo};

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
    /// Create, list, describe and delete topics.
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
    /// Measure produce, consume and consumer-group commit throughput and latency, and rebalance times.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// List and cancel pending delayed messages.
    #[command(subcommand)]
    Delay(DelayCommand),
    /// Create, list and delete recurring schedules: a message sent each time a cron expression
    /// or an interval fires.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
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

/// `sluice topic ...`
#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic and wait until its partitions have leaders.
    Create(CreateArgs),
    /// List topics.
    List(OutputArg),
    /// Show a topic's settings, partitions, leaders and offsets.
    Describe {
        /// The topic.
        name: String,
        /// Output format.
        #[command(flatten)]
        output: OutputArg,
    },
    /// Delete a topic and its data.
    Delete {
        /// The topic.
        name: String,
    },
}

/// `sluice topic create`
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The topic's name: 1 to 249 characters from [A-Za-z0-9._-].
    pub name: String,
    /// Number of partitions.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub partitions: u32,
    /// Replicas per partition (at most the number of brokers).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub replication_factor: u32,
    /// Delete messages older than this many milliseconds (default: keep everything).
    #[arg(long)]
    pub retention_ms: Option<u64>,
    /// Refuse messages larger than this many bytes (default: 1 MiB).
    #[arg(long)]
    pub max_message_bytes: Option<u32>,
    /// Acknowledge writes once they are in the memory of a majority of replicas, each fsyncing
    /// at least every MS milliseconds (1 to 3600000). Faster; but if a majority of a partition's
    /// replicas lose power at once, up to MS of acknowledged writes can be lost. Default: fsync
    /// on a majority before every acknowledgement.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub flush_interval_ms: Option<u64>,
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
    /// How acknowledgements print: delayed messages' ids (plain), or every message's partition
    /// and offset or delayed id (json, one object per line).
    #[command(flatten)]
    pub output: OutputArg,
    /// Messages to send, one per argument. Without any, each line of standard input is one.
    pub values: Vec<String>,
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
    /// Output format: the value per line, or one JSON object per message.
    #[command(flatten)]
    pub output: OutputArg,
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

/// `sluice bench ...`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Send messages as fast as the cluster acknowledges them. Stops at the first message that
    /// fails for good (its retries ran out, e.g. on STORAGE_FULL), saying why, with status 1.
    Produce(BenchProduceArgs),
    /// Read a topic as fast as the cluster serves it.
    Consume(BenchConsumeArgs),
    /// Commit consumer-group offsets as fast as the groups' coordinators store them.
    Commit(BenchCommitArgs),
    /// Time consumer-group rebalances: a member joining, one crashing, one leaving.
    Rebalance(BenchRebalanceArgs),
    /// Delayed messages under load: release lateness at a steady rate, a burst all due at
    /// once, or many pending far ahead.
    Delay(BenchDelayArgs),
}

/// How long a benchmark runs, and where.
#[derive(Debug, Clone, Args)]
pub struct BenchRun {
    /// The topic (created if missing, with --partitions and --replication-factor).
    #[arg(long, default_value = "sluice-bench")]
    pub topic: String,
    /// Stop after this many messages. Default for produce: 100000 unless --duration is
    /// given; for consume: what the topic holds at the start.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this long, e.g. 30s, 500ms, 2m.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Output format of the summary.
    #[command(flatten)]
    pub output: OutputArg,
}

/// `sluice bench produce`
#[derive(Debug, Args)]
pub struct BenchProduceArgs {
    /// Topic, count or duration, output.
    #[command(flatten)]
    pub run: BenchRun,
    /// Bytes of each message's value.
    #[arg(long, default_value_t = 100)]
    pub message_bytes: usize,
    /// Producers sending at once, each with its own batches and producer id.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub producers: u32,
    /// A batch is sent once it holds this many bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    pub batch_bytes: usize,
    /// How long a batch waits for more messages, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Messages each producer may have offered and not yet seen acknowledged before it waits
    /// for an acknowledgement. Default: as many as the producer's 32 MiB buffer holds, so at
    /// saturation latency is mostly time spent waiting in that buffer.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: Option<u32>,
    /// Partitions of the topic if it has to be created.
    #[arg(long, default_value_t = 3)]
    pub partitions: u32,
    /// Replication factor of the topic if it has to be created.
    #[arg(long, default_value_t = 3)]
    pub replication_factor: u32,
    /// Tag the messages `tag-0`, `tag-1`, ... `tag-(N-1)` in turn, and give each a property
    /// `n` (its number in the producer's sequence), for filter benchmarks. 0: untagged.
    #[arg(long, default_value_t = 0)]
    pub tags: u32,
    /// With --tags: each tag is given to this many messages in a row before the next one (1:
    /// every message the next tag; 1000: runs of a thousand, as events of one kind arriving in
    /// bursts, which lets a tag filter skip whole batches).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub tag_run: u64,
}

/// `sluice bench consume`
#[derive(Debug, Args)]
pub struct BenchConsumeArgs {
    /// Topic, count or duration, output.
    #[command(flatten)]
    pub run: BenchRun,
    /// Where to start reading.
    #[arg(long, default_value = "earliest", value_parser = parse_from)]
    pub from: SeekTo,
    /// Which messages to receive (the broker filters; skipped messages are not counted).
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `sluice bench commit`
#[derive(Debug, Args)]
pub struct BenchCommitArgs {
    /// The topic the members subscribe to (created if missing, with --partitions and
    /// --replication-factor). No message is read or written: only offsets are committed.
    #[arg(long, default_value = "sluice-bench-groups")]
    pub topic: String,
    /// Groups committing at once, each with one member that owns every partition and commits
    /// all of them in each CommitOffsets call.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub groups: u32,
    /// Stop after this many commits in total (over all groups).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Stop after this long, e.g. 30s, 500ms, 2m. Default: 10s unless --count is given.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Partitions of the topic if it has to be created.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..))]
    pub partitions: u32,
    /// Replication factor of the topic if it has to be created.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub replication_factor: u32,
    /// Output format of the summary.
    #[command(flatten)]
    pub output: OutputArg,
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

/// What `sluice bench delay` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DelayBenchMode {
    /// Send --rate delayed messages per second for --duration, each due --delay after it is
    /// sent; read them as they are released: release lateness (receive time minus due time),
    /// releases per second, and the sends' acknowledgement latency.
    Steady,
    /// Send --count delayed messages all due at one time T, then wait: the time from T until
    /// the last one is read (the drain), and the acknowledgement latency of a plain producer
    /// on another topic just before T and during the drain.
    Burst,
    /// Send --count delayed messages due far ahead (--delay) as fast as they are
    /// acknowledged: the produce rate, and how many the topic has pending at the end. They
    /// stay pending (and are released at their due time) after the run.
    Pending,
}

/// `sluice bench delay`
#[derive(Debug, Args)]
pub struct BenchDelayArgs {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = DelayBenchMode::Steady)]
    pub mode: DelayBenchMode,
    /// The topic of the delayed messages (created if missing, with --partitions and
    /// --replication-factor). Default: sluice-bench-delay-MODE.
    #[arg(long)]
    pub topic: Option<String>,
    /// Steady: how long to send.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Steady: delayed messages sent per second.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub rate: u32,
    /// Steady: each message is due this long after it is sent (default 5s). Pending: the same
    /// (default 1h). Burst: the due time T is this long after sending starts (default: enough
    /// for sending at 10,000 msgs/s, then --baseline, then 5 s).
    #[arg(long, value_parser = parse_duration)]
    pub delay: Option<Duration>,
    /// Burst and pending: delayed messages to send (default: 1000000 for burst, 10000000
    /// for pending).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Bytes of each message's value (at least 16: it starts with the run's id).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(16..=1_000_000))]
    pub value_bytes: u32,
    /// Delayed messages offered and not yet acknowledged at most. Default: as many as the
    /// producer's 32 MiB buffer holds.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: Option<u32>,
    /// Burst: the topic of the plain (not delayed) producer.
    #[arg(long, default_value = "sluice-bench-delay-plain")]
    pub plain_topic: String,
    /// Burst: messages per second the plain producer sends.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub plain_rate: u32,
    /// Burst: plain messages offered and not yet acknowledged at most.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub plain_max_in_flight: u32,
    /// Burst: the plain producer's baseline is measured over this long just before T.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub baseline: Duration,
    /// Partitions of the topics if they have to be created.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..))]
    pub partitions: u32,
    /// Replication factor of the topics if they have to be created.
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
