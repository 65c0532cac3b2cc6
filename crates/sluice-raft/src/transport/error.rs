//! Errors at the wire boundary, in both directions.
//!
//! Server side: a malformed message is a [`WireError`] and becomes `InvalidArgument`; an unknown
//! group is `NotFound`; a stopped Raft is `Unavailable`.
//!
//! Client side: a failed RPC becomes one of openraft's three transport errors, chosen by what
//! openraft should do next (it weighs `Unreachable` 100 and `Timeout`/`Network` 2 toward its
//! backoff threshold of 20, so only `Unreachable` backs off at once):
//!
//! | gRPC outcome                                              | openraft error |
//! |-----------------------------------------------------------|----------------|
//! | `Unavailable`: refused, reset, keepalive timeout, GOAWAY; the peer's Raft stopped | `Unreachable` |
//! | `NotFound`: the peer does not host the group (yet)         | `Unreachable`  |
//! | an io error refused/reset/aborted/not connected in the source chain | `Unreachable` |
//! | other codes a retry cannot fix (`InvalidArgument`, `ResourceExhausted`, `Unimplemented`, ...) | `Unreachable` |
//! | our deadline (`soft_ttl`) passed, `DeadlineExceeded`, tonic's "Timeout expired" | `Timeout` |
//! | `Cancelled`, `Aborted`, `Internal`, `Unknown` (an h2 stream error)  | `Network` |

use std::error::Error as _;
use std::fmt::Display;
use std::io;
use std::time::Duration;

use openraft::RPCTypes;
use openraft::errors::{Fatal, NetworkError, RPCError, Timeout, Unreachable};
use tonic::{Code, Status};

use crate::typ::{NodeId, PartitionConfig};

/// A peer message that cannot be turned into an openraft value. The receiver answers it with
/// `InvalidArgument`; it is a bug or a version mismatch, never a network fault.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// A field the message must carry is absent.
    #[error("{0} is missing")]
    Missing(&'static str),
    /// An entry's payload does not decode (unknown kind byte, malformed membership).
    #[error("malformed entry: {0}")]
    Entry(#[source] io::Error),
    /// A snapshot's membership does not decode.
    #[error("malformed snapshot membership")]
    Membership,
    /// A request on a `StreamAppend` stream names another group than the stream's first one.
    #[error("request for group {got} on a stream of group {expected}")]
    GroupChanged {
        /// The group of the stream's first request.
        expected: u64,
        /// The group this request names.
        got: u64,
    },
    /// A snapshot stream is out of order, too large or cut short.
    #[error("snapshot: {0}")]
    Snapshot(String),
}

impl From<WireError> for Status {
    fn from(e: WireError) -> Status {
        Status::invalid_argument(e.to_string())
    }
}

/// The answer to an RPC for a group this node does not host.
pub(crate) fn group_not_found(group_id: u64, node_id: NodeId) -> Status {
    Status::not_found(format!("raft group {group_id} is not hosted on node {node_id}"))
}

/// The answer to an RPC for a group whose Raft has stopped (shut down, or failed on storage).
pub(crate) fn raft_stopped(group_id: u64, node_id: NodeId, fatal: &Fatal<PartitionConfig>) -> Status {
    Status::unavailable(format!("raft group {group_id} on node {node_id} stopped: {fatal}"))
}

/// What openraft should do after a failed RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Back off before the next attempt.
    Unreachable,
    /// The deadline passed.
    Timeout,
    /// Transient; retry soon.
    Network,
}

/// Classifies a failed RPC's status; see the module doc for the table.
pub(crate) fn classify(status: &Status) -> Failure {
    if connection_lost(status) {
        return Failure::Unreachable;
    }
    match status.code() {
        Code::DeadlineExceeded => Failure::Timeout,
        // tonic reports its own deadline (the grpc-timeout we set) as Cancelled.
        Code::Cancelled if status.message() == tonic::TimeoutExpired(()).to_string() => Failure::Timeout,
        Code::Cancelled | Code::Aborted | Code::Internal | Code::Unknown => Failure::Network,
        _ => Failure::Unreachable,
    }
}

/// Whether an io error in the status's source chain says the connection is gone.
fn connection_lost(status: &Status) -> bool {
    let mut source = status.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            use io::ErrorKind::*;
            return matches!(io.kind(), ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected);
        }
        source = e.source();
    }
    false
}

/// One client RPC, to word its errors: who called whom, for which group, doing what.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call {
    pub(crate) from: NodeId,
    pub(crate) target: NodeId,
    pub(crate) group_id: u64,
    pub(crate) action: RPCTypes,
}

impl Call {
    /// The deadline `after` passed.
    pub(crate) fn timeout(&self, after: Duration) -> RPCError<PartitionConfig> {
        RPCError::Timeout(Timeout { action: self.action, id: self.from, target: self.target, timeout: after })
    }

    /// The peer cannot be reached (or cannot serve the group); back off.
    pub(crate) fn unreachable(&self, why: impl Display) -> RPCError<PartitionConfig> {
        RPCError::Unreachable(Unreachable::from_string(self.describe(why)))
    }

    /// A transient failure; retry.
    pub(crate) fn network(&self, why: impl Display) -> RPCError<PartitionConfig> {
        RPCError::Network(NetworkError::from_string(self.describe(why)))
    }

    /// Maps a failed RPC's status; `deadline` is the deadline the call ran under.
    pub(crate) fn failed(&self, status: &Status, deadline: Duration) -> RPCError<PartitionConfig> {
        match classify(status) {
            Failure::Unreachable => self.unreachable(status_text(status)),
            Failure::Timeout => self.timeout(deadline),
            Failure::Network => self.network(status_text(status)),
        }
    }

    fn describe(&self, why: impl Display) -> String {
        let (action, target, group) = (self.action, self.target, self.group_id);
        format!("{action} to node {target} for group {group}: {why}")
    }
}

fn status_text(status: &Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_what_openraft_should_do() {
        let cases = [
            (Status::unavailable("tcp connect error"), Failure::Unreachable),
            (Status::not_found("raft group 7 is not hosted on node 2"), Failure::Unreachable),
            (Status::invalid_argument("bad"), Failure::Unreachable),
            (Status::resource_exhausted("too big"), Failure::Unreachable),
            (Status::deadline_exceeded("late"), Failure::Timeout),
            (Status::cancelled("Timeout expired"), Failure::Timeout),
            (Status::cancelled("operation was canceled"), Failure::Network),
            (Status::internal("h2 protocol error"), Failure::Network),
            (Status::unknown("stream reset"), Failure::Network),
        ];
        for (status, want) in cases {
            assert_eq!(classify(&status), want, "{status:?}");
        }
    }

    #[test]
    fn a_reset_connection_in_the_source_chain_is_unreachable() {
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "reset by peer");
        let status = Status::from_error(Box::new(reset));
        assert_eq!(classify(&status), Failure::Unreachable);
    }

    #[test]
    fn errors_name_the_rpc_target_and_group() {
        let call = Call { from: 1, target: 2, group_id: 7, action: RPCTypes::Vote };
        let e = call.failed(&Status::unavailable("connection refused"), Duration::from_millis(75));
        assert!(matches!(e, RPCError::Unreachable(_)), "{e}");
        let text = e.to_string();
        assert!(text.contains("node 2") && text.contains("group 7") && text.contains("refused"), "{text}");
        assert!(matches!(call.failed(&Status::deadline_exceeded(""), Duration::ZERO), RPCError::Timeout(_)));
    }
}
