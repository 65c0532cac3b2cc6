//! Brokers as a cluster, in one process over real gRPC on loopback: the controller group forms
//! from the brokers' configurations with no manual step, registers every broker, creates topics
//! with balanced assignments, and re-forms with its metadata after every broker restarts.

#[path = "broker/cluster.rs"]
mod cluster;

use std::time::Duration;

use cluster::Cluster;
use sluice_common::NodeId;
use sluice_controller::{Applied, ControllerCommand, TopicConfig, codes};

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
        .wait_for(Duration::from_secs(10), "every broker sees the topic", |c| {
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
