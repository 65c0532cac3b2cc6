//! Fail-stop: a broker whose storage failed stops, so that it restarts and recovers from disk
//! (docs/DURABILITY.md).
//!
//! A failed fsync may have lost data the kernel had accepted, and retrying it could falsely
//! report success, so a log or store that sees one refuses all further work and its Raft group
//! stops with a fatal storage error. The broker must not go on serving with such a dead replica:
//! it would still count as a live voter, hold leaderships it can no longer exercise, and never
//! recover. So every group the broker runs — the controller group and each partition group — is
//! watched, and the first one that stops on an error (anything but a shutdown asked for) stops the
//! whole broker: [`crate::run`] returns [`crate::StartError::GroupFailed`] and `sluice-broker` exits
//! with status 1. A supervisor restarts it; on restart each replica recovers what its disk holds
//! and Raft re-replicates the rest from the other replicas. Whatever hangs while it stops, the
//! process exits (`crate::run`): never only some of its groups stopped, the rest running.
//!
//! One storage error is not a failure: ENOSPC on a write. The log cut the partial write, so
//! nothing it holds is in doubt; the replica's group stops (openraft stops a group on any
//! storage error), is parked, and starts again from its files once the disk has room
//! (`partitions.rs`, `disk.rs`). A failed fsync stays a failure, whatever its errno.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sluice_raft::typ::{Fatal, Raft, core_stopped};
use tokio::sync::watch;

use crate::controller::BrokerStateMachine;

/// A Raft group of this broker that stopped on a fatal error (a storage error, or a panic of its
/// core), making the broker stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupFailure {
    /// Which group: "the controller group" or "partition group G (topic-partition)".
    pub group: String,
    /// The error the group stopped on.
    pub error: String,
}

impl fmt::Display for GroupFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} stopped: {}", self.group, self.error)
    }
}

/// How a partition replica's group that ran out of disk space is told from one that failed:
/// its log store sets `flag` on ENOSPC (`PartitionLogStore::noting_out_of_space`).
pub(crate) struct OutOfSpace {
    /// Set by the store when a write failed for want of space.
    pub flag: Arc<AtomicBool>,
    /// Parks the replica until the disk has room.
    pub park: Box<dyn FnOnce() + Send>,
}

/// Where groups report a fatal stop, and where the broker learns of the first one. Cheap to
/// clone; every clone reports to the same broker.
#[derive(Clone)]
pub(crate) struct FailStop {
    first: std::sync::Arc<watch::Sender<Option<GroupFailure>>>,
}

impl FailStop {
    pub(crate) fn new() -> FailStop {
        FailStop { first: std::sync::Arc::new(watch::channel(None).0) }
    }

    /// Watches `raft` (named `group` in the log) until its core stops, and reports the stop
    /// unless it was asked for. One task that sleeps until the group changes role or stops; it
    /// holds no handle of the group, so it never keeps one open.
    ///
    /// It also logs when this broker becomes the group's leader and when it stops leading: the
    /// elections an operator wants to see, in place of openraft's own chatter (which the default
    /// log filter hides).
    ///
    /// A group with `out_of_space` whose flag is set when it stops ran out of disk space on a
    /// write that failed cleanly: that is not a reason to stop the broker. Its `park` runs
    /// instead, which restarts the replica once the disk has room (`partitions.rs`).
    pub(crate) fn watch(&self, group: String, raft: &Raft<BrokerStateMachine>, out_of_space: Option<OutOfSpace>) {
        let name = group.clone();
        let stopped = core_stopped(raft, move |leading| match leading {
            Some(term) => tracing::info!("{name}: this broker leads it (term {term})"),
            None => tracing::info!("{name}: this broker no longer leads it"),
        });
        let fail_stop = self.clone();
        tokio::spawn(async move {
            let Err(fatal) = stopped.await else { return };
            match out_of_space {
                Some(oos) if oos.flag.load(Ordering::Acquire) => {
                    tracing::error!(
                        "{group} ran out of disk space ({}); this replica stops and restarts once the disk has \
                         room again, and the broker goes on",
                        cause(&fatal)
                    );
                    (oos.park)();
                }
                _ => fail_stop.report(GroupFailure { group, error: cause(&fatal) }),
            }
        });
    }

    /// Records `failure`. The first one is logged as the reason the broker stops; later ones,
    /// usually other groups hit by the same disk failure, only as what they are. Logged under
    /// the slot's lock, so that the reason always comes first in the log.
    fn report(&self, failure: GroupFailure) {
        self.first.send_if_modified(|slot| {
            if slot.is_some() {
                tracing::warn!("{failure} (the broker is already stopping)");
                return false;
            }
            tracing::error!("{failure}; stopping the broker so that it restarts and recovers from disk");
            *slot = Some(failure);
            true
        });
    }

    /// Resolves with the first failure reported, at once if there was one already.
    pub(crate) async fn failed(&self) -> GroupFailure {
        let mut rx = self.first.subscribe();
        // The borrow ends here: no lock is held across an await, and the future stays `Send`.
        let first = rx.wait_for(Option::is_some).await.ok().and_then(|slot| slot.clone());
        match first {
            Some(failure) => failure,
            // Unreachable while `self` holds the sender; never resolve rather than invent a failure.
            None => std::future::pending().await,
        }
    }
}

/// What a group stopped on, in words. A core that ended without recording a cause is what
/// openraft calls "panicked"; it is also what a core cancelled mid-step looks like (the broker
/// stopping its groups after a first failure), so the words say both.
fn cause(fatal: &Fatal) -> String {
    match fatal {
        Fatal::Panicked => "its Raft core ended without recording why (it panicked, or it was cancelled while the \
                            broker stopped)"
            .into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use sluice_controller::{ControllerCommand, ControllerReply, TopicConfig};

    use super::*;
    use crate::{Broker, BrokerConfig};

    fn failure(group: &str) -> GroupFailure {
        GroupFailure { group: group.into(), error: "fdatasync: Input/output error".into() }
    }

    #[tokio::test]
    async fn given_reports_the_first_one_is_the_failure_even_if_reported_before_waiting() {
        let fail_stop = FailStop::new();
        fail_stop.report(failure("partition group 7 (t-0)"));
        fail_stop.report(failure("the controller group"));
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), fail_stop.failed()).await;
        assert_eq!(got.expect("a reported failure resolves at once"), failure("partition group 7 (t-0)"));
    }

    #[test]
    fn a_core_that_ended_without_a_cause_is_not_called_a_plain_panic() {
        let words = cause(&Fatal::Panicked);
        assert!(words.contains("panicked") && words.contains("cancelled"), "{words}");
        assert_eq!(cause(&Fatal::Stopped), Fatal::Stopped.to_string());
    }

    #[tokio::test]
    async fn given_no_report_failed_does_not_resolve() {
        let fail_stop = FailStop::new();
        let got = tokio::time::timeout(std::time::Duration::from_millis(100), fail_stop.failed()).await;
        assert!(got.is_err(), "resolved without a failure: {got:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn given_a_deleted_topic_and_a_shutdown_no_group_failure_is_reported() {
        let data = tempfile::tempdir().expect("temp dir");
        let broker = single_broker(data.path()).await;
        let registered = || broker.controller().metadata().read(|m| m.brokers().any(|b| b.live));
        until("the broker is registered", registered).await;
        let create = ControllerCommand::CreateTopic { name: "t".into(), config: TopicConfig::new(2, 1) };
        let reply = broker.controller().propose(&create).await.expect("create the topic");
        assert!(matches!(reply, ControllerReply::Applied(_)), "creating the topic: {reply:?}");
        until("both partitions are hosted", || broker.partitions().group_ids().len() == 2).await;
        broker.controller().propose(&ControllerCommand::DeleteTopic { name: "t".into() }).await.expect("delete it");
        until("the partitions are gone", || broker.partitions().group_ids().is_empty()).await;
        let got = tokio::time::timeout(Duration::from_millis(300), broker.failed()).await;
        assert!(got.is_err(), "a deleted topic's groups reported a failure: {got:?}");
        let fail_stop = broker.fail_stop.clone();
        broker.shutdown().await;
        let got = tokio::time::timeout(Duration::from_millis(300), fail_stop.failed()).await;
        assert!(got.is_err(), "a shutdown reported a failure: {got:?}");
    }

    /// A one-broker cluster on free loopback ports, its data under `dir`.
    async fn single_broker(dir: &std::path::Path) -> Broker {
        let any = "127.0.0.1:0".parse().expect("an address");
        let raft = sluice_raft::transport::bind(any).expect("bind the peer listener");
        let client = crate::client::bind(any).expect("bind the client listener");
        let mut config = BrokerConfig { data_dir: dir.join("node1"), metrics_listen: None, ..BrokerConfig::dev() };
        config.peers[0].raft_addr = raft.local_addr().expect("peer address").to_string();
        config.peers[0].client_addr = client.local_addr().expect("client address").to_string();
        Broker::start_on_listeners(config, raft, client).await.expect("start the broker")
    }

    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "{what}: not within 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
