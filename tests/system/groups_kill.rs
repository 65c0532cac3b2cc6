//! Consumer groups through SIGKILLs: a member that is a separate process
//! (`sluice consume --group`) is SIGKILLed, and then the broker coordinating the group is. The
//! surviving members take over the killed member's partitions once its session expires; the
//! group carries on under a new coordinator with the same members and its committed offsets;
//! and every produced message is consumed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sluice_client::{Client, GroupConsumerConfig, OffsetReset, ProducerConfig, ProducerRecord, TopicConfig};
use sluice_system_tests::cli::{Background, printed_positions};
use sluice_system_tests::groups::{Member, MemberView, eventually, find_coordinator};
use sluice_system_tests::{Cluster, within};

const PARTITIONS: u32 = 12;
const TOPIC: &str = "groups-kill";
const GROUP: &str = "kill";
const LIMIT: Duration = Duration::from_secs(300);
/// The CLI member keeps the SDK's default session timeout.
const CLI_SESSION: Duration = Duration::from_secs(10);
/// Heartbeats carrying an assignment change to every member, and a new coordinator loading.
const HANDOVER: Duration = Duration::from_secs(15);

fn config() -> GroupConsumerConfig {
    GroupConsumerConfig {
        session_timeout: Duration::from_secs(5),
        auto_offset_reset: OffsetReset::Earliest,
        auto_commit_interval: Duration::from_millis(300),
        ..GroupConsumerConfig::new(GROUP)
    }
}

/// Sends `count` messages spread over the partitions; returns each partition's end offset.
async fn produce(client: &Client, count: usize) -> BTreeMap<u32, u64> {
    // Keyless records move to the next partition after every record: every partition gets some.
    let config = ProducerConfig { sticky_partition_bytes: 1, ..ProducerConfig::default() };
    let producer = client.producer(config).await.expect("a producer");
    let mut deliveries = Vec::with_capacity(count);
    for i in 0..count {
        deliveries.push(producer.enqueue(ProducerRecord::new(TOPIC, format!("m{i}"))).await.expect("enqueue"));
    }
    let mut ends = BTreeMap::new();
    for delivery in deliveries {
        let written = delivery.await.expect("acknowledged");
        let end = ends.entry(written.partition).or_insert(0);
        *end = (*end).max(written.offset + 1);
    }
    ends
}

/// What the CLI member printed: (partition, offset) of each message.
fn printed(path: &std::path::Path) -> MemberView {
    MemberView { records: printed_positions(path), ..MemberView::default() }
}

/// Ok once every offset below `ends` was consumed by a member or is in a view of one gone.
fn all_consumed(members: &[&Member], gone: &[&MemberView], ends: &BTreeMap<u32, u64>) -> Result<(), String> {
    let mut views: Vec<MemberView> = members.iter().map(|m| m.view()).collect();
    views.extend(gone.iter().map(|&v| v.clone()));
    let seen: std::collections::BTreeSet<(u32, u64)> = views.iter().flat_map(|v| v.records.iter().copied()).collect();
    let missing: BTreeMap<u32, usize> = ends
        .iter()
        .map(|(&p, &end)| (p, (0..end).filter(|&o| !seen.contains(&(p, o))).count()))
        .filter(|&(_, n)| n > 0)
        .collect();
    if missing.is_empty() { Ok(()) } else { Err(format!("not consumed yet, per partition: {missing:?}")) }
}

fn owned_by(members: &[&Member]) -> usize {
    members.iter().map(|m| m.assignment().len()).sum()
}

/// The node id of the group's coordinator, asked of the broker at `address`.
async fn coordinator_node(address: &str) -> u64 {
    find_coordinator(address, GROUP).await.node_id
}

/// Committed offsets per partition, as the coordinator describes them.
async fn committed(client: &Client) -> Result<(Vec<String>, BTreeMap<u32, u64>), String> {
    let d = client.admin().describe_group(GROUP).await.map_err(|e| e.to_string())?;
    let members = d.members.iter().map(|m| m.member_id.clone()).collect();
    let offsets = d.partitions.iter().filter_map(|p| Some((p.partition.partition(), p.committed_offset?))).collect();
    Ok((members, offsets))
}

fn spawn_cli_member(bootstrap: &str, out: &std::path::Path) -> Background {
    Background::start(bootstrap, &["consume", TOPIC, "--group", GROUP, "--follow", "--output", "json"], out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_member_process_and_a_sigkilled_coordinator_lose_no_partition_no_message_and_no_offset() {
    let mut cluster = Cluster::start(3).await;
    let bootstrap = cluster.bootstrap();
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let cli_out = scratch.path().join("cli-member.jsonl");
    within(LIMIT, "SIGKILLs of a member and of the coordinator", async {
        let client = cluster.client().await;
        let admin = client.admin();
        admin.create_topic(TOPIC, &TopicConfig::new(PARTITIONS, 3)).await.expect("create the topic");
        admin.wait_for_leaders(TOPIC, Duration::from_secs(30)).await.expect("leaders");
        let mut ends = produce(&client, 1200).await;

        let a = Member::join(&client, "a", config(), TOPIC).await;
        let b = Member::join(&client, "b", config(), TOPIC).await;
        let mut cli = spawn_cli_member(&bootstrap, &cli_out);
        eventually(Duration::from_secs(60), "the CLI member gets its share", || async {
            let (members, _) = committed(&client).await?;
            let ours = owned_by(&[&a, &b]);
            if members.len() == 3 && ours <= 8 { Ok(()) } else { Err(format!("{members:?}, a+b own {ours}")) }
        })
        .await;
        eventually(Duration::from_secs(60), "everything consumed once", || async {
            all_consumed(&[&a, &b], &[&printed(&cli_out)], &ends)
        })
        .await;

        // SIGKILL the member process: no leave, no commit. Its session expires, and a and b
        // take its partitions over from what it committed.
        cli.kill();
        let killed_at = Instant::now();
        let cli_view = printed(&cli_out);
        eventually(CLI_SESSION + HANDOVER, "a and b own every partition", || async {
            let ours = owned_by(&[&a, &b]);
            if ours == PARTITIONS as usize { Ok(()) } else { Err(format!("a+b own {ours}")) }
        })
        .await;
        eprintln!("the killed member's partitions moved {:?} after its SIGKILL", killed_at.elapsed());
        ends = produce(&client, 1200).await;
        eventually(Duration::from_secs(60), "everything consumed after the member's death", || async {
            all_consumed(&[&a, &b], &[&cli_view], &ends)
        })
        .await;

        // Offsets committed up to the ends, then SIGKILL the coordinator's broker.
        let (members_before, offsets_before) =
            eventually(Duration::from_secs(30), "offsets committed up to the ends", || async {
                let (members, offsets) = committed(&client).await?;
                let behind: Vec<_> = ends.iter().filter(|&(p, &end)| offsets.get(p) != Some(&end)).collect();
                if behind.is_empty() { Ok((members, offsets)) } else { Err(format!("behind: {behind:?}")) }
            })
            .await;
        let first = cluster.node_ids()[0];
        let node = coordinator_node(&cluster.client_addr(first)).await;
        let survivor = cluster.node_ids().into_iter().find(|&n| n != node).expect("another broker");
        let survivor = cluster.client_addr(survivor);
        cluster.kill(node);
        let killed_at = Instant::now();
        let (members_after, offsets_after) =
            eventually(HANDOVER * 2, "a new coordinator describes the group", || async {
                let described = committed(&client).await?;
                if coordinator_node(&survivor).await == node {
                    Err("the old coordinator is still named".into())
                } else {
                    Ok(described)
                }
            })
            .await;
        eprintln!("a new coordinator answered {:?} after the old one's SIGKILL", killed_at.elapsed());
        let (mut before, mut after) = (members_before.clone(), members_after.clone());
        before.sort();
        after.sort();
        assert_eq!(before, after, "the same members, with no rejoin");
        assert_eq!(offsets_before, offsets_after, "the committed offsets survive the coordinator");

        ends = produce(&client, 1200).await;
        eventually(Duration::from_secs(90), "everything consumed after the coordinator's death", || async {
            all_consumed(&[&a, &b], &[&cli_view], &ends)
        })
        .await;
        a.close().await;
        b.close().await;
        cluster.restart(node);
        cluster.wait_ready().await;
    })
    .await;
}
