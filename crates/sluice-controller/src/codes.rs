//! The stable numeric codes of controller rejections, in one place.
//!
//! A code never changes meaning once released: clients match on it, and every replica puts the
//! same one in its reply. Controller codes live in 100..=199 so they cannot be confused with a
//! partition state machine's rejection codes (1, 2, 3, ...), which travel in the same `u16`.

/// The command bytes could not be decoded (corrupt, or written by a newer build).
pub const MALFORMED_COMMAND: u16 = 100;
/// The topic name fails `TopicName::new`'s validation.
pub const INVALID_TOPIC_NAME: u16 = 101;
/// A topic of that name already exists.
pub const TOPIC_EXISTS: u16 = 102;
/// No topic of that name exists.
pub const UNKNOWN_TOPIC: u16 = 103;
/// Fewer live brokers than the replication factor asks for.
pub const NOT_ENOUGH_LIVE_BROKERS: u16 = 104;
/// A topic setting is out of range (partitions, replication factor, retention, message size).
pub const INVALID_CONFIG: u16 = 105;
/// No broker with that node id has registered.
pub const UNKNOWN_BROKER: u16 = 106;
/// The topic has no partition with that number.
pub const UNKNOWN_PARTITION: u16 = 107;
/// A leader report names a broker that is not a replica of the partition.
pub const NOT_A_REPLICA: u16 = 108;
/// A leader report names a Raft group the partition no longer has (the topic was deleted and
/// created again).
pub const GROUP_MISMATCH: u16 = 109;
/// A broker address is empty or too long.
pub const INVALID_BROKER_ADDRESS: u16 = 110;
/// A cluster-wide limit (brokers, partitions) would be exceeded.
pub const LIMIT_EXCEEDED: u16 = 111;
/// A new topic's replicas do not fit: too few live brokers have room under their `max_replicas`.
pub const INSUFFICIENT_CAPACITY: u16 = 112;

/// Every code with its name, for documentation and tests.
pub const ALL: [(u16, &str); 13] = [
    (MALFORMED_COMMAND, "MALFORMED_COMMAND"),
    (INVALID_TOPIC_NAME, "INVALID_TOPIC_NAME"),
    (TOPIC_EXISTS, "TOPIC_EXISTS"),
    (UNKNOWN_TOPIC, "UNKNOWN_TOPIC"),
    (NOT_ENOUGH_LIVE_BROKERS, "NOT_ENOUGH_LIVE_BROKERS"),
    (INVALID_CONFIG, "INVALID_CONFIG"),
    (UNKNOWN_BROKER, "UNKNOWN_BROKER"),
    (UNKNOWN_PARTITION, "UNKNOWN_PARTITION"),
    (NOT_A_REPLICA, "NOT_A_REPLICA"),
    (GROUP_MISMATCH, "GROUP_MISMATCH"),
    (INVALID_BROKER_ADDRESS, "INVALID_BROKER_ADDRESS"),
    (LIMIT_EXCEEDED, "LIMIT_EXCEEDED"),
    (INSUFFICIENT_CAPACITY, "INSUFFICIENT_CAPACITY"),
];

/// The name of `code`, or `None` for a code this build does not know.
pub fn name(code: u16) -> Option<&'static str> {
    ALL.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn codes_are_distinct_and_in_the_controller_range() {
        let codes: BTreeSet<u16> = ALL.iter().map(|(c, _)| *c).collect();
        assert_eq!(codes.len(), ALL.len());
        assert!(codes.iter().all(|c| (100..=199).contains(c)));
        assert_eq!(name(TOPIC_EXISTS), Some("TOPIC_EXISTS"));
        assert_eq!(name(7), None);
    }
}
