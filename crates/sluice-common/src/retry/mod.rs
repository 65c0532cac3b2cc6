//! Retries of a consumer group's failed messages (docs/adr/0012-retries.md): the pure parts —
//! the group's retry policy and the schedule it gives each attempt, and the table of messages
//! waiting for another attempt (key order included). No I/O, no clock: callers pass the time.

mod policy;
mod table;

pub use policy::{Backoff, MAX_ATTEMPTS_LIMIT, RetryPolicy, RetryPolicyError, RocketMqLadder};
pub use table::{NackPlan, Place, RetryChange, RetryEntry, RetryTable};
