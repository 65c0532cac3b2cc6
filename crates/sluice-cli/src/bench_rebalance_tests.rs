//! The rebalance benchmark's arithmetic: quantiles, when a group counts as settled, and the
//! summary's shape.

use clap::Parser;

use super::*;
use crate::args::{BenchCommand, Cli, Command};

fn view(owned: &[u32], delivering: &[u32]) -> View {
    View { owned: owned.iter().copied().collect(), delivering: delivering.iter().copied().collect(), last_error: None }
}

fn args(extra: &[&str]) -> BenchRebalanceArgs {
    let mut line = vec!["sluice", "bench", "rebalance"];
    line.extend_from_slice(extra);
    match Cli::parse_from(line).command {
        Command::Bench(BenchCommand::Rebalance(args)) => args,
        other => panic!("{other:?}"),
    }
}

#[test]
fn quantiles_use_the_nearest_rank() {
    let values: Vec<f64> = (1..=10).rev().map(f64::from).collect();
    assert_eq!(quantile(&values, 0.5), 5.0);
    assert_eq!(quantile(&values, 0.99), 10.0, "with 10 values p99 is the maximum");
    assert_eq!(quantile(&values, 0.0), 1.0);
    assert_eq!(quantile(&[7.0], 0.5), 7.0);
    assert_eq!(quantile(&[], 0.5), 0.0);
}

#[test]
fn jitter_stays_below_its_bound_and_varies() {
    let bound = Duration::from_millis(1000);
    let samples: BTreeSet<Duration> = (0..100).map(|_| jitter(bound)).collect();
    assert!(samples.iter().all(|d| *d < bound));
    assert!(samples.len() > 90, "100 draws from a nanosecond range are nearly all distinct");
    assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
}

#[test]
fn a_group_is_settled_when_balanced_complete_and_delivering() {
    let halves = [view(&[0, 1, 2], &[0, 1, 2]), view(&[3, 4, 5], &[3, 4, 5])];
    assert!(settled(&halves, 6));
    let silent = [view(&[0, 1, 2], &[0, 1]), view(&[3, 4, 5], &[3, 4, 5])];
    assert!(!settled(&silent, 6), "partition 2 has not delivered yet");
    let lopsided = [view(&[0, 1, 2, 3], &[0, 1, 2, 3]), view(&[4, 5], &[4, 5])];
    assert!(!settled(&lopsided, 6));
    let missing = [view(&[0, 1, 2], &[0, 1, 2]), view(&[3, 4], &[3, 4])];
    assert!(!settled(&missing, 6), "partition 5 is owned by nobody");
    let shared = [view(&[0, 1, 2], &[0, 1, 2]), view(&[2, 3, 4], &[2, 3, 4])];
    assert!(!settled(&shared, 5), "partition 2 is owned twice");
    let uneven = [view(&[0, 1, 2, 3], &[0, 1, 2, 3]), view(&[4, 5, 6, 7], &[4, 5, 6, 7]), view(&[8, 9], &[8, 9])];
    assert!(!settled(&uneven, 10), "4, 4, 2 differ by more than one");
    let even = [view(&[0, 1, 2, 3], &[0, 1, 2, 3]), view(&[4, 5, 6], &[4, 5, 6]), view(&[7, 8, 9], &[7, 8, 9])];
    assert!(settled(&even, 10));
}

#[test]
fn the_summary_has_every_measure_and_trial() {
    let args = args(&["--session-timeout", "3s", "--rate", "300"]);
    let trial = |first, all| Trial { accepted_ms: None, first_ms: first, all_ms: all, moved: 4 };
    let join = ScenarioResult {
        scenario: RebalanceScenario::Join,
        trials: vec![Trial { accepted_ms: Some(20.0), ..trial(900.0, 1800.0) }],
        failures: Vec::new(),
    };
    let crash = ScenarioResult {
        scenario: RebalanceScenario::Crash,
        trials: vec![trial(3100.0, 3500.0), trial(2500.0, 2900.0)],
        failures: vec!["trial 3: timed out".into()],
    };
    let fed = FeedOutcome { acknowledged: 1000, ..FeedOutcome::default() };
    let summary = Summary { args: &args, partitions: 12, fed, results: vec![join, crash] };
    let v = summary.json();
    assert_eq!(
        (v["mode"].as_str(), v["session_timeout_ms"].as_u64(), v["rate"].as_u64()),
        (Some("rebalance"), Some(3000), Some(300))
    );
    let join = &v["scenarios"][0];
    assert_eq!(join["scenario"].as_str(), Some("join"));
    assert_eq!((join["accepted_ms"]["p50"].as_f64(), join["all_ms"]["max"].as_f64()), (Some(20.0), Some(1800.0)));
    let crash = &v["scenarios"][1];
    assert!(crash.get("accepted_ms").is_none(), "only a join is accepted");
    assert_eq!((crash["all_ms"]["p50"].as_f64(), crash["all_ms"]["p99"].as_f64()), (Some(2900.0), Some(3500.0)));
    assert_eq!(crash["first_ms"]["trials"].as_array().map(Vec::len), Some(2));
    assert_eq!(crash["failures"][0].as_str(), Some("trial 3: timed out"));
    let plain = summary.plain();
    assert!(plain.contains("session timeout 3s"), "{plain}");
    assert!(plain.contains("crash: death -> all of its partitions consumed again"), "{plain}");
    assert!(plain.contains("crash trial 2: first 2500 ms, all 4 moved partitions 2900 ms"), "{plain}");
    assert!(plain.contains("join trial 1: accepted 20 ms, first 900 ms"), "{plain}");
    assert!(plain.contains("crash FAILED trial 3: timed out"), "{plain}");
}
