//! The two group calls transaction coordinators make (docs/TRANSACTIONS.md): `WriteTxnOffsets`
//! stores offsets an open transaction commits, pending; `EndTxnOffsets`, the group's marker,
//! commits or drops them when the transaction ends. Both go through the group's turn like a
//! member's commit (`state::txn_offsets` plans them).

use sluice_proto::Error;
use sluice_proto::v1::{EndTxnOffsetsRequest, EndTxnOffsetsResponse, WriteTxnOffsetsRequest, WriteTxnOffsetsResponse};

use super::context::now_ms;
use super::coordinator::refused;
use super::coordinators::Coordinators;

impl Coordinators {
    pub async fn write_txn_offsets(&self, r: WriteTxnOffsetsRequest) -> WriteTxnOffsetsResponse {
        let outcome = async {
            let c = self.route(&r.group)?;
            let turn = c.turn(&r.group).await?;
            let records =
                c.state().txn_offsets(&r.group, (r.producer_id, r.epoch), &r.offsets, now_ms()).map_err(refused)?;
            c.write(&r.group, &records).await?;
            drop(turn);
            Ok::<(), Error>(())
        };
        WriteTxnOffsetsResponse { error: Some(outcome.await.err().unwrap_or_else(Error::ok)) }
    }

    pub async fn end_txn_offsets(&self, r: EndTxnOffsetsRequest) -> EndTxnOffsetsResponse {
        let outcome = async {
            let c = self.route(&r.group)?;
            let turn = c.turn(&r.group).await?;
            let records = c.state().end_txn_offsets(&r.group, r.producer_id, r.commit);
            c.write(&r.group, &records).await?;
            drop(turn);
            Ok::<(), Error>(())
        };
        EndTxnOffsetsResponse { error: Some(outcome.await.err().unwrap_or_else(Error::ok)) }
    }
}
