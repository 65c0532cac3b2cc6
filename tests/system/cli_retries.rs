//! The CLI's retries against three broker processes (docs/RETRIES.md): `sluice consume --group
//! --exec` runs a shell command per message with the message in its input and environment,
//! nacks what the command fails (retried after the group's backoff, then dead-lettered);
//! `group describe` shows the policy; `dlq list` shows each exhausted message once with its
//! origin and attempts; `dlq redrive` delivers them again once, `dlq redrive --to` copies them
//! to a topic once, paced by `--rate`; `dlq purge` moves the purge cursor past them; bad input
//! is refused clearly.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use sluice_system_tests::cli::{Background, sluice};
use sluice_system_tests::groups::eventually;
use sluice_system_tests::{Cluster, within};

const TOPIC: &str = "cli-retries";
const GROUP: &str = "cli-worker";
const COMMAND_LIMIT: Duration = Duration::from_secs(60);
const LIMIT: Duration = Duration::from_secs(180);

/// A command appending `ATTEMPT PARTITION OFFSET KEY PROPERTY VALUE` per run to `log`, and
/// failing values that start with `bad`.
fn handler(log: &std::path::Path) -> String {
    let fields = "$SLUICE_ATTEMPT $SLUICE_PARTITION $SLUICE_OFFSET $SLUICE_KEY $SLUICE_PROP_origin $v";
    format!(r#"v=$(cat); echo "{fields}" >> '{}'; case "$v" in bad*) exit 3;; esac"#, log.display())
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

/// Each value's attempts, from the handler's log.
fn runs(log: &std::path::Path) -> BTreeMap<String, Vec<u32>> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut runs: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 6, "a run's line: {line:?}");
        assert_eq!((fields[3], fields[4]), ("k", "cli"), "key and property in the environment: {line:?}");
        runs.entry(fields[5].to_owned()).or_default().push(fields[0].parse().expect("an attempt"));
    }
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_exec_retries_failures_into_the_dlq_which_lists_and_redrives_once() {
    let cluster = Cluster::start(3).await;
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let log = scratch.path().join("runs.log");
    let bootstrap = cluster.bootstrap();
    let run = |args: Vec<String>| {
        let bootstrap = bootstrap.clone();
        async move { sluice(&bootstrap, &args.iter().map(String::as_str).collect::<Vec<_>>(), None, COMMAND_LIMIT).await }
    };
    let args = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
    within(LIMIT, "the CLI retry round trip", async {
        run(args(&format!("topic create {TOPIC} --partitions 2 --replication-factor 3")))
            .await
            .assert_success("create");
        let input: String =
            (0..20).map(|i| if i % 5 == 0 { format!("bad-{i}\n") } else { format!("ok-{i}\n") }).collect();
        let produce = args(&format!("produce {TOPIC} --key k --property origin=cli"));
        sluice(
            &bootstrap,
            &produce.iter().map(String::as_str).collect::<Vec<_>>(),
            Some(input.into_bytes()),
            COMMAND_LIMIT,
        )
        .await
        .assert_success("produce");

        run(args(&format!("consume {TOPIC} --group {GROUP} --exec true --max-attempts 0")))
            .await
            .assert_failure("--max-attempts 0", &["max-attempts"]);

        let handler = handler(&log);
        let exec = ["consume", TOPIC, "--group", GROUP, "--from", "earliest", "--exec", &handler, "--concurrency", "3"];
        // Waits of 1 s and 2 s: no dead letter forms again between the two redrives below.
        let policy = ["--max-attempts", "3", "--retry-backoff", "1s", "--retry-multiplier", "2"];
        let mut worker = Background::start(&bootstrap, &[&exec[..], &policy[..]].concat(), &scratch.path().join("out"));

        eventually(Duration::from_secs(90), "every bad value dead-lettered", || async {
            let listed = run(args(&format!("dlq list --group {GROUP} --output json"))).await;
            let letters: Vec<Value> = listed.stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
            if letters.len() >= 4 { Ok(letters) } else { Err(format!("{} dead letters", letters.len())) }
        })
        .await
        .iter()
        .for_each(|l| {
            assert_eq!((l["topic"].as_str(), l["attempts"].as_u64()), (Some(TOPIC), Some(3)), "{l}");
            assert!(l["value"].as_str().is_some_and(|v| v.starts_with("bad-")), "{l}");
        });
        let done = runs(&log);
        for (value, attempts) in &done {
            let expected: Vec<u32> = if value.starts_with("bad") { vec![1, 2, 3] } else { vec![1] };
            assert_eq!(attempts, &expected, "{value}'s attempts");
        }
        assert_eq!(done.len(), 20, "every value ran: {done:?}");

        let described = run(args(&format!("group describe {GROUP}"))).await;
        described.assert_success("group describe");
        assert!(described.stdout.contains("retry policy: 3 attempts, 1000ms ×2"), "{}", described.stdout);

        // Copied to a topic exactly once, paced: 4 at 2 a second take at least 1.5 s.
        run(args("topic create cli-copies --partitions 1 --replication-factor 3")).await.assert_success("create");
        let began = std::time::Instant::now();
        let copy = run(args(&format!("dlq redrive --group {GROUP} --to cli-copies --rate 2/s"))).await;
        assert!(copy.assert_success("redrive --to").stderr.contains("copied 4 dead letters"), "{}", copy.stderr);
        assert!(began.elapsed() >= Duration::from_millis(1_500), "not paced: {:?}", began.elapsed());
        let again = run(args(&format!("dlq redrive --group {GROUP} --to cli-copies"))).await;
        assert!(
            again.assert_success("redrive --to again").stderr.contains("copied 0 dead letters"),
            "{}",
            again.stderr
        );
        let copies = run(args("consume cli-copies --output json")).await;
        let copies: Vec<Value> = copies.assert_success("consume the copies").stdout.lines().map(json_of).collect();
        let mut values: Vec<&str> = copies.iter().filter_map(|c| c["value"].as_str()).collect();
        values.sort_unstable();
        values.dedup();
        assert_eq!((copies.len(), values.len()), (4, 4), "each dead letter copied once: {copies:?}");
        assert!(values.iter().all(|v| v.starts_with("bad")), "{values:?}");

        let first = run(args(&format!("dlq redrive --group {GROUP}"))).await;
        assert!(first.assert_success("redrive").stderr.contains("redrove 4 dead letters"), "{}", first.stderr);
        let again = run(args(&format!("dlq redrive --group {GROUP}"))).await;
        assert!(again.assert_success("redrive again").stderr.contains("redrove 0 dead letters"), "{}", again.stderr);
        eventually(Duration::from_secs(60), "the dead letters run again", || async {
            let again = runs(&log).values().filter(|a| a.len() > 3).count();
            if again >= 4 { Ok(()) } else { Err(format!("{again} redriven runs")) }
        })
        .await;
        worker.kill();
        let purged = run(args(&format!("dlq purge --group {GROUP}"))).await;
        assert!(purged.assert_success("purge").stderr.contains("are purged"), "{}", purged.stderr);
        let described = run(args(&format!("group describe {GROUP} --output json"))).await;
        let retries = &json_of(&described.assert_success("group describe --output json").stdout)["retries"];
        assert!(retries["purge_offset"].as_u64() >= Some(4), "every dead letter so far purged: {retries}");
        assert_eq!(retries["max_attempts"].as_u64(), Some(3), "{retries}");
        let redriven: Vec<Vec<u32>> = runs(&log).into_values().filter(|a| a.len() > 3).collect();
        assert!(redriven.iter().all(|a| a[3] == 1), "a redrive starts at attempt 1: {redriven:?}");
        let firsts = |a: &Vec<u32>| a.iter().filter(|&&n| n == 1).count();
        assert!(redriven.iter().all(|a| firsts(a) == 2), "redriving twice delivered twice: {redriven:?}");
    })
    .await;
}
