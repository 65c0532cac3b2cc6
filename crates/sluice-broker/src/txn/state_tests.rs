//! Transitions of every request in every state, fencing, the epoch bump per transaction and the
//! fresh producer id at the epoch limit, retries, timeouts and the open-transaction cap. Every
//! plan's records go through a record batch, as the coordinator writes them, and after each
//! write the table must be exactly what replaying the whole log from nothing rebuilds; see
//! [`Fixture::write`].

use bytes::Bytes;
use sluice_common::record::RecordBatch;
use sluice_proto::ErrorCode;
use sluice_proto::internal::TxnPartition;

use super::*;
use crate::txn::records::{decode_batch, encode_batch};

pub(super) const LIMITS: TxnLimits = TxnLimits {
    max_open: 4,
    max_timeout_ms: 60_000,
    check_initial_ms: 1_000,
    check_max_ms: 8_000,
    max_check_attempts: 5,
};

/// The transaction timeout the fixture's producers ask for.
pub(super) const TIMEOUT_MS: u32 = 10_000;

/// A coordinator's table, the log it was built from, its clock and its producer id allocator.
pub(super) struct Fixture {
    pub table: TxnTable,
    log: Vec<Bytes>,
    pub now: u64,
    next_pid: i64,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture { table: TxnTable::new(), log: Vec::new(), now: 1_000, next_pid: 100 }
    }

    /// Writes `records` as the coordinator would (one batch), applies what is read back, and
    /// checks that the table is what the whole log rebuilds from nothing.
    pub fn write(&mut self, records: &[TxnRecord]) {
        if records.is_empty() {
            return;
        }
        let bytes = encode_batch(records, i64::try_from(self.now).unwrap());
        let decoded = decode_batch(&RecordBatch::parse(bytes.clone()).expect("encoded batch parses")).unwrap();
        assert_eq!(decoded, records, "the batch gives back what was written");
        self.table.apply_batch(&decoded);
        self.log.push(bytes);
        assert_eq!(self.replayed(), self.table, "replay of the log differs from the table");
    }

    /// A table rebuilt from the log.
    pub fn replayed(&self) -> TxnTable {
        let mut table = TxnTable::new();
        for bytes in &self.log {
            table.apply_batch(&decode_batch(&RecordBatch::parse(bytes.clone()).unwrap()).unwrap());
        }
        table
    }

    /// Writes a plan's records and checks that its answer and markers are the new state's.
    pub fn run(&mut self, id: &str, plan: Plan) -> Plan {
        self.write(&plan.records);
        if let Ok(answer) = plan.answer {
            assert_eq!(identity(self.meta(id)), answer, "answered identity vs state");
        }
        if plan.markers.is_some() {
            assert_eq!(markers_of(self.meta(id)), plan.markers, "planned markers vs state");
        }
        plan
    }

    /// Plans with no producer id, and again with a fresh one if it asks for one.
    pub fn resolve(&mut self, planner: impl Fn(&TxnTable, Option<i64>) -> Result<Planned, TxnError>) -> PlanResult {
        match planner(&self.table, None)? {
            Planned::Plan(plan) => Ok(plan),
            Planned::NeedsProducerId => {
                self.next_pid += 1;
                match planner(&self.table, Some(self.next_pid))? {
                    Planned::Plan(plan) => Ok(plan),
                    Planned::NeedsProducerId => panic!("asked for a producer id again"),
                }
            }
        }
    }

    pub fn meta(&self, id: &str) -> &TxnMeta {
        self.table.get(id).unwrap_or_else(|| panic!("{id} is unknown"))
    }

    pub fn state(&self, id: &str) -> TxnState {
        self.meta(id).state()
    }

    pub fn try_init(&mut self, id: &str, check_group: Option<&str>) -> PlanResult {
        let now = self.now;
        let group = check_group.map(str::to_owned);
        let plan = self.resolve(|t, pid| t.init(id, TIMEOUT_MS, group.clone(), now, pid, &LIMITS))?;
        Ok(self.run(id, plan))
    }

    /// Initializes `id`, expecting success; the producer's identity.
    pub fn init(&mut self, id: &str) -> Producer {
        self.try_init(id, None).unwrap().answer.unwrap()
    }

    pub fn try_add(&mut self, id: &str, p: Producer, partitions: &[(&str, u32)], groups: &[&str]) -> PlanResult {
        let parts: Vec<(String, u32)> = partitions.iter().map(|&(t, n)| (t.to_owned(), n)).collect();
        let groups: Vec<String> = groups.iter().map(|&g| g.to_owned()).collect();
        let plan = self.table.add_partitions(id, p, &parts, &groups, self.now, &LIMITS)?;
        Ok(self.run(id, plan))
    }

    /// Begins (or widens) `p`'s transaction with partitions t/0 and t/1 and group g.
    pub fn begin(&mut self, id: &str, p: Producer) {
        self.try_add(id, p, &[("t", 1), ("t", 0)], &["g"]).unwrap();
    }

    pub fn try_end(&mut self, id: &str, p: Producer, commit: bool) -> PlanResult {
        let plan = self.table.end(id, p, commit, self.now)?;
        Ok(self.run(id, plan))
    }

    pub fn try_complete(&mut self, id: &str) -> PlanResult {
        let now = self.now;
        let plan = self.resolve(|t, pid| t.complete(id, now, pid))?;
        Ok(self.run(id, plan))
    }

    /// Ends `p`'s transaction and completes it; the producer's next identity.
    pub fn commit(&mut self, id: &str, p: Producer, commit: bool) -> Producer {
        self.try_end(id, p, commit).unwrap();
        self.try_complete(id).unwrap().answer.unwrap()
    }

    /// Writes `meta` for `id` directly, as a record of the log would.
    pub fn put(&mut self, id: &str, meta: TxnMeta) {
        self.write(&[put(id, meta)]);
    }
}

pub(super) type PlanResult = Result<Plan, TxnError>;

pub(super) fn code(result: PlanResult) -> ErrorCode {
    result.expect_err("refused").code
}

fn producer(producer_id: i64, epoch: i16) -> Producer {
    Producer { producer_id, epoch }
}

fn older(p: Producer) -> Producer {
    producer(p.producer_id, p.epoch - 1)
}

/// Where the table-driven test starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Situation {
    Unknown,
    Empty,
    Ongoing,
    /// A half-message transaction (with a check group).
    OngoingChecked,
    Undecided,
    PrepareCommit,
    PrepareAbort,
    PrepareAbortFenced,
    PrepareAbortTimeout,
    CompleteCommit,
    CompleteAbort,
    CompleteAbortFenced,
    CompleteAbortTimeout,
}

/// A fixture where `tx` is in `situation`.
fn reach(situation: Situation) -> Fixture {
    use Situation::*;
    let mut f = Fixture::new();
    let checked = matches!(situation, OngoingChecked | Undecided);
    if situation == Unknown {
        return f;
    }
    let p = f.try_init("tx", checked.then_some("pg")).unwrap().answer.unwrap();
    if situation == Empty {
        return f;
    }
    f.begin("tx", p);
    match situation {
        Undecided => {
            while !f.meta("tx").undecided {
                f.now = f.meta("tx").next_check_ms;
                let plan = f.table.check_sent("tx", f.now, &LIMITS).expect("a check is due");
                f.run("tx", plan);
            }
        }
        PrepareCommit | CompleteCommit | PrepareAbort | CompleteAbort => {
            let commit = matches!(situation, PrepareCommit | CompleteCommit);
            f.try_end("tx", p, commit).unwrap();
        }
        PrepareAbortFenced | CompleteAbortFenced => assert!(f.try_init("tx", None).unwrap().answer.is_err()),
        PrepareAbortTimeout | CompleteAbortTimeout => {
            f.now += u64::from(TIMEOUT_MS);
            let plan = f.table.abort_timed_out("tx", f.now).expect("timed out");
            f.run("tx", plan);
        }
        _ => {}
    }
    if matches!(situation, CompleteCommit | CompleteAbort | CompleteAbortFenced | CompleteAbortTimeout) {
        f.try_complete("tx").unwrap();
    }
    f
}

#[derive(Debug, Clone, Copy)]
enum Request {
    Init,
    Add,
    End(bool),
    Complete,
    Force(bool),
    Check(CheckAnswer),
}

/// What a request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Wrote records, leaving the id in this state, and answered success.
    To(TxnState),
    /// Wrote records leaving this state, and answered this error.
    ToRefusing(TxnState, ErrorCode),
    /// Wrote nothing and answered success.
    Nothing,
    /// Refused: wrote nothing.
    Refused(ErrorCode),
}

fn attempt(f: &mut Fixture, request: Request, who: Producer) -> Outcome {
    let now = f.now;
    let result = match request {
        Request::Init => f.resolve(|t, pid| t.init("tx", TIMEOUT_MS, None, now, pid, &LIMITS)),
        Request::Add => f.table.add_partitions("tx", who, &[("u".into(), 5)], &[], now, &LIMITS),
        Request::End(commit) => f.table.end("tx", who, commit, now),
        Request::Complete => f.resolve(|t, pid| t.complete("tx", now, pid)),
        Request::Force(commit) => f.table.force_end("tx", commit, now),
        Request::Check(answer) => f.table.check_answer("tx", who, answer, now),
    };
    let plan = match result {
        Err(e) => return Outcome::Refused(e.code),
        Ok(plan) => f.run("tx", plan),
    };
    match (plan.records.is_empty(), plan.answer) {
        (true, Ok(_)) => Outcome::Nothing,
        (false, Ok(_)) => Outcome::To(f.state("tx")),
        (false, Err(e)) => Outcome::ToRefusing(f.state("tx"), e.code),
        (true, Err(e)) => panic!("an error answer in a plan that writes nothing: {e}"),
    }
}

#[test]
fn given_every_state_when_every_request_comes_from_the_current_producer_then_it_moves_or_is_refused_as_specified() {
    use ErrorCode::{
        ConcurrentTransactions as Concurrent, InvalidTxnState as Invalid, ProducerFenced as Fenced,
        TransactionTimedOut as TimedOut, UnknownTransactionalId as UnknownId,
    };
    use Outcome::*;
    use Situation as S;
    use TxnState::*;
    const PREPARED: Outcome = ToRefusing(PrepareAbort, Concurrent);
    let requests = [
        Request::Init,
        Request::Add,
        Request::End(true),
        Request::End(false),
        Request::Complete,
        Request::Force(true),
        Request::Check(CheckAnswer::Commit),
        Request::Check(CheckAnswer::Unknown),
    ];
    #[rustfmt::skip]
    let table: [(Situation, [Outcome; 8]); 13] = [
        //                     init          add                 end commit          end abort           complete              force commit        check commit        check unknown
        (S::Unknown,           [To(Empty),   Refused(UnknownId), Refused(UnknownId), Refused(UnknownId), Refused(UnknownId),   Refused(UnknownId), Refused(UnknownId), Refused(UnknownId)]),
        (S::Empty,             [To(Empty),   To(Ongoing),        Nothing,            Nothing,            Refused(Invalid),     Refused(Invalid),   Nothing,            Nothing]),
        (S::Ongoing,           [PREPARED,    To(Ongoing),        To(PrepareCommit),  To(PrepareAbort),   Refused(Invalid),     To(PrepareCommit),  Refused(Invalid),   Refused(Invalid)]),
        (S::OngoingChecked,    [PREPARED,    To(Ongoing),        To(PrepareCommit),  To(PrepareAbort),   Refused(Invalid),     To(PrepareCommit),  To(PrepareCommit),  Nothing]),
        (S::Undecided,         [PREPARED,    Refused(Invalid),   To(PrepareCommit),  To(PrepareAbort),   Refused(Invalid),     To(PrepareCommit),  To(PrepareCommit),  Nothing]),
        (S::PrepareCommit,     [Refused(Concurrent), Refused(Concurrent), Refused(Concurrent), Refused(Invalid), To(CompleteCommit), Refused(Concurrent), Nothing, Nothing]),
        (S::PrepareAbort,      [Refused(Concurrent), Refused(Concurrent), Refused(Invalid), Refused(Concurrent), To(CompleteAbort), Refused(Concurrent), Nothing, Nothing]),
        (S::PrepareAbortFenced,  [Refused(Concurrent), Refused(Fenced), Refused(Fenced), Refused(Fenced), To(CompleteAbort), Refused(Concurrent), Nothing, Nothing]),
        (S::PrepareAbortTimeout, [Refused(Concurrent), Refused(Concurrent), Refused(TimedOut), Refused(Concurrent), To(CompleteAbort), Refused(Concurrent), Nothing, Nothing]),
        (S::CompleteCommit,    [To(Empty),   To(Ongoing),        Nothing,            Nothing,            Refused(Invalid),     Refused(Invalid),   Nothing,            Nothing]),
        (S::CompleteAbort,     [To(Empty),   To(Ongoing),        Nothing,            Nothing,            Refused(Invalid),     Refused(Invalid),   Nothing,            Nothing]),
        (S::CompleteAbortFenced, [To(Empty), To(Ongoing),        Nothing,            Nothing,            Refused(Invalid),     Refused(Invalid),   Nothing,            Nothing]),
        (S::CompleteAbortTimeout, [To(Empty), To(Ongoing),       Nothing,            Nothing,            Refused(Invalid),     Refused(Invalid),   Nothing,            Nothing]),
    ];
    for (situation, expected) in table {
        for (request, want) in requests.into_iter().zip(expected) {
            let mut f = reach(situation);
            let who = f.table.get("tx").map_or(producer(1, 0), identity);
            let got = attempt(&mut f, request, who);
            assert_eq!(got, want, "{request:?} in {situation:?}");
        }
    }
}

#[test]
fn given_a_completed_transaction_when_its_producer_retries_with_the_epoch_before_then_the_retry_is_judged_by_its_end() {
    use ErrorCode::{InvalidTxnState as Invalid, ProducerFenced as Fenced, TransactionTimedOut as TimedOut};
    use Outcome::*;
    use Situation as S;
    let requests = [Request::Add, Request::End(true), Request::End(false), Request::Check(CheckAnswer::Commit)];
    let table = [
        (S::CompleteCommit, [Refused(Fenced), Nothing, Refused(Invalid), Nothing]),
        (S::CompleteAbort, [Refused(Fenced), Refused(Invalid), Nothing, Nothing]),
        (S::CompleteAbortFenced, [Refused(Fenced), Refused(Fenced), Refused(Fenced), Nothing]),
        (S::CompleteAbortTimeout, [Refused(TimedOut), Refused(TimedOut), Nothing, Nothing]),
    ];
    for (situation, expected) in table {
        for (request, want) in requests.into_iter().zip(expected) {
            let mut f = reach(situation);
            let current = identity(f.meta("tx"));
            assert_eq!(attempt(&mut f, request, older(current)), want, "{request:?} in {situation:?}");
            if let (Nothing, Request::End(commit)) = (want, request) {
                let again = f.table.end("tx", older(current), commit, f.now).unwrap();
                assert_eq!(again.answer, Ok(current), "a retry is answered with the producer's next identity");
            }
        }
    }
}

#[test]
fn given_any_state_when_a_stale_or_unknown_producer_writes_then_it_is_fenced_and_a_newer_epoch_is_invalid() {
    use Situation::*;
    for situation in [Empty, Ongoing, OngoingChecked, Undecided, PrepareCommit, PrepareAbortTimeout, CompleteCommit] {
        let f = reach(situation);
        let current = identity(f.meta("tx"));
        let stale =
            [producer(current.producer_id, current.epoch - 2), producer(current.producer_id + 1, current.epoch)];
        let parts = [("u".to_owned(), 5)];
        for who in stale {
            let add = f.table.add_partitions("tx", who, &parts, &[], f.now, &LIMITS);
            assert_eq!(code(add), ErrorCode::ProducerFenced, "add by {who:?} in {situation:?}");
            for commit in [true, false] {
                let end = f.table.end("tx", who, commit, f.now);
                assert_eq!(code(end), ErrorCode::ProducerFenced, "end by {who:?} in {situation:?}");
            }
            let check = f.table.check_answer("tx", who, CheckAnswer::Commit, f.now).unwrap();
            assert!(check.records.is_empty(), "a stale check-back answer changes nothing");
        }
        let newer = producer(current.producer_id, current.epoch + 1);
        assert_eq!(code(f.table.add_partitions("tx", newer, &parts, &[], f.now, &LIMITS)), ErrorCode::InvalidRequest);
        assert_eq!(code(f.table.end("tx", newer, true, f.now)), ErrorCode::InvalidRequest);
        assert_eq!(code(f.table.check_answer("tx", newer, CheckAnswer::Commit, f.now)), ErrorCode::InvalidRequest);
    }
}

#[test]
fn given_bad_ids_timeouts_or_groups_when_initializing_then_the_request_is_refused_with_the_limit() {
    let f = Fixture::new();
    let init = |id: &str, timeout_ms, group: Option<&str>| {
        f.table.init(id, timeout_ms, group.map(str::to_owned), 0, Some(1), &LIMITS).map(drop)
    };
    for bad in ["", "has space", "ünïcode", "x".repeat(250).as_str()] {
        assert_eq!(init(bad, 1, None).unwrap_err().code, ErrorCode::InvalidRequest, "{bad:?}");
    }
    assert!(init(&"x".repeat(249), 1, None).is_ok());
    assert!(init("a.B_c-9", 60_000, Some("producers")).is_ok());
    for bad in [0, 60_001] {
        let err = init("tx", bad, None).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        assert!(err.message.contains("1 to 60000 ms"), "{err}");
    }
    assert_eq!(init("tx", 1, Some("bad group")).unwrap_err().code, ErrorCode::InvalidGroupId);
}

#[test]
fn given_a_new_id_when_initialized_then_it_needs_a_fresh_producer_id_and_gets_epoch_zero() {
    let mut f = Fixture::new();
    let planned = f.table.init("tx", TIMEOUT_MS, Some("pg".into()), 5, None, &LIMITS).unwrap();
    assert_eq!(planned, Planned::NeedsProducerId);
    let Planned::Plan(plan) = f.table.init("tx", TIMEOUT_MS, Some("pg".into()), 5, Some(42), &LIMITS).unwrap() else {
        panic!("a plan once the producer id is given");
    };
    assert_eq!(plan.answer, Ok(producer(42, 0)));
    assert_eq!(plan.markers, None);
    f.run("tx", plan);
    let m = f.meta("tx");
    assert_eq!(
        (m.state(), m.timeout_ms, m.check_group.as_deref(), m.updated_ms),
        (TxnState::Empty, TIMEOUT_MS, Some("pg"), 5)
    );
}

#[test]
fn given_transactions_one_after_another_then_each_bumps_the_epoch_and_its_markers_fence_the_last() {
    let mut f = Fixture::new();
    let mut p = f.init("tx");
    assert_eq!(p.epoch, 0);
    for (round, commit) in [true, false, true].into_iter().enumerate() {
        f.begin("tx", p);
        let end = f.try_end("tx", p, commit).unwrap();
        assert_eq!(end.answer, Ok(p), "the decision answers the producer's current identity");
        let markers = end.markers.expect("markers to write");
        assert_eq!((markers.producer_id, markers.epoch, markers.commit), (p.producer_id, p.epoch + 1, commit));
        assert_eq!(markers.partitions, vec![("t".to_owned(), 0), ("t".to_owned(), 1)]);
        assert_eq!(markers.offset_groups, vec!["g".to_owned()]);
        assert_eq!(f.table.pending_markers(), vec![("tx".to_owned(), markers.clone())]);
        let next = f.try_complete("tx").unwrap().answer.unwrap();
        assert_eq!(next, producer(p.producer_id, markers.epoch), "round {round}: the marker epoch is the next");
        assert!(f.table.pending_markers().is_empty());
        assert_eq!(f.meta("tx").partitions.len(), 2, "a completed transaction keeps its partitions");
        p = next;
    }
    assert_eq!(p.epoch, 3);
    let reinit = f.init("tx");
    assert_eq!(reinit, producer(p.producer_id, 4));
    assert!(f.meta("tx").partitions.is_empty() && f.meta("tx").offset_groups.is_empty());
    assert_eq!(code(f.try_add("tx", p, &[("t", 0)], &[])), ErrorCode::ProducerFenced);
}

#[test]
fn given_an_ongoing_transaction_when_another_producer_initializes_then_it_is_aborted_and_the_old_producer_fenced() {
    let mut f = Fixture::new();
    let old = f.init("tx");
    f.begin("tx", old);
    let fence = f.try_init("tx", None).unwrap();
    assert_eq!(fence.answer.unwrap_err().code, ErrorCode::ConcurrentTransactions);
    let markers = fence.markers.expect("abort markers");
    assert_eq!((markers.epoch, markers.commit, markers.partitions.len()), (old.epoch + 1, false, 2));
    assert_eq!(f.meta("tx").ended_by(), TxnEndedBy::Fenced);
    assert_eq!(code(f.try_init("tx", None)), ErrorCode::ConcurrentTransactions, "still completing");
    f.try_complete("tx").unwrap();
    let new = f.init("tx");
    assert_eq!(new, producer(old.producer_id, old.epoch + 2));
    for who in [old, producer(old.producer_id, old.epoch + 1)] {
        assert_eq!(code(f.try_add("tx", who, &[("t", 0)], &[])), ErrorCode::ProducerFenced, "{who:?}");
        assert_eq!(code(f.try_end("tx", who, true)), ErrorCode::ProducerFenced, "{who:?}");
        assert_eq!(code(f.try_end("tx", who, false)), ErrorCode::ProducerFenced, "{who:?}");
    }
    f.begin("tx", new);
    assert_eq!(f.commit("tx", new, true), producer(old.producer_id, old.epoch + 3));
}

#[test]
fn given_the_last_epochs_when_transactions_complete_then_a_fresh_producer_id_takes_over_and_markers_fit_an_i16() {
    let mut f = Fixture::new();
    let last_but_one =
        TxnMeta { producer_id: 5, epoch: i32::from(MAX_EPOCH) - 1, timeout_ms: TIMEOUT_MS, ..TxnMeta::default() };
    f.put("tx", last_but_one);
    let p = f.init("tx");
    assert_eq!(p, producer(5, MAX_EPOCH), "the last epoch handed out is still the same producer id's");
    f.begin("tx", p);
    let markers = f.try_end("tx", p, true).unwrap().markers.unwrap();
    assert_eq!(markers.epoch, i16::MAX - 1, "the marker epoch of the last epoch fits an i16");
    assert_eq!(f.table.complete("tx", f.now, None).unwrap(), Planned::NeedsProducerId);
    let next = f.try_complete("tx").unwrap().answer.unwrap();
    assert_eq!(next, producer(101, 0));
    assert_eq!(f.state("tx"), TxnState::CompleteCommit);
    // The producer's retry of its end, under the producer id that was replaced.
    assert_eq!(f.try_end("tx", p, true).unwrap().answer, Ok(next));
    assert_eq!(code(f.try_end("tx", p, false)), ErrorCode::InvalidTxnState);
    assert_eq!(code(f.try_add("tx", p, &[("t", 0)], &[])), ErrorCode::ProducerFenced);
    f.begin("tx", next);
    assert_eq!(f.commit("tx", next, false), producer(101, 1));

    // An idle id at the last epoch gets a fresh producer id from init too.
    let at_last = TxnMeta { producer_id: 7, epoch: i32::from(MAX_EPOCH), timeout_ms: TIMEOUT_MS, ..TxnMeta::default() };
    f.put("other", at_last);
    assert_eq!(f.table.init("other", TIMEOUT_MS, None, f.now, None, &LIMITS).unwrap(), Planned::NeedsProducerId);
    assert_eq!(f.init("other"), producer(102, 0));
}

#[test]
fn given_an_end_retried_while_and_after_it_completes_then_it_is_answered_without_writing_twice() {
    let mut f = Fixture::new();
    let p = f.init("tx");
    f.begin("tx", p);
    f.try_end("tx", p, true).unwrap();
    assert_eq!(code(f.try_end("tx", p, true)), ErrorCode::ConcurrentTransactions);
    assert_eq!(code(f.try_end("tx", p, false)), ErrorCode::InvalidTxnState);
    let next = f.try_complete("tx").unwrap().answer.unwrap();
    for _ in 0..2 {
        let retry = f.try_end("tx", p, true).unwrap();
        assert_eq!((retry.records.len(), retry.markers, retry.answer), (0, None, Ok(next)));
    }
    let nothing_begun = f.try_end("tx", next, true).unwrap();
    assert_eq!((nothing_begun.records.len(), nothing_begun.answer), (0, Ok(next)));
    assert_eq!(code(f.try_complete("tx")), ErrorCode::InvalidTxnState, "completing twice");
}

#[test]
fn given_a_transaction_past_its_timeout_then_it_is_aborted_and_its_producer_told_it_timed_out() {
    let mut f = Fixture::new();
    let p = f.init("tx");
    f.begin("tx", p);
    let deadline = f.now + u64::from(TIMEOUT_MS);
    assert!(f.table.timed_out(deadline - 1).is_empty());
    assert_eq!(f.table.abort_timed_out("tx", deadline - 1), None);
    assert_eq!(f.table.timed_out(deadline), vec!["tx".to_owned()]);
    f.now = deadline;
    let abort = f.table.abort_timed_out("tx", f.now).unwrap();
    let markers = abort.markers.clone().unwrap();
    assert_eq!((markers.commit, markers.epoch), (false, p.epoch + 1));
    f.run("tx", abort);
    assert_eq!((f.state("tx"), f.meta("tx").ended_by()), (TxnState::PrepareAbort, TxnEndedBy::Timeout));
    assert!(f.table.timed_out(deadline + 1).is_empty(), "aborted once");
    let next = f.try_complete("tx").unwrap().answer.unwrap();
    let err = f.try_add("tx", p, &[("t", 0)], &[]).unwrap_err();
    assert_eq!(err.code, ErrorCode::TransactionTimedOut);
    assert!(err.message.contains("begin a new one"), "{err}");
    assert_eq!(code(f.try_end("tx", p, true)), ErrorCode::TransactionTimedOut);
    assert_eq!(f.try_end("tx", p, false).unwrap().answer, Ok(next));
    f.try_add("tx", next, &[("t", 3)], &[]).unwrap();
    assert_eq!(f.meta("tx").partitions, vec![TxnPartition { topic: "t".into(), partition: 3 }], "begins afresh");
}

#[test]
fn given_the_open_transaction_cap_when_one_more_begins_then_it_is_refused_until_one_completes() {
    let mut f = Fixture::new();
    let ids = ["a", "b", "c", "d", "e"];
    let producers: Vec<Producer> = ids.iter().map(|id| f.init(id)).collect();
    assert_eq!((f.table.open_count(), f.table.oldest_open_started_ms()), (0, None));
    for (i, (id, p)) in ids.iter().zip(&producers).take(LIMITS.max_open).enumerate() {
        f.now = 1_000 + i as u64;
        f.begin(id, *p);
    }
    assert_eq!((f.table.open_count(), f.table.oldest_open_started_ms()), (4, Some(1_000)));
    let err = f.try_add("e", producers[4], &[("t", 0)], &[]).unwrap_err();
    assert_eq!(err.code, ErrorCode::TooManyTransactions);
    assert!(err.message.contains("4 open transactions"), "{err}");
    f.try_add("a", producers[0], &[("t", 7)], &[]).expect("an open transaction still widens");
    f.try_end("a", producers[0], true).unwrap();
    assert_eq!(
        code(f.try_add("e", producers[4], &[("t", 0)], &[])),
        ErrorCode::TooManyTransactions,
        "prepared is open"
    );
    f.try_complete("a").unwrap();
    assert_eq!((f.table.open_count(), f.table.oldest_open_started_ms()), (3, Some(1_001)));
    f.begin("e", producers[4]);
    assert_eq!(f.table.open_count(), 4);
    assert_eq!(f.replayed().open_count(), 4, "the count is rebuilt by replay");
}

#[test]
fn given_partitions_and_groups_when_added_then_they_are_merged_sorted_and_bounded() {
    let mut f = Fixture::new();
    let p = f.init("tx");
    f.try_add("tx", p, &[("t", 2), ("s", 9), ("t", 2)], &["g2", "g1"]).unwrap();
    let m = f.meta("tx");
    let parts: Vec<(&str, u32)> = m.partitions.iter().map(|p| (p.topic.as_str(), p.partition)).collect();
    assert_eq!((parts, m.offset_groups.clone()), (vec![("s", 9), ("t", 2)], vec!["g1".to_owned(), "g2".to_owned()]));
    assert!(f.try_add("tx", p, &[("s", 9)], &["g1"]).unwrap().records.is_empty(), "nothing new, nothing written");
    assert_eq!(f.try_add("tx", p, &[("t", 1)], &[]).unwrap().records.len(), 1);
    assert_eq!(code(f.try_add("tx", p, &[], &[])), ErrorCode::InvalidRequest);
    assert_eq!(code(f.try_add("tx", p, &[("bad topic", 0)], &[])), ErrorCode::InvalidTopicName);
    assert_eq!(code(f.try_add("tx", p, &[], &["bad group"])), ErrorCode::InvalidGroupId);
    let too_many: Vec<(String, u32)> = (0..MAX_TXN_PARTITIONS as u32 - 2).map(|n| ("big".to_owned(), n)).collect();
    let err = f.table.add_partitions("tx", p, &too_many, &[], f.now, &LIMITS).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidRequest);
    assert!(err.message.contains("10001 partitions"), "{err}");
    let at_limit = &too_many[..too_many.len() - 1];
    let plan = f.table.add_partitions("tx", p, at_limit, &[], f.now, &LIMITS).unwrap();
    f.run("tx", plan);
    assert_eq!(f.meta("tx").partitions.len(), MAX_TXN_PARTITIONS);
}
