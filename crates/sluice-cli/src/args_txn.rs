//! The command line of transactions: `produce --transaction`, `consume --isolation`,
//! `txn list|describe|commit|abort` and `bench txn`. Kept apart from `args.rs` so that file
//! stays readable; `args` re-exports everything here.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use crate::args::{OutputArg, parse_duration};

/// `--transaction`, `--transactional-id`, `--abort` and `--transaction-timeout` of `sluice
/// produce`.
#[derive(Debug, Clone, Default, Args)]
pub struct TransactionArgs {
    /// Send every message in one transaction: consumers reading committed data
    /// (`--isolation read_committed`, the default) see all of them once it commits, or none.
    /// Committed at the end of the input, or aborted with --abort.
    #[arg(long, conflicts_with_all = ["delay", "deliver_at"])]
    pub transaction: bool,
    /// With --transaction: the transactional id (default: sluice-cli-PID-RANDOM). A producer
    /// with the same id fences this one, and starting with an id aborts what its last producer
    /// left open.
    #[arg(long, value_name = "ID", requires = "transaction")]
    pub transactional_id: Option<String>,
    /// With --transaction: abort the transaction at the end of the input instead of
    /// committing it (nothing sent is ever visible to read_committed consumers).
    #[arg(long, requires = "transaction")]
    pub abort: bool,
    /// With --transaction: the coordinator aborts the transaction if it is still open this
    /// long after it began (e.g. standard input still being typed).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "60s",
        value_parser = parse_duration,
        requires = "transaction"
    )]
    pub transaction_timeout: Duration,
}

/// What a consumer sees of transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum IsolationLevel {
    /// Only committed transactions' messages, up to the last stable offset.
    #[default]
    #[value(name = "read_committed", alias = "read-committed")]
    ReadCommitted,
    /// Everything written, open and aborted transactions' messages too.
    #[value(name = "read_uncommitted", alias = "read-uncommitted")]
    ReadUncommitted,
}

impl IsolationLevel {
    /// The SDK's value.
    pub fn sdk(self) -> sluice_client::Isolation {
        match self {
            IsolationLevel::ReadCommitted => sluice_client::Isolation::ReadCommitted,
            IsolationLevel::ReadUncommitted => sluice_client::Isolation::ReadUncommitted,
        }
    }

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            IsolationLevel::ReadCommitted => "read_committed",
            IsolationLevel::ReadUncommitted => "read_uncommitted",
        }
    }
}

/// The `--isolation` flag of `sluice consume`.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct IsolationArg {
    /// What of transactions to read: read_committed stops at the first message of a
    /// transaction still open and hides aborted ones; read_uncommitted reads everything.
    #[arg(long, value_enum, default_value_t = IsolationLevel::ReadCommitted)]
    pub isolation: IsolationLevel,
}

/// `sluice txn ...`
#[derive(Debug, Subcommand)]
pub enum TxnCommand {
    /// The transactional ids the brokers coordinate, with their last or open transaction.
    List {
        /// Only half transactions whose check-backs went unanswered: they wait for an operator.
        #[arg(long)]
        undecided: bool,
        /// Only ids with a transaction open.
        #[arg(long)]
        open: bool,
        /// Output format.
        #[command(flatten)]
        output: OutputArg,
    },
    /// One transactional id's state, with the partitions of its transaction.
    Describe {
        /// The transactional id.
        id: String,
        /// Output format.
        #[command(flatten)]
        output: OutputArg,
    },
    /// Commit the open transaction of an id whose producer will not end it: every message it
    /// wrote becomes visible. Returns once every partition has its marker.
    Commit {
        /// The transactional id.
        id: String,
    },
    /// Abort the open transaction of an id whose producer will not end it: nothing it wrote
    /// is ever visible to read_committed consumers.
    Abort {
        /// The transactional id.
        id: String,
    },
}

/// `sluice bench txn`
#[derive(Debug, Args)]
pub struct BenchTxnArgs {
    /// Prefix of the topics: PREFIX-txn takes the transactions, PREFIX-plain the plain
    /// producer's messages (both created if missing, with --partitions and
    /// --replication-factor).
    #[arg(long, default_value = "sluice-bench-txn")]
    pub topic: String,
    /// Latency: transactions per width (1, 4 and 8 partitions), and plain sends.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub transactions: u64,
    /// Transactional producers at once, each with its own transactional id, each running its
    /// transactions one after another; the plain side runs as many producers.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub producers: u32,
    /// Throughput: messages per transaction.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub records_per_txn: u32,
    /// Throughput: how long each side sends (default 10s unless --messages is given).
    #[arg(long, value_parser = parse_duration, conflicts_with = "messages")]
    pub seconds: Option<Duration>,
    /// Throughput: messages each side sends (rounded up to whole transactions).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: Option<u64>,
    /// Bytes of each message's value.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub message_bytes: u32,
    /// Partitions of the topics if they have to be created.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub partitions: u32,
    /// Replication factor of the topics if they have to be created.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub replication_factor: u32,
    /// Output format of the report.
    #[command(flatten)]
    pub output: OutputArg,
}
