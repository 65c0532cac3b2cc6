//! Retry and dead-letter counters of the groups this broker coordinates (docs/METRICS.md,
//! "Retries"): dead letters reserved and written, and retries handed out by attempt number.
//! Counted where it happens, on this broker: a group that moves to another coordinator goes on
//! counting there, so a sum over brokers is the group's total.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Attempt numbers counted apart; later ones are counted together as `17+`.
pub(crate) const ATTEMPT_LABELS: usize = 16;
/// The most groups counted apart; later ones are counted as `_other`.
const MAX_GROUPS: usize = 1_000;
/// Where groups past [`MAX_GROUPS`] are counted.
const OTHER: &str = "_other";

/// One group's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryCounts {
    /// Messages sent to the dead-letter queue (reserved: the atomic step).
    pub dead_lettered: u64,
    /// Dead letters written to the DLQ topic.
    pub dlq_written: u64,
    /// Retries handed out, by attempt: index `n - 1` for attempt `n` (1 to 16; attempt 1 is a
    /// redriven or a released parked message), the last for attempt 17 and later.
    pub by_attempt: [u64; ATTEMPT_LABELS + 1],
}

impl RetryCounts {
    /// The label of index `i` of [`RetryCounts::by_attempt`].
    pub fn attempt_label(i: usize) -> String {
        if i == ATTEMPT_LABELS { format!("{}+", ATTEMPT_LABELS + 1) } else { (i + 1).to_string() }
    }
}

/// The counters, by group.
#[derive(Debug, Default)]
pub(crate) struct RetryCounters(Mutex<BTreeMap<String, RetryCounts>>);

impl RetryCounters {
    fn with(&self, group: &str, f: impl FnOnce(&mut RetryCounts)) {
        let mut groups = self.0.lock().expect("retry counters");
        let known = groups.contains_key(group) || groups.len() < MAX_GROUPS;
        f(groups.entry(if known { group } else { OTHER }.to_owned()).or_default());
    }

    /// `n` messages of `group` went to the dead-letter queue.
    pub fn dead_lettered(&self, group: &str, n: u32) {
        if n > 0 {
            self.with(group, |c| c.dead_lettered += u64::from(n));
        }
    }

    /// A dead letter of `group` was written.
    pub fn dlq_written(&self, group: &str) {
        self.with(group, |c| c.dlq_written += 1);
    }

    /// A retry of `group` was handed out as attempt `attempt`.
    pub fn delivered(&self, group: &str, attempt: u32) {
        let i = (attempt.max(1) as usize - 1).min(ATTEMPT_LABELS);
        self.with(group, |c| c.by_attempt[i] += 1);
    }

    /// Every group's counters.
    pub fn snapshot(&self) -> BTreeMap<String, RetryCounts> {
        self.0.lock().expect("retry counters").clone()
    }
}

/// One group's retry figures for the metrics endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryRow {
    /// The group.
    pub group: String,
    /// Messages waiting for another attempt (parked ones included), if this broker
    /// coordinates the group now.
    pub waiting: Option<u64>,
    /// Dead letters reserved and not yet written, likewise.
    pub dlq_pending: Option<u64>,
    /// Counted on this broker.
    pub counts: RetryCounts,
}

impl super::super::coordinators::Coordinators {
    /// The retry figures of every group coordinated here or counted here.
    pub fn retry_rows(&self) -> Vec<RetryRow> {
        let mut rows: BTreeMap<String, RetryRow> = BTreeMap::new();
        for c in self.active() {
            let state = c.state();
            for (group, r) in state.all_retries() {
                let row = rows.entry(group.to_owned()).or_default();
                row.waiting = Some(r.table.len() as u64);
                row.dlq_pending = Some(r.dlq.pending.len() as u64);
            }
        }
        for (group, counts) in self.ctx.retry_counters.snapshot() {
            rows.entry(group).or_default().counts = counts;
        }
        rows.into_iter().map(|(group, row)| RetryRow { group, ..row }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_past_sixteen_share_one_label_and_groups_past_the_limit_share_other() {
        let counters = RetryCounters::default();
        for attempt in [1, 2, 16, 17, 40] {
            counters.delivered("g", attempt);
        }
        let g = &counters.snapshot()["g"];
        assert_eq!((g.by_attempt[0], g.by_attempt[1], g.by_attempt[15], g.by_attempt[16]), (1, 1, 1, 2));
        assert_eq!((RetryCounts::attempt_label(0), RetryCounts::attempt_label(16)), ("1".into(), "17+".into()));
        for i in 0..MAX_GROUPS + 5 {
            counters.dlq_written(&format!("group-{i}"));
        }
        let snapshot = counters.snapshot();
        assert_eq!(snapshot.len(), MAX_GROUPS + 1);
        assert_eq!(snapshot[OTHER].dlq_written, 6);
    }
}
