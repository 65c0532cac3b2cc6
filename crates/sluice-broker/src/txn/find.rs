//! `FindTxnCoordinator`: any broker answers from its applied metadata. The first call creates
//! `__txn`: the controller leader proposes it, and another broker forwards the call there once
//! (as `groups::find` does for `__consumer_offsets`).

use sluice_proto::v1::transactions_client::TransactionsClient;
use sluice_proto::v1::{FindTxnCoordinatorRequest, FindTxnCoordinatorResponse};
use sluice_proto::{Error, ErrorCode};
use tonic::Request;

use super::TXN_TOPIC;
use super::coordinators::TxnCoordinators;
use crate::groups::find::{FORWARDED, is_forwarded};

fn unavailable(message: String) -> Error {
    Error::new(ErrorCode::Unavailable, message)
}

impl TxnCoordinators {
    pub async fn find(&self, request: Request<FindTxnCoordinatorRequest>) -> FindTxnCoordinatorResponse {
        let forwarded = is_forwarded(&request);
        self.try_find(request.into_inner(), forwarded)
            .await
            .unwrap_or_else(|e| FindTxnCoordinatorResponse { error: Some(e), ..Default::default() })
    }

    async fn try_find(
        &self,
        request: FindTxnCoordinatorRequest,
        forwarded: bool,
    ) -> Result<FindTxnCoordinatorResponse, Error> {
        let id = request.transactional_id.as_str();
        if id.is_empty() {
            return Err(Error::new(ErrorCode::InvalidRequest, "the transactional id is empty"));
        }
        if self.ctx.home_in(TXN_TOPIC, id).is_none() {
            if !self.ctx.controller.is_leader() {
                return self.forward(request, forwarded).await;
            }
            self.ctx.create_internal_topic(TXN_TOPIC, self.config.txn_partitions).await?;
        }
        let home = self
            .ctx
            .home_in(TXN_TOPIC, id)
            .ok_or_else(|| unavailable(format!("{TXN_TOPIC} is being created; retry shortly")))?;
        let no_leader = || {
            unavailable(format!(
                "partition {} of {TXN_TOPIC}, which holds transactional id {id:?}, has no leader yet; retry shortly",
                home.partition
            ))
        };
        let leader = self.ctx.leader_of(&home).ok_or_else(no_leader)?;
        let coordinator = self.ctx.broker_address(leader).ok_or_else(no_leader)?;
        Ok(FindTxnCoordinatorResponse {
            error: Some(Error::ok()),
            coordinator: Some(coordinator),
            partition: home.partition,
        })
    }

    /// Sends the call to the controller leader, which creates `__txn`.
    async fn forward(
        &self,
        request: FindTxnCoordinatorRequest,
        forwarded: bool,
    ) -> Result<FindTxnCoordinatorResponse, Error> {
        let no_controller = || {
            unavailable(format!(
                "{TXN_TOPIC} does not exist yet and broker {} cannot reach the controller leader to create it; retry \
                 shortly",
                self.ctx.node_id
            ))
        };
        if forwarded {
            return Err(no_controller());
        }
        let leader = self.ctx.controller.leader().await.filter(|l| *l != self.ctx.node_id).ok_or_else(no_controller)?;
        let address = self.ctx.broker_address(leader).ok_or_else(no_controller)?;
        let mut client = TransactionsClient::new(self.ctx.channel(&address.client_address)?);
        let mut call = Request::new(request);
        call.metadata_mut().insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
        match client.find_txn_coordinator(call).await {
            Ok(answer) => Ok(answer.into_inner()),
            Err(_) => Err(no_controller()),
        }
    }
}
