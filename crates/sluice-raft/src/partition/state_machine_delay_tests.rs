//! The delay lane applied by the state machine: numbering, release, cancel, re-application
//! after a crash, and snapshot installation (docs/adr/0009-delayed-messages.md).

use std::sync::Arc;

use bytes::Bytes;
use openraft::EntryPayload;
use openraft::entry::RaftEntry as _;
use sluice_common::record::{BatchBuilder, DELIVER_AT_PROPERTY, ProducerStamp, Record};
use sluice_storage::{Log, LogConfig};

use super::*;
use crate::partition::delay::{CancelOutcome, DelayStore, transfer};
use crate::partition::read_committed;
use crate::typ::Command;

const GROUP: u64 = 7;

fn delayed(values_and_dues: &[(&str, u64)], producer: ProducerStamp) -> Bytes {
    let mut b = BatchBuilder::new(producer, 256).delayed(true);
    for (value, due) in values_and_dues {
        let mut r = Record::new(value.to_string(), 1);
        r.properties.push((DELIVER_AT_PROPERTY.into(), due.to_string()));
        b.push(&r);
    }
    b.finish()
}

/// A replica over a log and a delay store in `dir`.
struct Replica {
    sm: PartitionStateMachine,
    log: Arc<Log>,
    store: Arc<DelayStore>,
    next_index: u64,
}

impl Replica {
    fn open(dir: &std::path::Path) -> Replica {
        let log = Arc::new(Log::open(dir.join("log"), LogConfig::default()).unwrap());
        let store = Arc::new(DelayStore::open(&dir.join("delays")).unwrap());
        let lane = DelayLane::open(Arc::clone(&store), GROUP).unwrap();
        let sm = PartitionStateMachine::open(Arc::clone(&log)).unwrap().with_delays(lane);
        let next_index = log.last_id().map_or(1, |e| e.index + 1);
        Replica { sm, log, store, next_index }
    }

    fn apply(&mut self, command: Command) -> Reply {
        let entry = RaftEntry::new(crate::typ::log_id(1, self.next_index), EntryPayload::Normal(command));
        self.next_index += 1;
        self.log.append(&[crate::codec::encode(&entry)]).unwrap();
        self.sm.apply_one(entry).unwrap()
    }

    /// Applies logged entry `index` again, as openraft does after a restart.
    fn reapply(&mut self, index: u64, command: Command) -> Reply {
        let entry = RaftEntry::new(crate::typ::log_id(1, index), EntryPayload::Normal(command));
        self.sm.apply_one(entry).unwrap()
    }

    fn release_due(&mut self, now: u64) -> Reply {
        let command = self.release_command(now);
        self.apply(command)
    }

    /// A release of what is due at `now`, built as the leader builds one: the store's mark first.
    fn release_command(&self, now: u64) -> Command {
        let built_at = self.store.mark(GROUP).unwrap();
        let rows = self.store.pending(GROUP, 0, now, 100, usize::MAX).unwrap();
        let mut b = BatchBuilder::new(ProducerStamp::NONE, 256);
        for row in &rows {
            let view = sluice_common::record::RecordBatch::parse(row.batch.clone()).unwrap().records().next().unwrap();
            b.push_view(&view.unwrap());
        }
        let items: Vec<(u64, u64)> = rows.iter().map(|r| (r.seq, r.due_ms)).collect();
        PartitionCommand::release(now, built_at, &items, &b.finish())
    }
}

#[test]
fn delayed_messages_are_numbered_released_once_and_cancelled_by_log_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Replica::open(dir.path());
    let stamp = ProducerStamp { producer_id: 3, epoch: 0, base_sequence: 0 };
    let batch = delayed(&[("a", 100), ("b", 300), ("c", 200)], stamp);
    assert_eq!(r.apply(PartitionCommand::produce(&batch)), Reply::Delayed { base_seq: 0, count: 3 });
    assert_eq!(r.apply(PartitionCommand::produce(&batch)), Reply::Duplicate { base_offset: 0, count: 3 }, "a retry");
    assert_eq!((r.sm.next_offset(), r.store.count(GROUP).unwrap()), (0, 3), "no offsets yet, stored once");

    let early = PartitionCommand::release(150, 2, &[(1, 300)], &BatchBuilder::new(ProducerStamp::NONE, 8).finish());
    assert!(matches!(r.apply(early), Reply::Rejected { code: reject::INVALID_BATCH, .. }), "never early");
    assert_eq!(r.release_due(250), Reply::Appended { base_offset: 0, count: 2 }, "a and c, by due time");
    let released = read_committed(&r.log, 0, r.sm.next_offset(), usize::MAX).unwrap();
    let values: Vec<Bytes> = sluice_common::record::RecordBatch::parse(released[0].batch.clone())
        .unwrap()
        .records()
        .map(|v| v.unwrap().value)
        .collect();
    assert_eq!(values, ["a", "c"]);
    assert_eq!(r.sm.delay_counters(), (3, 250));

    assert_eq!(r.apply(PartitionCommand::cancel(0)), Reply::Cancel(CancelOutcome::AlreadyDelivered));
    assert_eq!(r.apply(PartitionCommand::cancel(1)), Reply::Cancel(CancelOutcome::Cancelled));
    assert_eq!(r.apply(PartitionCommand::cancel(1)), Reply::Cancel(CancelOutcome::Cancelled), "repeated");
    assert_eq!(r.apply(PartitionCommand::cancel(9)), Reply::Cancel(CancelOutcome::Unknown));
    assert_eq!(r.release_due(1_000), Reply::Appended { base_offset: 2, count: 0 }, "nothing left to release");
    assert_eq!(r.store.count(GROUP).unwrap(), 0);
}

/// A release the leader built before a cancel (or another release) reached the log — a leader
/// that lost its leadership and won it back, a write that outlasted its wait — is refused on
/// every replica: the cancelled message is never delivered, a released one never twice.
#[test]
fn a_release_built_before_a_cancel_or_another_release_is_refused_as_stale() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Replica::open(dir.path());
    r.apply(PartitionCommand::produce(&delayed(&[("a", 10), ("b", 20)], ProducerStamp::NONE)));
    let before_cancel = r.release_command(50);
    assert_eq!(r.apply(PartitionCommand::cancel(0)), Reply::Cancel(CancelOutcome::Cancelled));
    let stale = r.apply(before_cancel);
    assert!(matches!(stale, Reply::Rejected { code: reject::STALE_RELEASE, .. }), "{stale:?}");
    assert_eq!(r.sm.next_offset(), 0, "nothing delivered");

    let first = r.release_command(50);
    let second = r.release_command(50);
    assert_eq!(r.apply(first), Reply::Appended { base_offset: 0, count: 1 }, "b alone");
    let twice = r.apply(second);
    assert!(matches!(twice, Reply::Rejected { code: reject::STALE_RELEASE, .. }), "{twice:?}");
    assert_eq!((r.sm.next_offset(), r.store.count(GROUP).unwrap()), (1, 0), "b delivered once");
}

#[test]
fn a_batch_with_a_bad_delivery_time_is_refused_whole_on_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Replica::open(dir.path());
    let mut b = BatchBuilder::new(ProducerStamp::NONE, 64).delayed(true);
    b.push(&Record::new("no time", 1));
    let refused = r.apply(PartitionCommand::produce(&b.finish()));
    assert!(matches!(&refused, Reply::Rejected { code: reject::INVALID_BATCH, message } if message.contains("lacks")));
    assert_eq!((r.sm.delay_counters().0, r.store.count(GROUP).unwrap()), (0, 0));
}

#[test]
fn entries_applied_again_after_a_crash_decide_as_before_and_store_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let commands = {
        let mut r = Replica::open(dir.path());
        let commands = vec![
            PartitionCommand::produce(&delayed(&[("a", 10), ("b", 20)], ProducerStamp::NONE)),
            PartitionCommand::cancel(1),
        ];
        for c in &commands {
            r.apply(c.clone());
        }
        let release = r.release_command(15);
        assert_eq!(r.apply(release.clone()), Reply::Appended { base_offset: 0, count: 1 });
        let mut all = commands;
        all.push(release);
        all
    };
    tracing::info!("--- the process restarts with no snapshot: openraft applies entries 1 to 3 again");
    let mut r = Replica::open(dir.path());
    assert_eq!(r.reapply(1, commands[0].clone()), Reply::Delayed { base_seq: 0, count: 2 });
    assert_eq!(r.reapply(2, commands[1].clone()), Reply::Done, "already in the store: nothing to answer");
    assert_eq!(r.reapply(3, commands[2].clone()), Reply::Appended { base_offset: 0, count: 1 }, "same offsets");
    assert_eq!(r.store.count(GROUP).unwrap(), 0, "b stays cancelled, a released, nothing stored again");
    assert_eq!(r.sm.delay_counters(), (2, 15));
}

/// The snapshot a replica stores is its state alone; one sent to a lagging replica carries the
/// sender's rows as its store holds them when sending, possibly past the snapshot's last entry.
/// The receiver takes the sender's mark, so the entries after the snapshot, which it applies
/// next, do not store (or cancel, or release) again what the rows already show.
#[test]
fn a_replica_installing_a_snapshot_gets_the_pending_messages_with_it() {
    let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut leader = Replica::open(from.path());
    let first = PartitionCommand::produce(&delayed(&[("a", 10), ("b", 20), ("c", 30)], ProducerStamp::NONE));
    leader.apply(first.clone());
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let snapshot = rt.block_on(async {
        let mut builder = leader.sm.get_snapshot_builder().await;
        builder.build_snapshot().await.unwrap()
    });
    assert_eq!(&snapshot.snapshot[..4], b"SLPS", "stored without rows");
    tracing::info!("--- entries 2 and 3 after the snapshot: a cancel and another delayed message");
    let after = [PartitionCommand::cancel(1), PartitionCommand::produce(&delayed(&[("d", 40)], ProducerStamp::NONE))];
    for c in &after {
        leader.apply(c.clone());
    }
    let sent = transfer::with_rows(&snapshot.snapshot, &leader.store, GROUP).unwrap();

    let mut follower = Replica::open(to.path());
    follower.apply(PartitionCommand::produce(&delayed(&[("stale", 5)], ProducerStamp::NONE)));
    rt.block_on(follower.sm.install_snapshot(&snapshot.meta, sent)).unwrap();
    let seqs = |s: &DelayStore| -> Vec<(u64, u64)> {
        s.pending(GROUP, 0, u64::MAX, 100, usize::MAX).unwrap().iter().map(|p| (p.seq, p.due_ms)).collect()
    };
    assert_eq!(seqs(&follower.store), [(0, 10), (2, 30), (3, 40)], "the leader's rows replace its own");
    assert_eq!(follower.store.mark(GROUP).unwrap(), 3, "the sender's mark");
    for (index, c) in (2..).zip(&after) {
        follower.reapply(index, c.clone());
    }
    assert_eq!(seqs(&follower.store), seqs(&leader.store), "nothing stored twice");
    assert_eq!(follower.sm.delay_counters(), leader.sm.delay_counters());
    let again = follower.reapply(4, PartitionCommand::cancel(1));
    assert_eq!(again, Reply::Cancel(CancelOutcome::Cancelled), "the cancel travelled: a repeat answers the same");
}

fn one_record(value: &str) -> Bytes {
    let mut b = BatchBuilder::new(ProducerStamp::NONE, 64);
    b.push(&Record::new(value.to_string(), 1));
    b.finish()
}

#[test]
fn a_schedule_fires_once_per_due_time_collapses_missed_fires_and_can_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Replica::open(dir.path());
    let every = "every|1000|5000";
    assert_eq!(r.apply(PartitionCommand::schedule("tick", 5_000, every, &one_record("m"))), Reply::Done);
    let again = r.apply(PartitionCommand::schedule("tick", 5_000, every, &one_record("m")));
    assert!(matches!(again, Reply::Rejected { code: reject::SCHEDULE_EXISTS, .. }), "{again:?}");
    let early = r.apply(PartitionCommand::fire(4_999, 2, 5_000, "tick", &one_record("m")));
    assert!(matches!(early, Reply::Rejected { code: reject::INVALID_BATCH, .. }), "never early: {early:?}");
    assert_eq!(
        r.apply(PartitionCommand::fire(5_002, 2, 5_000, "tick", &one_record("m"))),
        Reply::Appended { base_offset: 0, count: 1 }
    );
    assert_eq!(r.store.schedule(GROUP, "tick").unwrap().unwrap().next_due_ms, 6_000, "the next fire");
    tracing::info!("--- handled 9.5 s late: the missed fires collapse into this one");
    r.apply(PartitionCommand::fire(15_500, 4, 6_000, "tick", &one_record("m")));
    assert_eq!(r.store.schedule(GROUP, "tick").unwrap().unwrap().next_due_ms, 16_000);
    assert_eq!(r.store.due_fires(GROUP, 16_000, 10).unwrap(), [(16_000, "tick".to_string())]);
    assert_eq!(r.apply(PartitionCommand::unschedule("tick")), Reply::Done);
    let gone = r.apply(PartitionCommand::unschedule("tick"));
    assert!(matches!(gone, Reply::Rejected { code: reject::UNKNOWN_SCHEDULE, .. }), "{gone:?}");
    assert_eq!((r.store.schedules(GROUP).unwrap(), r.store.next_due(GROUP).unwrap()), (vec![], None));
    assert_eq!(r.sm.next_offset(), 2, "two fires appended");
}

#[test]
fn schedules_travel_with_a_snapshot() {
    let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut leader = Replica::open(from.path());
    leader.apply(PartitionCommand::schedule("cron", 9_000, "cron|Europe/Berlin|0 30 2 * * *", &one_record("c")));
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let snapshot = rt.block_on(async { leader.sm.get_snapshot_builder().await.build_snapshot().await.unwrap() });
    let sent = transfer::with_rows(&snapshot.snapshot, &leader.store, GROUP).unwrap();
    let mut follower = Replica::open(to.path());
    rt.block_on(follower.sm.install_snapshot(&snapshot.meta, sent)).unwrap();
    assert_eq!(follower.store.schedules(GROUP).unwrap(), leader.store.schedules(GROUP).unwrap());
    assert_eq!(follower.store.next_due(GROUP).unwrap(), Some(9_000));
}
