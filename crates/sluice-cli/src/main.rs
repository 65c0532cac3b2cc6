//! `sluice`: the command-line client. Parses the command line and runs
//! [`sluice_cli::run`]; errors go to standard error with a non-zero exit status.

use std::process::ExitCode;

use clap::Parser;
use sluice_cli::args::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(sluice_cli::run(cli));
    // Background tasks (a producer's senders, metadata refresh) need no orderly stop.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `sluice consume ... | head` closes the pipe early: that is not a failure.
        Err(e) if sluice_cli::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The SDK's log (retries, broken streams, failed batches) on stderr, when `RUST_LOG` asks for
/// it (e.g. `RUST_LOG=sluice_client=debug`); silent otherwise, so output stays the commands'.
fn init_logging() {
    let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() else { return };
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
