//! Producer ids for transactional ids: allocated by the controller, as for idempotent
//! producers (a transactional id gets one when it is first initialised, and a new one when its
//! epochs run out).

use std::time::Duration;

use sluice_controller::{Applied, ControllerCommand, ControllerReply};
use sluice_proto::v1::InitProducerRequest;
use sluice_proto::v1::sluice_client::SluiceClient;
use sluice_proto::{Error, ErrorCode};

use crate::groups::context::Context;

/// How long one allocation may take.
const ALLOCATE_TIMEOUT: Duration = Duration::from_secs(10);

/// A producer id never handed out before: proposed here if this broker leads the controller,
/// asked of the controller leader otherwise.
pub(crate) async fn allocate(ctx: &Context) -> Result<i64, Error> {
    let unavailable =
        |why: String| Error::new(ErrorCode::Unavailable, format!("allocating a producer id: {why}; retry"));
    if ctx.controller.is_leader() {
        let proposed =
            tokio::time::timeout(ALLOCATE_TIMEOUT, ctx.controller.propose(&ControllerCommand::AllocateProducerId));
        return match proposed.await {
            Ok(Ok(ControllerReply::Applied(Applied::ProducerIdAllocated { producer_id }))) => to_i64(producer_id),
            Ok(Ok(other)) => Err(unavailable(format!("the controller answered {other:?}"))),
            Ok(Err(e)) => Err(unavailable(e.to_string())),
            Err(_) => Err(unavailable(format!("not committed within {ALLOCATE_TIMEOUT:?}"))),
        };
    }
    let leader = ctx.controller.leader().await.ok_or_else(|| unavailable("no controller leader is known".into()))?;
    let address = ctx.broker_address(leader).ok_or_else(|| unavailable(format!("broker {leader} has no address")))?;
    let mut client = SluiceClient::new(ctx.channel(&address.client_address)?);
    let answer = client
        .init_producer(InitProducerRequest::default())
        .await
        .map_err(|s| unavailable(format!("the controller leader, broker {leader}: {}", s.message())))?
        .into_inner();
    let error = sluice_proto::error_of(answer.error.as_ref());
    if error.error_code() != ErrorCode::Ok {
        return Err(unavailable(format!("the controller leader, broker {leader}: {}", error.message)));
    }
    to_i64(answer.producer_id)
}

fn to_i64(producer_id: u64) -> Result<i64, Error> {
    i64::try_from(producer_id)
        .map_err(|_| Error::new(ErrorCode::Internal, format!("producer id {producer_id} does not fit a record batch")))
}
