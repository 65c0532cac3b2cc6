//! [`PeerService`]: the server side of the `RaftPeer` gRPC service. Each RPC names its group;
//! the service looks it up in the node's [`RaftRegistry`] and hands the decoded request to that
//! group's `openraft::Raft`.
//!
//! No lock is held while a group works (the registry lookup clones the handle), and each RPC
//! runs in its own tonic task, so one slow group never delays another. It does not decide
//! anything itself: openraft answers every request. Errors: an unknown group is `NotFound`
//! (naming the group and this node), a malformed message `InvalidArgument`, a stopped Raft
//! `Unavailable`.
//!
//! A `StreamAppend` stream is a leader's long-lived replication pipeline: openraft keeps it open
//! while there is nothing to send. The service ends such a stream (with `Unavailable`) as soon as
//! the group's Raft stops or the server is closing, so neither a shutdown nor a graceful server
//! stop waits on an idle peer.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures_util::{Stream, StreamExt, stream};
use openraft::async_runtime::WatchReceiver;
use openraft::{ServerState, Snapshot};
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use super::config::TransportConfig;
use super::convert;
use super::error::{WireError, group_not_found, raft_stopped};
use super::pb::raft_peer_server::{RaftPeer, RaftPeerServer};
use super::pb::{self, snapshot_chunk::Chunk};
use super::registry::{GroupStateMachine, RaftRegistry};
use super::snapshot::{Assembler, RECEIVE_IDLE_TIMEOUT};
use openraft::raft::AppendEntriesRequest;

use crate::partition::RetainedWriter;
use crate::typ::{LogId, PartitionConfig, Raft, Vote};

/// How long a vote request for a group not hosted here waits for it to start (see
/// [`RaftRegistry::get_within`]): within the candidate's deadline for the answer, three quarters
/// of the election timeout's minimum (375 ms by default).
const VOTE_WAITS_FOR_GROUP: std::time::Duration = std::time::Duration::from_millis(300);

/// The `RaftPeer` gRPC service of one node, routing each RPC to the group it names.
pub struct PeerService<SM: GroupStateMachine> {
    registry: Arc<RaftRegistry<SM>>,
    config: TransportConfig,
    /// Becomes true when the server is closing; `None` if nobody will close it.
    closing: Option<watch::Receiver<bool>>,
}

impl<SM: GroupStateMachine> PeerService<SM> {
    /// The service for the groups in `registry`. `config` must be valid.
    pub fn new(registry: Arc<RaftRegistry<SM>>, config: TransportConfig) -> PeerService<SM> {
        PeerService { registry, config, closing: None }
    }

    /// Ends open `StreamAppend` streams once `closing` turns true (or its sender is dropped).
    pub(crate) fn closing_on(self, closing: watch::Receiver<bool>) -> PeerService<SM> {
        PeerService { closing: Some(closing), ..self }
    }

    /// The tonic server for this service, with the configured message size bounds.
    pub fn into_server(self) -> RaftPeerServer<PeerService<SM>> {
        let max = self.config.max_message_bytes;
        RaftPeerServer::new(self).max_decoding_message_size(max).max_encoding_message_size(max)
    }

    fn raft(&self, group_id: u64) -> Result<Raft<SM>, Status> {
        self.registry.get(group_id).ok_or_else(|| group_not_found(group_id, self.registry.node_id()))
    }

    /// Like [`PeerService::raft`], for a vote: waits briefly for a group that is starting.
    async fn raft_for_vote(&self, group_id: u64) -> Result<Raft<SM>, Status> {
        let raft = self.registry.get_within(group_id, VOTE_WAITS_FOR_GROUP).await;
        raft.ok_or_else(|| group_not_found(group_id, self.registry.node_id()))
    }

    /// Starts staging the retained entries of a snapshot for partition group `group_id`.
    fn stage_retained(
        &self,
        group_id: u64,
        range: pb::RetainedRange,
        last: Option<&LogId>,
    ) -> Result<RetainedWriter, Status> {
        let range = convert::retained_from_pb(range, last)?;
        let log = self.registry.log(group_id).ok_or_else(|| {
            Status::failed_precondition(format!("group {group_id} keeps no log for retained entries here"))
        })?;
        RetainedWriter::new(&log, range).map_err(staging_failed)
    }

    fn node_id(&self) -> u64 {
        self.registry.node_id()
    }
}

/// The response stream of `StreamAppend`.
pub type StreamAppendResponses = Pin<Box<dyn Stream<Item = Result<pb::StreamAppendResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<SM: GroupStateMachine> RaftPeer for PeerService<SM> {
    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        let message = request.into_inner();
        let group_id = message.group_id;
        let raft = self.raft(group_id)?;
        let rpc = convert::append_request_from_pb(message)?;
        let response =
            raft.append_entries(rpc).await.map_err(|e| raft_stopped(group_id, self.node_id(), &e.unwrap_fatal()))?;
        Ok(Response::new(convert::append_response_to_pb(&response)))
    }

    type StreamAppendStream = StreamAppendResponses;

    async fn stream_append(
        &self,
        request: Request<Streaming<pb::AppendEntriesRequest>>,
    ) -> Result<Response<StreamAppendResponses>, Status> {
        let mut inbound = request.into_inner();
        let Some(first) = inbound.message().await? else {
            return Ok(Response::new(Box::pin(stream::empty())));
        };
        let group_id = first.group_id;
        let raft = self.raft(group_id)?;
        let first = convert::append_request_from_pb(first)?;
        // A bad request, a stopped Raft or a closing server ends the input; the reason follows
        // the answers to the requests before it.
        let failure: Arc<Mutex<Option<Status>>> = Arc::default();
        let rest = Inbound {
            inbound,
            group_id,
            node_id: self.node_id(),
            raft: raft.clone(),
            closing: self.closing.clone(),
            failure: Arc::clone(&failure),
        };
        let input = stream::once(async { first }).chain(rest.into_requests());
        let node_id = self.node_id();
        let answers = raft.stream_append(input).map(move |result| match result {
            Ok(result) => Ok(convert::stream_result_to_pb(&result)),
            Err(fatal) => Err(raft_stopped(group_id, node_id, &fatal)),
        });
        let failure = stream::once(async move { failure.lock().expect("failure slot poisoned").take() })
            .filter_map(|failure| async move { failure.map(Err) });
        Ok(Response::new(Box::pin(answers.chain(failure))))
    }

    async fn vote(&self, request: Request<pb::VoteRequest>) -> Result<Response<pb::VoteResponse>, Status> {
        let message = request.into_inner();
        let group_id = message.group_id;
        let raft = self.raft_for_vote(group_id).await?;
        let rpc = convert::vote_request_from_pb(message)?;
        let response = raft.vote(rpc).await.map_err(|e| raft_stopped(group_id, self.node_id(), &e.unwrap_fatal()))?;
        Ok(Response::new(convert::vote_response_to_pb(&response)))
    }

    async fn pre_vote(&self, request: Request<pb::VoteRequest>) -> Result<Response<pb::VoteResponse>, Status> {
        let message = request.into_inner();
        let group_id = message.group_id;
        let raft = self.raft_for_vote(group_id).await?;
        let rpc = convert::vote_request_from_pb(message)?;
        let response =
            raft.pre_vote(rpc).await.map_err(|e| raft_stopped(group_id, self.node_id(), &e.unwrap_fatal()))?;
        Ok(Response::new(convert::vote_response_to_pb(&response)))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::SnapshotResponse>, Status> {
        let mut inbound = request.into_inner();
        let header = match next_chunk(&mut inbound).await? {
            Some(pb::SnapshotChunk { chunk: Some(Chunk::Header(header)) }) => header,
            _ => return Err(WireError::Snapshot("the first message must be the header".into()).into()),
        };
        let group_id = header.group_id;
        let raft = self.raft(group_id)?;
        let mut assembler = Assembler::new(header.data_bytes, self.config.max_snapshot_bytes)?;
        let retained = header.retained;
        let (vote, meta) = convert::snapshot_header_from_pb(header)?;
        check_snapshot_within_vote(&vote, meta.last_log_id.as_ref())?;
        let mut staged = match retained {
            Some(range) => Some(self.stage_retained(group_id, range, meta.last_log_id.as_ref())?),
            None => None,
        };
        while let Some(chunk) = next_chunk(&mut inbound).await? {
            match (chunk.chunk, staged.as_mut()) {
                (Some(Chunk::Entries(entries)), Some(writer)) => writer.push(entries).map_err(staging_failed)?,
                (other, _) => assembler.push(pb::SnapshotChunk { chunk: other })?,
            }
        }
        let snapshot = Snapshot { meta, snapshot: assembler.finish()? };
        if let Some(writer) = staged {
            // Seals and fsyncs the staged segments: off the runtime's threads.
            let finished = tokio::task::spawn_blocking(move || writer.finish()).await;
            finished.map_err(|e| Status::internal(e.to_string()))?.map_err(staging_failed)?;
        }
        let response = raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|fatal| raft_stopped(group_id, self.node_id(), &fatal))?;
        Ok(Response::new(convert::snapshot_response_to_pb(&response)))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        let message = request.into_inner();
        let group_id = message.group_id;
        let raft = self.raft(group_id)?;
        let rpc = convert::transfer_request_from_pb(message)?;
        let response =
            raft.handle_transfer_leader(rpc).await.map_err(|fatal| raft_stopped(group_id, self.node_id(), &fatal))?;
        Ok(Response::new(convert::transfer_response_to_pb(&response)))
    }

    async fn node_heartbeat(
        &self,
        request: Request<pb::NodeHeartbeatRequest>,
    ) -> Result<Response<pb::NodeHeartbeatAck>, Status> {
        let beat = request.into_inner();
        if beat.led_groups.len() != beat.led_terms.len() {
            return Err(Status::invalid_argument(format!(
                "node heartbeat from {} lists {} groups but {} terms",
                beat.from,
                beat.led_groups.len(),
                beat.led_terms.len()
            )));
        }
        let Some(liveness) = self.registry.liveness() else {
            return Err(Status::unimplemented(format!("node {} does not track liveness", self.node_id())));
        };
        let pb::NodeHeartbeatRequest {
            from,
            incarnation,
            claims_version,
            led_groups,
            led_terms,
            disk_full,
            max_replicas,
            claims_omitted,
            offline_replicas,
            stopping,
            under_replicated,
        } = beat;
        let claims = (!claims_omitted).then_some(|| led_groups.into_iter().zip(led_terms).collect());
        let claims_current = liveness.record(from, incarnation, claims_version, claims);
        let disk_full = disk_full
            .map(|d| crate::liveness::DiskFull { free_bytes: d.free_bytes, threshold_bytes: d.threshold_bytes });
        let resources = crate::liveness::Resources { disk_full, max_replicas, offline_replicas, under_replicated };
        liveness.record_resources(from, resources);
        liveness.record_stopping(from, stopping);
        Ok(Response::new(pb::NodeHeartbeatAck {
            node_id: self.node_id(),
            incarnation: liveness.incarnation(),
            claims_current,
        }))
    }
}

/// The rest of a `StreamAppend` call's requests, after the first.
struct Inbound<SM: GroupStateMachine> {
    inbound: Streaming<pb::AppendEntriesRequest>,
    group_id: u64,
    node_id: u64,
    raft: Raft<SM>,
    closing: Option<watch::Receiver<bool>>,
    /// Why the requests ended early, for the response stream to report.
    failure: Arc<Mutex<Option<Status>>>,
}

impl<SM: GroupStateMachine> Inbound<SM> {
    /// The decoded requests. The first bad one (another group, undecodable, a broken stream),
    /// or the Raft stopping or the server closing, ends them and leaves the reason in `failure`.
    fn into_requests(self) -> impl Stream<Item = AppendEntriesRequest<PartitionConfig>> + Send + 'static {
        stream::unfold(self, |mut this| async move {
            let next = tokio::select! {
                message = this.inbound.message() => message,
                why = ended(&this.raft, this.closing.clone()) => {
                    Err(Status::unavailable(format!("raft group {} on node {}: {why}", this.group_id, this.node_id)))
                }
            };
            let decoded = match next {
                Ok(None) => return None,
                Ok(Some(m)) if m.group_id != this.group_id => {
                    Err(WireError::GroupChanged { expected: this.group_id, got: m.group_id }.into())
                }
                Ok(Some(m)) => convert::append_request_from_pb(m).map_err(Status::from),
                Err(status) => Err(status),
            };
            match decoded {
                Ok(request) => Some((request, this)),
                Err(status) => {
                    *this.failure.lock().expect("failure slot poisoned") = Some(status);
                    None
                }
            }
        })
    }
}

/// Resolves once `raft` has stopped or the server is closing, saying which.
async fn ended<SM: GroupStateMachine>(raft: &Raft<SM>, closing: Option<watch::Receiver<bool>>) -> &'static str {
    let mut metrics = raft.server_metrics();
    let stopped = async move {
        // The sender is dropped when the Raft's core task ends.
        while metrics.borrow_watched().state != ServerState::Shutdown {
            if metrics.changed().await.is_err() {
                break;
            }
        }
    };
    let closing = async move {
        match closing {
            Some(mut closing) => drop(closing.wait_for(|closing| *closing).await),
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = stopped => "stopped",
        () = closing => "server closing",
    }
}

fn staging_failed(e: std::io::Error) -> Status {
    Status::internal(format!("staging retained entries: {e}"))
}

/// The next snapshot message; a sender silent for [`RECEIVE_IDLE_TIMEOUT`] is given up on.
async fn next_chunk(inbound: &mut Streaming<pb::SnapshotChunk>) -> Result<Option<pb::SnapshotChunk>, Status> {
    match tokio::time::timeout(RECEIVE_IDLE_TIMEOUT, inbound.message()).await {
        Ok(message) => message,
        Err(_elapsed) => Err(Status::deadline_exceeded(format!("no snapshot chunk for {RECEIVE_IDLE_TIMEOUT:?}"))),
    }
}

/// openraft panics on a snapshot past the sender's own term (no leader can own one); refuse it
/// as malformed instead of letting a bad peer crash this node.
fn check_snapshot_within_vote(vote: &Vote, last: Option<&LogId>) -> Result<(), Status> {
    match last {
        Some(last) if last.leader_id.term > vote.leader_id.term => {
            Err(WireError::Snapshot(format!("last log id {last} is past the sender's term {}", vote.leader_id.term))
                .into())
        }
        _ => Ok(()),
    }
}
