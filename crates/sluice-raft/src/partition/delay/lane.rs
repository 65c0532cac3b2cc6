//! Applying delay commands to a replica's state and its [`DelayStore`].
//!
//! Decisions that change the replicated [`PartitionState`] (accepting a delayed batch, giving a
//! release its offsets) depend only on the entry and that state, never on the store: after a
//! crash openraft re-applies entries the store already holds (up to its mark), and those
//! entries must decide exactly as before. Store writes are skipped for them.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sluice_common::delay::deliver_at_of;
use sluice_common::record::{BatchBuilder, BatchHeader, ProducerStamp, RecordBatch};

use sluice_common::schedule::{Cadence, next_fire};

use super::schedules::ScheduleRow;
use super::store::DelayStore;
use crate::partition::snapshot::PartitionState;
use crate::partition::state_machine::reject;
use crate::typ::Reply;

/// Told the earliest due time of each delayed batch a replica stores: `(group, due_ms)`.
pub type DueHook = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// What the broker reads of a lane while openraft owns the state machine.
#[derive(Debug, Default)]
pub struct LaneShared {
    /// The latest `release_ms` applied (`PartitionState::max_release_ms`).
    pub max_release_ms: AtomicU64,
}

/// A replica's handle on its group's part of the broker's delay store.
pub struct DelayLane {
    store: Arc<DelayStore>,
    group: u64,
    /// The last entry whose store writes are made (the store's mark for the group).
    mark: u64,
    shared: Arc<LaneShared>,
    on_due: Option<DueHook>,
}

impl DelayLane {
    /// The lane of `group` in `store`.
    pub fn open(store: Arc<DelayStore>, group: u64) -> io::Result<DelayLane> {
        let mark = store.mark(group)?;
        Ok(DelayLane { store, group, mark, shared: Arc::default(), on_due: None })
    }

    /// The same lane, telling `hook` when messages it stores are due.
    pub fn on_due(mut self, hook: DueHook) -> DelayLane {
        self.on_due = Some(hook);
        self
    }

    /// What the broker reads of the lane.
    pub fn shared(&self) -> Arc<LaneShared> {
        Arc::clone(&self.shared)
    }

    /// Publishes the state's latest release time (after a restore or a release).
    pub fn publish(&self, state: &PartitionState) {
        self.shared.max_release_ms.store(state.max_release_ms, Ordering::Release);
    }

    /// The store.
    pub fn store(&self) -> &Arc<DelayStore> {
        &self.store
    }

    /// The group.
    pub fn group(&self) -> u64 {
        self.group
    }

    /// Whether entry `index`'s store writes are still to be made.
    fn fresh(&self, index: u64) -> bool {
        index > self.mark
    }

    /// Numbers an accepted delayed batch's messages and stores them; the reply names the first
    /// number. `batch` was checked by the caller's producer check; its records are decoded
    /// here, and a batch whose records or delivery times are malformed is refused whole.
    pub fn accept(
        &mut self,
        state: &mut PartitionState,
        index: u64,
        header: &BatchHeader,
        batch: &bytes::Bytes,
    ) -> io::Result<Result<u64, Reply>> {
        let parsed = RecordBatch::parse(batch.clone()).map_err(|e| e.to_string());
        let mut messages = Vec::with_capacity(header.count as usize);
        let decoded = parsed.and_then(|b| {
            for record in b.records() {
                let view = record.map_err(|e| e.to_string())?;
                messages.push((deliver_at_of(&view)?, view));
            }
            Ok(())
        });
        if let Err(message) = decoded {
            return Ok(Err(Reply::Rejected { code: reject::INVALID_BATCH, message }));
        }
        let base_seq = state.next_delay_seq;
        state.next_delay_seq += u64::from(header.count);
        if self.fresh(index) {
            let mut writes = self.store.batch(self.group, index)?;
            for (seq, (due_ms, view)) in (base_seq..).zip(&messages) {
                let mut one = BatchBuilder::new(ProducerStamp::NONE, view.value.len() + 128);
                one.push_view(view);
                writes.add(seq, *due_ms, &one.finish());
            }
            writes.commit()?;
            self.mark = index;
        }
        if let (Some(hook), Some(first)) = (&self.on_due, messages.iter().map(|(due, _)| *due).min()) {
            hook(self.group, first);
        }
        Ok(Ok(base_seq))
    }

    /// Checks a release before it is given offsets: every message due by its `release_ms`,
    /// one list item per message. `None` if it may be applied.
    pub fn refuse_release(release_ms: u64, items: &[(u64, u64)], header: &BatchHeader) -> Option<Reply> {
        let message = if items.len() != header.count as usize {
            format!("a release lists {} messages but its batch holds {}", items.len(), header.count)
        } else if let Some((seq, due)) = items.iter().find(|(_, due)| *due > release_ms) {
            format!("a release at {release_ms} holds message {seq}, due only at {due}")
        } else if header.delayed || header.transactional || header.control || header.producer.is_idempotent() {
            "a release batch must be a plain batch".to_string()
        } else {
            return None;
        };
        Some(Reply::Rejected { code: reject::INVALID_BATCH, message })
    }

    /// Removes released messages from the store. One not pending would be released twice or
    /// after its cancel: the leader never proposes that, so it is reported, not decided on.
    pub fn released(&mut self, index: u64, items: &[(u64, u64)]) -> io::Result<()> {
        if !self.fresh(index) {
            return Ok(());
        }
        let mut writes = self.store.batch(self.group, index)?;
        for seq in writes.release_all(items)? {
            tracing::error!(group = self.group, seq, "released a delayed message that was not pending");
        }
        writes.commit()?;
        self.mark = index;
        Ok(())
    }

    /// Cancels pending message `seq`. Re-applied (already in the store), it answers nothing.
    pub fn cancel(&mut self, state: &PartitionState, index: u64, seq: u64) -> io::Result<Reply> {
        if !self.fresh(index) {
            return Ok(Reply::Done);
        }
        let mut writes = self.store.batch(self.group, index)?;
        let outcome = writes.cancel(seq, state.next_delay_seq)?;
        writes.commit()?;
        self.mark = index;
        Ok(Reply::Cancel(outcome))
    }

    /// Installs a snapshot of entry `index`: the group's store becomes `carried`, which holds
    /// the effects of the entries up to `carried.mark` (at or past `index`: the sender's store
    /// as it was when it sent). Entries up to there, applied after the snapshot, store nothing.
    pub fn install(&mut self, index: u64, carried: &super::transfer::Carried) -> io::Result<()> {
        let mark = index.max(carried.mark);
        self.store.replace_group(self.group, mark, carried)?;
        self.mark = mark;
        Ok(())
    }

    /// Adds schedule `name` (refused if the partition has one by that name).
    pub fn schedule(&mut self, index: u64, name: &str, row: ScheduleRow) -> io::Result<Reply> {
        if !self.fresh(index) {
            return Ok(Reply::Done);
        }
        if self.store.schedule(self.group, name)?.is_some() {
            self.mark_only(index)?;
            let message = format!("a schedule named {name:?} exists; delete it first or choose another name");
            return Ok(Reply::Rejected { code: reject::SCHEDULE_EXISTS, message });
        }
        let first = row.next_due_ms;
        let mut writes = self.store.batch(self.group, index)?;
        writes.put_schedule(name, &row);
        writes.commit()?;
        self.mark = index;
        if let Some(hook) = &self.on_due {
            hook(self.group, first);
        }
        Ok(Reply::Done)
    }

    /// Removes schedule `name`.
    pub fn unschedule(&mut self, index: u64, name: &str) -> io::Result<Reply> {
        if !self.fresh(index) {
            return Ok(Reply::Done);
        }
        let Some(row) = self.store.schedule(self.group, name)? else {
            self.mark_only(index)?;
            let message = format!("no schedule named {name:?}");
            return Ok(Reply::Rejected { code: reject::UNKNOWN_SCHEDULE, message });
        };
        let mut writes = self.store.batch(self.group, index)?;
        writes.remove_schedule(name, row.next_due_ms);
        writes.commit()?;
        self.mark = index;
        Ok(Reply::Done)
    }

    /// Moves schedule `name` past the fire due at `due_ms`, applied at `release_ms`: to its
    /// next fire, or gone if its cadence has none. A fire the leader built from a stale view
    /// (the schedule changed since) is reported, not decided on, as for releases.
    pub fn fired(&mut self, index: u64, name: &str, due_ms: u64, release_ms: u64) -> io::Result<()> {
        if !self.fresh(index) {
            return Ok(());
        }
        let mut writes = self.store.batch(self.group, index)?;
        match self.store.schedule(self.group, name)? {
            Some(row) if row.next_due_ms == due_ms => {
                writes.remove_schedule(name, due_ms);
                let next = Cadence::decode_stored(&row.cadence).ok().and_then(|c| next_fire(&c, due_ms, release_ms));
                if let Some(next_due_ms) = next {
                    writes.put_schedule(name, &ScheduleRow { next_due_ms, ..row });
                }
            }
            _ => tracing::error!(group = self.group, name, due_ms, "fired a schedule that was not due then"),
        }
        writes.commit()?;
        self.mark = index;
        Ok(())
    }

    /// Records entry `index` as stored though it changed nothing: the state counts it as a
    /// delay change (`last_change_index`), and the leader builds releases from the store as of
    /// its mark, which must not be behind that.
    fn mark_only(&mut self, index: u64) -> io::Result<()> {
        self.store.batch(self.group, index)?.commit()?;
        self.mark = index;
        Ok(())
    }

    /// Makes the store's writes durable, before a snapshot that covers them is stored.
    pub fn sync(&self) -> io::Result<()> {
        self.store.sync()
    }
}
