//! Bad input to the `sluice` CLI: each mistake gets an error on standard error that says what
//! is wrong, a non-zero exit status, and no partial effect.

use std::time::{Duration, Instant};

use sluice_system_tests::cli::sluice;
use sluice_system_tests::{Cluster, binaries, free_ports, within};

const COMMAND_LIMIT: Duration = Duration::from_secs(60);
const LIMIT: Duration = Duration::from_secs(120);
/// An unreachable broker must be reported well before the commands' own time limits.
const UNREACHABLE_LIMIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topics_invalid_names_and_oversize_messages_fail_clearly() {
    // One broker is enough to refuse things; it keeps this test light next to the others.
    let cluster = Cluster::start(1).await;
    within(LIMIT, "the bad input test", async {
        let bootstrap = cluster.bootstrap();
        let run = |args: Vec<String>| {
            let bootstrap = bootstrap.clone();
            async move {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                sluice(&bootstrap, &args, None, COMMAND_LIMIT).await
            }
        };
        let words = |text: &str| text.split(' ').map(str::to_owned).collect::<Vec<_>>();

        for command in ["produce no-such-topic hello", "consume no-such-topic", "topic describe no-such-topic"] {
            run(words(command)).await.assert_failure(command, &["no-such-topic", "does not exist", "topic create"]);
        }

        let bad_name = vec!["topic", "create", "bad name!", "--partitions", "1", "--replication-factor", "1"];
        run(bad_name.into_iter().map(str::to_owned).collect())
            .await
            .assert_failure("create bad name!", &["bad name!", "[A-Za-z0-9._-]"]);
        let listed = run(words("topic list --output json")).await;
        assert_eq!(listed.assert_success("topic list").stdout.trim(), "[]", "nothing was created");

        run(words("topic create wide --partitions 1 --replication-factor 3"))
            .await
            .assert_failure("a replication factor above the cluster's size", &["replication factor 3", "1"]);

        run(words("topic create small --partitions 1 --replication-factor 1 --max-message-bytes 1024"))
            .await
            .assert_success("create a topic with a 1 KiB message limit");
        let oversize = vec!["produce".to_owned(), "small".to_owned(), "x".repeat(2_000)];
        run(oversize).await.assert_failure("an oversize message", &["2000 bytes", "max_message_bytes", "1024"]);
        let fits = vec!["produce".to_owned(), "small".to_owned(), "y".repeat(1_000)];
        run(fits).await.assert_success("a message within the limit");
        let consumed = run(words("consume small")).await;
        let consumed = consumed.assert_success("consume small");
        assert_eq!(consumed.stdout, format!("{}\n", "y".repeat(1_000)), "only the message that fits was written");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_broker_that_is_down_or_malformed_fails_clearly_and_quickly() {
    binaries(); // built before the clock starts
    let dead = free_ports(1)[0].to_string();
    within(LIMIT, "the unreachable broker test", async {
        for args in
            [&["cluster", "status"][..], &["topic", "list"], &["produce", "orders", "hello"], &["consume", "orders"]]
        {
            let started = Instant::now();
            let out = sluice(&dead, args, None, COMMAND_LIMIT).await;
            out.assert_failure(
                &format!("{args:?} against a dead port"),
                &["cannot reach any bootstrap broker", &dead, "start-cluster.sh"],
            );
            assert!(started.elapsed() < UNREACHABLE_LIMIT, "{args:?} took {:?} to give up", started.elapsed());
        }
        let malformed = sluice("localhost", &["cluster", "status"], None, COMMAND_LIMIT).await;
        malformed.assert_failure("a bootstrap address without a port", &["\"localhost\"", "host:port"]);
    })
    .await;
}
