//! Transactions over the real API (docs/TRANSACTIONS.md), where only an in-process cluster can
//! place the fault: a commit whose client gives up while the data partition's leader is cut off
//! from its followers (so its marker cannot commit) is still completed once the cluster heals
//! (jepsen/FINDINGS.md, F10: the request used to be dropped with its client, leaving the
//! transaction decided but never completed, its transactional id refusing new instances).

use std::time::Duration;

use sluice_common::record::{BatchBuilder, ProducerStamp, Record};
use sluice_proto::v1::transactions_client::TransactionsClient;
use sluice_proto::v1::{
    AddTxnPartitionsRequest, DescribeTransactionRequest, EndTransactionRequest, FindTxnCoordinatorRequest,
    InitTransactionsRequest, TopicConfig, TxnTopicPartitions,
};
use sluice_proto::{Error, ErrorCode, error_of};
use tonic::transport::Channel;

use super::client::{code, create_topic, fetch_from_leader, fetch_request, leader_of, messages, produce, wait_live};
use super::cluster::{Cluster, eventually, unless_retriable};

const TOPIC: &str = "tx";

/// The broker (index into `cluster.brokers`) coordinating transactional id `id`.
async fn coordinator_of(cluster: &Cluster, id: &str) -> usize {
    let address = eventually(Duration::from_secs(30), "a transaction coordinator", || async {
        let mut c = txn_client(&cluster.brokers[0].client_addr().to_string()).await;
        let r = c.find_txn_coordinator(FindTxnCoordinatorRequest { transactional_id: id.into() }).await;
        let r = r.map_err(|s| s.to_string())?.into_inner();
        unless_retriable(r.error.as_ref())?;
        Ok(r.coordinator.expect("a coordinator").client_address)
    })
    .await;
    cluster.brokers.iter().position(|b| b.client_addr().to_string() == address).expect("a running broker")
}

async fn txn_client(address: &str) -> TransactionsClient<Channel> {
    TransactionsClient::connect(format!("http://{address}")).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_client_gives_up_while_a_marker_cannot_commit_is_completed_after_the_heal() {
    let cluster = Cluster::start(3).await;
    wait_live(&cluster, 3).await;
    let config = TopicConfig { partitions: 1, replication_factor: 3, ..Default::default() };
    assert_eq!(create_topic(&cluster, TOPIC, config).await, Error::ok());
    let data_leader = leader_of(&cluster, TOPIC, 0).await;
    // An id coordinated elsewhere than the data partition's leader, so that cutting that leader
    // off stalls the marker and not the coordinator's own writes.
    let mut found = None;
    for n in 0..64 {
        let id = format!("t{n}");
        let c = coordinator_of(&cluster, &id).await;
        if c != data_leader {
            found = Some((id, c));
            break;
        }
    }
    let (id, coordinator) = found.expect("an id coordinated by another broker");
    let mut txns = txn_client(&cluster.brokers[coordinator].client_addr().to_string()).await;

    let init = eventually(Duration::from_secs(30), "InitTransactions", || {
        let (mut txns, id) = (txns.clone(), id.clone());
        async move {
            let request = InitTransactionsRequest { transactional_id: id, ..Default::default() };
            let r = txns.init_transactions(request).await.map_err(|s| s.to_string())?.into_inner();
            unless_retriable(r.error.as_ref())?;
            Ok(r)
        }
    })
    .await;
    assert_eq!(code(init.error.as_ref()), ErrorCode::Ok, "{init:?}");
    let partitions = vec![TxnTopicPartitions { topic: TOPIC.into(), partitions: vec![0] }];
    let add = AddTxnPartitionsRequest {
        transactional_id: id.clone(),
        producer_id: init.producer_id,
        epoch: init.epoch,
        partitions,
        groups: Vec::new(),
    };
    let added = txns.add_txn_partitions(add).await.expect("rpc").into_inner();
    assert_eq!(code(added.error.as_ref()), ErrorCode::Ok, "{added:?}");
    let stamp = ProducerStamp { producer_id: init.producer_id, epoch: init.epoch as i16, base_sequence: 0 };
    let mut batch = BatchBuilder::new(stamp, 64).transactional(true);
    batch.push(&Record::new("committed", 1));
    let written = produce(&cluster, TOPIC, 0, batch.finish()).await;
    assert_eq!(code(written.error.as_ref()), ErrorCode::Ok, "{written:?}");

    tracing::info!("--- the data partition's leader is cut off; the commit's client gives up after 300 ms");
    cluster.partition(&[data_leader]);
    let end = EndTransactionRequest {
        transactional_id: id.clone(),
        producer_id: init.producer_id,
        epoch: init.epoch,
        commit: true,
    };
    let gave_up = tokio::time::timeout(Duration::from_millis(300), txns.end_transaction(end)).await;
    tracing::info!(answered = gave_up.is_ok(), "the commit call ended");
    cluster.heal();

    eventually(Duration::from_secs(30), "the transaction to be completed", || {
        let (mut txns, id) = (txns.clone(), id.clone());
        async move {
            let r = txns.describe_transaction(DescribeTransactionRequest { transactional_id: id }).await;
            let t = r.map_err(|s| s.to_string())?.into_inner();
            let state = t.transaction.map(|t| t.state).unwrap_or_default();
            if state == "COMPLETE_COMMIT" { Ok(()) } else { Err(format!("{state} {:?}", error_of(t.error.as_ref()))) }
        }
    })
    .await;
    let read = fetch_from_leader(&cluster, fetch_request(TOPIC, 0, 0, 0)).await;
    let values: Vec<String> = messages(&read, 0).into_iter().map(|(_, v)| v).collect();
    assert_eq!(values, ["committed"], "read_committed sees the completed transaction");
    cluster.shutdown().await;
}
