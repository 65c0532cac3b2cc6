//! Leader rebalancing: a group led by a broker other than its preferred leader hands leadership
//! back once the preferred leader has been live, and caught up, for a while — Kafka's preferred
//! leader election. The controller spreads preferred leaders evenly, so this evens out
//! leadership after a broker returns from a failure.
//!
//! openraft's `transfer_leader` makes the leader refuse writes until the target wins; if the
//! target dies first, the leader would refuse them for good. So a transfer that has not
//! completed after [`LivenessConfig::abandon_transfer_after`] is abandoned: the leader stops
//! claiming the group in its node heartbeats, its followers see the group leaderless and elect,
//! and the new term ends the old leader's transfer.

use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;

use super::Liveness;
use super::driver::{LivenessConfig, Tracked};
use crate::transport::GroupStateMachine;
use crate::typ::NodeId;

/// A leadership transfer this node started.
#[derive(Debug, Clone, Copy)]
pub(super) struct Transfer {
    pub(super) to: NodeId,
    pub(super) started: Instant,
    /// The term this node led in when it started the transfer.
    pub(super) term: u64,
}

impl LivenessConfig {
    /// How long a leadership transfer may take before it is abandoned: two campaign turns.
    pub fn abandon_transfer_after(&self) -> Duration {
        self.campaign_stagger * 2
    }
}

/// Whether this leader's transfer of the group has failed — pending too long, or its target is
/// no longer live: the leader must then stop claiming the group.
pub(super) fn abandoned<SM: GroupStateMachine>(liveness: &Liveness, config: &LivenessConfig, t: &Tracked<SM>) -> bool {
    t.transfer.is_some_and(|tr| {
        tr.term == t.term && (tr.started.elapsed() >= config.abandon_transfer_after() || !liveness.is_live(tr.to))
    })
}

/// The node this leader should hand the group to now, if any: its preferred leader, when that is
/// another node, has been live for `config.rebalance_after`, and holds every entry this leader
/// has. At most one transfer per term.
pub(super) fn due<SM: GroupStateMachine>(
    liveness: &Liveness,
    config: &LivenessConfig,
    group: u64,
    t: &Tracked<SM>,
) -> Option<NodeId> {
    let after = config.rebalance_after?;
    if t.transfer.is_some_and(|tr| tr.term == t.term) {
        return None;
    }
    let preferred =
        liveness.preferred_leader(group).filter(|p| *p != liveness.node_id() && !liveness.is_stopping(*p))?;
    if !t.voters.contains(&preferred) || liveness.live_for(preferred)? < after {
        return None;
    }
    let metrics = t.raft.metrics();
    let m = metrics.borrow_watched();
    let matched = m.replication.as_ref()?.get(&preferred)?.as_ref().map(|id| id.index);
    (matched.is_some() && matched == m.last_log_index).then_some(preferred)
}
