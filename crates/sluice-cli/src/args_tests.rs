//! The command line parses as documented, and refuses bad input with a reason.

use clap::{CommandFactory, Parser};

use super::*;

fn parse(args: &[&str]) -> Cli {
    let mut full = vec!["sluice"];
    full.extend_from_slice(args);
    Cli::try_parse_from(full).unwrap_or_else(|e| panic!("{args:?} should parse: {e}"))
}

fn refuse(args: &[&str]) -> String {
    let mut full = vec!["sluice"];
    full.extend_from_slice(args);
    Cli::try_parse_from(full).expect_err("should be refused").to_string()
}

#[test]
fn the_command_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn bootstrap_defaults_to_the_local_cluster_and_is_global() {
    if std::env::var_os("SLUICE_BOOTSTRAP").is_none() {
        assert_eq!(parse(&["topic", "list"]).bootstrap, DEFAULT_BOOTSTRAP);
    }
    assert_eq!(parse(&["topic", "list", "--bootstrap", "h:1"]).bootstrap, "h:1");
    assert_eq!(parse(&["--bootstrap", "h:2", "cluster", "status"]).bootstrap, "h:2");
}

#[test]
fn topic_create_needs_partitions_and_replication_factor() {
    let cli = parse(&[
        "topic",
        "create",
        "orders",
        "--partitions",
        "6",
        "--replication-factor",
        "3",
        "--retention-ms",
        "60000",
        "--max-message-bytes",
        "1024",
        "--flush-interval-ms",
        "200",
    ]);
    let Command::Topic(TopicCommand::Create(c)) = cli.command else { panic!("{:?}", cli.command) };
    assert_eq!((c.name.as_str(), c.partitions, c.replication_factor), ("orders", 6, 3));
    assert_eq!((c.retention_ms, c.max_message_bytes, c.flush_interval_ms), (Some(60000), Some(1024), Some(200)));
    let plain = parse(&["topic", "create", "o", "--partitions", "1", "--replication-factor", "1"]);
    let Command::Topic(TopicCommand::Create(c)) = plain.command else { panic!("{:?}", plain.command) };
    assert_eq!(c.flush_interval_ms, None, "fsync before ack unless asked");
    let zero = ["topic", "create", "o", "--partitions", "1", "--replication-factor", "1", "--flush-interval-ms", "0"];
    assert!(refuse(&zero).contains("--flush-interval-ms"), "{}", refuse(&zero));
    let hour =
        ["topic", "create", "o", "--partitions", "1", "--replication-factor", "1", "--flush-interval-ms", "3600001"];
    assert!(refuse(&hour).contains("3600001"), "{}", refuse(&hour));
    assert!(refuse(&["topic", "create", "orders", "--partitions", "3"]).contains("--replication-factor"));
    assert!(refuse(&["topic", "create", "o", "--partitions", "0", "--replication-factor", "1"]).contains("0"));
}

const ZSTD: sluice_client::TopicCompression = sluice_client::TopicCompression::Codec(sluice_client::Compression::Zstd);

#[test]
fn topic_create_takes_retention_bytes_and_a_compression() {
    let base = ["topic", "create", "o", "--partitions", "1", "--replication-factor", "1"];
    let with = |extra: &[&'static str]| [&base[..], extra].concat();
    let cli = parse(&with(&["--retention-bytes", "1048576", "--compression", "zstd"]));
    let Command::Topic(TopicCommand::Create(c)) = cli.command else { panic!("{:?}", cli.command) };
    assert_eq!((c.retention_bytes, c.compression), (Some(1_048_576), Some(ZSTD)));
    let Command::Topic(TopicCommand::Create(c)) = parse(&with(&["--compression", "producer"])).command else {
        panic!()
    };
    assert_eq!(c.compression, Some(sluice_client::TopicCompression::Producer));
    let Command::Topic(TopicCommand::Create(c)) = parse(&base).command else { panic!() };
    assert_eq!((c.retention_bytes, c.compression), (None, None), "unset: no size limit, batches kept as sent");
    let brotli = refuse(&with(&["--compression", "brotli"]));
    assert!(brotli.contains("producer, none, gzip, snappy, lz4 or zstd"), "{brotli}");
    assert!(refuse(&with(&["--retention-bytes", "0"])).contains("--retention-bytes"));
    assert!(refuse(&with(&["--retention-ms", "0"])).contains("--retention-ms"));
}

#[test]
fn topic_alter_takes_at_least_one_change_and_a_value_or_a_clear_of_each() {
    let cli = parse(&[
        "topic",
        "alter",
        "orders",
        "--retention-ms",
        "3600000",
        "--clear-retention-bytes",
        "--max-message-bytes",
        "2048",
        "--compression",
        "zstd",
    ]);
    let Command::Topic(TopicCommand::Alter(a)) = cli.command else { panic!("{:?}", cli.command) };
    let expected = sluice_client::TopicConfigChanges::new()
        .retention_ms(3_600_000)
        .clear_retention_bytes()
        .max_message_bytes(2048)
        .compression(ZSTD);
    assert_eq!((a.name.as_str(), a.changes()), ("orders", expected));
    let Command::Topic(TopicCommand::Alter(a)) = parse(&["topic", "alter", "o", "--clear-retention-ms"]).command else {
        panic!()
    };
    assert_eq!(a.changes(), sluice_client::TopicConfigChanges::new().clear_retention_ms());

    let none = refuse(&["topic", "alter", "orders"]);
    assert!(none.contains("required") && none.contains("--retention-ms"), "{none}");
    let both = refuse(&["topic", "alter", "o", "--retention-ms", "5", "--clear-retention-ms"]);
    assert!(both.contains("cannot be used with"), "{both}");
    let both = refuse(&["topic", "alter", "o", "--clear-retention-bytes", "--retention-bytes", "5"]);
    assert!(both.contains("cannot be used with"), "{both}");
    assert!(refuse(&["topic", "alter", "o", "--max-message-bytes", "0"]).contains("--max-message-bytes"));
    assert!(refuse(&["topic", "alter", "o", "--max-message-bytes", "67108865"]).contains("67108865"));
    assert!(refuse(&["topic", "alter", "o", "--compression", "rar"]).contains("\"rar\""));
    let fixed = refuse(&["topic", "alter", "o", "--partitions", "6"]);
    assert!(fixed.contains("--partitions"), "not alterable, so not a flag: {fixed}");
}

#[test]
fn read_commands_take_output_json() {
    let cli = parse(&["topic", "describe", "orders", "--output", "json"]);
    let Command::Topic(TopicCommand::Describe { name, output }) = cli.command else { panic!() };
    assert_eq!((name.as_str(), output.output), ("orders", Output::Json));
    let Command::Topic(TopicCommand::List(o)) = parse(&["topic", "list"]).command else { panic!() };
    assert_eq!(o.output, Output::Plain);
    let Command::Cluster(ClusterCommand::Status(o)) = parse(&["cluster", "status", "--output", "json"]).command else {
        panic!()
    };
    assert_eq!(o.output, Output::Json);
    assert!(refuse(&["topic", "list", "--output", "yaml"]).contains("yaml"));
    assert!(refuse(&["topic", "delete", "orders", "--output", "json"]).contains("--output"), "writes have no output");
}

#[test]
fn produce_takes_repeated_properties_and_values() {
    let cli = parse(&[
        "produce",
        "orders",
        "--key",
        "k",
        "--tag",
        "t",
        "--partition",
        "2",
        "--property",
        "a=1",
        "--property",
        "b=x=y",
        "v1",
        "v2",
    ]);
    let Command::Produce(p) = cli.command else { panic!() };
    assert_eq!((p.key.as_deref(), p.tag.as_deref(), p.partition), (Some("k"), Some("t"), Some(2)));
    assert_eq!(p.properties, [("a".to_owned(), "1".to_owned()), ("b".to_owned(), "x=y".to_owned())]);
    assert_eq!(p.values, ["v1", "v2"]);
    let Command::Produce(p) = parse(&["produce", "orders"]).command else { panic!() };
    assert!(p.values.is_empty(), "no values: read standard input");
    assert!(refuse(&["produce", "orders", "--property", "novalue"]).contains("not name=value"));
}

#[test]
fn consume_defaults_to_everything_from_the_earliest() {
    let Command::Consume(c) = parse(&["consume", "orders"]).command else { panic!() };
    assert_eq!(
        (c.from, c.partition, c.max, c.follow, c.output.output),
        (SeekTo::Earliest, None, None, false, Output::Plain)
    );
    let cli = parse(&[
        "consume",
        "orders",
        "--partition",
        "1",
        "--from",
        "42",
        "--max",
        "10",
        "--follow",
        "--output",
        "json",
    ]);
    let Command::Consume(c) = cli.command else { panic!() };
    assert_eq!(
        (c.from, c.partition, c.max, c.follow, c.output.output),
        (SeekTo::Offset(42), Some(1), Some(10), true, Output::Json)
    );
    assert!(refuse(&["consume", "orders", "--from", "yesterday"]).contains("RFC 3339"));
    assert_eq!(c.group, None);
}

#[test]
fn consume_takes_a_group_but_not_with_a_partition() {
    let cli = parse(&["consume", "orders", "--group", "billing", "--follow", "--from", "latest"]);
    let Command::Consume(c) = cli.command else { panic!() };
    assert_eq!((c.group.as_deref(), c.follow, c.from), (Some("billing"), true, SeekTo::Latest));
    let both = refuse(&["consume", "orders", "--group", "billing", "--partition", "1"]);
    assert!(both.contains("--partition") && both.contains("--group"), "{both}");
}

#[test]
fn group_commands_list_describe_and_reset() {
    let Command::Group(GroupCommand::List(o)) = parse(&["group", "list", "--output", "json"]).command else { panic!() };
    assert_eq!(o.output, Output::Json);
    let Command::Group(GroupCommand::Describe { group, output }) = parse(&["group", "describe", "billing"]).command
    else {
        panic!()
    };
    assert_eq!((group.as_str(), output.output), ("billing", Output::Plain));
    for (to, expected) in [
        ("earliest", SeekTo::Earliest),
        ("latest", SeekTo::Latest),
        ("17", SeekTo::Offset(17)),
        ("1970-01-01T00:00:02Z", SeekTo::Timestamp(2000)),
    ] {
        let cli = parse(&["group", "reset", "billing", "--topic", "orders", "--to", to]);
        let Command::Group(GroupCommand::Reset(r)) = cli.command else { panic!() };
        assert_eq!((r.group.as_str(), r.topic.as_str(), r.to), ("billing", "orders", expected));
    }
    assert!(refuse(&["group", "reset", "billing", "--topic", "orders"]).contains("--to"));
    assert!(refuse(&["group", "reset", "billing", "--to", "earliest"]).contains("--topic"));
    assert!(refuse(&["group", "reset", "billing", "--topic", "o", "--to", "soon"]).contains("RFC 3339"));
    assert!(refuse(&["group", "reset", "g", "--topic", "o", "--to", "0", "--output", "json"]).contains("--output"));
}

#[test]
fn from_accepts_names_offsets_and_rfc3339_times() {
    assert_eq!(parse_from("earliest"), Ok(SeekTo::Earliest));
    assert_eq!(parse_from("latest"), Ok(SeekTo::Latest));
    assert_eq!(parse_from("0"), Ok(SeekTo::Offset(0)));
    assert_eq!(parse_from("18446744073709551615"), Ok(SeekTo::Offset(u64::MAX)));
    assert_eq!(parse_from("1970-01-01T00:00:01Z"), Ok(SeekTo::Timestamp(1000)));
    assert_eq!(parse_from("2024-05-01T12:00:00.250Z"), Ok(SeekTo::Timestamp(1_714_564_800_250)));
    assert_eq!(parse_from("2024-05-01T14:00:00+02:00"), Ok(SeekTo::Timestamp(1_714_564_800_000)));
    for bad in ["", "-1", "Earliest", "2024-05-01", "2024-05-01 12:00:00", "12:00"] {
        let e = parse_from(bad).expect_err(bad);
        assert!(e.contains("RFC 3339"), "{bad}: {e}");
    }
}

#[test]
fn durations_take_units() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert!(parse_duration("0s").is_err());
    assert!(parse_duration("5d").unwrap_err().contains("use ms, s, m or h"));
    assert!(parse_duration("fast").is_err());
}

#[test]
fn bench_takes_size_count_duration_and_batching() {
    let cli = parse(&[
        "bench",
        "produce",
        "--message-bytes",
        "1000",
        "--count",
        "5000",
        "--producers",
        "4",
        "--batch-bytes",
        "65536",
        "--linger-ms",
        "2",
        "--max-in-flight",
        "256",
        "--output",
        "json",
    ]);
    let Command::Bench(BenchCommand::Produce(b)) = cli.command else { panic!() };
    assert_eq!(
        (b.message_bytes, b.run.count, b.producers, b.batch_bytes, b.linger_ms),
        (1000, Some(5000), 4, 65536, 2)
    );
    assert_eq!((b.run.topic.as_str(), b.run.output.output), ("sluice-bench", Output::Json));
    assert_eq!(b.max_in_flight, Some(256));
    let Command::Bench(BenchCommand::Consume(b)) = parse(&["bench", "consume", "--duration", "10s"]).command else {
        panic!()
    };
    assert_eq!((b.run.duration, b.from), (Some(Duration::from_secs(10)), SeekTo::Earliest));
    assert!(refuse(&["bench", "produce", "--producers", "0"]).contains("0"));
    assert!(refuse(&["bench", "produce", "--max-in-flight", "0"]).contains("0"));
    let Command::Bench(BenchCommand::Produce(b)) = parse(&["bench", "produce"]).command else { panic!() };
    assert_eq!(b.max_in_flight, None, "unbounded unless asked");
}

#[test]
fn bench_commit_takes_groups_count_or_duration() {
    let Command::Bench(BenchCommand::Retry(r)) = parse(&["bench", "retry", "--rate", "500"]).command else { panic!() };
    assert_eq!((r.messages, r.rate, r.duration, r.partitions), (20_000, 500, Duration::from_secs(10), 6));
    assert!(refuse(&["bench", "retry", "--messages", "3"]).contains("--messages"));
    let Command::Bench(BenchCommand::Commit(b)) = parse(&["bench", "commit"]).command else { panic!() };
    assert_eq!((b.topic.as_str(), b.groups, b.count, b.duration), ("sluice-bench-groups", 8, None, None));
    assert_eq!((b.partitions, b.replication_factor, b.output.output), (12, 3, Output::Plain));
    let cli = parse(&["bench", "commit", "--groups", "2", "--count", "500", "--topic", "t", "--output", "json"]);
    let Command::Bench(BenchCommand::Commit(b)) = cli.command else { panic!() };
    assert_eq!((b.topic.as_str(), b.groups, b.count, b.output.output), ("t", 2, Some(500), Output::Json));
    let Command::Bench(BenchCommand::Commit(b)) = parse(&["bench", "commit", "--duration", "3s"]).command else {
        panic!()
    };
    assert_eq!(b.duration, Some(Duration::from_secs(3)));
    assert!(refuse(&["bench", "commit", "--groups", "0"]).contains("0"));
    assert!(refuse(&["bench", "commit", "--groups", "257"]).contains("257"));
    assert!(refuse(&["bench", "commit", "--count", "0"]).contains("0"));
    assert!(refuse(&["bench", "commit", "--duration", "0s"]).contains("greater than zero"));
}

#[test]
fn bench_rebalance_takes_trials_scenarios_and_a_session_timeout() {
    let Command::Bench(BenchCommand::Rebalance(b)) = parse(&["bench", "rebalance"]).command else { panic!() };
    assert_eq!((b.trials, b.session_timeout, b.rate, b.partitions), (10, Duration::from_secs(10), 600, 12));
    let all = [RebalanceScenario::Join, RebalanceScenario::Crash, RebalanceScenario::Leave];
    assert_eq!((b.scenarios.as_slice(), b.topic.as_str()), (&all[..], "sluice-bench-rebalance"));
    let cli = parse(&[
        "bench",
        "rebalance",
        "--trials",
        "3",
        "--scenarios",
        "crash,leave",
        "--session-timeout",
        "3s",
        "--rate",
        "120",
        "--output",
        "json",
    ]);
    let Command::Bench(BenchCommand::Rebalance(b)) = cli.command else { panic!() };
    assert_eq!((b.trials, b.session_timeout, b.rate), (3, Duration::from_secs(3), 120));
    assert_eq!((b.scenarios.as_slice(), b.output.output), (&all[1..], Output::Json));
    assert!(refuse(&["bench", "rebalance", "--trials", "0"]).contains("0"));
    assert!(refuse(&["bench", "rebalance", "--scenarios", "split"]).contains("split"));
    assert!(refuse(&["bench", "rebalance", "--partitions", "2"]).contains("2"));
    assert!(refuse(&["bench", "rebalance", "--session-timeout", "3x"]).contains("unit"));
    assert!(refuse(&["bench", "rebalance", "--rate", "0"]).contains("0"));
}

#[test]
fn produce_sends_in_one_transaction_on_request() {
    let Command::Produce(p) = parse(&["produce", "orders", "a", "b"]).command else { panic!() };
    assert!(!p.txn.transaction && !p.txn.abort && p.txn.transactional_id.is_none(), "no transaction unless asked");
    let cli = parse(&["produce", "orders", "--transaction", "--transactional-id", "loader-1", "--abort", "a"]);
    let Command::Produce(p) = cli.command else { panic!() };
    assert!(p.txn.transaction && p.txn.abort);
    assert_eq!((p.txn.transactional_id.as_deref(), p.values.as_slice()), (Some("loader-1"), &["a".to_owned()][..]));
    assert_eq!(p.txn.transaction_timeout, Duration::from_secs(60));
    let cli = parse(&["produce", "orders", "--transaction", "--transaction-timeout", "5m", "--output", "json"]);
    let Command::Produce(p) = cli.command else { panic!() };
    assert_eq!((p.txn.transaction_timeout, p.output.output), (Duration::from_secs(300), Output::Json));
}

#[test]
fn produce_refuses_transaction_flags_that_cannot_work() {
    for alone in [&["--abort"][..], &["--transactional-id", "x"], &["--transaction-timeout", "5s"]] {
        let e = refuse(&[&["produce", "orders"], alone].concat());
        assert!(e.contains("--transaction"), "{alone:?}: {e}");
    }
    let e = refuse(&["produce", "orders", "--transaction", "--delay", "5s"]);
    assert!(e.contains("--transaction") && e.contains("--delay"), "{e}");
    let e = refuse(&["produce", "orders", "--transaction", "--deliver-at", "2030-01-01T00:00:00Z"]);
    assert!(e.contains("--transaction") && e.contains("--deliver-at"), "{e}");
}

#[test]
fn consume_reads_committed_unless_told_otherwise() {
    let Command::Consume(c) = parse(&["consume", "orders"]).command else { panic!() };
    assert_eq!(c.isolation.isolation, IsolationLevel::ReadCommitted);
    assert_eq!(c.isolation.isolation.sdk(), sluice_client::Isolation::ReadCommitted);
    for (flag, level) in [
        ("read_uncommitted", IsolationLevel::ReadUncommitted),
        ("read-uncommitted", IsolationLevel::ReadUncommitted),
        ("read_committed", IsolationLevel::ReadCommitted),
    ] {
        let Command::Consume(c) = parse(&["consume", "orders", "--isolation", flag]).command else { panic!() };
        assert_eq!(c.isolation.isolation, level, "{flag}");
    }
    let cli = parse(&["consume", "orders", "--group", "g", "--isolation", "read_uncommitted"]);
    let Command::Consume(c) = cli.command else { panic!() };
    assert_eq!(
        (c.group.as_deref(), c.isolation.isolation.sdk()),
        (Some("g"), sluice_client::Isolation::ReadUncommitted)
    );
    let e = refuse(&["consume", "orders", "--isolation", "serializable"]);
    assert!(e.contains("serializable") && e.contains("read_committed"), "{e}");
}

#[test]
fn txn_commands_list_describe_commit_and_abort() {
    let Command::Txn(TxnCommand::List { undecided, open, output }) = parse(&["txn", "list"]).command else { panic!() };
    assert_eq!((undecided, open, output.output), (false, false, Output::Plain));
    let cli = parse(&["txn", "list", "--undecided", "--open", "--output", "json"]);
    let Command::Txn(TxnCommand::List { undecided, open, output }) = cli.command else { panic!() };
    assert_eq!((undecided, open, output.output), (true, true, Output::Json));
    let cli = parse(&["txn", "describe", "loader-1", "--output", "json"]);
    let Command::Txn(TxnCommand::Describe { id, output }) = cli.command else { panic!() };
    assert_eq!((id.as_str(), output.output), ("loader-1", Output::Json));
    let Command::Txn(TxnCommand::Commit { id }) = parse(&["txn", "commit", "a"]).command else { panic!() };
    assert_eq!(id, "a");
    let Command::Txn(TxnCommand::Abort { id }) = parse(&["txn", "abort", "b"]).command else { panic!() };
    assert_eq!(id, "b");
    assert!(refuse(&["txn", "describe"]).contains("<ID>"));
    assert!(refuse(&["txn", "commit", "a", "--output", "json"]).contains("--output"), "writes have no output");
    assert!(refuse(&["txn", "end", "a"]).contains("end"));
}

#[test]
fn produce_and_bench_take_an_acknowledgement_level() {
    use sluice_client::Acks;
    let Command::Produce(p) = parse(&["produce", "logs", "a"]).command else { panic!() };
    assert_eq!((p.acks, p.oneway), (Acks::All, false), "acks all unless asked");
    let Command::Produce(p) = parse(&["produce", "logs", "--acks", "leader", "a"]).command else { panic!() };
    assert_eq!(p.acks, Acks::Leader);
    let Command::Produce(p) = parse(&["produce", "logs", "--oneway", "a"]).command else { panic!() };
    assert!(p.oneway);
    assert!(refuse(&["produce", "logs", "--acks", "some"]).contains("all, leader or none"));
    assert!(refuse(&["produce", "logs", "--acks", "leader", "--oneway"]).contains("--oneway"));
    assert!(refuse(&["produce", "logs", "--oneway", "--transaction"]).contains("--transaction"));
    let Command::Bench(b) = parse(&["bench", "produce", "--acks", "none"]).command else { panic!() };
    let BenchCommand::Produce(b) = b else { panic!() };
    assert_eq!(b.acks, Acks::None);
}

#[test]
fn consume_exec_takes_the_groups_retry_policy_and_needs_a_group() {
    let cli = parse(&[
        "consume",
        "orders",
        "--group",
        "g",
        "--exec",
        "./handle.sh",
        "--concurrency",
        "4",
        "--max-attempts",
        "3",
        "--retry-backoff",
        "200ms",
        "--retry-max-backoff",
        "10m",
        "--key-ordered",
    ]);
    let Command::Consume(args) = cli.command else { panic!("a consume") };
    assert_eq!((args.exec.exec.as_deref(), args.exec.concurrency), (Some("./handle.sh"), 4));
    let policy = args.exec.policy.policy().expect("a valid policy");
    assert_eq!(policy.retry.max_attempts, 3);
    assert!(policy.key_ordered);
    let sluice_client::Backoff::Exponential { initial_ms, multiplier, max_ms, .. } = policy.retry.backoff else {
        panic!("exponential")
    };
    assert_eq!((initial_ms, multiplier, max_ms), (200, 2.0, 600_000));
    assert!(refuse(&["consume", "orders", "--exec", "cat"]).contains("--group"));
    assert!(
        refuse(&["consume", "orders", "--group", "g", "--exec", "x", "--concurrency", "0"]).contains("concurrency")
    );
    assert!(refuse(&["consume", "orders", "--group", "g", "--retry-backoff", "soon"]).contains("duration"));
}

#[test]
fn set_retry_checks_the_policy_and_knows_the_rocketmq_ladder() {
    let Command::Group(GroupCommand::SetRetry(a)) =
        parse(&["group", "set-retry", "g", "--ladder", "rocketmq", "--max-attempts", "5"]).command
    else {
        panic!("a set-retry")
    };
    let policy = a.policy.policy().expect("valid");
    assert!(matches!(policy.retry.backoff, sluice_client::Backoff::Ladder(_)));
    assert_eq!(policy.retry.max_attempts, 5);
    assert!(refuse(&["group", "set-retry", "g", "--ladder", "kafka"]).contains("rocketmq"));
    assert!(refuse(&["group", "set-retry", "g", "--max-attempts", "0"]).contains("max-attempts"));
    let Command::Group(GroupCommand::SetRetry(a)) =
        parse(&["group", "set-retry", "g", "--retry-backoff", "1m", "--retry-max-backoff", "1s"]).command
    else {
        panic!("a set-retry")
    };
    assert!(a.policy.policy().unwrap_err().contains("shorter"));
    let Command::Group(GroupCommand::SetRetry(a)) =
        parse(&["group", "set-retry", "g", "--retry-multiplier", "1000"]).command
    else {
        panic!("a set-retry")
    };
    assert!(a.policy.policy().unwrap_err().contains("multiplier"), "{:?}", a.policy.policy());
}

#[test]
fn dlq_commands_name_the_group() {
    let Command::Dlq(DlqCommand::List(a)) =
        parse(&["dlq", "list", "--group", "g", "--topic", "orders", "--since", "1h", "--output", "json"]).command
    else {
        panic!("a dlq list")
    };
    assert_eq!((a.group.as_str(), a.topic.as_deref(), a.since), ("g", Some("orders"), Some(Duration::from_secs(3600))));
    assert!(matches!(
        parse(&["dlq", "redrive", "--group", "g", "--max", "10"]).command,
        Command::Dlq(DlqCommand::Redrive { max: Some(10), .. })
    ));
    assert!(refuse(&["dlq", "redrive"]).contains("--group"));
    let to = parse(&["dlq", "redrive", "--group", "g", "--to", "orders", "--rate", "1000/s"]).command;
    assert!(matches!(
        to,
        Command::Dlq(DlqCommand::Redrive { to: Some(ref t), rate: Some(1000), max: None, .. }) if t == "orders"
    ));
    assert!(refuse(&["dlq", "redrive", "--group", "g", "--rate", "fast"]).contains("not a rate"));
    assert!(refuse(&["dlq", "redrive", "--group", "g", "--rate", "0/s"]).contains("not a rate"));
    assert!(refuse(&["dlq", "purge", "--group", "g", "--before", "yesterday"]).contains("RFC 3339"));
}
