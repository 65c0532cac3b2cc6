//! [`Client`]: the connection to a cluster shared by producers, consumers and admins. It keeps
//! one lazily connected tonic channel per broker and a metadata cache, and routes every call:
//! partition calls to the partition's leader, admin writes to the controller (metadata goes to
//! the controller first, then any broker), retrying what the protocol calls retriable.

use crate::Isolation;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use sluice_proto::v1::{
    self, groups_client::GroupsClient, sluice_client::SluiceClient, transactions_client::TransactionsClient,
};
use sluice_proto::{ErrorCode, error_of};
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

use crate::config::{ClientConfig, ConsumerConfig, ProducerConfig, SeekTo};
use crate::error::{Error, Result};
use crate::metadata::{ClusterMetadata, TopicInfo};
use crate::{Admin, Consumer, Producer};

/// The generated gRPC client over one broker's channel.
pub(crate) type Rpc = SluiceClient<Channel>;

/// The generated consumer-group gRPC client over the same channel as a broker's [`Rpc`].
pub(crate) type GroupsRpc = GroupsClient<Channel>;

/// The generated transactions gRPC client over the same channel as a broker's [`Rpc`].
pub(crate) type TxnRpc = TransactionsClient<Channel>;

/// The largest gRPC message accepted or sent: a fetch returns at least one whole batch even if
/// it is larger than asked for, so this is well above any batch a producer builds.
const MAX_GRPC_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// After this many consecutive redirects to a named leader, retries pause as for any other
/// error, so two brokers that name each other cannot make the client spin.
const MAX_IMMEDIATE_REDIRECTS: u32 = 3;

/// A connection to a Sluice cluster. Cheap to clone; clones share channels and metadata.
///
/// Create one with [`Client::connect`], then make producers, consumers and admins from it.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    metadata: RwLock<Arc<ClusterMetadata>>,
    channels: Mutex<HashMap<String, Rpc>>,
    /// The `Groups` service of each broker in `channels`, over the same connection.
    groups: Mutex<HashMap<String, GroupsRpc>>,
    txns: Mutex<HashMap<String, TxnRpc>>,
    /// Held while a metadata refresh runs, so concurrent callers share one.
    refresh_lock: tokio::sync::Mutex<()>,
    refresher: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.refresher.get_mut().map(Option::take).ok().flatten() {
            task.abort();
        }
    }
}

/// Where a call must go.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Route<'a> {
    /// The controller leader.
    Controller,
    /// The leader of one partition.
    Leader {
        /// The topic.
        topic: &'a str,
        /// The partition.
        partition: u32,
    },
}

/// One routed, retried call: what it is (for error messages), where it goes, until when it
/// is retried, and how long one attempt may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call<'a> {
    pub kind: &'static str,
    pub route: Route<'a>,
    pub deadline: Instant,
    pub attempt_timeout: Duration,
}

/// Responses that carry the protocol's `Error`.
pub(crate) trait Answer {
    fn error(&self) -> Option<&sluice_proto::Error>;
}

macro_rules! answers {
    ($($t:ty),*) => {$(
        impl Answer for $t {
            fn error(&self) -> Option<&sluice_proto::Error> {
                self.error.as_ref()
            }
        }
    )*};
}
answers!(
    v1::MetadataResponse,
    v1::CreateTopicResponse,
    v1::AlterTopicConfigResponse,
    v1::DeleteTopicResponse,
    v1::InitProducerResponse,
    v1::ProduceResponse,
    v1::FetchResponse,
    v1::ListOffsetsResponse,
    v1::CancelDelayedResponse,
    v1::ListDelayedResponse,
    v1::CreateScheduleResponse,
    v1::DeleteScheduleResponse,
    v1::ListSchedulesResponse
);

/// How one attempt failed.
enum Failure {
    /// Not worth repeating.
    Fatal(Error),
    /// Worth repeating; `leader` is where the broker said to go instead.
    Retry { error: Error, leader: Option<String> },
}

/// Where a route points right now.
enum Target {
    Address(String),
    /// The route exists but has no known broker (leader election, controller unknown).
    Unknown,
    /// The topic or partition does not exist in the metadata.
    Missing(Error),
}

impl Client {
    /// Connects to the cluster: asks the bootstrap brokers for metadata, one after another,
    /// until one answers. Fails with [`Error::NoBroker`] if none does.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        config.validate()?;
        let client = Client::unconnected(config);
        client.refresh_metadata().await?;
        let task = tokio::spawn(refresh_periodically(Arc::downgrade(&client.inner)));
        *client.inner.refresher.lock().expect("refresher lock") = Some(task);
        Ok(client)
    }

    /// The settings this client was made with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The cached metadata (refreshed on routing errors and every `metadata_max_age`).
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        Arc::clone(&self.inner.metadata.read().expect("metadata lock"))
    }

    /// Fetches fresh metadata now, preferring the controller leader, then live brokers, then
    /// the bootstrap addresses.
    pub async fn refresh_metadata(&self) -> Result<Arc<ClusterMetadata>> {
        self.refresh_after(Instant::now()).await
    }

    /// A producer with these settings (it asks the controller for a producer id when
    /// idempotence is on).
    pub async fn producer(&self, config: ProducerConfig) -> Result<Producer> {
        Producer::new(self.clone(), config).await
    }

    /// A consumer with these settings; assign it partitions before polling.
    pub fn consumer(&self, config: ConsumerConfig) -> Result<Consumer> {
        Consumer::new(self.clone(), config)
    }

    /// Topic and cluster administration.
    pub fn admin(&self) -> Admin {
        Admin::new(self.clone())
    }

    /// A topic from the cache, refreshing once if it is not there.
    pub(crate) async fn topic(&self, name: &str) -> Result<Arc<TopicInfo>> {
        if let Some(topic) = self.metadata().topics.get(name) {
            return Ok(Arc::clone(topic));
        }
        let fresh = self.refresh_metadata().await?;
        fresh.topics.get(name).cloned().ok_or_else(|| unknown_topic(name))
    }

    /// A partition's offset at `at`: ListOffsets on its leader (an explicit offset is
    /// returned as it is).
    pub(crate) async fn list_offset(
        &self,
        topic: &str,
        partition: u32,
        at: SeekTo,
        isolation: Isolation,
    ) -> Result<u64> {
        use v1::list_offsets_request::At;
        let at = match at {
            SeekTo::Offset(offset) => return Ok(offset),
            SeekTo::Earliest => At::Earliest(v1::Empty {}),
            SeekTo::Latest => At::Latest(v1::Empty {}),
            SeekTo::Timestamp(ms) => At::TimestampMs(ms),
        };
        let call = self.call("ListOffsets", Route::Leader { topic, partition });
        let answer = self
            .execute(call, |mut rpc| {
                let request = v1::ListOffsetsRequest {
                    topic: topic.to_owned(),
                    partition,
                    at: Some(at),
                    isolation: isolation.wire().into(),
                };
                async move { rpc.list_offsets(request).await }
            })
            .await?;
        Ok(answer.offset)
    }

    /// A call whose retries end `operation_timeout` from now and whose attempts take at most
    /// `request_timeout`.
    pub(crate) fn call<'a>(&self, kind: &'static str, route: Route<'a>) -> Call<'a> {
        let config = &self.inner.config;
        Call {
            kind,
            route,
            deadline: Instant::now() + config.operation_timeout,
            attempt_timeout: config.request_timeout,
        }
    }

    /// Sends `op` along `call.route` until it succeeds, fails for good, or `call.deadline`
    /// passes. Retriable broker codes and transport failures are retried: at once at a leader
    /// the broker named, otherwise after refreshing metadata and backing off.
    pub(crate) async fn execute<R, F, Fut>(&self, call: Call<'_>, op: F) -> Result<R>
    where
        R: Answer,
        F: FnMut(Rpc) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
    {
        let answer = self.execute_answer(call, op).await?;
        let error = error_of(answer.error());
        if error.is_ok() { Ok(answer) } else { Err(Error::from_proto(&error)) }
    }

    /// Like [`Client::execute`], but an answer carrying a non-retriable error code is returned
    /// as it is, for callers that need the rest of it (a fetch's offset range).
    pub(crate) async fn execute_answer<R, F, Fut>(&self, call: Call<'_>, mut op: F) -> Result<R>
    where
        R: Answer,
        F: FnMut(Rpc) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
    {
        let started = Instant::now();
        let mut backoff = self.inner.config.retry_backoff_min;
        let mut redirect: Option<String> = None;
        let mut redirects = 0;
        loop {
            let attempted_at = Instant::now();
            let target = match redirect.take() {
                Some(address) => Target::Address(address),
                None => self.target(call.route),
            };
            let failure = match target {
                Target::Address(address) => match self.attempt(&address, &call, &mut op).await {
                    Ok(answer) => return Ok(answer),
                    Err(failure) => failure,
                },
                Target::Missing(error) if self.metadata().fetched_at > started => return Err(error),
                Target::Missing(error) => Failure::Retry { error, leader: None },
                Target::Unknown => Failure::Retry { error: no_route(call.route), leader: None },
            };
            let error = match failure {
                Failure::Fatal(error) => return Err(error),
                Failure::Retry { error, leader } => {
                    redirect = leader;
                    error
                }
            };
            let pause = if redirect.is_some() && redirects < MAX_IMMEDIATE_REDIRECTS {
                redirects += 1;
                Duration::ZERO
            } else {
                redirects = 0;
                redirect = None;
                if let Err(e) = self.refresh_after(attempted_at).await {
                    tracing::debug!(error = %e, "metadata refresh failed; retrying on the old metadata");
                }
                let pause = backoff;
                backoff = (backoff * 2).min(self.inner.config.retry_backoff_max);
                pause
            };
            if Instant::now() + pause >= call.deadline {
                let operation = describe(&call);
                return Err(Error::Timeout { operation, elapsed: started.elapsed(), last: Box::new(error) });
            }
            tokio::time::sleep(pause).await;
        }
    }

    async fn attempt<R, F, Fut>(&self, address: &str, call: &Call<'_>, op: &mut F) -> Result<R, Failure>
    where
        R: Answer,
        F: FnMut(Rpc) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
    {
        let rpc = self.rpc(address).map_err(Failure::Fatal)?;
        let limit = call.attempt_timeout.min(call.deadline.saturating_duration_since(Instant::now()));
        let answer = match tokio::time::timeout(limit, op(rpc)).await {
            Err(_) => {
                let message = format!("no answer within {} ms", limit.as_millis());
                let error =
                    Error::Transport { address: address.to_owned(), code: tonic::Code::DeadlineExceeded, message };
                return Err(Failure::Retry { error, leader: None });
            }
            Ok(Err(status)) => return Err(classify_status(address, &status)),
            Ok(Ok(response)) => response.into_inner(),
        };
        let error = error_of(answer.error());
        let code = error.error_code();
        if !code.is_retriable() {
            return Ok(answer);
        }
        let leader = match code {
            ErrorCode::NotLeader | ErrorCode::NotController => {
                error.leader.as_ref().map(|l| l.client_address.clone()).filter(|a| !a.is_empty() && a != address)
            }
            _ => None,
        };
        Err(Failure::Retry { error: Error::from_proto(&error), leader })
    }

    fn target(&self, route: Route<'_>) -> Target {
        let metadata = self.metadata();
        match route {
            Route::Controller => {
                metadata.controller_address().map_or(Target::Unknown, |a| Target::Address(a.to_owned()))
            }
            Route::Leader { topic, partition } => {
                let Some(info) = metadata.topics.get(topic) else { return Target::Missing(unknown_topic(topic)) };
                let Some(p) = info.partition(partition) else {
                    let message = format!(
                        "topic {topic} has {} partitions; there is no partition {partition}",
                        info.partitions.len()
                    );
                    return Target::Missing(Error::broker(ErrorCode::UnknownPartition, message));
                };
                p.leader
                    .and_then(|leader| metadata.broker_address(leader))
                    .map_or(Target::Unknown, |a| Target::Address(a.to_owned()))
            }
        }
    }

    /// The broker `route` leads to now, refreshing metadata (and pausing between attempts)
    /// while it has no known broker, until `deadline`. For callers that keep a stream open to
    /// the route instead of making routed calls.
    pub(crate) async fn route_address(&self, route: Route<'_>, deadline: Instant) -> Result<String> {
        let started = Instant::now();
        let mut backoff = self.inner.config.retry_backoff_min;
        loop {
            let attempted_at = Instant::now();
            let error = match self.target(route) {
                Target::Address(address) => return Ok(address),
                Target::Missing(error) if self.metadata().fetched_at > started => return Err(error),
                Target::Missing(error) => error,
                Target::Unknown => no_route(route),
            };
            if let Err(e) = self.refresh_after(attempted_at).await {
                tracing::debug!(error = %e, "metadata refresh failed; retrying on the old metadata");
            }
            if !matches!(self.target(route), Target::Unknown) {
                continue;
            }
            if Instant::now() + backoff >= deadline {
                let operation = describe(&self.call("opening a stream", route));
                return Err(Error::Timeout { operation, elapsed: started.elapsed(), last: Box::new(error) });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.inner.config.retry_backoff_max);
        }
    }

    /// The channel to `address`, created (unconnected) on first use.
    pub(crate) fn rpc(&self, address: &str) -> Result<Rpc> {
        let mut channels = self.inner.channels.lock().expect("channel map lock");
        if let Some(rpc) = channels.get(address) {
            return Ok(rpc.clone());
        }
        let config = &self.inner.config;
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| Error::InvalidArgument(format!("broker address {address:?} is not host:port: {e}")))?
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            // Keepalive detects a partitioned connection that would otherwise hang
            // (docs/ARCHITECTURE.md, D5).
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        let channel = endpoint.connect_lazy();
        let rpc = SluiceClient::new(channel.clone())
            .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES);
        channels.insert(address.to_owned(), rpc.clone());
        let groups = GroupsClient::new(channel.clone()).max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES);
        self.inner.groups.lock().expect("groups map lock").insert(address.to_owned(), groups);
        let txns = TransactionsClient::new(channel).max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES);
        self.inner.txns.lock().expect("txns map lock").insert(address.to_owned(), txns);
        Ok(rpc)
    }

    /// The transactions client of the broker at `address`, sharing its channel.
    pub(crate) fn txn_rpc(&self, address: &str) -> Result<TxnRpc> {
        if let Some(rpc) = self.inner.txns.lock().expect("txns map lock").get(address) {
            return Ok(rpc.clone());
        }
        self.rpc(address)?;
        Ok(self.inner.txns.lock().expect("txns map lock").get(address).cloned().expect("rpc() adds every client"))
    }

    /// The consumer-group client of the broker at `address`, sharing its channel.
    pub(crate) fn groups_rpc(&self, address: &str) -> Result<GroupsRpc> {
        if let Some(rpc) = self.inner.groups.lock().expect("groups map lock").get(address) {
            return Ok(rpc.clone());
        }
        self.rpc(address)?;
        Ok(self.inner.groups.lock().expect("groups map lock").get(address).cloned().expect("rpc() adds both clients"))
    }

    /// Refreshes metadata unless someone else already did after `seen`.
    pub(crate) async fn refresh_after(&self, seen: Instant) -> Result<Arc<ClusterMetadata>> {
        self.refresh_asking_last(seen, None).await
    }

    /// Like [`Client::refresh_after`], but asks the broker at `suspect` only if no other one
    /// answers. A leader that stopped answering may be cut off from the rest of the cluster, and
    /// then its metadata is stale: it may still name itself the partition's leader, and even the
    /// controller, while the others have elected new ones.
    pub(crate) async fn refresh_asking_last(
        &self,
        seen: Instant,
        suspect: Option<&str>,
    ) -> Result<Arc<ClusterMetadata>> {
        let _one_at_a_time = self.inner.refresh_lock.lock().await;
        let current = self.metadata();
        if current.fetched_at > seen {
            return Ok(current);
        }
        let fresh = Arc::new(self.fetch_metadata(&current, suspect, Vec::new()).await?);
        *self.inner.metadata.write().expect("metadata lock") = Arc::clone(&fresh);
        Ok(fresh)
    }

    /// The metadata of `topic` alone, asked of the cluster now; the cache is left as it is. A
    /// caller polling one topic (waiting for its leaders) then costs the broker that topic, not
    /// every partition of the cluster.
    pub(crate) async fn fetch_topic(&self, topic: &str) -> Result<Option<Arc<TopicInfo>>> {
        let current = self.metadata();
        let answer = self.fetch_metadata(&current, None, vec![topic.to_owned()]).await?;
        Ok(answer.topics.get(topic).cloned())
    }

    /// Asks the brokers `current` knows (controller first, `suspect` last) for the metadata of
    /// `topics` (empty: every topic) until one answers.
    async fn fetch_metadata(
        &self,
        current: &ClusterMetadata,
        suspect: Option<&str>,
        topics: Vec<String>,
    ) -> Result<ClusterMetadata> {
        let mut candidates: Vec<String> = current.controller_address().map(str::to_owned).into_iter().collect();
        let live = current.brokers.values().filter(|b| b.live).map(|b| b.address.clone());
        for address in live.chain(self.inner.config.bootstrap.iter().cloned()) {
            if !candidates.contains(&address) {
                candidates.push(address);
            }
        }
        if let Some(i) = suspect.and_then(|s| candidates.iter().position(|a| a == s)) {
            let last = candidates.remove(i);
            candidates.push(last);
        }
        let mut last_error = String::from("no address to try");
        for address in &candidates {
            let mut rpc = self.rpc(address)?;
            let request = v1::MetadataRequest { topics: topics.clone() };
            match tokio::time::timeout(self.inner.config.request_timeout, rpc.metadata(request)).await {
                Ok(Ok(response)) => {
                    let response = response.into_inner();
                    let error = error_of(response.error());
                    if error.is_ok() {
                        return Ok(ClusterMetadata::from_proto(&response));
                    }
                    last_error = format!("{address}: {}", Error::from_proto(&error));
                }
                Ok(Err(status)) => last_error = format!("{address}: {}", status.message()),
                Err(_) => last_error = format!("{address}: no answer within {:?}", self.inner.config.request_timeout),
            }
        }
        Err(Error::NoBroker { addresses: candidates.join(","), last_error })
    }
}

/// Keeps metadata younger than `metadata_max_age` while the client lives.
async fn refresh_periodically(client: Weak<Inner>) {
    loop {
        let Some(inner) = client.upgrade() else { return };
        let max_age = inner.config.metadata_max_age;
        let age = inner.metadata.read().expect("metadata lock").fetched_at.elapsed();
        drop(inner);
        if age < max_age {
            tokio::time::sleep(max_age - age).await;
            continue;
        }
        let Some(inner) = client.upgrade() else { return };
        if let Err(e) = (Client { inner }).refresh_metadata().await {
            tracing::debug!(error = %e, "periodic metadata refresh failed");
            tokio::time::sleep(max_age).await;
        }
    }
}

fn classify_status(address: &str, status: &tonic::Status) -> Failure {
    let error = Error::from_status(address, status);
    match status.code() {
        // The broker does not speak this protocol: retrying cannot help.
        tonic::Code::Unimplemented | tonic::Code::InvalidArgument => {
            Failure::Fatal(Error::Protocol { address: address.to_owned(), message: status.message().to_owned() })
        }
        _ => Failure::Retry { error, leader: None },
    }
}

pub(crate) fn unknown_topic(name: &str) -> Error {
    Error::broker(ErrorCode::UnknownTopic, format!("topic {name} does not exist"))
}

fn no_route(route: Route<'_>) -> Error {
    match route {
        Route::Controller => Error::broker(ErrorCode::NotController, "no controller leader is known"),
        Route::Leader { topic, partition } => {
            Error::broker(ErrorCode::NotLeader, format!("{topic}/{partition} has no leader yet"))
        }
    }
}

fn describe(call: &Call<'_>) -> String {
    match call.route {
        Route::Controller => format!("{} (at the controller)", call.kind),
        Route::Leader { topic, partition } => format!("{} on {topic}/{partition}", call.kind),
    }
}

impl Client {
    /// A client that has not talked to any broker yet (nor refreshes its metadata).
    pub(crate) fn unconnected(config: ClientConfig) -> Client {
        let inner = Arc::new(Inner {
            config,
            metadata: RwLock::new(Arc::new(ClusterMetadata::empty())),
            channels: Mutex::new(HashMap::new()),
            groups: Mutex::new(HashMap::new()),
            txns: Mutex::new(HashMap::new()),
            refresh_lock: tokio::sync::Mutex::new(()),
            refresher: Mutex::new(None),
        });
        Client { inner }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_errors_name_what_is_missing() {
        let e = no_route(Route::Leader { topic: "t", partition: 3 });
        assert_eq!(e.code(), Some(ErrorCode::NotLeader));
        assert!(e.to_string().contains("t/3 has no leader yet"), "{e}");
        let call = Call {
            kind: "Produce",
            route: Route::Leader { topic: "t", partition: 3 },
            deadline: Instant::now(),
            attempt_timeout: Duration::from_secs(1),
        };
        assert_eq!(describe(&call), "Produce on t/3");
    }

    #[test]
    fn unimplemented_is_fatal_and_unavailable_is_retried() {
        let fatal = classify_status("a:1", &tonic::Status::unimplemented("no such method"));
        assert!(matches!(fatal, Failure::Fatal(Error::Protocol { .. })));
        let retry = classify_status("a:1", &tonic::Status::unavailable("connection refused"));
        assert!(matches!(retry, Failure::Retry { error: Error::Transport { .. }, leader: None }));
    }
}
