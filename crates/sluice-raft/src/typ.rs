//! The openraft type configuration of every Raft group (partitions, the controller, and other
//! replicated state machines), and the command and reply types it carries. Everything else in the project names these aliases, never openraft's generics, so
//! an openraft upgrade touches this crate only.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::KIND_NORMAL;

openraft::declare_raft_types!(
    /// Type configuration of every Raft group: one type config means one transport and one entry
    /// codec for all of them. Standard Raft leader ids (one leader per term) make a log id exactly
    /// `(term, index)`, which is what a storage frame holds.
    pub PartitionConfig:
        D = Command,
        R = Reply,
        NodeId = u64,
        Node = openraft::BasicNode,
        LeaderId = openraft::impls::leader_id_std::LeaderId<Self::Term, Self::NodeId>,
);

/// A Raft node id: the broker's [`sluice_common::NodeId`] value.
pub type NodeId = u64;
/// A node's address as Raft records it in memberships.
pub type Node = openraft::BasicNode;
/// A partition group's Raft handle, over state machine `SM`.
pub type Raft<SM> = openraft::Raft<PartitionConfig, SM>;
/// A log position `(term, index)`.
pub type LogId = openraft::type_config::alias::LogIdOf<PartitionConfig>;
/// A Raft vote.
pub type Vote = openraft::type_config::alias::VoteOf<PartitionConfig>;
/// A Raft log entry.
pub type RaftEntry = openraft::type_config::alias::EntryOf<PartitionConfig>;
/// A membership configuration.
pub type Membership = openraft::Membership<NodeId, Node>;
/// A membership and the log position it was recorded at.
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<PartitionConfig>;

/// Raft timing and behaviour settings of one group.
pub use openraft::Config as RaftConfig;
/// A member's role in its group.
pub use openraft::ServerState;
/// Reads a group's metrics watch: `raft.metrics().borrow_watched()`.
pub use openraft::async_runtime::WatchReceiver;
/// Why a group's Raft core stopped: a storage error, a panic, or a shutdown asked for.
pub type Fatal = openraft::errors::Fatal<PartitionConfig>;

/// Builds a log id from a term and an index.
pub fn log_id(term: u64, index: u64) -> LogId {
    LogId::new_term_index(term, index)
}

/// The application data of one entry: an encoded partition command, opaque to this crate (the
/// broker's partition state machine defines and decodes the commands).
///
/// The bytes are kept exactly as they are stored: a leading [`KIND_NORMAL`] byte followed by
/// the command. So appending a command to the log and reading it back for replication or apply
/// never copies it.
#[derive(Clone, PartialEq, Eq)]
pub struct Command(Bytes);

impl Command {
    /// Wraps a command body (copied once, behind the kind byte).
    pub fn new(body: &[u8]) -> Command {
        let mut b = BytesMut::with_capacity(1 + body.len());
        b.put_u8(KIND_NORMAL);
        b.put_slice(body);
        Command(b.freeze())
    }

    /// Takes stored bytes that start with [`KIND_NORMAL`]; `None` otherwise.
    pub fn from_stored(stored: Bytes) -> Option<Command> {
        (stored.first() == Some(&KIND_NORMAL)).then_some(Command(stored))
    }

    /// The command body, without the kind byte.
    pub fn body(&self) -> Bytes {
        self.0.slice(1..)
    }

    /// The bytes as stored in the log.
    pub fn stored(&self) -> &Bytes {
        &self.0
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Command({} bytes)", self.0.len() - 1)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What applying an entry produced, handed back to the writer on the leader (never sent over
/// the network).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A batch was appended at `base_offset` with `count` messages.
    Appended {
        /// Offset of the batch's first message.
        base_offset: u64,
        /// Messages in the batch.
        count: u32,
    },
    /// The batch repeats one already applied (idempotent producer retry); nothing was written.
    Duplicate {
        /// Offset the original batch was given.
        base_offset: u64,
        /// Messages in the batch.
        count: u32,
    },
    /// The command was refused by the state machine; `code` is a stable error code.
    Rejected {
        /// Stable error code.
        code: u16,
        /// What went wrong, for people.
        message: String,
    },
    /// A delayed batch was accepted: its messages are numbered from `base_seq` and wait in the
    /// partition's delay lane until due.
    Delayed {
        /// The number of the batch's first message (`DelayedId::seq`).
        base_seq: u64,
        /// Messages in the batch.
        count: u32,
    },
    /// What a cancel of a pending delayed message found.
    Cancel(crate::partition::delay::CancelOutcome),
    /// What an [`Fsm`](crate::Fsm) answered (controller and other replicated features).
    Fsm(Bytes),
    /// The entry carried no command (blank or membership), or one with nothing to report.
    Done,
}

/// For a group's leader: how long ago each member last acknowledged it (`None`: never, since this
/// member became leader). Empty when `raft` does not lead. Brokers judge peers' liveness by it.
pub fn ack_ages<SM>(raft: &Raft<SM>) -> std::collections::BTreeMap<NodeId, Option<std::time::Duration>>
where
    SM: openraft::storage::RaftStateMachine<PartitionConfig>,
{
    use openraft::Instant as _;
    use openraft::async_runtime::WatchReceiver as _;
    let metrics = raft.metrics();
    let m = metrics.borrow_watched();
    m.heartbeat
        .as_ref()
        .map(|acks| acks.iter().map(|(id, at)| (*id, at.as_ref().map(|t| t.elapsed()))).collect())
        .unwrap_or_default()
}

/// When a leader's applied state (a partition's high watermark among it) covers everything
/// committed before it led. A new leader — elected, or restarted as the leader its persisted
/// vote names — holds every committed entry, but learns how far they are committed, and
/// applies them, only later. Reads served before that could show a high watermark behind what
/// readers already saw. The barrier is the leader's last log index when it is first asked in
/// a term: once applied up to there, every entry committed before the leadership is applied.
#[derive(Debug, Default)]
pub struct LeaderReadBarrier {
    /// The term and the last log index at the first question in that term.
    barrier: std::sync::Mutex<Option<(u64, Option<u64>)>>,
}

impl LeaderReadBarrier {
    /// Whether `raft` leads its group and has applied up to its barrier. Cheap: a metrics read
    /// and an uncontended lock.
    pub fn caught_up<SM>(&self, raft: &Raft<SM>) -> bool
    where
        SM: openraft::storage::RaftStateMachine<PartitionConfig>,
    {
        use openraft::async_runtime::WatchReceiver as _;
        let metrics = raft.metrics();
        let m = metrics.borrow_watched();
        if m.state != ServerState::Leader {
            return false;
        }
        let mut barrier = self.barrier.lock().expect("read barrier lock");
        let upto = match *barrier {
            Some((term, upto)) if term == m.current_term => upto,
            _ => barrier.insert((m.current_term, m.last_log_index)).1,
        };
        m.last_applied.as_ref().map(|l| l.index) >= upto
    }

    /// Like [`LeaderReadBarrier::caught_up`], waiting up to `within` for it. The core reports
    /// what the state machine applied only after the state machine answered the writes: a
    /// client that sends a read as soon as its write is answered can find the report behind
    /// its own write, a few microseconds from catching up.
    pub async fn wait_caught_up<SM>(&self, raft: &Raft<SM>, within: std::time::Duration) -> bool
    where
        SM: openraft::storage::RaftStateMachine<PartitionConfig>,
    {
        // Every fetch asks: the usual answer costs no subscription and no timer.
        if self.caught_up(raft) {
            return true;
        }
        wait_on_metrics(raft.metrics(), within, || self.caught_up(raft)).await
    }
}

/// The metrics a group publishes, as [`Raft::metrics`] hands them out.
pub(crate) type MetricsReceiver =
    openraft::type_config::alias::WatchReceiverOf<PartitionConfig, openraft::RaftMetrics<PartitionConfig>>;

/// Waits up to `within` until `ready()` holds, checking it again whenever the group publishes
/// its metrics, and at least every 50 ms should a publication not come. `metrics` must have been
/// taken before whatever is awaited was set off, so that its publication cannot be missed.
pub(crate) async fn wait_on_metrics(
    mut metrics: MetricsReceiver,
    within: std::time::Duration,
    ready: impl Fn() -> bool,
) -> bool {
    const RECHECK: std::time::Duration = std::time::Duration::from_millis(50);
    let waited = async {
        loop {
            if ready() {
                return true;
            }
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return false },
                () = tokio::time::sleep(RECHECK) => {}
            }
        }
    };
    tokio::time::timeout(within, waited).await.unwrap_or(false)
}

/// Resolves once `raft`'s core has stopped, with why: `Ok` if it was shut down on purpose
/// ([`Raft::shutdown`], or every handle dropped), else the [`Fatal`] error it stopped on
/// ([`Fatal::Panicked`] if it ended without recording one).
///
/// The future holds two metrics receivers, not the group, so it keeps nothing open. It waits on
/// the server metrics, which change only with the group's role, leader or membership (not with
/// every write, as the full metrics do) and close when the core's task ends; the reason is then
/// read from the full metrics, where the core records it before ending. So one waiting task per
/// group costs nothing between elections.
///
/// `on_leadership` is called with the term each time this node becomes the group's leader, and
/// with `None` each time it stops leading, so the caller can log elections in its own words.
pub fn core_stopped<SM>(
    raft: &Raft<SM>,
    mut on_leadership: impl FnMut(Option<u64>) + Send + 'static,
) -> impl Future<Output = Result<(), Fatal>> + Send + 'static
where
    SM: openraft::storage::RaftStateMachine<PartitionConfig>,
{
    let mut server = raft.server_metrics();
    let all = raft.metrics();
    async move {
        let mut leading = false;
        loop {
            {
                let m = server.borrow_watched();
                let now_leading = m.state == openraft::ServerState::Leader;
                if now_leading != leading {
                    leading = now_leading;
                    on_leadership(now_leading.then_some(m.vote.leader_id.term));
                }
            }
            if server.changed().await.is_err() {
                break;
            }
        }
        let running = all.borrow_watched().running_state.clone();
        match running {
            Err(Fatal::Stopped) => Ok(()),
            Err(fatal) => Err(fatal),
            Ok(()) => Err(Fatal::Panicked),
        }
    }
}
