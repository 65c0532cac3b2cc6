//! The clock a coordinator hands retries out by (docs/adr/0012-retries.md §3, D11): a retry is
//! handed out only once this clock has reached its due time, and the clock never runs ahead of
//! the real time. Pure: callers pass the wall clock and a monotonic instant.
//!
//! A reading is the wall clock, but never less than the previous reading (it never goes back
//! within the coordinator's term) and never more than the previous reading plus the monotonic
//! time since the reading was first reached. So a wall clock that steps back holds the clock
//! where it was (retries come later, never earlier), and one that steps forward is followed
//! only as fast as time passes (no retry is handed out before its time). The first reading of
//! a term trusts the wall clock, as the due times in the records were made by one.

use std::time::Instant;

/// A clock that never goes back and never runs ahead of monotonic time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HandOutClock {
    /// The highest reading, and when (monotonic) it was first reached.
    anchor: Option<(u64, Instant)>,
}

impl HandOutClock {
    /// The reading at wall clock `wall_ms` and monotonic `now`.
    pub fn now_ms(&mut self, wall_ms: u64, now: Instant) -> u64 {
        let Some((reading, at)) = self.anchor else {
            self.anchor = Some((wall_ms, now));
            return wall_ms;
        };
        let elapsed_ms = u64::try_from(now.saturating_duration_since(at).as_millis()).unwrap_or(u64::MAX);
        let next = wall_ms.min(reading.saturating_add(elapsed_ms)).max(reading);
        if next > reading {
            self.anchor = Some((next, now));
        }
        next
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
        assert_eq!(clock.now_ms(10_900, at(800)), 10_800, "back again: follows time since 10 100 was reached");
        assert_eq!(clock.now_ms(70_000, at(900)), 10_900, "stepped forward a minute: only 100 ms pass");
        assert_eq!(clock.now_ms(70_000, at(60_900)), 70_000, "once time has caught up: the wall clock again");
        assert_eq!(clock.now_ms(70_000, at(60_900)), 70_000, "the same instant reads the same");
    }
}
