//! Sluice's client protocol (`proto/client.proto`, package `sluice.client.v1`): the gRPC
//! service every broker serves on its client address, and the messages the SDK and the CLI
//! send. Record batches inside it use the format of `sluice_common::record`.
//!
//! [`v1`] is the generated code: messages, the `Sluice` client and server, and the stable
//! [`v1::ErrorCode`]s.

/// Generated messages, the `Sluice` client (`sluice_client::SluiceClient`) and server
/// (`sluice_server::SluiceServer`) of `proto/client.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("sluice.client.v1");
}

/// Generated records of `proto/internal.proto` (package `sluice.internal.v1`): what brokers
/// store in internal topics such as `__consumer_offsets` (`GroupRecord`). Never sent to clients.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod internal {
    tonic::include_proto!("sluice.internal.v1");
}

pub use v1::{Error, ErrorCode};

impl Error {
    /// A successful outcome.
    pub fn ok() -> Error {
        Error { code: ErrorCode::Ok as i32, message: String::new(), leader: None }
    }

    /// An error with `code` and a message for a human.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error { code: code as i32, message: message.into(), leader: None }
    }

    /// The error's code; a code this version does not know reads as [`ErrorCode::Internal`].
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::try_from(self.code).unwrap_or(ErrorCode::Internal)
    }

    /// Whether this is success.
    pub fn is_ok(&self) -> bool {
        self.code == ErrorCode::Ok as i32
    }
}

impl ErrorCode {
    /// Whether a client should retry the same request (after refreshing metadata for
    /// [`ErrorCode::NotLeader`] and [`ErrorCode::NotController`], finding the coordinator again
    /// after [`ErrorCode::NotCoordinator`]).
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            ErrorCode::NotLeader
                | ErrorCode::NotController
                | ErrorCode::NotEnoughReplicas
                | ErrorCode::Timeout
                | ErrorCode::Unavailable
                | ErrorCode::Internal
                | ErrorCode::NotCoordinator
                | ErrorCode::CoordinatorLoading
                | ErrorCode::StorageFull
                | ErrorCode::ConcurrentTransactions
                | ErrorCode::TooManyTransactions
        )
    }
}

/// The response's [`Error`], or success when the field is absent (a broker always sets it).
pub fn error_of(error: Option<&Error>) -> Error {
    error.cloned().unwrap_or_else(Error::ok)
}
