//! `sluice-jepsen`: runs Sluice's failure-injection suite (`run`), checks a recorded history
//! again (`check`), or removes what a crashed run left behind (`clean`). See jepsen/README.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use sluice_jepsen::net::NetworkMode;
use sluice_jepsen::run::{self, RunOptions};
use sluice_jepsen::schedule::parse_families;
use sluice_jepsen::workload::{DelayConfig, RetryConfig, TxnConfig, WorkloadConfig, WorkloadKind};
use sluice_jepsen::{disk, net, nodes};

/// Sluice's failure-injection suite.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a three-node cluster (in network namespaces, or behind per-link proxies), run
    /// the workload under a seeded fault schedule, check the history; exits 1 on any anomaly.
    Run(RunArgs),
    /// Check a recorded history (history.jsonl) again and print the summary; exits 1 on any
    /// anomaly.
    Check {
        /// The history file.
        history: PathBuf,
        /// Also write the report as JSON here.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Kill processes in the suite's namespaces, delete the namespaces and unmount the
    /// disk-full family's tmpfs (after a crash of a netns run; a proxy run leaves only its
    /// brokers, which this does not look for, and its tmpfs, which this unmounts once they are
    /// gone).
    Clean {
        /// Which test network to clean (see `run --net`).
        #[arg(long, default_value_t = 0)]
        net: u8,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The schedule's seed; a random one (printed) when not given.
    #[arg(long)]
    seed: Option<u64>,
    /// How long the workload runs, in seconds.
    #[arg(long, default_value_t = 60)]
    time_limit: u64,
    /// Fault families, comma-separated: kill, pause, partition, clock, lose-unfsynced, fsync-eio,
    /// disk-full, combined; `all` for every family, `none` for no faults.
    #[arg(long, default_value = "kill,partition,pause")]
    faults: String,
    /// The directory holding sluice-broker (default: this workspace's newer of
    /// target/release and target/debug).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where the run's files go (default: jepsen/runs/<UTC time>-<seed>).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// How nodes are networked: netns (a namespace per node, nftables cuts; needs root, ip,
    /// nft) or proxy (all on 127.0.0.1, a proxy per link in the runner). Default: netns, or
    /// proxy (said on stderr) when namespaces are not available.
    #[arg(long, value_enum)]
    network: Option<NetworkMode>,
    /// The netns test network, 0 to 99: runs on different networks can share the machine
    /// (network K uses namespaces sjK-* and addresses 10.99.K.0/24; 0 is sj-*). Proxy runs
    /// pick free ports and need no number.
    #[arg(long, default_value_t = 0)]
    net: u8,
    /// The workload: log (producers, consumer groups, readers, the final drain), delay
    /// (delayed messages, some cancelled, read once released; docs/DELAYS.md), txn
    /// (transactions, a consume-transform-produce processor, read_committed readers;
    /// docs/TRANSACTIONS.md) or retry (acks, nacks, rejects, dead-letter queues, a key-ordered
    /// group; docs/RETRIES.md).
    #[arg(long, value_enum, default_value_t = WorkloadKind::Log)]
    workload: WorkloadKind,
    /// Partitions of the workload's topic.
    #[arg(long, default_value_t = 6)]
    partitions: u32,
    /// Producer processes.
    #[arg(long, default_value_t = 2)]
    producers: u32,
    /// Consumer group member processes (log workload; the retry workload runs this many in
    /// each of its two groups).
    #[arg(long, default_value_t = 2)]
    members: u32,
    /// Members of a second group, which consumes with a tag filter (docs/FILTERS.md; log
    /// workload).
    #[arg(long, default_value_t = 1)]
    filtered_members: u32,
    /// Assign-mode reader processes (the delay workload's consumers, the txn workload's
    /// read_committed readers).
    #[arg(long, default_value_t = 1)]
    readers: u32,
    /// Sends per second of each producer.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Delay workload: each message is due a uniformly random 0 to this many ms after it is
    /// sent.
    #[arg(long, default_value_t = DelayConfig::default().max_delay_ms)]
    max_delay_ms: u64,
    /// Delay workload: the share of acknowledged messages not yet due that are cancelled, in
    /// percent.
    #[arg(long, default_value_t = DelayConfig::default().cancel_percent)]
    cancel_percent: u32,
    /// Delay workload: how long, in seconds, the consumers read on past the latest delivery
    /// time (plus the clock fault's skew) before missing messages count as lost.
    #[arg(long, default_value_t = DelayConfig::default().grace.as_secs())]
    delay_grace: u64,
    /// Txn workload: transactional writer processes.
    #[arg(long, default_value_t = TxnConfig::default().writers)]
    txn_writers: u32,
    /// Txn workload: transactions each writer begins per second, at most.
    #[arg(long, default_value_t = TxnConfig::default().rate)]
    txn_rate: u32,
    /// Txn workload: the transaction timeout, in ms (abandoned transactions end by it; the
    /// stuck-LSO check allows it plus 1 s and its allowances).
    #[arg(long, default_value_t = TxnConfig::default().timeout.as_millis() as u64)]
    txn_timeout_ms: u64,
    /// Retry workload: deliveries of a message before it goes to the dead-letter queue.
    #[arg(long, default_value_t = RetryConfig::default().max_attempts)]
    retry_max_attempts: u32,
    /// Retry workload: the waits after each attempt, in ms, comma-separated (the last one
    /// for every attempt beyond).
    #[arg(long, value_delimiter = ',', default_values_t = RetryConfig::default().ladder_ms)]
    retry_ladder_ms: Vec<u64>,
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run_command(args),
        Command::Check { history, report } => check_command(&history, report.as_deref()),
        Command::Clean { net: network } => net::select(network)
            .and_then(|()| net::require_root())
            .and_then(|()| net::cleanup_leftovers())
            .and_then(|()| disk::cleanup_leftovers())
            .map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("sluice-jepsen: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Returns whether the run was clean.
fn run_command(args: RunArgs) -> Result<bool> {
    net::select(args.net)?;
    let families = parse_families(&args.faults)?;
    if args.time_limit == 0 {
        bail!("--time-limit must be at least 1 second");
    }
    let seed = args.seed.unwrap_or_else(random_seed);
    let txn = TxnConfig {
        writers: args.txn_writers,
        rate: args.txn_rate,
        timeout: Duration::from_millis(args.txn_timeout_ms),
        // The seed comes from the run (`run::run`).
        ..TxnConfig::default()
    };
    // The txn workload's first topic is the run's topic (the probes', the node logs').
    let topic = match args.workload {
        WorkloadKind::Txn => txn.topics[0].clone(),
        WorkloadKind::Log | WorkloadKind::Delay | WorkloadKind::Retry => WorkloadConfig::default().topic,
    };
    let workload = WorkloadConfig {
        kind: args.workload,
        delay: DelayConfig {
            max_delay_ms: args.max_delay_ms,
            cancel_percent: args.cancel_percent,
            grace: Duration::from_secs(args.delay_grace),
            // The seed and the clock skew come from the run (`run::run`).
            ..DelayConfig::default()
        },
        txn,
        retry: RetryConfig {
            max_attempts: args.retry_max_attempts,
            ladder_ms: args.retry_ladder_ms.clone(),
            // The clock skew comes from the run (`run::run`).
            ..RetryConfig::default()
        },
        topic,
        partitions: args.partitions,
        producers: args.producers,
        members: args.members,
        filtered_members: args.filtered_members,
        readers: args.readers,
        sends_per_second: args.rate,
        ..WorkloadConfig::default()
    };
    workload.validate()?;
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => nodes::default_bin_dir()?,
    };
    let run_dir = args.run_dir.unwrap_or_else(|| run::default_run_dir(seed));
    // Absolute: the brokers run with the run directory as their working directory.
    let run_dir = std::path::absolute(&run_dir).with_context(|| format!("--run-dir {}", run_dir.display()))?;
    let network = args.network.unwrap_or_else(|| match net::namespaces_unavailable() {
        None => NetworkMode::Netns,
        Some(why) => {
            eprintln!("sluice-jepsen: network namespaces are not available ({why}): using --network proxy");
            NetworkMode::Proxy
        }
    });
    let options = RunOptions {
        seed,
        time_limit: Duration::from_secs(args.time_limit),
        families,
        bin_dir,
        run_dir: run_dir.clone(),
        network,
        workload,
    };
    eprintln!(
        "sluice-jepsen: {} workload, seed {seed}, {network} network, run directory {}",
        args.workload,
        run_dir.display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    let outcome = runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("handling SIGTERM")?;
        // Dropping the run's future drops its cluster guard: brokers killed, network gone.
        tokio::select! {
            outcome = run::run(options) => outcome,
            _ = tokio::signal::ctrl_c() => bail!("interrupted (Ctrl-C); the cluster was torn down"),
            _ = term.recv() => bail!("terminated (SIGTERM); the cluster was torn down"),
        }
    })?;
    print!("{}", run::summary(&outcome, seed));
    println!("files: {} (report.json, history.jsonl, node logs)", run_dir.display());
    let workload = match args.workload {
        WorkloadKind::Log => String::new(),
        WorkloadKind::Delay => format!(" --workload delay --max-delay-ms {}", args.max_delay_ms),
        WorkloadKind::Txn => format!(
            " --workload txn --txn-writers {} --txn-rate {} --txn-timeout-ms {}",
            args.txn_writers, args.txn_rate, args.txn_timeout_ms
        ),
        WorkloadKind::Retry => format!(
            " --workload retry --retry-max-attempts {} --retry-ladder-ms {}",
            args.retry_max_attempts,
            args.retry_ladder_ms.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
        ),
    };
    println!(
        "reproduce: sluice-jepsen run --seed {seed} --time-limit {} --faults {} --network {network}{workload}",
        args.time_limit, args.faults
    );
    Ok(outcome.is_clean())
}

/// Returns whether the history was clean.
fn check_command(history: &std::path::Path, report_path: Option<&std::path::Path>) -> Result<bool> {
    let report = run::check_file(history)?;
    if let Some(path) = report_path {
        report.write_json(path)?;
    }
    print!("{}", report.summary(None));
    Ok(report.is_clean())
}

/// A seed from the clock and the process id, for runs that do not name one.
fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut rng = sluice_jepsen::schedule::SplitMix64::new((nanos as u64) ^ u64::from(std::process::id()));
    // Small enough to type back in.
    rng.next_u64() % 1_000_000
}
