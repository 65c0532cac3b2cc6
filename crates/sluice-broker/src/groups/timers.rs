//! A coordinator's member deadlines: a member is removed when its session runs out (no
//! heartbeat for its session timeout, or a static member not back in time) or when it keeps
//! partitions it was asked to revoke for longer than its rebalance timeout.
//!
//! Deadlines live in one ordered set per coordinator, and one task sleeps until the earliest:
//! no task per member, no polling. A heartbeat moves its member's session deadline later, which
//! never needs the task woken; only a deadline earlier than every other one does.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Which clock runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Deadline {
    /// No heartbeat for the session timeout (also a static member that left and is not back).
    Session,
    /// Partitions kept past the rebalance timeout after being asked to revoke them.
    Rebalance,
}

/// A member of a group.
pub(super) type MemberKey = (String, String);

#[derive(Default)]
struct Set {
    ordered: BTreeSet<(Instant, Deadline, MemberKey)>,
    by_member: HashMap<(Deadline, MemberKey), Instant>,
}

/// The deadlines of one coordinator's members.
#[derive(Default)]
pub(super) struct Timers {
    set: Mutex<Set>,
    /// Woken when a deadline earlier than all others appears.
    earlier: Notify,
}

impl Timers {
    /// Sets `member`'s `kind` deadline to `at`, replacing the one it had.
    pub fn set(&self, kind: Deadline, member: MemberKey, at: Instant) {
        let mut s = self.set.lock().expect("timers lock");
        let first = s.ordered.first().map(|(t, ..)| *t);
        if let Some(old) = s.by_member.insert((kind, member.clone()), at) {
            s.ordered.remove(&(old, kind, member.clone()));
        }
        s.ordered.insert((at, kind, member));
        drop(s);
        if first.is_none_or(|f| at < f) {
            self.earlier.notify_one();
        }
    }

    /// Sets `member`'s `kind` deadline to `at` unless it already has one.
    pub fn set_if_unset(&self, kind: Deadline, member: MemberKey, at: Instant) {
        let unset = !self.set.lock().expect("timers lock").by_member.contains_key(&(kind, member.clone()));
        if unset {
            self.set(kind, member, at);
        }
    }

    /// Removes `member`'s `kind` deadline, if any.
    pub fn clear(&self, kind: Deadline, member: &MemberKey) {
        let mut s = self.set.lock().expect("timers lock");
        if let Some(at) = s.by_member.remove(&(kind, member.clone())) {
            s.ordered.remove(&(at, kind, member.clone()));
        }
    }

    /// Removes every deadline of `member`.
    pub fn clear_member(&self, member: &MemberKey) {
        self.clear(Deadline::Session, member);
        self.clear(Deadline::Rebalance, member);
    }

    /// Removes every deadline.
    pub fn clear_all(&self) {
        let mut s = self.set.lock().expect("timers lock");
        s.ordered.clear();
        s.by_member.clear();
    }

    /// The earliest deadline, if any.
    pub fn next(&self) -> Option<Instant> {
        self.set.lock().expect("timers lock").ordered.first().map(|(at, ..)| *at)
    }

    /// Removes and returns the members with a deadline at or before `now` (each once).
    pub fn take_due(&self, now: Instant) -> Vec<MemberKey> {
        let mut s = self.set.lock().expect("timers lock");
        let mut due: Vec<MemberKey> = Vec::new();
        while let Some((at, kind, member)) = s.ordered.first().cloned() {
            if at > now {
                break;
            }
            s.ordered.pop_first();
            s.by_member.remove(&(kind, member.clone()));
            if !due.contains(&member) {
                due.push(member);
            }
        }
        due
    }

    /// Resolves when a deadline earlier than all others was set since the last call.
    pub async fn earlier(&self) {
        self.earlier.notified().await;
    }

    /// How many deadlines are set.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.set.lock().expect("timers lock").ordered.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn key(m: &str) -> MemberKey {
        ("g".into(), m.into())
    }

    #[test]
    fn deadlines_move_and_come_due_in_order_once_per_member() {
        let t = Timers::default();
        let now = Instant::now();
        let at = |ms| now + Duration::from_millis(ms);
        t.set(Deadline::Session, key("a"), at(100));
        t.set(Deadline::Session, key("b"), at(50));
        t.set(Deadline::Rebalance, key("b"), at(60));
        assert_eq!(t.next(), Some(at(50)));
        t.set(Deadline::Session, key("b"), at(200));
        assert_eq!(t.next(), Some(at(60)), "a heartbeat replaces the member's session deadline");
        t.set_if_unset(Deadline::Rebalance, key("b"), at(500));
        assert_eq!(t.take_due(at(99)), vec![key("b")], "the rebalance deadline was kept");
        assert_eq!(t.len(), 2);
        t.clear_member(&key("b"));
        assert_eq!(t.take_due(at(1_000)), vec![key("a")]);
        assert_eq!((t.len(), t.next()), (0, None));
    }

    #[tokio::test]
    async fn only_an_earlier_deadline_wakes_the_task() {
        let t = Timers::default();
        let now = Instant::now();
        t.set(Deadline::Session, key("a"), now + Duration::from_secs(10));
        t.earlier().await; // the first deadline is the earliest
        t.set(Deadline::Session, key("a"), now + Duration::from_secs(20));
        let later = tokio::time::timeout(Duration::from_millis(20), t.earlier()).await;
        assert!(later.is_err(), "a later deadline does not wake the task");
        t.set(Deadline::Rebalance, key("b"), now + Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(1), t.earlier()).await.expect("an earlier deadline wakes it");
    }
}
