//! `FindCoordinator`: any broker answers from its applied metadata and what it knows of
//! partition leaders.
//!
//! The first call creates `__consumer_offsets` (as Kafka does): the controller leader proposes
//! it, and a broker that does not lead the controller forwards the call there, once (a forwarded
//! call is never forwarded again, so two brokers with stale views cannot bounce it between
//! them). The new partitions then elect leaders; until the group's partition has one the
//! answer is `UNAVAILABLE`, which clients retry.

use sluice_proto::v1::groups_client::GroupsClient;
use sluice_proto::v1::{FindCoordinatorRequest, FindCoordinatorResponse};
use sluice_proto::{Error, ErrorCode};
use tonic::Request;

use super::OFFSETS_TOPIC;
use super::context::check_group_id;
use super::coordinators::Coordinators;

/// The request metadata key marking a call one broker forwarded to another.
pub(crate) const FORWARDED: &str = "x-sluice-forwarded";

/// Whether `request` was forwarded by another broker.
pub(crate) fn is_forwarded<T>(request: &Request<T>) -> bool {
    request.metadata().contains_key(FORWARDED)
}

fn unavailable(message: String) -> Error {
    Error::new(ErrorCode::Unavailable, message)
}

impl Coordinators {
    pub async fn find_coordinator(&self, request: FindCoordinatorRequest, forwarded: bool) -> FindCoordinatorResponse {
        self.find(request, forwarded)
            .await
            .unwrap_or_else(|e| FindCoordinatorResponse { error: Some(e), ..FindCoordinatorResponse::default() })
    }

    async fn find(&self, request: FindCoordinatorRequest, forwarded: bool) -> Result<FindCoordinatorResponse, Error> {
        let group = request.group.as_str();
        check_group_id(group)?;
        if self.ctx.home(group).is_none() {
            if !self.ctx.controller.is_leader() {
                return self.forward(request, forwarded).await;
            }
            self.ctx.create_internal_topic(OFFSETS_TOPIC, self.ctx.config.offsets_partitions).await?;
        }
        let home = self
            .ctx
            .home(group)
            .ok_or_else(|| unavailable(format!("{OFFSETS_TOPIC} is being created; retry shortly")))?;
        let no_leader = || {
            unavailable(format!(
                "partition {} of {OFFSETS_TOPIC}, which holds group {group:?}, has no leader yet (its replicas are \
                 electing one); retry shortly",
                home.partition
            ))
        };
        let leader = self.ctx.leader_of(&home).ok_or_else(no_leader)?;
        let coordinator = self.ctx.broker_address(leader).ok_or_else(no_leader)?;
        Ok(FindCoordinatorResponse {
            error: Some(Error::ok()),
            coordinator: Some(coordinator),
            partition: home.partition,
        })
    }

    /// Sends the call to the controller leader, which creates `__consumer_offsets`.
    async fn forward(
        &self,
        request: FindCoordinatorRequest,
        forwarded: bool,
    ) -> Result<FindCoordinatorResponse, Error> {
        let no_controller = || {
            unavailable(format!(
                "{OFFSETS_TOPIC} does not exist yet and broker {} cannot reach the controller leader to create it; \
                 retry shortly",
                self.ctx.node_id
            ))
        };
        if forwarded {
            return Err(no_controller());
        }
        let leader = self.ctx.controller.leader().await.filter(|l| *l != self.ctx.node_id).ok_or_else(no_controller)?;
        let address = self.ctx.broker_address(leader).ok_or_else(no_controller)?;
        let mut client = GroupsClient::new(self.ctx.channel(&address.client_address)?);
        let mut call = Request::new(request);
        call.metadata_mut().insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
        match client.find_coordinator(call).await {
            Ok(answer) => Ok(answer.into_inner()),
            Err(status) => {
                tracing::debug!(leader, "forwarding FindCoordinator failed: {status}");
                Err(no_controller())
            }
        }
    }
}
