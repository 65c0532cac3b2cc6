//! Reaching a running partition group's high watermark and log start watches from outside the
//! group.

use tokio::sync::watch;

use crate::fsm::Fsm;
use crate::node_sm::NodeStateMachine;
use crate::typ::Raft;

/// Where a partition's retained data starts, as the replicated state says (retention's
/// [`Trim`](super::PartitionCommand::Trim) commands move it). A replica's log may still hold
/// entries below it until the replica has purged them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStart {
    /// The first offset kept: a fetch below it is out of range.
    pub offset: u64,
    /// Every Raft log entry below this index was trimmed (0: none), and may be purged.
    pub trimmed_before: u64,
}

/// The high watermark watch of the partition state machine `raft` applies to (see
/// [`PartitionStateMachine::high_watermark`](super::PartitionStateMachine::high_watermark)).
/// `None` when the group is not a partition or has stopped. The call goes through the group's
/// state machine task, so callers keep the receiver rather than asking again per read.
pub async fn high_watermark_of<F: Fsm>(raft: &Raft<NodeStateMachine<F>>) -> Option<watch::Receiver<u64>> {
    partition_watch(raft, |p| p.high_watermark()).await
}

/// The log start watch of the partition state machine `raft` applies to (see
/// [`PartitionStateMachine::log_start`](super::PartitionStateMachine::log_start)); like
/// [`high_watermark_of`].
pub async fn log_start_of<F: Fsm>(raft: &Raft<NodeStateMachine<F>>) -> Option<watch::Receiver<LogStart>> {
    partition_watch(raft, |p| p.log_start()).await
}

async fn partition_watch<F: Fsm, T: Send + Sync + 'static>(
    raft: &Raft<NodeStateMachine<F>>,
    subscribe: fn(&super::PartitionStateMachine) -> watch::Receiver<T>,
) -> Option<watch::Receiver<T>> {
    raft.with_state_machine(move |sm: &mut NodeStateMachine<F>| {
        let watch = match sm {
            NodeStateMachine::Partition(p) => Some(subscribe(p)),
            NodeStateMachine::Fsm(_) => None,
        };
        let found: openraft::base::BoxFuture<'_, _> = Box::pin(async move { watch });
        found
    })
    .await
    .ok()
    .flatten()
}
