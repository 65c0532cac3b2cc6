//! The coordinator's requests: each routed to the coordinator of its transactional id, planned
//! under the id's turn, written, and answered (see `coordinator`).

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_proto::internal::{TxnMeta, TxnState};
use sluice_proto::v1::{
    AddTxnPartitionsRequest, AddTxnPartitionsResponse, DescribeTransactionRequest, DescribeTransactionResponse,
    EndTransactionRequest, EndTransactionResponse, ForceEndTransactionRequest, ForceEndTransactionResponse,
    InitTransactionsRequest, InitTransactionsResponse, ListTransactionsRequest, ListTransactionsResponse,
    TransactionInfo, TxnTopicPartitions,
};
use sluice_proto::{Error, ErrorCode};

use super::coordinator::TxnCoordinator;
use super::coordinators::TxnCoordinators;
use super::ids;
use super::state::{Planned, Producer};
use crate::groups::context::now_ms;

fn epoch_of(epoch: i32) -> Result<i16, Error> {
    i16::try_from(epoch)
        .map_err(|_| Error::new(ErrorCode::InvalidRequest, format!("epoch {epoch} is not a producer epoch")))
}

fn now() -> u64 {
    now_ms() as u64
}

impl TxnCoordinators {
    pub async fn init(&self, r: InitTransactionsRequest) -> InitTransactionsResponse {
        match self.try_init(r).await {
            Ok(p) => {
                InitTransactionsResponse { error: Some(Error::ok()), producer_id: p.producer_id, epoch: p.epoch.into() }
            }
            Err(e) => InitTransactionsResponse { error: Some(e), ..Default::default() },
        }
    }

    async fn try_init(&self, r: InitTransactionsRequest) -> Result<Producer, Error> {
        let c = self.route(&r.transactional_id)?;
        let id = r.transactional_id.as_str();
        let timeout_ms = if r.timeout_ms == 0 { self.config.default_timeout_ms } else { r.timeout_ms };
        let check_group = Some(r.check_group).filter(|g| !g.is_empty());
        let mut fresh = None;
        loop {
            let turn = c.turn(id).await?;
            let planned = c.table().init(id, timeout_ms, check_group.clone(), now(), fresh, &c.limits())?;
            let plan = match planned {
                Planned::Plan(plan) => plan,
                Planned::NeedsProducerId => {
                    drop(turn);
                    fresh = Some(ids::allocate(&c.ctx).await?);
                    continue;
                }
            };
            c.write(&plan.records).await?;
            if plan.markers.is_some() {
                // The id's open transaction is being aborted to fence its producer; the caller
                // retries (CONCURRENT_TRANSACTIONS) once it is.
                drop(turn);
                finish_in_background(&c, id);
            }
            return plan.answer.map_err(Error::from);
        }
    }

    pub async fn add_partitions(&self, r: AddTxnPartitionsRequest) -> AddTxnPartitionsResponse {
        let error = self.try_add(r).await.err().unwrap_or_else(Error::ok);
        AddTxnPartitionsResponse { error: Some(error) }
    }

    async fn try_add(&self, r: AddTxnPartitionsRequest) -> Result<(), Error> {
        let c = self.route(&r.transactional_id)?;
        let producer = Producer { producer_id: r.producer_id, epoch: epoch_of(r.epoch)? };
        let partitions: Vec<(String, u32)> =
            r.partitions.iter().flat_map(|t| t.partitions.iter().map(|p| (t.topic.clone(), *p))).collect();
        for (topic, partition) in &partitions {
            if c.ctx.partition_home(topic, *partition).is_none() {
                let message =
                    format!("{topic}/{partition} does not exist; a transaction writes to existing partitions");
                return Err(Error::new(ErrorCode::UnknownPartition, message));
            }
        }
        let id = r.transactional_id.as_str();
        let _turn = c.turn(id).await?;
        let plan = c.table().add_partitions(id, producer, &partitions, &r.groups, now(), &c.limits())?;
        c.write(&plan.records).await?;
        plan.answer.map(drop).map_err(Error::from)
    }

    pub async fn end(&self, r: EndTransactionRequest) -> EndTransactionResponse {
        match self.try_end(r).await {
            Ok(p) => {
                EndTransactionResponse { error: Some(Error::ok()), producer_id: p.producer_id, epoch: p.epoch.into() }
            }
            Err(e) => EndTransactionResponse { error: Some(e), ..Default::default() },
        }
    }

    async fn try_end(&self, r: EndTransactionRequest) -> Result<Producer, Error> {
        let c = self.route(&r.transactional_id)?;
        let producer = Producer { producer_id: r.producer_id, epoch: epoch_of(r.epoch)? };
        let id = r.transactional_id.as_str();
        let turn = c.turn(id).await?;
        let plan = c.table().end(id, producer, r.commit, now())?;
        c.write(&plan.records).await?;
        if plan.markers.is_none() {
            return plan.answer.map_err(Error::from);
        }
        c.finish_answering_early(id, turn).await
    }

    pub async fn force_end(&self, r: ForceEndTransactionRequest) -> ForceEndTransactionResponse {
        let error = self.try_force_end(r).await.err().unwrap_or_else(Error::ok);
        ForceEndTransactionResponse { error: Some(error) }
    }

    async fn try_force_end(&self, r: ForceEndTransactionRequest) -> Result<(), Error> {
        let c = self.route(&r.transactional_id)?;
        let id = r.transactional_id.as_str();
        let _turn = c.turn(id).await?;
        let plan = c.table().force_end(id, r.commit, now())?;
        c.write(&plan.records).await?;
        c.finish(id).await.map(drop)
    }

    pub fn list(&self, r: &ListTransactionsRequest) -> ListTransactionsResponse {
        let mut transactions = Vec::new();
        for c in self.active() {
            let table = c.table();
            for (id, meta) in table.iter() {
                let open = matches!(meta.state(), TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort);
                if (r.open_only && !open) || (r.undecided_only && !meta.undecided) {
                    continue;
                }
                transactions.push(info(&c, id, meta));
            }
        }
        ListTransactionsResponse { error: Some(Error::ok()), transactions }
    }

    pub fn describe(&self, r: &DescribeTransactionRequest) -> DescribeTransactionResponse {
        let found = self.route(&r.transactional_id).and_then(|c| {
            let table = c.table();
            let meta = table.get(&r.transactional_id).ok_or_else(|| {
                let message = format!("transactional id {:?} is unknown to its coordinator", r.transactional_id);
                Error::new(ErrorCode::UnknownTransactionalId, message)
            })?;
            Ok(info(&c, &r.transactional_id, meta))
        });
        match found {
            Ok(t) => DescribeTransactionResponse { error: Some(Error::ok()), transaction: Some(t) },
            Err(e) => DescribeTransactionResponse { error: Some(e), transaction: None },
        }
    }
}

/// Completes `id`'s decided transaction on a task of its own (under the id's turn).
fn finish_in_background(c: &Arc<TxnCoordinator>, id: &str) {
    let (c, id) = (Arc::clone(c), id.to_owned());
    tokio::spawn(async move {
        let Ok(turn) = c.turn(&id).await else { return };
        if let Err(e) = c.finish(&id).await {
            tracing::info!(id, "completing a fenced transaction: {}", e.message);
        }
        drop(turn);
    });
}

/// A transactional id's state for people and tools.
fn info(c: &TxnCoordinator, id: &str, meta: &TxnMeta) -> TransactionInfo {
    let mut partitions: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for p in &meta.partitions {
        partitions.entry(p.topic.as_str()).or_default().push(p.partition);
    }
    TransactionInfo {
        transactional_id: id.to_owned(),
        producer_id: meta.producer_id,
        epoch: meta.epoch,
        state: meta.state().as_str_name().to_owned(),
        partitions: partitions
            .into_iter()
            .map(|(topic, partitions)| TxnTopicPartitions { topic: topic.to_owned(), partitions })
            .collect(),
        groups: meta.offset_groups.clone(),
        started_ms: meta.started_ms,
        timeout_ms: meta.timeout_ms,
        check_group: meta.check_group.clone().unwrap_or_default(),
        check_attempts: meta.check_attempts,
        undecided: meta.undecided,
        // Who ended the last transaction: nothing to say while none has ended.
        ended_by: match meta.state() {
            TxnState::Empty | TxnState::Ongoing => String::new(),
            _ => meta.ended_by().as_str_name().to_owned(),
        },
        updated_ms: meta.updated_ms,
        coordinator_partition: c.partition,
        coordinator: c.ctx.node_id,
    }
}
