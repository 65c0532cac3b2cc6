//! The SDK's one error type. Every variant keeps what the broker or the transport said and its
//! `Display` ends with what to do about it.

use std::time::Duration;

use sluice_common::record::BatchError;
use sluice_proto::ErrorCode;

/// Result of an SDK call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to a Sluice cluster.
///
/// Errors are `Clone` because one failed batch fails every record in it, and each record's
/// [`Delivery`](crate::Delivery) gets its own copy.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// None of the bootstrap brokers answered a metadata request.
    #[error(
        "cannot reach any bootstrap broker at {addresses}: start the cluster with scripts/start-cluster.sh, \
         or point --bootstrap / SLUICE_BOOTSTRAP at running brokers (last error: {last_error})"
    )]
    NoBroker {
        /// The addresses tried, comma-separated.
        addresses: String,
        /// What the last one said.
        last_error: String,
    },
    /// A broker answered with an error code; `message` is the broker's own explanation.
    #[error("{} ({code:?}): {}", display_message(message), hint(*code))]
    Broker {
        /// The stable protocol code.
        code: ErrorCode,
        /// The broker's message, for a human.
        message: String,
    },
    /// The gRPC call failed before reaching the broker's logic (connection refused, reset,
    /// deadline, malformed response).
    #[error("request to broker {address} failed ({code:?}): {message}; check that the broker is running and reachable")]
    Transport {
        /// The broker's client address.
        address: String,
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
    /// An operation kept failing with retriable errors until its time ran out.
    #[error(
        "{operation} did not succeed within {} ms; last error: {last}. \
         Check the cluster's health with `sluice cluster status`",
        elapsed.as_millis()
    )]
    Timeout {
        /// What was being attempted, e.g. `produce to orders/3`.
        operation: String,
        /// How long it was retried.
        elapsed: Duration,
        /// The last retriable error seen.
        last: Box<Error>,
    },
    /// A fetch asked for an offset the partition does not hold.
    #[error(
        "offset {offset} is out of range for {topic}/{partition}: it holds offsets {log_start_offset}..{high_watermark}; \
         seek to an offset in that range, or to the earliest or latest"
    )]
    OffsetOutOfRange {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The offset asked for.
        offset: u64,
        /// The first offset still stored.
        log_start_offset: u64,
        /// The offset after the last committed message.
        high_watermark: u64,
    },
    /// A fetched record batch failed its checksum or could not be decoded.
    #[error("corrupt record batch from {topic}/{partition} at offset {base_offset}: {source}; report this as a bug")]
    CorruptBatch {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The batch's base offset.
        base_offset: u64,
        /// What the decoder found.
        source: BatchError,
    },
    /// The caller passed something unusable (a bad topic name, an unknown partition, a bad
    /// configuration value).
    #[error("{0}")]
    InvalidArgument(String),
    /// A record is too large to send.
    #[error("record of {size} bytes exceeds {limit_name} ({limit} bytes); send smaller records or raise the limit")]
    RecordTooLarge {
        /// The record's size in bytes (key, value, tag and properties).
        size: usize,
        /// The limit it exceeds.
        limit: usize,
        /// Which limit, e.g. `the topic's max_message_bytes`.
        limit_name: &'static str,
    },
    /// The producer was closed before the record could be sent.
    #[error("the producer is closed; create a new one to send more")]
    Closed,
    /// A broker answered something this client cannot interpret.
    #[error("unexpected answer from broker {address}: {message}; the broker and client versions may not match")]
    Protocol {
        /// The broker's client address.
        address: String,
        /// What was wrong.
        message: String,
    },
}

impl Error {
    /// An error carrying a broker's code and message.
    pub fn broker(code: ErrorCode, message: impl Into<String>) -> Error {
        Error::Broker { code, message: message.into() }
    }

    /// The broker's error code, if this error came from a broker (directly or as the last
    /// error before a timeout).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Broker { code, .. } => Some(*code),
            Error::Timeout { last, .. } => last.code(),
            Error::OffsetOutOfRange { .. } => Some(ErrorCode::OffsetOutOfRange),
            _ => None,
        }
    }

    /// Whether trying the same request again may succeed: retriable broker codes
    /// ([`ErrorCode::is_retriable`]), transport failures and timeouts.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Broker { code, .. } => code.is_retriable(),
            Error::Transport { .. } | Error::Timeout { .. } | Error::NoBroker { .. } => true,
            _ => false,
        }
    }

    /// Whether a request that failed this way may nevertheless have been carried out (a
    /// produce that timed out may still commit). Refusals by the broker's logic were not.
    pub(crate) fn is_ambiguous(&self) -> bool {
        self.is_retriable()
    }

    pub(crate) fn from_status(address: &str, status: &tonic::Status) -> Error {
        Error::Transport { address: address.to_owned(), code: status.code(), message: status.message().to_owned() }
    }

    pub(crate) fn from_proto(error: &sluice_proto::Error) -> Error {
        Error::broker(error.error_code(), error.message.clone())
    }
}

fn display_message(message: &str) -> &str {
    if message.is_empty() { "the broker refused the request" } else { message }
}

/// What a user can do about a broker error code.
fn hint(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Ok => "no error",
        ErrorCode::NotLeader | ErrorCode::NotController => "leadership is moving; retry shortly",
        ErrorCode::UnknownTopic => "create the topic with `sluice topic create`, or check its name",
        ErrorCode::UnknownPartition => "check the partition number with `sluice topic describe`",
        ErrorCode::InvalidTopicName => "use 1 to 249 characters from [A-Za-z0-9._-]",
        ErrorCode::TopicExists => "choose another name, or delete the topic first",
        ErrorCode::MessageTooLarge => "send smaller records or raise the topic's max_message_bytes",
        ErrorCode::NotEnoughReplicas => "too few brokers are live; restart the missing ones",
        ErrorCode::Timeout => "the cluster is slow or electing leaders; retry",
        ErrorCode::InvalidRequest => "the request is malformed; this is a client bug",
        ErrorCode::OffsetOutOfRange => "seek to an offset the partition holds",
        ErrorCode::ProducerFenced => "another producer instance replaced this one; create a new producer",
        ErrorCode::OutOfOrderSequence => {
            "the batch's sequence is not the one expected: ahead, an earlier batch was lost (resend from the \
             expected sequence); older, its records were written already (do not resend); the message says which"
        }
        ErrorCode::InvalidConfig => "fix the setting the message names",
        ErrorCode::InvalidDelay => "give a delivery time within the brokers' max_delay_ms (365 days by default)",
        ErrorCode::ScheduleExists => "delete the schedule first (`sluice schedule delete`), or choose another name",
        ErrorCode::UnknownSchedule => "check the name with `sluice schedule list`",
        ErrorCode::InvalidSchedule => "fix the cron expression, time zone or interval the message names",
        ErrorCode::ConcurrentTransactions => "the previous transaction is still being completed; retry shortly",
        ErrorCode::InvalidTxnState => "the transaction is not in a state that allows this; the message says which",
        ErrorCode::UnknownTransactionalId => {
            "check the id with `sluice txn list`; a producer registers its id when it is created (InitTransactions)"
        }
        ErrorCode::TooManyTransactions => "the coordinator holds its maximum of open transactions; retry once some end",
        ErrorCode::TransactionTimedOut => "the transaction outlived its timeout and was aborted; begin a new one",
        ErrorCode::Unavailable => "the broker is starting, stopping or electing a leader; retry shortly",
        ErrorCode::Internal => "a broker failed internally; see its log",
        ErrorCode::NotCoordinator | ErrorCode::CoordinatorLoading => "the group's coordinator is moving; retry shortly",
        ErrorCode::UnknownMemberId | ErrorCode::FencedMemberEpoch => {
            "the member lost its place in the group; it rejoins and its partitions may have moved"
        }
        ErrorCode::InvalidGroupId => "use 1 to 249 characters from [A-Za-z0-9._-]",
        ErrorCode::GroupNotEmpty => "stop the group's consumers first (`sluice group describe` lists them)",
        ErrorCode::UnreleasedInstanceId => "another running member uses this instance id; give each member its own",
        ErrorCode::GroupNotFound => "check the group name with `sluice group list`",
        ErrorCode::TooManyProducerIds => {
            "the partition tracks too many idempotent producers; reuse one producer per process, or raise the \
             brokers' max_producers_per_partition"
        }
        ErrorCode::InsufficientCapacity => {
            "the brokers cannot host that many more partition replicas; delete unused topics, add brokers, or raise \
             the brokers' open-file limit (`sluice cluster status` shows each broker's replicas)"
        }
        ErrorCode::InvalidFilter => "fix the filter expression at the position the message gives (docs/FILTERS.md)",
        ErrorCode::FilterMismatch => {
            "consume with the group's filter (`sluice group describe` shows it), or stop the group's consumers and \
             change it with `sluice group set-filter`"
        }
        ErrorCode::StorageFull => {
            "a broker holding the partition is short of disk space; free some (retention, `sluice topic delete`, or \
             more disk) and writes resume by themselves"
        }
        ErrorCode::UnknownProducer => {
            "the producer's earlier batches to the partition were not written; the SDK's producer starts again \
             under a new producer id by itself, so this reaches code that writes its own stamped batches only"
        }
        ErrorCode::RetryPolicyMismatch => {
            "consume with the group's retry policy (`sluice group describe` shows it), or change it for the whole \
             group with `sluice group set-retry`"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_errors_keep_code_and_message_and_say_what_to_do() {
        let e = Error::broker(ErrorCode::UnknownTopic, "topic orders does not exist");
        assert_eq!(e.code(), Some(ErrorCode::UnknownTopic));
        assert!(!e.is_retriable());
        let text = e.to_string();
        assert!(text.contains("topic orders does not exist"), "{text}");
        assert!(text.contains("sluice topic create"), "{text}");
    }

    #[test]
    fn timeouts_expose_the_last_code_and_are_retriable() {
        let last = Error::broker(ErrorCode::NotLeader, "node 2 leads");
        let e = Error::Timeout {
            operation: "produce to t/0".into(),
            elapsed: Duration::from_secs(3),
            last: Box::new(last),
        };
        assert_eq!(e.code(), Some(ErrorCode::NotLeader));
        assert!(e.is_retriable());
        assert!(e.to_string().contains("3000 ms"), "{e}");
        assert!(!Error::Closed.is_retriable());
    }

    #[test]
    fn no_broker_names_the_addresses_and_the_start_script() {
        let e = Error::NoBroker { addresses: "127.0.0.1:9091".into(), last_error: "connection refused".into() };
        let text = e.to_string();
        assert!(text.starts_with("cannot reach any bootstrap broker at 127.0.0.1:9091"), "{text}");
        assert!(text.contains("scripts/start-cluster.sh"), "{text}");
    }
}
