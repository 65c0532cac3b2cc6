//! `ProduceStream`: produce with several batches in flight on one ordered stream.
//!
//! Unary `Produce` calls on one connection are served concurrently, so two of them may reach a
//! partition's Raft log in either order; a producer that needs its batches in sequence must
//! wait for each answer before sending the next. On a stream the broker reads requests in
//! order and *submits* each to its partition's log before reading the next, then waits for the
//! commits concurrently and answers in request order. A producer can thus keep several batches
//! in flight per partition (the idempotence window, `DEDUP_WINDOW`, bounds how many it may
//! resend after a failure) and pay one commit wait per window instead of per batch.
//!
//! A leader refuses writes while its quorum lease has lapsed (an idle group's leader is not
//! acknowledged by anyone until it writes). [`write`] renews the lease and retries, which must
//! not happen to a write with others queued behind it, as they would overtake it. So a batch is
//! pipelined only while the lease is fresh, which it is under load; otherwise (the first batch
//! after a pause) it is written to completion before the next request is read.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{FuturesOrdered, FuturesUnordered, Stream, StreamExt};
use sluice_proto::v1::{Acks, ProduceRequest, ProduceResponse};
use sluice_proto::{Error, ErrorCode};
use sluice_raft::partition::{PendingWrite, WriteError, lease_fresh, submit, write};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::ClientService;
use super::produce::{PreparedProduce, early_commit};

/// Batches one stream may have submitted and unanswered; the stream is not read further until
/// one is answered (HTTP/2 flow control then holds the producer back).
const MAX_IN_FLIGHT_PER_STREAM: usize = 32;

/// Resolves once the broker is stopping (or its stop signal is gone).
async fn stopping(stop: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here, not across an await.
    let _ = stop.wait_for(|stopped| *stopped).await.map(|_| ());
}

/// The answers of a produce stream, in request order.
pub(super) type Answers = Pin<Box<dyn Stream<Item = Result<ProduceResponse, Status>> + Send>>;

type Answer = Pin<Box<dyn Future<Output = ProduceResponse> + Send>>;

/// The commit of a batch answered before it; resolves to the error that must end the stream.
type Background = Pin<Box<dyn Future<Output = Option<Error>> + Send>>;

/// What starting one request gave.
enum Started {
    /// The answer to send, in request order (`ACKS_ALL`, and every refusal but `ACKS_NONE`'s).
    Answer(Answer),
    /// `ACKS_LEADER`: the answer, and the commit to watch.
    Early(Answer, Background),
    /// `ACKS_NONE`: no answer; the commit to watch, if it was not written to completion.
    Silent(Option<Background>),
    /// `ACKS_NONE` refused: the stream ends with this error.
    Refused(Error),
}

/// The status an `ACKS_NONE` stream ends with when one of its batches failed: `UNAVAILABLE` for a
/// retriable code (the producer looks for the leader again), `FAILED_PRECONDITION` otherwise.
fn refusal(e: &Error) -> Status {
    let message = format!("{}: {}", e.error_code().as_str_name(), e.message);
    if e.error_code().is_retriable() { Status::unavailable(message) } else { Status::failed_precondition(message) }
}

impl ClientService {
    /// Serves one produce stream until the client closes it (or it breaks), then answers what
    /// is still in flight.
    pub(super) fn serve_produce_stream(&self, requests: Streaming<ProduceRequest>) -> Answers {
        let (tx, rx) = mpsc::channel(MAX_IN_FLIGHT_PER_STREAM);
        // One copy of the service per stream, shared by its batches' answers.
        tokio::spawn(Arc::new(self.clone()).pump(requests, tx));
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|a| (a, rx)) }))
    }

    async fn pump(
        self: Arc<Self>,
        mut requests: Streaming<ProduceRequest>,
        answers: mpsc::Sender<Result<ProduceResponse, Status>>,
    ) {
        let mut in_flight: FuturesOrdered<Answer> = FuturesOrdered::new();
        // Commits of batches answered early (or not at all); an `ACKS_NONE` one that failed
        // ends the stream with its error.
        let mut committing: FuturesUnordered<Background> = FuturesUnordered::new();
        let mut broke = None;
        // A stopping broker ends its streams (after answering what they submitted), or a
        // graceful shutdown would wait for producers to hang up.
        let mut stop = self.stop.clone();
        loop {
            tokio::select! {
                // Answers first: they free room in the window and reach the producer sooner.
                biased;
                Some(answer) = in_flight.next(), if !in_flight.is_empty() => {
                    if answers.send(Ok(answer)).await.is_err() {
                        return;
                    }
                }
                Some(failed) = committing.next(), if !committing.is_empty() => {
                    if let Some(e) = failed {
                        broke = Some(refusal(&e));
                        break;
                    }
                }
                request = requests.message(), if in_flight.len() + committing.len() < MAX_IN_FLIGHT_PER_STREAM => match request {
                    Ok(Some(request)) => match self.start(request).await {
                        Started::Answer(answer) => in_flight.push_back(answer),
                        Started::Early(answer, commit) => {
                            in_flight.push_back(answer);
                            committing.push(commit);
                        }
                        Started::Silent(commit) => committing.extend(commit),
                        Started::Refused(e) => {
                            broke = Some(refusal(&e));
                            break;
                        }
                    },
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(%status, "produce stream broke");
                        broke = Some(status);
                        break;
                    }
                },
                () = stopping(&mut stop) => break,
            }
        }
        while let Some(answer) = in_flight.next().await {
            if answers.send(Ok(answer)).await.is_err() {
                return;
            }
        }
        while let Some(failed) = committing.next().await {
            if let (Some(e), None) = (failed, &broke) {
                broke = Some(refusal(&e));
            }
        }
        // A request the stream could not deliver (one over the decode limit: OUT_OF_RANGE), or an
        // `ACKS_NONE` batch that failed, ends the answers with its status, so the client learns
        // why no answer came for it.
        if let Some(status) = broke {
            let _ = answers.send(Err(status)).await;
        }
    }

    /// Checks and submits one batch; the returned future answers it. Returns only once the
    /// batch is in its partition's log queue, so the next one lands behind it.
    async fn start(self: &Arc<Self>, request: ProduceRequest) -> Started {
        let started = Instant::now();
        let acks = request.acks();
        let prepared = match self.prepare_produce(request) {
            Ok(prepared) => prepared,
            Err(e) if acks == Acks::None => return Started::Refused(e),
            Err(e) => return Started::Answer(self.answered(started, Err(e))),
        };
        if !lease_fresh(&prepared.led.raft, self.pipeline_lease_window) {
            return self.write_through(started, prepared).await;
        }
        if acks != Acks::All {
            return match self.early.submit(&prepared.early(), prepared.command.clone()).await {
                Some(submitted) => self.start_early(started, prepared, submitted),
                None => self.write_through(started, prepared).await,
            };
        }
        let PreparedProduce { led, command, batch_bytes, delayed, timeout, .. } = prepared;
        match submit(&led.raft, command).await {
            Ok(pending) => {
                let service = Arc::clone(self);
                Started::Answer(Box::pin(async move {
                    let outcome = tokio::time::timeout(timeout, pending).await;
                    let answer = service.conclude_produce(&led, batch_bytes, delayed, timeout, outcome);
                    service.answered(started, answer).await
                }))
            }
            Err(e) => {
                let answer = self.conclude_produce(&led, batch_bytes, delayed, timeout, Ok(Err(e)));
                Started::Answer(self.answered(started, answer))
            }
        }
    }

    /// Writes one batch to completion before the stream reads on: the first after a pause
    /// (the lease lapsed), or one that may not be answered before its commit.
    async fn write_through(self: &Arc<Self>, started: Instant, prepared: PreparedProduce) -> Started {
        let outcome = tokio::time::timeout(prepared.timeout, write(&prepared.led.raft, prepared.command.clone())).await;
        self.written(&prepared, &outcome).await;
        let PreparedProduce { led, batch_bytes, delayed, timeout, acks, .. } = prepared;
        let answer = self.conclude_produce(&led, batch_bytes, delayed, timeout, outcome);
        match (acks, answer) {
            (Acks::None, Err(e)) => Started::Refused(e),
            (Acks::None, Ok(_)) => Started::Silent(None),
            (_, answer) => Started::Answer(self.answered(started, answer)),
        }
    }

    /// `ACKS_LEADER` and `ACKS_NONE`: answers at once (or not at all), and leaves the commit to
    /// a future the pump polls in the background. Under `ACKS_NONE` a failed commit ends the
    /// stream, so the producer hears of it.
    fn start_early(
        self: &Arc<Self>,
        started: Instant,
        prepared: PreparedProduce,
        submitted: Result<PendingWrite, WriteError>,
    ) -> Started {
        let acks = prepared.acks;
        let (answer, commit) = match early_commit(Arc::clone(self), prepared, submitted) {
            Ok(early) => early,
            Err(answer) => {
                return match (acks, answer) {
                    (Acks::None, Err(e)) => Started::Refused(e),
                    (_, answer) => Started::Answer(self.answered(started, answer)),
                };
            }
        };
        let commit: Background = Box::pin(async move { commit.await.filter(|_| acks == Acks::None) });
        if acks == Acks::None {
            self.metrics.produce_answered(ErrorCode::Ok, started.elapsed());
            return Started::Silent(Some(commit));
        }
        Started::Early(self.answered(started, Ok(answer)), commit)
    }

    /// A finished answer, counted in the produce metrics.
    fn answered(&self, started: Instant, answer: Result<ProduceResponse, Error>) -> Answer {
        let response = answer.unwrap_or_else(|e| ProduceResponse { error: Some(e), ..ProduceResponse::default() });
        let code = response.error.as_ref().map_or(ErrorCode::Ok, Error::error_code);
        self.metrics.produce_answered(code, started.elapsed());
        Box::pin(std::future::ready(response))
    }
}
