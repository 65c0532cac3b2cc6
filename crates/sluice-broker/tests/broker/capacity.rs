//! Admission control: each broker tells the controller how many partition replicas it can host
//! (`max_replicas`, or its open-file budget), and a topic that would put more on a broker is
//! refused whole with INSUFFICIENT_CAPACITY naming the broker, while topics that fit are
//! created as before.

use std::time::Duration;

use sluice_proto::ErrorCode;
use sluice_proto::v1::{MetadataRequest, TopicConfig};

use super::client::{create_topic, wait_live};
use super::cluster::Cluster;

fn rf3(partitions: u32) -> TopicConfig {
    TopicConfig { partitions, replication_factor: 3, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_beyond_the_brokers_max_replicas_is_refused_whole_naming_the_broker() {
    let cluster = Cluster::start_adjusted(3, |c| c.max_replicas = 8 + c.node_id as u32).await;
    wait_live(&cluster, 3).await;
    // The controller leader learns each broker's capacity from its heartbeats.
    cluster
        .wait_for(Duration::from_secs(20), "every broker's capacity registered", |c| {
            c.brokers.iter().all(|b| {
                b.controller().metadata().read(|m| {
                    (1..=3).all(|n| m.broker(sluice_common::NodeId(n)).is_some_and(|b| b.max_replicas == 8 + n as u32))
                })
            })
        })
        .await;
    assert_eq!(create_topic(&cluster, "fits", rf3(9)).await.error_code(), ErrorCode::Ok);
    let refused = create_topic(&cluster, "too-big", rf3(2)).await;
    assert_eq!(refused.error_code(), ErrorCode::InsufficientCapacity, "{refused:?}");
    assert!(refused.message.contains("broker 1 (9 replicas)"), "{}", refused.message);
    let m = cluster.client(0).await.metadata(MetadataRequest { topics: vec!["too-big".into()] }).await.unwrap();
    let listed = m.into_inner().topics;
    assert!(listed.iter().all(|t| t.partitions.is_empty()), "nothing of the refused topic exists: {listed:?}");
    // Brokers 2 and 3 still have room for an RF-2 partition.
    let rf2 = TopicConfig { partitions: 1, replication_factor: 2, ..Default::default() };
    assert_eq!(create_topic(&cluster, "small", rf2).await.error_code(), ErrorCode::Ok);
    cluster.shutdown().await;
}
