//! The retry workload's part of the report: which retry check a finding failed, and the
//! figures of what its groups did.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::{AnomalyKind, Lateness};

/// The retry check a [`Anomaly::Retry`](super::Anomaly::Retry) finding failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryCheck {
    /// A delivery with an attempt number of 0 or above `max_attempts`.
    Attempts,
    /// A retry received before the previous attempt's delivery plus its wait (less the skew).
    Early,
    /// An acknowledged message a group never saw through: never delivered, or failing once
    /// and never delivered again.
    Lost,
    /// A message failing always or rejected, missing from its group's dead-letter queue.
    DlqMissing,
    /// A dead letter of a message that was to be processed, or with another value, origin or
    /// attempt count than its message's.
    DlqUnexpected,
    /// A message in its group's dead-letter queue more often than its deliveries explain.
    DlqDuplicate,
    /// In the key-ordered group, a later message of a key delivered while an earlier one of
    /// the same key waited for its retry.
    KeyOrder,
}

impl RetryCheck {
    /// The anomaly kind it counts as.
    pub fn kind(self) -> AnomalyKind {
        match self {
            RetryCheck::Attempts => AnomalyKind::RetryAttempts,
            RetryCheck::Early => AnomalyKind::EarlyRetry,
            RetryCheck::Lost => AnomalyKind::LostRetry,
            RetryCheck::DlqMissing => AnomalyKind::DlqMissing,
            RetryCheck::DlqUnexpected => AnomalyKind::DlqUnexpected,
            RetryCheck::DlqDuplicate => AnomalyKind::DlqDuplicate,
            RetryCheck::KeyOrder => AnomalyKind::KeyOrder,
        }
    }
}

/// What the retry workload's groups did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryStats {
    /// The policy: deliveries before the dead-letter queue.
    pub max_attempts: u32,
    /// The policy: the wait after each attempt, in ms.
    pub ladder_ms: Vec<u64>,
    /// The clock skew allowed, in ms.
    pub max_clock_skew_ms: u64,
    /// Acknowledged messages (each owed to every group).
    pub acked: u64,
    /// Per group.
    pub groups: Vec<RetryGroupStats>,
    /// What the members still had not seen through when they stopped (`RetryEnd`).
    pub unresolved: Option<u64>,
}

/// What one group of the retry workload did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryGroupStats {
    /// The group.
    pub group: String,
    /// Whether it consumed key-ordered.
    pub key_ordered: bool,
    /// Records its members received, per attempt number: (attempt, count).
    pub deliveries: Vec<(u32, u64)>,
    /// Nacks and rejects its members made.
    pub nacks: u64,
    /// Rejects its members made.
    pub rejects: u64,
    /// Entries of its dead-letter queue.
    pub dead_letters: u64,
    /// Dead letters allowed twice because the message was delivered afresh (attempt 1) after
    /// it had been dead-lettered (at least once delivery).
    pub redelivered_dead_letters: u64,
    /// Retries with no delivery of the attempt before them recorded (their time not judged).
    pub unanchored_retries: u64,
    /// How late retries came: each retry's receipt less the earliest time it could be due
    /// (the previous attempt's poll start plus its wait), by the runner's clock.
    pub lateness: Option<Lateness>,
}

/// The retry workload's lines of the summary.
pub(super) fn write(out: &mut String, r: &RetryStats) {
    let _ = writeln!(
        out,
        "retries: policy {} attempts, waits {:?} ms, {} acknowledged messages, {} unresolved at the end",
        r.max_attempts,
        r.ladder_ms,
        r.acked,
        r.unresolved.map_or_else(|| "unknown".to_owned(), |u| u.to_string())
    );
    for g in &r.groups {
        let order = if g.key_ordered { " (key-ordered)" } else { "" };
        let late = g.lateness.map_or_else(String::new, |l| {
            format!(", retries late by p50 {} / p99 {} / max {} ms", l.p50_ms, l.p99_ms, l.max_ms)
        });
        let _ = writeln!(
            out,
            "  {}{order}: deliveries by attempt {:?}, {} nacks, {} rejects, {} dead letters{late}",
            g.group, g.deliveries, g.nacks, g.rejects, g.dead_letters
        );
    }
}
