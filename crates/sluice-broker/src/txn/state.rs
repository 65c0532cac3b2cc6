//! The state of every transactional id of one transaction log partition, as the replay of its
//! records. Pure: no I/O, no clock, no randomness.
//!
//! [`TxnTable::apply_batch`] (record by record, [`TxnTable::apply`]) is the only mutation: the
//! coordinator calls it on load, for every committed record in log order, and after each write
//! it made commits. A record holds the whole [`TxnMeta`] the id has from then on (or its
//! removal), stored as it is, so replay rebuilds exactly what was planned.
//!
//! Requests never change the table: they validate against it and *plan* (in `plan`) the records
//! to write, the answer to give once they are applied, and the commit or abort markers to write
//! to the transaction's partitions after that. A transaction ends in two steps, as in Kafka:
//! the decision (`PREPARE_*`) is written first, then the markers, then the completion
//! ([`TxnTable::complete`]); after a failover the new coordinator finds the decided ones in
//! [`TxnTable::pending_markers`] and finishes them.
//!
//! Whatever reads the clock (timeouts, check-backs, expiry) takes the time as an argument, and
//! its decision is a record, so replay agrees without a clock.

use std::collections::BTreeMap;

use sluice_proto::ErrorCode;
use sluice_proto::internal::txn_record::Change;
use sluice_proto::internal::{TxnEndedBy, TxnMeta, TxnRecord, TxnRemoved, TxnState};

mod plan;

/// The highest epoch handed to a producer: its marker epoch, one more, must fit an i16, and
/// i16::MAX itself stays unused (Kafka keeps it out of reach the same way).
pub(crate) const MAX_EPOCH: i16 = i16::MAX - 2;
/// The longest transactional id, as for topic and group names.
const MAX_ID_BYTES: usize = 249;
/// The most partitions one transaction may write to: every one gets a marker, and the whole
/// list is in every record of the transaction.
pub(crate) const MAX_TXN_PARTITIONS: usize = 10_000;
/// The most consumer groups whose offsets one transaction may commit, for the same reason.
pub(crate) const MAX_TXN_OFFSET_GROUPS: usize = 1_000;

/// The coordinator's policy, from the broker's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TxnLimits {
    /// Open (ongoing or being completed) transactions the table may hold; a new one beyond is
    /// refused with `TOO_MANY_TRANSACTIONS`.
    pub max_open: usize,
    /// The longest transaction timeout a producer may ask for.
    pub max_timeout_ms: u32,
    /// The wait after the first check-back of a half-message transaction; it doubles with
    /// every attempt...
    pub check_initial_ms: u64,
    /// ... up to this.
    pub check_max_ms: u64,
    /// Check-backs sent before a half-message transaction is left undecided (for an operator).
    pub max_check_attempts: u32,
}

/// A refused request: the code to answer with and a message saying what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub(crate) struct TxnError {
    /// The stable error code.
    pub code: ErrorCode,
    /// For a human.
    pub message: String,
}

impl TxnError {
    fn new(code: ErrorCode, message: impl Into<String>) -> TxnError {
        TxnError { code, message: message.into() }
    }
}

impl From<TxnError> for sluice_proto::Error {
    fn from(e: TxnError) -> sluice_proto::Error {
        sluice_proto::Error::new(e.code, e.message)
    }
}

/// A producer's identity in a transaction: its producer id and epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Producer {
    /// The producer id.
    pub producer_id: i64,
    /// The epoch it holds.
    pub epoch: i16,
}

/// The commit or abort markers that end a transaction, to write once its decision is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Markers {
    /// The transaction's producer id.
    pub producer_id: i64,
    /// The marker epoch: the transaction's epoch plus one, which fences its late writes.
    pub epoch: i16,
    /// Commit (or abort).
    pub commit: bool,
    /// Every partition the transaction wrote to, ascending.
    pub partitions: Vec<(String, u32)>,
    /// Every consumer group whose offsets it committed, ascending.
    pub offset_groups: Vec<String>,
}

/// What a request does: the records to write through Raft first, then the answer, then the
/// markers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    /// To write and apply before answering; empty when nothing changes.
    pub records: Vec<TxnRecord>,
    /// The answer, valid once `records` are applied: the producer id and epoch the id then has.
    /// An error here still writes `records` (init fencing an open transaction). With `markers`,
    /// the producer is answered only once they are written and [`TxnTable::complete`] applied,
    /// with what completion answers (its next producer id and epoch).
    pub answer: Result<Producer, TxnError>,
    /// To write to the transaction's partitions and groups once `records` are applied.
    pub markers: Option<Markers>,
}

/// The plan of a request that may need a new producer id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Planned {
    /// The plan.
    Plan(Plan),
    /// A fresh producer id is needed and none was given: allocate one (from the controller) and
    /// plan again with it.
    NeedsProducerId,
}

/// A producer group member's answer to a check-back of a half-message transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckAnswer {
    /// Commit the transaction.
    Commit,
    /// Roll it back.
    Rollback,
    /// Not known yet: ask again at the next check.
    Unknown,
}

/// Every transactional id of one transaction log partition.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct TxnTable {
    txns: BTreeMap<String, TxnMeta>,
    /// How many of `txns` are open, kept by `apply` so the cap costs no scan.
    open: usize,
}

impl TxnTable {
    /// No transactional ids.
    pub fn new() -> TxnTable {
        TxnTable::default()
    }

    /// Applies one committed batch of records, in order.
    pub fn apply_batch(&mut self, records: &[TxnRecord]) {
        records.iter().for_each(|r| self.apply(r));
    }

    /// Applies one committed record. Deterministic; the only way the table changes.
    pub fn apply(&mut self, record: &TxnRecord) {
        let was_open = self.txns.get(&record.transactional_id).is_some_and(is_open);
        let now_open = match &record.change {
            None => return,
            Some(Change::Put(meta)) => {
                self.txns.insert(record.transactional_id.clone(), meta.clone());
                is_open(meta)
            }
            Some(Change::Removed(_)) => {
                self.txns.remove(&record.transactional_id);
                false
            }
        };
        self.open = self.open + usize::from(now_open) - usize::from(was_open);
    }

    /// The state of transactional id `id`.
    pub fn get(&self, id: &str) -> Option<&TxnMeta> {
        self.txns.get(id)
    }

    /// Every transactional id with its state, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &TxnMeta)> {
        self.txns.iter().map(|(id, meta)| (id.as_str(), meta))
    }

    /// Transactions ongoing or being completed.
    #[cfg_attr(not(test), expect(dead_code, reason = "the transaction metrics read it (next step)"))]
    pub fn open_count(&self) -> usize {
        self.open
    }

    /// When the oldest open transaction began (for the metrics); `None` without any.
    #[cfg_attr(not(test), expect(dead_code, reason = "the transaction metrics read it (next step)"))]
    pub fn oldest_open_started_ms(&self) -> Option<u64> {
        self.txns.values().filter(|m| is_open(m)).map(|m| m.started_ms).min()
    }

    /// Ongoing transactions past their timeout at `now_ms`, to abort
    /// ([`TxnTable::abort_timed_out`]); half-message ones are checked back instead.
    #[cfg(test)]
    pub fn timed_out(&self, now_ms: u64) -> Vec<String> {
        self.ids_where(|m| is_timed_out(m, now_ms))
    }

    /// Ongoing transactions that their timeout aborts (half-message ones are checked back), as
    /// `(id, epoch, timeout_ms)`: the coordinator times them with its monotonic clock, from when
    /// it first sees each (a new coordinator gives every one a full timeout), so a wall clock
    /// that jumps ends none early or late.
    pub fn abortable(&self) -> Vec<(String, i32, u32)> {
        self.txns
            .iter()
            .filter(|(_, m)| m.state() == TxnState::Ongoing && m.check_group.is_none())
            .map(|(id, m)| (id.clone(), m.epoch, m.timeout_ms))
            .collect()
    }

    /// Half-message transactions whose next check-back is due at `now_ms`, undecided ones
    /// aside ([`TxnTable::check_sent`] once one is sent).
    pub fn due_checks(&self, now_ms: u64) -> Vec<String> {
        self.ids_where(|m| is_check_due(m, now_ms))
    }

    /// Ids with no open transaction and no change for `expiration_ms` at `now_ms`, to forget
    /// ([`TxnTable::remove`]).
    pub fn expired_ids(&self, now_ms: u64, expiration_ms: u64) -> Vec<String> {
        self.ids_where(|m| is_expired(m, now_ms, expiration_ms))
    }

    /// The markers of every decided transaction not completed yet, by id: a new coordinator
    /// writes them (again) and completes each.
    pub fn pending_markers(&self) -> Vec<(String, Markers)> {
        self.txns.iter().filter_map(|(id, m)| markers_of(m).map(|mk| (id.clone(), mk))).collect()
    }

    fn ids_where(&self, keep: impl Fn(&TxnMeta) -> bool) -> Vec<String> {
        self.txns.iter().filter(|(_, m)| keep(m)).map(|(id, _)| id.clone()).collect()
    }
}

/// Ongoing or being completed.
fn is_open(meta: &TxnMeta) -> bool {
    matches!(meta.state(), TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort)
}

/// Empty or completed: the producer may begin a transaction.
fn is_idle(meta: &TxnMeta) -> bool {
    matches!(meta.state(), TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort)
}

#[cfg(test)]
fn is_timed_out(meta: &TxnMeta, now_ms: u64) -> bool {
    meta.state() == TxnState::Ongoing
        && meta.check_group.is_none()
        && now_ms >= meta.started_ms.saturating_add(u64::from(meta.timeout_ms))
}

fn is_check_due(meta: &TxnMeta, now_ms: u64) -> bool {
    meta.state() == TxnState::Ongoing && meta.check_group.is_some() && !meta.undecided && now_ms >= meta.next_check_ms
}

fn is_expired(meta: &TxnMeta, now_ms: u64, expiration_ms: u64) -> bool {
    is_idle(meta) && meta.updated_ms.saturating_add(expiration_ms) <= now_ms
}

/// The producer's identity in `meta`. Records are checked on decoding (`records`) and planned
/// within range, so the epoch fits.
fn identity(meta: &TxnMeta) -> Producer {
    Producer { producer_id: meta.producer_id, epoch: i16::try_from(meta.epoch).unwrap_or(MAX_EPOCH) }
}

/// The markers a decided (`PREPARE_*`) transaction still has to write.
fn markers_of(meta: &TxnMeta) -> Option<Markers> {
    let commit = match meta.state() {
        TxnState::PrepareCommit => true,
        TxnState::PrepareAbort => false,
        _ => return None,
    };
    Some(Markers {
        producer_id: meta.producer_id,
        epoch: identity(meta).epoch + 1,
        commit,
        partitions: meta.partitions.iter().map(|p| (p.topic.clone(), p.partition)).collect(),
        offset_groups: meta.offset_groups.clone(),
    })
}

fn put(id: &str, meta: TxnMeta) -> TxnRecord {
    TxnRecord { transactional_id: id.to_owned(), change: Some(Change::Put(meta)) }
}

fn removed(id: &str) -> TxnRecord {
    TxnRecord { transactional_id: id.to_owned(), change: Some(Change::Removed(TxnRemoved {})) }
}

/// Who ended a transaction, for messages.
fn ended_by_text(meta: &TxnMeta) -> &'static str {
    match meta.ended_by() {
        TxnEndedBy::Client => "its producer",
        TxnEndedBy::Timeout => "the coordinator at its timeout",
        TxnEndedBy::Fenced => "a new InitTransactions of its transactional id",
        TxnEndedBy::Operator => "an operator",
        TxnEndedBy::CheckBack => "a check-back answer",
    }
}

/// Transactional ids follow the topic name rules: 1 to 249 characters from `[A-Za-z0-9._-]`.
fn validate_id(id: &str) -> Result<(), TxnError> {
    if !is_name(id) {
        return Err(TxnError::new(
            ErrorCode::InvalidRequest,
            format!("transactional id {id:?} is invalid: use 1 to {MAX_ID_BYTES} characters from [A-Za-z0-9._-]"),
        ));
    }
    Ok(())
}

/// Group ids (consumer groups of committed offsets, the producer group of check-backs) follow
/// the same rules.
fn validate_group(what: &str, group: &str) -> Result<(), TxnError> {
    if !is_name(group) {
        return Err(TxnError::new(
            ErrorCode::InvalidGroupId,
            format!("{what} {group:?} is invalid: use 1 to {MAX_ID_BYTES} characters from [A-Za-z0-9._-]"),
        ));
    }
    Ok(())
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_BYTES
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "state_timer_tests.rs"]
mod timer_tests;
