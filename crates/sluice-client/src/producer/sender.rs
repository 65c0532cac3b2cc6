//! The sender: one task per partition the producer writes to. It takes the partition's ready
//! batches, sends them to the partition's leader on one `ProduceStream`, and resends them
//! (same bytes, same sequences) until each is acknowledged, refused for good, or out of time.
//!
//! Up to [`MAX_IN_FLIGHT`] batches are in flight at once. The stream is what keeps them in
//! order: the broker submits a stream's batches to the Raft log in the order they arrive, so
//! batch n+1 never overtakes batch n, and answers them in that order. After a retriable failure
//! the whole window is resent, in order, on a new stream; the broker's deduplication window
//! (five batches per producer, as Kafka's) recognises the ones already written, which is why
//! the window is no larger. A batch refused for good loses the producer id (the broker's
//! sequence is no longer known): the batches behind it are *orphaned*; those the broker refused
//! as out of order were not written and are resent first under a new producer id.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_common::record::ProducerStamp;
use sluice_proto::{ErrorCode, error_of, v1};
use tokio::sync::mpsc;

use super::queue::{BatchDone, Identity, Next, PartitionQueue, restamp};
use super::{SendFailure, Shared};
use crate::client::{Call, Route};
use crate::error::{Error, Result};
use crate::record::RecordMetadata;

/// Batches in flight per partition: the broker's deduplication window, so that resending the
/// whole window after a failure cannot write any of it twice.
pub(crate) const MAX_IN_FLIGHT: usize = 5;

/// While the oldest batch waits this long for its answer, the partition's leader is looked up
/// again (and again as often): a leader that stopped answering — paused, or cut off in one
/// direction — does not break the stream, and waiting for `request_timeout` would keep the
/// partition stalled long after another broker took over.
const LEADER_RECHECK: Duration = Duration::from_secs(1);

/// One partition's queue and the signal that wakes its sender.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: u32,
    pub(crate) queue: Mutex<PartitionQueue>,
    pub(crate) wake: tokio::sync::Notify,
}

impl Slot {
    pub(crate) fn new(topic: Arc<str>, partition: u32, queue: PartitionQueue) -> Slot {
        Slot { topic, partition, queue: Mutex::new(queue), wake: tokio::sync::Notify::new() }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, PartitionQueue> {
        self.queue.lock().expect("partition queue lock")
    }
}

/// A batch taken from the queue and not yet finished.
struct InFlight {
    /// The batch as it was (or will be) sent.
    bytes: Bytes,
    done: BatchDone,
    /// When delivery gives up (`delivery_timeout` after the batch was opened).
    deadline: Instant,
    /// When it was last sent; no answer within `request_timeout` breaks the stream.
    sent_at: Instant,
    /// Sent under a producer id that a failure since lost.
    orphaned: bool,
    /// How many times it went out on a stream. Once it has, it may be written, so a later
    /// refusal that only says "not here" cannot prove it was not (see [`Sender::settles`]).
    attempts: u32,
}

/// Requests queued for a stream's transport. Acknowledged sends keep at most
/// [`MAX_IN_FLIGHT`] there; unacknowledged ones (`Acks::None`) wait for room, which HTTP/2 flow
/// control makes as the broker reads.
const STREAM_QUEUE: usize = 2 * MAX_IN_FLIGHT;

/// An open `ProduceStream` to the partition's leader.
struct Stream {
    requests: mpsc::Sender<v1::ProduceRequest>,
    answers: tonic::Streaming<v1::ProduceResponse>,
    address: String,
}

/// How getting a new producer id went.
enum Renewal {
    Renewed,
    /// No batch needs one yet.
    NothingToSend,
    /// It could not be had in time; the batches waiting for it failed.
    Failed,
}

/// What made the sender look again.
enum Event {
    Answer(v1::ProduceResponse),
    Broken(Error),
    /// A new batch may be ready (woken, or a linger ended).
    Look,
    /// The oldest batch has waited [`LEADER_RECHECK`]: see whether the leader moved.
    Recheck,
}

struct Sender {
    shared: Arc<Shared>,
    slot: Arc<Slot>,
    /// Sent, or to be sent on the next stream, oldest first.
    window: VecDeque<InFlight>,
    /// Waiting for a producer id before they are (re)stamped and sent: batches the broker
    /// refused as out of order after their producer id was lost, and batches taken while it was.
    unsent: VecDeque<InFlight>,
    stream: Option<Stream>,
    /// When the open batch's linger ends.
    linger_until: Option<Instant>,
    /// The queue is closed and drained.
    drained: bool,
    /// The pause before the next reconnection; `None` while the last attempt worked.
    backoff: Option<Duration>,
    /// When to look up the partition's leader again while an answer is overdue.
    recheck_at: Option<Instant>,
    last_error: Option<Error>,
    /// The leader a NOT_LEADER answer named: the next stream goes there at once, without a
    /// pause or a metadata refresh (a leader handing over as it stops names its successor).
    redirect: Option<String>,
    /// Redirects followed in a row without an answer accepted: bounded, as two brokers that
    /// each name the other (a transfer in progress) must not be bounced between forever.
    redirects: u32,
}

/// Redirects followed at once before the usual back-off applies again.
const MAX_IMMEDIATE_REDIRECTS: u32 = 3;

/// Sends the slot's batches until the producer is closed and the slot drained.
pub(crate) async fn run(shared: Arc<Shared>, slot: Arc<Slot>) {
    let mut sender = Sender {
        shared,
        slot,
        window: VecDeque::new(),
        unsent: VecDeque::new(),
        stream: None,
        linger_until: None,
        drained: false,
        backoff: None,
        recheck_at: None,
        last_error: None,
        redirect: None,
        redirects: 0,
    };
    sender.run().await;
}

impl Sender {
    async fn run(&mut self) {
        loop {
            self.fill().await;
            if self.window.is_empty() && self.unsent.is_empty() && self.drained {
                return;
            }
            if !self.window.is_empty() && self.stream.is_none() {
                self.connect().await;
                continue;
            }
            match self.next_event().await {
                Event::Answer(answer) => {
                    self.recheck_at = None;
                    self.on_answer(answer);
                }
                Event::Broken(error) => self.on_broken(error),
                Event::Look => {}
                Event::Recheck => self.recheck_leader().await,
            }
        }
    }

    /// Moves ready batches into the window while it has room.
    async fn fill(&mut self) {
        while self.window.len() < MAX_IN_FLIGHT {
            let lost = self.slot.lock().identity() == Identity::Lost;
            if lost || !self.unsent.is_empty() {
                // Orphans still in the window may yet be refused and go ahead of these.
                if !self.window.is_empty() {
                    return;
                }
                if lost {
                    match self.renew_identity().await {
                        Renewal::Renewed => {}
                        Renewal::Failed => continue,
                        Renewal::NothingToSend => return,
                    }
                }
                if !self.send_unsent() {
                    return;
                }
                continue;
            }
            let next = self.slot.lock().next(Instant::now(), self.shared.config.linger);
            self.linger_until = None;
            match next {
                Next::Send(batch) => {
                    let deadline = batch.created + self.shared.config.delivery_timeout;
                    let stamp = self.slot.lock().stamp_next(batch.count());
                    let (bytes, done) = batch.encode(stamp.unwrap_or(ProducerStamp::NONE));
                    let item =
                        InFlight { bytes, done, deadline, sent_at: Instant::now(), orphaned: false, attempts: 0 };
                    match stamp {
                        Some(_) if self.unacknowledged() => self.send_unacknowledged(item).await,
                        Some(_) => self.send(item),
                        None => self.unsent.push_back(item),
                    }
                }
                Next::WaitUntil(at) => {
                    self.linger_until = Some(at);
                    return;
                }
                Next::Idle => return,
                Next::Finished => {
                    self.drained = true;
                    return;
                }
            }
        }
    }

    /// Gets a new producer id for the unsent batches (taking the next ready batch if there is
    /// none); if it cannot be had before the oldest one's deadline, they fail.
    async fn renew_identity(&mut self) -> Renewal {
        if self.unsent.is_empty() {
            let next = self.slot.lock().next(Instant::now(), self.shared.config.linger);
            let batch = match next {
                Next::Send(batch) => batch,
                Next::WaitUntil(at) => {
                    self.linger_until = Some(at);
                    return Renewal::NothingToSend;
                }
                Next::Idle => return Renewal::NothingToSend,
                Next::Finished => {
                    self.drained = true;
                    return Renewal::NothingToSend;
                }
            };
            let deadline = batch.created + self.shared.config.delivery_timeout;
            let (bytes, done) = batch.encode(ProducerStamp::NONE);
            self.unsent.push_back(InFlight {
                bytes,
                done,
                deadline,
                sent_at: Instant::now(),
                orphaned: false,
                attempts: 0,
            });
        }
        let deadline = self.unsent.front().map_or_else(Instant::now, |b| b.deadline);
        match init_producer(&self.shared.client, deadline).await {
            Ok((producer_id, epoch)) => {
                let count = self.unsent.iter().map(|b| b.done.count).sum();
                self.slot.lock().install(producer_id, epoch, count);
                Renewal::Renewed
            }
            Err(e) => {
                for item in std::mem::take(&mut self.unsent) {
                    self.finish(item, Err(e.clone()));
                }
                Renewal::Failed
            }
        }
    }

    /// Stamps and sends unsent batches while the window has room. False if the identity was
    /// lost again (sequence numbers ran out).
    fn send_unsent(&mut self) -> bool {
        while self.window.len() < MAX_IN_FLIGHT {
            let Some(mut item) = self.unsent.pop_front() else { return true };
            let Some(stamp) = self.slot.lock().stamp_next(item.done.count) else {
                self.unsent.push_front(item);
                return false;
            };
            item.bytes = restamp(&item.bytes, stamp);
            item.orphaned = false;
            self.send(item);
        }
        true
    }

    /// Adds `item` to the window and sends it if a stream is open (otherwise the next stream
    /// sends the whole window).
    fn send(&mut self, mut item: InFlight) {
        item.sent_at = Instant::now();
        if let Some(stream) = &self.stream {
            // A send fails only if the stream ended; its answers then say why, and the window
            // is resent on the next one. The window never fills the queue.
            let _ = stream.requests.try_send(self.request(&item));
            item.attempts += 1;
        }
        self.window.push_back(item);
    }

    /// Whether batches go unacknowledged (`Acks::None`): each is done once it is on its way.
    fn unacknowledged(&self) -> bool {
        self.shared.config.acks == crate::config::Acks::None
    }

    /// `Acks::None`: hands `item` to the open stream, waiting for room, and finishes it; without
    /// a stream it waits in the window for [`Sender::connect`].
    async fn send_unacknowledged(&mut self, item: InFlight) {
        let Some(stream) = &self.stream else {
            self.window.push_back(item);
            return;
        };
        match stream.requests.send(self.request(&item)).await {
            Ok(()) => self.finish(item, Ok(RecordMetadata::NO_OFFSET)),
            Err(_) => {
                // The stream ended under it: its answers say why; this one goes on the next.
                self.window.push_back(item);
            }
        }
    }

    fn request(&self, item: &InFlight) -> v1::ProduceRequest {
        v1::ProduceRequest {
            topic: self.slot.topic.to_string(),
            partition: self.slot.partition,
            batch: item.bytes.clone(),
            timeout_ms: 0,
            acks: self.shared.config.acks.wire().into(),
        }
    }

    async fn next_event(&mut self) -> Event {
        let room = self.window.len() < MAX_IN_FLIGHT && !self.drained;
        let linger = self.linger_until;
        let request_timeout = self.shared.client.config().request_timeout;
        let answer_due = self.window.front().map(|b| b.sent_at + request_timeout);
        let recheck = self.window.front().map(|b| self.recheck_at.unwrap_or(b.sent_at + LEADER_RECHECK));
        let address = self.address();
        let connected = self.stream.is_some();
        let slot = Arc::clone(&self.slot);
        let answers = async {
            match self.stream.as_mut() {
                Some(stream) => stream.answers.message().await,
                None => std::future::pending().await,
            }
        };
        let broken =
            |code, message: String| Event::Broken(Error::Transport { address: address.clone(), code, message });
        tokio::select! {
            answer = answers => match answer {
                Ok(Some(answer)) => Event::Answer(answer),
                Ok(None) => broken(tonic::Code::Unavailable, "the broker ended the stream".into()),
                Err(status) => Event::Broken(Error::from_status(&address, &status)),
            },
            () = slot.wake.notified(), if room => Event::Look,
            () = sleep_until(linger), if room && linger.is_some() => Event::Look,
            () = sleep_until(recheck), if recheck.is_some() && connected => Event::Recheck,
            () = sleep_until(answer_due), if answer_due.is_some() && connected => {
                broken(tonic::Code::DeadlineExceeded, format!("no answer within {} ms", request_timeout.as_millis()))
            }
        }
    }

    /// The oldest batch's answer is overdue: if metadata (refreshed) now names another leader,
    /// the stream is given up and the window resent there at once.
    async fn recheck_leader(&mut self) {
        let seen = Instant::now();
        self.recheck_at = Some(seen + LEADER_RECHECK);
        let silent = self.stream.as_ref().map(|s| s.address.clone());
        if let Err(e) = self.shared.client.refresh_asking_last(seen, silent.as_deref()).await {
            tracing::debug!(error = %e, "metadata refresh failed while an answer was overdue");
            return;
        }
        let route = Route::Leader { topic: &self.slot.topic, partition: self.slot.partition };
        let Ok(leader) = self.shared.client.route_address(route, seen).await else { return };
        let Some(stream) = &self.stream else { return };
        if leader != stream.address {
            let message = format!("no answer from {}, and {leader} leads the partition now", stream.address);
            let moved = self.transport_error(tonic::Code::Unavailable, &message);
            self.recheck_at = None;
            self.on_broken(moved);
            // The new leader is known: go there without the usual pause.
            self.backoff = None;
        }
    }

    fn on_answer(&mut self, answer: v1::ProduceResponse) {
        let Some(front) = self.window.pop_front() else {
            let broken = self.transport_error(tonic::Code::Internal, "an answer came for no batch in flight");
            return self.on_broken(broken);
        };
        let error = error_of(answer.error.as_ref());
        if error.is_ok() {
            self.redirects = 0;
        }
        if error.is_ok() && answer.leader_only {
            self.backoff = None;
            return self.finish(front, Ok(RecordMetadata::NO_OFFSET));
        }
        if error.is_ok() {
            self.backoff = None;
            // A delayed batch is numbered among the partition's delayed messages instead.
            let base = if front.done.delayed { answer.delayed_base_seq } else { answer.base_offset };
            if answer.delayed != front.done.delayed {
                let message = format!(
                    "the broker answered delayed={} for a batch with delayed={}",
                    answer.delayed, front.done.delayed
                );
                return self.finish(front, Err(Error::broker(ErrorCode::Internal, message)));
            }
            return self.finish(front, Ok(base));
        }
        let code = error.error_code();
        let hint = (code == ErrorCode::NotLeader).then(|| error.leader.as_ref().map(|l| l.client_address.clone()));
        let error = Error::from_proto(&error);
        if front.orphaned {
            // Refused as out of order: never written, so it can go again under the new id.
            if matches!(code, ErrorCode::OutOfOrderSequence | ErrorCode::UnknownProducer) {
                self.unsent.push_back(front);
            } else {
                self.finish(front, Err(error));
            }
            return;
        }
        // Under `Acks::All` the batches before the front were committed, so the partition forgot
        // the producer (expiry). Under `Acks::Leader` a deposed leader may have lost them: that
        // is reported, as an `OUT_OF_ORDER_SEQUENCE` is (docs/DURABILITY.md).
        if code == ErrorCode::UnknownProducer && self.shared.config.acks == crate::config::Acks::All {
            return self.start_again(front);
        }
        if code.is_retriable() || !Self::settles(code, front.attempts) {
            self.window.push_front(front);
            self.follow(hint.flatten());
            return self.on_broken(error);
        }
        self.finish(front, Err(error));
        if self.shared.config.idempotence {
            self.window.iter_mut().for_each(|b| b.orphaned = true);
        }
    }

    /// The partition forgot the producer (its state expired) and `front` does not start its
    /// sequence. Nothing in the window was written, as a partition accepts a producer it does
    /// not know only at sequence 0: the window goes again, in order, under a new producer id.
    fn start_again(&mut self, front: InFlight) {
        tracing::debug!(topic = %self.slot.topic, partition = self.slot.partition, "the partition does not know the producer; starting again under a new producer id");
        self.slot.lock().lose_identity();
        self.window.push_front(front);
        for item in std::mem::take(&mut self.window).into_iter().rev() {
            self.unsent.push_front(item);
        }
        self.stream = None;
        self.recheck_at = None;
    }

    /// Makes the next stream go to `leader` at once, if a NOT_LEADER named one other than the
    /// broker answering and the redirects in a row allow.
    fn follow(&mut self, leader: Option<String>) {
        let current = self.stream.as_ref().map(|s| s.address.as_str());
        let Some(leader) = leader.filter(|l| !l.is_empty() && Some(l.as_str()) != current) else { return };
        if self.redirects < MAX_IMMEDIATE_REDIRECTS {
            self.redirects += 1;
            self.redirect = Some(leader);
            self.backoff = None;
        }
    }

    /// The stream can no longer be trusted: drop it; the window is resent on a new one.
    /// Orphans cannot be resent (whether they were written is unknown) and fail.
    fn on_broken(&mut self, error: Error) {
        tracing::debug!(topic = %self.slot.topic, partition = self.slot.partition, %error, "produce stream broke");
        if self.unacknowledged() && self.stream.is_some() {
            // What was on its way is lost or not, unknown: the break is the failure to count.
            self.shared.failures.failed(self.failure(None, error.clone()));
        }
        self.stream = None;
        self.recheck_at = None;
        while self.window.front().is_some_and(|b| b.orphaned) {
            let item = self.window.pop_front().expect("checked above");
            self.finish(item, Err(error.clone()));
        }
        self.last_error = Some(error);
    }

    /// Opens a stream to the partition's leader and sends the window on it, after a pause if
    /// the last attempt failed; fails the window once its oldest batch is out of time.
    async fn connect(&mut self) {
        let mut deadline = self.window.front().map_or_else(Instant::now, |b| b.deadline);
        if self.unacknowledged() {
            // Nothing is retried: a leader that cannot be found or reached within one request
            // timeout fails the window, rather than hold it for the whole delivery timeout.
            deadline = deadline.min(Instant::now() + self.shared.client.config().request_timeout);
        }
        if let Some(pause) = self.backoff {
            if Instant::now() + pause >= deadline {
                return self.expire_window();
            }
            tokio::time::sleep(pause).await;
            let _ = self.shared.client.refresh_after(Instant::now() - pause).await;
        }
        let config = self.shared.client.config();
        let (min, max) = (config.retry_backoff_min, config.retry_backoff_max);
        self.backoff = Some(self.backoff.map_or(min, |b| (b * 2).min(max)));
        match self.open(deadline).await {
            Ok(stream) => {
                for item in &mut self.window {
                    item.sent_at = Instant::now();
                    item.attempts += 1;
                }
                let requests: Vec<_> = self.window.iter().map(|item| self.request(item)).collect();
                for request in requests {
                    let _ = stream.requests.try_send(request);
                }
                self.stream = Some(stream);
                if self.unacknowledged() {
                    for item in std::mem::take(&mut self.window) {
                        self.finish(item, Ok(RecordMetadata::NO_OFFSET));
                    }
                }
            }
            // Unacknowledged sends are not retried: the window fails at once.
            Err(e) if self.unacknowledged() => {
                for item in std::mem::take(&mut self.window) {
                    self.finish(item, Err(e.clone()));
                }
            }
            Err(e) if e.is_retriable() || self.window.iter().any(|b| !Self::settles_error(&e, b.attempts + 1)) => {
                self.last_error = Some(e);
            }
            Err(e) => {
                for item in std::mem::take(&mut self.window) {
                    self.finish(item, Err(e.clone()));
                }
            }
        }
    }

    async fn open(&mut self, deadline: Instant) -> Result<Stream> {
        let route = Route::Leader { topic: &self.slot.topic, partition: self.slot.partition };
        let address = match self.redirect.take() {
            Some(address) => address,
            None => self.shared.client.route_address(route, deadline).await?,
        };
        let mut rpc = self.shared.client.rpc(&address)?;
        let (requests, outbound) = mpsc::channel(STREAM_QUEUE);
        let outbound = futures_util::stream::unfold(outbound, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) });
        let limit = self.shared.client.config().request_timeout;
        let answers = match tokio::time::timeout(limit, rpc.produce_stream(outbound)).await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => return Err(Error::from_status(&address, &status)),
            Err(_) => {
                let message = format!("no answer within {} ms", limit.as_millis());
                return Err(Error::Transport { address, code: tonic::Code::DeadlineExceeded, message });
            }
        };
        Ok(Stream { requests, answers, address })
    }

    /// Whether a non-retriable refusal `code` of a batch's `attempts`-th sending proves that it
    /// was never written, so it can fail for good. `UNKNOWN_TOPIC` and `UNKNOWN_PARTITION` do
    /// only on the first sending: after that an earlier sending may have been written, and the
    /// refusal may come from a broker whose metadata has not caught up yet (a restarted one), so
    /// the batch is resent until its delivery timeout, as Kafka retries them.
    fn settles(code: ErrorCode, attempts: u32) -> bool {
        attempts <= 1 || !matches!(code, ErrorCode::UnknownTopic | ErrorCode::UnknownPartition)
    }

    fn settles_error(error: &Error, attempts: u32) -> bool {
        error.code().is_none_or(|code| Self::settles(code, attempts))
    }

    /// The oldest batch ran out of time: every batch in the window fails with the last error
    /// (each may or may not have been written).
    fn expire_window(&mut self) {
        let last = self.last_error.take().unwrap_or_else(|| self.transport_error(tonic::Code::Unavailable, "unsent"));
        let elapsed = self.shared.config.delivery_timeout;
        let operation = format!("produce to {}/{}", self.slot.topic, self.slot.partition);
        let error = Error::Timeout { operation, elapsed, last: Box::new(last) };
        for item in std::mem::take(&mut self.window) {
            self.finish(item, Err(error.clone()));
        }
        self.backoff = None;
    }

    fn finish(&self, item: InFlight, result: Result<u64>) {
        if let Err(e) = &result {
            tracing::debug!(topic = %self.slot.topic, partition = self.slot.partition, error = %e, ambiguous = e.is_ambiguous(), "batch failed");
            self.shared.failures.failed(self.failure(Some(item.done.count), e.clone()));
        }
        self.slot.lock().finished(result.is_ok());
        item.done.outcome.complete(result);
        self.shared.memory.add_permits(item.done.reserved_bytes);
    }

    fn failure(&self, records: Option<u32>, error: Error) -> SendFailure {
        SendFailure { topic: Arc::clone(&self.slot.topic), partition: self.slot.partition, records, error }
    }

    fn address(&self) -> String {
        self.stream.as_ref().map_or_else(String::new, |s| s.address.clone())
    }

    fn transport_error(&self, code: tonic::Code, message: &str) -> Error {
        Error::Transport { address: self.address(), code, message: message.to_owned() }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Asks the controller for a fresh producer id and epoch.
pub(crate) async fn init_producer(client: &crate::Client, deadline: Instant) -> Result<(i64, i16)> {
    let call = Call { deadline, ..client.call("InitProducer", Route::Controller) };
    let answer =
        client.execute(call, |mut rpc| async move { rpc.init_producer(v1::InitProducerRequest {}).await }).await?;
    let producer_id = i64::try_from(answer.producer_id).ok().filter(|&id| id > 0);
    let epoch = i16::try_from(answer.epoch).ok();
    match (producer_id, epoch) {
        (Some(id), Some(epoch)) => Ok((id, epoch)),
        _ => Err(Error::Protocol {
            address: "the controller".into(),
            message: format!("producer id {} epoch {} do not fit the batch format", answer.producer_id, answer.epoch),
        }),
    }
}
