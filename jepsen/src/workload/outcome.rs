//! How a send is named and how its end is recorded: the one place the workload decides
//! between `fail` (certainly not written) and `info` (unknown), which is what the checker's
//! aborted-read and lost-write findings rest on. When in doubt, `info`: an unknown send that
//! was written is no finding, a "failed" one that was written is a false one.

use sluice_client::Error;

use crate::history::Kind;

/// The value producer `process` sends as its `n`th record (from 0): unique in the run.
pub(super) fn value_name(process: u32, n: u64) -> String {
    format!("{process}-{n}")
}

/// How a send ends whose `enqueue` failed: `enqueue` fails only before it buffers the record
/// (unknown topic or partition, a record too large, a closed producer, metadata it could not
/// get), so the record was certainly not written.
pub(super) fn enqueue_failure(_: &Error) -> Kind {
    Kind::Fail
}

/// How a send ends whose delivery failed. `fail` only when a broker refused the record's
/// batch for good (a non-retriable code: the state machine or the broker's checks turned it
/// away, nothing was appended as data) or the producer never sent it (closed, or a record it
/// refused itself); `info` for every retriable, transport or timeout error — a produce that
/// timed out may still commit — and for anything unexpected.
///
/// That includes `STORAGE_FULL`, although a broker answering it wrote nothing: the SDK resends
/// a batch so refused until its delivery timeout, and the error the delivery ends with comes
/// from its last sending only; an earlier one may have been written and its answer lost. The
/// runner's probes (`crate::probe`), each sent once, are what records `STORAGE_FULL` as `fail`.
pub(super) fn delivery_failure(error: &Error) -> Kind {
    match error {
        Error::Broker { code, .. } if !code.is_retriable() => Kind::Fail,
        Error::Closed | Error::InvalidArgument(_) | Error::RecordTooLarge { .. } => Kind::Fail,
        Error::Broker { .. }
        | Error::NoBroker { .. }
        | Error::Transport { .. }
        | Error::Timeout { .. }
        | Error::OffsetOutOfRange { .. }
        | Error::CorruptBatch { .. }
        | Error::Protocol { .. } => Kind::Info,
    }
}
