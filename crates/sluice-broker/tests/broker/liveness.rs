//! Broker liveness: the controller leader marks a broker dead in the metadata once it has not
//! acknowledged the leader for `broker_session_timeout_ms`, and live again when it returns.

use std::time::Duration;

use sluice_common::NodeId;

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
