//! The releaser's metrics (docs/METRICS.md, "Delayed messages"): what it released and fired,
//! how late, and how often a release was refused as stale. The pending counts per partition
//! are read from the store at scrape time (`metrics::collector`).

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Release lateness buckets, seconds: from a millisecond to a minute (a failover's worth).
const LATENESS_BUCKETS_SECONDS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0];

/// Counted by the releaser of the partitions this broker leads.
#[derive(Debug)]
pub struct DelayMetrics {
    releases: Counter,
    /// Messages released per partition group, exported per partition by the collector.
    released: Mutex<HashMap<u64, u64>>,
    fires: Counter,
    stale: Counter,
    lateness: Histogram,
}

impl Default for DelayMetrics {
    fn default() -> DelayMetrics {
        DelayMetrics {
            releases: Counter::default(),
            released: Mutex::default(),
            fires: Counter::default(),
            stale: Counter::default(),
            lateness: Histogram::new(LATENESS_BUCKETS_SECONDS),
        }
    }
}

impl DelayMetrics {
    /// A release committed at `committed_ms` (the leader's clock) of messages due at `dues`.
    pub(crate) fn released(&self, group: u64, committed_ms: u64, dues: impl Iterator<Item = u64>) {
        self.releases.inc();
        let mut n = 0;
        for due in dues {
            n += 1;
            self.lateness.observe(committed_ms.saturating_sub(due) as f64 / 1000.0);
        }
        *self.released.lock().expect("released lock").entry(group).or_default() += n;
    }

    /// A schedule's fire committed at `committed_ms`, due at `due_ms`.
    pub(crate) fn fired(&self, committed_ms: u64, due_ms: u64) {
        self.fires.inc();
        self.lateness.observe(committed_ms.saturating_sub(due_ms) as f64 / 1000.0);
    }

    /// A release or fire refused because the store changed under it.
    pub(crate) fn stale(&self) {
        self.stale.inc();
    }

    /// Messages released in `group` while this broker led it.
    pub fn released_in(&self, group: u64) -> u64 {
        self.released.lock().expect("released lock").get(&group).copied().unwrap_or(0)
    }

    /// Adds the metrics to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register("sluice_delay_releases", "Release entries committed", self.releases.clone());
        registry.register("sluice_schedule_fires", "Schedule fires committed", self.fires.clone());
        registry.register(
            "sluice_delay_stale_releases",
            "Releases and fires refused because a cancel or another release reached the log first (built again)",
            self.stale.clone(),
        );
        registry.register_with_unit(
            "sluice_delay_release_lateness",
            "Per released message or fire: the leader's clock at commit minus its delivery time",
            Unit::Seconds,
            self.lateness.clone(),
        );
    }
}
