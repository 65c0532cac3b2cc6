//! Consumer-group offsets in transactions (docs/TRANSACTIONS.md): `TxnCommitOffsets` adds the
//! group to the transaction and has the group's coordinator hold the offsets pending, both
//! under the transactional id's turn (so never after the transaction ended); when the
//! transaction ends, the group's "marker" is `EndTxnOffsets` at its coordinator.

use std::time::Duration;

use sluice_proto::v1::groups_client::GroupsClient;
use sluice_proto::v1::{
    EndTxnOffsetsRequest, TxnCommitOffsetsRequest, TxnCommitOffsetsResponse, WriteTxnOffsetsRequest,
};
use sluice_proto::{Error, ErrorCode, error_of};
use tokio::time::Instant;

use super::coordinators::TxnCoordinators;
use super::state::Producer;
use crate::groups::OFFSETS_TOPIC;
use crate::groups::context::{Context, now_ms};

/// How long one call to a group's coordinator is retried.
const GROUP_CALL_TIMEOUT: Duration = Duration::from_secs(10);

impl TxnCoordinators {
    pub async fn txn_commit_offsets(&self, r: TxnCommitOffsetsRequest) -> TxnCommitOffsetsResponse {
        let error = self.try_txn_commit_offsets(r).await.err().unwrap_or_else(Error::ok);
        TxnCommitOffsetsResponse { error: Some(error) }
    }

    async fn try_txn_commit_offsets(&self, r: TxnCommitOffsetsRequest) -> Result<(), Error> {
        let c = self.route(&r.transactional_id)?;
        let epoch = i16::try_from(r.epoch)
            .map_err(|_| Error::new(ErrorCode::InvalidRequest, format!("epoch {} is not a producer epoch", r.epoch)))?;
        let producer = Producer { producer_id: r.producer_id, epoch };
        let id = r.transactional_id.as_str();
        let _turn = c.turn(id).await?;
        let plan = c.table().add_partitions(
            id,
            producer,
            &[],
            std::slice::from_ref(&r.group),
            now_ms() as u64,
            &c.limits(),
        )?;
        c.write(&plan.records).await?;
        plan.answer.map_err(Error::from)?;
        let request = WriteTxnOffsetsRequest {
            group: r.group.clone(),
            producer_id: r.producer_id,
            epoch: r.epoch,
            offsets: r.offsets,
        };
        call_group(&c.ctx, &r.group, |mut client| {
            let request = request.clone();
            async move { client.write_txn_offsets(request).await.map(|a| a.into_inner().error) }
        })
        .await
    }
}

/// Ends producer `producer_id`'s pending offsets in `group`: committed or dropped.
pub(super) async fn end_group(ctx: &Context, group: &str, producer_id: i64, commit: bool) -> Result<(), Error> {
    if ctx.home(group).is_none() {
        return Ok(()); // no offsets topic: nothing can be pending
    }
    let request = EndTxnOffsetsRequest { group: group.to_owned(), producer_id, commit };
    call_group(ctx, group, |mut client| {
        let request = request.clone();
        async move { client.end_txn_offsets(request).await.map(|a| a.into_inner().error) }
    })
    .await
}

/// Calls `group`'s coordinator until it answers anything but a retriable error, or
/// [`GROUP_CALL_TIMEOUT`] passes.
async fn call_group<F, Fut>(ctx: &Context, group: &str, mut op: F) -> Result<(), Error>
where
    F: FnMut(GroupsClient<tonic::transport::Channel>) -> Fut,
    Fut: Future<Output = Result<Option<Error>, tonic::Status>>,
{
    let deadline = Instant::now() + GROUP_CALL_TIMEOUT;
    let mut pause = Duration::from_millis(20);
    loop {
        let error = match coordinator_channel(ctx, group) {
            Ok(channel) => match op(GroupsClient::new(channel)).await {
                Ok(answer) => error_of(answer.as_ref()),
                Err(status) => Error::new(ErrorCode::Unavailable, format!("group {group:?}: {}", status.message())),
            },
            Err(e) => e,
        };
        if error.is_ok() || !error.error_code().is_retriable() || Instant::now() + pause > deadline {
            return if error.is_ok() { Ok(()) } else { Err(error) };
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// A channel to the broker coordinating `group`, as this broker knows it.
fn coordinator_channel(ctx: &Context, group: &str) -> Result<tonic::transport::Channel, Error> {
    let unavailable = |why: &str| Error::new(ErrorCode::Unavailable, format!("group {group:?}: {why}; retry"));
    let home = ctx.home(group).ok_or_else(|| unavailable(&format!("{OFFSETS_TOPIC} does not exist yet")))?;
    let leader = ctx.leader_of(&home).ok_or_else(|| unavailable("its coordinator is being elected"))?;
    let address = ctx.broker_address(leader).ok_or_else(|| unavailable("its coordinator has no known address"))?;
    ctx.channel(&address.client_address)
}
