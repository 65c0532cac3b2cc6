//! What the clock drives: check-backs of half-message transactions (back-off, undecided after
//! the last attempt, never ended by the coordinator), expiry of idle ids, and a long run of
//! every kind of request whose log must replay to the same table.

use std::collections::BTreeSet;

use sluice_proto::ErrorCode;

use super::tests::{Fixture, LIMITS, TIMEOUT_MS, code};
use super::*;

/// A half-message transaction of `tx` begun at the fixture's time; its producer.
fn half_message(f: &mut Fixture) -> Producer {
    let p = f.try_init("tx", Some("producers")).unwrap().answer.unwrap();
    f.begin("tx", p);
    p
}

/// Sends the due check of `tx` at its due time; the wait until the next.
fn check_at_due_time(f: &mut Fixture) -> u64 {
    f.now = f.meta("tx").next_check_ms;
    assert_eq!(f.table.due_checks(f.now), vec!["tx".to_owned()]);
    let plan = f.table.check_sent("tx", f.now, &LIMITS).expect("a check is due");
    f.run("tx", plan);
    f.meta("tx").next_check_ms - f.now
}

#[test]
fn given_a_half_message_transaction_then_it_is_checked_back_at_its_timeout_and_never_aborted() {
    let mut f = Fixture::new();
    half_message(&mut f);
    let first = f.now + u64::from(TIMEOUT_MS);
    assert_eq!(f.meta("tx").next_check_ms, first);
    assert!(f.table.due_checks(first - 1).is_empty());
    assert!(f.table.timed_out(first * 10).is_empty(), "a checked transaction is not aborted at its timeout");
    assert_eq!(f.table.abort_timed_out("tx", first * 10), None);
    assert_eq!(f.table.check_sent("tx", first - 1, &LIMITS), None, "no check is due yet");
}

#[test]
fn given_check_backs_without_answer_then_waits_double_up_to_the_cap_and_the_last_leaves_it_undecided() {
    let mut f = Fixture::new();
    let p = half_message(&mut f);
    let waits: Vec<u64> = (0..LIMITS.max_check_attempts).map(|_| check_at_due_time(&mut f)).collect();
    assert_eq!(waits, [1_000, 2_000, 4_000, 8_000, 8_000]);
    let m = f.meta("tx");
    assert_eq!((m.check_attempts, m.undecided, m.state()), (5, true, TxnState::Ongoing));
    let year = f.now + 365 * 24 * 3_600_000;
    assert!(f.table.due_checks(year).is_empty(), "undecided: no more checks");
    assert!(f.table.timed_out(year).is_empty() && f.table.expired_ids(year, 1).is_empty());
    assert_eq!(f.table.check_sent("tx", year, &LIMITS), None);
    assert_eq!(f.table.abort_timed_out("tx", year), None);
    assert_eq!(f.table.remove("tx", year, 1), None);
    assert_eq!(f.table.open_count(), 1, "still open, for an operator");
    assert_eq!(code(f.try_add("tx", p, &[("t", 9)], &[])), ErrorCode::InvalidTxnState);
    // A late answer still decides.
    f.now = year;
    let plan = f.table.check_answer("tx", p, CheckAnswer::Rollback, f.now).unwrap();
    let plan = f.run("tx", plan);
    assert_eq!(plan.markers.map(|m| m.commit), Some(false));
    let m = f.meta("tx");
    assert_eq!((m.state(), m.ended_by(), m.undecided), (TxnState::PrepareAbort, TxnEndedBy::CheckBack, false));
}

#[test]
fn given_an_undecided_transaction_when_an_operator_ends_it_then_it_commits_like_any_other() {
    let mut f = Fixture::new();
    let p = half_message(&mut f);
    for _ in 0..LIMITS.max_check_attempts {
        check_at_due_time(&mut f);
    }
    let plan = f.table.force_end("tx", true, f.now).unwrap();
    let plan = f.run("tx", plan);
    assert_eq!(plan.markers.map(|m| (m.commit, m.epoch)), Some((true, p.epoch + 1)));
    assert_eq!(f.meta("tx").ended_by(), TxnEndedBy::Operator);
    assert_eq!(code(f.table.force_end("tx", false, f.now)), ErrorCode::ConcurrentTransactions);
    let next = f.try_complete("tx").unwrap().answer.unwrap();
    assert_eq!(f.try_end("tx", p, true).unwrap().answer, Ok(next), "the producer's retry learns the outcome");
    assert_eq!(code(f.table.force_end("tx", true, f.now)), ErrorCode::InvalidTxnState);
    assert_eq!(code(f.table.force_end("nobody", true, f.now)), ErrorCode::UnknownTransactionalId);
}

#[test]
fn given_check_back_answers_then_commit_decides_unknown_waits_and_stale_ones_change_nothing() {
    let mut f = Fixture::new();
    let p = half_message(&mut f);
    check_at_due_time(&mut f);
    let unknown = f.table.check_answer("tx", p, CheckAnswer::Unknown, f.now).unwrap();
    assert!(unknown.records.is_empty() && unknown.markers.is_none());
    assert_eq!(f.table.due_checks(f.now), Vec::<String>::new(), "the next check stays scheduled");
    let commit = f.table.check_answer("tx", p, CheckAnswer::Commit, f.now).unwrap();
    let commit = f.run("tx", commit);
    assert_eq!(commit.markers.map(|m| m.commit), Some(true));
    assert!(f.table.due_checks(u64::MAX).is_empty(), "a decided transaction is not checked");
    for answer in [CheckAnswer::Commit, CheckAnswer::Rollback] {
        let stale = f.table.check_answer("tx", p, answer, f.now).unwrap();
        assert!(stale.records.is_empty(), "answered twice");
    }
    f.try_complete("tx").unwrap();
    let stale = f.table.check_answer("tx", p, CheckAnswer::Rollback, f.now).unwrap();
    assert!(stale.records.is_empty(), "answered after completion");
    assert_eq!(code(f.table.check_answer("nobody", p, CheckAnswer::Commit, f.now)), ErrorCode::UnknownTransactionalId);
}

#[test]
fn given_a_check_counted_already_when_counted_again_then_nothing_is_planned() {
    let mut f = Fixture::new();
    half_message(&mut f);
    f.now = f.meta("tx").next_check_ms;
    let first = f.table.check_sent("tx", f.now, &LIMITS).unwrap();
    f.run("tx", first);
    assert_eq!(f.table.check_sent("tx", f.now, &LIMITS), None, "a second check at the same due time is not counted");
    assert_eq!(f.meta("tx").check_attempts, 1);
}

#[test]
fn given_huge_attempts_or_waits_when_backing_off_then_the_wait_is_capped_without_overflow() {
    let limits = TxnLimits { check_initial_ms: u64::MAX / 2, check_max_ms: 60_000, ..LIMITS };
    for attempts in [0, 1, 63, 64, 1_000, u32::MAX] {
        assert_eq!(plan::check_backoff_ms(attempts, &limits), 60_000, "{attempts}");
    }
    assert_eq!(plan::check_backoff_ms(2, &LIMITS), 4_000);
    assert_eq!(plan::check_backoff_ms(40, &LIMITS), 8_000);
}

#[test]
fn given_idle_ids_past_expiration_then_they_are_listed_and_removed_but_never_open_ones() {
    let mut f = Fixture::new();
    let a = f.init("a");
    f.init("b");
    let c = f.init("c");
    f.begin("c", c);
    f.now = 5_000;
    f.begin("a", a);
    f.commit("a", a, true);
    let expiration = 10_000;
    assert!(f.table.expired_ids(1_000 + expiration - 1, expiration).is_empty());
    assert_eq!(f.table.expired_ids(1_000 + expiration, expiration), vec!["b".to_owned()]);
    assert_eq!(f.table.expired_ids(u64::MAX, expiration), vec!["a".to_owned(), "b".to_owned()], "c is open");
    assert_eq!(f.table.remove("a", 1_000 + expiration, expiration), None, "a changed since");
    assert_eq!(f.table.remove("c", u64::MAX, expiration), None);
    assert_eq!(f.table.remove("nobody", u64::MAX, expiration), None);
    let removal = f.table.remove("b", 1_000 + expiration, expiration).unwrap();
    f.write(&[removal]);
    assert!(f.table.get("b").is_none());
    assert_eq!(code(f.try_end("b", a, true)), ErrorCode::UnknownTransactionalId);
    let again = f.table.init("b", TIMEOUT_MS, None, f.now, None, &LIMITS).unwrap();
    assert_eq!(again, Planned::NeedsProducerId, "a forgotten id starts afresh");
}

#[test]
fn given_a_long_run_of_every_request_on_many_ids_when_the_log_is_replayed_then_the_table_is_the_same() {
    // Fixture::write compares the table with a replay of the whole log after every write; this
    // run goes through every kind of record, on interleaved ids, with a small seeded generator.
    let mut f = Fixture::new();
    let ids = ["a", "b", "c", "d"];
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut seen = BTreeSet::new();
    for step in 0..600 {
        f.now += next(3_000);
        let id = ids[next(4) as usize];
        let who = f.table.get(id).map_or(Producer { producer_id: 0, epoch: 0 }, identity);
        let now = f.now;
        let group = is_checked(id).then(|| "pg".to_owned());
        let records = match next(9) {
            0 => f.resolve(|t, pid| t.init(id, TIMEOUT_MS, group.clone(), now, pid, &LIMITS)).map(|p| p.records),
            1 | 2 => {
                let partition = ("t".to_owned(), u32::try_from(step % 5).unwrap());
                f.table.add_partitions(id, who, &[partition], &[], now, &LIMITS).map(|p| p.records)
            }
            3 => f.table.end(id, who, step % 3 != 0, now).map(|p| p.records),
            4 => f.resolve(|t, pid| t.complete(id, now, pid)).map(|p| p.records),
            5 => Ok(f.table.abort_timed_out(id, now).map(|p| p.records).unwrap_or_default()),
            6 => Ok(f.table.check_sent(id, now, &LIMITS).map(|p| p.records).unwrap_or_default()),
            7 => f.table.check_answer(id, who, CheckAnswer::Commit, now).map(|p| p.records),
            _ => Ok(f.table.remove(id, now, 20_000).into_iter().collect()),
        };
        f.write(&records.unwrap_or_default());
        assert_eq!(f.table.open_count(), f.table.iter().filter(|(_, m)| is_open(m)).count(), "step {step}");
        seen.extend(f.table.iter().map(|(_, m)| (m.state(), m.ended_by())));
    }
    assert!(seen.len() >= 8, "the run reached only {seen:?}");
    assert_eq!(f.replayed(), f.table);
    assert_eq!(f.replayed().pending_markers(), f.table.pending_markers());
}

/// Ids "c" and "d" are half-message producers.
fn is_checked(id: &str) -> bool {
    matches!(id, "c" | "d")
}
