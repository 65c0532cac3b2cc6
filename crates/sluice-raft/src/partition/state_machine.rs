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

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use openraft::entry::RaftEntry as _;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf};
use openraft::{EntryPayload, OptionalSend};
use sluice_storage::{Log, read_state_file, write_state_file};

use super::command::PartitionCommand;
use super::producers::Check;
use super::snapshot::PartitionState;
use crate::codec;
use crate::typ::{LogId, PartitionConfig, RaftEntry, Reply, StoredMembership, log_id};

/// Name of the state file holding the latest snapshot.
const SNAPSHOT_FILE: &str = "snapshot";

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
        };
        if let Some(raw) = read_state_file(sm.log.dir(), SNAPSHOT_FILE)? {
            let (meta, data) = decode_stored_snapshot(&raw).map_err(|e| invalid(sm.log.dir(), &e))?;
            sm.restore(&meta, &data)?;
            sm.snapshot = Some((meta, data));
        }
        Ok(sm)
    }

    /// The offset the next appended message will get.
    pub fn next_offset(&self) -> u64 {
        self.state.next_offset
    }

    /// The log the state machine indexes.
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    fn restore(&mut self, meta: &SnapshotMetaOf<PartitionConfig>, data: &Bytes) -> io::Result<()> {
        self.state = PartitionState::decode(data).map_err(|e| invalid(self.log.dir(), &e))?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
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
        while let Some((entry, responder)) = entries.try_next().await? {
            let reply = self.apply_one(entry)?;
            if let Some(r) = responder {
                r.send(reply);
            }
        }
        Ok(())
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
        if let Some(raw) = read_state_file(self.log.dir(), SNAPSHOT_FILE)? {
            self.snapshot = Some(decode_stored_snapshot(&raw).map_err(|e| invalid(self.log.dir(), &e))?);
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
    log.flush_indexes()?;
    write_state_file(log.dir(), SNAPSHOT_FILE, &encode_stored_snapshot(meta, data))?;
    Ok(())
}

/// `| last_log term u64 | last_log index u64 | has_last u8 | membership_len u32 | membership
/// entry payload | data |`; the membership is stored as `codec` stores a membership entry.
fn encode_stored_snapshot(meta: &SnapshotMetaOf<PartitionConfig>, data: &Bytes) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + data.len());
    let last = meta.last_log_id;
    out.extend_from_slice(&last.map_or(0, |l| l.leader_id.term).to_le_bytes());
    out.extend_from_slice(&last.map_or(0, |l| l.index).to_le_bytes());
    out.push(u8::from(last.is_some()));
    let m_log = meta.last_membership.log_id().unwrap_or_else(|| log_id(0, 0));
    let membership =
        codec::encode(&RaftEntry::new(m_log, EntryPayload::Membership(meta.last_membership.membership().clone())));
    out.extend_from_slice(&m_log.leader_id.term.to_le_bytes());
    out.extend_from_slice(&m_log.index.to_le_bytes());
    out.push(u8::from(meta.last_membership.log_id().is_some()));
    out.extend_from_slice(&(membership.payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&membership.payload);
    out.extend_from_slice(data);
    out
}

fn decode_stored_snapshot(raw: &[u8]) -> Result<(SnapshotMetaOf<PartitionConfig>, Bytes), String> {
    let cut = || "snapshot file cut short".to_string();
    let u64_at = |at: usize| raw.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let last = (raw.get(16) == Some(&1)).then(|| Some(log_id(u64_at(0)?, u64_at(8)?))).flatten();
    let m_log = log_id(u64_at(17).ok_or_else(cut)?, u64_at(25).ok_or_else(cut)?);
    let has_m = raw.get(33).ok_or_else(cut)? == &1;
    let len = raw.get(34..38).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize).ok_or_else(cut)?;
    let payload = raw.get(38..38 + len).ok_or_else(cut)?;
    let entry =
        codec::decode(sluice_storage::Entry::new(m_log.index, m_log.leader_id.term, Bytes::copy_from_slice(payload)))
            .map_err(|e| e.to_string())?;
    let EntryPayload::Membership(m) = entry.payload else {
        return Err("snapshot membership is not a membership".into());
    };
    let membership = StoredMembership::new(has_m.then_some(m_log), m);
    let data = Bytes::copy_from_slice(&raw[38 + len..]);
    Ok((SnapshotMeta { last_log_id: last, last_membership: membership }, data))
}

fn invalid(dir: &std::path::Path, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("partition state in {}: {why}", dir.display()))
}
