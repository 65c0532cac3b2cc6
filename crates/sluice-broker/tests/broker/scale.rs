//! Many partition groups on few brokers: 300 RF-3 partitions on three brokers (900 replicas)
//! form, each elects a leader within a bound, each commits a write to all three replicas, and
//! deleting their topics stops every group and deletes its data on every broker.

use std::time::{Duration, Instant};

use sluice_broker::RaftTimings;
use sluice_controller::{Applied, ControllerCommand, TopicConfig};
use sluice_raft::partition::PartitionCommand;
use tokio::task::JoinSet;

use crate::catchup::{PER_BATCH, SETTLE, batch, leader_of};
use crate::cluster::Cluster;
use crate::faults::{rafts_of, states, write_acked};

/// Topics, and partitions per topic: 300 partitions in all.
const TOPICS: usize = 3;
const PARTITIONS_PER_TOPIC: u32 = 100;
/// Writes in flight at once: enough to overlap round trips, few enough not to pile retried
/// appends onto groups whose writes are slow.
const CONCURRENT_WRITES: usize = 16;
/// How long 300 groups may take to be hosted everywhere and all led: a bound on progress, not a
/// measurement (about 11 s on an idle 2-core machine in debug; CI shares its two cores, and
/// with other builds on them 60 s was seen to pass with only 230 of 300 led).
const FORMATION_LIMIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_300_partitions_on_three_brokers_all_lead_commit_a_write_and_delete_cleanly() {
    // The production timings: this measures what many groups cost as configured.
    let cluster = Cluster::start_with(3, RaftTimings::default()).await;
    cluster
        .wait_for(SETTLE, "brokers registered", |c| {
            c.brokers.iter().all(|b| b.controller().metadata().read(|m| m.brokers().count() == 3))
        })
        .await;

    tracing::info!("--- three RF-3 topics of 100 partitions: every broker hosts all 300 groups, all led");
    let started = Instant::now();
    let mut groups = Vec::new();
    for t in 0..TOPICS {
        let config = TopicConfig::new(PARTITIONS_PER_TOPIC, 3);
        let create = ControllerCommand::CreateTopic { name: format!("scale-{t}"), config };
        let Applied::TopicCreated { partitions, .. } = cluster.propose(&create).await.into_result().unwrap() else {
            panic!("expected TopicCreated")
        };
        groups.extend(partitions.iter().map(|p| p.group_id));
    }
    let n = groups.len();
    assert_eq!(n, TOPICS * PARTITIONS_PER_TOPIC as usize);
    loop {
        let (hosted, led) = formation(&cluster, &groups);
        if hosted.iter().all(|h| *h == n) && led == n {
            break;
        }
        assert!(
            started.elapsed() < FORMATION_LIMIT,
            "after {FORMATION_LIMIT:?}: hosted {hosted:?}, {led} of {n} led; a leaderless group: {}",
            groups
                .iter()
                .find(|g| leader_of(&cluster, **g).is_none())
                .map_or(String::new(), |g| states(&rafts_of(&cluster, *g)))
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let formed = started.elapsed();
    println!("{n} RF-3 partition groups on 3 brokers formed and elected leaders in {formed:?}");

    tracing::info!("--- one batch to every partition commits on all three replicas");
    let mut writes = JoinSet::new();
    for &group in &groups {
        if writes.len() >= CONCURRENT_WRITES {
            check_first_write(writes.join_next().await.expect("a write in flight"));
        }
        let rafts = rafts_of(&cluster, group);
        writes.spawn(async move { (group, write_acked(&rafts, &PartitionCommand::produce(&batch(0))).await.0) });
    }
    while let Some(written) = writes.join_next().await {
        check_first_write(written);
    }
    let deadline = Instant::now() + SETTLE;
    loop {
        let lagging = lagging(&cluster, &groups);
        let Some((group, _)) = lagging.first() else { break };
        assert!(
            Instant::now() < deadline,
            "{} replicas never indexed their batch; group {group}: {}",
            lagging.len(),
            states(&rafts_of(&cluster, *group))
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("{n} writes committed {:?} after formation", started.elapsed() - formed);

    tracing::info!("--- deleting the topics stops every group and deletes its data on every broker");
    let dirs: Vec<std::path::PathBuf> = cluster.brokers.iter().map(|b| b.partitions().dir().to_owned()).collect();
    for t in 0..TOPICS {
        let delete = ControllerCommand::DeleteTopic { name: format!("scale-{t}") };
        cluster.propose(&delete).await.into_result().expect("topic deleted");
    }
    cluster
        .wait_for(SETTLE, "every group gone from every broker", |c| {
            c.brokers.iter().all(|b| b.partitions().group_ids().is_empty())
        })
        .await;
    for dir in dirs {
        let left: Vec<_> = std::fs::read_dir(&dir).expect("the partitions directory").collect();
        assert!(left.is_empty(), "{} still holds partition data: {left:?}", dir.display());
    }
    cluster.shutdown().await;
}

/// Groups hosted by each broker, and how many of `groups` have a leader.
fn formation(cluster: &Cluster, groups: &[u64]) -> (Vec<usize>, usize) {
    let hosted = cluster.brokers.iter().map(|b| b.partitions().group_ids().len()).collect();
    let led = groups.iter().filter(|g| leader_of(cluster, **g).is_some()).count();
    (hosted, led)
}

/// The (group, node) replicas of `groups` that have not indexed one batch.
fn lagging(cluster: &Cluster, groups: &[u64]) -> Vec<(u64, u64)> {
    let indexed = |b: &sluice_broker::Broker, g: u64| {
        b.partitions().log(g).and_then(|l| l.indexed_end()).is_some_and(|e| e.next_offset == PER_BATCH)
    };
    let replicas = groups.iter().flat_map(|g| cluster.brokers.iter().map(move |b| (*g, b)));
    replicas.filter(|(g, b)| !indexed(b, *g)).map(|(g, b)| (g, b.config().node_id)).collect()
}

/// Checks a write task's result: the group's first batch got offset 0.
fn check_first_write(written: Result<(u64, u64), tokio::task::JoinError>) {
    let (group, base_offset) = written.expect("a write task");
    assert_eq!(base_offset, 0, "group {group}: the first batch starts at offset 0");
}
