//! Leases on handed-out retries: a retry `PollRetries` hands to a member is not handed out
//! again while its lease runs and the member still owns the retry's partition; a lease that
//! runs out without a settle is a failed attempt, which the coordinator writes as a nack
//! ("lease expired"). A partition that moves to another member takes its leased retries with
//! it: the new owner is handed them at once, at the same attempt, and the old lease is
//! replaced (a rebalance is not a failure). Leases are not replicated: a new coordinator hands
//! a retry out again, at the same attempt (at least once). Pure: callers pass the instant.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sluice_common::retry::Place;

/// One lease.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Lease {
    attempt: u32,
    until: Instant,
    member: String,
}

/// The leases of one coordinator, by group and place.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    by_place: BTreeMap<(String, Place), Lease>,
}

impl Leases {
    /// Whether the lease of `place` of `group` ran out by `now` (not replaced by a new one).
    pub fn ran_out(&self, group: &str, place: &Place, now: Instant) -> bool {
        self.by_place.get(&(group.to_owned(), place.clone())).is_some_and(|l| l.until <= now)
    }

    /// The member `place` of `group` is leased to.
    pub fn holder(&self, group: &str, place: &Place) -> Option<&str> {
        self.by_place.get(&(group.to_owned(), place.clone())).map(|l| l.member.as_str())
    }

    /// Leases attempt `attempt` of `place` to `member` for `length` from `now` (replacing a
    /// lease its partition's previous owner held).
    pub fn lease(
        &mut self,
        (group, member): (&str, &str),
        place: &Place,
        attempt: u32,
        (now, length): (Instant, Duration),
    ) {
        let lease = Lease { attempt, until: now + length, member: member.to_owned() };
        self.by_place.insert((group.to_owned(), place.clone()), lease);
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
        leases.lease(("g", "m"), &place, 2, (t0, length));
        assert_eq!((leases.holder("g", &place), leases.holder("h", &place)), (Some("m"), None));
        assert!(leases.expired(t0 + Duration::from_secs(29)).is_empty());
        assert_eq!(leases.next_expiry(), Some(t0 + length));
        assert_eq!(leases.expired(t0 + length), [("g".to_owned(), place.clone(), 2)]);
        assert!(leases.ran_out("g", &place, t0 + length) && !leases.ran_out("g", &place, t0));
        leases.settled("g", &place, 1);
        assert!(leases.holder("g", &place).is_some(), "a settle of another attempt leaves the lease");
        leases.settled("g", &place, 2);
        assert!(leases.holder("g", &place).is_none() && leases.next_expiry().is_none());
    }
}
