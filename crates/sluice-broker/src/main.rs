//! `sluice-broker`: runs one broker of a Sluice cluster until SIGTERM or SIGINT.
//!
//! ```text
//! sluice-broker --config cluster-configs/node1.toml   # one broker of the local 3-node cluster
//! sluice-broker --dev                                # a single-node cluster for trying it out
//! ```
//!
//! The whole configuration is checked before anything starts; an invalid one is reported and
//! the process exits with status 2 (1 if the broker fails to start or stops with an error).
//! A broker whose storage fails stops on its own with status 1, for a supervisor (systemd's
//! `Restart=on-failure`) to restart it; it then recovers from disk (docs/DURABILITY.md).
//! Logs go to stderr, filtered by `RUST_LOG` (default `info,openraft=error`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use sluice_broker::BrokerConfig;
use tracing_subscriber::EnvFilter;

/// How long, once the broker has stopped, the runtime waits for its remaining threads.
const RUNTIME_STOP_LIMIT: Duration = Duration::from_secs(5);

/// Runs one Sluice broker.
#[derive(Debug, Parser)]
#[command(name = "sluice-broker", version, about, long_about = None)]
#[command(group = clap::ArgGroup::new("mode").required(true).args(["config", "dev"]))]
struct Args {
    /// The broker's TOML configuration (see cluster-configs/; every key is documented in
    /// crates/sluice-broker/src/config.rs).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Run a single-node cluster with built-in defaults: data in ./sluice-dev-data, clients on
    /// 127.0.0.1:9091, peers on 127.0.0.1:9101, metrics on 127.0.0.1:9190. For trying Sluice out,
    /// not for keeping data.
    #[arg(long)]
    dev: bool,
    /// With --dev: where the data goes instead of ./sluice-dev-data.
    #[arg(long, value_name = "DIR", requires = "dev")]
    data_dir: Option<PathBuf>,
    /// With --dev: the client API's address instead of 127.0.0.1:9091 (which the local 3-node
    /// cluster's broker 1 also uses).
    #[arg(long, value_name = "HOST:PORT", requires = "dev")]
    client_addr: Option<String>,
    /// With --dev: the peer (Raft) service's address instead of 127.0.0.1:9101.
    #[arg(long, value_name = "HOST:PORT", requires = "dev")]
    raft_addr: Option<String>,
    /// With --dev: the metrics address instead of 127.0.0.1:9190.
    #[arg(long, value_name = "HOST:PORT", requires = "dev")]
    metrics_listen: Option<std::net::SocketAddr>,
}

impl Args {
    /// The configuration of `--dev`, with the addresses and data directory given on the
    /// command line in place of the built-in ones.
    fn dev_config(&self) -> Result<BrokerConfig, sluice_broker::ConfigError> {
        let mut config = BrokerConfig::dev();
        if let Some(dir) = &self.data_dir {
            config.data_dir.clone_from(dir);
        }
        if let Some(addr) = &self.client_addr {
            config.peers[0].client_addr.clone_from(addr);
        }
        if let Some(addr) = &self.raft_addr {
            config.peers[0].raft_addr.clone_from(addr);
        }
        if let Some(addr) = self.metrics_listen {
            config.metrics_listen = Some(addr);
        }
        config.validate()?;
        Ok(config)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    let loaded = match &args.config {
        Some(path) => BrokerConfig::load(path),
        None => args.dev_config(),
    };
    let config = match loaded {
        Ok(config) => config,
        Err(e) => {
            eprintln!("sluice-broker: {e}");
            return ExitCode::from(2);
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.worker_threads > 0 {
        builder.worker_threads(config.worker_threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sluice-broker: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(sluice_broker::run(config, shutdown_signal()));
    // Blocking threads stuck on a failed disk must not keep the process from exiting.
    runtime.shutdown_timeout(RUNTIME_STOP_LIMIT);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A group failure was logged as it happened, with what the broker does about it.
            if !matches!(e, sluice_broker::StartError::GroupFailed(_)) {
                tracing::error!("{e}");
            }
            eprintln!("sluice-broker: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The log filter when `RUST_LOG` is unset: the broker's own lines at info (start, elections,
/// liveness changes, failures, slow operations), and openraft's errors only. At info openraft
/// logs a line per group per heartbeat; at warn, a line per group for every transient network
/// error (a peer that restarts, a group a peer has not created yet), which with many partitions
/// buries everything else. The broker reports what those mean once: a broker's liveness
/// changing, a group failing.
const DEFAULT_LOG_FILTER: &str = "info,openraft=error";

/// Logs to stderr at the level `RUST_LOG` asks for, [`DEFAULT_LOG_FILTER`] when it is unset.
fn init_logging() {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) => EnvFilter::try_new(&spec).unwrap_or_else(|e| {
            eprintln!("sluice-broker: ignoring RUST_LOG={spec:?} ({e}); logging with {DEFAULT_LOG_FILTER}");
            EnvFilter::new(DEFAULT_LOG_FILTER)
        }),
        Err(_) => EnvFilter::new(DEFAULT_LOG_FILTER),
    };
    // Colour only on a terminal: logs redirected to a file stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(e), _) | (_, Err(e)) => {
            // Without handlers the default action (exit) still stops the process, just not
            // gracefully; say so rather than fail to start.
            tracing::warn!("cannot handle SIGTERM/SIGINT ({e}); stopping will not be graceful");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
