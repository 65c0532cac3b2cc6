use clap::Parser;

use super::latency::LatencyRow;
use super::read::ReadRow;
use super::report::Report;
use super::throughput::{Throughput, counts};
use super::*;
use crate::args::{BenchCommand, Cli, Command, IsolationLevel};

fn parse(line: &[&str]) -> BenchTxnArgs {
    let cli = Cli::try_parse_from([&["sluice", "bench", "txn"], line].concat()).unwrap();
    match cli.command {
        Command::Bench(BenchCommand::Txn(args)) => args,
        other => panic!("parsed as {other:?}"),
    }
}

#[test]
fn defaults() {
    let args = parse(&[]);
    assert_eq!((args.topic.as_str(), args.partitions, args.replication_factor), ("sluice-bench-txn", 8, 3));
    assert_eq!((args.transactions, args.producers, args.records_per_txn, args.message_bytes), (1000, 1, 100, 100));
    assert_eq!(limit(&args), Limit::Seconds(DEFAULT_SECONDS));
    assert_eq!(args.output.output, Output::Plain);
    let args = parse(&["--messages", "5000", "--producers", "4", "--topic", "t", "--output", "json"]);
    assert_eq!((limit(&args), args.producers, args.output.output), (Limit::Messages(5000), 4, Output::Json));
    assert_eq!(limit(&parse(&["--seconds", "30s"])), Limit::Seconds(Duration::from_secs(30)));
    for bad in [&["--seconds", "5s", "--messages", "10"][..], &["--producers", "0"], &["--records-per-txn", "0"]] {
        assert!(Cli::try_parse_from([&["sluice", "bench", "txn"], bad].concat()).is_err(), "{bad:?}");
    }
}

#[test]
fn widths_fit_the_topic() {
    assert_eq!(widths(8), [1, 4, 8]);
    assert_eq!(widths(12), [1, 4, 8]);
    assert_eq!(widths(5), [1, 4, 5]);
    assert_eq!(widths(4), [1, 4]);
    assert_eq!(widths(1), [1]);
}

#[test]
fn work_is_shared_and_counted_in_whole_transactions() {
    assert_eq!((0..3).map(|i| share(10, 3, i)).collect::<Vec<_>>(), [4, 3, 3]);
    assert_eq!((0..4).map(|i| share(2, 4, i)).sum::<u64>(), 2);
    assert_eq!(counts(Limit::Messages(1000), 100), (Some(10), Some(1000)));
    assert_eq!(counts(Limit::Messages(1001), 100), (Some(11), Some(1100)), "both sides send as many");
    assert_eq!(counts(Limit::Seconds(Duration::from_secs(1)), 100), (None, None));
    assert_eq!(value(30).len(), 30);
}

fn tally(ops: u64, messages: u64, seconds: f64, latencies_us: &[u64]) -> Tally {
    let mut tally = Tally::new().unwrap();
    (tally.ops, tally.messages, tally.bytes, tally.seconds, tally.complete) =
        (ops, messages, messages * 100, seconds, true);
    latencies_us.iter().for_each(|&us| tally.latency_us.record(us).unwrap());
    tally
}

fn report() -> Report {
    let row = |width, us: &[u64]| LatencyRow { width, tally: tally(us.len() as u64, us.len() as u64, 1.0, us) };
    Report {
        txn_topic: "b-txn".into(),
        plain_topic: "b-plain".into(),
        partitions: 8,
        producers: 1,
        message_bytes: 100,
        transactions: 4,
        latency: vec![
            row(None, &[1000, 2000, 3000, 4000]),
            row(Some(1), &[1200, 1400, 1600, 2000]),
            row(Some(4), &[1800; 4]),
            row(Some(8), &[1900; 4]),
        ],
        throughput: Some(Throughput {
            records_per_txn: 100,
            limit: Limit::Seconds(Duration::from_secs(10)),
            txn: tally(50, 5000, 10.0, &[]),
            plain: tally(20_000, 20_000, 10.0, &[]),
        }),
        reads: vec![
            ReadRow { isolation: IsolationLevel::ReadCommitted, tally: tally(5, 9000, 2.0, &[]) },
            ReadRow { isolation: IsolationLevel::ReadUncommitted, tally: tally(5, 9000, 1.5, &[]) },
        ],
    }
}

#[test]
fn the_plain_report_sets_each_side_by_the_other() {
    let plain = report().plain();
    assert!(plain.starts_with("bench txn: topics b-txn and b-plain, 8 partitions, 1 producer(s), 100-byte values\n"));
    let line = |prefix: &str| plain.lines().find(|l| l.trim_start().starts_with(prefix)).unwrap().to_owned();
    let numbers = |l: String| l.split_whitespace().rev().take(6).map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(numbers(line("plain send, 1 message")), ["4.00", "4.00", "4.00", "2.00", "0", "4"]);
    assert_eq!(numbers(line("transaction, 1 partition ")), ["2.00", "2.00", "2.00", "1.40", "0", "4"]);
    assert!(line("transaction, 8 partitions").contains(" 1.90 "));
    assert!(plain.contains("throughput (10s each, transactions of 100 messages)\n"), "{plain}");
    assert!(line("transactional ").ends_with("5000 messages (50 transactions) in 10.00 s: 500 msgs/s, 0 errors"));
    assert!(line("plain      ").ends_with("20000 messages in 10.00 s: 2000 msgs/s, 0 errors"));
    assert!(plain.contains("transactional / plain: 0.25\n"), "{plain}");
    assert!(line("read_committed ").contains("9000 messages in 2.00 s: 4500 msgs/s, 0.45 MB/s"));
    assert!(plain.ends_with("read_committed / read_uncommitted: 0.75\n"), "{plain}");
    assert!(!plain.contains("incomplete"));
}

#[test]
fn the_json_report_has_every_figure() {
    let json = report().json();
    assert_eq!(json["latency"]["count"], 4);
    assert_eq!(json["latency"]["plain"]["latency_us"]["p50"], 2000);
    let widths: Vec<u64> =
        json["latency"]["transactions"].as_array().unwrap().iter().map(|t| t["partitions"].as_u64().unwrap()).collect();
    assert_eq!(widths, [1, 4, 8]);
    assert_eq!(json["latency"]["transactions"][0]["latency_us"]["p99"], 2000);
    let t = &json["throughput"];
    assert_eq!((t["limit_seconds"].as_f64(), t["limit_messages"].is_null()), (Some(10.0), true));
    assert_eq!(
        (t["transactional"]["msgs_per_sec"].as_f64(), t["transactional"]["transactions"].as_u64()),
        (Some(500.0), Some(50))
    );
    assert_eq!((t["plain"]["msgs_per_sec"].as_f64(), t["ratio"].as_f64()), (Some(2000.0), Some(0.25)));
    let r = &json["read"];
    assert_eq!(r["topic"], "b-txn");
    assert_eq!(r["isolation"]["read_committed"]["msgs_per_sec"].as_f64(), Some(4500.0));
    assert_eq!(r["isolation"]["read_uncommitted"]["msgs_per_sec"].as_f64(), Some(6000.0));
    assert_eq!(r["ratio"].as_f64(), Some(0.75));
}

#[test]
fn failures_and_early_stops_are_reported() {
    let mut report = report();
    assert!(report.failures().is_empty());
    report.latency[2].tally.fail("fenced");
    report.latency[2].tally.complete = false;
    let throughput = report.throughput.as_mut().unwrap();
    throughput.plain.fail("STORAGE_FULL");
    throughput.plain.fail("STORAGE_FULL again");
    assert_eq!(
        report.failures(),
        [
            "latency, transaction, 4 partitions: 1 failed; the first: fenced",
            "throughput, plain: 2 failed; the first: STORAGE_FULL"
        ]
    );
    assert!(report.plain().contains("(incomplete: stopped by a failure, its time limit or Ctrl-C)"));
    assert_eq!(report.json()["latency"]["transactions"][1]["complete"], false);
    (report.throughput, report.reads) = (None, Vec::new());
    let json = report.json();
    assert!(json["read"]["ratio"].is_null() && json["throughput"].is_null(), "not measured after Ctrl-C");
    let plain = report.plain();
    assert!(
        plain.ends_with("throughput: not measured (interrupted)\n\nreads: not measured (interrupted)\n"),
        "{plain}"
    );
}
