//! Writing a command through a partition group's leader, hiding openraft's error types.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver as _;
use openraft::errors::{ClientWriteError, ForwardReason};
use openraft::impls::ProgressResponder;
use openraft::storage::RaftStateMachine;
use openraft::{Instant as _, TryAsRef as _};

use crate::typ::{Command, PartitionConfig, Raft, Reply, StoredMembership, wait_on_metrics};

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
    /// A [`submit`]ted write found the leader's quorum lease lapsed and was not written.
    #[error("the leader's lease lapsed; renew it and retry")]
    LeaseExpired,
}

/// A [`submit`]ted write: resolves to what applying it answered once it is committed.
pub type PendingWrite = Pin<Box<dyn Future<Output = Result<Reply, WriteError>> + Send>>;

/// Submits `command` to the log of `raft`, which should lead its group, and returns once it is
/// queued, with a future for its outcome. Writes submitted one after another reach the log in
/// that order, so a caller can keep several in flight and still have them applied in sequence.
///
/// Unlike [`write`], a write refused because the leader's lease lapsed is not retried here:
/// retrying would let writes submitted after it overtake it. It fails with
/// [`WriteError::LeaseExpired`]; callers check [`lease_fresh`] before pipelining and fall back
/// to [`write`] when it is not.
pub async fn submit<SM>(raft: &Raft<SM>, command: Command) -> Result<PendingWrite, WriteError>
where
    SM: RaftStateMachine<PartitionConfig>,
{
    let (responder, committed, answer) = ProgressResponder::new();
    raft.client_write_ff(command, Some(responder)).await.map_err(|fatal| WriteError::Raft(fatal.to_string()))?;
    Ok(Box::pin(async move {
        // The commit notification is not needed (the answer comes once the write is applied),
        // but its receiver lives until then: openraft warns of every notification it cannot
        // deliver, which on a busy partition is a log line per write.
        let _committed = committed;
        match answer.await {
            Ok(Ok(written)) => Ok(written.data),
            Ok(Err(e)) => Err(refused(&e)),
            Err(_) => Err(WriteError::Raft("the group stopped before answering the write".into())),
        }
    }))
}

fn refused(e: &ClientWriteError<PartitionConfig>) -> WriteError {
    let forward: Option<&openraft::errors::ForwardToLeader<PartitionConfig>> = e.try_as_ref();
    match forward {
        Some(f) if matches!(f.reason, ForwardReason::LeaseExpired) => WriteError::LeaseExpired,
        Some(f) => WriteError::NotLeader { leader: f.leader_id },
        None => WriteError::Raft(e.to_string()),
    }
}

/// Whether a majority acknowledged `raft`'s leadership less than `within` ago: its lease (the
/// group's longest election timeout) then has at least that much left minus `within`, so a
/// write submitted now is not refused for a lapsed lease.
pub fn lease_fresh<SM>(raft: &Raft<SM>, within: Duration) -> bool
where
    SM: RaftStateMachine<PartitionConfig>,
{
    let metrics = raft.metrics();
    let m = metrics.borrow_watched();
    if m.current_leader == Some(m.id) && is_sole_voter(m.id, &m.membership_config) {
        // A group of one voter is its own majority. openraft never renews such a leader's
        // lease (nobody answers its heartbeats) and treats it as always valid; so do we.
        return true;
    }
    m.last_quorum_acked.is_some_and(|at| at.elapsed() < within)
}

/// Whether `id` is the only voter of every configuration in `membership` (so, in a joint
/// configuration too, it forms a quorum on its own).
fn is_sole_voter(id: u64, membership: &StoredMembership) -> bool {
    let mut voters = membership.voter_ids();
    voters.next() == Some(id) && voters.next().is_none()
}

/// Whether `raft` still leads with a quorum lease fresher than `within`. When the lease is older
/// (an idle group's timers are off, so it lapses between writes) this asks for a round of
/// heartbeats and waits up to `within` for a majority to answer. A leader cut off from its peers,
/// or deposed without knowing it yet (it was paused or partitioned), stays unconfirmed: its
/// applied state may be behind what a newer leader committed, so it must not serve reads.
pub async fn confirm_lease<SM>(raft: &Raft<SM>, within: Duration) -> bool
where
    SM: RaftStateMachine<PartitionConfig>,
{
    if lease_fresh(raft, within) {
        return true;
    }
    // Subscribed before the heartbeats go out, so that their answers cannot be missed.
    let metrics = raft.metrics();
    if raft.trigger().heartbeat().await.is_err() {
        return false;
    }
    // The core publishes its metrics, the lease's time among them, once it has handled the
    // answers.
    wait_on_metrics(metrics, within, || lease_fresh(raft, within)).await
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
