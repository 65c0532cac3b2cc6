//! Limits on everything the controller stores, so one bad request cannot make the metadata (and
//! every snapshot and route table built from it) unboundedly large.

/// Most partitions one topic may have.
pub const MAX_PARTITIONS_PER_TOPIC: u32 = 10_000;

/// Most partitions the whole cluster may have: each one is a Raft group with its own log on
/// every replica, so this bounds the work per node as much as the metadata's size.
pub const MAX_CLUSTER_PARTITIONS: u64 = 100_000;

/// Most brokers that may register.
pub const MAX_BROKERS: usize = 1_000;

/// The largest `max_message_bytes` a topic may set: 64 MiB.
pub const MAX_MESSAGE_BYTES_LIMIT: u32 = 64 * 1024 * 1024;

/// The largest producer id the controller hands out: record batches carry the id as an `i64`
/// (-1 meaning "not idempotent"), so ids stay within its positive range.
pub const MAX_PRODUCER_ID: u64 = i64::MAX as u64;

/// The longest broker address accepted, in bytes (a DNS name is at most 253, plus a port).
pub const MAX_ADDRESS_LEN: usize = 261;
