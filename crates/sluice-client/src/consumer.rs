//! [`Consumer`] in assign mode: the caller names the partitions and where to read from; the
//! consumer long-polls their leaders and hands back records in offset order per partition.
//!
//! Each assigned partition has at most one fetch in flight, started as soon as the previous
//! one returned, so the next records are usually on their way while the caller processes the
//! current ones. A fetch follows leader changes by itself (NOT_LEADER → metadata refresh →
//! retry); errors it cannot get past are returned by the next `poll`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_common::record::RecordBatch;
use sluice_proto::{ErrorCode, error_of, v1};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::{Call, Client, Route};
use crate::config::{ConsumerConfig, SeekTo};
use crate::error::{Error, Result};
use crate::record::ConsumedRecord;

/// Reads records from assigned partitions of one topic.
///
/// ```no_run
/// # async fn example(client: sluice_client::Client) -> sluice_client::Result<()> {
/// use std::time::Duration;
/// use sluice_client::{ConsumerConfig, SeekTo};
///
/// let mut consumer = client.consumer(ConsumerConfig::default())?;
/// consumer.assign("orders", &[0, 1]).await?;
/// consumer.seek(0, SeekTo::Earliest).await?;
/// for record in consumer.poll(Duration::from_secs(1)).await? {
///     println!("{}/{} {:?}", record.partition(), record.offset(), record.value());
/// }
/// # Ok(()) }
/// ```
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    topic: Option<Arc<str>>,
    cursors: BTreeMap<u32, Cursor>,
    results: mpsc::UnboundedSender<Fetched>,
    arrivals: mpsc::UnboundedReceiver<Fetched>,
    /// An error found while other partitions had records: returned by the next `poll`.
    pending_error: Option<Error>,
}

/// One assigned partition.
#[derive(Debug, Default)]
struct Cursor {
    /// The next offset to return; `None` until it is resolved from `config.start`.
    position: Option<u64>,
    /// Bumped by every seek, so a fetch started before it is recognised and dropped.
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
    partition: u32,
    generation: u64,
    result: Result<v1::FetchResponse>,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.cursors.values_mut().for_each(Cursor::cancel);
    }
}

impl Consumer {
    pub(crate) fn new(client: Client, config: ConsumerConfig) -> Result<Consumer> {
        config.validate()?;
        let (results, arrivals) = mpsc::unbounded_channel();
        Ok(Consumer { client, config, topic: None, cursors: BTreeMap::new(), results, arrivals, pending_error: None })
    }

    /// Reads `partitions` of `topic` (all of them if the list is empty), replacing any earlier
    /// assignment. Each starts at `ConsumerConfig::start` unless `seek` says otherwise.
    pub async fn assign(&mut self, topic: &str, partitions: &[u32]) -> Result<()> {
        let info = self.client.topic(topic).await?;
        let count = info.partition_count();
        let chosen: Vec<u32> = if partitions.is_empty() { (0..count).collect() } else { partitions.to_vec() };
        if let Some(&bad) = chosen.iter().find(|&&p| p >= count) {
            let message = format!("topic {topic} has {count} partitions; there is no partition {bad}");
            return Err(Error::broker(ErrorCode::UnknownPartition, message));
        }
        self.cursors.values_mut().for_each(Cursor::cancel);
        self.cursors = chosen.into_iter().map(|p| (p, Cursor::default())).collect();
        self.topic = Some(Arc::from(topic));
        self.pending_error = None;
        Ok(())
    }

    /// The assigned topic, if any.
    pub fn topic(&self) -> Option<&str> {
        self.topic.as_deref()
    }

    /// The assigned partitions, in order.
    pub fn assignment(&self) -> Vec<u32> {
        self.cursors.keys().copied().collect()
    }

    /// Moves `partition` to `to`, resolving earliest, latest and timestamps with the
    /// partition's leader now. Records already fetched from the old position are dropped.
    pub async fn seek(&mut self, partition: u32, to: SeekTo) -> Result<u64> {
        let topic = self.assigned_topic()?;
        if !self.cursors.contains_key(&partition) {
            return Err(Error::InvalidArgument(format!("partition {partition} of {topic} is not assigned")));
        }
        let offset = self.client.list_offset(&topic, partition, to).await?;
        let cursor = self.cursors.get_mut(&partition).expect("checked above");
        cursor.cancel();
        cursor.generation += 1;
        cursor.position = Some(offset);
        cursor.paused = false;
        Ok(offset)
    }

    /// The next offset `poll` will return from `partition`, once it is known (after a seek or
    /// the first poll).
    pub fn position(&self, partition: u32) -> Option<u64> {
        self.cursors.get(&partition).and_then(|c| c.position)
    }

    /// The offset after the last committed message of every assigned partition, asked of the
    /// leaders now.
    pub async fn end_offsets(&self) -> Result<BTreeMap<u32, u64>> {
        let topic = self.assigned_topic()?;
        let mut ends = BTreeMap::new();
        for &partition in self.cursors.keys() {
            ends.insert(partition, self.client.list_offset(&topic, partition, SeekTo::Latest).await?);
        }
        Ok(ends)
    }

    /// Returns the records that arrive within `max_wait`: as soon as any partition has some,
    /// or empty when none does in time. Records of a partition come in offset order, starting
    /// at its position, which moves past them.
    ///
    /// Fails with [`Error::OffsetOutOfRange`] if a position is outside what the partition
    /// holds (seek elsewhere to continue), and with the last error if a partition's leader
    /// stayed unreachable for `ClientConfig::operation_timeout`.
    pub async fn poll(&mut self, max_wait: Duration) -> Result<Vec<ConsumedRecord>> {
        if let Some(error) = self.pending_error.take() {
            return Err(error);
        }
        let topic = self.assigned_topic()?;
        self.cursors.values_mut().for_each(|c| c.paused = false);
        self.resolve_positions().await?;
        self.start_fetches(&topic);
        let deadline = Instant::now() + max_wait;
        let mut records = Vec::new();
        while records.is_empty() && self.pending_error.is_none() {
            let Ok(first) = tokio::time::timeout_at(deadline.into(), self.arrivals.recv()).await else { break };
            let first = first.expect("the consumer holds a sender");
            self.absorb(&topic, first, &mut records);
            while let Ok(more) = self.arrivals.try_recv() {
                self.absorb(&topic, more, &mut records);
            }
            self.start_fetches(&topic);
        }
        match self.pending_error.take() {
            Some(error) if records.is_empty() => Err(error),
            other => {
                self.pending_error = other;
                Ok(records)
            }
        }
    }

    fn assigned_topic(&self) -> Result<Arc<str>> {
        self.topic.clone().ok_or_else(|| Error::InvalidArgument("assign partitions before seeking or polling".into()))
    }

    async fn resolve_positions(&mut self) -> Result<()> {
        let unresolved: Vec<u32> = self.cursors.iter().filter(|(_, c)| c.position.is_none()).map(|(&p, _)| p).collect();
        for partition in unresolved {
            self.seek(partition, self.config.start).await?;
        }
        Ok(())
    }

    fn start_fetches(&mut self, topic: &Arc<str>) {
        for (&partition, cursor) in &mut self.cursors {
            let Some(offset) = cursor.position else { continue };
            if cursor.in_flight.is_some() || cursor.paused {
                continue;
            }
            let request = v1::FetchRequest {
                topic: topic.to_string(),
                partition,
                offset,
                max_bytes: self.config.fetch_max_bytes,
                max_wait_ms: u32::try_from(self.config.fetch_max_wait.as_millis()).expect("validated"),
            };
            let (client, results, generation) = (self.client.clone(), self.results.clone(), cursor.generation);
            let wait = self.config.fetch_max_wait;
            cursor.in_flight = Some(tokio::spawn(async move {
                let result = fetch(&client, request, wait).await;
                // The consumer may be gone; then nobody wants the answer.
                let _ = results.send(Fetched { partition, generation, result });
            }));
        }
    }

    /// Takes a finished fetch's records (skipping any below the position) and moves the
    /// position past them, or keeps its error for the caller.
    fn absorb(&mut self, topic: &Arc<str>, fetched: Fetched, out: &mut Vec<ConsumedRecord>) {
        let Some(cursor) = self.cursors.get_mut(&fetched.partition) else { return };
        if cursor.generation != fetched.generation {
            return; // started before a seek or a reassignment
        }
        cursor.in_flight = None;
        let position = cursor.position.expect("fetches start from a known position");
        let outcome = fetched.result.and_then(|response| decode(topic, fetched.partition, position, response, out));
        match outcome {
            Ok(next) => cursor.position = Some(next),
            Err(error) => {
                cursor.paused = true;
                self.pending_error.get_or_insert(error);
            }
        }
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

/// Appends the records at or after `position` to `out`; returns the next position.
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
        let end = base_offset + u64::from(batch.header().count);
        if end <= position {
            continue; // wholly before the position: nothing to decode
        }
        if !batch.header().control {
            for (offset, record) in (base_offset..).zip(batch.records()) {
                let view = record.map_err(corrupt)?;
                if offset >= position {
                    out.push(ConsumedRecord { topic: Arc::clone(topic), partition, offset, view });
                }
            }
        }
        position = end;
    }
    Ok(position)
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
        v1::FetchedBatch { base_offset, batch: builder.finish() }
    }

    fn response(batches: Vec<v1::FetchedBatch>) -> v1::FetchResponse {
        v1::FetchResponse { error: None, batches, high_watermark: 0, log_start_offset: 0 }
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
