//! Replication under network faults, injected through each broker's fault plan
//! (`Broker::faults`): a partition group's leader cut off from both followers, every link
//! losing a quarter of its messages, and the controller's leader cut off.
//!
//! The contract checked: a majority keeps electing and committing; a cut-off leader commits
//! nothing, steps down once the links heal, and catches up; and no write acknowledged to the
//! writer is lost or applied twice — every replica ends with the same log holding every
//! acknowledged batch once, at the offset acknowledged, in the order written.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use sluice_broker::BrokerStateMachine;
use sluice_controller::{Applied, ControllerCommand, TopicConfig};
use sluice_raft::Reply;
use sluice_raft::partition::{PartitionCommand, produce_batch, write};
use sluice_raft::typ::{Raft, WatchReceiver};
use tokio::task::JoinHandle;

use crate::catchup::{
    PER_BATCH, SETTLE, agreeing_logs, assert_dense, assert_same_entries, assert_same_offsets, batch, leader_of, log,
    one_partition_topic,
};
use crate::cluster::Cluster;

/// How long one write attempt may take before it is retried elsewhere: a leader cut off from
/// its quorum never answers.
const ATTEMPT: Duration = Duration::from_millis(500);
/// Batches acknowledged in each phase of a test, to show progress.
const PROGRESS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_leader_cut_off_mid_write_when_healed_it_steps_down_catches_up_and_no_ack_is_lost() {
    let cluster = Cluster::start(3).await;
    let group = one_partition_topic(&cluster, "split").await;
    let writer = Writer::start(&cluster, group);
    writer.wait_acked(PROGRESS).await;

    tracing::info!("--- the group's leader is cut off from both followers, both ways, mid-write");
    let old = leader_of(&cluster, group).expect("a leader");
    let (old_node, old_term) = (node_id(&cluster, old), term(&cluster, old, group));
    cluster.partition(&[old]);
    let acked_at_cut = writer.acked();

    tracing::info!("--- the majority elects a new leader in a later term, which commits writes");
    cluster
        .wait_for(SETTLE, "a new leader on the majority side", |c| {
            leader_of_term_after(c, group, old_term).is_some_and(|i| i != old)
        })
        .await;
    writer.wait_acked(acked_at_cut + PROGRESS).await;
    let during = writer.acked();
    let old_log_end = log(&cluster, old, group).indexed_end().map_or(0, |e| e.next_offset);

    tracing::info!("--- healed: the old leader steps down, follows the new one and catches up");
    cluster.heal();
    cluster
        .wait_for(SETTLE, "the old leader follows the new one", |c| {
            let raft = c.brokers[old].partitions().raft(group).expect("hosted");
            !raft.is_leader() && raft.metrics().borrow_watched().current_leader.is_some_and(|l| l != old_node)
        })
        .await;
    writer.wait_acked(during + PROGRESS).await;
    let acked = writer.stop().await;

    tracing::info!("--- while cut off, the old leader acknowledged nothing and held none of the new writes");
    // The write in flight at the cut may still have been acknowledged by the old leader, from
    // answers received before it; the next one was sent after the cut.
    let after_cut = &acked[acked_at_cut + 1..during];
    assert!(after_cut.iter().all(|a| a.node != old_node), "the cut-off node {old_node} acknowledged a write");
    let at_cut = (acked_at_cut as u64 + 1) * PER_BATCH;
    assert!(old_log_end <= at_cut, "the cut-off replica applied offsets up to {old_log_end}, past {at_cut}");
    assert!(faults_refused(&cluster) > 0, "the cut stopped messages");

    tracing::info!("--- every replica holds every acknowledged batch, once, in order");
    assert_every_ack_once_everywhere(&cluster, group, &acked).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_every_link_losing_a_quarter_of_its_messages_writes_commit_and_replicas_converge() {
    let cluster = Cluster::start(3).await;
    let group = one_partition_topic(&cluster, "lossy").await;

    tracing::info!("--- every broker loses 25 % of the messages it sends, on every link");
    for (seed, b) in cluster.brokers.iter().enumerate() {
        b.faults().reseed(seed as u64 + 42);
        b.faults().drop_rate(25);
    }
    let writer = Writer::start(&cluster, group);
    writer.wait_acked(5 * PROGRESS).await;
    let dropped: u64 = cluster.brokers.iter().map(|b| b.faults().counts().dropped).sum();
    assert!(dropped > 0, "messages were lost");

    tracing::info!("--- the loss stops: the replicas converge on one log");
    cluster.brokers.iter().for_each(|b| b.faults().drop_rate(0));
    let acked = writer.stop().await;
    tracing::info!(acked = acked.len(), dropped, "written through the lossy links");
    assert_every_ack_once_everywhere(&cluster, group, &acked).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_the_controller_leader_cut_off_the_majority_elects_another_and_creates_topics() {
    let cluster = Cluster::start(3).await;
    cluster
        .wait_for(SETTLE, "brokers registered under a controller leader", |c| {
            c.brokers.iter().any(|b| b.controller().is_leader())
                && c.brokers.iter().all(|b| b.controller().metadata().read(|m| m.brokers().count() == 3))
        })
        .await;

    tracing::info!("--- the controller leader is cut off from the other two, both ways: it commits nothing");
    let old = cluster.brokers.iter().position(|b| b.controller().is_leader()).expect("a leader");
    cluster.partition(&[old]);
    let create = |name: &str| ControllerCommand::CreateTopic { name: name.into(), config: TopicConfig::new(1, 1) };
    let alone = tokio::time::timeout(ATTEMPT, cluster.brokers[old].controller().propose(&create("alone"))).await;
    assert!(!matches!(alone, Ok(Ok(_))), "the cut-off leader committed a proposal: {alone:?}");
    let majority: Vec<usize> = (0..cluster.brokers.len()).filter(|i| *i != old).collect();
    cluster
        .wait_for(SETTLE, "a controller leader on the majority side", |c| {
            majority.iter().any(|i| c.brokers[*i].controller().is_leader())
        })
        .await;

    tracing::info!("--- the majority creates a topic");
    let reply = cluster.propose_among(&majority, &create("after-split"), ATTEMPT).await.into_result();
    // An attempt that timed out may have committed, and its retry then finds the topic: only
    // this test creates it, so that is the first attempt's success.
    let exists = |r: &sluice_controller::Rejection| r.code == sluice_controller::codes::TOPIC_EXISTS;
    assert!(matches!(&reply, Ok(Applied::TopicCreated { .. })) || reply.as_ref().is_err_and(exists), "{reply:?}");
    let has =
        |c: &Cluster, i: usize, topic: &str| c.brokers[i].controller().metadata().read(|m| m.topic(topic).is_some());
    cluster
        .wait_for(SETTLE, "the majority applied the topic", |c| majority.iter().all(|i| has(c, *i, "after-split")))
        .await;
    assert!(!has(&cluster, old, "after-split"), "the cut-off broker cannot have learned the topic");

    tracing::info!("--- healed: the old leader steps down and learns the topic; its own proposal is gone");
    cluster.heal();
    cluster
        .wait_for(SETTLE, "one controller leader and the same metadata everywhere", |c| {
            let versions: Vec<u64> =
                c.brokers.iter().map(|b| b.controller().metadata().read(|m| m.version())).collect();
            c.brokers.iter().filter(|b| b.controller().is_leader()).count() == 1
                && !c.brokers[old].controller().is_leader()
                && versions.iter().all(|v| *v == versions[0])
                && (0..c.brokers.len()).all(|i| has(c, i, "after-split"))
        })
        .await;
    assert!((0..cluster.brokers.len()).all(|i| !has(&cluster, i, "alone")), "the minority's proposal was committed");
    cluster.shutdown().await;
}

/// One acknowledged batch.
#[derive(Debug, Clone, Copy)]
struct Acked {
    /// The batch number (`catchup::batch`).
    batch: u64,
    /// The offset of its first message.
    base_offset: u64,
    /// The node whose leader acknowledged it.
    node: u64,
}

/// Writes batches 0, 1, 2, … to one partition group, one at a time, each until a leader
/// acknowledges it, until stopped; counts the acknowledgements as they come.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    task: JoinHandle<Vec<Acked>>,
}

impl Writer {
    fn start(cluster: &Cluster, group: u64) -> Writer {
        let rafts = rafts_of(cluster, group);
        let (stop, acked) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let (stopped, count) = (Arc::clone(&stop), Arc::clone(&acked));
        let task = tokio::spawn(async move {
            let mut done = Vec::new();
            for i in 0.. {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let (base_offset, node) = write_acked(&rafts, &PartitionCommand::produce(&batch(i))).await;
                done.push(Acked { batch: i, base_offset, node });
                count.fetch_add(1, Ordering::Relaxed);
            }
            done
        });
        Writer { stop, acked, task }
    }

    /// Batches acknowledged so far.
    fn acked(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits (bounded) until `n` batches are acknowledged.
    async fn wait_acked(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + SETTLE;
        while self.acked() < n {
            assert!(tokio::time::Instant::now() < deadline, "only {} of {n} batches acknowledged", self.acked());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops after the batch in flight is acknowledged; every batch it wrote, in order.
    async fn stop(self) -> Vec<Acked> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the writer panicked")
    }
}

/// Each broker's node id and its Raft of `group`, for brokers hosting it.
pub(crate) fn rafts_of(cluster: &Cluster, group: u64) -> Vec<(u64, Raft<BrokerStateMachine>)> {
    cluster.brokers.iter().filter_map(|b| Some((b.config().node_id, b.partitions().raft(group)?))).collect()
}

/// Writes `command` through whichever of `rafts` leads in the newest term (a cut-off leader
/// still believes it leads, in an older term), each attempt bounded by [`ATTEMPT`] (a leader
/// whose quorum is out of reach waits for it), until a leader acknowledges it; returns its base
/// offset and the acknowledging node. A retry of a batch that did commit is acknowledged as a
/// duplicate with the original offset.
pub(crate) async fn write_acked(
    rafts: &[(u64, Raft<BrokerStateMachine>)],
    command: &sluice_raft::Command,
) -> (u64, u64) {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let mut leaders: Vec<&(u64, Raft<BrokerStateMachine>)> = rafts.iter().filter(|(_, r)| r.is_leader()).collect();
        leaders.sort_by_key(|(_, r)| Reverse(r.metrics().borrow_watched().current_term));
        for (node, raft) in leaders {
            match tokio::time::timeout(ATTEMPT, write(raft, command.clone())).await {
                Ok(Ok(Reply::Appended { base_offset, .. } | Reply::Duplicate { base_offset, .. })) => {
                    return (base_offset, *node);
                }
                Ok(Ok(other)) => panic!("the write was refused: {other:?}"),
                Ok(Err(e)) => tracing::debug!(node, "write not acknowledged, retrying: {e}"),
                Err(_elapsed) => tracing::debug!(node, "no answer within {ATTEMPT:?}, retrying"),
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no leader acknowledged the write within {SETTLE:?}: {}",
            states(rafts)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each replica's Raft state, for failure messages.
pub(crate) fn states(rafts: &[(u64, Raft<BrokerStateMachine>)]) -> String {
    let state = |(node, raft): &(u64, Raft<BrokerStateMachine>)| {
        let m = raft.metrics().borrow_watched().clone();
        format!(
            "node {node}: {:?} term {} leader {:?} last log {:?} committed {:?} applied {:?}",
            m.state, m.current_term, m.current_leader, m.last_log_index, m.local_committed, m.last_applied
        )
    };
    rafts.iter().map(state).collect::<Vec<_>>().join("; ")
}

/// Waits until every replica of `group` agrees, then checks each holds exactly the `acked`
/// batches: each once, at its acknowledged offset, with its bytes, in the order written.
async fn assert_every_ack_once_everywhere(cluster: &Cluster, group: u64, acked: &[Acked]) {
    let offsets: BTreeMap<u64, u64> = acked.iter().map(|a| (a.batch, a.base_offset)).collect();
    assert_dense(&offsets, 0);
    assert!(acked.windows(2).all(|w| w[0].base_offset < w[1].base_offset), "batches out of the order written");
    let (_, reference, _) = agreeing_logs(cluster, group, 0).await;
    for a in acked {
        let at = reference.find_offset(a.base_offset).expect("an acknowledged batch is indexed").entry_index;
        let entry = reference.entry(at).expect("read").expect("the entry is held");
        assert_eq!(produce_batch(&entry.payload), Some(batch(a.batch)), "entry {at} holds batch {}", a.batch);
    }
    for i in 0..cluster.brokers.len() {
        let replica = log(cluster, i, group);
        assert_same_entries(&reference, &replica);
        assert_same_offsets(&reference, &replica, &offsets);
        let end = replica.indexed_end().map_or(0, |e| e.next_offset);
        assert_eq!(end, acked.len() as u64 * PER_BATCH, "replica {i} holds messages beyond the acknowledged batches");
    }
}

/// The position of the broker leading `group` in a term after `term`, if one does.
fn leader_of_term_after(cluster: &Cluster, group: u64, term: u64) -> Option<usize> {
    cluster.brokers.iter().position(|b| {
        b.partitions().raft(group).is_some_and(|r| r.is_leader() && r.metrics().borrow_watched().current_term > term)
    })
}

fn term(cluster: &Cluster, i: usize, group: u64) -> u64 {
    cluster.brokers[i].partitions().raft(group).expect("hosted").metrics().borrow_watched().current_term
}

fn node_id(cluster: &Cluster, i: usize) -> u64 {
    cluster.brokers[i].config().node_id
}

fn faults_refused(cluster: &Cluster) -> u64 {
    cluster.brokers.iter().map(|b| b.faults().counts().refused).sum()
}
