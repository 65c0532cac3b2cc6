//! Writing a decided transaction's markers: one `WriteTxnMarkers` call per partition leader,
//! all at once, retried until every partition has its marker or the coordinator retires (its
//! successor writes them again: markers are idempotent, docs/TRANSACTIONS.md).
//!
//! A partition whose topic was deleted needs no marker. A leader that moved is followed by its
//! NOT_LEADER hint, else by the metadata; a partition with no leader is retried after a pause.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_proto::v1::transactions_client::TransactionsClient;
use sluice_proto::v1::{TxnMarker, WriteTxnMarkersRequest};
use sluice_proto::{Error, ErrorCode};

use super::coordinator::{Phase, TxnCoordinator};
use super::offsets;
use super::state::Markers;

/// The first pause between rounds; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(20);
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Writes `markers` to every partition and ends the transaction's offsets in every group;
/// `Err` only if the coordinator retired first.
pub(super) async fn write_all(coordinator: &Arc<TxnCoordinator>, markers: &Markers) -> Result<(), Error> {
    let (partitions, groups) = tokio::join!(write_partitions(coordinator, markers), end_groups(coordinator, markers));
    partitions.and(groups)
}

/// Ends the transaction's pending offsets in each of its groups, retrying until each is.
async fn end_groups(coordinator: &TxnCoordinator, markers: &Markers) -> Result<(), Error> {
    let mut pause = FIRST_PAUSE;
    let mut pending: Vec<&String> = markers.offset_groups.iter().collect();
    while !pending.is_empty() {
        if coordinator.phase() == Phase::Retired {
            return Err(Error::new(ErrorCode::NotCoordinator, "the coordinator moved while ending group offsets"));
        }
        let ends = pending.iter().map(|g| offsets::end_group(&coordinator.ctx, g, markers.producer_id, markers.commit));
        let outcomes = futures_util::future::join_all(ends).await;
        // A refusal that retrying cannot change (a malformed group id) is left as it is.
        let mut again = Vec::new();
        for (g, outcome) in pending.into_iter().zip(outcomes) {
            match outcome {
                Err(e) if e.error_code().is_retriable() => again.push(g),
                Err(e) => tracing::warn!(group = g, "ending a transaction's offsets: {}", e.message),
                Ok(()) => {}
            }
        }
        pending = again;
        if !pending.is_empty() {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
    Ok(())
}

/// Writes a marker to every partition of the transaction, retrying until each has one.
async fn write_partitions(coordinator: &Arc<TxnCoordinator>, markers: &Markers) -> Result<(), Error> {
    let mut pending: Vec<TxnMarker> = markers
        .partitions
        .iter()
        .map(|(topic, partition)| TxnMarker {
            topic: topic.clone(),
            partition: *partition,
            producer_id: markers.producer_id,
            epoch: i32::from(markers.epoch),
            commit: markers.commit,
        })
        .collect();
    let mut hints: BTreeMap<(String, u32), u64> = BTreeMap::new();
    let mut pause = FIRST_PAUSE;
    while !pending.is_empty() {
        if coordinator.phase() == Phase::Retired {
            return Err(Error::new(
                ErrorCode::NotCoordinator,
                "the coordinator moved while writing transaction markers; its successor completes the transaction",
            ));
        }
        pending = round(coordinator, pending, &mut hints).await;
        if !pending.is_empty() {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
    Ok(())
}

/// One round: each leader gets its partitions' markers; returns those still to write.
async fn round(
    coordinator: &TxnCoordinator,
    pending: Vec<TxnMarker>,
    hints: &mut BTreeMap<(String, u32), u64>,
) -> Vec<TxnMarker> {
    let ctx = &coordinator.ctx;
    let mut by_leader: BTreeMap<u64, Vec<TxnMarker>> = BTreeMap::new();
    let mut left = Vec::new();
    for m in pending {
        let Some(home) = ctx.partition_home(&m.topic, m.partition) else { continue }; // deleted: nothing to end
        let hinted = hints.get(&(m.topic.clone(), m.partition)).copied();
        match hinted.or_else(|| ctx.leader_of(&home)) {
            Some(leader) => by_leader.entry(leader).or_default().push(m),
            None => left.push(m),
        }
    }
    let calls = by_leader.into_iter().map(|(leader, markers)| async move {
        let answers = send(coordinator, leader, markers.clone()).await;
        (markers, answers)
    });
    for (markers, answers) in futures_util::future::join_all(calls).await {
        for (m, answer) in markers.into_iter().zip(answers) {
            match answer.error_code() {
                ErrorCode::Ok | ErrorCode::UnknownTopic | ErrorCode::UnknownPartition => {}
                code => {
                    let key = (m.topic.clone(), m.partition);
                    match answer.leader.as_ref().map(|l| l.node_id) {
                        Some(leader) if code == ErrorCode::NotLeader => hints.insert(key, leader),
                        _ => hints.remove(&key),
                    };
                    tracing::debug!(topic = m.topic, partition = m.partition, "transaction marker: {}", answer.message);
                    left.push(m);
                }
            }
        }
    }
    left
}

/// One `WriteTxnMarkers` call; a failed call answers every marker with its error.
async fn send(coordinator: &TxnCoordinator, leader: u64, markers: Vec<TxnMarker>) -> Vec<Error> {
    let n = markers.len();
    let failed = |message: String| vec![Error::new(ErrorCode::Unavailable, message); n];
    let Some(address) = coordinator.ctx.broker_address(leader) else {
        return failed(format!("broker {leader} has no known address"));
    };
    let channel = match coordinator.ctx.channel(&address.client_address) {
        Ok(c) => c,
        Err(e) => return vec![e; n],
    };
    match TransactionsClient::new(channel).write_txn_markers(WriteTxnMarkersRequest { markers }).await {
        Ok(answer) => {
            let mut errors = answer.into_inner().errors;
            errors.resize_with(n, || Error::new(ErrorCode::Internal, "no answer for this marker"));
            errors
        }
        Err(status) => failed(format!("broker {leader}: {}", status.message())),
    }
}
