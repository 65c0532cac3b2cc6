//! Transactions, broker side (docs/TRANSACTIONS.md): Kafka's transactions with KIP-890's epoch
//! bump per transaction; a RocketMQ half message is a transaction whose timeout checks it back
//! with its producer group instead of aborting it.
//!
//! A transactional id's state is the replay of its [`TxnRecord`](sluice_proto::internal::TxnRecord)s
//! in one partition of the internal topic `__txn` (partition `crc32(id) % partitions`); the Raft
//! leader of that partition is the id's *coordinator*. The pure part — records, replay and the
//! planning of every request — is `records` and `state`: no I/O, no clock. Around it:
//!
//! - `find`: `FindTxnCoordinator`, answered by any broker, which also has the controller leader
//!   create `__txn` on first use.
//! - `coordinators`: follows the Raft role of every `__txn` partition hosted here and keeps one
//!   coordinator per partition this broker leads; `load` replays a new one's partition.
//! - `coordinator`: one writer per transactional id at a time — plan against the table, write
//!   the records through Raft, apply them once committed, write the markers a decision implies
//!   (`markers`, through `WriteTxnMarkers` on each partition's leader), complete, answer.
//! - `timers`: aborts transactions past their timeout, forgets idle ids.
//! - `ids`: producer ids from the controller.
//!
//! The partitions' side — open transactions, the last stable offset, aborted ranges, markers —
//! is `sluice_raft::partition::txns`.

mod checkback;
mod checkpoint;
mod config;
mod coordinator;
mod coordinators;
mod find;
pub(crate) mod ids;
mod load;
mod markers;
mod offsets;
mod records;
mod requests;
pub(crate) mod state;
mod timers;

use std::sync::Arc;

use sluice_proto::v1::transactions_server::Transactions;
use sluice_proto::v1::{
    AddTxnPartitionsRequest, AddTxnPartitionsResponse, CheckBackMessage, DescribeTransactionRequest,
    DescribeTransactionResponse, EndTransactionRequest, EndTransactionResponse, FindTxnCoordinatorRequest,
    FindTxnCoordinatorResponse, ForceEndTransactionRequest, ForceEndTransactionResponse, InitTransactionsRequest,
    InitTransactionsResponse, ListTransactionsRequest, ListTransactionsResponse, TxnCommitOffsetsRequest,
    TxnCommitOffsetsResponse, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status};

pub use config::TxnConfig;

use crate::client::ClientService;
use crate::config::BrokerConfig;
use crate::controller::ControllerGroup;
use crate::groups::context::Context;
use crate::groups::to_completion;
use crate::partitions::Partitions;

/// The internal topic holding every transactional id's records.
pub const TXN_TOPIC: &str = "__txn";

/// The `Transactions` service of one broker: cheap to clone, every clone serves the same
/// coordinators.
#[derive(Clone)]
pub struct TxnService {
    coordinators: Arc<coordinators::TxnCoordinators>,
    /// Writes the markers sent to this broker as a partition leader.
    client: ClientService,
}

impl std::fmt::Debug for TxnService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxnService").finish_non_exhaustive()
    }
}

impl TxnService {
    /// The service of the broker configured by `config`, and the task that starts and stops
    /// coordinators as this broker gains and loses the leadership of `__txn` partitions, until
    /// `stop` turns true.
    pub fn start(
        config: &BrokerConfig,
        controller: Arc<ControllerGroup>,
        partitions: Arc<Partitions>,
        client: ClientService,
        stop: watch::Receiver<bool>,
    ) -> (TxnService, JoinHandle<()>) {
        let context = Arc::new(Context::new(config, controller, partitions, stop));
        let coordinators = Arc::new(coordinators::TxnCoordinators::new(context, config.transactions.clone()));
        let task = tokio::spawn(Arc::clone(&coordinators).run());
        (TxnService { coordinators, client }, task)
    }
}

#[tonic::async_trait]
impl Transactions for TxnService {
    async fn find_txn_coordinator(
        &self,
        request: Request<FindTxnCoordinatorRequest>,
    ) -> Result<Response<FindTxnCoordinatorResponse>, Status> {
        Ok(Response::new(self.coordinators.find(request).await))
    }

    async fn init_transactions(
        &self,
        request: Request<InitTransactionsRequest>,
    ) -> Result<Response<InitTransactionsResponse>, Status> {
        let c = Arc::clone(&self.coordinators);
        Ok(Response::new(to_completion(async move { c.init(request.into_inner()).await }).await))
    }

    async fn add_txn_partitions(
        &self,
        request: Request<AddTxnPartitionsRequest>,
    ) -> Result<Response<AddTxnPartitionsResponse>, Status> {
        let c = Arc::clone(&self.coordinators);
        Ok(Response::new(to_completion(async move { c.add_partitions(request.into_inner()).await }).await))
    }

    async fn end_transaction(
        &self,
        request: Request<EndTransactionRequest>,
    ) -> Result<Response<EndTransactionResponse>, Status> {
        let c = Arc::clone(&self.coordinators);
        Ok(Response::new(to_completion(async move { c.end(request.into_inner()).await }).await))
    }

    async fn list_transactions(
        &self,
        request: Request<ListTransactionsRequest>,
    ) -> Result<Response<ListTransactionsResponse>, Status> {
        Ok(Response::new(self.coordinators.list(request.get_ref())))
    }

    async fn describe_transaction(
        &self,
        request: Request<DescribeTransactionRequest>,
    ) -> Result<Response<DescribeTransactionResponse>, Status> {
        Ok(Response::new(self.coordinators.describe(request.get_ref())))
    }

    async fn force_end_transaction(
        &self,
        request: Request<ForceEndTransactionRequest>,
    ) -> Result<Response<ForceEndTransactionResponse>, Status> {
        let c = Arc::clone(&self.coordinators);
        Ok(Response::new(to_completion(async move { c.force_end(request.into_inner()).await }).await))
    }

    async fn write_txn_markers(
        &self,
        request: Request<WriteTxnMarkersRequest>,
    ) -> Result<Response<WriteTxnMarkersResponse>, Status> {
        Ok(Response::new(self.client.write_txn_markers(request.into_inner()).await))
    }

    type CheckBackStream = checkback::Checks;

    async fn check_back(
        &self,
        request: Request<tonic::Streaming<CheckBackMessage>>,
    ) -> Result<Response<Self::CheckBackStream>, Status> {
        Ok(Response::new(self.coordinators.check_back(request.into_inner()).await?))
    }

    async fn txn_commit_offsets(
        &self,
        request: Request<TxnCommitOffsetsRequest>,
    ) -> Result<Response<TxnCommitOffsetsResponse>, Status> {
        let c = Arc::clone(&self.coordinators);
        Ok(Response::new(to_completion(async move { c.txn_commit_offsets(request.into_inner()).await }).await))
    }
}
