//! The clock a coordinator hands retries out by (docs/adr/0012-retries.md §3, D11): a retry is
//! handed out only once this clock has reached its due time, and the clock never runs ahead of
//! the real time. Pure: callers pass the wall clock and a monotonic instant.
//!
//! A reading is the wall clock, but never more than the first reading of the term plus the
//! monotonic time since (so a wall clock stepping forward does not hand retries out before
//! their time), and never less than the previous reading (it never goes back within the term:
//! a wall clock stepping back holds it where it was, so retries come later, never earlier).
//! The first reading trusts the wall clock, as the due times in the records were made by one.
//! Due times are computed from this clock too, so within a term a retry waits at least its
//! backoff in monotonic time, whatever the wall clock does.

use std::time::Instant;

/// A clock that never goes back and never runs ahead of monotonic time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HandOutClock {
    /// The first reading, and when (monotonic) it was taken.
    anchor: Option<(u64, Instant)>,
    /// The highest reading so far.
    floor: u64,
}

impl HandOutClock {
    /// The reading at wall clock `wall_ms` and monotonic `now`.
    pub fn now_ms(&mut self, wall_ms: u64, now: Instant) -> u64 {
        let (first, at) = *self.anchor.get_or_insert((wall_ms, now));
        let elapsed_ms = u64::try_from(now.saturating_duration_since(at).as_millis()).unwrap_or(u64::MAX);
        self.floor = self.floor.max(wall_ms.min(first.saturating_add(elapsed_ms)));
        self.floor
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_clock_stepping_back_holds_and_a_clock_stepping_forward_is_followed_only_as_time_passes() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut clock = HandOutClock::default();
        assert_eq!(clock.now_ms(10_000, at(0)), 10_000, "the first reading trusts the wall clock");
        assert_eq!(clock.now_ms(10_100, at(100)), 10_100);
        assert_eq!(clock.now_ms(5_000, at(200)), 10_100, "stepped back: the clock holds");
        assert_eq!(clock.now_ms(5_500, at(700)), 10_100, "still behind: holds");
        assert_eq!(clock.now_ms(10_900, at(800)), 10_800, "back again: no further than time has passed");
        assert_eq!(clock.now_ms(70_000, at(900)), 10_900, "stepped forward a minute: only 100 ms pass");
        assert_eq!(clock.now_ms(70_000, at(60_900)), 70_000, "once time has caught up: the wall clock again");
        assert_eq!(clock.now_ms(70_000, at(60_900)), 70_000, "the same instant reads the same");
    }
}
