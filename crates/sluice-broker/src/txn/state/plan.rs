//! Planning requests: the records, answer and markers each request implies, computed against
//! the table without changing it.
//!
//! Identity checks follow Kafka: a producer names its transactional id, producer id and epoch;
//! another producer id or an older epoch was fenced (`PRODUCER_FENCED`), a newer epoch was never
//! handed out (`INVALID_REQUEST`). One older epoch is special: once a transaction completes, the
//! id holds the producer's *next* epoch, so a request carrying the epoch just before it is the
//! producer's retry about the transaction that completed (a lost answer), see `is_previous`.

use std::collections::BTreeSet;

use sluice_common::TopicName;
use sluice_proto::ErrorCode;
use sluice_proto::internal::{TxnEndedBy, TxnMeta, TxnPartition, TxnRecord, TxnState};

#[cfg(test)]
use super::is_timed_out;
use super::{
    CheckAnswer, MAX_EPOCH, MAX_TXN_OFFSET_GROUPS, MAX_TXN_PARTITIONS, Plan, Planned, Producer, TxnError, TxnLimits,
    TxnTable, ended_by_text, identity, is_check_due, is_expired, is_idle, markers_of, put, removed, validate_group,
    validate_id,
};

impl TxnTable {
    /// InitTransactions: the producer id and epoch for a producer of `id`, fencing any earlier
    /// one. A known idle id gets the next epoch (a fresh producer id when the epochs run out); a
    /// new id needs a fresh producer id (`fresh_pid`, ignored when not needed). An ongoing
    /// transaction is aborted (its producer is fenced) and the answer is
    /// `CONCURRENT_TRANSACTIONS`: the producer retries once the abort completes.
    pub fn init(
        &self,
        id: &str,
        timeout_ms: u32,
        check_group: Option<String>,
        now_ms: u64,
        fresh_pid: Option<i64>,
        limits: &TxnLimits,
    ) -> Result<Planned, TxnError> {
        validate_id(id)?;
        validate_timeout(timeout_ms, limits)?;
        if let Some(group) = &check_group {
            validate_group("check group", group)?;
        }
        let current = self.txns.get(id);
        match current {
            Some(meta) if meta.state() == TxnState::Ongoing => {
                let mut plan = prepare(id, meta, false, TxnEndedBy::Fenced, now_ms);
                plan.answer = Err(concurrent(id, "its open transaction is being aborted"));
                Ok(Planned::Plan(plan))
            }
            Some(meta) if !is_idle(meta) => Err(concurrent(id, "its last transaction is being completed")),
            _ => {
                let Some((producer_id, epoch)) = next_identity(current, fresh_pid) else {
                    return Ok(Planned::NeedsProducerId);
                };
                let meta =
                    TxnMeta { producer_id, epoch, timeout_ms, check_group, updated_ms: now_ms, ..TxnMeta::default() };
                Ok(Planned::Plan(write(id, meta)))
            }
        }
    }

    /// AddPartitionsToTxn and AddOffsetsToTxn: begins a transaction (an idle id) or widens the
    /// ongoing one with `partitions` and the consumer groups `offset_groups`.
    pub fn add_partitions(
        &self,
        id: &str,
        producer: Producer,
        partitions: &[(String, u32)],
        offset_groups: &[String],
        now_ms: u64,
        limits: &TxnLimits,
    ) -> Result<Plan, TxnError> {
        validate_additions(partitions, offset_groups)?;
        let meta = self.known(id)?;
        if is_previous(meta, producer) && meta.ended_by() == TxnEndedBy::Timeout {
            return Err(timed_out(id));
        }
        check_current(id, meta, producer)?;
        match meta.state() {
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                self.begin(id, meta, partitions, offset_groups, now_ms, limits)
            }
            TxnState::Ongoing if meta.undecided => Err(TxnError::new(
                ErrorCode::InvalidTxnState,
                format!(
                    "the transaction of {id} ran out of check-backs and awaits a decision: end it (commit or \
                     abort) before writing more"
                ),
            )),
            TxnState::Ongoing => widen(id, meta, partitions, offset_groups, now_ms),
            TxnState::PrepareCommit | TxnState::PrepareAbort => Err(refuse_decided(id, meta, None)),
        }
    }

    /// EndTxn: commits (or aborts) the producer's ongoing transaction. Retrying the end of the
    /// transaction that completed is answered again; ending when none was begun is a no-op.
    pub fn end(&self, id: &str, producer: Producer, commit: bool, now_ms: u64) -> Result<Plan, TxnError> {
        let meta = self.known(id)?;
        if is_previous(meta, producer) {
            return retry_end(id, meta, commit);
        }
        check_current(id, meta, producer)?;
        match meta.state() {
            TxnState::Ongoing => Ok(prepare(id, meta, commit, TxnEndedBy::Client, now_ms)),
            TxnState::PrepareCommit | TxnState::PrepareAbort => Err(refuse_decided(id, meta, Some(commit))),
            // The producer holds this epoch and has not begun a transaction with it.
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => Ok(unchanged(meta)),
        }
    }

    /// Completes a decided transaction once its markers are written: the producer's next epoch
    /// (a fresh producer id, from `fresh_pid`, when the epochs run out). The partitions stay, for
    /// describing it.
    pub fn complete(&self, id: &str, now_ms: u64, fresh_pid: Option<i64>) -> Result<Planned, TxnError> {
        let meta = self.known(id)?;
        let state = match meta.state() {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            other => {
                return Err(TxnError::new(
                    ErrorCode::InvalidTxnState,
                    format!(
                        "transactional id {id} is {}: it has no decided transaction to complete",
                        other.as_str_name()
                    ),
                ));
            }
        };
        let Some((producer_id, epoch)) = next_identity(Some(meta), fresh_pid) else {
            return Ok(Planned::NeedsProducerId);
        };
        let mut next = TxnMeta { producer_id, epoch, updated_ms: now_ms, ..meta.clone() };
        next.set_state(state);
        Ok(Planned::Plan(write(id, next)))
    }

    /// An operator ends an ongoing transaction (undecided or not).
    pub fn force_end(&self, id: &str, commit: bool, now_ms: u64) -> Result<Plan, TxnError> {
        let meta = self.known(id)?;
        match meta.state() {
            TxnState::Ongoing => Ok(prepare(id, meta, commit, TxnEndedBy::Operator, now_ms)),
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(concurrent(id, &format!("its transaction is already being ended by {}", ended_by_text(meta))))
            }
            other => Err(TxnError::new(
                ErrorCode::InvalidTxnState,
                format!("transactional id {id} is {}: it has no open transaction to end", other.as_str_name()),
            )),
        }
    }

    /// The abort of `id`'s transaction past its timeout by the wall clock `now_ms`; `None` if it
    /// is no longer open past it (the unit tests' model of [`TxnTable::abort_expired`]).
    #[cfg(test)]
    pub fn abort_timed_out(&self, id: &str, now_ms: u64) -> Option<Plan> {
        let meta = self.txns.get(id).filter(|m| is_timed_out(m, now_ms))?;
        Some(prepare(id, meta, false, TxnEndedBy::Timeout, now_ms))
    }

    /// The abort of `id`'s transaction of `epoch`, which the coordinator's own clock found past
    /// its timeout; `None` if that transaction is no longer ongoing (it ended, or another began).
    /// Half-message transactions are checked back instead, never aborted here.
    pub fn abort_expired(&self, id: &str, epoch: i32, now_ms: u64) -> Option<Plan> {
        let meta = self
            .txns
            .get(id)
            .filter(|m| m.epoch == epoch && m.state() == TxnState::Ongoing && m.check_group.is_none())?;
        Some(prepare(id, meta, false, TxnEndedBy::Timeout, now_ms))
    }

    /// Counts a check-back just sent for `id` (to a connected member of its check group: an
    /// attempt with nobody to ask does not count) and schedules the next, each wait twice the
    /// last up to `check_max_ms`. When the attempts reach `max_check_attempts` the transaction
    /// is left undecided: never aborted or dropped by the coordinator, an operator decides.
    /// `None` if no check was due at `now_ms` (answered, ended, or counted already).
    pub fn check_sent(&self, id: &str, now_ms: u64, limits: &TxnLimits) -> Option<Plan> {
        let meta = self.txns.get(id).filter(|m| is_check_due(m, now_ms))?;
        let attempts = meta.check_attempts.saturating_add(1);
        let next = TxnMeta {
            check_attempts: attempts,
            next_check_ms: now_ms.saturating_add(check_backoff_ms(meta.check_attempts, limits)),
            undecided: attempts >= limits.max_check_attempts,
            updated_ms: now_ms,
            ..meta.clone()
        };
        Some(write(id, next))
    }

    /// A check-back answer about `producer`'s transaction: commit or roll back as its producer
    /// would; unknown changes nothing (the next check is scheduled already). An answer about a
    /// transaction that is no longer open (ended, being ended, replaced) is stale and a no-op.
    pub fn check_answer(
        &self,
        id: &str,
        producer: Producer,
        answer: CheckAnswer,
        now_ms: u64,
    ) -> Result<Plan, TxnError> {
        let meta = self.known(id)?;
        if producer.producer_id == meta.producer_id && i32::from(producer.epoch) > meta.epoch {
            return Err(newer_epoch(id, producer, meta));
        }
        if identity(meta) != producer || meta.state() != TxnState::Ongoing {
            return Ok(unchanged(meta));
        }
        if meta.check_group.is_none() {
            return Err(TxnError::new(
                ErrorCode::InvalidTxnState,
                format!("the transaction of {id} has no check group: only its producer ends it"),
            ));
        }
        match answer {
            CheckAnswer::Commit => Ok(prepare(id, meta, true, TxnEndedBy::CheckBack, now_ms)),
            CheckAnswer::Rollback => Ok(prepare(id, meta, false, TxnEndedBy::CheckBack, now_ms)),
            CheckAnswer::Unknown => Ok(unchanged(meta)),
        }
    }

    /// The record that forgets `id` if it is expired at `now_ms` (see
    /// [`TxnTable::expired_ids`]); `None` otherwise, as when a producer used it since it was
    /// found expired.
    pub fn remove(&self, id: &str, now_ms: u64, expiration_ms: u64) -> Option<TxnRecord> {
        self.txns.get(id).filter(|m| is_expired(m, now_ms, expiration_ms)).map(|_| removed(id))
    }

    fn known(&self, id: &str) -> Result<&TxnMeta, TxnError> {
        self.txns.get(id).ok_or_else(|| {
            TxnError::new(
                ErrorCode::UnknownTransactionalId,
                format!(
                    "transactional id {id} is unknown to its coordinator (never initialized, or expired): call \
                     InitTransactions"
                ),
            )
        })
    }

    /// An idle id begins a transaction, if the table has room for one more open.
    fn begin(
        &self,
        id: &str,
        meta: &TxnMeta,
        partitions: &[(String, u32)],
        offset_groups: &[String],
        now_ms: u64,
        limits: &TxnLimits,
    ) -> Result<Plan, TxnError> {
        if self.open >= limits.max_open {
            return Err(TxnError::new(
                ErrorCode::TooManyTransactions,
                format!(
                    "the coordinator of {id} already holds {} open transactions, its limit (max_open_transactions); \
                     retry once some end",
                    limits.max_open
                ),
            ));
        }
        let mut next = TxnMeta {
            partitions: Vec::new(),
            offset_groups: Vec::new(),
            started_ms: now_ms,
            updated_ms: now_ms,
            check_attempts: 0,
            next_check_ms: now_ms.saturating_add(u64::from(meta.timeout_ms)),
            undecided: false,
            ..meta.clone()
        };
        next.set_state(TxnState::Ongoing);
        next.set_ended_by(TxnEndedBy::Client);
        merge(id, &mut next, partitions, offset_groups)?;
        Ok(write(id, next))
    }
}

/// An ongoing transaction takes more partitions and groups; nothing to write if none is new.
fn widen(
    id: &str,
    meta: &TxnMeta,
    partitions: &[(String, u32)],
    offset_groups: &[String],
    now_ms: u64,
) -> Result<Plan, TxnError> {
    let mut next = TxnMeta { updated_ms: now_ms, ..meta.clone() };
    merge(id, &mut next, partitions, offset_groups)?;
    if next.partitions == meta.partitions && next.offset_groups == meta.offset_groups {
        return Ok(unchanged(meta));
    }
    Ok(write(id, next))
}

/// Adds `partitions` and `offset_groups` to `meta`'s, kept ascending without duplicates.
fn merge(id: &str, meta: &mut TxnMeta, partitions: &[(String, u32)], offset_groups: &[String]) -> Result<(), TxnError> {
    let mut all: BTreeSet<(String, u32)> = meta.partitions.iter().map(|p| (p.topic.clone(), p.partition)).collect();
    all.extend(partitions.iter().cloned());
    let mut groups: BTreeSet<String> = meta.offset_groups.iter().cloned().collect();
    groups.extend(offset_groups.iter().cloned());
    if all.len() > MAX_TXN_PARTITIONS || groups.len() > MAX_TXN_OFFSET_GROUPS {
        return Err(TxnError::new(
            ErrorCode::InvalidRequest,
            format!(
                "the transaction of {id} would write to {} partitions and commit offsets of {} groups; the limits \
                 are {MAX_TXN_PARTITIONS} and {MAX_TXN_OFFSET_GROUPS}: commit more often",
                all.len(),
                groups.len()
            ),
        ));
    }
    meta.partitions = all.into_iter().map(|(topic, partition)| TxnPartition { topic, partition }).collect();
    meta.offset_groups = groups.into_iter().collect();
    Ok(())
}

/// The decision to end `meta`'s ongoing transaction, with the markers to write after it.
fn prepare(id: &str, meta: &TxnMeta, commit: bool, by: TxnEndedBy, now_ms: u64) -> Plan {
    let mut next = TxnMeta { undecided: false, updated_ms: now_ms, ..meta.clone() };
    next.set_state(if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort });
    next.set_ended_by(by);
    let markers = markers_of(&next);
    Plan { records: vec![put(id, next)], answer: Ok(identity(meta)), markers }
}

/// Writes `meta` and answers with its identity.
fn write(id: &str, meta: TxnMeta) -> Plan {
    let answer = Ok(identity(&meta));
    Plan { records: vec![put(id, meta)], answer, markers: None }
}

/// Nothing to write; answers with the current identity.
fn unchanged(meta: &TxnMeta) -> Plan {
    Plan { records: Vec::new(), answer: Ok(identity(meta)), markers: None }
}

/// The producer id and epoch after `meta` (epoch 0 of a fresh producer id for a new id, or when
/// the next epoch would pass [`MAX_EPOCH`]); `None` if that needs a fresh id and none is given.
fn next_identity(meta: Option<&TxnMeta>, fresh_pid: Option<i64>) -> Option<(i64, i32)> {
    match meta {
        Some(m) if m.epoch < i32::from(MAX_EPOCH) => Some((m.producer_id, m.epoch + 1)),
        _ => fresh_pid.map(|pid| (pid, 0)),
    }
}

/// Whether `producer` is the one whose transaction `meta` completed, retrying about it: same
/// producer id and the epoch just before the id's. When the completion gave a fresh producer id
/// (epoch 0), the id it replaced is not kept: any producer id with [`MAX_EPOCH`] (the only epoch
/// whose completion needs a fresh id) is taken for it. Only a producer fenced more than 32,000
/// transactions ago could be mistaken for it.
fn is_previous(meta: &TxnMeta, producer: Producer) -> bool {
    let completed = matches!(meta.state(), TxnState::CompleteCommit | TxnState::CompleteAbort);
    let same = producer.producer_id == meta.producer_id && i32::from(producer.epoch) + 1 == meta.epoch;
    completed && (same || (meta.epoch == 0 && producer.epoch == MAX_EPOCH))
}

/// The producer is the current one: same producer id and epoch.
fn check_current(id: &str, meta: &TxnMeta, producer: Producer) -> Result<(), TxnError> {
    if producer.producer_id != meta.producer_id || i32::from(producer.epoch) < meta.epoch {
        return Err(TxnError::new(
            ErrorCode::ProducerFenced,
            format!(
                "producer {} epoch {} of {id} was fenced: the id now has producer {} epoch {} (another producer \
                 initialized it); close this producer",
                producer.producer_id, producer.epoch, meta.producer_id, meta.epoch
            ),
        ));
    }
    if i32::from(producer.epoch) > meta.epoch {
        return Err(newer_epoch(id, producer, meta));
    }
    Ok(())
}

/// The answer to a retried end of the transaction that completed.
fn retry_end(id: &str, meta: &TxnMeta, commit: bool) -> Result<Plan, TxnError> {
    let committed = meta.state() == TxnState::CompleteCommit;
    match meta.ended_by() {
        TxnEndedBy::Fenced => Err(fenced_by_init(id)),
        _ if committed == commit => Ok(unchanged(meta)),
        TxnEndedBy::Timeout if commit => Err(timed_out(id)),
        _ => Err(other_decision(id, meta, commit)),
    }
}

/// Refuses a request of the current producer about its decided transaction: `commit` is the
/// decision an end asks for (`None` for any other request).
fn refuse_decided(id: &str, meta: &TxnMeta, commit: Option<bool>) -> TxnError {
    let committing = meta.state() == TxnState::PrepareCommit;
    match (meta.ended_by(), commit) {
        (TxnEndedBy::Fenced, _) => fenced_by_init(id),
        (_, None) => concurrent(id, "its transaction is being completed"),
        (_, Some(c)) if c == committing => concurrent(id, "its transaction is being completed as asked"),
        (TxnEndedBy::Timeout, Some(true)) => timed_out(id),
        (_, Some(c)) => other_decision(id, meta, c),
    }
}

/// The time the next check-back waits after `attempts` earlier ones:
/// `check_initial_ms * 2^attempts`, at most `check_max_ms`.
pub(super) fn check_backoff_ms(attempts: u32, limits: &TxnLimits) -> u64 {
    let factor = 1u64.checked_shl(attempts).unwrap_or(u64::MAX);
    limits.check_initial_ms.saturating_mul(factor).min(limits.check_max_ms)
}

fn validate_timeout(timeout_ms: u32, limits: &TxnLimits) -> Result<(), TxnError> {
    if timeout_ms == 0 || timeout_ms > limits.max_timeout_ms {
        return Err(TxnError::new(
            ErrorCode::InvalidRequest,
            format!(
                "transaction timeout {timeout_ms} ms is invalid: use 1 to {} ms (the coordinator's \
                 max_transaction_timeout_ms)",
                limits.max_timeout_ms
            ),
        ));
    }
    Ok(())
}

fn validate_additions(partitions: &[(String, u32)], offset_groups: &[String]) -> Result<(), TxnError> {
    if partitions.is_empty() && offset_groups.is_empty() {
        return Err(TxnError::new(
            ErrorCode::InvalidRequest,
            "name at least one partition or one consumer group to add to the transaction",
        ));
    }
    for (topic, _) in partitions {
        TopicName::new(topic).map_err(|e| TxnError::new(ErrorCode::InvalidTopicName, e.to_string()))?;
    }
    offset_groups.iter().try_for_each(|g| validate_group("consumer group", g))
}

fn concurrent(id: &str, why: &str) -> TxnError {
    TxnError::new(
        ErrorCode::ConcurrentTransactions,
        format!("transactional id {id}: {why}; retry after a short back-off"),
    )
}

fn timed_out(id: &str) -> TxnError {
    TxnError::new(
        ErrorCode::TransactionTimedOut,
        format!("the transaction of {id} ran past its timeout and was aborted; begin a new one"),
    )
}

fn fenced_by_init(id: &str) -> TxnError {
    TxnError::new(
        ErrorCode::ProducerFenced,
        format!("another producer initialized {id} and aborted this producer's transaction; close this producer"),
    )
}

fn newer_epoch(id: &str, producer: Producer, meta: &TxnMeta) -> TxnError {
    TxnError::new(
        ErrorCode::InvalidRequest,
        format!(
            "epoch {} of {id} was never handed out (the id is at producer {} epoch {}); call InitTransactions",
            producer.epoch, meta.producer_id, meta.epoch
        ),
    )
}

fn other_decision(id: &str, meta: &TxnMeta, commit: bool) -> TxnError {
    let (asked, done) = if commit { ("commit", "aborted") } else { ("abort", "committed") };
    TxnError::new(
        ErrorCode::InvalidTxnState,
        format!("cannot {asked} the transaction of {id}: it was {done} by {}", ended_by_text(meta)),
    )
}
