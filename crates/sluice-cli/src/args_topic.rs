//! The command line of `sluice topic create|list|describe|alter|delete`. Kept apart from
//! `args.rs` so that file stays readable; `args` re-exports everything here.

use clap::{ArgGroup, Args, Subcommand};
use sluice_client::{TopicCompression, TopicConfigChanges};

use crate::args::OutputArg;

/// The largest `--max-message-bytes` the brokers accept (64 MiB).
const MAX_MESSAGE_BYTES_LIMIT: u32 = 64 * 1024 * 1024;

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
    /// Change a running topic's retention, message size limit or compression; every broker
    /// applies it without a restart. Its partitions, replication factor and flush interval are
    /// fixed when it is created.
    Alter(AlterArgs),
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
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub retention_ms: Option<u64>,
    /// Trim each partition to about this many bytes, oldest messages first (default: no limit).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub retention_bytes: Option<u64>,
    /// Refuse messages larger than this many bytes (default: 1 MiB).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_MESSAGE_BYTES_LIMIT)))]
    pub max_message_bytes: Option<u32>,
    /// Acknowledge writes once they are in the memory of a majority of replicas, each fsyncing
    /// at least every MS milliseconds (1 to 3600000). Faster; but if a majority of a partition's
    /// replicas lose power at once, up to MS of acknowledged writes can be lost. Default: fsync
    /// on a majority before every acknowledgement.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub flush_interval_ms: Option<u64>,
    /// How the brokers store the topic's batches: `producer` (the default) keeps them as the
    /// producer compressed them; a codec has every batch stored with it.
    #[arg(long, value_name = COMPRESSION_NAMES, value_parser = parse_topic_compression)]
    pub compression: Option<TopicCompression>,
}

/// `sluice topic alter`
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("change").required(true).multiple(true).args([
    "retention_ms", "clear_retention_ms", "retention_bytes", "clear_retention_bytes", "max_message_bytes",
    "compression",
])))]
pub struct AlterArgs {
    /// The topic.
    pub name: String,
    /// Delete messages older than this many milliseconds.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub retention_ms: Option<u64>,
    /// Keep messages however old (the broker default).
    #[arg(long, conflicts_with = "retention_ms")]
    pub clear_retention_ms: bool,
    /// Trim each partition to about this many bytes, oldest messages first.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub retention_bytes: Option<u64>,
    /// Trim partitions by no size (the broker default).
    #[arg(long, conflicts_with = "retention_bytes")]
    pub clear_retention_bytes: bool,
    /// Refuse messages larger than this many bytes from now on (messages stored are kept).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_MESSAGE_BYTES_LIMIT)))]
    pub max_message_bytes: Option<u32>,
    /// How the brokers store batches written from now on: `producer` keeps them as sent.
    #[arg(long, value_name = COMPRESSION_NAMES, value_parser = parse_topic_compression)]
    pub compression: Option<TopicCompression>,
}

impl AlterArgs {
    /// The changes the flags ask for.
    pub fn changes(&self) -> TopicConfigChanges {
        let mut changes = TopicConfigChanges::new();
        if let Some(ms) = self.retention_ms {
            changes = changes.retention_ms(ms);
        }
        if self.clear_retention_ms {
            changes = changes.clear_retention_ms();
        }
        if let Some(bytes) = self.retention_bytes {
            changes = changes.retention_bytes(bytes);
        }
        if self.clear_retention_bytes {
            changes = changes.clear_retention_bytes();
        }
        changes.max_message_bytes = self.max_message_bytes;
        changes.compression = self.compression;
        changes
    }
}

/// What `--compression` of a topic takes.
const COMPRESSION_NAMES: &str = "producer|none|gzip|snappy|lz4|zstd";

/// A topic's compression named on the command line.
fn parse_topic_compression(name: &str) -> Result<TopicCompression, String> {
    TopicCompression::from_name(name)
}
