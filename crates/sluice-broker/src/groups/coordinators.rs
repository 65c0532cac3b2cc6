//! [`Coordinators`]: which offsets partitions this broker leads, and their coordinators
//! (`leaders` follows the partitions' Raft roles: a new [`Coordinator`], loaded, for every
//! term this broker leads one in), and routing a group's requests to its coordinator.

use std::sync::Arc;

use sluice_proto::Error;

use super::OFFSETS_TOPIC;
use super::context::{Context, check_group_id};
use super::coordinator::{Coordinator, Phase};
use super::leaders::{Leaders, Led};
use super::load;

impl Led for Coordinator {
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
        Coordinator::retire(self);
    }
}

/// The coordinators of this broker, by offsets partition (Raft group id).
pub(super) struct Coordinators {
    pub ctx: Arc<Context>,
    leaders: Arc<Leaders<Coordinator>>,
}

impl Coordinators {
    pub fn new(ctx: Arc<Context>) -> Coordinators {
        let for_start = Arc::clone(&ctx);
        let start = Box::new(move |ids, raft: &_, gate| {
            let coordinator = Arc::new(Coordinator::new(Arc::clone(&for_start), ids, Clone::clone(raft), gate));
            tokio::spawn(load::run(Arc::clone(&coordinator)));
            coordinator
        });
        Coordinators { ctx, leaders: Arc::new(Leaders::new(OFFSETS_TOPIC, start)) }
    }

    /// Watches every offsets partition hosted here, until the broker stops.
    pub async fn run(self: Arc<Self>) {
        Arc::clone(&self.leaders).run(Arc::clone(&self.ctx)).await;
    }

    /// The coordinator of `group` if this broker has one; otherwise the error to answer:
    /// `INVALID_GROUP_ID`, or `NOT_COORDINATOR` naming the coordinator it knows of, or
    /// `COORDINATOR_LOADING` while it is becoming the coordinator itself.
    pub fn route(&self, group: &str) -> Result<Arc<Coordinator>, Error> {
        check_group_id(group)?;
        let Some(home) = self.ctx.home(group) else {
            return Err(self.ctx.not_coordinator(group, None));
        };
        let current = self.leaders.current(home.group_id);
        match current {
            Some(c) => {
                c.ready(group)?;
                Ok(c)
            }
            None => {
                let leader = self.ctx.leader_of(&home);
                if leader == Some(self.ctx.node_id) {
                    // Elected, and the watch has not caught up yet.
                    return Err(Error::new(
                        sluice_proto::ErrorCode::CoordinatorLoading,
                        format!(
                            "broker {} is becoming the coordinator of group {group:?}; retry shortly",
                            self.ctx.node_id
                        ),
                    ));
                }
                Err(self.ctx.not_coordinator(group, leader))
            }
        }
    }

    /// The coordinators serving now.
    pub fn active(&self) -> Vec<Arc<Coordinator>> {
        self.leaders.all().into_iter().filter(|c| c.ready("").is_ok()).collect()
    }
}
