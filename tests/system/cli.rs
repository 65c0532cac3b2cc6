//! The `sluice` CLI against three broker processes: create a topic, produce lines from
//! standard input, consume them as JSON, describe the topic and show the cluster's status.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use sluice_system_tests::cli::sluice;
use sluice_system_tests::{Cluster, within};

const TOPIC: &str = "cli-orders";
const PARTITIONS: u64 = 3;
const LINES: usize = 500;

/// Line `i` of the produced input: ~200 bytes, so that the 500 lines (~100 KB) span several of
/// the producer's 16 KiB sticky-partition turns and reach every partition.
fn line(i: usize) -> String {
    format!("line {i} {}", "x".repeat(190))
}
const COMMAND_LIMIT: Duration = Duration::from_secs(60);
const LIMIT: Duration = Duration::from_secs(120);

fn json_lines(text: &str) -> Vec<Value> {
    let parse = |line: &str| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
    text.lines().map(parse).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_produces_consumes_describes_and_reports_status_as_json() {
    let cluster = Cluster::start(3).await;
    within(LIMIT, "the CLI round trip", async {
        let bootstrap = cluster.bootstrap();
        let run = |args: &'static [&'static str], stdin: Option<Vec<u8>>| {
            let bootstrap = bootstrap.clone();
            async move { sluice(&bootstrap, args, stdin, COMMAND_LIMIT).await }
        };

        let created = run(&["topic", "create", TOPIC, "--partitions", "3", "--replication-factor", "3"], None).await;
        created.assert_success("topic create");
        assert!(created.stderr.contains("created topic cli-orders: 3 partitions"), "{}", created.stderr);

        let input: String = (0..LINES).map(|i| line(i) + "\n").collect();
        let produced = run(&["produce", TOPIC], Some(input.into_bytes())).await;
        produced.assert_success("produce from stdin");
        let expected = format!("{LINES} of {LINES} messages acknowledged by {TOPIC}");
        assert!(produced.stderr.contains(&expected), "{}", produced.stderr);

        let consumed = run(&["consume", TOPIC, "--output", "json"], None).await;
        consumed.assert_success("consume --output json");
        let per_partition = check_consumed(&json_lines(&consumed.stdout));

        let described = run(&["topic", "describe", TOPIC, "--output", "json"], None).await;
        described.assert_success("topic describe --output json");
        check_description(&json_lines(&described.stdout), &per_partition);

        let status = run(&["cluster", "status", "--output", "json"], None).await;
        status.assert_success("cluster status --output json");
        check_status(&json_lines(&status.stdout), &cluster);
    })
    .await;
}

/// Every line came back once with its partition and a dense offset; returns the count per
/// partition.
fn check_consumed(records: &[Value]) -> BTreeMap<u64, u64> {
    assert_eq!(records.len(), LINES, "one JSON object per message");
    let mut next_offset: BTreeMap<u64, u64> = BTreeMap::new();
    let mut values = BTreeSet::new();
    for r in records {
        let partition = r["partition"].as_u64().unwrap_or_else(|| panic!("no partition in {r}"));
        assert!(partition < PARTITIONS, "{r}");
        let next = next_offset.entry(partition).or_default();
        assert_eq!(r["offset"].as_u64(), Some(*next), "partition {partition}: dense offsets in order: {r}");
        *next += 1;
        let value = r["value"].as_str().unwrap_or_else(|| panic!("no value in {r}"));
        assert!(values.insert(value.to_owned()), "{value} consumed twice");
        assert!(r["key"].is_null() && r["tag"].is_null(), "no key or tag was given: {r}");
        assert!(r["timestamp"].as_i64().is_some_and(|t| t > 1_600_000_000_000), "a send time: {r}");
    }
    let sent: BTreeSet<String> = (0..LINES).map(line).collect();
    assert_eq!(values, sent, "every line, and nothing else");
    assert_eq!(next_offset.len() as u64, PARTITIONS, "keyless lines spread over every partition");
    next_offset
}

fn check_description(lines: &[Value], per_partition: &BTreeMap<u64, u64>) {
    let [d] = lines else { panic!("one JSON document: {lines:?}") };
    assert_eq!(d["name"], TOPIC);
    assert_eq!((d["config"]["partitions"].as_u64(), d["config"]["replication_factor"].as_u64()), (Some(3), Some(3)));
    let partitions = d["partitions"].as_array().expect("a partitions array");
    assert_eq!(partitions.len() as u64, PARTITIONS);
    for (i, p) in (0u64..).zip(partitions) {
        assert_eq!(p["partition"].as_u64(), Some(i), "{p}");
        let mut replicas: Vec<u64> =
            p["replicas"].as_array().expect("replicas").iter().filter_map(Value::as_u64).collect();
        let leader = p["leader"].as_u64().unwrap_or_else(|| panic!("partition {i} has no leader: {p}"));
        assert!(replicas.contains(&leader), "the leader is a replica: {p}");
        replicas.sort_unstable();
        assert_eq!(replicas, [1, 2, 3], "{p}");
        assert!(p["leader_term"].as_u64().is_some_and(|t| t > 0), "{p}");
        assert_eq!(p["log_start_offset"].as_u64(), Some(0), "{p}");
        assert_eq!(
            p["log_end_offset"].as_u64(),
            Some(per_partition[&i]),
            "the end offset counts what was consumed: {p}"
        );
    }
}

fn check_status(lines: &[Value], cluster: &Cluster) {
    let [s] = lines else { panic!("one JSON document: {lines:?}") };
    let brokers = s["brokers"].as_array().expect("a brokers array");
    let controller = s["controller_id"].as_u64().unwrap_or_else(|| panic!("a controller: {s}"));
    assert_eq!(brokers.len(), 3, "{s}");
    for (b, node) in brokers.iter().zip(cluster.node_ids()) {
        assert_eq!(b["node_id"].as_u64(), Some(node), "{s}");
        assert_eq!(b["address"].as_str(), Some(cluster.client_addr(node).as_str()), "{s}");
        assert_eq!(b["live"], true, "{s}");
        assert_eq!(b["controller"], node == controller, "{s}");
    }
    let leaders: u64 = brokers.iter().filter_map(|b| b["partition_leaders"].as_u64()).sum();
    assert_eq!(leaders, PARTITIONS, "each partition has one leader: {s}");
    assert_eq!((s["topics"].as_u64(), s["leaderless_partitions"].as_u64()), (Some(1), Some(0)), "{s}");
    assert!(s["metadata_version"].as_u64().is_some_and(|v| v > 0), "{s}");
}
