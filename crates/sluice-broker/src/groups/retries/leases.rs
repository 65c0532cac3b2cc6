//! Leases on handed-out retries: a retry `PollRetries` hands to a member is not handed out
//! again while its lease runs; a lease that runs out without a settle is a failed attempt,
//! which the coordinator writes as a nack ("lease expired"). Leases are not replicated: a new
//! coordinator hands a retry out again, at the same attempt (at least once). Pure: callers
//! pass the instant.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sluice_common::retry::Place;

/// One lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lease {
    attempt: u32,
    until: Instant,
}

/// The leases of one coordinator, by group and place.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    by_place: BTreeMap<(String, Place), Lease>,
}

impl Leases {
    /// Whether `place` of `group` is leased (even past its end: until its expiry is written).
    pub fn is_leased(&self, group: &str, place: &Place) -> bool {
        self.by_place.contains_key(&(group.to_owned(), place.clone()))
    }

    /// Leases attempt `attempt` of `place` for `length` from `now`.
    pub fn lease(&mut self, group: &str, place: &Place, attempt: u32, (now, length): (Instant, Duration)) {
        self.by_place.insert((group.to_owned(), place.clone()), Lease { attempt, until: now + length });
    }

    /// Ends the lease of `place` if it is of `attempt` (a settle of it arrived).
    pub fn settled(&mut self, group: &str, place: &Place, attempt: u32) {
        let key = (group.to_owned(), place.clone());
        if self.by_place.get(&key).is_some_and(|l| l.attempt == attempt) {
            self.by_place.remove(&key);
        }
    }

    /// The leases that ran out by `now`, with their attempts; they stay until [`Leases::settled`].
    pub fn expired(&self, now: Instant) -> Vec<(String, Place, u32)> {
        let out = self.by_place.iter().filter(|(_, l)| l.until <= now);
        out.map(|((g, p), l)| (g.clone(), p.clone(), l.attempt)).collect()
    }

    /// When the next lease runs out.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.by_place.values().map(|l| l.until).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_hides_its_retry_until_settled_and_runs_out_at_its_end() {
        let (t0, length) = (Instant::now(), Duration::from_secs(30));
        let place = Place { topic: "orders".into(), partition: 1, offset: 7 };
        let mut leases = Leases::default();
        leases.lease("g", &place, 2, (t0, length));
        assert!(leases.is_leased("g", &place) && !leases.is_leased("h", &place));
        assert!(leases.expired(t0 + Duration::from_secs(29)).is_empty());
        assert_eq!(leases.next_expiry(), Some(t0 + length));
        assert_eq!(leases.expired(t0 + length), [("g".to_owned(), place.clone(), 2)]);
        leases.settled("g", &place, 1);
        assert!(leases.is_leased("g", &place), "a settle of another attempt leaves the lease");
        leases.settled("g", &place, 2);
        assert!(!leases.is_leased("g", &place) && leases.next_expiry().is_none());
    }
}
