//! Reaching a running partition group's high watermark watch from outside the group.

use tokio::sync::watch;

use crate::fsm::Fsm;
use crate::node_sm::NodeStateMachine;
use crate::typ::Raft;

/// The high watermark watch of the partition state machine `raft` applies to (see
/// [`PartitionStateMachine::high_watermark`](super::PartitionStateMachine::high_watermark)).
/// `None` when the group is not a partition or has stopped. The call goes through the group's
/// state machine task, so callers keep the receiver rather than asking again per read.
pub async fn high_watermark_of<F: Fsm>(raft: &Raft<NodeStateMachine<F>>) -> Option<watch::Receiver<u64>> {
    raft.with_state_machine(|sm: &mut NodeStateMachine<F>| {
        let watch = match sm {
            NodeStateMachine::Partition(p) => Some(p.high_watermark()),
            NodeStateMachine::Fsm(_) => None,
        };
        let found: openraft::base::BoxFuture<'_, _> = Box::pin(async move { watch });
        found
    })
    .await
    .ok()
    .flatten()
}
