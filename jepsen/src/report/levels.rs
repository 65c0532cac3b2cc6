//! The log workload's sends by acknowledgement level, and the messages of the levels that may
//! be lost (`leader`, `none`) that were never read: figures, not anomalies.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::history::AckLevel;

/// How many allowed losses a report keeps as examples; the counts are always complete.
pub const LOSS_EXAMPLES: usize = 10;

/// The sends of each acknowledgement level and the allowed losses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckLevels {
    /// One entry per level (`all`, `leader`, `none`).
    pub levels: Vec<LevelTotals>,
    /// `leader` sends acknowledged and never read by anyone, the final drain included: lost
    /// with the leader that acknowledged them, which that level allows.
    pub lost_leader_acked: u64,
    /// `none` sends that went on their way (`ok`) and were never read: allowed.
    pub lost_unacknowledged: u64,
    /// The first [`LOSS_EXAMPLES`] of both, in send order, to set beside the faults.
    pub lost_examples: Vec<AllowedLoss>,
}

/// How the sends of one level ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelTotals {
    /// The level.
    pub acks: AckLevel,
    /// Invocations.
    pub invoked: u64,
    /// `ok` completions: acknowledged (for `none`: on its way).
    pub ok: u64,
    /// `fail` completions.
    pub fail: u64,
    /// `info` completions.
    pub info: u64,
    /// Sends completed `ok` whose value someone read.
    pub ok_read: u64,
}

/// A `leader` or `none` message completed `ok` and never read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowedLoss {
    /// The value.
    pub value: String,
    /// Its level.
    pub acks: AckLevel,
    /// The partition its `ok` named, if it named one.
    pub partition: Option<u32>,
    /// The `ok` completion of its send.
    pub ack_event: u64,
}

impl AckLevels {
    /// The summary's lines: one per level, then the allowed losses.
    pub(super) fn write(&self, out: &mut String) {
        let _ = writeln!(out, "sends by acks level (ok: acknowledged; for none, on its way):");
        for l in &self.levels {
            let _ = writeln!(
                out,
                "  {:<8} {} invoked, {} ok ({} of them read), {} failed, {} unknown",
                l.acks.name(),
                l.invoked,
                l.ok,
                l.ok_read,
                l.fail,
                l.info
            );
        }
        let first = self.lost_examples.first().map(|l| {
            let partition = l.partition.map_or_else(|| "?".to_owned(), |p| p.to_string());
            format!(", e.g. {:?} ({}, p{partition}, ok at event {})", l.value, l.acks.name(), l.ack_event)
        });
        let _ = writeln!(
            out,
            "allowed losses (never read): {} leader-acknowledged, {} unacknowledged (none){}",
            self.lost_leader_acked,
            self.lost_unacknowledged,
            first.unwrap_or_default()
        );
    }
}
