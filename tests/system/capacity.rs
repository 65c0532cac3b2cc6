//! Brokers with a low open-file limit (1,300, set by the harness): each hosts at most what its
//! file budget allows, a topic beyond it is refused with INSUFFICIENT_CAPACITY before anything
//! is created, nothing crashes, and a full restart comes back with every partition led.

use std::time::Duration;

use sluice_client::{ErrorCode, TopicConfig};
use sluice_system_tests::{Cluster, within};

/// Each broker's open-file limit: a budget of 1300 - 1024 = 276 replicas (one file each).
const FILE_LIMIT: u64 = 1_300;
/// Partitions that fit (RF 3 on three brokers: as many replicas on each).
const FITTING: u32 = 120;
const LIMIT: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_with_a_low_file_limit_refuse_topics_beyond_it_and_restart_with_what_they_host() {
    let mut cluster = Cluster::start(3).await;
    within(LIMIT, "the capacity test", async {
        cluster.stop_all().await;
        for node in cluster.node_ids() {
            cluster.set_file_limit(node, Some(FILE_LIMIT));
            cluster.restart(node);
        }
        cluster.wait_ready().await;
        let client = cluster.client().await;
        let admin = client.admin();
        admin.create_topic("fits", &TopicConfig::new(FITTING, 3)).await.expect("a topic that fits");
        admin.wait_for_leaders("fits", Duration::from_secs(90)).await.expect("every partition led");

        let refused = admin.create_topic("too-many", &TopicConfig::new(200, 3)).await.expect_err("over capacity");
        assert_eq!(refused.code(), Some(ErrorCode::InsufficientCapacity), "{refused}");
        assert!(refused.to_string().contains("276 replicas"), "the limit is named: {refused}");
        assert!(admin.describe_topic("too-many").await.is_err(), "nothing of the refused topic exists");
        for node in cluster.node_ids() {
            assert!(cluster.is_running(node), "broker {node} exited:\n{}", cluster.log_tail(node, 30));
        }

        cluster.stop_all().await;
        for node in cluster.node_ids() {
            cluster.restart(node);
        }
        cluster.wait_ready().await;
        let client = cluster.client().await;
        client.admin().wait_for_leaders("fits", Duration::from_secs(90)).await.expect("led again after a restart");
        let log = std::fs::read_to_string(cluster.dir().join("node1.log")).expect("broker 1's log");
        assert!(log.contains("this broker can host 276 partition replicas"), "the budget is logged");
    })
    .await;
}
