//! Broker liveness: the controller leader marks a broker dead in the metadata once it has not
//! acknowledged the leader for `broker_session_timeout_ms`, and live again when it returns.
//! Partition groups are quiescent (ADR 0004): idle, they exchange no Raft messages; a broker's
//! failure elects new leaders only for the groups it led, and once it is back those groups'
//! leadership returns to it (their preferred leader).

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_common::NodeId;
use sluice_controller::{Applied, ControllerCommand, TopicConfig};
use sluice_raft::typ::{ServerState, WatchReceiver};

use super::cluster::Cluster;

fn live_on_all(cluster: &Cluster, node: u64) -> Vec<Option<bool>> {
    cluster.brokers.iter().map(|b| b.controller().metadata().read(|m| m.broker(NodeId(node)).map(|x| x.live))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_broker_is_marked_dead_and_live_again_when_it_returns() {
    let mut cluster = Cluster::start(3).await;
    cluster
        .wait_for(Duration::from_secs(20), "brokers registered and live", |c| {
            c.brokers.iter().all(|b| b.controller().metadata().read(|m| m.brokers().filter(|x| x.live).count() == 3))
        })
        .await;

    tracing::info!("--- a follower of the controller stops: the others record it as dead");
    let victim = cluster.brokers.iter().position(|b| !b.controller().is_leader()).expect("a follower");
    let node = cluster.brokers[victim].config().node_id;
    cluster.stop_broker(victim).await;
    cluster
        .wait_for(Duration::from_secs(20), "marked dead", |c| live_on_all(c, node).iter().all(|l| *l == Some(false)))
        .await;

    tracing::info!("--- it returns: live again everywhere, itself included");
    cluster.start_broker(victim).await;
    cluster
        .wait_for(Duration::from_secs(20), "live again", |c| live_on_all(c, node).iter().all(|l| *l == Some(true)))
        .await;
    cluster.shutdown().await;
}

/// Every group's leader and term as the broker hosting its leader reports it, by group id;
/// `None` until every group of `groups` has one that all brokers agree on.
fn agreed_leaders(cluster: &Cluster, groups: &[u64]) -> Option<BTreeMap<u64, (u64, u64)>> {
    groups
        .iter()
        .map(|&g| {
            let seen: Vec<Option<(u64, u64)>> = cluster.brokers.iter().map(|b| b.partitions().leader_of(g)).collect();
            let first = seen[0]?;
            seen.iter().all(|s| *s == Some(first)).then_some((g, first))
        })
        .collect()
}

/// The leader-side record of follower acknowledgements of every group led by a broker: it only
/// changes when Raft messages flow.
fn heartbeat_acks(cluster: &Cluster, groups: &[u64]) -> Vec<String> {
    let mut acks = Vec::new();
    for b in &cluster.brokers {
        for &g in groups {
            if let Some(raft) = b.partitions().raft(g) {
                let m = raft.metrics().borrow_watched().clone();
                if m.state == ServerState::Leader {
                    acks.push(format!("{g}: {:?}", m.heartbeat));
                }
            }
        }
    }
    acks
}

/// How long the acknowledgements must stay the same to count as settled: longer than the
/// settle heartbeats a leader sends after its last commit (three, one per full scan of the
/// liveness driver: every 500 ms with these tests' 50 ms node heartbeat).
const QUIET: Duration = Duration::from_millis(2500);

/// The leaders' acknowledgements once they have stopped changing for [`QUIET`]. Just after every
/// group has its preferred leader, the entries of the new terms (and of any leadership moved
/// back to its preferred broker) are still being acknowledged; on a loaded machine for longer.
async fn acknowledgements_settled(cluster: &Cluster, groups: &[u64]) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last = heartbeat_acks(cluster, groups);
    loop {
        tokio::time::sleep(QUIET).await;
        let now = heartbeat_acks(cluster, groups);
        if now == last {
            return now;
        }
        assert!(tokio::time::Instant::now() < deadline, "the groups never went quiet: {now:?}");
        last = now;
    }
}

/// Whether every group of `preferred` (group id → preferred leader) is led by its preferred
/// leader, as every broker sees it.
fn preferred_lead(cluster: &Cluster, preferred: &BTreeMap<u64, u64>) -> bool {
    let groups: Vec<u64> = preferred.keys().copied().collect();
    agreed_leaders(cluster, &groups).is_some_and(|l| l.iter().all(|(g, (leader, _))| preferred[g] == *leader))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_groups_exchange_no_raft_messages_and_a_returning_broker_gets_its_leaderships_back() {
    let mut cluster = Cluster::start(3).await;
    cluster
        .wait_for(Duration::from_secs(20), "brokers registered and live", |c| {
            c.brokers.iter().all(|b| b.controller().metadata().read(|m| m.brokers().filter(|x| x.live).count() == 3))
        })
        .await;
    let create = ControllerCommand::CreateTopic { name: "quiet".into(), config: TopicConfig::new(12, 3) };
    let reply = cluster.propose(&create).await.into_result().expect("topic created");
    let Applied::TopicCreated { partitions, .. } = reply else { panic!("unexpected reply {reply:?}") };
    let preferred: BTreeMap<u64, u64> = partitions.iter().map(|p| (p.group_id, p.replicas[0].0)).collect();
    let groups: Vec<u64> = preferred.keys().copied().collect();
    cluster
        .wait_for(Duration::from_secs(20), "every group led by its preferred leader, agreed by all", |c| {
            preferred_lead(c, &preferred)
        })
        .await;

    tracing::info!("--- idle: leaders send no heartbeats, so no follower acknowledges anything");
    let before = acknowledgements_settled(&cluster, &groups).await;
    let leaders = agreed_leaders(&cluster, &groups).expect("leaders still agreed");
    // The scenario itself: two seconds of nothing but idleness.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(heartbeat_acks(&cluster, &groups), before, "an idle group exchanged Raft messages");
    assert_eq!(agreed_leaders(&cluster, &groups).as_ref(), Some(&leaders), "an idle group changed leader");

    tracing::info!("--- one broker stops: the others take over the groups it led");
    let victim = 1;
    let victim_id = cluster.brokers[victim].config().node_id;
    cluster.stop_broker(victim).await;
    cluster
        .wait_for(Duration::from_secs(20), "its groups led elsewhere", |c| {
            groups
                .iter()
                .all(|&g| c.brokers.iter().all(|b| b.partitions().leader_of(g).is_some_and(|(l, _)| l != victim_id)))
        })
        .await;

    tracing::info!("--- it returns: after the rebalance delay it leads its preferred groups again");
    cluster.start_broker(victim).await;
    cluster
        .wait_for(Duration::from_secs(20), "every group led by its preferred leader again", |c| {
            preferred_lead(c, &preferred)
        })
        .await;
    let after = agreed_leaders(&cluster, &groups).expect("agreed");
    for (g, (leader, term)) in &leaders {
        if *leader == victim_id {
            assert!(after[g].1 > *term, "group {g}: led by {victim_id} again, in a later term");
        } else {
            assert_eq!(after[g], (*leader, *term), "group {g}: a follower's stop and return disturbed its leader");
        }
    }
    cluster.shutdown().await;
}
