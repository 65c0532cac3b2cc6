//! The command line of retries and dead letters (docs/RETRIES.md): `consume --exec` and its
//! retry flags, `group set-retry`, and `dlq list|redrive|purge`.

use std::time::Duration;

use clap::{Args, Subcommand};
use sluice_client::{Backoff, GroupRetryPolicy, RetryPolicy};

use crate::args::{OutputArg, parse_duration, parse_time};

/// `sluice consume --exec` and the group's retry policy flags.
#[derive(Debug, Clone, Default, Args)]
pub struct ExecArgs {
    /// With --group: run this shell command once per message, the value on its standard
    /// input and SLUICE_KEY, SLUICE_TAG, SLUICE_TOPIC, SLUICE_PARTITION, SLUICE_OFFSET,
    /// SLUICE_ATTEMPT and SLUICE_PROP_<name> in its environment. Exit 0 acknowledges the
    /// message; any other exit nacks it (retried after the group's backoff, then
    /// dead-lettered in `<group>.dlq`). Runs until interrupted.
    #[arg(long, requires = "group", value_name = "CMD")]
    pub exec: Option<String>,
    /// With --exec: run up to this many commands at once.
    #[arg(long, default_value_t = 1, requires = "exec", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// The group's retry policy, set as the group's if it has none (refused if it has
    /// another).
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// A retry policy on the command line.
#[derive(Debug, Clone, Default, Args)]
pub struct PolicyArgs {
    /// Deliveries of a message before it goes to the dead-letter queue (1 to 1000).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_attempts: Option<u32>,
    /// The wait before the first retry (exponential backoff; default 1s).
    #[arg(long, value_parser = parse_duration, conflicts_with = "ladder")]
    pub retry_backoff: Option<Duration>,
    /// Each further retry waits this many times longer (1 to 100; default 2).
    #[arg(long, conflicts_with = "ladder")]
    pub retry_multiplier: Option<f64>,
    /// The longest wait (default 2h).
    #[arg(long, value_parser = parse_duration, conflicts_with = "ladder")]
    pub retry_max_backoff: Option<Duration>,
    /// A preset ladder of waits instead: `rocketmq` (10s 30s 1m 2m … 2h, 17 deliveries).
    #[arg(long, value_parser = ["rocketmq"])]
    pub ladder: Option<String>,
    /// Key-ordered consumption: a failing message holds back only the later messages of its
    /// key.
    #[arg(long)]
    pub key_ordered: bool,
}

impl PolicyArgs {
    /// Whether any flag was given.
    pub fn given(&self) -> bool {
        self.max_attempts.is_some()
            || self.retry_backoff.is_some()
            || self.retry_multiplier.is_some()
            || self.retry_max_backoff.is_some()
            || self.ladder.is_some()
            || self.key_ordered
    }

    /// The policy the flags say, defaults filling the rest; checked.
    pub fn policy(&self) -> Result<GroupRetryPolicy, String> {
        let mut retry = if self.ladder.is_some() { RetryPolicy::rocketmq() } else { exponential(self)? };
        if let Some(max) = self.max_attempts {
            retry.max_attempts = max;
        }
        retry.validate().map_err(|e| e.to_string())?;
        Ok(GroupRetryPolicy { retry, key_ordered: self.key_ordered })
    }
}

fn exponential(args: &PolicyArgs) -> Result<RetryPolicy, String> {
    let default = RetryPolicy::default();
    let Backoff::Exponential { initial_ms, multiplier, max_ms, jitter } = default.backoff else {
        unreachable!("the default policy is exponential")
    };
    let ms = |d: Duration| u64::try_from(d.as_millis()).map_err(|_| format!("{d:?} is too long"));
    let initial_ms = args.retry_backoff.map(ms).transpose()?.unwrap_or(initial_ms);
    let max_ms = args.retry_max_backoff.map(ms).transpose()?.unwrap_or(max_ms.max(initial_ms));
    if max_ms < initial_ms {
        return Err("--retry-max-backoff is shorter than --retry-backoff".into());
    }
    let multiplier = args.retry_multiplier.unwrap_or(multiplier);
    Ok(RetryPolicy { backoff: Backoff::Exponential { initial_ms, multiplier, max_ms, jitter }, ..default })
}

/// `sluice group set-retry`
#[derive(Debug, Args)]
pub struct SetRetryArgs {
    /// The group.
    pub group: String,
    /// The new policy; it replaces the group's for every member.
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// `sluice dlq ...`
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Show a group's dead letters (the topic `<group>.dlq`): where each came from, its
    /// attempts, the last reason, when it first and last failed, and its value.
    List(DlqListArgs),
    /// Deliver a group's dead letters again, at attempt 1, from where the last redrive
    /// stopped (redriving twice delivers once); or, with --to, copy them to a topic, exactly
    /// once per topic.
    Redrive {
        /// The group.
        #[arg(long)]
        group: String,
        /// At most this many (default: 1000 to the group; all there are with --to).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        max: Option<u32>,
        /// Copy them to this topic instead (transactions: each entry once per topic; the
        /// position is the consumer group `<group>.redrive.<TOPIC>`).
        #[arg(long)]
        to: Option<String>,
        /// At most this many a second, e.g. `1000` or `1000/s` (default: no limit).
        #[arg(long, value_parser = parse_rate)]
        rate: Option<u32>,
    },
    /// Mark a group's dead letters before a time (or all) as purged: redrives skip them.
    Purge {
        /// The group.
        #[arg(long)]
        group: String,
        /// Only those written before this RFC 3339 time (default: all).
        #[arg(long, value_parser = parse_time)]
        before: Option<u64>,
    },
}

/// `sluice dlq list`
#[derive(Debug, Args)]
pub struct DlqListArgs {
    /// The group.
    #[arg(long)]
    pub group: String,
    /// Only dead letters that came from this topic.
    #[arg(long)]
    pub topic: Option<String>,
    /// Only those that last failed within this long (e.g. 1h).
    #[arg(long, value_parser = parse_duration)]
    pub since: Option<Duration>,
    /// Output format.
    #[command(flatten)]
    pub output: OutputArg,
}

/// A rate: `N` or `N/s`, N ≥ 1.
fn parse_rate(text: &str) -> Result<u32, String> {
    let n = text.strip_suffix("/s").unwrap_or(text);
    match n.trim().parse::<u32>() {
        Ok(rate) if rate > 0 => Ok(rate),
        _ => Err(format!("{text:?} is not a rate: give messages per second, e.g. 1000 or 1000/s")),
    }
}
