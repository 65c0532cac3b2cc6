//! [`TxnCoordinators`]: which `__txn` partitions this broker leads, and their coordinators
//! (followed by `groups::leaders`, as consumer groups' are), and routing a transactional id's
//! requests to its coordinator.

use std::sync::Arc;

use sluice_proto::{Error, ErrorCode};

use super::TXN_TOPIC;
use super::checkback::CheckRegistry;
use super::config::TxnConfig;
use super::coordinator::{Phase, TxnCoordinator};
use super::load;
use crate::groups::context::Context;
use crate::groups::leaders::{Leaders, Led};

impl Led for TxnCoordinator {
    fn term(&self) -> u64 {
        self.term
    }
    fn partition(&self) -> u32 {
        self.partition
    }
    fn is_retired(&self) -> bool {
        self.phase() == Phase::Retired
    }
    fn retire(&self) {
        TxnCoordinator::retire(self);
    }
}

/// The transaction coordinators of this broker, by `__txn` partition (Raft group id).
pub(super) struct TxnCoordinators {
    pub ctx: Arc<Context>,
    pub config: TxnConfig,
    leaders: Arc<Leaders<TxnCoordinator>>,
    /// Producer group members connected for check-backs.
    pub checkers: Arc<CheckRegistry>,
}

impl TxnCoordinators {
    pub fn new(ctx: Arc<Context>, config: TxnConfig) -> TxnCoordinators {
        let checkers: Arc<CheckRegistry> = Arc::default();
        let (for_start, config_for_start, checkers_for_start) =
            (Arc::clone(&ctx), config.clone(), Arc::clone(&checkers));
        let start = Box::new(move |ids, raft: &_, gate| {
            let (ctx, config, checkers) =
                (Arc::clone(&for_start), config_for_start.clone(), Arc::clone(&checkers_for_start));
            let coordinator = Arc::new(TxnCoordinator::new(ctx, config, ids, Clone::clone(raft), gate, checkers));
            tokio::spawn(load::run(Arc::clone(&coordinator)));
            coordinator
        });
        TxnCoordinators { ctx, config, leaders: Arc::new(Leaders::new(TXN_TOPIC, start)), checkers }
    }

    /// Watches every `__txn` partition hosted here, until the broker stops.
    pub async fn run(self: Arc<Self>) {
        Arc::clone(&self.leaders).run(Arc::clone(&self.ctx)).await;
    }

    /// The coordinator of transactional id `id` if this broker has one; otherwise the error to
    /// answer: `NOT_COORDINATOR` naming the coordinator it knows of, or `COORDINATOR_LOADING`.
    pub fn route(&self, id: &str) -> Result<Arc<TxnCoordinator>, Error> {
        let what = format!("transactional id {id:?}");
        let Some(home) = self.ctx.home_in(TXN_TOPIC, id) else {
            return Err(self.ctx.not_coordinator_of(&what, "FindTxnCoordinator", None));
        };
        let current = self.leaders.current(home.group_id);
        if let Some(c) = current {
            c.ready(id)?;
            return Ok(c);
        }
        let leader = self.ctx.leader_of(&home);
        if leader == Some(self.ctx.node_id) {
            // Elected, and the watch has not caught up yet.
            let message = format!("broker {} is becoming the coordinator of {what}; retry shortly", self.ctx.node_id);
            return Err(Error::new(ErrorCode::CoordinatorLoading, message));
        }
        Err(self.ctx.not_coordinator_of(&what, "FindTxnCoordinator", leader))
    }

    /// The coordinators serving now.
    pub fn active(&self) -> Vec<Arc<TxnCoordinator>> {
        self.leaders.all().into_iter().filter(|c| c.phase() == Phase::Active).collect()
    }
}
