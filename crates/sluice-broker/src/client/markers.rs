//! `WriteTxnMarkers`, on a partition's leader: a transaction coordinator's commit or abort
//! markers (docs/TRANSACTIONS.md), each written as one entry of its partition's Raft log.
//!
//! A marker is a control batch built here from the request's fields, so a client cannot slip
//! arbitrary bytes in as one. It is not refused for a full disk (it is a few dozen bytes and
//! ends a transaction that holds the last stable offset back). The partition answers a marker
//! that finds nothing open (the producer wrote nothing there, or a retry came second) and one
//! that is stale (the transaction it was for ended and a later one is open) without writing
//! it: both mean the partition is done with that decision, and are answered OK.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_common::record::marker::marker_batch;
use sluice_proto::v1::{TxnMarker, WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use sluice_proto::{Error, ErrorCode};
use sluice_raft::Reply;
use sluice_raft::partition::{LeaderStamp, PartitionCommand, reject, write};

use super::ClientService;
use super::errors::error;

/// How long one marker may take to commit before it is answered TIMEOUT (the coordinator
/// retries).
const MARKER_TIMEOUT: Duration = Duration::from_secs(10);

impl ClientService {
    /// Writes every marker of `request`, all at once; one answer per marker, in order.
    pub async fn write_txn_markers(&self, request: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
        let writes = request.markers.iter().map(|m| self.write_marker(m));
        let errors = futures_util::future::join_all(writes).await;
        WriteTxnMarkersResponse { errors }
    }

    async fn write_marker(&self, m: &TxnMarker) -> Error {
        let Ok(epoch) = i16::try_from(m.epoch) else {
            return error(ErrorCode::InvalidRequest, format!("marker epoch {} is not a producer epoch", m.epoch));
        };
        let led = match self.led_partition(&m.topic, m.partition) {
            Ok(led) => led,
            Err(e) => return e,
        };
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let batch = marker_batch(m.producer_id, epoch, m.commit, i64::try_from(now_ms).unwrap_or(i64::MAX));
        let stamp = LeaderStamp {
            now_ms,
            producer_id_expiration_ms: self.producer_id_expiration_ms,
            max_producers: self.max_producers_per_partition,
            from_zero: true,
        };
        let outcome =
            tokio::time::timeout(MARKER_TIMEOUT, write(&led.raft, PartitionCommand::produce_at(&batch, &stamp)));
        let what = format!("{}/{}", m.topic, m.partition);
        match outcome.await {
            Ok(Ok(Reply::Appended { .. } | Reply::Done | Reply::Rejected { code: reject::STALE_MARKER, .. })) => {
                Error::ok()
            }
            Ok(Ok(other)) => error(ErrorCode::Internal, format!("{what} refused a transaction marker: {other:?}")),
            Ok(Err(sluice_raft::partition::WriteError::NotLeader { leader })) => {
                self.not_leader(&m.topic, m.partition, leader)
            }
            Ok(Err(e)) => error(ErrorCode::Unavailable, format!("{what}: writing a transaction marker failed: {e}")),
            Err(_) => error(
                ErrorCode::Timeout,
                format!("{what}: a transaction marker was not committed within {MARKER_TIMEOUT:?}"),
            ),
        }
    }
}
