//! The `sluice` command-line client, as a library so tests drive the same code the binary
//! runs: [`args::Cli`] is the command line, [`run`] carries it out against a cluster.
//!
//! Commands: `topic create|list|describe|alter|delete`, `produce` (`--transaction`: all in one
//! transaction), `consume` (alone, or with `--group` as a member of a consumer group;
//! `--isolation`), `group list|describe|reset|set-filter|set-retry`, `dlq list|redrive|purge`, `delay list|cancel`, `schedule
//! create|list|delete`, `txn list|describe|commit|abort`, `cluster status`,
//! `bench produce|consume|commit|rebalance|delay|txn`. Read commands take `--output json`.
//! Every command bootstraps from `--bootstrap` or `SLUICE_BOOTSTRAP`, defaulting to the local
//! three-node cluster.

pub mod args;
mod args_bench;
pub mod args_retry;
mod args_topic;
mod args_txn;
mod bench;
mod bench_commit;
mod bench_delay;
mod bench_rebalance;
mod bench_rebalance_member;
mod bench_retry;
mod bench_txn;
mod consume;
mod consume_exec;
mod consume_group;
mod delay;
mod dlq;
pub mod group;
pub mod group_retry;
mod manage;
pub mod output;
mod produce;
mod produce_txn;
mod schedule;
mod txn;
pub mod txn_output;

use std::io::Write;

use anyhow::Result;
use sluice_client::{Client, ClientConfig, parse_bootstrap};

use crate::args::{Cli, Command};

/// Carries out one command line.
pub async fn run(cli: Cli) -> Result<()> {
    let client = Client::connect(ClientConfig::new(parse_bootstrap(&cli.bootstrap))).await?;
    match cli.command {
        Command::Topic(command) => manage::topic(&client, command).await,
        Command::Cluster(command) => manage::cluster(&client, command).await,
        Command::Produce(args) => produce::run(&client, args).await,
        Command::Consume(args) => consume::run(&client, args).await,
        Command::Group(command) => group::run(&client, command).await,
        Command::Bench(command) => bench::run(&client, command).await,
        Command::Delay(command) => delay::run(&client, command).await,
        Command::Schedule(command) => schedule::run(&client, command).await,
        Command::Txn(command) => txn::run(&client, command).await,
        Command::Dlq(command) => dlq::run(&client, command).await,
    }
}

/// Whether `error` is standard output's reader going away (`| head`).
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|e| e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

/// Writes `text` to standard output and flushes it.
fn print(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Writes `value` as one line of JSON to standard output.
fn print_json(value: &serde_json::Value) -> std::io::Result<()> {
    print(&format!("{value}\n"))
}
