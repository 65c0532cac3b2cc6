//! A group's retry policy: how long a nacked message waits before its next attempt, and after
//! how many attempts it goes to the dead-letter queue.
//!
//! Attempts count deliveries: a message's first delivery is attempt 1; a nack of attempt `n`
//! schedules attempt `n + 1` after [`RetryPolicy::delay_ms`]`(n)`, unless `n` is already
//! `max_attempts`, when the message goes to the dead-letter queue instead.

/// The most attempts a policy may allow.
pub const MAX_ATTEMPTS_LIMIT: u32 = 1000;
/// The longest wait between two attempts: a day.
const MAX_DELAY_MS: u64 = 24 * 3600 * 1000;
/// The most steps a ladder may have.
const MAX_LADDER_STEPS: usize = 64;

/// How long the waits between attempts are.
#[derive(Debug, Clone, PartialEq)]
pub enum Backoff {
    /// `initial_ms × multiplier^(n-1)` after attempt `n`, at most `max_ms`, each spread by up
    /// to `± jitter` of itself (0.0 to 1.0) so that messages failing together retry apart.
    Exponential {
        /// The wait after the first attempt.
        initial_ms: u64,
        /// Each wait is this many times the one before (at least 1.0).
        multiplier: f64,
        /// No wait is longer.
        max_ms: u64,
        /// The spread, as a fraction of the wait.
        jitter: f64,
    },
    /// The wait after attempt `n` is step `n - 1`, the last step repeating.
    Ladder(Vec<u64>),
}

/// RocketMQ's retry ladder, the delays of its 16 consumer retries: 10s 30s 1m 2m 3m 4m 5m 6m 7m
/// 8m 9m 10m 20m 30m 1h 2h.
pub struct RocketMqLadder;

impl RocketMqLadder {
    /// The ladder's steps in ms.
    pub fn steps() -> Vec<u64> {
        let s = 1000;
        let m = 60 * s;
        vec![
            10 * s,
            30 * s,
            m,
            2 * m,
            3 * m,
            4 * m,
            5 * m,
            6 * m,
            7 * m,
            8 * m,
            9 * m,
            10 * m,
            20 * m,
            30 * m,
            60 * m,
            120 * m,
        ]
    }
}

/// A group's retry policy.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// The waits between attempts.
    pub backoff: Backoff,
    /// Deliveries before a message goes to the dead-letter queue (1 = never retried).
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    /// 16 attempts (RocketMQ's count), 1 s doubling to at most 2 h with a 20 % spread.
    fn default() -> RetryPolicy {
        RetryPolicy {
            backoff: Backoff::Exponential { initial_ms: 1000, multiplier: 2.0, max_ms: 2 * 3600 * 1000, jitter: 0.2 },
            max_attempts: 16,
        }
    }
}

/// Why a policy cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid retry policy: {0}")]
pub struct RetryPolicyError(String);

impl RetryPolicy {
    /// RocketMQ's: its ladder, and 17 deliveries (the first and 16 retries).
    pub fn rocketmq() -> RetryPolicy {
        RetryPolicy { backoff: Backoff::Ladder(RocketMqLadder::steps()), max_attempts: 17 }
    }

    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), RetryPolicyError> {
        let bad = |what: String| Err(RetryPolicyError(what));
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&self.max_attempts) {
            return bad(format!("max_attempts must be 1 to {MAX_ATTEMPTS_LIMIT}, not {}", self.max_attempts));
        }
        match &self.backoff {
            Backoff::Exponential { initial_ms, multiplier, max_ms, jitter } => {
                if *initial_ms == 0 || *initial_ms > MAX_DELAY_MS {
                    return bad(format!("the first wait must be 1 ms to a day, not {initial_ms} ms"));
                }
                if !(1.0..=100.0).contains(multiplier) {
                    return bad(format!("the multiplier must be 1 to 100, not {multiplier}"));
                }
                if *max_ms < *initial_ms || *max_ms > MAX_DELAY_MS {
                    return bad(format!(
                        "the longest wait must be the first ({initial_ms} ms) to a day, not {max_ms} ms"
                    ));
                }
                if !(0.0..=1.0).contains(jitter) {
                    return bad(format!("the jitter must be 0 to 1, not {jitter}"));
                }
            }
            Backoff::Ladder(steps) => {
                if steps.is_empty() || steps.len() > MAX_LADDER_STEPS {
                    return bad(format!("a ladder has 1 to {MAX_LADDER_STEPS} steps, not {}", steps.len()));
                }
                if let Some(s) = steps.iter().find(|&&s| s == 0 || s > MAX_DELAY_MS) {
                    return bad(format!("every step must be 1 ms to a day, not {s} ms"));
                }
            }
        }
        Ok(())
    }

    /// Whether a nack of attempt `attempt` sends the message to the dead-letter queue.
    pub fn exhausted(&self, attempt: u32) -> bool {
        attempt >= self.max_attempts
    }

    /// The wait before attempt `attempt + 1`, after a nack of attempt `attempt` (≥ 1). `spread`
    /// (0 to `u64::MAX`, e.g. a hash of the message's place and attempt) picks the jitter, so
    /// that replaying the same nack gives the same wait.
    pub fn delay_ms(&self, attempt: u32, spread: u64) -> u64 {
        let n = attempt.max(1);
        match &self.backoff {
            Backoff::Ladder(steps) => steps[(n as usize - 1).min(steps.len() - 1)],
            Backoff::Exponential { initial_ms, multiplier, max_ms, jitter } => {
                let base = (*initial_ms as f64 * multiplier.powi((n - 1).min(1000) as i32)).min(*max_ms as f64);
                // spread maps to [-1, 1): the wait moves by up to ± jitter of itself.
                let unit = (spread as f64 / u64::MAX as f64) * 2.0 - 1.0;
                let wait = base * (1.0 + jitter * unit);
                (wait.round() as u64).clamp(1, *max_ms)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exponential(initial_ms: u64, multiplier: f64, max_ms: u64, jitter: f64) -> RetryPolicy {
        RetryPolicy { backoff: Backoff::Exponential { initial_ms, multiplier, max_ms, jitter }, max_attempts: 5 }
    }

    #[test]
    fn exponential_waits_double_up_to_the_cap_and_jitter_stays_within_its_spread() {
        let p = exponential(200, 2.0, 1000, 0.0);
        let waits: Vec<u64> = (1..=6).map(|n| p.delay_ms(n, 0)).collect();
        assert_eq!(waits, [200, 400, 800, 1000, 1000, 1000]);
        let p = exponential(1000, 2.0, 60_000, 0.2);
        for spread in [0, u64::MAX / 3, u64::MAX / 2, u64::MAX] {
            let wait = p.delay_ms(3, spread);
            assert!((3200..=4800).contains(&wait), "{wait} ms for spread {spread}");
        }
        assert_eq!(p.delay_ms(3, 42), p.delay_ms(3, 42), "the same nack gives the same wait");
        assert_ne!(p.delay_ms(3, 1), p.delay_ms(3, u64::MAX - 1), "different messages retry apart");
    }

    #[test]
    fn a_ladder_steps_then_repeats_its_last_step() {
        let p = RetryPolicy { backoff: Backoff::Ladder(vec![1000, 5000, 10_000]), max_attempts: 10 };
        let waits: Vec<u64> = (1..=5).map(|n| p.delay_ms(n, 7)).collect();
        assert_eq!(waits, [1000, 5000, 10_000, 10_000, 10_000]);
        let rocketmq = RetryPolicy::rocketmq();
        rocketmq.validate().unwrap();
        assert_eq!((rocketmq.delay_ms(1, 0), rocketmq.delay_ms(16, 0)), (10_000, 7_200_000));
    }

    #[test]
    fn the_last_attempt_is_exhausted() {
        let p = exponential(100, 2.0, 1000, 0.0);
        assert!(!p.exhausted(4) && p.exhausted(5) && p.exhausted(6));
        let once = RetryPolicy { max_attempts: 1, ..p };
        assert!(once.exhausted(1), "max_attempts 1: the first failure goes to the dead-letter queue");
    }

    #[test]
    fn out_of_range_policies_are_refused_saying_what() {
        RetryPolicy::default().validate().unwrap();
        for (policy, what) in [
            (RetryPolicy { max_attempts: 0, ..RetryPolicy::default() }, "max_attempts"),
            (exponential(0, 2.0, 1000, 0.0), "first wait"),
            (exponential(100, 0.5, 1000, 0.0), "multiplier"),
            (exponential(100, 2.0, 50, 0.0), "longest wait"),
            (exponential(100, 2.0, 1000, 1.5), "jitter"),
            (RetryPolicy { backoff: Backoff::Ladder(vec![]), max_attempts: 3 }, "steps"),
            (RetryPolicy { backoff: Backoff::Ladder(vec![10, 0]), max_attempts: 3 }, "every step"),
        ] {
            let e = policy.validate().unwrap_err();
            assert!(e.to_string().contains(what), "{e}");
        }
    }
}
