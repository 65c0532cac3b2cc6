//! The partition state machine: applies committed entries in log order on every replica
//! (decisions D2 and D6 of docs/ARCHITECTURE.md).
//!
//! - **Offsets at apply (D2).** Each accepted batch gets `next_offset` as its base offset and
//!   advances it by its message count; the batch's entry is recorded in the log's offset and time
//!   indexes. Every replica applies the same entries in the same order, so all agree.
//! - **Deduplication (D6).** Batches from idempotent producers are checked against the producer
//!   table: a retry is acknowledged with its original offset and not written again; an older
//!   epoch is fenced; a sequence gap is refused. The table is bounded by the limits the leader
//!   stamped into the command (docs/adr/0007-producer-expiry.md): the command's time moves the
//!   partition clock, producers idle past the expiration are forgotten, and a new producer id
//!   beyond the cap is refused.
//! - **Snapshots** hold only [`PartitionState`]; they are written to a state file in the log's
//!   directory. Before one is written, the log's indexes are flushed, so the offset index always
//!   reaches at least the snapshot's position. A snapshot sent to a replica carries the retained
//!   entries up to it (`partition::retained`); installing it adopts them into the log, so the
//!   replica's log starts at the log start like the leader's.
//! - **High watermark.** After each applied run of entries the state machine publishes its next
//!   offset on a `tokio::sync::watch` ([`PartitionStateMachine::high_watermark`]): everything
//!   below it is applied, hence committed, and may be served; a fetch waiting for new data waits
//!   on the watch instead of polling. The run's writes are answered after that, so an
//!   acknowledged batch is always visible to the next fetch.
//! - **Retention.** A [`PartitionCommand::Trim`] moves the log start (offset, and the Raft
//!   index below which entries may go) forward, never back, and publishes it on a second watch
//!   ([`PartitionStateMachine::log_start`]). Apply only records it: the broker purges the log
//!   afterwards, outside apply, when it sees the watch move.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use openraft::storage::{
    ApplyResponder, EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta,
};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf};
use openraft::{EntryPayload, OptionalSend};
use sluice_storage::{EntryId, Log};
use tokio::sync::watch;

use crate::exhaustion::{self, Exhaustion};

use super::command::{LeaderStamp, PartitionCommand};
use super::delay::{DelayLane, DelayStore, ScheduleRow, transfer};
use super::producers::Check;
use super::snapshot::PartitionState;
use super::txns::{MarkerOutcome, Stable};
use super::watermark::LogStart;
use crate::snapshot_file;
use crate::typ::{LogId, PartitionConfig, RaftEntry, Reply, StoredMembership};

/// Stable codes of [`Reply::Rejected`].
pub mod reject {
    /// The command or its record batch is malformed.
    pub const INVALID_BATCH: u16 = 1;
    /// An idempotent producer's epoch is older than the partition's: a zombie instance.
    pub const PRODUCER_FENCED: u16 = 2;
    /// An idempotent producer's sequence is not the expected one: ahead (a batch before this one
    /// is missing) or older (not a retry of a remembered batch).
    pub const OUT_OF_ORDER_SEQUENCE: u16 = 3;
    /// A new idempotent producer id, and the partition already tracks as many as the leader's
    /// `max_producers_per_partition` allows.
    pub const TOO_MANY_PRODUCER_IDS: u16 = 4;
    /// A delay command on a replica without a delay store (only tests build those).
    pub const DELAYS_UNAVAILABLE: u16 = 5;
    /// A schedule with the name exists in the partition.
    pub const SCHEDULE_EXISTS: u16 = 6;
    /// No schedule with the name exists in the partition.
    pub const UNKNOWN_SCHEDULE: u16 = 7;
    /// A release or fire built from a delay store that a later entry changed; the leader
    /// builds it again.
    pub const STALE_RELEASE: u16 = 8;
    /// A write that does not fit the producer's transaction here: outside its open transaction,
    /// or at another epoch than it (docs/TRANSACTIONS.md).
    pub const INVALID_TXN_STATE: u16 = 9;
    /// A transaction marker at or below the epoch of the producer's open transaction: from an
    /// earlier decision, it must not end a later transaction.
    pub const STALE_MARKER: u16 = 10;
    /// An idempotent producer the partition does not know, whose batch does not start at
    /// sequence 0: the batches before it were not written.
    pub const UNKNOWN_PRODUCER: u16 = 11;
}

/// A partition replica's state machine.
pub struct PartitionStateMachine {
    log: Arc<Log>,
    state: PartitionState,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    snapshot: Option<(SnapshotMetaOf<PartitionConfig>, Bytes)>,
    /// `state.next_offset` as of the last applied run of entries.
    high_watermark: watch::Sender<u64>,
    /// `state`'s log start as of the last applied run of entries.
    log_start: watch::Sender<LogStart>,
    /// The last stable offset and aborted ranges as of the last applied run of entries.
    stable: watch::Sender<Stable>,
    /// Whether the aborted ranges changed since `stable` was last published.
    aborted_changed: bool,
    /// The replies of an applied run, held until its high watermark is published (kept to
    /// reuse its allocation).
    answers: Vec<(ApplyResponder<PartitionConfig>, Reply)>,
    /// Notes a snapshot that cannot be written for want of a resource (see `noting_exhaustion`).
    exhaustion: Option<Arc<Exhaustion>>,
    /// Where delayed messages wait (docs/adr/0009-delayed-messages.md); `None` refuses them.
    delays: Option<DelayLane>,
}

impl PartitionStateMachine {
    /// The same state machine, noting in `flag` a snapshot that cannot be written for want of
    /// a resource, as [`crate::PartitionLogStore::noting_exhaustion`] does for the log.
    pub fn noting_exhaustion(mut self, flag: Arc<Exhaustion>) -> PartitionStateMachine {
        self.exhaustion = Some(flag);
        self
    }

    /// The same state machine, keeping its delayed messages in `lane`.
    pub fn with_delays(mut self, lane: DelayLane) -> PartitionStateMachine {
        lane.publish(&self.state);
        self.delays = Some(lane);
        self
    }

    /// The delay lane, if the replica has one.
    pub fn delays(&self) -> Option<&DelayLane> {
        self.delays.as_ref()
    }

    /// Opens the state machine over `log`, starting from the snapshot stored beside it, if any.
    /// Entries after the snapshot are re-applied by openraft.
    pub fn open(log: Arc<Log>) -> io::Result<PartitionStateMachine> {
        let mut sm = PartitionStateMachine {
            log,
            state: PartitionState::default(),
            last_applied: None,
            membership: StoredMembership::default(),
            snapshot: None,
            high_watermark: watch::Sender::new(0),
            log_start: watch::Sender::new(LogStart::default()),
            stable: watch::Sender::new(Stable::default()),
            aborted_changed: false,
            answers: Vec::new(),
            exhaustion: None,
            delays: None,
        };
        let stored = snapshot_file::load(sm.log.dir())?;
        // A crash may have stopped the installation of a snapshot after it was stored but
        // before its retained entries were in the log: they are still staged, and adopted now.
        adopt_retained(&sm.log, stored.as_ref().and_then(|(meta, _)| meta.last_log_id))?;
        if let Some((meta, data)) = stored {
            sm.restore(&meta, &data)?;
            sm.snapshot = Some((meta, data));
        }
        Ok(sm)
    }

    /// The offset the next appended message will get.
    pub fn next_offset(&self) -> u64 {
        self.state.next_offset
    }

    /// A watch of the high watermark: the offset after the last applied (so committed) message.
    /// It is updated after each run of applied entries, and closed when the state machine is
    /// dropped (its group stopped).
    pub fn high_watermark(&self) -> watch::Receiver<u64> {
        self.high_watermark.subscribe()
    }

    /// A watch of the log start retention left: updated after each run of applied entries
    /// that moved it, and closed when the state machine is dropped.
    pub fn log_start(&self) -> watch::Receiver<LogStart> {
        self.log_start.subscribe()
    }

    /// A watch of the last stable offset and the aborted ranges (docs/TRANSACTIONS.md): a
    /// `read_committed` fetch reads below the offset and hides what the ranges cover. Updated
    /// with the high watermark, before the run's writes are answered.
    pub fn stable(&self) -> watch::Receiver<Stable> {
        self.stable.subscribe()
    }

    /// The partition's open transactions and aborted ranges.
    pub fn txns(&self) -> &super::txns::TxnIndex {
        &self.state.txns
    }

    /// The partition clock, in ms: the latest leader time applied.
    pub fn clock_ms(&self) -> u64 {
        self.state.producers.clock_ms()
    }

    /// Publishes `next_offset` to the high watermark watch, the log start and the last stable
    /// offset to theirs, each if it moved.
    fn publish(&mut self) {
        publish_if_moved(&self.high_watermark, self.state.next_offset);
        let start = LogStart { offset: self.state.log_start_offset, trimmed_before: self.state.trimmed_before };
        publish_if_moved(&self.log_start, start);
        let txns = &self.state.txns;
        let (lso, open, oldest) =
            (txns.last_stable_offset(self.state.next_offset), txns.open().len(), txns.oldest_started_ms());
        let aborted_changed = std::mem::take(&mut self.aborted_changed);
        self.stable.send_if_modified(|stable| {
            if aborted_changed {
                *stable = txns.stable(self.state.next_offset);
                return true;
            }
            let moved = (stable.offset, stable.open, stable.oldest_open_ms) != (lso, open, oldest);
            (stable.offset, stable.open, stable.oldest_open_ms) = (lso, open, oldest);
            moved
        });
    }

    /// The log the state machine indexes.
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    fn restore(&mut self, meta: &SnapshotMetaOf<PartitionConfig>, data: &Bytes) -> io::Result<()> {
        let (state, _) = transfer::decode(data).map_err(|e| invalid(self.log.dir(), &e))?;
        self.state = PartitionState::decode(&state).map_err(|e| invalid(self.log.dir(), &e))?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        if let Some(lane) = &self.delays {
            lane.publish(&self.state);
        }
        self.aborted_changed = true;
        self.publish();
        Ok(())
    }

    fn apply_one(&mut self, entry: RaftEntry) -> io::Result<Reply> {
        let index = entry.log_id.index;
        self.last_applied = Some(entry.log_id);
        match entry.payload {
            EntryPayload::Blank => Ok(Reply::Done),
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(entry.log_id), m);
                Ok(Reply::Done)
            }
            EntryPayload::Normal(command) => match PartitionCommand::decode(&command) {
                Ok(PartitionCommand::Produce { header, stamp, batch }) => {
                    self.apply_produce(index, &header, &batch, stamp)
                }
                Ok(PartitionCommand::Release { release_ms, built_at, items, header, .. }) => {
                    self.apply_release(index, release_ms, built_at, &items, &header)
                }
                Ok(PartitionCommand::Cancel { seq }) => {
                    self.apply_change(index, |lane, state| lane.cancel(state, index, seq))
                }
                Ok(PartitionCommand::Schedule { name, first_due_ms, cadence, batch }) => {
                    let row = ScheduleRow { next_due_ms: first_due_ms, cadence, batch };
                    self.apply_change(index, |lane, _| lane.schedule(index, &name, row))
                }
                Ok(PartitionCommand::Unschedule { name }) => {
                    self.apply_change(index, |lane, _| lane.unschedule(index, &name))
                }
                Ok(PartitionCommand::Fire { release_ms, built_at, due_ms, name, header, .. }) => {
                    self.apply_fire(index, (release_ms, built_at), due_ms, &name, &header)
                }
                Ok(PartitionCommand::Trim { up_to_index, log_start_offset }) => {
                    Ok(self.apply_trim(index, up_to_index, log_start_offset))
                }
                Err(e) => Ok(Reply::Rejected { code: reject::INVALID_BATCH, message: e.to_string() }),
            },
        }
    }

    fn apply_produce(
        &mut self,
        index: u64,
        h: &sluice_common::record::BatchHeader,
        batch: &Bytes,
        stamp: Option<LeaderStamp>,
    ) -> io::Result<Reply> {
        // Unstamped (a broker's own batch, or one written before stamps): no clock, no cap.
        let mut max_producers = usize::MAX;
        // Plain produce (the brokers' own batches, entries before tag 3) keeps the earlier rule.
        let from_zero = stamp.is_some_and(|s| s.from_zero);
        if let Some(s) = stamp {
            self.state.producers.advance(s.now_ms, s.producer_id_expiration_ms);
            max_producers = s.max_producers as usize;
        }
        if h.control {
            return self.apply_marker(index, h, batch);
        }
        if let Some(refused) = refuse_transactional(h) {
            return Ok(refused);
        }
        let check = if h.producer.is_idempotent() {
            self.state.producers.check_under(&h.producer, h.count, max_producers, from_zero)
        } else {
            Check::Accept
        };
        let code = match check {
            Check::Accept => None,
            Check::Duplicate(w) => return Ok(Reply::Duplicate { base_offset: w.base_offset, count: w.count }),
            Check::Fenced { .. } => Some(reject::PRODUCER_FENCED),
            Check::OutOfOrder { .. } | Check::Older { .. } => Some(reject::OUT_OF_ORDER_SEQUENCE),
            Check::TooManyProducers { .. } => Some(reject::TOO_MANY_PRODUCER_IDS),
            Check::UnknownProducer => Some(reject::UNKNOWN_PRODUCER),
        };
        if let Some(code) = code {
            let message = check.refusal(&h.producer).expect("a refused batch's check says why");
            return Ok(Reply::Rejected { code, message });
        }
        let (pid, epoch) = (h.producer.producer_id, h.producer.epoch);
        let misfit = h.producer.is_idempotent().then(|| self.state.txns.refusal(pid, epoch, h.transactional));
        if let Some(message) = misfit.flatten() {
            return Ok(Reply::Rejected { code: reject::INVALID_TXN_STATE, message });
        }
        if h.delayed {
            return self.apply_delayed(index, h, batch);
        }
        let base_offset = self.state.next_offset;
        if h.count > 0 {
            self.log.index_batch(index, base_offset, h.count, h.max_timestamp_ms)?;
        }
        self.state.next_offset += u64::from(h.count);
        if h.producer.is_idempotent() {
            self.state.producers.record(&h.producer, h.count, base_offset);
        }
        if h.transactional {
            self.state.txns.wrote(pid, epoch, base_offset, self.state.producers.clock_ms());
        }
        Ok(Reply::Appended { base_offset, count: h.count })
    }

    /// A transaction marker from a coordinator: it ends the producer's open transaction here
    /// (and is written at the next offset), or finds none open (and writes nothing); either
    /// way the producer's epoch becomes the marker's, fencing late writes of the transaction.
    fn apply_marker(&mut self, index: u64, h: &sluice_common::record::BatchHeader, batch: &Bytes) -> io::Result<Reply> {
        let commit = match sluice_common::record::marker::parse_marker(batch.clone()) {
            Ok(commit) => commit,
            Err(e) => return Ok(Reply::Rejected { code: reject::INVALID_BATCH, message: e.to_string() }),
        };
        let (pid, epoch) = (h.producer.producer_id, h.producer.epoch);
        let marker_offset = self.state.next_offset;
        match self.state.txns.mark(pid, epoch, commit, marker_offset) {
            MarkerOutcome::Stale { open_epoch } => {
                let message = format!(
                    "marker of producer {pid} at epoch {epoch} is stale: its transaction open here is at epoch {open_epoch}"
                );
                Ok(Reply::Rejected { code: reject::STALE_MARKER, message })
            }
            MarkerOutcome::NothingOpen => {
                self.state.producers.bump(pid, epoch);
                Ok(Reply::Done)
            }
            MarkerOutcome::Closed(_) => {
                self.state.producers.bump(pid, epoch);
                self.aborted_changed |= !commit;
                self.log.index_batch(index, marker_offset, 1, h.max_timestamp_ms)?;
                self.state.next_offset += 1;
                Ok(Reply::Appended { base_offset: marker_offset, count: 1 })
            }
        }
    }
}

/// Refuses a transactional batch that cannot be one: without a producer id, or delayed.
fn refuse_transactional(h: &sluice_common::record::BatchHeader) -> Option<Reply> {
    let why = match (h.transactional, h.producer.is_idempotent(), h.delayed) {
        (false, _, _) | (true, true, false) => return None,
        (true, false, _) => "a transactional batch needs a producer id and epoch (InitTransactions)",
        (true, true, true) => "a delayed message cannot be part of a transaction",
    };
    Some(Reply::Rejected { code: reject::INVALID_BATCH, message: why.to_string() })
}

impl PartitionStateMachine {
    /// A delayed batch the producer check accepted: numbered and stored, given no offset.
    fn apply_delayed(
        &mut self,
        index: u64,
        h: &sluice_common::record::BatchHeader,
        batch: &Bytes,
    ) -> io::Result<Reply> {
        let Some(lane) = self.delays.as_mut() else { return Ok(no_delays()) };
        match lane.accept(&mut self.state, index, h, batch)? {
            Ok(base_seq) => {
                if h.producer.is_idempotent() {
                    self.state.producers.record(&h.producer, h.count, base_seq);
                }
                Ok(Reply::Delayed { base_seq, count: h.count })
            }
            Err(refused) => Ok(refused),
        }
    }

    /// A release proposed by the leader: its batch gets offsets like a produced one, and its
    /// messages leave the delay store.
    fn apply_release(
        &mut self,
        index: u64,
        release_ms: u64,
        built_at: u64,
        items: &[(u64, u64)],
        h: &sluice_common::record::BatchHeader,
    ) -> io::Result<Reply> {
        if self.delays.is_none() {
            return Ok(no_delays());
        }
        if let Some(refused) = DelayLane::refuse_release(release_ms, items, h) {
            return Ok(refused);
        }
        if let Some(stale) = self.stale(built_at) {
            return Ok(stale);
        }
        self.state.last_change_index = index;
        let base_offset = self.state.next_offset;
        if h.count > 0 {
            self.log.index_batch(index, base_offset, h.count, h.max_timestamp_ms)?;
        }
        self.state.next_offset += u64::from(h.count);
        self.state.max_release_ms = self.state.max_release_ms.max(release_ms);
        let lane = self.delays.as_mut().expect("checked above");
        lane.released(index, items)?;
        lane.publish(&self.state);
        Ok(Reply::Appended { base_offset, count: h.count })
    }

    /// A schedule's fire proposed by the leader: its message gets an offset like a release.
    fn apply_fire(
        &mut self,
        index: u64,
        (release_ms, built_at): (u64, u64),
        due_ms: u64,
        name: &str,
        h: &sluice_common::record::BatchHeader,
    ) -> io::Result<Reply> {
        if self.delays.is_none() {
            return Ok(no_delays());
        }
        if let Some(refused) = DelayLane::refuse_release(release_ms, &[(0, due_ms)], h) {
            return Ok(refused);
        }
        if let Some(stale) = self.stale(built_at) {
            return Ok(stale);
        }
        self.state.last_change_index = index;
        let base_offset = self.state.next_offset;
        self.log.index_batch(index, base_offset, h.count, h.max_timestamp_ms)?;
        self.state.next_offset += u64::from(h.count);
        self.state.max_release_ms = self.state.max_release_ms.max(release_ms);
        let lane = self.delays.as_mut().expect("checked above");
        lane.fired(index, name, due_ms, release_ms)?;
        lane.publish(&self.state);
        Ok(Reply::Appended { base_offset, count: h.count })
    }

    /// A cancel or a schedule change: recorded as the partition's last delay change, so that a
    /// release or fire built before it is refused, whatever the store then answers.
    fn apply_change(
        &mut self,
        index: u64,
        change: impl FnOnce(&mut DelayLane, &PartitionState) -> io::Result<Reply>,
    ) -> io::Result<Reply> {
        let Some(lane) = self.delays.as_mut() else { return Ok(no_delays()) };
        self.state.last_change_index = index;
        change(lane, &self.state)
    }

    /// Refuses a release or fire built from the delay store as of entry `built_at` if a later
    /// entry changed what it read. Decided from the state alone, so every replica decides alike.
    fn stale(&self, built_at: u64) -> Option<Reply> {
        let last = self.state.last_change_index;
        (built_at < last).then(|| Reply::Rejected {
            code: reject::STALE_RELEASE,
            message: format!("built from the delay store as of entry {built_at}; entry {last} changed it since"),
        })
    }

    /// The number the next delayed message gets, and the latest release time committed.
    pub fn delay_counters(&self) -> (u64, u64) {
        (self.state.next_delay_seq, self.state.max_release_ms)
    }

    /// Records a trim decided by the leader. The values come from the command, so every replica
    /// records the same; a trim behind an earlier one changes nothing, and one reaching the
    /// trim entry itself (only a faulty leader proposes it) is refused on every replica alike.
    fn apply_trim(&mut self, index: u64, up_to_index: u64, log_start_offset: u64) -> Reply {
        if up_to_index >= index {
            let message = format!("trim up to entry {up_to_index} in entry {index}: only earlier entries may go");
            return Reply::Rejected { code: reject::INVALID_BATCH, message };
        }
        self.state.trimmed_before = self.state.trimmed_before.max(up_to_index + 1);
        // Never past the data: a log start beyond the next offset would hide later messages.
        let start = log_start_offset.min(self.state.next_offset);
        self.state.log_start_offset = self.state.log_start_offset.max(start);
        self.aborted_changed |= self.state.txns.prune(self.state.log_start_offset);
        Reply::Done
    }
}

fn no_delays() -> Reply {
    let message = "this replica keeps no delayed messages".to_string();
    Reply::Rejected { code: reject::DELAYS_UNAVAILABLE, message }
}

fn publish_if_moved<T: PartialEq>(watch: &watch::Sender<T>, value: T) {
    watch.send_if_modified(|current| {
        let moved = *current != value;
        *current = value;
        moved
    });
}

impl RaftStateMachine<PartitionConfig> for PartitionStateMachine {
    type SnapshotData = Bytes;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> io::Result<()>
    where
        S: Stream<Item = io::Result<EntryResponder<PartitionConfig>>> + Unpin + OptionalSend,
    {
        let mut answers = std::mem::take(&mut self.answers);
        let applied = async {
            while let Some((entry, responder)) = entries.try_next().await? {
                // Indexing an entry grows index files: a full disk or too many open files there
                // stop the group like a failed append does, and the replica restarts.
                let reply = self.apply_one(entry).map_err(|e| exhaustion::note(self.exhaustion.as_deref(), e))?;
                if let Some(r) = responder {
                    answers.push((r, reply));
                }
            }
            io::Result::Ok(())
        }
        .await;
        // Also after a failure part-way: what was applied before it is committed all the same.
        self.publish();
        // Only now: a producer told its batch is written must find it in a fetch it sends next,
        // and a fetch serves nothing at or past the published high watermark.
        for (responder, reply) in answers.drain(..) {
            responder.send(reply);
        }
        self.answers = answers;
        applied
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // The state alone: the replica's own delay store holds its rows, and a snapshot sent to
        // another replica gets them from the store then (`transfer::with_rows`).
        SnapshotBuilder {
            log: Arc::clone(&self.log),
            meta: SnapshotMeta { last_log_id: self.last_applied, last_membership: self.membership.clone() },
            data: self.state.encode(),
            delays: self.delays.as_ref().map(|lane| Arc::clone(lane.store())),
            exhaustion: self.exhaustion.clone(),
        }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMetaOf<PartitionConfig>, snapshot: Bytes) -> io::Result<()> {
        // The snapshot first: the log's purge point may then rise to the snapshot's last entry
        // (the back-fill empties the log to it), never above what the state machine covers.
        let noted = |e| exhaustion::note(self.exhaustion.as_deref(), e);
        let (state, rows) = transfer::decode(&snapshot).map_err(|e| invalid(self.log.dir(), &e))?;
        // The store before the snapshot file: a crash between them leaves the store ahead of
        // the stored snapshot, whose entries openraft re-applies without touching the store.
        if let (Some(lane), Some(last)) = (self.delays.as_mut(), meta.last_log_id) {
            lane.install(last.index, &rows.unwrap_or_default()).map_err(noted)?;
            lane.sync().map_err(noted)?;
        }
        // Stored without the rows, which are in the store now.
        let snapshot = state;
        persist_snapshot(&self.log, None, meta, &snapshot).map_err(noted)?;
        adopt_retained(&self.log, meta.last_log_id).map_err(noted)?;
        self.restore(meta, &snapshot)?;
        self.snapshot = Some((meta.clone(), snapshot));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<SnapshotOf<PartitionConfig, Bytes>>> {
        if let Some(stored) = snapshot_file::load(self.log.dir())? {
            self.snapshot = Some(stored);
        }
        Ok(self.snapshot.clone().map(|(meta, snapshot)| Snapshot { meta, snapshot }))
    }
}

/// Builds a snapshot of the state as it was when the builder was made.
pub struct SnapshotBuilder {
    log: Arc<Log>,
    meta: SnapshotMetaOf<PartitionConfig>,
    /// The snapshot data: the partition state.
    data: Bytes,
    delays: Option<Arc<DelayStore>>,
    exhaustion: Option<Arc<Exhaustion>>,
}

impl RaftSnapshotBuilder<PartitionConfig> for SnapshotBuilder {
    type SnapshotData = Bytes;

    async fn build_snapshot(&mut self) -> io::Result<SnapshotOf<PartitionConfig, Bytes>> {
        let data = self.data.clone();
        persist_snapshot(&self.log, self.delays.as_deref(), &self.meta, &data)
            .map_err(|e| exhaustion::note(self.exhaustion.as_deref(), e))?;
        Ok(Snapshot { meta: self.meta.clone(), snapshot: data })
    }
}

/// Writes the snapshot durably, after making the log's indexes durable up to it.
fn persist_snapshot(
    log: &Log,
    delays: Option<&DelayStore>,
    meta: &SnapshotMetaOf<PartitionConfig>,
    data: &Bytes,
) -> io::Result<()> {
    // Under a relaxed flush policy the entries a snapshot covers may not be fsynced yet; a
    // snapshot that survived a crash the log did not would stand ahead of the log.
    log.sync()?;
    log.flush_indexes()?;
    // Likewise the delay store: its mark must never be behind a stored snapshot, since entries
    // up to the snapshot are not applied again (docs/adr/0009-delayed-messages.md).
    if let Some(store) = delays {
        store.sync()?;
    }
    snapshot_file::store(log.dir(), meta, data)
}

/// Moves the retained entries received with the snapshot ending at `last` into the log (see
/// `partition::retained`); discards any staged for another snapshot.
fn adopt_retained(log: &Log, last: Option<LogId>) -> io::Result<()> {
    match last {
        Some(last) => log.adopt_backfill(EntryId::new(last.index, last.leader_id.term)).map(drop)?,
        None => log.discard_backfills()?,
    }
    Ok(())
}

fn invalid(dir: &std::path::Path, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("partition state in {}: {why}", dir.display()))
}

#[cfg(test)]
mod tests {
    use sluice_storage::LogConfig;

    use super::*;
    use openraft::entry::RaftEntry as _;

    use crate::typ::Command;

    #[test]
    fn a_trim_moves_the_log_start_forward_only_and_never_past_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm =
            PartitionStateMachine::open(Arc::new(Log::open(dir.path(), LogConfig::default()).unwrap())).unwrap();
        sm.state.next_offset = 100;
        let starts = sm.log_start();
        assert_eq!(sm.apply_trim(50, 10, 40), Reply::Done);
        sm.publish();
        assert_eq!(*starts.borrow(), LogStart { offset: 40, trimmed_before: 11 });
        assert_eq!(sm.apply_trim(60, 5, 20), Reply::Done, "an older trim is applied as a no-op");
        assert_eq!((sm.state.log_start_offset, sm.state.trimmed_before), (40, 11));
        sm.apply_trim(70, 30, 500);
        assert_eq!((sm.state.log_start_offset, sm.state.trimmed_before), (100, 31), "clamped to the next offset");
        let refused = sm.apply_trim(80, 80, 100);
        assert!(matches!(refused, Reply::Rejected { code: reject::INVALID_BATCH, .. }), "{refused:?}");
        assert_eq!(sm.state.trimmed_before, 31, "a refused trim changes nothing");
    }

    /// Applies `commands` as entries 1, 2, ... of a fresh replica; its replies and final state.
    fn replica(commands: &[Command]) -> (Vec<Reply>, PartitionState) {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(Log::open(dir.path(), LogConfig::default()).unwrap());
        let mut sm = PartitionStateMachine::open(Arc::clone(&log)).unwrap();
        let mut replies = Vec::new();
        for (index, command) in (1u64..).zip(commands) {
            let entry = RaftEntry::new(crate::typ::log_id(1, index), EntryPayload::Normal(command.clone()));
            log.append(&[crate::codec::encode(&entry)]).unwrap();
            replies.push(sm.apply_one(entry).unwrap());
        }
        (replies, sm.state.clone())
    }

    #[test]
    fn stamped_produces_bound_the_producer_table_alike_on_every_replica() {
        use sluice_common::record::{BatchBuilder, ProducerStamp, Record};
        let produce = |producer_id, now_ms| {
            let mut b = BatchBuilder::new(ProducerStamp { producer_id, epoch: 0, base_sequence: 0 }, 64);
            b.push(&Record::new("v", 1));
            let stamp = LeaderStamp { now_ms, producer_id_expiration_ms: 1_000, max_producers: 2, from_zero: true };
            PartitionCommand::produce_at(&b.finish(), &stamp)
        };
        // Producer 3 is refused while 1 and 2 are tracked, and accepted once 1 has been idle for
        // the expiration; the unstamped produce (no cap) of producer 4 is recorded regardless.
        let mut unstamped = BatchBuilder::new(ProducerStamp { producer_id: 4, epoch: 0, base_sequence: 0 }, 64);
        unstamped.push(&Record::new("v", 1));
        let commands = [
            produce(1, 10),
            produce(2, 500),
            produce(3, 900),
            produce(3, 1_010),
            PartitionCommand::produce(&unstamped.finish()),
        ];
        let (replies, state) = replica(&commands);
        assert_eq!(
            replies[..2],
            [Reply::Appended { base_offset: 0, count: 1 }, Reply::Appended { base_offset: 1, count: 1 }]
        );
        let Reply::Rejected { code, message } = &replies[2] else { panic!("{:?}", replies[2]) };
        assert_eq!(*code, reject::TOO_MANY_PRODUCER_IDS);
        assert!(message.contains("max_producers_per_partition") && message.contains("tracks 2"), "{message}");
        assert_eq!(
            replies[3..],
            [Reply::Appended { base_offset: 2, count: 1 }, Reply::Appended { base_offset: 3, count: 1 }]
        );
        let tracked: Vec<i64> = state.producers.producers.keys().copied().collect();
        assert_eq!((tracked, state.producers.clock_ms()), (vec![2, 3, 4], 1_010));

        tracing::info!("--- another replica applying the same entries ends in the same state");
        assert_eq!(replica(&commands), (replies, state));
    }
}

#[cfg(test)]
#[path = "state_machine_delay_tests.rs"]
mod delay_tests;

#[cfg(test)]
#[path = "state_machine_txn_tests.rs"]
mod txn_tests;
