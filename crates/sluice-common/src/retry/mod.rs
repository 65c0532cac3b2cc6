//! Retries of a consumer group's failed messages (docs/adr/0012-retries.md): the pure parts —
//! the group's retry policy and the schedule it gives each attempt. No I/O, no clock: callers
//! pass the time.

mod policy;

pub use policy::{Backoff, MAX_ATTEMPTS_LIMIT, RetryPolicy, RetryPolicyError, RocketMqLadder};
