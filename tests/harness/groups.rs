//! Consumer-group members as the tests run them: each [`Member`] is a `GroupConsumer` polling
//! in its own task, recording what it was given, until it is closed (it commits and leaves)
//! or crashed (its task is aborted: no commit, no leave, no heartbeat — as a SIGKILL would).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_client::{Client, GroupConsumer, GroupConsumerConfig, TopicPartition};
use sluice_proto::v1::groups_client::GroupsClient;
use sluice_proto::v1::{BrokerAddress, FindCoordinatorRequest};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// How long a member's poll waits: also how soon it notices it should stop.
const POLL_WAIT: Duration = Duration::from_millis(200);
/// How often [`eventually`] checks.
const CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// What a member has seen so far.
#[derive(Debug, Default, Clone)]
pub struct MemberView {
    /// Every record `poll` returned, as (partition, offset), in the order returned.
    pub records: Vec<(u32, u64)>,
    /// The partitions it owned after its last poll, in order.
    pub assignment: Vec<u32>,
    /// Errors `poll` returned (the member kept polling).
    pub errors: Vec<String>,
}

/// A group member polling in its own task.
#[derive(Debug)]
pub struct Member {
    /// A name for messages.
    pub name: String,
    member_id: String,
    stop: Arc<AtomicBool>,
    view: Arc<Mutex<MemberView>>,
    task: JoinHandle<GroupConsumer>,
}

impl Member {
    /// Joins `config.group` subscribed to `topic` and polls until closed or crashed. Panics
    /// if the member cannot join.
    pub async fn join(client: &Client, name: &str, config: GroupConsumerConfig, topic: &str) -> Member {
        let mut consumer = client.group_consumer(config).expect("a group consumer");
        consumer.subscribe(&[topic]).await.unwrap_or_else(|e| panic!("{name} cannot join: {e}"));
        let member_id = consumer.member_id();
        let stop = Arc::new(AtomicBool::new(false));
        let view = Arc::new(Mutex::new(MemberView::default()));
        let task = tokio::spawn(poll_until_stopped(consumer, Arc::clone(&stop), Arc::clone(&view)));
        Member { name: name.to_owned(), member_id, stop, view, task }
    }

    /// The member id it joined with.
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// What it has seen so far.
    pub fn view(&self) -> MemberView {
        self.view.lock().expect("member view lock").clone()
    }

    /// The partitions it owned after its last poll.
    pub fn assignment(&self) -> Vec<u32> {
        self.view().assignment
    }

    /// Stops polling, then closes the consumer (commit, leave); panics if closing fails.
    /// Returns what it saw.
    pub async fn close(self) -> MemberView {
        self.stop.store(true, Ordering::Relaxed);
        let consumer = self.task.await.unwrap_or_else(|e| panic!("{}'s poll task failed: {e}", self.name));
        consumer.close().await.unwrap_or_else(|e| panic!("{} did not close cleanly: {e}", self.name));
        self.view.lock().expect("member view lock").clone()
    }

    /// Kills the member as a crash would: its tasks are aborted mid-way, nothing is
    /// committed and the group is not told. Returns what it saw.
    pub async fn crash(self) -> MemberView {
        self.task.abort();
        let _ = self.task.await;
        self.view.lock().expect("member view lock").clone()
    }
}

async fn poll_until_stopped(
    mut consumer: GroupConsumer,
    stop: Arc<AtomicBool>,
    view: Arc<Mutex<MemberView>>,
) -> GroupConsumer {
    while !stop.load(Ordering::Relaxed) {
        let polled = consumer.poll(POLL_WAIT).await;
        let assignment: Vec<u32> = consumer.assignment().iter().map(TopicPartition::partition).collect();
        let mut view = view.lock().expect("member view lock");
        match polled {
            Ok(records) => view.records.extend(records.iter().map(|r| (r.partition(), r.offset()))),
            Err(e) => view.errors.push(e.to_string()),
        }
        view.assignment = assignment;
    }
    consumer
}

/// Calls `check` every 100 ms until it returns `Ok`, and returns what it held; panics with
/// `what` and the last `Err` (the state it was waiting on) if `limit` passes first.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(state) => state,
        };
        assert!(Instant::now() < deadline, "{what} did not happen within {limit:?}; last: {last}");
        tokio::time::sleep(CHECK_INTERVAL).await;
    }
}

/// `Err` describing the answer when `error` carries a code the protocol calls retriable (a
/// leader, controller or coordinator just elected, moving or loading), so that [`eventually`]
/// asks again; `Ok` for every other answer, success or refusal, which the test then judges.
pub fn unless_retriable(error: Option<&sluice_proto::Error>) -> Result<(), String> {
    let error = sluice_proto::error_of(error);
    if error.error_code().is_retriable() { Err(format!("retriable answer {error:?}")) } else { Ok(()) }
}

/// A `Groups` connection to `address`, made on first use.
pub fn groups_rpc(address: &str) -> GroupsClient<Channel> {
    GroupsClient::new(Channel::from_shared(format!("http://{address}")).expect("an address").connect_lazy())
}

/// The coordinator of `group`, asked of the broker at `broker` until it names one; transport
/// failures and retriable codes are asked again (the group's `__consumer_offsets` partition may
/// be electing its leader), any other refusal fails the test.
pub async fn find_coordinator(broker: &str, group: &str) -> BrokerAddress {
    let rpc = groups_rpc(broker);
    eventually(Duration::from_secs(60), &format!("{broker} to name the coordinator of {group}"), || {
        let mut rpc = rpc.clone();
        async move {
            let answer = rpc.find_coordinator(FindCoordinatorRequest { group: group.into() }).await;
            let answer = answer.map_err(|s| s.to_string())?.into_inner();
            unless_retriable(answer.error.as_ref())?;
            let error = sluice_proto::error_of(answer.error.as_ref());
            assert!(error.is_ok(), "FindCoordinator for {group} refused: {error:?}");
            Ok(answer.coordinator.expect("an OK FindCoordinator answer names the coordinator"))
        }
    })
    .await
}

/// Sends `op` to the coordinator of `group`, found through the broker at `broker` before every
/// attempt, until `op` returns `Ok`, and returns what it held; panics with `what` after 60 s.
/// `op` returns `Err` for a transport failure or a retriable code ([`unless_retriable`]): the
/// coordinator may have just been elected, be loading the group, or have moved.
pub async fn to_coordinator<T, F, Fut>(broker: &str, group: &str, what: &str, op: F) -> T
where
    F: Fn(GroupsClient<Channel>) -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    eventually(Duration::from_secs(60), what, || async {
        let coordinator = find_coordinator(broker, group).await;
        op(groups_rpc(&coordinator.client_address)).await
    })
    .await
}
