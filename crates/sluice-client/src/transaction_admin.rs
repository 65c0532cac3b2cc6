//! Transactions for operators: list, describe, and commit or abort one that no producer will
//! end (docs/TRANSACTIONS.md, "What an operator does").

use std::time::Instant;

use futures_util::future::join_all;
use sluice_proto::v1;

use crate::admin::Admin;
use crate::client::TxnRpc;
use crate::error::{Error, Result};
use crate::group::admin::ask_broker;
use crate::group::coordinator::{Coordinator, Txns};

/// A transactional id and its last or open transaction, as its coordinator holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionInfo {
    /// The transactional id.
    pub transactional_id: String,
    /// The producer id and epoch it holds.
    pub producer_id: i64,
    /// The epoch (it moves on with every transaction).
    pub epoch: i32,
    /// `EMPTY`, `ONGOING`, `PREPARE_COMMIT`, `PREPARE_ABORT`, `COMPLETE_COMMIT` or
    /// `COMPLETE_ABORT`.
    pub state: String,
    /// The partitions of the transaction, as `(topic, partition)`.
    pub partitions: Vec<(String, u32)>,
    /// When the open transaction began, in ms since the Unix epoch.
    pub started_ms: u64,
    /// Its timeout.
    pub timeout_ms: u32,
    /// For a half-message transaction: the producer group it is checked back with.
    pub check_group: Option<String>,
    /// Check-backs sent.
    pub check_attempts: u32,
    /// A half transaction whose check-backs went unanswered: it waits for an operator.
    pub undecided: bool,
    /// Who ended the last transaction: `CLIENT`, `TIMEOUT`, `FENCED`, `OPERATOR` or
    /// `CHECK_BACK`.
    pub ended_by: String,
    /// The broker coordinating it.
    pub coordinator: u64,
}

impl TransactionInfo {
    /// Whether a transaction is open (ongoing, or decided and being completed).
    pub fn is_open(&self) -> bool {
        matches!(self.state.as_str(), "ONGOING" | "PREPARE_COMMIT" | "PREPARE_ABORT")
    }
}

impl From<v1::TransactionInfo> for TransactionInfo {
    fn from(t: v1::TransactionInfo) -> TransactionInfo {
        TransactionInfo {
            partitions: t
                .partitions
                .iter()
                .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.clone(), *p)))
                .collect(),
            transactional_id: t.transactional_id,
            producer_id: t.producer_id,
            epoch: t.epoch,
            state: t.state,
            started_ms: t.started_ms,
            timeout_ms: t.timeout_ms,
            check_group: Some(t.check_group).filter(|g| !g.is_empty()),
            check_attempts: t.check_attempts,
            undecided: t.undecided,
            ended_by: t.ended_by,
            coordinator: t.coordinator,
        }
    }
}

impl Admin {
    /// Every transactional id the live brokers coordinate (`open_only`: with a transaction
    /// open; `undecided_only`: half transactions waiting for an operator), by id.
    pub async fn list_transactions(&self, open_only: bool, undecided_only: bool) -> Result<Vec<TransactionInfo>> {
        let client = self.client();
        let metadata = client.refresh_metadata().await?;
        let deadline = Instant::now() + client.config().operation_timeout;
        let brokers: Vec<String> = metadata.brokers.values().filter(|b| b.live).map(|b| b.address.clone()).collect();
        let request = v1::ListTransactionsRequest { open_only, undecided_only };
        let answers = join_all(brokers.iter().map(|address| {
            ask_broker::<Txns, _, _, _>(client, address, deadline, |mut rpc: TxnRpc| async move {
                rpc.list_transactions(request).await
            })
        }))
        .await;
        let mut all = Vec::new();
        for answer in answers {
            all.extend(answer?.transactions.into_iter().map(TransactionInfo::from));
        }
        all.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        all.dedup_by(|a, b| a.transactional_id == b.transactional_id);
        Ok(all)
    }

    /// One transactional id's state, asked of its coordinator.
    pub async fn describe_transaction(&self, transactional_id: &str) -> Result<TransactionInfo> {
        let client = self.client();
        let coordinator = Coordinator::<Txns>::of(client.clone(), transactional_id);
        let deadline = Instant::now() + client.config().operation_timeout;
        let answer = coordinator
            .call("DescribeTransaction", deadline, |mut rpc: TxnRpc| {
                let request = v1::DescribeTransactionRequest { transactional_id: transactional_id.to_owned() };
                async move { rpc.describe_transaction(request).await }
            })
            .await?;
        answer.transaction.map(TransactionInfo::from).ok_or_else(|| Error::Protocol {
            address: String::new(),
            message: format!("the coordinator of {transactional_id} described nothing"),
        })
    }

    /// Commits (`commit`) or aborts the open transaction of `transactional_id`: for a half
    /// transaction left undecided, or one whose producer is gone. Returns once every partition
    /// has its marker.
    pub async fn end_transaction(&self, transactional_id: &str, commit: bool) -> Result<()> {
        let client = self.client();
        let coordinator = Coordinator::<Txns>::of(client.clone(), transactional_id);
        let deadline = Instant::now() + client.config().operation_timeout;
        coordinator
            .call("ForceEndTransaction", deadline, |mut rpc: TxnRpc| {
                let request = v1::ForceEndTransactionRequest { transactional_id: transactional_id.to_owned(), commit };
                async move { rpc.force_end_transaction(request).await }
            })
            .await
            .map(drop)
    }
}
