//! Writing a command through a partition group's leader, hiding openraft's error types.

use std::time::Duration;

use openraft::errors::ForwardReason;
use openraft::storage::RaftStateMachine;

use crate::typ::{Command, PartitionConfig, Raft, Reply};

/// How long a leader whose lease lapsed first waits between asking for heartbeats and retrying
/// (a loopback round trip is well under it); the wait doubles up to [`LEASE_RETRY_MAX`].
const LEASE_RETRY_MIN: Duration = Duration::from_millis(2);
/// The longest wait between lease renewal attempts.
const LEASE_RETRY_MAX: Duration = Duration::from_millis(50);

/// Why a write was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// This member does not lead the group; `leader` is the one it knows of, if any.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader's node id, if known.
        leader: Option<u64>,
    },
    /// Raft failed (the group is stopping, or its storage failed); the message says why.
    #[error("{0}")]
    Raft(String),
}

/// Writes `command` through `raft`, which should lead its group, and returns what applying it
/// answered once it is committed.
///
/// A leader refuses writes while its quorum lease has lapsed — no majority acknowledged it for a
/// lease period, as happens to an idle group whose timers are off or to a leader cut off from
/// its peers. Such a write is retried after asking for a round of heartbeats, which renews the
/// lease if a majority answers; so this waits for as long as the quorum is out of reach, and the
/// caller bounds the wait (by dropping the future).
pub async fn write<SM>(raft: &Raft<SM>, command: Command) -> Result<Reply, WriteError>
where
    SM: RaftStateMachine<PartitionConfig>,
{
    let mut pause = LEASE_RETRY_MIN;
    loop {
        let e = match raft.client_write(command.clone()).await {
            Ok(written) => return Ok(written.data),
            Err(e) => e,
        };
        match e.forward_to_leader() {
            Some(f) if matches!(f.reason, ForwardReason::LeaseExpired) => {
                if let Err(fatal) = raft.trigger().heartbeat().await {
                    return Err(WriteError::Raft(fatal.to_string()));
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LEASE_RETRY_MAX);
            }
            Some(f) => return Err(WriteError::NotLeader { leader: f.leader_id }),
            None => return Err(WriteError::Raft(e.to_string())),
        }
    }
}
