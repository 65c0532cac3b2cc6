//! Controlled shutdown: a stopping broker hands every group it leads to a caught-up replica,
//! answers NOT_LEADER naming the new leader, and is handed nothing back; a group whose only
//! other live replica cannot catch up is kept, and the hand-over ends at its bound anyway.

use std::time::{Duration, Instant};

use sluice_broker::RaftTimings;
use sluice_controller::{Applied, ControllerCommand, TopicConfig};
use sluice_proto::ErrorCode;

use super::catchup::{batch, one_partition_topic};
use super::client::{produce_request, wait_live};
use super::cluster::Cluster;

/// Every group `node` leads among `groups`, on the brokers running.
fn led_by(cluster: &Cluster, node: u64, groups: &[u64]) -> Vec<u64> {
    let at = cluster.brokers.iter().position(|b| b.config().node_id == node).expect("running");
    let partitions = cluster.brokers[at].partitions();
    groups.iter().copied().filter(|&g| partitions.raft(g).is_some_and(|r| r.is_leader())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_broker_hands_every_group_over_and_is_handed_none_back() {
    // Leadership goes back to a preferred leader live for 300 ms: a stopping one must be skipped.
    let timings = RaftTimings { leader_rebalance_delay_ms: 300, ..RaftTimings::default() };
    let cluster = Cluster::start_with(3, timings).await;
    wait_live(&cluster, 3).await;
    let create = ControllerCommand::CreateTopic { name: "handover".into(), config: TopicConfig::new(6, 3) };
    let Applied::TopicCreated { partitions, .. } = cluster.propose(&create).await.into_result().unwrap() else {
        panic!("expected TopicCreated")
    };
    let groups: Vec<u64> = partitions.iter().map(|p| p.group_id).collect();
    let victim = cluster.brokers[0].config().node_id;
    cluster
        .wait_for(Duration::from_secs(30), "the victim leads its preferred partitions", |c| {
            let preferred = partitions.iter().filter(|p| p.replicas[0].0 == victim).count();
            preferred > 0 && led_by(c, victim, &groups).len() == preferred
        })
        .await;
    let before = led_by(&cluster, victim, &groups);

    let started = Instant::now();
    let outcome = cluster.brokers[0].hand_over(Duration::from_secs(10)).await;
    let took = started.elapsed();
    assert!(outcome.kept.is_empty() && outcome.alone.is_empty(), "{outcome:?}");
    assert!(outcome.led >= before.len(), "{outcome:?} led, before {before:?}");
    assert!(took < Duration::from_secs(3), "the hand-over took {took:?}");
    assert!(led_by(&cluster, victim, &groups).is_empty(), "the victim still leads a group");
    cluster
        .wait_for(Duration::from_secs(5), "the peers know it is stopping", |c| {
            c.brokers[1..].iter().all(|b| b.partitions().is_stopping(victim))
        })
        .await;

    // Its partitions are answered NOT_LEADER, naming the broker that leads them now.
    let moved = partitions.iter().find(|p| before.contains(&p.group_id)).expect("a partition it led");
    let mut client = cluster.client(0).await;
    let answer =
        client.produce(produce_request("handover", moved.partition.0, batch(0))).await.expect("an answer").into_inner();
    let error = answer.error.expect("refused");
    assert_eq!(error.code, ErrorCode::NotLeader as i32, "{error:?}");
    let named = error.leader.expect("the new leader named").node_id;
    let leader = cluster.brokers[1..]
        .iter()
        .find(|b| b.partitions().raft(moved.group_id).is_some_and(|r| r.is_leader()))
        .map(|b| b.config().node_id);
    assert_eq!(Some(named), leader, "the hint names the new leader");

    // Live and preferred, it is still handed nothing back (its rebalance delay is long past).
    // The scenario itself: a second in which nothing may happen.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(led_by(&cluster, victim, &groups).is_empty(), "a group was handed back to a stopping broker");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_whose_live_replica_cannot_catch_up_is_kept_and_the_hand_over_ends_at_its_bound() {
    let mut cluster = Cluster::start(3).await;
    let group = one_partition_topic(&cluster, "stuck").await;
    let is_leader = |b: &sluice_broker::Broker| b.partitions().raft(group).is_some_and(|r| r.is_leader());
    let leader = cluster.brokers.iter().position(is_leader).expect("a leader");
    let ids: Vec<u64> = cluster.brokers.iter().map(|b| b.config().node_id).collect();
    let (victim, behind) = (ids[leader], ids[(leader + 1) % 3]);
    let other = (leader + 2) % 3;

    // The leader's link to one follower is cut: that follower falls behind by far more than a
    // hand-over accepts, and stays behind (its pre-votes, from a shorter log, are refused),
    // while the other follower keeps the partition committing.
    cluster.brokers[leader].faults().isolate(behind);
    let raft = cluster.brokers[leader].partitions().raft(group).expect("hosted");
    for i in 0..200 {
        let command = sluice_raft::partition::PartitionCommand::produce(&batch(i));
        sluice_raft::partition::write(&raft, command).await.expect("committed without the cut-off follower");
    }
    drop(raft);
    // The caught-up follower stops: the one left behind is the only candidate.
    cluster.stop_broker(other).await;
    let at = cluster.brokers.iter().position(|b| b.config().node_id == victim).expect("running");

    let bound = Duration::from_secs(2);
    let started = Instant::now();
    let outcome = cluster.brokers[at].hand_over(bound).await;
    let took = started.elapsed();
    assert!(outcome.kept.contains(&group), "{outcome:?} (node {behind} was behind)");
    assert!(took >= bound && took < bound + Duration::from_secs(2), "the hand-over took {took:?}");
    assert!(is_leader(&cluster.brokers[at]), "it still leads the group it could not hand over");
    cluster.heal();
    cluster.shutdown().await;
}
