//! The client side openraft drives: [`GroupNetworkFactory`] (one per group, handed to
//! `Raft::new`) and the [`PeerNetwork`] it makes for each (group, target node).
//!
//! `PeerNetwork` implements openraft's network sub-traits directly rather than `RaftNetworkV2`,
//! so replication is a real bidirectional stream (`stream_append.rs`) instead of openraft's
//! one-request-at-a-time default. Every call is bounded by `RPCOption::soft_ttl()`: unary calls
//! as a whole (and the same deadline is sent as `grpc-timeout`, so the peer drops stale work),
//! streams per unanswered request and per snapshot chunk. It does not retry; openraft does,
//! after the backoff this network supplies for unreachable peers.
//!
//! Every request, stream message and snapshot chunk first passes the node's fault plan
//! ([`Faults`](super::Faults)), which costs one atomic load when no fault is set.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use openraft::RPCTypes;
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{RPCError, ReplicationClosed, StreamingError};
use openraft::network::{
    Backoff, NetAppend, NetBackoff, NetSnapshot, NetStreamAppend, NetTransferLeader, NetVote, RPCOption,
    RaftNetworkFactory,
};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::SnapshotOf;
use sluice_storage::Log;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::clients::PeerClients;
use super::convert;
use super::error::Call;
use super::faults::Fault;
use super::pb::raft_peer_client::RaftPeerClient;
use super::{snapshot, stream_append};
use crate::partition::delay::DelayStore;
use crate::typ::{Node, NodeId, PartitionConfig, Vote};

type C = PartitionConfig;

/// openraft's network factory for one Raft group: every network it makes shares the node's
/// [`PeerClients`] and stamps its requests with the group id.
#[derive(Debug, Clone)]
pub struct GroupNetworkFactory {
    group_id: u64,
    clients: PeerClients,
    log: Option<Arc<Log>>,
    delays: Option<Arc<DelayStore>>,
}

impl GroupNetworkFactory {
    /// The factory for group `group_id` over `clients`.
    pub fn new(group_id: u64, clients: PeerClients) -> GroupNetworkFactory {
        GroupNetworkFactory { group_id, clients, log: None, delays: None }
    }

    /// The same factory for a partition group over `log`: the snapshots it sends carry the
    /// retained entries from it (`partition::retained`).
    pub fn with_log(mut self, log: Arc<Log>) -> GroupNetworkFactory {
        self.log = Some(log);
        self
    }

    /// The same factory for a partition group whose delay store is `store`: the snapshots it
    /// sends carry the group's pending delayed messages and schedules read from it
    /// (`partition::delay::transfer`).
    pub fn with_delays(mut self, store: Arc<DelayStore>) -> GroupNetworkFactory {
        self.delays = Some(store);
        self
    }

    /// The group this factory serves.
    pub fn group_id(&self) -> u64 {
        self.group_id
    }
}

impl RaftNetworkFactory<C> for GroupNetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerNetwork {
        let mut network = self.clients.network(self.group_id, target, node);
        network.log = self.log.clone();
        network.delays = self.delays.clone();
        network
    }
}

/// One group's RPCs to one peer node, over the node's shared channel to that peer.
pub struct PeerNetwork {
    group_id: u64,
    target: NodeId,
    clients: PeerClients,
    /// `Err` holds why there is no channel (a bad address); every RPC then fails unreachable.
    client: Result<RaftPeerClient<Channel>, String>,
    /// A partition group's log: its snapshots carry the retained entries read from it.
    log: Option<Arc<Log>>,
    /// A partition group's delay store: its snapshots carry the group's rows read from it.
    delays: Option<Arc<DelayStore>>,
}

impl PeerNetwork {
    pub(crate) fn new(
        group_id: u64,
        target: NodeId,
        clients: PeerClients,
        client: Result<RaftPeerClient<Channel>, String>,
    ) -> PeerNetwork {
        PeerNetwork { group_id, target, clients, client, log: None, delays: None }
    }

    /// The group these RPCs belong to.
    pub fn group_id(&self) -> u64 {
        self.group_id
    }

    /// The peer node they go to.
    pub fn target(&self) -> NodeId {
        self.target
    }

    /// The partition group's log, if the group is a partition.
    pub(crate) fn log(&self) -> Option<&Arc<Log>> {
        self.log.as_ref()
    }

    /// The partition group's delay store, if it has one.
    pub(crate) fn delays(&self) -> Option<&Arc<DelayStore>> {
        self.delays.as_ref()
    }

    pub(crate) fn clients(&self) -> &PeerClients {
        &self.clients
    }

    pub(crate) fn call(&self, action: RPCTypes) -> Call {
        Call { from: self.clients.node_id(), target: self.target, group_id: self.group_id, action }
    }

    /// The client for one call; unreachable if there is no channel or the fault plan cut the
    /// link.
    pub(crate) fn client(&self, call: &Call) -> Result<RaftPeerClient<Channel>, RPCError<C>> {
        if self.clients.faults().is_cut(self.target) {
            return Err(Fault::Cut.rpc_error(call));
        }
        self.client.clone().map_err(|why| call.unreachable(why))
    }

    /// One unary RPC under the deadline `option.soft_ttl()`, enforced here and sent along as
    /// `grpc-timeout`.
    async fn unary<Req, Resp, F, Fut>(
        &self,
        action: RPCTypes,
        option: &RPCOption,
        message: Req,
        send: F,
    ) -> Result<Resp, RPCError<C>>
    where
        F: FnOnce(RaftPeerClient<Channel>, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let call = self.call(action);
        let client = self.client(&call)?;
        let fault = self.clients.faults().check(self.target).err();
        if let Some(fault) = fault.filter(|f| *f != Fault::LostResponse) {
            return Err(fault.rpc_error(&call));
        }
        let deadline = option.soft_ttl();
        let mut request = Request::new(message);
        request.set_timeout(deadline);
        match tokio::time::timeout(deadline, send(client, request)).await {
            Err(_elapsed) => Err(call.timeout(deadline)),
            Ok(Err(status)) => Err(call.failed(&status, deadline)),
            // The peer acted on the request; the plan loses its answer.
            Ok(Ok(_)) if fault.is_some() => Err(Fault::LostResponse.rpc_error(&call)),
            Ok(Ok(response)) => Ok(response.into_inner()),
        }
    }

    async fn vote_rpc(
        &self,
        rpc: VoteRequest<C>,
        option: RPCOption,
        pre: bool,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        let message = convert::vote_request_to_pb(self.group_id, &rpc);
        let response = if pre {
            self.unary(RPCTypes::Vote, &option, message, |mut c, r| async move { c.pre_vote(r).await }).await?
        } else {
            self.unary(RPCTypes::Vote, &option, message, |mut c, r| async move { c.vote(r).await }).await?
        };
        convert::vote_response_from_pb(response).map_err(|e| self.call(RPCTypes::Vote).unreachable(e))
    }
}

impl NetAppend<C> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        let message = convert::append_request_to_pb(self.group_id, &rpc);
        let response = self
            .unary(RPCTypes::AppendEntries, &option, message, |mut c, r| async move { c.append_entries(r).await })
            .await?;
        convert::append_response_from_pb(response).map_err(|e| self.call(RPCTypes::AppendEntries).unreachable(e))
    }
}

impl NetStreamAppend<C> for PeerNetwork {
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, Result<StreamAppendResult<C>, RPCError<C>>>, RPCError<C>>>
    where
        S: Stream<Item = AppendEntriesRequest<C>> + Send + Unpin + 'static,
    {
        Box::pin(stream_append::open(self, input, option))
    }
}

impl NetVote<C> for PeerNetwork {
    async fn vote(&mut self, rpc: VoteRequest<C>, option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        self.vote_rpc(rpc, option, false).await
    }

    async fn pre_vote(&mut self, rpc: VoteRequest<C>, option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        self.vote_rpc(rpc, option, true).await
    }
}

impl NetSnapshot<C> for PeerNetwork {
    type SnapshotData = Bytes;

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: SnapshotOf<C, Bytes>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        snapshot::send(self, vote, snapshot, cancel, option).await
    }
}

impl NetTransferLeader<C> for PeerNetwork {
    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<C>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<C>, RPCError<C>> {
        let message = convert::transfer_request_to_pb(self.group_id, &req);
        let response = self
            .unary(RPCTypes::TransferLeader, &option, message, |mut c, r| async move { c.transfer_leader(r).await })
            .await?;
        convert::transfer_response_from_pb(response).map_err(|e| self.call(RPCTypes::TransferLeader).unreachable(e))
    }
}

impl NetBackoff<C> for PeerNetwork {
    fn backoff(&self) -> Option<Backoff> {
        Some(self.clients.config().backoff())
    }
}
