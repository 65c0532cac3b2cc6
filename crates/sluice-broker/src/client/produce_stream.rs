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

use futures_util::stream::{FuturesOrdered, Stream, StreamExt};
use sluice_proto::v1::{ProduceRequest, ProduceResponse};
use sluice_proto::{Error, ErrorCode};
use sluice_raft::partition::{lease_fresh, submit, write};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::ClientService;
use super::produce::PreparedProduce;

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
                request = requests.message(), if in_flight.len() < MAX_IN_FLIGHT_PER_STREAM => match request {
                    Ok(Some(request)) => in_flight.push_back(self.start(request).await),
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
        // A request the stream could not deliver (one over the decode limit: OUT_OF_RANGE) ends
        // the answers with its status, so the client learns why no answer came for it.
        if let Some(status) = broke {
            let _ = answers.send(Err(status)).await;
        }
    }

    /// Checks and submits one batch; the returned future answers it. Returns only once the
    /// batch is in its partition's log queue, so the next one lands behind it.
    async fn start(self: &Arc<Self>, request: ProduceRequest) -> Answer {
        let started = Instant::now();
        let prepared = match self.prepare_produce(request) {
            Ok(prepared) => prepared,
            Err(e) => return self.answered(started, Err(e)),
        };
        let PreparedProduce { led, command, batch_bytes, delayed, timeout } = prepared;
        if !lease_fresh(&led.raft, self.pipeline_lease_window) {
            let outcome = tokio::time::timeout(timeout, write(&led.raft, command)).await;
            let answer = self.conclude_produce(&led, batch_bytes, delayed, timeout, outcome);
            return self.answered(started, answer);
        }
        match submit(&led.raft, command).await {
            Ok(pending) => {
                let service = Arc::clone(self);
                Box::pin(async move {
                    let outcome = tokio::time::timeout(timeout, pending).await;
                    let answer = service.conclude_produce(&led, batch_bytes, delayed, timeout, outcome);
                    service.answered(started, answer).await
                })
            }
            Err(e) => {
                let answer = self.conclude_produce(&led, batch_bytes, delayed, timeout, Ok(Err(e)));
                self.answered(started, answer)
            }
        }
    }

    /// A finished answer, counted in the produce metrics.
    fn answered(&self, started: Instant, answer: Result<ProduceResponse, Error>) -> Answer {
        let response = answer.unwrap_or_else(|e| ProduceResponse { error: Some(e), ..ProduceResponse::default() });
        let code = response.error.as_ref().map_or(ErrorCode::Ok, Error::error_code);
        self.metrics.produce_answered(code, started.elapsed());
        Box::pin(std::future::ready(response))
    }
}
