//! Consumer groups, broker side: the `sluice.client.v1.Groups` gRPC service every broker serves
//! beside `Sluice` on its client address (docs/adr/0005-consumer-groups.md explains the design,
//! docs/PROTOCOL.md the calls).
//!
//! A group's state is the replay of its records in one partition of the internal topic
//! `__consumer_offsets` (partition `crc32(group) % partitions`); the Raft leader of that
//! partition is the group's *coordinator*. The pure part — records, replay, planning heartbeats
//! and commits, assignment — is `state`, `records` and `assignor`: no I/O, no clocks. This
//! module is everything around it:
//!
//! - `find`: `FindCoordinator`, answered by any broker, which also has the controller leader
//!   create `__consumer_offsets` on first use.
//! - `coordinators`: watches the Raft role of every offsets partition hosted here and keeps one
//!   [`Coordinator`](coordinator::Coordinator) per partition this broker leads.
//! - `load`: a new coordinator replays the partition's committed records before it answers
//!   (`COORDINATOR_LOADING` until then).
//! - `coordinator`: one writer per group at a time — validate against the state, write the
//!   records the request implies through Raft, apply them once committed, answer.
//! - `timers`: session and rebalance deadlines (not replicated: a new coordinator gives every
//!   member a full session), one task per coordinator sleeping until the earliest.
//! - `lag`: end offsets and the age of the first unconsumed message, for `DescribeGroup` and the
//!   metrics.
//! - `checkpoint`: every `checkpoint_interval_records`, one batch that rebuilds every group of
//!   the partition, after which the log before it is trimmed.
//! - `retention`: groups with no members and no commit for `offsets_retention_ms` are deleted
//!   by a record.

mod assignor;
pub(crate) mod checkpoint;
pub(crate) mod context;
mod coordinator;
mod coordinators;
pub(crate) mod find;
mod lag;
pub(crate) mod leaders;
pub(crate) mod load;
mod records;
mod requests;
mod retention;
mod retries;
mod skipped;
mod state;
mod timers;
mod txn;

use std::sync::Arc;

use sluice_proto::v1::groups_server::Groups;
use sluice_proto::v1::{
    CommitOffsetsRequest, CommitOffsetsResponse, DescribeGroupRequest, DescribeGroupResponse, EndTxnOffsetsRequest,
    EndTxnOffsetsResponse, FetchOffsetsRequest, FetchOffsetsResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    GroupHeartbeatRequest, GroupHeartbeatResponse, ListGroupsRequest, ListGroupsResponse, SetGroupFilterRequest,
    SetGroupFilterResponse, WriteTxnOffsetsRequest, WriteTxnOffsetsResponse,
};
use sluice_proto::v1::{
    DescribeRetriesRequest, DescribeRetriesResponse, PollRetriesRequest, PollRetriesResponse, PurgeDeadLettersRequest,
    PurgeDeadLettersResponse, RedriveDeadLettersRequest, RedriveDeadLettersResponse, SetRetryPolicyRequest,
    SetRetryPolicyResponse, SettleMessagesRequest, SettleMessagesResponse,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status};

use crate::config::BrokerConfig;
use crate::controller::ControllerGroup;
use crate::partitions::Partitions;

pub use lag::GroupLag;
pub use retries::metrics::{RetryCounts, RetryRow};

/// The internal topic holding every group's records.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The `Groups` service of one broker: cheap to clone, every clone serves the same
/// coordinators.
#[derive(Clone)]
pub struct GroupsService {
    coordinators: Arc<coordinators::Coordinators>,
}

impl std::fmt::Debug for GroupsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupsService").finish_non_exhaustive()
    }
}

impl GroupsService {
    /// The service of the broker configured by `config`, and the task that starts and stops
    /// coordinators as this broker gains and loses the leadership of offsets partitions, until
    /// `stop` turns true.
    pub fn start(
        config: &BrokerConfig,
        controller: Arc<ControllerGroup>,
        partitions: Arc<Partitions>,
        stop: watch::Receiver<bool>,
    ) -> (GroupsService, JoinHandle<()>) {
        let context = Arc::new(context::Context::new(config, controller, partitions, stop));
        let coordinators = Arc::new(coordinators::Coordinators::new(context));
        let task = tokio::spawn(Arc::clone(&coordinators).run());
        (GroupsService { coordinators }, task)
    }

    /// The lag of every group this broker coordinates, per partition with a committed offset
    /// (for the metrics endpoint). Partitions hosted elsewhere are asked of their leaders; what
    /// is not known within `limit` is left out.
    pub async fn lag(&self, limit: std::time::Duration) -> Vec<GroupLag> {
        self.coordinators.lag(limit).await
    }

    /// The retry figures of every group this broker coordinates or counted (for the metrics
    /// endpoint).
    pub fn retries(&self) -> Vec<RetryRow> {
        self.coordinators.retry_rows()
    }
}

/// Runs a request that changes replicated state on a task of its own, to its end. gRPC drops a
/// handler's future when its client gives up (a timeout resets the stream); cut there, a request
/// could leave a record committed but not applied to the coordinator's state, or a decided
/// transaction without its markers — and release the key's turn as if it were done
/// (jepsen/FINDINGS.md, F10).
pub(crate) async fn to_completion<T: Send + 'static>(request: impl Future<Output = T> + Send + 'static) -> T {
    match tokio::spawn(request).await {
        Ok(answer) => answer,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("a coordinator request's task was cancelled: {e}"),
    }
}

/// The address gRPC saw the request come from, as a member's `client_host`.
fn client_host<T>(request: &Request<T>) -> String {
    request.remote_addr().map(|a| a.ip().to_string()).unwrap_or_default()
}

#[tonic::async_trait]
impl Groups for GroupsService {
    async fn find_coordinator(
        &self,
        request: Request<FindCoordinatorRequest>,
    ) -> Result<Response<FindCoordinatorResponse>, Status> {
        let forwarded = find::is_forwarded(&request);
        Ok(Response::new(self.coordinators.find_coordinator(request.into_inner(), forwarded).await))
    }

    async fn group_heartbeat(
        &self,
        request: Request<GroupHeartbeatRequest>,
    ) -> Result<Response<GroupHeartbeatResponse>, Status> {
        let host = client_host(&request);
        let c = Arc::clone(&self.coordinators);
        Ok(Response::new(to_completion(async move { c.heartbeat(request.into_inner(), &host).await }).await))
    }

    async fn commit_offsets(
        &self,
        request: Request<CommitOffsetsRequest>,
    ) -> Result<Response<CommitOffsetsResponse>, Status> {
        let c = Arc::clone(&self.coordinators);
        Ok(Response::new(to_completion(async move { c.commit(request.into_inner()).await }).await))
    }

    async fn fetch_offsets(
        &self,
        request: Request<FetchOffsetsRequest>,
    ) -> Result<Response<FetchOffsetsResponse>, Status> {
        Ok(Response::new(self.coordinators.fetch_offsets(request.into_inner()).await))
    }

    async fn list_groups(&self, _request: Request<ListGroupsRequest>) -> Result<Response<ListGroupsResponse>, Status> {
        Ok(Response::new(self.coordinators.list_groups()))
    }

    async fn describe_group(
        &self,
        request: Request<DescribeGroupRequest>,
    ) -> Result<Response<DescribeGroupResponse>, Status> {
        Ok(Response::new(self.coordinators.describe(request.into_inner()).await))
    }

    async fn set_group_filter(
        &self,
        request: Request<SetGroupFilterRequest>,
    ) -> Result<Response<SetGroupFilterResponse>, Status> {
        let c = Arc::clone(&self.coordinators);
        Ok(Response::new(to_completion(async move { c.set_filter(request.into_inner()).await }).await))
    }

    async fn write_txn_offsets(
        &self,
        request: Request<WriteTxnOffsetsRequest>,
    ) -> Result<Response<WriteTxnOffsetsResponse>, Status> {
        let c = Arc::clone(&self.coordinators);
        Ok(Response::new(to_completion(async move { c.write_txn_offsets(request.into_inner()).await }).await))
    }

    async fn end_txn_offsets(
        &self,
        request: Request<EndTxnOffsetsRequest>,
    ) -> Result<Response<EndTxnOffsetsResponse>, Status> {
        let c = Arc::clone(&self.coordinators);
        Ok(Response::new(to_completion(async move { c.end_txn_offsets(request.into_inner()).await }).await))
    }

    async fn settle_messages(
        &self,
        request: Request<SettleMessagesRequest>,
    ) -> Result<Response<SettleMessagesResponse>, Status> {
        let c = Arc::clone(&self.coordinators);
        Ok(Response::new(to_completion(async move { c.settle_messages(request.into_inner()).await }).await))
    }

    async fn poll_retries(
        &self,
        request: Request<PollRetriesRequest>,
    ) -> Result<Response<PollRetriesResponse>, Status> {
        // Not run to completion: a poll whose client went away must not lease what it would
        // never deliver. Leases are taken in the same step that returns the answer.
        Ok(Response::new(self.coordinators.poll_retries(request.into_inner()).await))
    }

    async fn set_retry_policy(
        &self,
        request: Request<SetRetryPolicyRequest>,
    ) -> Result<Response<SetRetryPolicyResponse>, Status> {
        let c = Arc::clone(&self.coordinators);
        Ok(Response::new(to_completion(async move { c.set_retry_policy(request.into_inner()).await }).await))
    }

    async fn describe_retries(
        &self,
        request: Request<DescribeRetriesRequest>,
    ) -> Result<Response<DescribeRetriesResponse>, Status> {
        Ok(Response::new(self.coordinators.describe_retries(&request.into_inner())))
    }

    async fn redrive_dead_letters(
        &self,
        request: Request<RedriveDeadLettersRequest>,
    ) -> Result<Response<RedriveDeadLettersResponse>, Status> {
        let c = Arc::clone(&self.coordinators);
        Ok(Response::new(to_completion(async move { c.redrive_dead_letters(request.into_inner()).await }).await))
    }

    async fn purge_dead_letters(
        &self,
        request: Request<PurgeDeadLettersRequest>,
    ) -> Result<Response<PurgeDeadLettersResponse>, Status> {
        let c = Arc::clone(&self.coordinators);
        Ok(Response::new(to_completion(async move { c.purge_dead_letters(request.into_inner()).await }).await))
    }
}
