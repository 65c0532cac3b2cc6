//! The arguments of `sluice bench ...`, apart from `args.rs` so that file stays readable;
//! `args` re-exports everything here.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use sluice_client::SeekTo;

use crate::args::{BenchRebalanceArgs, BenchTxnArgs, FilterArgs, OutputArg, parse_duration, parse_from};

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
    /// Transactions against plain produces: commit latency of transactions over 1, 4 and 8
    /// partitions, throughput, and read_committed against read_uncommitted reads.
    Txn(BenchTxnArgs),
    /// Retries side by side: group throughput with 1 % of messages failing once against none,
    /// nacks per second, retry lateness at --rate retries due a second, and a key-ordered
    /// group's other keys with and without a poison key.
    Retry(BenchRetryArgs),
}

/// `sluice bench retry`
#[derive(Debug, Clone, Args)]
pub struct BenchRetryArgs {
    /// Messages of the fail-rate, nacks and poison cases (each on a topic of its own).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(16..))]
    pub messages: u64,
    /// Retries falling due a second in the lateness case.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate: u32,
    /// How long the lateness case sends.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..))]
    pub partitions: u32,
    /// Replication factor of each topic.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub replication_factor: u32,
    /// Output format of the summary.
    #[command(flatten)]
    pub output: OutputArg,
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
    /// Acknowledgement level (as `sluice produce --acks`): `all` (committed, fsynced on a
    /// majority), `leader` (queued in the leader's log) or `none` (latency is then the time
    /// until a message's batch is on its way).
    #[arg(long, default_value = "all", value_name = "all|leader|none")]
    pub acks: sluice_client::Acks,
    /// Compression of the producers' batches (as `sluice produce --compression`).
    #[command(flatten)]
    pub compression: crate::args::CompressionArgs,
    /// What each message's value holds: `fill` (one byte pattern, as compressible as it gets),
    /// `json` (JSON-like events, each different), or `random` (incompressible).
    #[arg(long, default_value = "fill", value_name = "fill|json|random")]
    pub payload: Payload,
}

/// The values `sluice bench produce` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Payload {
    /// The letters a to z repeated.
    Fill,
    /// JSON-like events with varying fields.
    Json,
    /// Random bytes.
    Random,
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
