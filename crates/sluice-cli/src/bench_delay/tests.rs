use clap::Parser;

use super::*;
use crate::args::{BenchCommand, Cli, Command};

fn parse(line: &[&str]) -> BenchDelayArgs {
    let cli = Cli::try_parse_from([&["sluice", "bench", "delay"], line].concat()).unwrap();
    match cli.command {
        Command::Bench(BenchCommand::Delay(args)) => args,
        other => panic!("parsed as {other:?}"),
    }
}

#[test]
fn defaults_depend_on_the_mode() {
    let steady = parse(&[]);
    assert_eq!(steady.mode, DelayBenchMode::Steady);
    assert_eq!((steady.rate, steady.duration, steady.partitions), (10_000, Duration::from_secs(60), 12));
    assert_eq!(topic_name(&steady), "sluice-bench-delay-steady");
    assert_eq!(steady_count(steady.rate, steady.duration), 600_000);
    let burst = parse(&["--mode", "burst", "--topic", "b", "--count", "100000"]);
    assert_eq!((topic_name(&burst), burst.count), ("b".to_owned(), Some(100_000)));
    assert!(Cli::try_parse_from(["sluice", "bench", "delay", "--value-bytes", "8"]).is_err());
}

#[test]
fn counts_and_bounds() {
    assert_eq!(steady_count(2000, Duration::from_secs(10)), 20_000);
    assert_eq!(steady_count(3, Duration::from_millis(500)), 2, "rounded up");
    assert_eq!(default_burst_lead(1_000_000, Duration::from_secs(5)), Duration::from_secs(110));
    assert_eq!(default_burst_lead(1, Duration::from_secs(5)), Duration::from_millis(10_001));
    assert_eq!(drain_timeout(100_000), Duration::from_secs(70));
}

#[test]
fn the_schedule_paces_sends() {
    assert_eq!(scheduled(Duration::ZERO, 1000), 1, "the first goes at once");
    assert_eq!(scheduled(Duration::from_micros(999), 1000), 1);
    assert_eq!(scheduled(Duration::from_millis(1), 1000), 2);
    assert_eq!(scheduled(Duration::from_secs(1), 10_000), 10_001);
    for (n, rate) in [(0, 1), (1, 3), (7, 3), (12_345, 10_000), (999_999, 1_000_000)] {
        assert_eq!(scheduled(slot(n, rate), rate), n + 1, "message {n} at {rate}/s is due at its slot");
        if n > 0 {
            let just_before = slot(n, rate) - Duration::from_nanos(1);
            assert_eq!(scheduled(just_before, rate), n, "and not before");
        }
    }
    assert_eq!(slot(3, 3), Duration::from_secs(1));
}

#[test]
fn values_carry_the_run_id_and_due_times_are_read_back() {
    let value = payload(0xabc, 100);
    assert_eq!(value.len(), 100);
    assert!(value.starts_with(b"0000000000000abc"));
    assert_eq!(payload(1, 16).len(), 16);
    let record = ProducerRecord::new("t", value).deliver_at(1_700_000_005_000);
    assert!(record.is_delayed());
    let props = [("n", "1"), (DELIVER_AT_PROPERTY, "1700000005000")];
    assert_eq!(deliver_at_ms(props.into_iter()), Some(1_700_000_005_000));
    assert_eq!(deliver_at_ms([(DELIVER_AT_PROPERTY, "soon")].into_iter()), None);
    assert_eq!(deliver_at_ms(std::iter::empty()), None);
}

#[test]
fn releases_count_per_second() {
    let mut releases = Releases::default();
    assert_eq!(releases.peak(), 0);
    releases.add(3, 5);
    releases.add(3, 2);
    releases.add(1, 4);
    assert_eq!((releases.per_second.clone(), releases.peak()), (vec![0, 4, 0, 7], 7));
}

fn sent(acknowledged: u64, errors: u64, phases: usize) -> Sent {
    let mut sent = Sent::new(phases).unwrap();
    (sent.offered, sent.acknowledged, sent.errors, sent.seconds) = (acknowledged + errors, acknowledged, errors, 2.0);
    if errors > 0 {
        sent.first_error = Some("TIMEOUT".into());
    }
    sent
}

fn received(count: u64) -> Received {
    let start = Instant::now();
    let mut lateness_us = new_histogram().unwrap();
    for us in 1..=count {
        lateness_us.record(us).unwrap();
    }
    Received {
        received: count,
        early: 0,
        max_early_us: 0,
        undated: 0,
        foreign: 0,
        lateness_us,
        first: Some(start),
        last: Some(start + Duration::from_secs(4)),
        releases: Releases { per_second: vec![count / 2, count / 2] },
    }
}

#[test]
fn the_steady_report_has_lateness_rates_and_failures() {
    let report = SteadyReport {
        topic: "t".into(),
        rate: 500,
        duration: Duration::from_secs(2),
        delay: Duration::from_secs(5),
        planned: 1000,
        sent: sent(1000, 0, 1),
        received: received(1000),
    };
    let v = report.json();
    assert_eq!((v["mode"].as_str(), v["planned"].as_u64()), (Some("steady"), Some(1000)));
    assert_eq!(v["sent"]["msgs_per_sec"].as_f64(), Some(500.0));
    let released = &v["released"];
    assert_eq!((released["received"].as_u64(), released["missing"].as_u64()), (Some(1000), Some(0)));
    assert_eq!(released["released_msgs_per_sec"].as_f64(), Some(250.0));
    assert_eq!(released["released_peak_per_sec"].as_u64(), Some(500));
    let lateness = &released["lateness_us"];
    assert_eq!((lateness["p50"].as_u64(), lateness["p99"].as_u64()), (Some(500), Some(990)));
    let plain = report.plain();
    assert!(plain.contains("release lateness ms: p50 0.50  p99 0.99"), "{plain}");
    assert!(plain.contains("250 msgs/s from first to last, peak 500"), "{plain}");
    let report = Report::Steady(report);
    assert!(report.failures().is_empty());

    let mut short = SteadyReport {
        topic: "t".into(),
        rate: 500,
        duration: Duration::from_secs(2),
        delay: Duration::from_secs(5),
        planned: 1000,
        sent: sent(1000, 2, 1),
        received: received(990),
    };
    short.received.early = 1;
    short.received.max_early_us = 1500;
    let failures = Report::Steady(short).failures();
    assert_eq!(failures.len(), 3, "{failures:?}");
    assert!(failures[0].starts_with("2 delayed messages failed; the first error: TIMEOUT"));
    assert!(failures[1].starts_with("10 acknowledged delayed messages were not read"));
    assert!(failures[2].contains("(up to 1.500 ms)"));
}

#[test]
fn the_burst_report_compares_the_plain_producer_before_and_during_the_drain() {
    let mut plain = sent(100, 0, PHASES);
    for us in [100, 200, 300] {
        plain.latency_us[PHASE_BASELINE].record(us).unwrap();
        plain.latency_us[PHASE_DRAIN].record(us * 4).unwrap();
    }
    let report = BurstReport {
        topic: "t".into(),
        count: 1000,
        due_ms: 1_700_000_000_000,
        slack_seconds: 6.0,
        first_release_ms: Some(3.0),
        drain_ms: Some(500.0),
        sent: sent(1000, 0, 1),
        received: received(1000),
        plain_topic: "p".into(),
        plain_rate: 1000,
        baseline_seconds: 5.0,
        plain,
    };
    assert_eq!(report.ratio(0.5), Some(4.0));
    assert_eq!(report.drain_rate(), Some(2000.0));
    let v = report.json();
    assert_eq!(v["drain_ms"].as_f64(), Some(500.0));
    assert_eq!(v["plain"]["baseline"]["messages"].as_u64(), Some(3));
    assert_eq!(v["plain"]["drain"]["ack_latency_us"]["p50"].as_u64(), Some(800));
    assert_eq!(v["plain"]["ratio_p99"].as_f64(), Some(4.0));
    let plain = report.plain();
    assert!(plain.contains("last 500 ms after T (2000 msgs/s)"), "{plain}");
    assert!(plain.contains("drain / baseline: p50 4.00x, p99 4.00x"), "{plain}");

    let empty = BurstReport { first_release_ms: None, drain_ms: None, received: received(0), ..report };
    assert_eq!(empty.drain_rate(), None);
    assert!(empty.plain().contains("first read - after T"));
    assert_eq!(Report::Burst(empty).failures(), ["1000 acknowledged delayed messages were not read in time"]);
}

#[test]
fn the_pending_report_has_the_rate_and_the_count() {
    let report = PendingReport {
        topic: "t".into(),
        count: 1000,
        delay: Duration::from_secs(3600),
        value_bytes: 100,
        sent: sent(1000, 0, 1),
        pending_before: 5,
        pending_after: 1005,
    };
    let v = report.json();
    assert_eq!((v["pending_before"].as_u64(), v["pending_after"].as_u64()), (Some(5), Some(1005)));
    assert_eq!(v["mb_per_sec"].as_f64(), Some(0.05));
    assert!(report.plain().contains("pending in the topic: 5 before, 1005 after"));
    assert!(Report::Pending(report).failures().is_empty());
}
