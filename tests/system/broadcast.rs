//! Broadcast consumption against three broker processes: every instance of a broadcast group
//! receives every message of the topic, whatever the others do, from its own offsets kept by
//! the group's coordinator; an instance that is a separate process (`sluice consume --group
//! --broadcast --instance-id`) SIGKILLed and started again resumes where it had committed,
//! losing nothing and reading nothing twice.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sluice_client::{Client, GroupConsumerConfig, OffsetReset, ProducerConfig, ProducerRecord, TopicConfig};
use sluice_system_tests::cli::{Background, printed_positions};
use sluice_system_tests::groups::{Member, eventually};
use sluice_system_tests::{Cluster, within};

const TOPIC: &str = "broadcast";
const GROUP: &str = "everyone";
const PARTITIONS: u32 = 6;
/// Written before and while the CLI instance is down: 100,000 in all.
const BATCH: usize = 50_000;
const LIMIT: Duration = Duration::from_secs(240);

/// Sends messages `from..to`; returns (partition, offset) of each.
async fn produce(client: &Client, from: usize, to: usize) -> BTreeSet<(u32, u64)> {
    let producer = client.producer(ProducerConfig::default()).await.expect("a producer");
    let mut deliveries = Vec::with_capacity(to - from);
    for i in from..to {
        deliveries.push(producer.enqueue(ProducerRecord::new(TOPIC, format!("m{i}"))).await.expect("enqueue"));
    }
    let mut written = BTreeSet::new();
    for d in deliveries {
        let m = d.await.expect("acknowledged");
        written.insert((m.partition, m.offset));
    }
    written
}

fn config(instance: &str) -> GroupConsumerConfig {
    GroupConsumerConfig {
        instance_id: Some(instance.into()),
        broadcast: true,
        auto_offset_reset: OffsetReset::Earliest,
        auto_commit_interval: Duration::from_millis(200),
        ..GroupConsumerConfig::new(GROUP)
    }
}

fn spawn_instance(bootstrap: &str, out: &std::path::Path) -> Background {
    let args =
        ["consume", TOPIC, "--group", GROUP, "--broadcast", "--instance-id", "cli", "--follow", "--output", "json"];
    Background::start(bootstrap, &args, out)
}

/// The CLI instance's committed offsets, by partition, as the coordinator describes them.
async fn committed(client: &Client) -> Result<BTreeMap<u32, u64>, String> {
    let d = client.admin().describe_group(GROUP).await.map_err(|e| e.to_string())?;
    if !d.broadcast {
        return Err("the group is not in broadcast mode".into());
    }
    let mine = d.partitions.iter().filter(|p| p.instance_id.as_deref() == Some("cli"));
    Ok(mine.filter_map(|p| Some((p.partition.partition(), p.committed_offset?))).collect())
}

fn ends(written: &BTreeSet<(u32, u64)>) -> BTreeMap<u32, u64> {
    let mut ends = BTreeMap::new();
    for &(p, o) in written {
        let end = ends.entry(p).or_insert(0);
        *end = (*end).max(o + 1);
    }
    ends
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_broadcast_instance_receives_every_message_and_a_sigkilled_one_resumes_from_its_offsets() {
    let cluster = Cluster::start(3).await;
    let bootstrap = cluster.bootstrap();
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let (first_out, second_out) = (scratch.path().join("first.jsonl"), scratch.path().join("second.jsonl"));
    within(LIMIT, "broadcast consumption", async {
        let client = cluster.client().await;
        let admin = client.admin();
        admin.create_topic(TOPIC, &TopicConfig::new(PARTITIONS, 3)).await.expect("create the topic");
        admin.wait_for_leaders(TOPIC, Duration::from_secs(30)).await.expect("leaders");
        let mut written = produce(&client, 0, BATCH).await;

        eprintln!("--- three instances each read everything");
        let a = Member::join(&client, "a", config("a"), TOPIC).await;
        let b = Member::join(&client, "b", config("b"), TOPIC).await;
        let cli = spawn_instance(&bootstrap, &first_out);
        let want = ends(&written);
        eventually(Duration::from_secs(60), "the CLI instance commits everything it read", || async {
            let c = committed(&client).await?;
            if c == want { Ok(()) } else { Err(format!("committed {c:?}, want {want:?}")) }
        })
        .await;
        let first = printed_positions(&first_out);
        assert_eq!(first.iter().copied().collect::<BTreeSet<_>>(), written, "the CLI instance read everything");
        assert_eq!(first.len(), written.len(), "once each");

        eprintln!("--- SIGKILLed, it misses what is written meanwhile and resumes from its offsets");
        drop(cli);
        let later = produce(&client, BATCH, 2 * BATCH).await;
        written.extend(&later);
        // Its instance id is free again once its session times out (a static member's, as in
        // KIP-848: a new process is refused UNRELEASED_INSTANCE_ID until then).
        eventually(Duration::from_secs(30), "the killed instance's session ends", || async {
            let d = client.admin().describe_group(GROUP).await.map_err(|e| e.to_string())?;
            let alive = d.members.iter().any(|m| m.instance_id.as_deref() == Some("cli"));
            if alive { Err("still a member".to_owned()) } else { Ok(()) }
        })
        .await;
        let _cli = spawn_instance(&bootstrap, &second_out);
        eventually(Duration::from_secs(60), "the restarted instance reads what was written meanwhile", || async {
            let n = printed_positions(&second_out).len();
            if n >= later.len() { Ok(()) } else { Err(format!("{n} of {}", later.len())) }
        })
        .await;
        let second = printed_positions(&second_out);
        let resumed: BTreeSet<(u32, u64)> = second.iter().copied().collect();
        assert_eq!(resumed, later, "it resumed at its committed offsets: nothing lost, nothing read again");
        assert_eq!(second.len(), later.len(), "once each");

        for member in [a, b] {
            let name = member.name.clone();
            let seen = eventually(Duration::from_secs(60), "the SDK instance reads everything", || {
                let records = member.view().records;
                let (n, all) = (records.len(), written.len());
                let outcome = if n >= all { Ok(records) } else { Err(format!("{name}: {n} of {all}")) };
                async move { outcome }
            })
            .await;
            assert_eq!(seen.iter().copied().collect::<BTreeSet<_>>(), written, "{}: every message", member.name);
            assert_eq!(seen.len(), written.len(), "{}: once each", member.name);
            member.close().await;
        }
    })
    .await;
}
