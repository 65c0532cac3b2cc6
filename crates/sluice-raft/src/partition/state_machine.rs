//! The partition state machine: applies committed entries in log order on every replica.
//!
//! - **Offsets at apply (D2).** Each accepted batch gets `next_offset` as its base offset and
//!   advances it by its message count; the batch's entry is recorded in the log's offset and time
//!   indexes. Every replica applies the same entries in the same order, so all agree.
//! - **Deduplication (D6).** Batches from idempotent producers are checked against the producer
//!   table: a retry is acknowledged with its original offset and not written again; an older
//!   epoch is fenced; a sequence gap is refused.
//! - **Snapshots** hold only [`PartitionState`]; they are written to a state file in the log's
//!   directory. Before one is written, the log's indexes are flushed, so the offset index always
//!   reaches at least the snapshot's position.
//! - **High watermark.** After each applied run of entries the state machine publishes its next
//!   offset on a `tokio::sync::watch` ([`PartitionStateMachine::high_watermark`]): everything
//!   below it is applied, hence committed, and may be served; a fetch waiting for new data waits
//!   on the watch instead of polling.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf};
use openraft::{EntryPayload, OptionalSend};
use sluice_storage::Log;
use tokio::sync::watch;

use super::command::PartitionCommand;
use super::producers::Check;
use super::snapshot::PartitionState;
use crate::snapshot_file;
use crate::typ::{LogId, PartitionConfig, RaftEntry, Reply, StoredMembership};

/// Stable codes of [`Reply::Rejected`].
pub mod reject {
    /// The command or its record batch is malformed.
    pub const INVALID_BATCH: u16 = 1;
    /// An idempotent producer's epoch is older than the partition's: a zombie instance.
    pub const PRODUCER_FENCED: u16 = 2;
    /// An idempotent producer skipped sequence numbers: a batch before this one is missing.
    pub const OUT_OF_ORDER_SEQUENCE: u16 = 3;
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
}

impl PartitionStateMachine {
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
        };
        if let Some((meta, data)) = snapshot_file::load(sm.log.dir())? {
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

    /// Publishes `next_offset` to the high watermark watch if it moved.
    fn publish_high_watermark(&self) {
        let next = self.state.next_offset;
        self.high_watermark.send_if_modified(|hw| {
            let moved = *hw != next;
            *hw = next;
            moved
        });
    }

    /// The log the state machine indexes.
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    fn restore(&mut self, meta: &SnapshotMetaOf<PartitionConfig>, data: &Bytes) -> io::Result<()> {
        self.state = PartitionState::decode(data).map_err(|e| invalid(self.log.dir(), &e))?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.publish_high_watermark();
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
                Ok(PartitionCommand::Produce { header, .. }) => self.apply_produce(index, &header),
                Err(e) => Ok(Reply::Rejected { code: reject::INVALID_BATCH, message: e.to_string() }),
            },
        }
    }

    fn apply_produce(&mut self, index: u64, h: &sluice_common::record::BatchHeader) -> io::Result<Reply> {
        let check =
            if h.producer.is_idempotent() { self.state.producers.check(&h.producer, h.count) } else { Check::Accept };
        match check {
            Check::Accept => {}
            Check::Duplicate(w) => return Ok(Reply::Duplicate { base_offset: w.base_offset, count: w.count }),
            Check::Fenced { current } => {
                let message = format!(
                    "producer {} epoch {} is fenced by epoch {current}",
                    h.producer.producer_id, h.producer.epoch
                );
                return Ok(Reply::Rejected { code: reject::PRODUCER_FENCED, message });
            }
            Check::OutOfOrder { expected } => {
                let message = format!(
                    "producer {} sent sequence {} but {expected} was expected",
                    h.producer.producer_id, h.producer.base_sequence
                );
                return Ok(Reply::Rejected { code: reject::OUT_OF_ORDER_SEQUENCE, message });
            }
        }
        let base_offset = self.state.next_offset;
        if h.count > 0 {
            self.log.index_batch(index, base_offset, h.count, h.max_timestamp_ms)?;
        }
        self.state.next_offset += u64::from(h.count);
        if h.producer.is_idempotent() {
            self.state.producers.record(&h.producer, h.count, base_offset);
        }
        Ok(Reply::Appended { base_offset, count: h.count })
    }
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
        let applied = async {
            while let Some((entry, responder)) = entries.try_next().await? {
                let reply = self.apply_one(entry)?;
                if let Some(r) = responder {
                    r.send(reply);
                }
            }
            io::Result::Ok(())
        }
        .await;
        // Also after a failure part-way: what was applied before it is committed all the same.
        self.publish_high_watermark();
        applied
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            log: Arc::clone(&self.log),
            meta: SnapshotMeta { last_log_id: self.last_applied, last_membership: self.membership.clone() },
            data: self.state.encode(),
        }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMetaOf<PartitionConfig>, snapshot: Bytes) -> io::Result<()> {
        persist_snapshot(&self.log, meta, &snapshot)?;
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
    data: Bytes,
}

impl RaftSnapshotBuilder<PartitionConfig> for SnapshotBuilder {
    type SnapshotData = Bytes;

    async fn build_snapshot(&mut self) -> io::Result<SnapshotOf<PartitionConfig, Bytes>> {
        persist_snapshot(&self.log, &self.meta, &self.data)?;
        Ok(Snapshot { meta: self.meta.clone(), snapshot: self.data.clone() })
    }
}

/// Writes the snapshot durably, after making the log's indexes durable up to it.
fn persist_snapshot(log: &Log, meta: &SnapshotMetaOf<PartitionConfig>, data: &Bytes) -> io::Result<()> {
    // Under a relaxed flush policy the entries a snapshot covers may not be fsynced yet; a
    // snapshot that survived a crash the log did not would stand ahead of the log.
    log.sync()?;
    log.flush_indexes()?;
    snapshot_file::store(log.dir(), meta, data)
}

fn invalid(dir: &std::path::Path, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("partition state in {}: {why}", dir.display()))
}
