//! Consumer groups over real gRPC, driven as a consumer would drive them: the first
//! `FindCoordinator` creates `__consumer_offsets` and names the leader of the group's partition;
//! three members heartbeating over a 12-partition topic end up owning every partition once;
//! offsets are committed, fetched and fenced by member epoch; when the coordinator's broker
//! stops, another coordinates the group with its members, epochs and offsets intact (its state
//! is the replay of the partition's log); a member that stops heartbeating is removed after its
//! session timeout and its partitions go to the others; the coordinator exports the group's lag.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice_broker::{Broker, BrokerConfig, GroupConfig};
use sluice_controller::{Applied, ControllerCommand, TopicConfig};
use sluice_proto::v1::groups_client::GroupsClient;
use sluice_proto::v1::{
    BrokerAddress, CommitOffsetsRequest, CreateTopicRequest, DescribeGroupRequest, DescribeGroupResponse,
    FetchOffsetsRequest, FindCoordinatorRequest, GroupHeartbeatRequest, GroupHeartbeatResponse, OffsetToCommit,
    ProduceRequest, TopicPartitions,
};
use sluice_proto::{Error, ErrorCode, error_of};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

use super::cluster::Cluster;

const GROUP: &str = "billing";
const TOPIC: &str = "orders";
const PARTITIONS: u32 = 12;
/// Members ask for this session timeout: short, so that an expiry is quick to observe.
const SESSION_MS: u32 = 3_000;

/// Fewer offsets partitions than the default, so that the cluster forms quickly, and frequent
/// checkpoints.
fn small_offsets_topic(config: &mut BrokerConfig) {
    config.groups.offsets_partitions = 3;
    config.groups.heartbeat_interval_ms = 100;
    config.groups.checkpoint_interval_records = GroupConfig::MIN_CHECKPOINT_INTERVAL_RECORDS;
}

fn code(error: Option<&Error>) -> ErrorCode {
    error_of(error).error_code()
}

/// A connection to the client API at `address` (made on first use: the broker may be down).
fn connect(address: &str) -> GroupsClient<Channel> {
    let endpoint = Channel::from_shared(format!("http://{address}")).expect("a valid address");
    GroupsClient::new(endpoint.timeout(Duration::from_secs(5)).connect_lazy())
}

/// Asks the brokers in turn for `GROUP`'s coordinator until one names it; its address and the
/// `__consumer_offsets` partition holding the group.
async fn find_coordinator(cluster: &Cluster) -> (BrokerAddress, u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for b in &cluster.brokers {
            let mut client = connect(&b.client_addr().to_string());
            let request = FindCoordinatorRequest { group: GROUP.into() };
            if let Ok(answer) = client.find_coordinator(request).await.map(tonic::Response::into_inner) {
                match code(answer.error.as_ref()) {
                    ErrorCode::Ok => {
                        return (answer.coordinator.expect("an OK answer names the coordinator"), answer.partition);
                    }
                    c => assert!(c.is_retriable(), "FindCoordinator: {:?}", answer.error),
                }
            }
        }
        assert!(Instant::now() < deadline, "no broker named the coordinator of {GROUP}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A member as a consumer keeps it: its id, the epoch of the last answer, what it owns.
#[derive(Debug, Clone)]
struct Member {
    id: String,
    epoch: i32,
    owned: Vec<TopicPartitions>,
}

impl Member {
    fn new(id: &str) -> Member {
        Member { id: id.into(), epoch: 0, owned: Vec::new() }
    }

    fn partitions(&self) -> BTreeSet<u32> {
        self.owned.iter().flat_map(|tp| tp.partitions.iter().copied()).collect()
    }

    fn request(&self) -> GroupHeartbeatRequest {
        GroupHeartbeatRequest {
            group: GROUP.into(),
            member_id: self.id.clone(),
            member_epoch: self.epoch,
            topics: vec![TOPIC.into()],
            owned: self.owned.clone(),
            session_timeout_ms: SESSION_MS,
            ..GroupHeartbeatRequest::default()
        }
    }
}

/// The group's coordinator connection, found again when the coordinator moves.
struct Coordinator {
    address: BrokerAddress,
    /// The `__consumer_offsets` partition holding the group.
    partition: u32,
    client: GroupsClient<Channel>,
}

impl Coordinator {
    async fn find(cluster: &Cluster) -> Coordinator {
        let (address, partition) = find_coordinator(cluster).await;
        let client = connect(&address.client_address);
        Coordinator { address, partition, client }
    }

    /// Sends `call` to the coordinator until it answers with a code that is not retriable
    /// (finding it again after each retriable answer or transport failure).
    async fn call<T, F, Fut>(&mut self, cluster: &Cluster, mut call: F) -> (ErrorCode, T)
    where
        F: FnMut(GroupsClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Option<(Option<Error>, T)>>,
    {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = call(self.client.clone()).await;
            // Besides moving or loading, a coordinator just elected may answer TIMEOUT or
            // NOT_ENOUGH_REPLICAS while its first writes commit: every retriable code is asked again.
            let moved = answer.as_ref().is_none_or(|(e, _)| code(e.as_ref()).is_retriable());
            if let (false, Some((e, t))) = (moved, answer) {
                return (code(e.as_ref()), t);
            }
            assert!(Instant::now() < deadline, "the coordinator of {GROUP} never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
            *self = Coordinator::find(cluster).await;
        }
    }

    async fn heartbeat(&mut self, cluster: &Cluster, member: &mut Member) -> ErrorCode {
        let request = member.request();
        let (code, answer) = self
            .call(cluster, |mut c| {
                let request = request.clone();
                async move {
                    let a: GroupHeartbeatResponse = c.group_heartbeat(request).await.ok()?.into_inner();
                    Some((a.error.clone(), a))
                }
            })
            .await;
        if code == ErrorCode::Ok {
            member.epoch = answer.member_epoch;
            if let Some(assignment) = answer.assignment {
                // A test consumer gives partitions up and takes new ones at once.
                member.owned = assignment.partitions;
            }
        }
        code
    }

    async fn commit(&mut self, cluster: &Cluster, member: &Member, epoch: i32, offset: u64) -> ErrorCode {
        let offsets: Vec<OffsetToCommit> = member
            .partitions()
            .into_iter()
            .map(|partition| OffsetToCommit { topic: TOPIC.into(), partition, offset, metadata: "test".into() })
            .collect();
        let request =
            CommitOffsetsRequest { group: GROUP.into(), member_id: member.id.clone(), member_epoch: epoch, offsets };
        self.call(cluster, |mut c| {
            let request = request.clone();
            async move { Some((c.commit_offsets(request).await.ok()?.into_inner().error, ())) }
        })
        .await
        .0
    }

    /// The committed offset of each partition of the topic that has one.
    async fn committed(&mut self, cluster: &Cluster) -> Vec<(u32, u64)> {
        let request = FetchOffsetsRequest { group: GROUP.into(), partitions: Vec::new(), instance_id: None };
        let (code, offsets) = self
            .call(cluster, |mut c| {
                let request = request.clone();
                async move {
                    let a = c.fetch_offsets(request).await.ok()?.into_inner();
                    Some((a.error, a.offsets))
                }
            })
            .await;
        assert_eq!(code, ErrorCode::Ok);
        offsets.into_iter().filter_map(|o| Some((o.partition, o.offset?))).collect()
    }

    async fn describe(&mut self, cluster: &Cluster) -> DescribeGroupResponse {
        let (code, answer) = self
            .call(cluster, |mut c| async move {
                let a = c.describe_group(DescribeGroupRequest { group: GROUP.into() }).await.ok()?.into_inner();
                Some((a.error.clone(), a))
            })
            .await;
        assert_eq!(code, ErrorCode::Ok, "{:?}", answer.error);
        answer
    }
}

/// Heartbeats every member in turn until `done` holds for them.
async fn beat_until(
    cluster: &Cluster,
    coordinator: &mut Coordinator,
    members: &mut [Member],
    what: &str,
    done: impl Fn(&[Member]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for m in members.iter_mut() {
            let code = coordinator.heartbeat(cluster, m).await;
            assert_eq!(code, ErrorCode::Ok, "heartbeat of {}", m.id);
        }
        if done(members) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}; members: {members:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the members own every partition of the topic exactly once, in shares that differ
/// by at most one.
fn each_partition_once(members: &[Member]) -> bool {
    let counts: Vec<usize> = members.iter().map(|m| m.partitions().len()).collect();
    let all: BTreeSet<u32> = members.iter().flat_map(Member::partitions).collect();
    let (min, max) = (counts.iter().min().copied().unwrap_or(0), counts.iter().max().copied().unwrap_or(0));
    counts.iter().sum::<usize>() == PARTITIONS as usize && all.len() == PARTITIONS as usize && max - min <= 1
}

/// Produces `batch` to `TOPIC`/`partition` through the client API, asking each broker in turn
/// until the leader accepts it.
async fn produce(cluster: &Cluster, partition: u32, batch: bytes::Bytes) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for b in &cluster.brokers {
            let mut client = super::cluster::connect(&b.client_addr().to_string()).await;
            let request = ProduceRequest {
                topic: TOPIC.into(),
                partition,
                batch: batch.clone(),
                timeout_ms: 5_000,
                ..Default::default()
            };
            let answer = client.produce(request).await.expect("rpc").into_inner();
            if code(answer.error.as_ref()) == ErrorCode::Ok {
                return;
            }
        }
        assert!(Instant::now() < deadline, "no leader of {TOPIC}/{partition} accepted the batch");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The running broker with node id `node_id`.
fn broker(cluster: &Cluster, node_id: u64) -> &Broker {
    cluster.brokers.iter().find(|b| b.config().node_id == node_id).expect("the broker runs")
}

/// `GET /metrics` of `addr`; the response.
pub(super) async fn scrape(addr: SocketAddr) -> String {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect to the metrics endpoint");
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send the request");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read the response");
        response
    };
    tokio::time::timeout(Duration::from_secs(10), exchange).await.expect("the metrics endpoint answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_three_members_the_coordinator_assigns_commits_fails_over_and_expires() {
    let mut cluster = Cluster::start_adjusted(3, small_offsets_topic).await;
    cluster
        .wait_for(Duration::from_secs(20), "every broker registered and live", |c| {
            c.brokers.iter().all(|b| b.controller().metadata().read(|m| m.live_brokers().len() == 3))
        })
        .await;
    let create = ControllerCommand::CreateTopic { name: TOPIC.into(), config: TopicConfig::new(PARTITIONS, 3) };
    let created = cluster.propose(&create).await.into_result().unwrap();
    assert!(matches!(created, Applied::TopicCreated { .. }), "{created:?}");

    tracing::info!("--- clients may not create internal topics");
    let mut admin = super::cluster::connect(&cluster.brokers[0].client_addr().to_string()).await;
    let request = CreateTopicRequest { name: "__mine".into(), config: None };
    let refused = admin.create_topic(request).await.unwrap().into_inner();
    assert_eq!(code(refused.error.as_ref()), ErrorCode::InvalidTopicName, "{:?}", refused.error);

    tracing::info!("--- the first FindCoordinator creates __consumer_offsets and names its partition's leader");
    let mut coordinator = Coordinator::find(&cluster).await;
    // The broker that named the coordinator has applied the creation; broker 0 may lag behind it.
    let offsets_topic =
        |c: &Cluster| c.brokers[0].controller().metadata().read(|m| m.topic("__consumer_offsets").cloned());
    cluster
        .wait_for(Duration::from_secs(30), "broker 0 to apply __consumer_offsets", |c| offsets_topic(c).is_some())
        .await;
    let offsets = offsets_topic(&cluster).expect("__consumer_offsets was created");
    assert_eq!((offsets.config.partitions, offsets.config.replication_factor), (3, 3));

    tracing::info!("--- three members join and end up owning each of the 12 partitions once");
    let mut members = vec![Member::new("m1"), Member::new("m2"), Member::new("m3")];
    beat_until(&cluster, &mut coordinator, &mut members, "12 partitions shared by 3", each_partition_once).await;
    assert!(members.iter().all(|m| m.partitions().len() == 4), "{members:?}");

    tracing::info!("--- offsets are committed and fetched; a stale member epoch is fenced");
    let m1 = members[0].clone();
    assert_eq!(coordinator.commit(&cluster, &m1, m1.epoch, 1).await, ErrorCode::Ok);
    assert_eq!(coordinator.commit(&cluster, &m1, m1.epoch - 1, 7).await, ErrorCode::FencedMemberEpoch);
    let committed = coordinator.committed(&cluster).await;
    let expected: Vec<(u32, u64)> = m1.partitions().into_iter().map(|p| (p, 1)).collect();
    assert_eq!(committed, expected);

    tracing::info!("--- lag: messages behind the committed offset and the age of the first of them");
    let p = *m1.partitions().first().unwrap();
    for i in 0..3 {
        produce(&cluster, p, super::batch(i)).await;
    }
    let described = coordinator.describe(&cluster).await;
    assert_eq!((described.members.len(), described.partitions.len()), (3, PARTITIONS as usize));
    let row = described.partitions.iter().find(|r| r.partition == p).unwrap();
    assert_eq!((row.committed_offset, row.end_offset, row.lag_messages), (Some(1), 6, 5), "{row:?}");
    assert!(row.lag_ms > 0, "the messages are old: {row:?}");
    assert_eq!(row.member_id.as_deref(), Some("m1"));
    let metrics = scrape(broker(&cluster, coordinator.address.node_id).metrics_addr().unwrap()).await;
    let series = format!("sluice_group_lag_messages{{group=\"{GROUP}\",topic=\"{TOPIC}\",partition=\"{p}\"}} 5");
    assert!(metrics.contains(&series), "{series} missing from the coordinator's metrics");

    tracing::info!("--- enough commits for a checkpoint: the log before it is trimmed");
    for _ in 0..30 {
        assert_eq!(coordinator.commit(&cluster, &m1, m1.epoch, 6).await, ErrorCode::Ok);
    }
    let expected: Vec<(u32, u64)> = m1.partitions().into_iter().map(|p| (p, 6)).collect();
    let offsets_group = offsets.partitions[coordinator.partition as usize].group_id;
    let log_start = broker(&cluster, coordinator.address.node_id).partitions().log_start(offsets_group).unwrap();
    cluster
        .wait_for(Duration::from_secs(30), "the offsets partition trimmed before a checkpoint", |_| {
            log_start.borrow().offset > 0
        })
        .await;

    tracing::info!("--- the coordinator's broker stops: another coordinates the group, state intact");
    let (epochs, group_epoch) = (members.iter().map(|m| m.epoch).collect::<Vec<_>>(), described.group_epoch);
    let old = coordinator.address.node_id;
    let position = cluster.brokers.iter().position(|b| b.config().node_id == old).unwrap();
    cluster.stop_broker(position).await;
    // Until the survivors notice (raft.node_timeout_ms), they may still name the stopped broker.
    let deadline = Instant::now() + Duration::from_secs(30);
    coordinator = Coordinator::find(&cluster).await;
    while coordinator.address.node_id == old {
        assert!(Instant::now() < deadline, "no surviving broker took over as coordinator");
        tokio::time::sleep(Duration::from_millis(50)).await;
        coordinator = Coordinator::find(&cluster).await;
    }
    for m in &mut members {
        assert_eq!(coordinator.heartbeat(&cluster, m).await, ErrorCode::Ok, "{} keeps its place", m.id);
    }
    assert_eq!(members.iter().map(|m| m.epoch).collect::<Vec<_>>(), epochs, "member epochs survive");
    assert!(each_partition_once(&members), "{members:?}");
    assert_eq!(coordinator.describe(&cluster).await.group_epoch, group_epoch);
    assert_eq!(coordinator.committed(&cluster).await, expected, "committed offsets survive");

    tracing::info!("--- m3 stops heartbeating: its session expires and m1, m2 take its partitions");
    let started = Instant::now();
    let mut live = members[..2].to_vec();
    beat_until(&cluster, &mut coordinator, &mut live, "m3 removed, 12 partitions shared by 2", each_partition_once)
        .await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(u64::from(SESSION_MS) / 2), "removed after its session: {waited:?}");
    let described = coordinator.describe(&cluster).await;
    let ids: Vec<&str> = described.members.iter().map(|m| m.member_id.as_str()).collect();
    assert_eq!(ids, ["m1", "m2"]);
    assert!(described.group_epoch > group_epoch);
    cluster.shutdown().await;
}

/// The code of the coordinator's answer to `DescribeGroup` for `GROUP`.
async fn describe_code(cluster: &Cluster, coordinator: &mut Coordinator) -> ErrorCode {
    let (code, ()) = coordinator
        .call(cluster, |mut c| async move {
            Some((c.describe_group(DescribeGroupRequest { group: GROUP.into() }).await.ok()?.into_inner().error, ()))
        })
        .await;
    code
}

/// Offsets retention: a group with no members and no commit for `offsets_retention_ms` is
/// deleted, by a record in its offsets partition, so a broker that restarts and replays the
/// partition (with no retention check due for an hour) finds it gone too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_empty_group_past_its_offsets_retention_it_is_deleted_for_good() {
    const RETENTION_MS: u64 = 1_500;
    let mut cluster = Cluster::start_adjusted(1, |c| {
        small_offsets_topic(c);
        c.groups.offsets_retention_ms = RETENTION_MS;
        c.groups.offsets_retention_check_ms = 100;
    })
    .await;
    let mut coordinator = Coordinator::find(&cluster).await;

    tracing::info!("--- an administrative commit makes a group with an offset and no member");
    let offset = OffsetToCommit { topic: TOPIC.into(), partition: 0, offset: 5, metadata: String::new() };
    let request =
        CommitOffsetsRequest { group: GROUP.into(), member_id: String::new(), member_epoch: -1, offsets: vec![offset] };
    let (committed, ()) = coordinator
        .call(&cluster, |mut c| {
            let request = request.clone();
            async move { Some((c.commit_offsets(request).await.ok()?.into_inner().error, ())) }
        })
        .await;
    assert_eq!(committed, ErrorCode::Ok);
    let started = Instant::now();
    assert_eq!(describe_code(&cluster, &mut coordinator).await, ErrorCode::Ok);
    assert_eq!(coordinator.committed(&cluster).await, [(0, 5)]);

    tracing::info!("--- past its retention the group is deleted");
    let deadline = Instant::now() + Duration::from_secs(20);
    while describe_code(&cluster, &mut coordinator).await != ErrorCode::GroupNotFound {
        assert!(Instant::now() < deadline, "the group outlived its retention");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(RETENTION_MS / 2), "deleted after its retention: {waited:?}");

    tracing::info!("--- replay agrees: restarted, with no retention check due, the group is still gone");
    cluster.reconfigure(|c| c.groups.offsets_retention_check_ms = 3_600_000);
    cluster.restart_all().await;
    let mut coordinator = Coordinator::find(&cluster).await;
    assert_eq!(describe_code(&cluster, &mut coordinator).await, ErrorCode::GroupNotFound);
    assert_eq!(coordinator.committed(&cluster).await, [], "its offsets went with it");
    cluster.shutdown().await;
}
