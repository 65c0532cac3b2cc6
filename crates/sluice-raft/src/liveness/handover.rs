//! Controlled shutdown: a stopping node hands every group it leads to a caught-up voter before it
//! goes, as Kafka's controlled shutdown moves leadership off a broker first. Without it the
//! group's followers notice the leader gone only after the node timeout and then elect, and every
//! client of its partitions waits that long (about two seconds per broker of a rolling restart).
//!
//! The node first says in its heartbeats that it is stopping, so that no peer hands a group back
//! to it (rebalancing) and no peer waits for its campaign turn. Then, per group it leads, it
//! transfers leadership (openraft's `transfer_leader`: the target campaigns at once, with the
//! leader's log) to a live, not stopping voter at most [`IN_SYNC_LAG`] entries behind — the
//! preferred leader if it is one of those, else the most caught up. A group with no such voter
//! yet is looked at again as its followers catch up, until the bound; what is still led then is
//! left to the followers' elections after this node stops, as before. Only caught-up targets are
//! chosen because a leader refuses writes while its transfer is pending: a target that must first
//! catch up far would stall the partition longer than the election it replaces.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::type_config::alias::InstantOf;
use openraft::{Instant as _, ServerState};

use super::Liveness;
use super::driver::IN_SYNC_LAG;
use crate::transport::{GroupStateMachine, RaftRegistry};
use crate::typ::{NodeId, PartitionConfig, Raft};

/// What a hand-over achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandOver {
    /// Groups this node led when it began.
    pub led: usize,
    /// Groups with no other live voter (a single replica, or the others down): nothing could
    /// take them, and they are unavailable until this node is back.
    pub alone: Vec<u64>,
    /// Groups it still led at the bound: their other voters did not catch up (or the transfer
    /// did not finish) in time. Their followers elect once this node has stopped.
    pub kept: Vec<u64>,
}

/// How one group's hand-over ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Handed,
    Alone,
    Kept,
}

/// How long peers may take to hear that this node is stopping before transfers begin: a
/// heartbeat round (100 ms by default), bounded in case a peer does not answer.
const ANNOUNCE_BOUND: Duration = Duration::from_millis(500);

/// How often a group still led is looked at again when nothing about it changed: a follower
/// catching up changes no state this node is woken by.
const RECHECK: Duration = Duration::from_millis(20);

/// How often a group with no caught-up voter sends a heartbeat to learn where its followers are.
const NUDGE: Duration = Duration::from_millis(200);

/// A transfer not finished after this long is started again, to another target if its first
/// one is gone.
const RETRY_TRANSFER: Duration = Duration::from_secs(1);

/// Marks this node as stopping and hands over every group of `registry` it leads, waiting at
/// most `bound` in all. Groups are handed over concurrently; a group this node came to lead
/// meanwhile (a transfer a peer started before it heard this node is stopping) is handed over
/// in a further pass.
pub async fn hand_over<SM: GroupStateMachine>(
    liveness: &Liveness,
    registry: &RaftRegistry<SM>,
    bound: Duration,
) -> HandOver {
    let deadline = Instant::now() + bound;
    liveness.set_stopping();
    liveness.stopping_announced(ANNOUNCE_BOUND.min(bound)).await;
    let mut outcomes: BTreeMap<u64, Ended> = BTreeMap::new();
    loop {
        let led: Vec<(u64, Raft<SM>)> = registry
            .groups()
            .into_iter()
            .filter(|(group, raft)| !outcomes.contains_key(group) && leads(raft, liveness.node_id()))
            .collect();
        if led.is_empty() || Instant::now() >= deadline {
            break;
        }
        let pass = futures_util::future::join_all(
            led.into_iter()
                .map(|(group, raft)| async move { (group, hand_over_group(liveness, group, &raft, deadline).await) }),
        )
        .await;
        outcomes.extend(pass);
    }
    let ended = |e: Ended| outcomes.iter().filter(|(_, o)| **o == e).map(|(group, _)| *group).collect();
    HandOver { led: outcomes.len(), alone: ended(Ended::Alone), kept: ended(Ended::Kept) }
}

/// Hands `group` over by `deadline` if it can.
async fn hand_over_group<SM: GroupStateMachine>(
    liveness: &Liveness,
    group: u64,
    raft: &Raft<SM>,
    deadline: Instant,
) -> Ended {
    let mut changes = raft.server_metrics();
    let mut started: Option<Instant> = None;
    // When this leader last sent a heartbeat to learn where its followers are.
    let mut asked: Option<InstantOf<PartitionConfig>> = None;
    loop {
        if !leads(raft, liveness.node_id()) {
            return Ended::Handed;
        }
        if !has_candidates(liveness, raft) {
            return Ended::Alone;
        }
        let now = Instant::now();
        if now >= deadline {
            let replication = raft.metrics().borrow_watched().replication.clone();
            tracing::debug!(group, ?replication, "stopping: no voter caught up in time");
            return Ended::Kept;
        }
        let ask_again = asked.is_none_or(|at| at.elapsed() >= NUDGE);
        if started.is_none_or(|at| now.duration_since(at) >= RETRY_TRANSFER) {
            match target(liveness, group, raft) {
                // A follower refuses a transfer until it holds this leader's vote as committed,
                // which one that restarted since this idle group last wrote does not (the flag
                // is not stored): the transfer would wait out the bound. A heartbeat it answered
                // since makes sure; a leader skips heartbeats while its transfer is pending, so
                // they come first.
                Some(to) if asked.is_some_and(|at| acked_since(raft, to, at)) => {
                    tracing::debug!(group, to, "stopping: handing leadership over");
                    if let Err(e) = raft.trigger().transfer_leader(to).await {
                        tracing::debug!(group, "leadership transfer: {e}");
                    }
                    started = Some(now);
                }
                // Also how an idle group's leader, which sends nothing with its ticker off, learns
                // where a follower that restarted since stands.
                _ if ask_again => {
                    asked = Some(InstantOf::<PartitionConfig>::now());
                    if let Err(e) = raft.trigger().heartbeat().await {
                        tracing::debug!(group, "heartbeat: {e}");
                    }
                }
                _ => {}
            }
        }
        let _ = tokio::time::timeout(RECHECK.min(deadline - now), changes.changed()).await;
    }
}

/// A well-mixed number from `group` and `node` (SplitMix64's finalizer).
fn spread(group: u64, node: NodeId) -> u64 {
    let mut x = (group ^ node.rotate_left(32)).wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Whether follower `to` has answered this leader since `at`.
fn acked_since<SM: GroupStateMachine>(raft: &Raft<SM>, to: NodeId, at: InstantOf<PartitionConfig>) -> bool {
    let metrics = raft.metrics();
    let m = metrics.borrow_watched();
    m.heartbeat.as_ref().and_then(|h| h.get(&to).cloned().flatten()).is_some_and(|acked| *acked >= at)
}

/// Whether this node leads the group now.
fn leads<SM: GroupStateMachine>(raft: &Raft<SM>, me: NodeId) -> bool {
    let metrics = raft.metrics();
    let m = metrics.borrow_watched();
    m.state == ServerState::Leader && m.current_leader == Some(me)
}

/// Whether some other voter of the group is live and not stopping: one that may catch up and
/// take it. Without one (a single replica, the others down) there is nothing to wait for.
fn has_candidates<SM: GroupStateMachine>(liveness: &Liveness, raft: &Raft<SM>) -> bool {
    let metrics = raft.metrics();
    let m = metrics.borrow_watched();
    m.membership_config.membership().voter_ids().any(|v| eligible(liveness, v))
}

/// Whether `node` may be handed a group: another node, live, and not stopping itself.
fn eligible(liveness: &Liveness, node: NodeId) -> bool {
    node != liveness.node_id() && liveness.is_live(node) && !liveness.is_stopping(node)
}

/// The voter to hand `group` to: live, not stopping, and at most [`IN_SYNC_LAG`] entries behind
/// this leader; the preferred leader among those, else the most caught up.
fn target<SM: GroupStateMachine>(liveness: &Liveness, group: u64, raft: &Raft<SM>) -> Option<NodeId> {
    let metrics = raft.metrics();
    let m = metrics.borrow_watched();
    let last = m.last_log_index.unwrap_or(0);
    let replication = m.replication.as_ref()?;
    let preferred = liveness.preferred_leader(group);
    m.membership_config
        .membership()
        .voter_ids()
        .filter(|&v| eligible(liveness, v))
        .filter_map(|v| {
            let matched = replication.get(&v)?.as_ref()?.index;
            (matched + IN_SYNC_LAG >= last).then_some((v, matched))
        })
        // Among equals, an order of its own per group: a stopping broker's groups spread over
        // the others instead of all going to the highest node id.
        .max_by_key(|&(v, matched)| (Some(v) == preferred, matched, spread(group, v)))
        .map(|(v, _)| v)
}

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn equal_targets_are_chosen_evenly_over_groups() {
        let mut firsts = [0u32; 2];
        for group in 0..1_000 {
            let first = if spread(group, 2) > spread(group, 3) { 0 } else { 1 };
            firsts[first] += 1;
        }
        assert!(firsts.iter().all(|&n| n > 400), "{firsts:?}");
    }
}
