//! Retries and dead letters over real gRPC (docs/adr/0012-retries.md), driven as a member
//! would drive them: a nacked message comes back from `PollRetries` only after its backoff, as
//! the next attempt; the last attempt, or a reject, puts exactly one entry in `<group>.dlq`
//! carrying the message and where it came from; a redrive delivers the dead letters once
//! however often it is asked; a lease that runs out is a failed attempt; in a key-ordered
//! group a nacked key's parked message is due only once its head is acked; and when the
//! coordinator's broker stops, or every broker restarts, no retry comes early, none is lost
//! and no dead letter is written twice.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sluice_broker::BrokerConfig;
use sluice_common::record::{BatchBuilder, ProducerStamp, Record, RecordBatch};
use sluice_controller::{Applied, ControllerCommand, TopicConfig};
use sluice_proto::v1::groups_client::GroupsClient;
use sluice_proto::v1::{
    DescribeRetriesRequest, DescribeRetriesResponse, FetchRequest, FindCoordinatorRequest, GroupHeartbeatRequest,
    LadderBackoff, PollRetriesRequest, PollRetriesResponse, ProduceRequest, RedriveDeadLettersRequest, RetryPolicy,
    SetRetryPolicyRequest, Settle, SettleMessagesRequest, SettleMessagesResponse, SettleOutcome, retry_policy,
};
use sluice_proto::v1::{PurgeDeadLettersRequest, purge_dead_letters_request};
use sluice_proto::{Error, ErrorCode, error_of};
use tonic::transport::Channel;

use super::cluster::{Cluster, connect};

const TOPIC: &str = "orders";

/// Few offsets partitions, frequent checkpoints, and retry leases of `lease_ms`.
fn small_groups(config: &mut BrokerConfig, lease_ms: u64) {
    config.groups.offsets_partitions = 3;
    config.groups.heartbeat_interval_ms = 100;
    config.groups.retry_lease_ms = lease_ms;
    config.groups.checkpoint_interval_records = sluice_broker::GroupConfig::MIN_CHECKPOINT_INTERVAL_RECORDS;
}

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn code(error: Option<&Error>) -> ErrorCode {
    error_of(error).error_code()
}

/// An answer carrying an error.
trait Answered {
    fn error(&self) -> Option<Error>;
}

macro_rules! answered {
    ($($t:ty),*) => {$(
        impl Answered for $t {
            fn error(&self) -> Option<Error> {
                self.error.clone()
            }
        }
    )*};
}
answered!(
    sluice_proto::v1::GroupHeartbeatResponse,
    sluice_proto::v1::SetRetryPolicyResponse,
    SettleMessagesResponse,
    PollRetriesResponse,
    DescribeRetriesResponse,
    sluice_proto::v1::RedriveDeadLettersResponse,
    sluice_proto::v1::PurgeDeadLettersResponse
);

/// A member of one group, as a consumer keeps it, with the calls it makes to its coordinator.
struct Member {
    group: String,
    id: String,
    epoch: i32,
}

impl Member {
    /// Joins `group` (the only member: it owns every partition of the topic).
    async fn join(cluster: &Cluster, group: &str) -> Member {
        let mut m = Member { group: group.into(), id: format!("{group}-member"), epoch: 0 };
        let request = GroupHeartbeatRequest {
            group: group.into(),
            member_id: m.id.clone(),
            topics: vec![TOPIC.into()],
            session_timeout_ms: 120_000,
            ..GroupHeartbeatRequest::default()
        };
        let answer = m.ok(cluster, request, |mut c, r| async move { c.group_heartbeat(r).await }).await;
        m.epoch = answer.member_epoch;
        m
    }

    /// The group's coordinator, as some broker names it.
    async fn coordinator(&self, cluster: &Cluster) -> Option<GroupsClient<Channel>> {
        for b in &cluster.brokers {
            let mut client = groups_client(&b.client_addr().to_string());
            let request = FindCoordinatorRequest { group: self.group.clone() };
            let Ok(answer) = client.find_coordinator(request).await.map(tonic::Response::into_inner) else { continue };
            if let (ErrorCode::Ok, Some(c)) = (code(answer.error.as_ref()), answer.coordinator) {
                return Some(groups_client(&c.client_address));
            }
        }
        None
    }

    /// The node id of the group's coordinator, as some broker names it.
    async fn coordinator_node(&self, cluster: &Cluster) -> u64 {
        self.coordinator_at(cluster).await.0
    }

    /// The node id of the group's coordinator and the `__consumer_offsets` partition holding
    /// the group, as some broker names them.
    async fn coordinator_at(&self, cluster: &Cluster) -> (u64, u32) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for b in &cluster.brokers {
                let mut client = groups_client(&b.client_addr().to_string());
                let request = FindCoordinatorRequest { group: self.group.clone() };
                let Ok(answer) = client.find_coordinator(request).await.map(tonic::Response::into_inner) else {
                    continue;
                };
                if let Some(c) = answer.coordinator.filter(|_| code(answer.error.as_ref()) == ErrorCode::Ok) {
                    return (c.node_id, answer.partition);
                }
            }
            assert!(Instant::now() < deadline, "no broker names the coordinator of {}", self.group);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `request` with `rpc` to the coordinator until it answers with a code that is not
    /// retriable; that code and the answer.
    async fn ask<Q, R, F, Fut>(&self, cluster: &Cluster, request: Q, rpc: F) -> (ErrorCode, R)
    where
        Q: Clone,
        R: Answered,
        F: Fn(GroupsClient<Channel>, Q) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        self.call(cluster, |c| {
            let answer = rpc(c, request.clone());
            async move {
                let a = answer.await.ok()?.into_inner();
                Some((a.error(), a))
            }
        })
        .await
    }

    /// [`Member::ask`], expecting success.
    async fn ok<Q, R, F, Fut>(&self, cluster: &Cluster, request: Q, rpc: F) -> R
    where
        Q: Clone,
        R: Answered,
        F: Fn(GroupsClient<Channel>, Q) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let (c, answer) = self.ask(cluster, request, rpc).await;
        assert_eq!(c, ErrorCode::Ok, "{:?}", answer.error());
        answer
    }

    /// Sends `call` to the coordinator until it answers with a code that is not retriable.
    async fn call<T, F, Fut>(&self, cluster: &Cluster, mut call: F) -> (ErrorCode, T)
    where
        F: FnMut(GroupsClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Option<(Option<Error>, T)>>,
    {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(client) = self.coordinator(cluster).await
                && let Some((e, t)) = call(client).await
                && !code(e.as_ref()).is_retriable()
            {
                return (code(e.as_ref()), t);
            }
            assert!(Instant::now() < deadline, "the coordinator of {} never answered", self.group);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn set_policy(&self, cluster: &Cluster, policy: RetryPolicy) -> ErrorCode {
        let request =
            SetRetryPolicyRequest { group: self.group.clone(), policy: Some(policy), member_id: self.id.clone() };
        self.ask(cluster, request, |mut c, r| async move { c.set_retry_policy(r).await }).await.0
    }

    async fn settle(&self, cluster: &Cluster, settles: Vec<Settle>) -> SettleMessagesResponse {
        let request = SettleMessagesRequest {
            group: self.group.clone(),
            member_id: self.id.clone(),
            member_epoch: self.epoch,
            settles,
        };
        self.ok(cluster, request, |mut c, r| async move { c.settle_messages(r).await }).await
    }

    async fn poll(&self, cluster: &Cluster, max_wait_ms: u32) -> PollRetriesResponse {
        let request = PollRetriesRequest {
            group: self.group.clone(),
            member_id: self.id.clone(),
            member_epoch: self.epoch,
            max_messages: 100,
            max_wait_ms,
        };
        self.ok(cluster, request, |mut c, r| async move { c.poll_retries(r).await }).await
    }

    /// Polls until `want` retries came back, checking each against its due time on arrival;
    /// their (offset, attempt), sorted.
    async fn poll_until(&self, cluster: &Cluster, want: usize) -> Vec<(u64, u32)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got = Vec::new();
        while got.len() < want {
            for r in self.poll(cluster, 1_000).await.retries {
                let now = wall_ms();
                assert!(
                    now >= r.due_ms,
                    "offset {} attempt {} handed out at {now}, before {}",
                    r.offset,
                    r.attempt,
                    r.due_ms
                );
                got.push((r.offset, r.attempt));
            }
            if Instant::now() >= deadline {
                let described = self.describe(cluster).await;
                panic!("only {got:?} of {want} retries came back; the group's retries: {described:?}");
            }
        }
        got.sort_unstable();
        got
    }

    async fn describe(&self, cluster: &Cluster) -> DescribeRetriesResponse {
        let request = DescribeRetriesRequest { group: self.group.clone() };
        self.ok(cluster, request, |mut c, r| async move { c.describe_retries(r).await }).await
    }

    async fn purge_before_now(&self, cluster: &Cluster) -> u64 {
        let before = Some(purge_dead_letters_request::Before::TimestampMs(wall_ms() as i64));
        let request = PurgeDeadLettersRequest { group: self.group.clone(), before };
        self.ok(cluster, request, |mut c, r| async move { c.purge_dead_letters(r).await }).await.purge_offset
    }

    async fn redrive(&self, cluster: &Cluster) -> u32 {
        let request = RedriveDeadLettersRequest { group: self.group.clone(), max_messages: 0 };
        self.ok(cluster, request, |mut c, r| async move { c.redrive_dead_letters(r).await }).await.redriven
    }

    /// Waits until every reserved dead letter is written; then the DLQ's entries, by origin offset.
    async fn dead_letters(&self, cluster: &Cluster) -> BTreeMap<u64, Vec<BTreeMap<String, String>>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.describe(cluster).await.dead_letters_pending > 0 {
            assert!(Instant::now() < deadline, "dead letters of {} never written", self.group);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut by_offset: BTreeMap<u64, Vec<BTreeMap<String, String>>> = BTreeMap::new();
        for record in fetch_all(cluster, &format!("{}.dlq", self.group)).await {
            let props: BTreeMap<String, String> = record.properties.into_iter().collect();
            let offset = props["sluice.dlq.offset"].parse().unwrap();
            by_offset.entry(offset).or_default().push(props);
        }
        by_offset
    }
}

fn groups_client(address: &str) -> GroupsClient<Channel> {
    let endpoint = Channel::from_shared(format!("http://{address}")).expect("a valid address");
    GroupsClient::new(endpoint.timeout(Duration::from_secs(40)).connect_lazy())
}

fn ladder(steps_ms: Vec<u64>, max_attempts: u32, key_ordered: bool) -> RetryPolicy {
    RetryPolicy { backoff: Some(retry_policy::Backoff::Ladder(LadderBackoff { steps_ms })), max_attempts, key_ordered }
}

fn settle(offset: u64, attempt: u32, outcome: SettleOutcome) -> Settle {
    Settle {
        topic: TOPIC.into(),
        partition: 0,
        offset,
        attempt,
        outcome: outcome as i32,
        reason: format!("failed attempt {attempt}"),
        ..Settle::default()
    }
}

/// A cluster with `TOPIC` (one partition) holding `messages` messages with keys `k0`, `k1`, …,
/// whose retry leases last `lease_ms`.
async fn cluster_with_messages(messages: u64, lease_ms: u64) -> Cluster {
    let cluster = Cluster::start_adjusted(3, |c| small_groups(c, lease_ms)).await;
    cluster
        .wait_for(Duration::from_secs(20), "every broker registered and live", |c| {
            c.brokers.iter().all(|b| b.controller().metadata().read(|m| m.live_brokers().len() == 3))
        })
        .await;
    let create = ControllerCommand::CreateTopic { name: TOPIC.into(), config: TopicConfig::new(1, 3) };
    assert!(matches!(cluster.propose(&create).await.into_result().unwrap(), Applied::TopicCreated { .. }));
    let mut batch = BatchBuilder::new(ProducerStamp::NONE, 4096);
    for i in 0..messages {
        let record = Record {
            key: Some(format!("k{i}").into()),
            tag: Some("t".into()),
            properties: vec![("n".into(), i.to_string())],
            ..Record::new(format!("message {i}"), 1_000 + i as i64)
        };
        batch.push(&record);
    }
    produce(&cluster, batch.finish()).await;
    cluster
}

async fn produce(cluster: &Cluster, batch: bytes::Bytes) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for b in &cluster.brokers {
            let mut client = connect(&b.client_addr().to_string()).await;
            let request =
                ProduceRequest { topic: TOPIC.into(), partition: 0, batch: batch.clone(), ..Default::default() };
            if client.produce(request).await.is_ok_and(|a| code(a.into_inner().error.as_ref()) == ErrorCode::Ok) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "no leader of {TOPIC} accepted the batch");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every record of partition 0 of `topic`, read from its leader.
async fn fetch_all(cluster: &Cluster, topic: &str) -> Vec<Record> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for b in &cluster.brokers {
            let mut client = connect(&b.client_addr().to_string()).await;
            let request = FetchRequest { topic: topic.into(), partition: 0, offset: 0, ..Default::default() };
            let Ok(answer) = client.fetch(request).await.map(tonic::Response::into_inner) else { continue };
            if code(answer.error.as_ref()) != ErrorCode::Ok {
                continue;
            }
            let records = answer.batches.iter().flat_map(|b| {
                let batch = RecordBatch::parse(b.batch.clone()).unwrap();
                batch.records().map(|r| r.unwrap().to_record()).collect::<Vec<_>>()
            });
            return records.collect();
        }
        assert!(Instant::now() < deadline, "no leader of {topic} answered a fetch");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_nacks_rejects_and_redrives_then_retries_come_after_their_backoff_and_dead_letters_once() {
    let cluster = cluster_with_messages(4, 1_500).await;
    let m = Member::join(&cluster, "billing").await;
    assert_eq!(m.set_policy(&cluster, ladder(vec![400, 400], 3, false)).await, ErrorCode::Ok);
    let other = m.set_policy(&cluster, ladder(vec![1_000], 5, false)).await;
    assert_eq!(other, ErrorCode::RetryPolicyMismatch, "a member naming another policy is refused");

    tracing::info!("--- a nack: back after the backoff as attempt 2; a stale settle is ignored");
    let nacked_at = wall_ms();
    m.settle(&cluster, vec![settle(0, 1, SettleOutcome::Nack)]).await;
    let back = m.poll_until(&cluster, 1).await;
    assert_eq!(back, [(0, 2)]);
    assert!(wall_ms() >= nacked_at + 400, "back before its 400 ms backoff");
    let stale = m.settle(&cluster, vec![settle(0, 1, SettleOutcome::Nack)]).await;
    assert_eq!(stale.ignored, 1);

    tracing::info!("--- attempts 2 and 3 fail: exactly one dead letter, with where it came from");
    m.settle(&cluster, vec![settle(0, 2, SettleOutcome::Nack)]).await;
    assert_eq!(m.poll_until(&cluster, 1).await, [(0, 3)]);
    let last = m.settle(&cluster, vec![settle(0, 3, SettleOutcome::Nack)]).await;
    assert_eq!(last.dead_lettered, 1);
    tracing::info!("--- a reject goes straight to the dead-letter queue");
    assert_eq!(m.settle(&cluster, vec![settle(1, 1, SettleOutcome::Reject)]).await.dead_lettered, 1);
    let dlq = m.dead_letters(&cluster).await;
    assert_eq!(dlq.keys().copied().collect::<Vec<_>>(), [0, 1], "{dlq:?}");
    assert!(dlq.values().all(|entries| entries.len() == 1), "each written once: {dlq:?}");
    let first = &dlq[&0][0];
    for (k, v) in [
        ("sluice.dlq.topic", TOPIC),
        ("sluice.dlq.partition", "0"),
        ("sluice.dlq.group", "billing"),
        ("sluice.dlq.attempts", "3"),
        ("sluice.dlq.reason", "failed attempt 3"),
        ("n", "0"),
    ] {
        assert_eq!(first.get(k).map(String::as_str), Some(v), "{k} of {first:?}");
    }
    let failures = (
        first["sluice.dlq.first_failure_ms"].parse::<u64>().unwrap(),
        first["sluice.dlq.last_failure_ms"].parse::<u64>().unwrap(),
    );
    assert!(failures.0 >= nacked_at && failures.1 >= failures.0 + 800, "{failures:?}");
    assert_eq!(dlq[&1][0]["sluice.dlq.attempts"], "1");
    let dlq_records = fetch_all(&cluster, "billing.dlq").await;
    assert_eq!((dlq_records[0].key.as_deref(), &dlq_records[0].value[..]), (Some(&b"k0"[..]), &b"message 0"[..]));
    assert_eq!(m.describe(&cluster).await.waiting, 0);

    tracing::info!("--- redriving twice delivers the dead letters once, at attempt 1");
    assert_eq!(m.redrive(&cluster).await, 2);
    assert_eq!(m.redrive(&cluster).await, 0, "the cursor moved past them");
    assert_eq!(m.poll_until(&cluster, 2).await, [(0, 1), (1, 1)]);

    tracing::info!("--- not settled within their lease: a failed attempt each, back as attempt 2");
    assert_eq!(m.poll_until(&cluster, 2).await, [(0, 2), (1, 2)]);
    m.settle(&cluster, vec![settle(0, 2, SettleOutcome::Ack), settle(1, 2, SettleOutcome::Ack)]).await;
    assert_eq!(m.describe(&cluster).await.waiting, 0);
    assert!(m.poll(&cluster, 300).await.retries.is_empty(), "nothing more comes back");

    tracing::info!("--- the coordinator's metrics count what happened");
    let node = m.coordinator_node(&cluster).await;
    let b = cluster.brokers.iter().find(|b| b.config().node_id == node).unwrap();
    let metrics = super::groups::scrape(b.metrics_addr().unwrap()).await;
    for series in [
        "sluice_group_retry_waiting_messages{group=\"billing\"} 0",
        "sluice_group_dlq_pending_messages{group=\"billing\"} 0",
        "sluice_group_dead_lettered_messages_total{group=\"billing\"} 2",
        "sluice_group_dlq_written_messages_total{group=\"billing\"} 2",
        "sluice_group_retries_total{group=\"billing\",attempt=\"1\"} 2",
        "sluice_group_retries_total{group=\"billing\",attempt=\"2\"} 3",
        "sluice_group_retries_total{group=\"billing\",attempt=\"3\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} missing from the coordinator's metrics");
    }

    tracing::info!("--- a purge before now: the next dead letter is skipped by redrives");
    assert_eq!(m.settle(&cluster, vec![settle(2, 1, SettleOutcome::Reject)]).await.dead_lettered, 1);
    assert_eq!(m.dead_letters(&cluster).await.len(), 3);
    assert_eq!(m.purge_before_now(&cluster).await, 3, "every entry written so far");
    assert_eq!(m.redrive(&cluster).await, 0);

    tracing::info!("--- a key-ordered group: a nacked key's parked message waits for its head");
    let k = Member::join(&cluster, "ordered").await;
    assert_eq!(k.set_policy(&cluster, ladder(vec![300], 5, true)).await, ErrorCode::Ok);
    let keyed = |offset, attempt, outcome| Settle { key_hash: Some(7), ..settle(offset, attempt, outcome) };
    k.settle(&cluster, vec![keyed(2, 1, SettleOutcome::Nack), keyed(3, 1, SettleOutcome::Park)]).await;
    let first = k.poll(&cluster, 0).await;
    assert_eq!(first.blocked.iter().map(|b| b.key_hashes.clone()).collect::<Vec<_>>(), [vec![7]]);
    assert_eq!(k.poll_until(&cluster, 1).await, [(2, 2)], "only the head comes back");
    assert!(k.poll(&cluster, 500).await.retries.is_empty(), "the parked one waits while its head is out");
    k.settle(&cluster, vec![keyed(2, 2, SettleOutcome::Ack)]).await;
    assert_eq!(k.poll_until(&cluster, 1).await, [(3, 1)], "due once its head is acked");
    k.settle(&cluster, vec![keyed(3, 1, SettleOutcome::Ack)]).await;
    assert!(k.poll(&cluster, 0).await.blocked.is_empty(), "the key flows again");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_the_coordinator_stops_or_every_broker_restarts_then_no_retry_comes_early_none_is_lost_and_no_dead_letter_is_written_twice()
 {
    let mut cluster = cluster_with_messages(6, 30_000).await;
    let m = Member::join(&cluster, "audit").await;
    assert_eq!(m.set_policy(&cluster, ladder(vec![3_000], 2, false)).await, ErrorCode::Ok);

    tracing::info!("--- enough retries for a checkpoint of the group, and the log before it trimmed");
    let many: Vec<Settle> = (100..220).map(|offset| settle(offset, 1, SettleOutcome::Nack)).collect();
    m.settle(&cluster, many).await;
    let (node, partition) = m.coordinator_at(&cluster).await;
    let coordinator = cluster.brokers.iter().find(|b| b.config().node_id == node).unwrap();
    let offsets = coordinator.controller().metadata().read(|m| m.topic("__consumer_offsets").cloned()).unwrap();
    let log_start = coordinator.partitions().log_start(offsets.partitions[partition as usize].group_id).unwrap();
    cluster
        .wait_for(Duration::from_secs(30), "the offsets partition trimmed before a checkpoint", |_| {
            log_start.borrow().offset > 0
        })
        .await;

    tracing::info!("--- with a broker down the DLQ topic cannot be created (replication factor 3)");
    let other = cluster.brokers.iter().position(|b| b.config().node_id != node).unwrap();
    cluster.stop_broker(other).await;
    cluster
        .wait_for(Duration::from_secs(30), "the others to see two live brokers", |c| {
            c.brokers.iter().all(|b| b.controller().metadata().read(|m| m.live_brokers().len() == 2))
        })
        .await;
    let nacks = (0..4).map(|offset| settle(offset, 1, SettleOutcome::Nack));
    let rejects = (4..6).map(|offset| settle(offset, 1, SettleOutcome::Reject));
    let nacked_at = wall_ms();
    let answer = m.settle(&cluster, nacks.chain(rejects).collect()).await;
    assert_eq!(answer.dead_lettered, 2);
    assert_eq!(m.describe(&cluster).await.dead_letters_pending, 2, "reserved, not written");

    tracing::info!("--- the broker comes back and the coordinator's broker stops");
    cluster.start_broker(other).await;
    let node = m.coordinator_node(&cluster).await;
    let position = cluster.brokers.iter().position(|b| b.config().node_id == node).unwrap();
    cluster.stop_broker(position).await;

    tracing::info!("--- another coordinates the group: every retry comes back, none before its time");
    let back = m.poll_until(&cluster, 124).await;
    let expected: Vec<(u64, u32)> = (0..4).chain(100..220).map(|offset| (offset, 2)).collect();
    assert_eq!(back, expected, "none lost, though the log before the checkpoint was trimmed");
    assert!(wall_ms() >= nacked_at + 3_000, "a retry came before its 3 s backoff");
    let acks = back.iter().map(|&(offset, attempt)| settle(offset, attempt, SettleOutcome::Ack)).collect();
    assert_eq!(m.settle(&cluster, acks).await.ignored, 0, "settled within their lease");

    tracing::info!("--- with every broker back, each reserved dead letter is written once");
    cluster.start_broker(position).await;
    let dlq = m.dead_letters(&cluster).await;
    assert_eq!(dlq.keys().copied().collect::<Vec<_>>(), [4, 5], "{dlq:?}");
    assert!(dlq.values().all(|entries| entries.len() == 1), "no dead letter written twice: {dlq:?}");

    tracing::info!("--- every broker restarts: a retry waiting with its own 8 s wait comes back after it");
    let mut late = settle(10, 1, SettleOutcome::Nack);
    late.delay_ms = Some(8_000);
    let nacked_at = wall_ms();
    m.settle(&cluster, vec![late]).await;
    cluster.restart_all().await;
    assert_eq!(m.poll_until(&cluster, 1).await, [(10, 2)]);
    assert!(wall_ms() >= nacked_at + 8_000, "a retry came before its 8 s wait");
    cluster.shutdown().await;
}
