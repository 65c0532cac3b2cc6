//! `sluice group set-retry` and the retries part of `sluice group describe` (docs/RETRIES.md):
//! a group's retry policy, what waits for another attempt, and its dead-letter queue's cursors.

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use serde_json::json;
use sluice_client::{Admin, Backoff, GroupRetryPolicy, RetriesDescription};

use crate::args::SetRetryArgs;

pub(crate) async fn set_retry(admin: &Admin, args: &SetRetryArgs) -> Result<()> {
    if !args.policy.given() {
        bail!(
            "say the policy: --max-attempts, --retry-backoff, --retry-multiplier, --retry-max-backoff, --ladder or --key-ordered"
        );
    }
    let policy = args.policy.policy().map_err(anyhow::Error::msg)?;
    let set = admin
        .set_retry_policy(&args.group, &policy, None)
        .await
        .with_context(|| format!("cannot set the retry policy of group {}", args.group))?;
    eprintln!("group {} now retries with {}", args.group, policy_plain(&set));
    Ok(())
}

/// The policy in one line: `5 attempts, 200ms ×2 up to 10000ms ±20%, key-ordered`.
pub fn policy_plain(p: &GroupRetryPolicy) -> String {
    let backoff = match &p.retry.backoff {
        Backoff::Exponential { initial_ms, multiplier, max_ms, jitter } => {
            format!("{initial_ms}ms ×{multiplier} up to {max_ms}ms ±{:.0}%", jitter * 100.0)
        }
        Backoff::Ladder(steps) => {
            let steps: Vec<String> = steps.iter().map(|s| format!("{s}ms")).collect();
            format!("ladder {}", steps.join(" "))
        }
    };
    let order = if p.key_ordered { ", key-ordered" } else { "" };
    format!("{} attempts, {backoff}{order}", p.retry.max_attempts)
}

/// What `group describe` prints about retries.
pub fn retries_plain(r: &RetriesDescription) -> String {
    let mut out = String::new();
    let default = if r.policy_set { "" } else { " (default)" };
    let _ = writeln!(out, "retry policy: {}{default}", policy_plain(&r.policy));
    let _ = writeln!(out, "waiting for a retry: {} ({} parked behind their key)", r.waiting, r.parked);
    if r.waiting > 0 {
        let attempts: Vec<String> = r.attempts.iter().map(|(a, n)| format!("attempt {a}: {n}")).collect();
        let _ = writeln!(out, "  by next attempt: {}", attempts.join(", "));
        let _ = writeln!(out, "  next due at {} ms, oldest failure at {} ms", r.next_due_ms, r.oldest_first_failure_ms);
    }
    let _ = writeln!(
        out,
        "dead letters: {} (pending {}; redrive from offset {}, purged before {})",
        r.dlq_topic, r.dead_letters_pending, r.redrive_offset, r.purge_offset
    );
    out
}

/// The `retries` object of `group describe --output json`.
pub fn retries_json(r: &RetriesDescription) -> serde_json::Value {
    json!({
        "policy": policy_plain(&r.policy),
        "max_attempts": r.policy.retry.max_attempts,
        "key_ordered": r.policy.key_ordered,
        "policy_set": r.policy_set,
        "waiting": r.waiting,
        "parked": r.parked,
        "attempts": r.attempts.iter().map(|(a, n)| json!({"attempt": a, "count": n})).collect::<Vec<_>>(),
        "next_due_ms": r.next_due_ms,
        "oldest_first_failure_ms": r.oldest_first_failure_ms,
        "dlq_topic": r.dlq_topic,
        "dead_letters_pending": r.dead_letters_pending,
        "redrive_offset": r.redrive_offset,
        "purge_offset": r.purge_offset,
    })
}
