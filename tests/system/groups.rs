//! Consumer groups against three broker processes (docs/adr/0005-consumer-groups.md), through
//! the SDK's `GroupConsumer`, the raw `Groups` protocol and the `sluice` CLI:
//!
//! - three members over 12 partitions own every partition exactly once, and the coordinator
//!   describes the same assignment;
//! - a member that closes hands its partitions over at once, one that crashes (its tasks
//!   aborted: no commit, no leave) within its session timeout; every produced message is
//!   consumed, and only the crashed member's uncommitted ones twice;
//! - a static member restarted within its session timeout gets the same partitions back
//!   without a new group epoch, and the other member keeps its own throughout;
//! - a zombie's commits are refused: with a stale epoch, and after its session expired;
//! - `sluice consume --group`, `group list`, `group describe` and `group reset` round trip,
//!   and a reset is refused while the group has a live member.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_client::{Client, ErrorCode, GroupConsumerConfig, OffsetReset, ProducerConfig, ProducerRecord, TopicConfig};
use sluice_proto::v1::{
    self, CommitOffsetsRequest, CommitOffsetsResponse, GroupHeartbeatRequest, GroupHeartbeatResponse,
};
use sluice_system_tests::cli::sluice;
use sluice_system_tests::groups::{Member, MemberView, eventually, to_coordinator, unless_retriable};
use sluice_system_tests::{Cluster, within};

const PARTITIONS: u32 = 12;
const LIMIT: Duration = Duration::from_secs(240);
/// Short, so that a crashed member's partitions move soon.
const SESSION: Duration = Duration::from_secs(5);
/// Time for heartbeats to carry an assignment change to every member, on top of any session
/// timeout the change waits for.
const HANDOVER: Duration = Duration::from_secs(10);
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

fn config(group: &str) -> GroupConsumerConfig {
    GroupConsumerConfig {
        session_timeout: SESSION,
        auto_offset_reset: OffsetReset::Earliest,
        auto_commit_interval: Duration::from_millis(300),
        ..GroupConsumerConfig::new(group)
    }
}

async fn create_topic(client: &Client, topic: &str, partitions: u32) {
    let admin = client.admin();
    admin.create_topic(topic, &TopicConfig::new(partitions, 3)).await.expect("create the topic");
    admin.wait_for_leaders(topic, Duration::from_secs(30)).await.expect("every partition elects a leader");
}

/// Sends `count` keyless messages (spread over the partitions); returns the end offsets.
async fn produce(client: &Client, topic: &str, count: usize) -> BTreeMap<u32, u64> {
    // Keyless records move to the next partition after every record: every partition gets some.
    let config = ProducerConfig { sticky_partition_bytes: 1, ..ProducerConfig::default() };
    let producer = client.producer(config).await.expect("a producer");
    let mut deliveries = Vec::with_capacity(count);
    for i in 0..count {
        deliveries.push(producer.enqueue(ProducerRecord::new(topic, format!("m{i}"))).await.expect("enqueue"));
    }
    producer.flush().await;
    let mut ends = BTreeMap::new();
    for delivery in deliveries {
        let written = delivery.await.expect("acknowledged");
        let end = ends.entry(written.partition).or_insert(0);
        *end = (*end).max(written.offset + 1);
    }
    ends
}

/// Ok if the members' assignments cover `0..partitions` once, as evenly as possible.
fn balanced(members: &[&Member], partitions: u32) -> Result<Vec<Vec<u32>>, String> {
    let assignments: Vec<Vec<u32>> = members.iter().map(|m| m.assignment()).collect();
    let all: Vec<u32> = assignments.iter().flatten().copied().collect();
    let distinct: BTreeSet<u32> = all.iter().copied().collect();
    let sizes: Vec<usize> = assignments.iter().map(Vec::len).collect();
    let even = sizes.iter().max().zip(sizes.iter().min()).is_some_and(|(max, min)| max - min <= 1);
    if all.len() == partitions as usize && distinct == (0..partitions).collect() && even {
        Ok(assignments)
    } else {
        Err(format!("assignments {assignments:?}"))
    }
}

/// Every (partition, offset) the views hold, with how often it was consumed.
fn consumed(views: &[&MemberView]) -> BTreeMap<(u32, u64), usize> {
    let mut seen = BTreeMap::new();
    for (partition, offset) in views.iter().flat_map(|v| &v.records) {
        *seen.entry((*partition, *offset)).or_insert(0) += 1;
    }
    seen
}

/// Ok once every offset below `ends` has been consumed by one of `members` or is in one of
/// the views of members gone.
fn caught_up(members: &[&Member], gone: &[&MemberView], ends: &BTreeMap<u32, u64>) -> Result<(), String> {
    let mut views: Vec<MemberView> = members.iter().map(|m| m.view()).collect();
    views.extend(gone.iter().map(|&v| v.clone()));
    let seen = consumed(&views.iter().collect::<Vec<_>>());
    let missing: BTreeMap<u32, usize> = ends
        .iter()
        .map(|(&p, &end)| (p, (0..end).filter(|&o| !seen.contains_key(&(p, o))).count()))
        .filter(|&(_, n)| n > 0)
        .collect();
    let errors: Vec<&String> = views.iter().flat_map(|v| &v.errors).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("not consumed yet, per partition: {missing:?}; errors {errors:?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_over_12_partitions_own_each_partition_exactly_once() {
    let cluster = Cluster::start(3).await;
    within(LIMIT, "three members sharing 12 partitions", async {
        let client = cluster.client().await;
        create_topic(&client, "groups-cover", PARTITIONS).await;
        let mut members = Vec::new();
        for name in ["a", "b", "c"] {
            members.push(Member::join(&client, name, config("cover"), "groups-cover").await);
        }
        let refs: Vec<&Member> = members.iter().collect();
        let assignments =
            eventually(Duration::from_secs(60), "4 partitions per member", || async { balanced(&refs, PARTITIONS) })
                .await;
        assert!(assignments.iter().all(|a| a.len() == 4), "{assignments:?}");

        // The coordinator describes the same assignment, settled.
        let admin = client.admin();
        eventually(HANDOVER, "the coordinator to describe the members' assignments", || async {
            let d = admin.describe_group("cover").await.map_err(|e| e.to_string())?;
            let described: BTreeMap<&str, Vec<u32>> = d
                .members
                .iter()
                .map(|m| (m.member_id.as_str(), m.assigned.iter().map(|tp| tp.partition()).collect()))
                .collect();
            let expected: BTreeMap<&str, Vec<u32>> = members.iter().map(|m| (m.member_id(), m.assignment())).collect();
            if d.state == "STABLE" && described == expected { Ok(()) } else { Err(format!("{d:?}")) }
        })
        .await;
        for member in members {
            member.close().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_and_crashed_members_hand_over_their_partitions_and_only_uncommitted_messages_repeat() {
    let cluster = Cluster::start(3).await;
    within(LIMIT, "hand-over after a close and a crash", async {
        let client = cluster.client().await;
        let topic = "groups-handover";
        create_topic(&client, topic, PARTITIONS).await;
        let mut ends = produce(&client, topic, 1200).await;
        let a = Member::join(&client, "a", config("handover"), topic).await;
        let b = Member::join(&client, "b", config("handover"), topic).await;
        let c = Member::join(&client, "c", config("handover"), topic).await;
        eventually(Duration::from_secs(60), "a, b and c share the partitions", || async {
            balanced(&[&a, &b, &c], PARTITIONS)
        })
        .await;
        eventually(Duration::from_secs(60), "the first messages consumed", || async {
            caught_up(&[&a, &b, &c], &[], &ends)
        })
        .await;

        // A clean close: its partitions move at once, from what it committed while closing.
        let closed_at = Instant::now();
        let a_view = a.close().await;
        eventually(HANDOVER, "b and c take over a's partitions", || async { balanced(&[&b, &c], PARTITIONS) }).await;
        eprintln!("a's partitions moved {:?} after it closed", closed_at.elapsed());

        // A crash while c holds records it may not have committed.
        ends = produce(&client, topic, 1200).await;
        eventually(Duration::from_secs(60), "the second messages consumed", || async {
            caught_up(&[&b, &c], &[&a_view], &ends)
        })
        .await;
        let c_partitions = c.assignment();
        let c_view = c.crash().await;
        let crashed_at = Instant::now();
        let described = client.admin().describe_group("handover").await.expect("describe the group");
        let committed_at_crash: BTreeMap<u32, u64> = described
            .partitions
            .iter()
            .filter(|p| c_partitions.contains(&p.partition.partition()))
            .map(|p| (p.partition.partition(), p.committed_offset.unwrap_or(0)))
            .collect();
        eventually(SESSION + HANDOVER, "b takes over c's partitions after c's session expires", || async {
            let owned = b.assignment();
            if owned.len() == PARTITIONS as usize { Ok(()) } else { Err(format!("b owns {owned:?}")) }
        })
        .await;
        eprintln!("c's partitions moved {:?} after it crashed", crashed_at.elapsed());

        ends = produce(&client, topic, 1200).await;
        eventually(Duration::from_secs(60), "everything consumed", || async {
            caught_up(&[&b], &[&a_view, &c_view], &ends)
        })
        .await;
        let b_view = b.close().await;

        let seen = consumed(&[&a_view, &b_view, &c_view]);
        let missing: usize =
            ends.iter().map(|(&p, &end)| (0..end).filter(|&o| !seen.contains_key(&(p, o))).count()).sum();
        assert_eq!(missing, 0, "every produced message is consumed");
        for (&(partition, offset), &times) in seen.iter().filter(|&(_, &times)| times > 1) {
            let committed = committed_at_crash.get(&partition);
            assert!(
                times == 2 && committed.is_some_and(|&c| offset >= c),
                "{partition}/{offset} consumed {times} times; only messages c had not committed when it crashed \
                 ({committed_at_crash:?}) may be"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_restarted_within_its_session_gets_its_partitions_back_without_a_rebalance() {
    let cluster = Cluster::start(3).await;
    within(LIMIT, "a static member's restart", async {
        let client = cluster.client().await;
        let topic = "groups-static";
        create_topic(&client, topic, PARTITIONS).await;
        let fixed = || GroupConsumerConfig {
            instance_id: Some("static-1".into()),
            session_timeout: Duration::from_secs(20),
            ..config("static")
        };
        let first = Member::join(&client, "static", fixed(), topic).await;
        let other = Member::join(&client, "dynamic", config("static"), topic).await;
        let before = eventually(Duration::from_secs(60), "the two members share the partitions", || async {
            balanced(&[&first, &other], PARTITIONS)
        })
        .await;
        let admin = client.admin();
        let epoch_before = admin.describe_group("static").await.expect("describe").group_epoch;

        first.close().await;
        let again = Member::join(&client, "static again", fixed(), topic).await;
        eventually(HANDOVER, "the restarted member owns the same partitions", || async {
            assert_eq!(other.assignment(), before[1], "the other member keeps its partitions throughout");
            let owned = again.assignment();
            if owned == before[0] { Ok(()) } else { Err(format!("it owns {owned:?}, had {:?}", before[0])) }
        })
        .await;
        let after = admin.describe_group("static").await.expect("describe");
        assert_eq!(after.group_epoch, epoch_before, "no new group epoch: {after:?}");
        assert_eq!(after.members.len(), 2, "{after:?}");
        assert!(after.members.iter().any(|m| m.instance_id.as_deref() == Some("static-1")), "{after:?}");
        again.close().await;
        other.close().await;
    })
    .await;
}

fn code_of(error: Option<&sluice_proto::Error>) -> ErrorCode {
    sluice_proto::error_of(error).error_code()
}

/// Sends a heartbeat of group `zombie` to its coordinator; retriable answers are sent again.
async fn heartbeat(broker: &str, beat: &GroupHeartbeatRequest) -> GroupHeartbeatResponse {
    to_coordinator(broker, "zombie", "a heartbeat answered", |mut rpc| async move {
        let answer = rpc.group_heartbeat(beat.clone()).await.map_err(|s| s.to_string())?.into_inner();
        unless_retriable(answer.error.as_ref())?;
        Ok(answer)
    })
    .await
}

/// Sends a commit of group `zombie` to its coordinator; retriable answers are sent again.
async fn commit_offsets(broker: &str, request: CommitOffsetsRequest) -> CommitOffsetsResponse {
    to_coordinator(broker, "zombie", "a commit answered", |mut rpc| {
        let request = request.clone();
        async move {
            let answer = rpc.commit_offsets(request).await.map_err(|s| s.to_string())?.into_inner();
            unless_retriable(answer.error.as_ref())?;
            Ok(answer)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_commit_is_refused_with_a_stale_epoch_and_after_its_session_expired() {
    let cluster = Cluster::start(3).await;
    within(LIMIT, "a zombie member", async {
        let client = cluster.client().await;
        let topic = "groups-zombie";
        create_topic(&client, topic, PARTITIONS).await;
        // The group's coordinator is elected with `__consumer_offsets` on the first request: its
        // first answers may be CoordinatorLoading or NotCoordinator, which are asked again.
        let broker = &cluster.client_addr(1);
        let mut beat = GroupHeartbeatRequest {
            group: "zombie".into(),
            member_id: "00000000-0000-4000-8000-00000000002a".into(),
            member_epoch: 0,
            instance_id: None,
            topics: vec![topic.into()],
            owned: vec![],
            session_timeout_ms: 5000,
            rebalance_timeout_ms: 60_000,
            filters: vec![],
            broadcast: false,
            skipped: vec![],
        };
        let joined = heartbeat(broker, &beat).await;
        assert_eq!(code_of(joined.error.as_ref()), ErrorCode::Ok, "{joined:?}");
        let first_epoch = joined.member_epoch;
        let mut owned = joined.assignment.expect("a join is answered with an assignment").partitions;
        let partition = owned[0].partitions[0];
        let commit = |epoch: i32| CommitOffsetsRequest {
            group: "zombie".into(),
            member_id: beat.member_id.clone(),
            member_epoch: epoch,
            offsets: vec![v1::OffsetToCommit { topic: topic.into(), partition, offset: 0, metadata: String::new() }],
        };
        let ok = commit_offsets(broker, commit(first_epoch)).await;
        assert_eq!(code_of(ok.error.as_ref()), ErrorCode::Ok, "the member's own commit: {ok:?}");

        // Another member joins: the group epoch moves on, and so does this member's once it
        // has given up what it must.
        let other = Member::join(&client, "other", config("zombie"), topic).await;
        let mut epoch = first_epoch;
        let deadline = Instant::now() + Duration::from_secs(60);
        while epoch == first_epoch {
            assert!(Instant::now() < deadline, "the member epoch never moved past {first_epoch}");
            beat.member_epoch = epoch;
            beat.owned = owned.clone();
            let answer = heartbeat(broker, &beat).await;
            assert_eq!(code_of(answer.error.as_ref()), ErrorCode::Ok, "{answer:?}");
            epoch = answer.member_epoch;
            if let Some(assignment) = answer.assignment {
                owned = assignment.partitions;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let stale = commit_offsets(broker, commit(first_epoch)).await;
        assert_eq!(code_of(stale.error.as_ref()), ErrorCode::FencedMemberEpoch, "a stale epoch: {stale:?}");

        // Silent past its session timeout: the member is gone, and so are its commits.
        eventually(SESSION + HANDOVER, "the silent member to be removed", || async {
            let d = client.admin().describe_group("zombie").await.map_err(|e| e.to_string())?;
            if d.members.iter().all(|m| m.member_id != beat.member_id) { Ok(()) } else { Err(format!("{d:?}")) }
        })
        .await;
        let expired = commit_offsets(broker, commit(epoch)).await;
        let code = code_of(expired.error.as_ref());
        assert!(
            matches!(code, ErrorCode::UnknownMemberId | ErrorCode::FencedMemberEpoch),
            "an expired member's commit: {expired:?}"
        );
        other.close().await;
    })
    .await;
}

fn json_lines(text: &str) -> Vec<Value> {
    let parse = |line: &str| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
    text.lines().map(parse).collect()
}

/// `group describe --output json`, with the committed offsets and lags by partition.
async fn describe(bootstrap: &str, group: &str) -> (Value, BTreeMap<u64, (Option<u64>, u64, u64)>) {
    let out = sluice(bootstrap, &["group", "describe", group, "--output", "json"], None, COMMAND_LIMIT).await;
    out.assert_success("group describe --output json");
    let [d] = &json_lines(&out.stdout)[..] else { panic!("one JSON document: {}", out.stdout) };
    let partitions = d["partitions"].as_array().expect("partitions").iter().map(|p| {
        let partition = p["partition"].as_u64().expect("a partition");
        (
            partition,
            (
                p["committed_offset"].as_u64(),
                p["end_offset"].as_u64().expect("end"),
                p["lag_messages"].as_u64().expect("lag"),
            ),
        )
    });
    (d.clone(), partitions.collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_consumes_as_a_group_describes_it_and_resets_it_only_while_it_is_empty() {
    let cluster = Cluster::start(3).await;
    within(LIMIT, "the CLI's group commands", async {
        let bootstrap = cluster.bootstrap();
        let run = |args: Vec<String>, stdin: Option<Vec<u8>>| {
            let bootstrap = bootstrap.clone();
            async move {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                sluice(&bootstrap, &args, stdin, COMMAND_LIMIT).await
            }
        };
        let words = |text: &str| text.split(' ').map(str::to_owned).collect::<Vec<_>>();
        run(words("topic create cli-groups --partitions 3 --replication-factor 3"), None)
            .await
            .assert_success("topic create");
        // ~2 KB lines: 30 of them span several of the producer's 16 KiB sticky-partition turns,
        // so every partition gets some.
        let input: String = (0..30).map(|i| format!("line {i} {}\n", "x".repeat(2000))).collect();
        run(words("produce cli-groups"), Some(input.into_bytes())).await.assert_success("produce");

        let all = run(words("consume cli-groups --group cli --output json"), None).await;
        all.assert_success("consume --group");
        assert_eq!(json_lines(&all.stdout).len(), 30, "every message once: {}", all.stdout);
        let again = run(words("consume cli-groups --group cli --output json"), None).await;
        again.assert_success("consume --group again");
        assert!(again.stdout.is_empty(), "the group committed everything: {}", again.stdout);

        let listed = run(words("group list --output json"), None).await;
        listed.assert_success("group list");
        let [list] = &json_lines(&listed.stdout)[..] else { panic!("{}", listed.stdout) };
        assert!(list.as_array().expect("an array").iter().any(|g| g["group"] == "cli" && g["members"] == 0), "{list}");

        let (d, partitions) = describe(&bootstrap, "cli").await;
        assert_eq!((d["group"].as_str(), d["members"].as_array().map(Vec::len)), (Some("cli"), Some(0)), "{d}");
        assert_eq!(partitions.len(), 3, "{d}");
        assert!(partitions.values().all(|&(committed, end, lag)| committed == Some(end) && lag == 0), "{d}");

        run(words("group reset cli --topic cli-groups --to earliest"), None).await.assert_success("group reset");
        let (d, partitions) = describe(&bootstrap, "cli").await;
        assert!(partitions.values().all(|&(committed, end, lag)| committed == Some(0) && lag == end), "{d}");
        let lagging = d["partitions"].as_array().expect("partitions").iter().filter(|p| p["lag_messages"] != 0);
        assert!(lagging.clone().all(|p| p["lag_seconds"].as_f64().is_some_and(|s| s > 0.0)), "{d}");

        let five = run(words("consume cli-groups --group cli --max 5 --output json"), None).await;
        five.assert_success("consume --group --max 5");
        assert_eq!(json_lines(&five.stdout).len(), 5);
        let (d, partitions) = describe(&bootstrap, "cli").await;
        assert_eq!(partitions.values().filter_map(|p| p.0).sum::<u64>(), 5, "exactly what was printed: {d}");

        // A live member blocks resets.
        let client = cluster.client().await;
        let member = Member::join(&client, "live", config("cli"), "cli-groups").await;
        let refused = run(words("group reset cli --topic cli-groups --to latest"), None).await;
        refused.assert_failure("group reset with a live member", &["live members", "stop the group's consumers"]);
        member.close().await;
        let time = run(words("group reset cli --topic cli-groups --to 2000-01-01T00:00:00Z"), None).await;
        time.assert_success("group reset to a time");
        let (d, partitions) = describe(&bootstrap, "cli").await;
        assert!(partitions.values().all(|&(committed, ..)| committed == Some(0)), "before every message: {d}");

        let unknown = run(words("group describe no-such-group"), None).await;
        unknown.assert_failure("describe an unknown group", &["no-such-group", "sluice group list"]);
    })
    .await;
}
