//! The retry workload's records (docs/RETRIES.md) and what every message of it is meant to
//! go through: its fate, decided from its value alone, so that the members and the checker
//! agree without telling each other.

use serde::{Deserialize, Serialize};

/// What a member of the retry workload does with a message, by its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Processed at its first delivery.
    Ok,
    /// Nacked at attempt 1, processed at attempt 2.
    FailOnce,
    /// Nacked at every attempt: it reaches the dead-letter queue after `max_attempts`.
    FailAlways,
    /// Rejected at once: straight to the dead-letter queue.
    Reject,
}

/// The keys messages are spread over: many per partition, so that key order is tested with
/// other keys flowing beside a failing one, and few messages per key, since a key held back
/// by a failing message sends its later messages through the coordinator one at a time.
pub const KEYS: u64 = 512;

/// FNV-1a of `value`: a stable hash, the same in every build.
fn hash(value: &str) -> u64 {
    value.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The fate of the message `value`: 80 % processed at once, 10 % failing once, 5 % failing
/// always, 5 % rejected.
pub fn fate_of(value: &str) -> Fate {
    match hash(value) % 100 {
        0..80 => Fate::Ok,
        80..90 => Fate::FailOnce,
        90..95 => Fate::FailAlways,
        _ => Fate::Reject,
    }
}

/// The key the message `value` is sent with: FNV's high bits, which its last characters
/// hardly move, mixed in first (SplitMix64's finaliser), so that consecutive values get
/// unrelated keys.
pub fn key_of(value: &str) -> String {
    let mut h = hash(value);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    format!("k{}", (h ^ (h >> 31)) % KEYS)
}

/// What a member did with a record it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryAction {
    /// Acknowledged: processed.
    Ack,
    /// Negatively acknowledged: to be retried after the group's backoff.
    Nack,
    /// Rejected: to the dead-letter queue.
    Reject,
}

impl RetryAction {
    /// What a member does with attempt `attempt` of a message of fate `fate`.
    pub fn decide(fate: Fate, attempt: u32) -> RetryAction {
        match fate {
            Fate::Ok => RetryAction::Ack,
            Fate::FailOnce if attempt <= 1 => RetryAction::Nack,
            Fate::FailOnce => RetryAction::Ack,
            Fate::FailAlways => RetryAction::Nack,
            Fate::Reject => RetryAction::Reject,
        }
    }
}

/// One record a member of the retry workload received, and what it did with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryRead {
    /// Where: the partition.
    pub partition: u32,
    /// Where: the offset.
    pub offset: u64,
    /// Its value.
    pub value: String,
    /// The delivery's attempt number (1 for a first delivery).
    pub attempt: u32,
    /// What the member did with it.
    pub action: RetryAction,
}

/// One group of the retry workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryGroup {
    /// Its name (its dead-letter queue is `<name>.dlq`).
    pub name: String,
    /// Whether it consumes key-ordered.
    pub key_ordered: bool,
}

/// One entry of a group's dead-letter queue, read after the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Its offset in the dead-letter queue.
    pub offset: u64,
    /// Its value (the original message's).
    pub value: String,
    /// Where the message came from (`sluice.dlq.partition`, `sluice.dlq.offset`).
    pub origin: Option<(u32, u64)>,
    /// The attempts it was delivered (`sluice.dlq.attempts`).
    pub attempts: Option<u32>,
    /// The last reason (`sluice.dlq.reason`).
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fates_and_keys_are_spread_as_documented() {
        let values: Vec<String> = (0..10_000).map(|n| format!("{}-{n}", n % 3)).collect();
        let share = |f: Fate| values.iter().filter(|v| fate_of(v) == f).count();
        let (ok, once, always, reject) =
            (share(Fate::Ok), share(Fate::FailOnce), share(Fate::FailAlways), share(Fate::Reject));
        assert!((7_600..8_400).contains(&ok), "{ok}");
        assert!((800..1_200).contains(&once), "{once}");
        assert!((350..650).contains(&always) && (350..650).contains(&reject), "{always} {reject}");
        let keys: std::collections::BTreeSet<String> = values.iter().map(|v| key_of(v)).collect();
        assert_eq!(keys.len() as u64, KEYS);
        let run: std::collections::BTreeSet<String> = (0..10).map(|n| key_of(&format!("1-{n}"))).collect();
        assert!(run.len() >= 8, "consecutive values share keys: {run:?}");
        assert_eq!(RetryAction::decide(Fate::FailOnce, 1), RetryAction::Nack);
        assert_eq!(RetryAction::decide(Fate::FailOnce, 2), RetryAction::Ack);
        assert_eq!(RetryAction::decide(Fate::Reject, 3), RetryAction::Reject);
    }
}
