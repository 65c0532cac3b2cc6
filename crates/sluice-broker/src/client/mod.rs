//! The client API: the `sluice.client.v1.Sluice` gRPC service (`sluice-proto`,
//! `proto/client.proto`) every broker serves on its client address; docs/PROTOCOL.md describes
//! each call.
//!
//! - **Metadata** is answered by any broker from its applied controller metadata.
//! - **Admin writes** (create, alter and delete topic, producer ids) are proposed to the
//!   controller group; a broker that does not lead it answers `NOT_CONTROLLER` naming the leader.
//! - **Partition calls** (produce, fetch, list offsets) are served by the partition's leader; any
//!   other broker answers `NOT_LEADER` naming the leader it knows of. A produce is one Raft
//!   entry holding the producer's batch as sent; a fetch returns whole batches from the log
//!   as stored, below the high watermark, waiting on the partition's watermark watch when there
//!   is nothing new yet.
//!
//! Every outcome of a call that reached the broker's logic travels in the response's `Error`
//! with a stable code and a message that says what to do; gRPC statuses are left to transport
//! failures (the generated server's decoding limits, deadlines, connections).

mod admin;
mod alter;
mod delay;
mod early;
mod errors;
mod fetch;
mod markers;
mod metadata;
mod produce;
mod produce_stream;
mod recompress;
mod route;
mod schedule;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sluice_proto::v1::groups_server::GroupsServer;
use sluice_proto::v1::sluice_server::{Sluice, SluiceServer};
use sluice_proto::v1::transactions_server::TransactionsServer;
use sluice_proto::v1::{
    AlterTopicConfigRequest, AlterTopicConfigResponse, CancelDelayedRequest, CancelDelayedResponse,
    CreateScheduleRequest, CreateScheduleResponse, CreateTopicRequest, CreateTopicResponse, DeleteScheduleRequest,
    DeleteScheduleResponse, DeleteTopicRequest, DeleteTopicResponse, FetchRequest, FetchResponse, InitProducerRequest,
    InitProducerResponse, ListDelayedRequest, ListDelayedResponse, ListOffsetsRequest, ListOffsetsResponse,
    ListSchedulesRequest, ListSchedulesResponse, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse,
};
use tokio::sync::watch;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::config::{BrokerConfig, PeerConfig};
use crate::controller::ControllerGroup;
use crate::filters::FilterCache;
use crate::groups::GroupsService;
use crate::metrics::RequestMetrics;
use crate::partitions::Partitions;
use crate::txn::TxnService;

/// How long a produce waits for its batch to commit when the request does not say.
pub const DEFAULT_PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest commit wait a produce request may ask for.
pub const MAX_PRODUCE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long an admin write waits for the controller to commit it.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// A fetch's byte budget when the request does not say.
pub const DEFAULT_FETCH_MAX_BYTES: usize = 1024 * 1024;
/// The largest byte budget a fetch may ask for.
pub const MAX_FETCH_MAX_BYTES: usize = 64 * 1024 * 1024;
/// The longest a fetch may wait for data.
pub const MAX_FETCH_WAIT: Duration = Duration::from_secs(60);
/// Requests in flight on one client connection (long-polling fetches count); hyper's default
/// of 200 would make a consumer of many partitions queue behind its own idle polls.
const MAX_CONCURRENT_STREAMS: u32 = 4096;
/// Room in a request beyond the batch limit: the other fields need little, but a batch somewhat
/// over the limit should still be decoded and answered `MESSAGE_TOO_LARGE` with its size, not
/// cut off by gRPC. Requests larger still fail with a gRPC status.
const REQUEST_OVERHEAD_BYTES: usize = 1024 * 1024;

/// Binds the client listener on `addr` (port 0 picks a free one; see `TcpIncoming::local_addr`).
pub fn bind(addr: SocketAddr) -> io::Result<TcpIncoming> {
    Ok(TcpIncoming::bind(addr)?.with_nodelay(Some(true)))
}

/// Serves `service`, the consumer `groups` service and the `txns` service on `incoming` until `shutdown` resolves;
/// then stops accepting, lets the calls in flight finish (waiting fetches end at once: they
/// watch the same stop signal as the service) and returns.
pub async fn serve(
    incoming: TcpIncoming,
    service: ClientService,
    groups: GroupsService,
    txns: TxnService,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let max_request = service.max_batch_bytes as usize + REQUEST_OVERHEAD_BYTES;
    Server::builder()
        .tcp_nodelay(true)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(SluiceServer::new(service).max_decoding_message_size(max_request))
        .add_service(GroupsServer::new(groups))
        .add_service(TransactionsServer::new(txns))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// The client API of one broker. Clones share everything but the small settings.
#[derive(Clone)]
pub struct ClientService {
    node_id: u64,
    /// Configured brokers: their client addresses until they have registered.
    peers: Vec<PeerConfig>,
    max_batch_bytes: u32,
    /// Stamped into every produce this broker proposes as leader (with its clock), to bound the
    /// partition's producer table.
    producer_id_expiration_ms: u64,
    max_producers_per_partition: u32,
    /// The furthest ahead a delayed message may be due.
    max_delay_ms: u64,
    /// A replica that has not acknowledged its partition leader for this long counts as
    /// unreachable when a produce times out (`NOT_ENOUGH_REPLICAS` rather than `TIMEOUT`).
    replica_ack_window: Duration,
    /// A produce stream pipelines a batch only if a majority acknowledged the partition's
    /// leader within this long (half its lease), so the write is not refused for a lapsed lease.
    pipeline_lease_window: Duration,
    /// How fresh a leader's quorum lease must be for it to serve reads: the shortest partition
    /// election timeout, within which no other leader can have been elected.
    read_lease_window: Duration,
    controller: Arc<ControllerGroup>,
    partitions: Arc<Partitions>,
    /// Turns true when the broker stops: waiting fetches answer at once.
    stop: watch::Receiver<bool>,
    /// Produce and fetch counters and latencies, recorded once per request.
    metrics: Arc<RequestMetrics>,
    /// Fetch filters, compiled once per expression.
    filters: Arc<FilterCache>,
    /// Which producers' batches may be answered before their commit (`early.rs`).
    early: Arc<early::EarlyAnswers>,
}

impl ClientService {
    /// The client API of the broker configured by `config`, over its controller member and
    /// partitions; `stop` turning true ends waiting fetches.
    pub fn new(
        config: &BrokerConfig,
        controller: Arc<ControllerGroup>,
        partitions: Arc<Partitions>,
        stop: watch::Receiver<bool>,
    ) -> ClientService {
        ClientService {
            node_id: config.node_id,
            peers: config.peers.clone(),
            max_batch_bytes: config.max_batch_bytes,
            producer_id_expiration_ms: config.producer_id_expiration_ms,
            max_producers_per_partition: config.max_producers_per_partition,
            max_delay_ms: config.max_delay_ms,
            replica_ack_window: Duration::from_millis(2 * config.raft.partition_election_timeout_ms[1]),
            pipeline_lease_window: Duration::from_millis(config.raft.partition_election_timeout_ms[1] / 2),
            read_lease_window: Duration::from_millis(config.raft.partition_election_timeout_ms[0]),
            controller,
            partitions,
            stop,
            metrics: Arc::new(RequestMetrics::new()),
            filters: Arc::default(),
            early: Arc::default(),
        }
    }

    /// Records produce and fetch metrics in `metrics` (the broker's exported ones) instead of
    /// in a private set.
    pub(crate) fn with_metrics(self, metrics: Arc<RequestMetrics>) -> ClientService {
        ClientService { metrics, ..self }
    }
}

#[tonic::async_trait]
impl Sluice for ClientService {
    async fn metadata(&self, request: Request<MetadataRequest>) -> Result<Response<MetadataResponse>, Status> {
        Ok(Response::new(self.handle_metadata(request.into_inner()).await))
    }

    async fn create_topic(
        &self,
        request: Request<CreateTopicRequest>,
    ) -> Result<Response<CreateTopicResponse>, Status> {
        Ok(Response::new(self.handle_create_topic(request.into_inner()).await))
    }

    async fn delete_topic(
        &self,
        request: Request<DeleteTopicRequest>,
    ) -> Result<Response<DeleteTopicResponse>, Status> {
        Ok(Response::new(self.handle_delete_topic(request.into_inner()).await))
    }

    async fn alter_topic_config(
        &self,
        request: Request<AlterTopicConfigRequest>,
    ) -> Result<Response<AlterTopicConfigResponse>, Status> {
        Ok(Response::new(self.handle_alter_topic_config(request.into_inner()).await))
    }

    async fn init_producer(
        &self,
        _request: Request<InitProducerRequest>,
    ) -> Result<Response<InitProducerResponse>, Status> {
        Ok(Response::new(self.handle_init_producer().await))
    }

    async fn produce(&self, request: Request<ProduceRequest>) -> Result<Response<ProduceResponse>, Status> {
        Ok(Response::new(self.handle_produce(request.into_inner()).await))
    }

    async fn fetch(&self, request: Request<FetchRequest>) -> Result<Response<FetchResponse>, Status> {
        Ok(Response::new(self.handle_fetch(request.into_inner()).await))
    }

    async fn list_offsets(
        &self,
        request: Request<ListOffsetsRequest>,
    ) -> Result<Response<ListOffsetsResponse>, Status> {
        Ok(Response::new(self.handle_list_offsets(request.into_inner()).await))
    }

    async fn cancel_delayed(
        &self,
        request: Request<CancelDelayedRequest>,
    ) -> Result<Response<CancelDelayedResponse>, Status> {
        Ok(Response::new(self.handle_cancel_delayed(request.into_inner()).await))
    }

    async fn list_delayed(
        &self,
        request: Request<ListDelayedRequest>,
    ) -> Result<Response<ListDelayedResponse>, Status> {
        Ok(Response::new(self.handle_list_delayed(request.into_inner()).await))
    }

    async fn create_schedule(
        &self,
        request: Request<CreateScheduleRequest>,
    ) -> Result<Response<CreateScheduleResponse>, Status> {
        Ok(Response::new(self.handle_create_schedule(request.into_inner()).await))
    }

    async fn delete_schedule(
        &self,
        request: Request<DeleteScheduleRequest>,
    ) -> Result<Response<DeleteScheduleResponse>, Status> {
        Ok(Response::new(self.handle_delete_schedule(request.into_inner()).await))
    }

    async fn list_schedules(
        &self,
        request: Request<ListSchedulesRequest>,
    ) -> Result<Response<ListSchedulesResponse>, Status> {
        Ok(Response::new(self.handle_list_schedules(request.into_inner()).await))
    }

    type ProduceStreamStream = produce_stream::Answers;

    async fn produce_stream(
        &self,
        request: Request<tonic::Streaming<ProduceRequest>>,
    ) -> Result<Response<Self::ProduceStreamStream>, Status> {
        Ok(Response::new(self.serve_produce_stream(request.into_inner())))
    }
}
