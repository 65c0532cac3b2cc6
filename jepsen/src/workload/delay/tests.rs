//! What the delay workload does without a cluster: its settings, what it records first, and
//! what its drain waits for. The workload against a cluster is tested in tests/workload/delay.rs.

use std::time::Duration;

use super::*;
use crate::workload::{WorkloadConfig, WorkloadKind};

fn delay_config() -> WorkloadConfig {
    WorkloadConfig { kind: WorkloadKind::Delay, ..WorkloadConfig::default() }
}

#[test]
fn the_default_delay_settings_are_the_documented_ones_and_valid() {
    let config = delay_config();
    let d = &config.delay;
    assert_eq!(
        (d.max_delay_ms, d.cancel_percent, d.grace, d.max_clock_skew),
        (5_000, 20, Duration::from_secs(30), Duration::ZERO)
    );
    config.validate().unwrap();
    // Two producers, the canceller, one consumer.
    assert_eq!(config.processes(), 4);
    assert_eq!(WorkloadConfig::default().kind, WorkloadKind::Log);
}

#[test]
fn bad_delay_settings_are_refused_naming_them() {
    let bad = |config: WorkloadConfig| config.validate().unwrap_err().to_string();
    let base = delay_config();
    assert!(bad(WorkloadConfig { readers: 0, ..base.clone() }).contains("at least one producer and one reader"));
    assert!(bad(WorkloadConfig { producers: 0, ..base.clone() }).contains("at least one producer and one reader"));
    let cancel_all = DelayConfig { cancel_percent: 101, ..DelayConfig::default() };
    assert!(bad(WorkloadConfig { delay: cancel_all, ..base.clone() }).contains("cancel_percent must be 0 to 100"));
    let far = DelayConfig { max_delay_ms: MAX_DELAY_MS + 1, ..DelayConfig::default() };
    assert!(bad(WorkloadConfig { delay: far, ..base.clone() }).contains("max_delay_ms must be at most"));
    // The log workload's own checks still apply.
    assert!(bad(WorkloadConfig { partitions: 0, ..base }).contains("partitions"));
}

#[test]
fn the_setup_event_carries_the_checkers_parameters() {
    let config = DelayConfig { max_clock_skew: Duration::from_secs(120), ..DelayConfig::default() };
    assert_eq!(
        config.setup(),
        Op::DelaySetup { max_clock_skew_ms: 120_000, grace_ms: 30_000, max_delay_ms: 5_000, cancel_percent: 20 }
    );
}

#[test]
fn the_drain_waits_for_acknowledged_messages_not_cancelled_until_received() {
    let mut tracker = Tracker::default();
    for (value, due) in [("a", 10), ("b", 30), ("c", 20)] {
        tracker.invoked(due);
        tracker.acked(value, due);
    }
    tracker.invoked(50);
    assert_eq!((tracker.latest_due_ms, tracker.latest_acked_due_ms), (50, 30));
    assert_eq!(tracker.missing(), 3);
    tracker.received(["a", "x"]);
    tracker.not_expected("b");
    assert_eq!(tracker.missing(), 1);
    tracker.received(["c"]);
    assert_eq!(tracker.missing(), 0);
}

#[test]
fn wall_clock_times_map_to_instants_never_in_the_past() {
    let now = tokio::time::Instant::now();
    assert!(instant_at(0) >= now);
    let later = instant_at(now_ms() + 60_000);
    assert!(later >= now + Duration::from_secs(59) && later <= now + Duration::from_secs(61));
}
