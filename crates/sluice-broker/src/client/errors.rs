//! Building the `Error`s of client responses: leader hints, and the one mapping of controller
//! rejections and proposal failures to client error codes.

use sluice_common::NodeId;
use sluice_controller::{Rejection, codes};
use sluice_proto::v1::BrokerAddress;
use sluice_proto::{Error, ErrorCode};

use super::{ADMIN_TIMEOUT, ClientService};
use crate::controller::ProposeError;

/// An error with `code` and a message saying what to do.
pub(super) fn error(code: ErrorCode, message: impl Into<String>) -> Error {
    Error::new(code, message)
}

/// `UNKNOWN_TOPIC` for `topic`.
pub(super) fn unknown_topic(topic: &str) -> Error {
    error(ErrorCode::UnknownTopic, format!("topic {topic:?} does not exist; create it, or check the name"))
}

/// The client code of a controller rejection.
fn rejection_code(code: u16) -> ErrorCode {
    match code {
        codes::INVALID_TOPIC_NAME => ErrorCode::InvalidTopicName,
        codes::TOPIC_EXISTS => ErrorCode::TopicExists,
        codes::UNKNOWN_TOPIC => ErrorCode::UnknownTopic,
        codes::UNKNOWN_PARTITION => ErrorCode::UnknownPartition,
        codes::NOT_ENOUGH_LIVE_BROKERS => ErrorCode::NotEnoughReplicas,
        // A cluster-wide limit (partitions, producer ids) is a setting the request must change.
        codes::INVALID_CONFIG | codes::LIMIT_EXCEEDED => ErrorCode::InvalidConfig,
        codes::INSUFFICIENT_CAPACITY => ErrorCode::InsufficientCapacity,
        // Codes of commands clients never cause (broker registration, leader reports), and
        // undecodable commands: a bug or brokers of mixed versions.
        _ => ErrorCode::Internal,
    }
}

/// A controller rejection as a client error; the controller's message already says what to do.
pub(super) fn rejected(r: Rejection) -> Error {
    let code = rejection_code(r.code);
    let message = match code {
        ErrorCode::Internal => format!("the controller refused an internal command: {r}"),
        _ => r.message,
    };
    error(code, message)
}

impl ClientService {
    /// The client address of broker `node_id`: as registered, else as configured.
    pub(super) fn broker_address(&self, node_id: u64) -> Option<BrokerAddress> {
        let registered = self.controller.metadata().read(|m| m.broker(NodeId(node_id)).map(|b| b.client_addr.clone()));
        let client_address =
            registered.or_else(|| self.peers.iter().find(|p| p.node_id == node_id).map(|p| p.client_addr.clone()))?;
        Some(BrokerAddress { node_id, client_address })
    }

    /// `NOT_LEADER` for `topic`/`partition`, naming `leader` if it is known and not this broker.
    pub(super) fn not_leader(&self, topic: &str, partition: u32, leader: Option<u64>) -> Error {
        let hint = leader.filter(|l| *l != self.node_id).and_then(|l| self.broker_address(l));
        let message = match &hint {
            Some(l) => format!(
                "broker {} does not lead {topic}/{partition}; send the request to its leader, broker {} at {}",
                self.node_id, l.node_id, l.client_address
            ),
            None => format!(
                "broker {} does not lead {topic}/{partition} and knows no leader; refresh metadata and retry",
                self.node_id
            ),
        };
        Error { leader: hint, ..error(ErrorCode::NotLeader, message) }
    }

    /// `UNAVAILABLE` while this broker's metadata may be behind the controller's (just started).
    pub(super) fn catching_up(&self) -> Error {
        let message = format!(
            "broker {} has just started and is catching up with the cluster's metadata; retry, or ask another broker",
            self.node_id
        );
        error(ErrorCode::Unavailable, message)
    }

    /// `NOT_CONTROLLER`, naming the controller leader if known.
    fn not_controller(&self, leader: Option<u64>) -> Error {
        let hint = leader.filter(|l| *l != self.node_id).and_then(|l| self.broker_address(l));
        let message = match &hint {
            Some(l) => format!(
                "broker {} is not the controller leader; send admin requests to broker {} at {}",
                self.node_id, l.node_id, l.client_address
            ),
            None => format!(
                "broker {} is not the controller leader and knows no leader (an election is under way); retry shortly",
                self.node_id
            ),
        };
        Error { leader: hint, ..error(ErrorCode::NotController, message) }
    }

    /// A failed or timed-out controller proposal as a client error.
    pub(super) fn propose_failed(&self, failure: Option<ProposeError>, what: &str) -> Error {
        match failure {
            None => error(
                ErrorCode::Timeout,
                format!(
                    "the controller did not commit {what} within {ADMIN_TIMEOUT:?}; a majority of brokers may be \
                     down. It may still take effect: check metadata before retrying"
                ),
            ),
            Some(ProposeError::NotLeader { leader }) => self.not_controller(leader),
            Some(ProposeError::Raft(e)) => {
                error(ErrorCode::Unavailable, format!("the controller could not commit {what}: {e}; retry shortly"))
            }
            Some(ProposeError::Reply(e)) => error(
                ErrorCode::Internal,
                format!("the controller's answer to {what} could not be read: {e}; are all brokers the same version?"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_controller_code_clients_can_cause_has_a_client_code() {
        let expected = [
            (codes::INVALID_TOPIC_NAME, ErrorCode::InvalidTopicName),
            (codes::TOPIC_EXISTS, ErrorCode::TopicExists),
            (codes::UNKNOWN_TOPIC, ErrorCode::UnknownTopic),
            (codes::UNKNOWN_PARTITION, ErrorCode::UnknownPartition),
            (codes::NOT_ENOUGH_LIVE_BROKERS, ErrorCode::NotEnoughReplicas),
            (codes::INVALID_CONFIG, ErrorCode::InvalidConfig),
            (codes::LIMIT_EXCEEDED, ErrorCode::InvalidConfig),
            (codes::INSUFFICIENT_CAPACITY, ErrorCode::InsufficientCapacity),
        ];
        for (code, client) in expected {
            assert_eq!(rejection_code(code), client, "{:?}", codes::name(code));
        }
        for (code, _) in codes::ALL.iter().filter(|(c, _)| !expected.iter().any(|(e, _)| e == c)) {
            assert_eq!(rejection_code(*code), ErrorCode::Internal, "{:?}", codes::name(*code));
        }
    }

    #[test]
    fn internal_rejections_keep_the_controller_message() {
        let r = Rejection { code: codes::UNKNOWN_BROKER, message: "broker 9 has not registered".into() };
        let e = rejected(r);
        assert_eq!(e.error_code(), ErrorCode::Internal);
        assert!(e.message.contains("broker 9 has not registered"), "{}", e.message);
        let r = Rejection { code: codes::TOPIC_EXISTS, message: "topic \"a\" already exists".into() };
        assert_eq!(rejected(r).message, "topic \"a\" already exists");
    }
}
