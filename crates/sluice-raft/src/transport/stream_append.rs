//! Pipelined replication, client side: openraft's stream of AppendEntries requests becomes one
//! bidirectional gRPC `StreamAppend` call to the follower, and its responses come back in order.
//!
//! ```text
//!  openraft requests ──► acquire in-flight slot ──► encode (group_id) ──► gRPC request stream
//!  openraft results  ◄── release oldest slot   ◄── decode            ◄── gRPC response stream
//! ```
//!
//! Deadlines: openraft passes `RPCOption` with `hard_ttl = heartbeat_interval` for a stream
//! that may live much longer, so `soft_ttl()` bounds progress, not the stream: opening the call,
//! and each unanswered request, which must be answered within `soft_ttl` of being sent or of
//! the previous answer, whichever is later. An idle stream (nothing unanswered) has no deadline
//! and no timer — with thousands of quiescent groups, most streams are idle — and HTTP/2
//! keepalive covers the connection meanwhile. At most `max_inflight_appends` requests
//! are unanswered at once; the next waits for a slot, which bounds what a slow follower pins.
//!
//! The first request is awaited before the call is opened: openraft may hold it back (its
//! backoff sleeps inside the request stream), and that wait must not count against the peer.
//!
//! The request half ends when openraft drops the result stream (its session is over). openraft
//! generates every session's requests from one shared state, so a call left sending after its
//! session would take requests meant for the next one and deliver them on a stream nobody
//! reads: the follower got entries out of order, lost one to a conflict, and stalled.
//!
//! Faults (failure testing, `faults.rs`): each request passes the fault plan before it is sent.
//! One the plan stops ends the request half, and the results end with its error after the
//! answers to the requests before it. A cut link also ends the results at the next answer, or,
//! while a fault plan is armed, within `soft_ttl` while the stream is idle.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{Stream, StreamExt, stream};
use openraft::RPCTypes;
use openraft::base::BoxStream;
use openraft::errors::RPCError;
use openraft::network::RPCOption;
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;
use tonic::{Request, Streaming};

use super::convert;
use super::error::Call;
use super::faults::{Fault, Faults};
use super::network::PeerNetwork;
use super::pb;
use crate::typ::PartitionConfig;

type C = PartitionConfig;
type Results<'s> = BoxStream<'s, Result<StreamAppendResult<C>, RPCError<C>>>;

/// Opens the stream; see the module doc.
pub(crate) async fn open<'s, S>(
    net: &'s mut PeerNetwork,
    input: S,
    option: RPCOption,
) -> Result<Results<'s>, RPCError<C>>
where
    S: Stream<Item = AppendEntriesRequest<C>> + Send + Unpin + 'static,
{
    let call = net.call(RPCTypes::AppendEntries);
    let mut client = net.client(&call)?;
    let deadline = option.soft_ttl();
    let mut input = input;
    let Some(first) = input.next().await else {
        return Ok(Box::pin(stream::empty()));
    };
    let faults = net.clients().faults().clone();
    faults.check(call.target).map_err(|fault| fault.rpc_error(&call))?;
    let inflight = Inflight::new(net.clients().config().max_inflight_appends);
    let (session, ended) = Session::new(inflight.clone());
    let rest = passing(input, faults.clone(), call.target, inflight.clone());
    let requests = outbound(net.group_id(), first, rest, inflight.clone(), ended);
    let responses = match tokio::time::timeout(deadline, client.stream_append(Request::new(requests))).await {
        Err(_elapsed) => return Err(call.timeout(deadline)),
        Ok(Err(status)) => return Err(call.failed(&status, deadline)),
        Ok(Ok(response)) => response.into_inner(),
    };
    Ok(results(responses, session, call, deadline, faults))
}

/// `input` up to the first request the fault plan stops, which ends it and is recorded as the
/// reason the stream broke.
fn passing<S>(
    input: S,
    faults: Faults,
    target: u64,
    inflight: Inflight,
) -> impl Stream<Item = AppendEntriesRequest<C>> + Send + Unpin + 'static
where
    S: Stream<Item = AppendEntriesRequest<C>> + Send + Unpin + 'static,
{
    input.take_while(move |_| {
        let fault = faults.check(target).err();
        if let Some(fault) = fault {
            inflight.sent.lock().expect("in-flight queue poisoned").broken = Some(fault);
        }
        std::future::ready(fault.is_none())
    })
}

/// Held by the result stream; dropping it ends the request stream (see the module doc): the
/// request stream takes nothing more from openraft, and one waiting for a slot gives up.
struct Session {
    inflight: Inflight,
    _ended: oneshot::Sender<()>,
}

impl Session {
    /// The session, and the future that resolves when it is dropped.
    fn new(inflight: Inflight) -> (Session, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (Session { inflight, _ended: tx }, rx)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.inflight.slots.close();
    }
}

/// The gRPC request stream: each request takes an in-flight slot before it is encoded. It ends,
/// without asking openraft for another request, once the session has `ended`.
fn outbound<S>(
    group_id: u64,
    first: AppendEntriesRequest<C>,
    rest: S,
    inflight: Inflight,
    ended: oneshot::Receiver<()>,
) -> impl Stream<Item = pb::AppendEntriesRequest> + Send + 'static
where
    S: Stream<Item = AppendEntriesRequest<C>> + Send + Unpin + 'static,
{
    stream::once(async { first }).chain(rest).take_until(ended).filter_map(move |req| {
        let inflight = inflight.clone();
        async move { inflight.sending().await.then(|| convert::append_request_to_pb(group_id, &req)) }
    })
}

/// openraft's result stream. It ends after the first error or rejection (openraft stops
/// reading there), or when the follower closes the stream with nothing unanswered.
fn results<'s>(
    responses: Streaming<pb::StreamAppendResponse>,
    session: Session,
    call: Call,
    deadline: Duration,
    faults: Faults,
) -> Results<'s> {
    let state = Some((responses, session, faults));
    Box::pin(stream::unfold(state, move |state| async move {
        let (mut responses, session, faults) = state?;
        match next_result(&mut responses, &session.inflight, call, deadline, &faults).await {
            None => None,
            Some(Ok(result)) => {
                let go_on = result.is_ok();
                Some((Ok(result), go_on.then_some((responses, session, faults))))
            }
            Some(Err(e)) => Some((Err(e), None)),
        }
    }))
}

async fn next_result(
    responses: &mut Streaming<pb::StreamAppendResponse>,
    inflight: &Inflight,
    call: Call,
    deadline: Duration,
    faults: &Faults,
) -> Option<Result<StreamAppendResult<C>, RPCError<C>>> {
    loop {
        // With nothing unanswered there is no deadline, and no timer: an idle stream (most of
        // them, with thousands of quiescent groups) costs no wake-ups until a request is sent.
        // Only while a fault plan is armed does it look every `deadline` for a cut link.
        let wake_at = match inflight.overdue_at(deadline) {
            Some(at) => Some(at),
            None if faults.is_armed() => Some(Instant::now() + deadline),
            None => None,
        };
        let message = match wake_at {
            Some(at) => match tokio::time::timeout_at(at, responses.message()).await {
                Err(_elapsed) => {
                    if faults.is_cut(call.target) {
                        return Some(Err(Fault::Cut.rpc_error(&call)));
                    }
                    if inflight.overdue_at(deadline).is_some_and(|at| at <= Instant::now()) {
                        return Some(Err(call.timeout(deadline)));
                    }
                    continue;
                }
                Ok(message) => message,
            },
            None => tokio::select! {
                message = responses.message() => message,
                () = inflight.sent_signal.notified() => continue,
            },
        };
        return match message {
            Ok(Some(_)) if faults.is_cut(call.target) => Some(Err(Fault::Cut.rpc_error(&call))),
            Ok(Some(response)) => {
                if !inflight.answered() {
                    return Some(Err(call.network("StreamAppend: a response without a request")));
                }
                Some(convert::stream_result_from_pb(response).map_err(|e| call.unreachable(e)))
            }
            Ok(None) if let Some(fault) = inflight.broken() => Some(Err(fault.rpc_error(&call))),
            Ok(None) => match inflight.unanswered() {
                0 => None,
                n => Some(Err(call.network(format!("StreamAppend closed with {n} requests unanswered")))),
            },
            Err(status) => Some(Err(call.failed(&status, deadline))),
        };
    }
}

/// Requests sent and not yet answered, oldest first, each holding one of the stream's slots.
#[derive(Clone)]
struct Inflight {
    slots: Arc<Semaphore>,
    sent: Arc<Mutex<Sent>>,
    /// Signalled on every request sent, to start an idle response reader's deadline.
    sent_signal: Arc<Notify>,
}

struct Sent {
    queue: VecDeque<(Instant, OwnedSemaphorePermit)>,
    last_answer: Instant,
    /// The fault that ended the request half, if one did.
    broken: Option<Fault>,
}

impl Inflight {
    fn new(max_inflight: usize) -> Inflight {
        assert!(max_inflight > 0, "max_inflight_appends must be positive");
        let sent = Sent { queue: VecDeque::with_capacity(max_inflight), last_answer: Instant::now(), broken: None };
        let slots = Arc::new(Semaphore::new(max_inflight));
        Inflight { slots, sent: Arc::new(Mutex::new(sent)), sent_signal: Arc::new(Notify::new()) }
    }

    /// Waits for a free slot and records a request as sent now; false if the session ended.
    async fn sending(&self) -> bool {
        let Ok(permit) = Arc::clone(&self.slots).acquire_owned().await else { return false };
        self.sent.lock().expect("in-flight queue poisoned").queue.push_back((Instant::now(), permit));
        self.sent_signal.notify_one();
        true
    }

    /// Records the answer to the oldest request; false if none was unanswered.
    fn answered(&self) -> bool {
        let mut sent = self.sent.lock().expect("in-flight queue poisoned");
        let Some(_) = sent.queue.pop_front() else { return false };
        sent.last_answer = Instant::now();
        true
    }

    fn broken(&self) -> Option<Fault> {
        self.sent.lock().expect("in-flight queue poisoned").broken
    }

    fn unanswered(&self) -> usize {
        self.sent.lock().expect("in-flight queue poisoned").queue.len()
    }

    /// When the oldest unanswered request is overdue: `deadline` after it was sent or after the
    /// previous answer, whichever is later. `None` with nothing unanswered.
    fn overdue_at(&self, deadline: Duration) -> Option<Instant> {
        let sent = self.sent.lock().expect("in-flight queue poisoned");
        sent.queue.front().map(|(at, _)| (*at).max(sent.last_answer) + deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_bound_the_unanswered_requests_and_time_the_oldest() {
        let inflight = Inflight::new(2);
        let deadline = Duration::from_millis(75);
        assert_eq!(inflight.overdue_at(deadline), None, "nothing unanswered, no deadline");
        let before = Instant::now();
        inflight.sending().await;
        let after = Instant::now();
        inflight.sending().await;
        let due = inflight.overdue_at(deadline).unwrap();
        assert!(before + deadline <= due && due <= after + deadline, "the oldest request sets the deadline");
        let third = tokio::time::timeout(Duration::from_millis(20), inflight.sending()).await;
        assert!(third.is_err(), "a third request must wait for a slot");
        let answered_at = Instant::now();
        assert!(inflight.answered());
        assert!(inflight.overdue_at(deadline).unwrap() >= answered_at + deadline, "the clock restarts at an answer");
        inflight.sending().await;
        assert_eq!(inflight.unanswered(), 2);
        assert!(inflight.answered() && inflight.answered() && !inflight.answered());
    }
}
