//! [`Faults`]: a fault plan for this node's outgoing peer traffic. It exists for failure
//! testing: in-process clusters partition nodes and lose messages through it, without touching
//! the operating system's network. A node that never sets a fault pays one relaxed atomic load
//! per RPC or stream message, and nothing else.
//!
//! Every [`PeerClients`](super::PeerClients) owns one plan, which every outgoing peer RPC, every
//! `StreamAppend` message and every snapshot chunk consults before it is sent:
//!
//! - **A cut link** ([`Faults::isolate`]): RPCs to that peer fail as `Unreachable` at once,
//!   without touching the network, and open `StreamAppend` streams to it end — at their next
//!   request or response, or within one RPC deadline while idle. A cut stops what *this* node
//!   sends (and the answers to it); a full partition between two nodes is a cut on both.
//! - **Message loss** ([`Faults::drop_rate`]): each outgoing message is lost with that
//!   probability, on every link. A unary RPC loses its request (the peer never sees it) or, as
//!   often, its response (the peer acted on it); either way it fails as a `Network` error. A
//!   lost `StreamAppend` message is not sent and ends its stream with a `Network` error after
//!   the answers to the requests before it, as a broken connection would. A lost snapshot chunk
//!   cuts the snapshot stream short.
//!
//! Losses are drawn from a seeded generator ([`Faults::reseed`]), so the sequence of decisions
//! is reproducible; which message meets which decision still depends on timing.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use openraft::errors::RPCError;

use super::error::Call;
use crate::typ::{NodeId, PartitionConfig};

/// The fault plan of one node's outgoing peer traffic; see the module doc. Cheap to clone (the
/// clones share the plan). Changes apply to the next message sent.
#[derive(Clone)]
pub struct Faults {
    shared: Arc<Shared>,
}

struct Shared {
    /// Whether any fault is set: the one thing a message reads when none is.
    armed: AtomicBool,
    plan: Mutex<Plan>,
}

struct Plan {
    cut: BTreeSet<NodeId>,
    drop_percent: u32,
    rng: SplitMix64,
    counts: FaultCounts,
}

impl Plan {
    fn armed(&self) -> bool {
        !self.cut.is_empty() || self.drop_percent > 0
    }
}

/// What the plan did to one outgoing message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The link to the peer is cut: nothing was sent.
    Cut,
    /// The request was lost: the peer never saw it.
    LostRequest,
    /// The request arrived and the peer acted on it, but its response was lost.
    LostResponse,
}

impl Fault {
    /// The error openraft sees: a cut link is `Unreachable` (back off), a loss is `Network`
    /// (retry soon), as the real faults they stand for would be.
    pub(crate) fn rpc_error(self, call: &Call) -> RPCError<PartitionConfig> {
        match self {
            Fault::Cut => call.unreachable(self),
            Fault::LostRequest | Fault::LostResponse => call.network(self),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::Cut => "the link is cut (fault injection)",
            Fault::LostRequest => "the request was dropped (fault injection)",
            Fault::LostResponse => "the response was dropped (fault injection)",
        })
    }
}

/// How many outgoing messages the plan has stopped since the node started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Messages refused because their link was cut.
    pub refused: u64,
    /// Messages (requests or responses) lost to the drop rate.
    pub dropped: u64,
}

impl Faults {
    /// A plan with no faults, whose losses will be drawn from `seed`.
    pub fn new(seed: u64) -> Faults {
        let plan =
            Plan { cut: BTreeSet::new(), drop_percent: 0, rng: SplitMix64(seed), counts: FaultCounts::default() };
        Faults { shared: Arc::new(Shared { armed: AtomicBool::new(false), plan: Mutex::new(plan) }) }
    }

    /// Cuts the link to `peer`: everything this node sends it fails as unreachable until
    /// [`Faults::heal`].
    pub fn isolate(&self, peer: NodeId) {
        self.change(|plan| {
            plan.cut.insert(peer);
        });
    }

    /// Restores the link to `peer`.
    pub fn heal(&self, peer: NodeId) {
        self.change(|plan| {
            plan.cut.remove(&peer);
        });
    }

    /// Restores every cut link; the drop rate stays.
    pub fn heal_all(&self) {
        self.change(|plan| plan.cut.clear());
    }

    /// Loses each outgoing message with probability `percent` / 100; 0 loses none.
    ///
    /// # Panics
    /// If `percent` is over 100.
    pub fn drop_rate(&self, percent: u32) {
        assert!(percent <= 100, "a drop rate of {percent}% is over 100%");
        self.change(|plan| plan.drop_percent = percent);
    }

    /// Restarts the loss generator from `seed`, to reproduce a run's sequence of losses.
    pub fn reseed(&self, seed: u64) {
        self.change(|plan| plan.rng = SplitMix64(seed));
    }

    /// Whether any fault is set at all.
    pub(crate) fn is_armed(&self) -> bool {
        self.shared.armed.load(Ordering::Relaxed)
    }

    /// Whether the link to `peer` is cut.
    pub fn is_cut(&self, peer: NodeId) -> bool {
        if !self.shared.armed.load(Ordering::Relaxed) {
            return false;
        }
        self.plan().cut.contains(&peer)
    }

    /// Decides the fate of one message about to be sent to `peer`: `Ok` to send it, or the
    /// fault that stops it (counted in [`Faults::counts`]).
    pub fn check(&self, peer: NodeId) -> Result<(), Fault> {
        if !self.shared.armed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut plan = self.plan();
        if plan.cut.contains(&peer) {
            plan.counts.refused += 1;
            return Err(Fault::Cut);
        }
        if plan.drop_percent == 0 {
            return Ok(());
        }
        let draw = plan.rng.next();
        // The high 32 bits scaled to 0..100 (no modulo bias); one more bit picks the direction.
        if ((draw >> 32) * 100) >> 32 >= u64::from(plan.drop_percent) {
            return Ok(());
        }
        plan.counts.dropped += 1;
        Err(if draw & 1 == 0 { Fault::LostRequest } else { Fault::LostResponse })
    }

    /// How many messages the plan has stopped so far.
    pub fn counts(&self) -> FaultCounts {
        self.plan().counts
    }

    fn change(&self, edit: impl FnOnce(&mut Plan)) {
        let mut plan = self.plan();
        edit(&mut plan);
        // Stored under the lock, so the flag always matches the plan last written.
        self.shared.armed.store(plan.armed(), Ordering::Relaxed);
    }

    fn plan(&self) -> std::sync::MutexGuard<'_, Plan> {
        self.shared.plan.lock().expect("fault plan poisoned")
    }
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plan = self.plan();
        f.debug_struct("Faults")
            .field("cut", &plan.cut)
            .field("drop_percent", &plan.drop_percent)
            .field("counts", &plan.counts)
            .finish()
    }
}

/// Steele, Lea and Flood's SplitMix64: tiny, seedable, and good enough to pick lost messages.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_plan_passes_everything_and_a_cut_stops_only_its_link() {
        let faults = Faults::new(1);
        assert_eq!(faults.check(2), Ok(()));
        faults.isolate(2);
        assert!(faults.is_cut(2) && !faults.is_cut(3));
        assert_eq!((faults.check(2), faults.check(3)), (Err(Fault::Cut), Ok(())));
        faults.isolate(3);
        faults.heal(2);
        assert_eq!((faults.check(2), faults.check(3)), (Ok(()), Err(Fault::Cut)));
        faults.heal_all();
        assert_eq!(faults.check(3), Ok(()));
        assert!(!faults.shared.armed.load(Ordering::Relaxed), "healed: the plan is inert again");
        assert_eq!(faults.counts(), FaultCounts { refused: 2, dropped: 0 });
    }

    #[test]
    fn the_drop_rate_loses_about_that_share_reproducibly_in_both_directions() {
        let run = |seed| {
            let faults = Faults::new(seed);
            faults.drop_rate(25);
            (0..10_000).map(|_| faults.check(2).err()).collect::<Vec<_>>()
        };
        let outcomes = run(7);
        assert_eq!(outcomes, run(7), "the same seed makes the same decisions");
        assert_ne!(outcomes, run(8));
        let lost = outcomes.iter().filter(|o| o.is_some()).count();
        assert!((2_250..=2_750).contains(&lost), "{lost} of 10,000 lost at 25%");
        let responses = outcomes.iter().filter(|o| **o == Some(Fault::LostResponse)).count();
        assert!(responses > lost / 3 && responses < 2 * lost / 3, "{responses} of {lost} losses were responses");

        let faults = Faults::new(7);
        faults.drop_rate(100);
        assert!((0..100).all(|_| faults.check(2).is_err()));
        faults.drop_rate(0);
        assert!((0..100).all(|_| faults.check(2).is_ok()));
        assert_eq!(faults.counts().dropped, 100);
    }

    #[test]
    #[should_panic(expected = "over 100%")]
    fn a_drop_rate_over_100_percent_is_refused() {
        Faults::new(1).drop_rate(101);
    }
}
