//! An in-memory stand-in for a Sluice cluster: several gRPC servers on loopback ports that
//! share one state and answer the client protocol as brokers would — routing errors with leader
//! hints, idempotent-producer deduplication, long-poll fetches — plus knobs to inject faults.
//! It checks the SDK against the protocol's rules, not the real broker's implementation.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use sluice_common::record::RecordBatch;
use sluice_proto::v1::sluice_server::{Sluice, SluiceServer};
use sluice_proto::v1::{self, list_offsets_request::At};
use sluice_proto::{Error, ErrorCode};
use tokio::sync::Notify;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

/// What the fake cluster holds and how it misbehaves.
#[derive(Default)]
pub struct State {
    pub controller: u64,
    pub next_producer_id: u64,
    pub topics: BTreeMap<String, Topic>,
    /// Commit the next N produce requests but answer TIMEOUT (a lost acknowledgement).
    pub lose_acks: u32,
    /// After each lost acknowledgement, answer this many produce requests UNKNOWN_TOPIC without
    /// writing (a restarted leader whose metadata has not caught up yet).
    pub unknown_after_lost_ack: u32,
    /// UNKNOWN_TOPIC answers still to give.
    pub unknown_answers: u32,
    /// Hold produce requests sent to this broker until cleared (a paused leader).
    pub stall_node: Option<u64>,
    /// Hold produce requests until cleared (a slow cluster).
    pub stall_produce: bool,
    /// Produce requests that were held by `stall_node` or `stall_produce`, released or not.
    pub held_requests: u32,
    /// Produce requests received, duplicates included.
    pub produce_requests: u32,
    /// A broker cut off from the others: it answers metadata with the partitions' leaders and
    /// terms as they were when it was cut off (see [`FakeCluster::cut_off`]).
    pub stale_metadata: Option<(u64, StaleLeaders)>,
}

/// Per topic, each partition's (leader, term) as a cut-off broker last saw them.
pub type StaleLeaders = BTreeMap<String, Vec<(u64, u64)>>;

pub struct Topic {
    pub config: v1::TopicConfig,
    pub partitions: Vec<Partition>,
}

#[derive(Default)]
pub struct Partition {
    pub leader: u64,
    pub term: u64,
    /// (base offset, batch) in offset order.
    pub log: Vec<(u64, Bytes)>,
    pub end: u64,
    /// Per producer id: its epoch and its last five batches.
    pub producers: HashMap<i64, (i16, Vec<Written>)>,
}

/// (base sequence, count, base offset) of a batch an idempotent producer wrote.
pub type Written = (i32, u32, u64);

/// The fake cluster: its brokers' addresses and their shared state.
#[derive(Clone)]
pub struct FakeCluster {
    pub addresses: Vec<String>,
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    appended: Notify,
    addresses: Mutex<Vec<String>>,
}

impl FakeCluster {
    /// Starts `brokers` servers on free loopback ports; node 1 is the controller.
    pub async fn start(brokers: u64) -> FakeCluster {
        let state = State { controller: 1, next_producer_id: 1, ..State::default() };
        let shared =
            Arc::new(Shared { state: Mutex::new(state), appended: Notify::new(), addresses: Mutex::new(Vec::new()) });
        let mut addresses = Vec::new();
        for node_id in 1..=brokers {
            let incoming = TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind a loopback port");
            addresses.push(incoming.local_addr().expect("bound").to_string());
            let service = SluiceServer::new(FakeBroker { node_id, shared: Arc::clone(&shared) });
            tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming));
        }
        *shared.addresses.lock().unwrap() = addresses.clone();
        FakeCluster { addresses, shared }
    }

    /// Changes the state under its lock.
    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let result = f(&mut self.shared.state.lock().unwrap());
        self.shared.appended.notify_waiters();
        result
    }

    /// Makes `node` answer metadata as of now from here on (a broker cut off from the others).
    pub fn cut_off(&self, node: u64) {
        self.with(|s| {
            let leaders = s
                .topics
                .iter()
                .map(|(name, t)| (name.clone(), t.partitions.iter().map(|p| (p.leader, p.term)).collect()))
                .collect();
            s.stale_metadata = Some((node, leaders));
        });
    }

    /// Creates a topic directly, every partition led by `leader`.
    pub fn create(&self, name: &str, partitions: u32, leader: u64) {
        self.with(|s| s.topics.insert(name.into(), new_topic(partitions, 3, leader)));
    }
}

fn new_topic(partitions: u32, replication_factor: u32, leader: u64) -> Topic {
    let config = v1::TopicConfig { partitions, replication_factor, ..v1::TopicConfig::default() };
    Topic {
        config,
        partitions: (0..partitions).map(|_| Partition { leader, term: 1, ..Partition::default() }).collect(),
    }
}

#[derive(Clone)]
struct FakeBroker {
    node_id: u64,
    shared: Arc<Shared>,
}

fn error(code: ErrorCode, message: &str) -> Option<Error> {
    Some(Error::new(code, message))
}

impl FakeBroker {
    /// What a broker answers to one produce request.
    async fn answer_produce(&self, r: v1::ProduceRequest) -> v1::ProduceResponse {
        let stalled =
            || self.shared.state.lock().map(|s| s.stall_produce || s.stall_node == Some(self.node_id)).unwrap();
        if stalled() {
            self.shared.state.lock().unwrap().held_requests += 1;
        }
        while stalled() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut state = self.shared.state.lock().unwrap();
        state.produce_requests += 1;
        if state.unknown_answers > 0 {
            state.unknown_answers -= 1;
            return v1::ProduceResponse {
                error: error(ErrorCode::UnknownTopic, "no such topic here yet"),
                ..Default::default()
            };
        }
        let lose = state.lose_acks > 0;
        let outcome = self.led(&mut state, &r.topic, r.partition).and_then(|p| append(p, r.batch.clone()));
        let answer = match outcome {
            Ok(_) if lose => {
                state.lose_acks -= 1;
                state.unknown_answers = state.unknown_after_lost_ack;
                v1::ProduceResponse { error: error(ErrorCode::Timeout, "commit timed out"), ..Default::default() }
            }
            Ok((base_offset, duplicate)) => {
                let count = RecordBatch::parse(r.batch).map_or(0, |b| b.header().count);
                v1::ProduceResponse { error: Some(Error::ok()), base_offset, count, duplicate, ..Default::default() }
            }
            Err(e) => v1::ProduceResponse { error: Some(e), ..Default::default() },
        };
        drop(state);
        self.shared.appended.notify_waiters();
        answer
    }

    fn hint(&self, node_id: u64) -> Error {
        let address = self.shared.addresses.lock().unwrap()[node_id as usize - 1].clone();
        let leader = Some(v1::BrokerAddress { node_id, client_address: address });
        Error { leader, ..Error::new(ErrorCode::NotLeader, format!("node {node_id} leads")) }
    }

    /// The partition if this broker leads it, or the error to answer.
    fn led<'a>(&self, state: &'a mut State, topic: &str, partition: u32) -> Result<&'a mut Partition, Error> {
        let Some(t) = state.topics.get_mut(topic) else {
            return Err(Error::new(ErrorCode::UnknownTopic, "no such topic"));
        };
        let Some(p) = t.partitions.get_mut(partition as usize) else {
            return Err(Error::new(ErrorCode::UnknownPartition, "no such partition"));
        };
        if p.leader != self.node_id {
            return Err(self.hint(p.leader));
        }
        Ok(p)
    }

    fn not_controller(&self, state: &State) -> Option<Error> {
        if state.controller == self.node_id {
            return None;
        }
        let mut e = self.hint(state.controller);
        e.code = ErrorCode::NotController as i32;
        Some(e)
    }
}

/// Appends `batch` unless it repeats one of the producer's last five; returns (base offset,
/// duplicate).
fn append(p: &mut Partition, batch: Bytes) -> Result<(u64, bool), Error> {
    let parsed = RecordBatch::parse(batch.clone()).map_err(|e| Error::new(ErrorCode::InvalidRequest, e.to_string()))?;
    let (count, stamp) = (parsed.header().count, parsed.header().producer);
    if stamp.is_idempotent() {
        let (epoch, recent) = p.producers.entry(stamp.producer_id).or_insert((stamp.epoch, Vec::new()));
        if *epoch == stamp.epoch {
            if let Some(&(_, _, base)) = recent.iter().find(|&&(seq, c, _)| seq == stamp.base_sequence && c == count) {
                return Ok((base, true));
            }
            let expected = recent.last().map_or(0, |&(seq, c, _)| seq + c as i32);
            if stamp.base_sequence != expected {
                return Err(Error::new(ErrorCode::OutOfOrderSequence, format!("expected sequence {expected}")));
            }
        }
        recent.push((stamp.base_sequence, count, p.end));
        if recent.len() > 5 {
            recent.remove(0);
        }
    }
    let base = p.end;
    p.log.push((base, batch));
    p.end += u64::from(count);
    Ok((base, false))
}

#[tonic::async_trait]
impl Sluice for FakeBroker {
    async fn metadata(&self, _: Request<v1::MetadataRequest>) -> Result<Response<v1::MetadataResponse>, Status> {
        let state = self.shared.state.lock().unwrap();
        let addresses = self.shared.addresses.lock().unwrap().clone();
        let brokers = (1..=addresses.len() as u64)
            .map(|id| v1::BrokerInfo {
                node_id: id,
                client_address: addresses[id as usize - 1].clone(),
                live: true,
                ..v1::BrokerInfo::default()
            })
            .collect();
        let topics = state
            .topics
            .iter()
            .map(|(name, t)| v1::TopicMetadata {
                error: Some(Error::ok()),
                name: name.clone(),
                config: Some(t.config.clone()),
                partitions: (0u32..)
                    .zip(&t.partitions)
                    .map(|(i, p)| {
                        let (leader, term) = match &state.stale_metadata {
                            Some((node, stale)) if *node == self.node_id => stale[name][i as usize],
                            _ => (p.leader, p.term),
                        };
                        v1::PartitionMetadata {
                            partition: i,
                            replicas: vec![1, 2, 3],
                            leader: Some(leader),
                            leader_term: term,
                        }
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(v1::MetadataResponse {
            error: Some(Error::ok()),
            brokers,
            controller_id: Some(state.controller),
            topics,
            metadata_version: 1,
        }))
    }

    async fn create_topic(
        &self,
        r: Request<v1::CreateTopicRequest>,
    ) -> Result<Response<v1::CreateTopicResponse>, Status> {
        let r = r.into_inner();
        let mut state = self.shared.state.lock().unwrap();
        let error = self.not_controller(&state).or_else(|| {
            let config = r.config.unwrap_or_default();
            if state.topics.contains_key(&r.name) {
                return error(ErrorCode::TopicExists, "exists");
            }
            let mut topic = new_topic(config.partitions, config.replication_factor, self.node_id);
            topic.config = config;
            state.topics.insert(r.name.clone(), topic);
            None
        });
        Ok(Response::new(v1::CreateTopicResponse { error: error.or(Some(Error::ok())), topic: None }))
    }

    async fn alter_topic_config(
        &self,
        r: Request<v1::AlterTopicConfigRequest>,
    ) -> Result<Response<v1::AlterTopicConfigResponse>, Status> {
        let r = r.into_inner();
        let mut state = self.shared.state.lock().unwrap();
        if let Some(e) = self.not_controller(&state) {
            return Ok(Response::new(v1::AlterTopicConfigResponse { error: Some(e), ..Default::default() }));
        }
        let Some(topic) = state.topics.get_mut(&r.name) else {
            let e = Error::new(ErrorCode::UnknownTopic, "no such topic");
            return Ok(Response::new(v1::AlterTopicConfigResponse { error: Some(e), ..Default::default() }));
        };
        let (c, previous) = (r.changes.unwrap_or_default(), topic.config.clone());
        let config = &mut topic.config;
        config.retention_ms = if c.clear_retention_ms { None } else { c.retention_ms.or(config.retention_ms) };
        config.retention_bytes =
            if c.clear_retention_bytes { None } else { c.retention_bytes.or(config.retention_bytes) };
        config.max_message_bytes = c.max_message_bytes.or(config.max_message_bytes);
        config.compression = c.compression.or(config.compression.take());
        let topic = v1::TopicMetadata {
            error: Some(Error::ok()),
            name: r.name,
            config: Some(config.clone()),
            partitions: vec![],
        };
        Ok(Response::new(v1::AlterTopicConfigResponse {
            error: Some(Error::ok()),
            topic: Some(topic),
            previous: Some(previous),
        }))
    }

    async fn delete_topic(
        &self,
        r: Request<v1::DeleteTopicRequest>,
    ) -> Result<Response<v1::DeleteTopicResponse>, Status> {
        let mut state = self.shared.state.lock().unwrap();
        let error = self.not_controller(&state).or_else(|| {
            state
                .topics
                .remove(&r.get_ref().name)
                .is_none()
                .then(|| Error::new(ErrorCode::UnknownTopic, "no such topic"))
        });
        Ok(Response::new(v1::DeleteTopicResponse { error: error.or(Some(Error::ok())) }))
    }

    async fn init_producer(
        &self,
        _: Request<v1::InitProducerRequest>,
    ) -> Result<Response<v1::InitProducerResponse>, Status> {
        let mut state = self.shared.state.lock().unwrap();
        if let Some(e) = self.not_controller(&state) {
            return Ok(Response::new(v1::InitProducerResponse { error: Some(e), producer_id: 0, epoch: 0 }));
        }
        state.next_producer_id += 1;
        let producer_id = state.next_producer_id;
        Ok(Response::new(v1::InitProducerResponse { error: Some(Error::ok()), producer_id, epoch: 0 }))
    }

    async fn produce(&self, r: Request<v1::ProduceRequest>) -> Result<Response<v1::ProduceResponse>, Status> {
        Ok(Response::new(self.answer_produce(r.into_inner()).await))
    }

    /// Delayed messages are tested against real brokers (tests/system/delays.rs).
    async fn cancel_delayed(
        &self,
        _: Request<v1::CancelDelayedRequest>,
    ) -> Result<Response<v1::CancelDelayedResponse>, Status> {
        Err(Status::unimplemented("the fake broker keeps no delayed messages"))
    }

    async fn list_delayed(
        &self,
        _: Request<v1::ListDelayedRequest>,
    ) -> Result<Response<v1::ListDelayedResponse>, Status> {
        Err(Status::unimplemented("the fake broker keeps no delayed messages"))
    }

    async fn create_schedule(
        &self,
        _: Request<v1::CreateScheduleRequest>,
    ) -> Result<Response<v1::CreateScheduleResponse>, Status> {
        Err(Status::unimplemented("the fake broker keeps no schedules"))
    }

    async fn delete_schedule(
        &self,
        _: Request<v1::DeleteScheduleRequest>,
    ) -> Result<Response<v1::DeleteScheduleResponse>, Status> {
        Err(Status::unimplemented("the fake broker keeps no schedules"))
    }

    async fn list_schedules(
        &self,
        _: Request<v1::ListSchedulesRequest>,
    ) -> Result<Response<v1::ListSchedulesResponse>, Status> {
        Err(Status::unimplemented("the fake broker keeps no schedules"))
    }

    type ProduceStreamStream = Pin<Box<dyn Stream<Item = Result<v1::ProduceResponse, Status>> + Send>>;

    /// Answers a stream's batches one after another, in order (a real broker overlaps their
    /// commits, which the client cannot tell apart).
    async fn produce_stream(
        &self,
        r: Request<Streaming<v1::ProduceRequest>>,
    ) -> Result<Response<Self::ProduceStreamStream>, Status> {
        let mut requests = r.into_inner();
        let broker = self.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            while let Ok(Some(request)) = requests.message().await {
                if tx.send(Ok(broker.answer_produce(request).await)).await.is_err() {
                    return;
                }
            }
        });
        let answers = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|a| (a, rx)) });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn fetch(&self, r: Request<v1::FetchRequest>) -> Result<Response<v1::FetchResponse>, Status> {
        let r = r.into_inner();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(u64::from(r.max_wait_ms));
        loop {
            let appended = self.shared.appended.notified();
            {
                let mut state = self.shared.state.lock().unwrap();
                let p = match self.led(&mut state, &r.topic, r.partition) {
                    Ok(p) => p,
                    Err(e) => return Ok(Response::new(v1::FetchResponse { error: Some(e), ..Default::default() })),
                };
                let mut answer =
                    v1::FetchResponse { error: Some(Error::ok()), high_watermark: p.end, ..Default::default() };
                if r.offset > p.end {
                    answer.error = error(ErrorCode::OffsetOutOfRange, "past the end");
                    return Ok(Response::new(answer));
                }
                // Batches that end after the offset; the first may start before it.
                let batches = p.log.iter().filter(|(base, b)| base + u64::from(count(b)) > r.offset);
                answer.batches = batches
                    .map(|(base, b)| v1::FetchedBatch {
                        base_offset: *base,
                        batch: b.clone(),
                        offset_deltas: Vec::new(),
                    })
                    .collect();
                if !answer.batches.is_empty() || tokio::time::Instant::now() >= deadline {
                    return Ok(Response::new(answer));
                }
            }
            let _ = tokio::time::timeout_at(deadline, appended).await;
        }
    }

    async fn list_offsets(
        &self,
        r: Request<v1::ListOffsetsRequest>,
    ) -> Result<Response<v1::ListOffsetsResponse>, Status> {
        let r = r.into_inner();
        let mut state = self.shared.state.lock().unwrap();
        let answer = match self.led(&mut state, &r.topic, r.partition) {
            Err(e) => v1::ListOffsetsResponse { error: Some(e), offset: 0 },
            Ok(p) => {
                let offset = match r.at {
                    Some(At::Earliest(_)) => 0,
                    Some(At::Latest(_)) | None => p.end,
                    Some(At::TimestampMs(ms)) => p
                        .log
                        .iter()
                        .find(|(_, b)| RecordBatch::parse(b.clone()).unwrap().header().max_timestamp_ms >= ms)
                        .map_or(p.end, |(base, _)| *base),
                };
                v1::ListOffsetsResponse { error: Some(Error::ok()), offset }
            }
        };
        Ok(Response::new(answer))
    }
}

fn count(batch: &Bytes) -> u32 {
    RecordBatch::parse(batch.clone()).map_or(0, |b| b.header().count)
}
