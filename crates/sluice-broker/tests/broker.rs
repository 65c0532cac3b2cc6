//! Brokers as a cluster, in one process over real gRPC on loopback: the controller group forms
//! from the brokers' configurations with no manual step, registers every broker, creates topics
//! with balanced assignments, and re-forms with its metadata after every broker restarts; the
//! brokers host each partition's Raft group, which replicates batches with dense offsets,
//! survives its leader's broker stopping, and goes away with its topic. A follower whose broker
//! was down catches up from the others' logs, or by installing a snapshot (`catchup`). Clients
//! reach all of it through the client API (`client`).
//! Partitions and message loss keep a majority committing and lose no acknowledged write
//! (`faults`); 300 partition groups form, commit and go away on three brokers (`scale`). A
//! topic's `flush_interval_ms` decides whether a write is acknowledged before or after its
//! fsync (`flush_policy`). Each broker's Prometheus endpoint counts what clients sent and shows
//! each replica's Raft state (`metrics`). Retention trims every replica at the index its
//! leader proposed, and a follower down meanwhile catches up by snapshot (`retention`).
//! A topic beyond the brokers' capacity is refused whole (`capacity`). A running topic's
//! retention, message size limit and compression are altered, and every broker applies the
//! change without a restart (`topic_config`). A full disk on one broker refuses writes with STORAGE_FULL and keeps reads going, and ENOSPC
//! stops only that broker's replicas until space returns (`disk_full`).
//! A stopping broker hands its groups over to caught-up replicas first, within a bound
//! (`handover`).
//! Consumer groups are coordinated by the leaders of `__consumer_offsets`, share a topic's
//! partitions, commit offsets and survive their coordinator's broker stopping (`groups`). A
//! transaction's commit whose client gives up while a marker cannot commit is completed after
//! the heal (`transactions`). A group's nacked messages come back after their backoff, reach
//! its dead-letter queue once, are redriven once, and survive their coordinator's broker
//! stopping (`retries`).

#[path = "broker/acks.rs"]
mod acks;
#[path = "broker/capacity.rs"]
mod capacity;
#[path = "broker/catchup.rs"]
mod catchup;
#[path = "broker/client.rs"]
mod client;
#[path = "broker/cluster.rs"]
mod cluster;
#[path = "broker/compression.rs"]
mod compression;
#[path = "broker/delays.rs"]
mod delays;
#[path = "broker/disk_full.rs"]
mod disk_full;
#[path = "broker/faults.rs"]
mod faults;
#[path = "broker/flush_policy.rs"]
mod flush_policy;
#[path = "broker/groups.rs"]
mod groups;
#[path = "broker/handover.rs"]
mod handover;
#[path = "broker/liveness.rs"]
mod liveness;
#[path = "broker/metrics.rs"]
mod metrics;
#[path = "broker/retention.rs"]
mod retention;
#[path = "broker/retries.rs"]
mod retries;
#[path = "broker/scale.rs"]
mod scale;
#[path = "broker/topic_config.rs"]
mod topic_config;
#[path = "broker/transactions.rs"]
mod transactions;

use std::time::Duration;

use cluster::Cluster;
use sluice_common::NodeId;
use sluice_common::record::{BatchBuilder, ProducerStamp, Record};
use sluice_controller::{Applied, ControllerCommand, TopicConfig, codes};
use sluice_raft::Reply;
use sluice_raft::partition::PartitionCommand;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_three_configs_the_cluster_forms_registers_brokers_and_reforms_after_a_full_restart() {
    let mut cluster = Cluster::start(3).await;

    tracing::info!("--- the controller group forms and its leader registers all three brokers");
    cluster
        .wait_for(Duration::from_secs(20), "all brokers registered everywhere", |c| {
            c.brokers.iter().all(|b| b.controller().metadata().read(|m| m.brokers().count() == 3))
        })
        .await;

    tracing::info!("--- a topic is created through the leader; every broker applies it");
    let create = ControllerCommand::CreateTopic { name: "orders".into(), config: TopicConfig::new(6, 3) };
    let reply = cluster.propose(&create).await.into_result().expect("topic created");
    let Applied::TopicCreated { partitions, .. } = reply else { panic!("unexpected reply {reply:?}") };
    assert_eq!(partitions.len(), 6);
    for p in &partitions {
        assert_eq!(p.replicas.len(), 3, "every partition on every broker with RF 3");
    }
    let leaders: Vec<NodeId> = partitions.iter().map(|p| p.replicas[0]).collect();
    for n in 1..=3 {
        assert_eq!(leaders.iter().filter(|l| l.0 == n).count(), 2, "preferred leaders balanced: {leaders:?}");
    }
    let bad = cluster
        .propose(&ControllerCommand::CreateTopic { name: "no spaces".into(), config: TopicConfig::new(1, 1) })
        .await;
    assert_eq!(bad.into_result().unwrap_err().code, codes::INVALID_TOPIC_NAME);
    cluster
        .wait_for(Duration::from_secs(30), "every broker sees the topic", |c| {
            c.brokers.iter().all(|b| b.controller().metadata().read(|m| m.topic("orders").is_some()))
        })
        .await;
    let version = cluster.brokers[0].controller().metadata().read(|m| m.version());

    tracing::info!("--- every broker restarts; the cluster re-forms from stored state");
    cluster.restart_all().await;
    cluster
        .wait_for(Duration::from_secs(20), "a leader and the topic again", |c| {
            c.brokers.iter().any(|b| b.controller().is_leader())
                && c.brokers
                    .iter()
                    .all(|b| b.controller().metadata().read(|m| m.topic("orders").is_some() && m.version() >= version))
        })
        .await;
    let again = cluster.propose(&create).await.into_result().unwrap_err();
    assert_eq!(again.code, codes::TOPIC_EXISTS, "{again:?}");
    cluster.shutdown().await;
}

fn batch(i: u64) -> bytes::Bytes {
    let mut b = BatchBuilder::new(ProducerStamp::NONE, 128);
    b.push(&Record::new(format!("event-{i}-a"), 1_000 + i as i64));
    b.push(&Record::new(format!("event-{i}-b"), 1_000 + i as i64));
    b.finish()
}

/// Produces through whichever broker leads `group`, retrying while a new leader settles.
async fn produce(cluster: &Cluster, group: u64, batch: &[u8]) -> Reply {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        for b in &cluster.brokers {
            let Some(raft) = b.partitions().raft(group) else { continue };
            if let Ok(response) = raft.client_write(PartitionCommand::produce(batch)).await {
                return response.data;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader of group {group} accepted the batch");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_groups_form_replicate_fail_over_and_go_away_with_their_topic() {
    let mut cluster = Cluster::start(3).await;
    cluster
        .wait_for(Duration::from_secs(20), "brokers registered", |c| {
            c.brokers.iter().all(|b| b.controller().metadata().read(|m| m.brokers().count() == 3))
        })
        .await;

    tracing::info!("--- a 3-partition RF-3 topic: every broker hosts every partition's group");
    let create = ControllerCommand::CreateTopic { name: "events".into(), config: TopicConfig::new(3, 3) };
    let Applied::TopicCreated { partitions, .. } = cluster.propose(&create).await.into_result().unwrap() else {
        panic!("expected TopicCreated")
    };
    let groups: Vec<u64> = partitions.iter().map(|p| p.group_id).collect();
    cluster
        .wait_for(Duration::from_secs(20), "every group hosted and led", |c| {
            c.brokers.iter().all(|b| b.partitions().group_ids().len() == 3)
                && groups
                    .iter()
                    .all(|g| c.brokers.iter().any(|b| b.partitions().raft(*g).is_some_and(|r| r.is_leader())))
        })
        .await;

    tracing::info!("--- batches get dense offsets and reach every replica's log");
    let group = groups[0];
    for i in 0..50 {
        assert_eq!(produce(&cluster, group, &batch(i)).await, Reply::Appended { base_offset: 2 * i, count: 2 });
    }
    cluster
        .wait_for(Duration::from_secs(30), "all replicas indexed 100 messages", |c| {
            c.brokers
                .iter()
                .all(|b| b.partitions().log(group).and_then(|l| l.indexed_end()).is_some_and(|e| e.next_offset == 100))
        })
        .await;

    tracing::info!("--- the leader's broker stops; the others elect a leader and carry on");
    let leader =
        cluster.brokers.iter().position(|b| b.partitions().raft(group).is_some_and(|r| r.is_leader())).unwrap();
    cluster.brokers.remove(leader).shutdown().await;
    assert_eq!(produce(&cluster, group, &batch(50)).await, Reply::Appended { base_offset: 100, count: 2 });
    for b in &cluster.brokers {
        let log = b.partitions().log(group).unwrap();
        cluster
            .wait_for(Duration::from_secs(30), "survivors hold every message", |_| {
                log.indexed_end().is_some_and(|e| e.next_offset == 102)
            })
            .await;
        assert_eq!(log.find_offset(0).map(|l| l.base_offset), Some(0), "nothing committed was lost");
    }

    tracing::info!("--- deleting the topic stops its groups and deletes their data");
    let dirs: Vec<std::path::PathBuf> = cluster.brokers.iter().map(|b| b.partitions().dir().to_owned()).collect();
    cluster.propose(&ControllerCommand::DeleteTopic { name: "events".into() }).await.into_result().unwrap();
    cluster
        .wait_for(Duration::from_secs(20), "groups gone", |c| {
            c.brokers.iter().all(|b| b.partitions().group_ids().is_empty())
        })
        .await;
    for dir in dirs {
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "{} still holds partition data", dir.display());
    }
    cluster.shutdown().await;
}
