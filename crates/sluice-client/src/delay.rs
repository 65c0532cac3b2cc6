//! Delayed messages (docs/DELAYS.md): cancelling one, and listing what a topic has pending.
//! Sending one is [`ProducerRecord::deliver_at`](crate::ProducerRecord::deliver_at).

use futures_util::future::join_all;
use sluice_proto::v1;

pub use sluice_common::delay::DelayedId;

use crate::client::{Client, Route};
use crate::error::{Error, Result};

/// What cancelling a delayed message found. Decided by the order of the partition's log: a
/// message is either cancelled or delivered, never both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It will never be delivered (also the answer to a repeated cancel).
    Cancelled,
    /// It was delivered before the cancel reached the partition.
    AlreadyDelivered,
}

/// A pending delayed message, as [`Admin::list_delayed`](crate::Admin::list_delayed) shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelayedInfo {
    /// Its id.
    pub id: DelayedId,
    /// When it is due, ms since the Unix epoch.
    pub due_ms: u64,
    /// Its key.
    pub key: Option<bytes::Bytes>,
    /// Its tag.
    pub tag: Option<String>,
    /// Its create time.
    pub timestamp_ms: i64,
    /// The size of its value.
    pub value_bytes: u32,
}

/// A topic's pending delayed messages: the earliest due, and how many there are in all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DelayedListing {
    /// Up to the limit asked for, earliest due first.
    pub messages: Vec<DelayedInfo>,
    /// Every pending delayed message of the topic.
    pub pending: u64,
}

/// Cancels delayed message `id` of `topic`.
pub(crate) async fn cancel(client: &Client, topic: &str, id: DelayedId) -> Result<CancelOutcome> {
    let call = client.call("CancelDelayed", Route::Leader { topic, partition: id.partition });
    let answer = client
        .execute(call, |mut rpc| {
            let request = v1::CancelDelayedRequest { topic: topic.to_owned(), partition: id.partition, seq: id.seq };
            async move { rpc.cancel_delayed(request).await }
        })
        .await?;
    match v1::CancelOutcome::try_from(answer.outcome) {
        Ok(v1::CancelOutcome::Cancelled) => Ok(CancelOutcome::Cancelled),
        Ok(v1::CancelOutcome::AlreadyDelivered) => Ok(CancelOutcome::AlreadyDelivered),
        _ => Err(Error::broker(
            sluice_proto::ErrorCode::Internal,
            format!("the broker answered cancel outcome {}", answer.outcome),
        )),
    }
}

/// The `limit` earliest pending delayed messages of `topic`, over all its partitions.
pub(crate) async fn list(client: &Client, topic: &str, limit: u32) -> Result<DelayedListing> {
    let info = client.topic(topic).await?;
    let lists = join_all((0..info.partition_count()).map(|partition| async move {
        let call = client.call("ListDelayed", Route::Leader { topic, partition });
        let answer = client
            .execute(call, |mut rpc| {
                let request = v1::ListDelayedRequest { topic: topic.to_owned(), partition, from_due_ms: 0, limit };
                async move { rpc.list_delayed(request).await }
            })
            .await?;
        Ok::<_, Error>((partition, answer))
    }))
    .await;
    let mut listing = DelayedListing::default();
    for list in lists {
        let (partition, answer) = list?;
        listing.pending += answer.pending;
        listing.messages.extend(answer.messages.into_iter().map(|m| DelayedInfo {
            id: DelayedId { partition, seq: m.seq },
            due_ms: m.due_ms,
            key: m.key,
            tag: m.tag,
            timestamp_ms: m.timestamp_ms,
            value_bytes: m.value_bytes,
        }));
    }
    listing.messages.sort_by_key(|m| (m.due_ms, m.id));
    listing.messages.truncate(limit as usize);
    Ok(listing)
}
