//! [`Fetcher`]: the read path shared by both consumers — the assign-mode
//! [`Consumer`](crate::Consumer) and the [`GroupConsumer`](crate::GroupConsumer). It keeps one
//! cursor per partition it reads and long-polls the partitions' leaders.
//!
//! Each partition has at most one fetch in flight, started as soon as the previous one
//! returned, so the next records are usually on their way while the caller processes the
//! current ones. A fetch follows leader changes by itself (NOT_LEADER → metadata refresh →
//! retry); an error it cannot get past pauses the partition until the caller has seen it.

use crate::Isolation;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_common::record::RecordBatch;
use sluice_proto::{ErrorCode, error_of, v1};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::client::{Call, Client, Route};
use crate::error::{Error, Result};
use crate::filter::MessageFilter;
use crate::record::ConsumedRecord;
use crate::topic_partition::TopicPartition;

/// Reads a set of partitions, each from its own position.
pub(crate) struct Fetcher {
    client: Client,
    max_bytes: u32,
    max_wait: Duration,
    /// Applied by the brokers to every fetch.
    filter: MessageFilter,
    /// The consumer group, named in fetches for the brokers' filter metrics ("" outside one).
    group: String,
    /// What of transactions fetches see.
    isolation: Isolation,
    /// Messages the filter skipped, per topic: positions advanced past without a record.
    skipped: BTreeMap<Arc<str>, u64>,
    cursors: BTreeMap<TopicPartition, Cursor>,
    results: mpsc::UnboundedSender<Fetched>,
    arrivals: mpsc::UnboundedReceiver<Fetched>,
    /// An error found while other partitions had records: returned by the next `fetch`.
    pending_error: Option<Error>,
    /// The last generation handed out. One counter for every cursor, never reset: a partition
    /// removed and inserted again (lost and reassigned) gets a new cursor whose generations
    /// cannot match a fetch the old one started.
    generations: u64,
}

/// One partition being read.
#[derive(Debug, Default)]
struct Cursor {
    /// The next offset to return; `None` until the owner resolves it.
    position: Option<u64>,
    /// Renewed by every seek (from [`Fetcher::generations`]), so a fetch started before it is
    /// recognised and dropped.
    generation: u64,
    in_flight: Option<JoinHandle<()>>,
    /// The last fetch failed; wait for the caller to have seen the error before fetching again.
    paused: bool,
}

impl Cursor {
    fn cancel(&mut self) {
        if let Some(task) = self.in_flight.take() {
            task.abort();
        }
    }
}

/// A finished fetch, as its task reports it.
struct Fetched {
    tp: TopicPartition,
    generation: u64,
    result: Result<v1::FetchResponse>,
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        self.cursors.values_mut().for_each(Cursor::cancel);
    }
}

impl Fetcher {
    /// A fetcher asking for `max_bytes` per partition and fetch, holding each fetch open for
    /// up to `max_wait` on the broker.
    pub(crate) fn new(client: Client, max_bytes: u32, max_wait: Duration) -> Fetcher {
        let (results, arrivals) = mpsc::unbounded_channel();
        Fetcher {
            client,
            max_bytes,
            max_wait,
            filter: MessageFilter::default(),
            group: String::new(),
            isolation: Isolation::ReadCommitted,
            skipped: BTreeMap::new(),
            cursors: BTreeMap::new(),
            results,
            arrivals,
            pending_error: None,
            generations: 0,
        }
    }

    /// Asks the brokers for only the messages `filter` matches; `group` names the consumer
    /// group in the fetches ("" outside one).
    pub(crate) fn with_filter(mut self, filter: MessageFilter, group: String) -> Fetcher {
        (self.filter, self.group) = (filter, group);
        self
    }

    /// Fetches at `isolation` (read_committed until told otherwise).
    pub(crate) fn with_isolation(mut self, isolation: Isolation) -> Fetcher {
        self.isolation = isolation;
        self
    }

    /// Messages the filter skipped so far, per topic.
    pub(crate) fn skipped(&self) -> &BTreeMap<Arc<str>, u64> {
        &self.skipped
    }

    /// Starts reading `tp` from a position to be set with [`Fetcher::seek`] (nothing is
    /// fetched until then). A partition already read keeps its position.
    pub(crate) fn insert(&mut self, tp: TopicPartition) {
        self.cursors.entry(tp).or_default();
    }

    /// Stops reading `tp`; records of a fetch in flight are dropped. Returns its position.
    pub(crate) fn remove(&mut self, tp: &TopicPartition) -> Option<u64> {
        let mut cursor = self.cursors.remove(tp)?;
        cursor.cancel();
        cursor.position
    }

    /// Stops reading every partition and forgets any pending error.
    pub(crate) fn clear(&mut self) {
        self.cursors.values_mut().for_each(Cursor::cancel);
        self.cursors.clear();
        self.pending_error = None;
    }

    /// Whether `tp` is being read.
    pub(crate) fn contains(&self, tp: &TopicPartition) -> bool {
        self.cursors.contains_key(tp)
    }

    /// The partitions being read, in order.
    pub(crate) fn partitions(&self) -> impl Iterator<Item = &TopicPartition> {
        self.cursors.keys()
    }

    /// The partitions whose position is not set yet.
    pub(crate) fn unresolved(&self) -> Vec<TopicPartition> {
        self.cursors.iter().filter(|(_, c)| c.position.is_none()).map(|(tp, _)| tp.clone()).collect()
    }

    /// The next offset `fetch` returns from `tp`, once it is set.
    pub(crate) fn position(&self, tp: &TopicPartition) -> Option<u64> {
        self.cursors.get(tp).and_then(|c| c.position)
    }

    /// Moves `tp` to `offset`; records fetched from the old position are dropped. Returns
    /// false if `tp` is not being read.
    pub(crate) fn seek(&mut self, tp: &TopicPartition, offset: u64) -> bool {
        let Some(cursor) = self.cursors.get_mut(tp) else { return false };
        cursor.cancel();
        self.generations += 1;
        cursor.generation = self.generations;
        cursor.position = Some(offset);
        cursor.paused = false;
        true
    }

    /// An error kept from an earlier fetch, if any.
    pub(crate) fn take_error(&mut self) -> Option<Error> {
        self.pending_error.take()
    }

    /// Returns the records that arrive before `deadline`: as soon as any partition has some,
    /// or empty when none does in time or when `interrupt` is notified first. Records of a
    /// partition come in offset order from its position, which moves past them. Partitions
    /// paused by an earlier error are fetched again.
    ///
    /// A failure is returned if no partition had records; otherwise it is kept for the next
    /// call.
    pub(crate) async fn fetch(&mut self, deadline: Instant, interrupt: Option<&Notify>) -> Result<Vec<ConsumedRecord>> {
        if let Some(error) = self.pending_error.take() {
            return Err(error);
        }
        self.cursors.values_mut().for_each(|c| c.paused = false);
        self.start_fetches();
        let mut records = Vec::new();
        while records.is_empty() && self.pending_error.is_none() {
            let arrival = tokio::select! {
                arrival = tokio::time::timeout_at(deadline.into(), self.arrivals.recv()) => arrival,
                () = wait_for(interrupt) => break,
            };
            let Ok(first) = arrival else { break };
            self.absorb(first.expect("the fetcher holds a sender"), &mut records);
            while let Ok(more) = self.arrivals.try_recv() {
                self.absorb(more, &mut records);
            }
            self.start_fetches();
        }
        match self.pending_error.take() {
            Some(error) if records.is_empty() => Err(error),
            other => {
                self.pending_error = other;
                Ok(records)
            }
        }
    }

    fn start_fetches(&mut self) {
        for (tp, cursor) in &mut self.cursors {
            let Some(offset) = cursor.position else { continue };
            if cursor.in_flight.is_some() || cursor.paused {
                continue;
            }
            let request = v1::FetchRequest {
                topic: tp.topic().to_owned(),
                partition: tp.partition(),
                offset,
                max_bytes: self.max_bytes,
                max_wait_ms: u32::try_from(self.max_wait.as_millis()).unwrap_or(u32::MAX),
                tag_filter: self.filter.tag_expression().to_owned(),
                sql_filter: self.filter.sql_expression().to_owned(),
                group: self.group.clone(),
                isolation: self.isolation.wire().into(),
            };
            let (client, results, generation, tp) =
                (self.client.clone(), self.results.clone(), cursor.generation, tp.clone());
            let wait = self.max_wait;
            cursor.in_flight = Some(tokio::spawn(async move {
                let result = fetch(&client, request, wait).await;
                // The fetcher may be gone; then nobody wants the answer.
                let _ = results.send(Fetched { tp, generation, result });
            }));
        }
    }

    /// Takes a finished fetch's records (skipping any below the position) and moves the
    /// position past them, or keeps its error for the caller.
    fn absorb(&mut self, fetched: Fetched, out: &mut Vec<ConsumedRecord>) {
        let Some(cursor) = self.cursors.get_mut(&fetched.tp) else { return };
        if cursor.generation != fetched.generation {
            return; // started before a seek or a reassignment
        }
        cursor.in_flight = None;
        let position = cursor.position.expect("fetches start from a known position");
        let (topic, partition) = (fetched.tp.topic_arc(), fetched.tp.partition());
        let before = out.len();
        let outcome = fetched.result.and_then(|response| decode(topic, partition, position, response, out));
        match outcome {
            Ok(next) => {
                cursor.position = Some(next);
                let returned = (out.len() - before) as u64;
                let advanced = next.saturating_sub(position);
                if advanced > returned {
                    *self.skipped.entry(Arc::clone(topic)).or_default() += advanced - returned;
                }
            }
            Err(error) => {
                cursor.paused = true;
                self.pending_error.get_or_insert(error);
            }
        }
    }
}

/// The record at `offset` of `tp` alone, without waiting (a group's retry is fetched by its
/// place): `None` if the partition no longer holds it. No filter: the message was delivered
/// once, so the group's filter already chose it.
pub(crate) async fn fetch_one(
    client: &Client,
    tp: &TopicPartition,
    offset: u64,
    isolation: Isolation,
) -> Result<Option<ConsumedRecord>> {
    let request = v1::FetchRequest {
        topic: tp.topic().to_owned(),
        partition: tp.partition(),
        offset,
        // Small: the batch holding the record arrives whole whatever this says.
        max_bytes: 1,
        max_wait_ms: 0,
        tag_filter: String::new(),
        sql_filter: String::new(),
        group: String::new(),
        isolation: isolation.wire().into(),
    };
    let response = match fetch(client, request, Duration::ZERO).await {
        Err(Error::OffsetOutOfRange { .. }) => return Ok(None),
        other => other?,
    };
    let mut out = Vec::new();
    decode(tp.topic_arc(), tp.partition(), offset, response, &mut out)?;
    Ok(out.into_iter().next().filter(|r| r.offset == offset))
}

/// Resolves when `interrupt` is notified; never without one.
async fn wait_for(interrupt: Option<&Notify>) {
    match interrupt {
        Some(notify) => notify.notified().await,
        None => std::future::pending().await,
    }
}

/// One fetch from the partition's leader, following leader changes.
async fn fetch(client: &Client, request: v1::FetchRequest, wait: Duration) -> Result<v1::FetchResponse> {
    let (topic, partition, offset) = (request.topic.clone(), request.partition, request.offset);
    let mut call = client.call("Fetch", Route::Leader { topic: &topic, partition });
    call = Call { attempt_timeout: call.attempt_timeout + wait, ..call };
    let answer = client
        .execute_answer(call, |mut rpc| {
            let request = request.clone();
            async move { rpc.fetch(request).await }
        })
        .await?;
    let error = error_of(answer.error.as_ref());
    match error.error_code() {
        ErrorCode::Ok => Ok(answer),
        ErrorCode::OffsetOutOfRange => Err(Error::OffsetOutOfRange {
            topic,
            partition,
            offset,
            log_start_offset: answer.log_start_offset,
            high_watermark: answer.high_watermark,
        }),
        _ => Err(Error::from_proto(&error)),
    }
}

/// Appends the records at or after `position` to `out`; returns the next position: where the
/// broker says to continue (past messages a filter skipped), else past the last batch.
fn decode(
    topic: &Arc<str>,
    partition: u32,
    mut position: u64,
    response: v1::FetchResponse,
    out: &mut Vec<ConsumedRecord>,
) -> Result<u64> {
    for fetched in response.batches {
        let base_offset = fetched.base_offset;
        let corrupt = |source| Error::CorruptBatch { topic: topic.to_string(), partition, base_offset, source };
        let batch = RecordBatch::parse(fetched.batch).map_err(corrupt)?;
        let count = batch.header().count as usize;
        let deltas = &fetched.offset_deltas;
        if !deltas.is_empty() && deltas.len() != count {
            let message =
                format!("a filtered batch at offset {base_offset} holds {count} records but {} offsets", deltas.len());
            return Err(Error::Protocol { address: String::new(), message });
        }
        let offset_of = |i: usize| base_offset + deltas.get(i).map_or(i as u64, |d| u64::from(*d));
        let end = if count == 0 { base_offset } else { offset_of(count - 1) + 1 };
        if end <= position {
            continue; // wholly before the position: nothing to decode
        }
        if !batch.header().control {
            for (i, record) in batch.records().enumerate() {
                let view = record.map_err(corrupt)?;
                let offset = offset_of(i);
                if offset >= position {
                    out.push(ConsumedRecord { topic: Arc::clone(topic), partition, offset, view, attempt: 1 });
                }
            }
        }
        position = end;
    }
    Ok(response.next_offset.map_or(position, |next| next.max(position)))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use sluice_common::record::{BatchBuilder, ProducerStamp, Record};

    use super::*;

    fn batch(base_offset: u64, values: &[&str]) -> v1::FetchedBatch {
        let mut builder = BatchBuilder::new(ProducerStamp::NONE, 256);
        for v in values {
            let mut record = Record::new(Bytes::copy_from_slice(v.as_bytes()), 1_000);
            record.tag = Some("t".into());
            record.properties = vec![("k".into(), "v".into())];
            builder.push(&record);
        }
        v1::FetchedBatch { base_offset, batch: builder.finish(), offset_deltas: Vec::new() }
    }

    fn response(batches: Vec<v1::FetchedBatch>) -> v1::FetchResponse {
        v1::FetchResponse { error: None, batches, next_offset: None, ..Default::default() }
    }

    #[test]
    fn records_below_the_position_in_the_first_batch_are_skipped() {
        let topic: Arc<str> = Arc::from("t");
        let mut out = Vec::new();
        let batches = vec![batch(10, &["a", "b", "c"]), batch(13, &["d"])];
        let next = decode(&topic, 2, 11, response(batches), &mut out).unwrap();
        assert_eq!(next, 14);
        let seen: Vec<(u64, &[u8])> = out.iter().map(|r| (r.offset(), &r.value()[..])).collect();
        assert_eq!(seen, [(11, &b"b"[..]), (12, b"c"), (13, b"d")]);
        let first = &out[0];
        assert_eq!((first.topic(), first.partition(), first.tag()), ("t", 2, Some("t")));
        assert_eq!(first.properties().collect::<Vec<_>>(), [("k", "v")]);
        assert_eq!(first.timestamp_ms(), 1_000);
    }

    #[test]
    fn batches_wholly_behind_the_position_are_ignored_and_empty_fetches_keep_it() {
        let topic: Arc<str> = Arc::from("t");
        let mut out = Vec::new();
        assert_eq!(decode(&topic, 0, 5, response(vec![batch(0, &["a", "b"])]), &mut out).unwrap(), 5);
        assert_eq!(decode(&topic, 0, 5, response(vec![]), &mut out).unwrap(), 5);
        assert!(out.is_empty());
    }

    /// Seen under faults: a member lost a partition while a fetch of it was in flight, got it
    /// back, was seeked to the committed offset — and the old fetch's answer, generation 1 like
    /// the new cursor's, was taken as current, skipping from the committed offset to where the
    /// old fetch had read.
    #[test]
    fn a_fetch_started_before_a_partition_was_removed_is_dropped_after_it_is_inserted_again() {
        let client = Client::unconnected(crate::ClientConfig::new(vec!["127.0.0.1:1".to_string()]));
        let mut fetcher = Fetcher::new(client, 1 << 20, Duration::from_millis(100));
        let tp = TopicPartition::new("t", 1);
        fetcher.insert(tp.clone());
        fetcher.seek(&tp, 4_011);
        let stale_generation = fetcher.cursors[&tp].generation;
        fetcher.remove(&tp);
        fetcher.insert(tp.clone());
        fetcher.seek(&tp, 4_011);
        let stale =
            Fetched { tp: tp.clone(), generation: stale_generation, result: Ok(response(vec![batch(4_021, &["x"])])) };
        let mut out = Vec::new();
        fetcher.absorb(stale, &mut out);
        assert!(out.is_empty(), "records of the old cursor's fetch were returned: {out:?}");
        assert_eq!(fetcher.position(&tp), Some(4_011));
    }

    #[test]
    fn a_corrupt_batch_is_reported_with_its_place() {
        let topic: Arc<str> = Arc::from("t");
        let mut good = batch(7, &["a"]);
        let mut bytes = good.batch.to_vec();
        *bytes.last_mut().unwrap() ^= 0xff;
        good.batch = Bytes::from(bytes);
        let error = decode(&topic, 1, 7, response(vec![good]), &mut Vec::new()).unwrap_err();
        assert!(matches!(error, Error::CorruptBatch { partition: 1, base_offset: 7, .. }), "{error}");
    }
}
