//! `nats-bench`: the NATS JetStream side of `scripts/bench-vs-nats.sh`.
//!
//! - `produce` sends messages to a JetStream stream the way `sluice bench produce` sends them to
//!   a topic: `--producers` producers, each with its own connection, publish `--message-bytes`
//!   values asynchronously, at most `--max-in-flight` unacknowledged at a time, until
//!   `--count` messages (split across the producers) or `--duration` have passed. Latency is
//!   from handing a message to the client to its publish acknowledgement.
//! - `fsync` measures the disk: append a block to a file and fdatasync it, many times.
//!
//! Both print a summary (`--output json` for one JSON object with the fields of
//! `sluice bench produce --output json`).

mod fsync;
mod produce;
mod summary;

use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Load client for NATS JetStream shaped like `sluice bench produce`, and a disk fdatasync probe.
#[derive(Debug, Parser)]
#[command(name = "nats-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish to a JetStream stream as fast as it acknowledges.
    Produce(ProduceArgs),
    /// Measure the latency of a block append plus fdatasync on a file in a directory.
    Fsync(FsyncArgs),
}

/// How a summary prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Output {
    /// For people.
    #[default]
    Plain,
    /// One JSON object.
    Json,
}

/// `nats-bench produce`
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// NATS server URLs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "nats://127.0.0.1:4222")]
    pub servers: Vec<String>,
    /// The stream.
    #[arg(long, default_value = "sluice-bench")]
    pub stream: String,
    /// The subject published to; default: `<stream>.data`.
    #[arg(long)]
    pub subject: Option<String>,
    /// Create the stream (file storage, --replicas) if it does not exist.
    #[arg(long)]
    pub create_stream: bool,
    /// Delete the stream (and its data) when the run ends.
    #[arg(long)]
    pub delete_stream: bool,
    /// Replicas of the stream if it has to be created.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=5))]
    pub replicas: u32,
    /// Connect every producer to the server that leads the stream (found by server name among
    /// --servers), as a Sluice producer sends to partition leaders; otherwise to any server.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub to_leader: bool,
    /// Bytes of each message's payload.
    #[arg(long, default_value_t = 100)]
    pub message_bytes: usize,
    /// Producers publishing at once, each with its own connection.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub producers: u32,
    /// Unacknowledged messages each producer may have at once.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_in_flight: u32,
    /// Stop after this many messages in total. Default: 100000 unless --duration is given.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this long, e.g. 30s, 500ms, 2m.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// How long one acknowledgement may take before it counts as an error.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub ack_timeout: Duration,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value_t = Output::Plain)]
    pub output: Output,
}

/// `nats-bench fsync`
#[derive(Debug, Args)]
pub struct FsyncArgs {
    /// Directory on the disk to measure; a probe file is created in it and removed afterwards.
    #[arg(long)]
    pub dir: std::path::PathBuf,
    /// Appends (each followed by fdatasync) to time.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub count: u64,
    /// Bytes appended before each fdatasync.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=16_777_216))]
    pub block_bytes: u64,
    /// Pause between one fdatasync's end and the next append, e.g. 10ms: a light probe that
    /// can run beside a broker's load. Default: none, back to back.
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    pub interval: Duration,
    /// Stop early after this long, whatever --count says.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub max_duration: Duration,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value_t = Output::Plain)]
    pub output: Output,
}

/// Parses a duration such as `500ms`, `30s`, `2m` or `1h` (a bare number is seconds).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration such as 500ms, 30s or 2m"))?;
    let seconds = |factor: u64| {
        number.checked_mul(factor).map(Duration::from_secs).ok_or_else(|| format!("{text:?} is too long"))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" | "" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        _ => Err(format!("{text:?} has an unknown unit {unit:?}: use ms, s, m or h")),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let summary = match Cli::parse().command {
        Command::Produce(args) => {
            let output = args.output;
            (produce::run(args).await?, output)
        }
        Command::Fsync(args) => {
            let output = args.output;
            (tokio::task::spawn_blocking(move || fsync::run(&args)).await??, output)
        }
    };
    let (summary, output) = summary;
    match output {
        Output::Json => println!("{}", summary.json()),
        Output::Plain => print!("{}", summary.plain()),
    }
    if summary.errors > 0 {
        anyhow::bail!(
            "{} messages failed; the first error: {}",
            summary.errors,
            summary.first_error.unwrap_or_default()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("3d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn the_cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
