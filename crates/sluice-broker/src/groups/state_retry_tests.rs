//! Retries as group state: settles planned and fenced, nacks scheduled by the policy and
//! replayed from their records, the atomic step to the dead-letter queue, expired leases, the
//! policy's rules, key order, redrive and purge cursors, and checkpoints that rebuild all of it.

use prost::Message;
use sluice_common::retry::Place;
use sluice_proto::ErrorCode;
use sluice_proto::v1::{
    self as client, PollRetriesRequest, SetRetryPolicyRequest, Settle, SettleMessagesRequest, SettleOutcome,
};

use super::tests::{Fixture, req};
use super::*;

const NOW: u64 = 1_700_000_000_000;

/// Group `g` with member `a` owning all 2 partitions of `t` at epoch 1, and a policy of
/// `max_attempts` with waits 1 s then 5 s.
fn group_with(max_attempts: u32, key_ordered: bool) -> Fixture {
    let mut f = Fixture::new(&[("t", 2)]);
    f.ok(&req("g", "a", 0, &["t"], &Assignment::default()));
    let policy = client::RetryPolicy {
        backoff: Some(client::retry_policy::Backoff::Ladder(client::LadderBackoff { steps_ms: vec![1_000, 5_000] })),
        max_attempts,
        key_ordered,
    };
    let request = SetRetryPolicyRequest { group: "g".into(), policy: Some(policy), member_id: "a".into() };
    let records = f.state.set_retry_policy(&request).unwrap();
    f.apply(&records);
    f
}

fn settle(partition: u32, offset: u64, attempt: u32, outcome: SettleOutcome) -> Settle {
    Settle {
        topic: "t".into(),
        partition,
        offset,
        attempt,
        outcome: outcome as i32,
        reason: "boom".into(),
        ..Settle::default()
    }
}

fn request(member: &str, epoch: i32, settles: Vec<Settle>) -> SettleMessagesRequest {
    SettleMessagesRequest { group: "g".into(), member_id: member.into(), member_epoch: epoch, settles }
}

/// Plans `settles` by `a` at `now` (with producer id 9 for dead letters) and applies them.
fn settled(f: &mut Fixture, now: u64, settles: Vec<Settle>) -> SettlePlan {
    let plan = f.state.settle(&request("a", 1, settles), now, Some(9)).unwrap().unwrap();
    f.apply(&plan.records);
    plan
}

fn place(partition: u32, offset: u64) -> Place {
    Place { topic: "t".into(), partition, offset }
}

fn poll(f: &Fixture, now: u64) -> Vec<(Place, u32)> {
    let poll = PollRetriesRequest { group: "g".into(), member_id: "a".into(), member_epoch: 1, ..Default::default() };
    let (due, _) = f.state.due_retries(&poll, now, 100, |_| false).unwrap();
    due.into_iter().map(|(p, e)| (p, e.attempt)).collect()
}

fn retries(f: &Fixture) -> &GroupRetries {
    &f.group("g").retries
}

#[test]
fn given_a_nack_when_replayed_then_the_message_is_due_after_its_backoff_as_the_next_attempt() {
    let mut f = group_with(5, false);
    let plan = settled(&mut f, NOW, vec![settle(0, 42, 1, SettleOutcome::Nack)]);
    assert_eq!((plan.records.len(), plan.ignored, plan.dead_lettered), (1, 0, 0));
    let value = plan.records[0].encoded_len() + plan.records[0].group.len();
    assert!(value <= 64, "a nack without a reason text is {value} bytes");
    assert!(poll(&f, NOW + 999).is_empty(), "never early");
    assert_eq!(poll(&f, NOW + 1_000), [(place(0, 42), 2)]);

    tracing::info!("--- a repeated nack and an ack of a settled attempt are ignored");
    let again =
        settled(&mut f, NOW + 10, vec![settle(0, 42, 1, SettleOutcome::Nack), settle(0, 42, 1, SettleOutcome::Ack)]);
    assert_eq!((again.records.len(), again.ignored), (0, 2));

    tracing::info!("--- a nack with its own wait, then the ack of that attempt");
    let mut own = settle(0, 42, 2, SettleOutcome::Nack);
    own.delay_ms = Some(60_000);
    settled(&mut f, NOW + 1_000, vec![own]);
    assert!(poll(&f, NOW + 60_999).is_empty());
    assert_eq!(poll(&f, NOW + 61_000), [(place(0, 42), 3)]);
    settled(&mut f, NOW + 61_000, vec![settle(0, 42, 3, SettleOutcome::Ack)]);
    assert!(retries(&f).table.is_empty());
    let first = settled(&mut f, NOW, vec![settle(1, 5, 1, SettleOutcome::Ack)]);
    assert_eq!((first.records.len(), first.ignored), (0, 0), "a first delivery's ack: the commit settles it");
}

#[test]
fn given_settles_from_a_stranger_a_stale_epoch_or_for_a_partition_not_owned_then_they_are_refused_as_commits_are() {
    let f = group_with(5, false);
    let code = |r: &SettleMessagesRequest| f.state.settle(r, NOW, None).unwrap_err().code;
    assert_eq!(code(&request("zed", 1, vec![settle(0, 1, 1, SettleOutcome::Nack)])), ErrorCode::UnknownMemberId);
    assert_eq!(code(&request("a", 7, vec![settle(0, 1, 1, SettleOutcome::Nack)])), ErrorCode::FencedMemberEpoch);
    let mut foreign = settle(0, 1, 1, SettleOutcome::Nack);
    foreign.partition = 9;
    assert_eq!(code(&request("a", 1, vec![foreign])), ErrorCode::FencedMemberEpoch);
    let park = settle(0, 1, 1, SettleOutcome::Park);
    assert_eq!(code(&request("a", 1, vec![park])), ErrorCode::InvalidRequest, "no key order, no park");
}

#[test]
fn given_the_last_attempt_or_a_reject_then_the_message_leaves_the_table_and_a_dead_letter_is_reserved_in_one_record() {
    let mut f = group_with(2, false);
    settled(&mut f, NOW, vec![settle(0, 7, 1, SettleOutcome::Nack)]);
    let last = request("a", 1, vec![settle(0, 7, 2, SettleOutcome::Nack), settle(1, 3, 1, SettleOutcome::Reject)]);
    assert_eq!(f.state.settle(&last, NOW + 2_000, None).unwrap(), Err(NeedsProducer), "a producer id first");
    let plan = f.state.settle(&last, NOW + 2_000, Some(9)).unwrap().unwrap();
    assert_eq!((plan.records.len(), plan.dead_lettered), (2, 2));
    f.apply(&plan.records);
    let r = retries(&f);
    assert!(r.table.is_empty(), "never both: out of the retry state");
    assert_eq!((r.dlq.producer_id, r.dlq.next_sequence), (9, 2));
    let first = &r.dlq.pending[&0];
    assert_eq!(
        (first.place.offset, first.attempts, first.first_failure_ms, first.last_failure_ms),
        (7, 2, NOW, NOW + 2_000)
    );
    assert_eq!((r.dlq.pending[&1].place.partition, r.dlq.pending[&1].attempts), (1, 1));

    tracing::info!("--- written: the reservation goes; the sequence does not come back");
    f.apply(&[Coordinated::dead_letter_written("g", 0)]);
    assert_eq!(f.state.pending_dead_letters()[0].2.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1]);
    f.apply(&[Coordinated::dead_letter_written("g", 1)]);
    assert!(f.state.pending_dead_letters().is_empty());
    settled(&mut f, NOW + 3_000, vec![settle(0, 8, 1, SettleOutcome::Reject)]);
    assert!(retries(&f).dlq.pending.contains_key(&2));
}

#[test]
fn given_a_dead_lettered_first_delivery_then_its_settle_repeated_or_replayed_before_a_commit_past_it_is_ignored() {
    let mut f = group_with(3, false);
    let reject = || vec![settle(0, 5, 1, SettleOutcome::Reject)];
    assert_eq!(settled(&mut f, NOW, reject()).dead_lettered, 1);
    let again = f.state.settle(&request("a", 1, reject()), NOW + 1, Some(9)).unwrap().unwrap();
    assert_eq!((again.dead_lettered, again.ignored), (0, 1), "a repeat while the entry is reserved");
    f.apply(&[Coordinated::dead_letter_written("g", 0)]);
    let nack = vec![settle(0, 5, 1, SettleOutcome::Nack)];
    let replayed = f.state.settle(&request("a", 1, nack), NOW + 2, Some(9)).unwrap().unwrap();
    assert_eq!((replayed.records.len(), replayed.ignored), (0, 1), "a replay once it is written");

    tracing::info!("--- remembered across a checkpoint, forgotten once the group commits past it");
    let mut rebuilt = Coordinated::new();
    rebuilt.apply_batch(&f.state.checkpoint());
    assert_eq!(rebuilt.groups["g"].retries.dlq.written, retries(&f).dlq.written);
    let commit = |offset| internal::OffsetCommit { topic: "t".into(), partition: 0, offset, ..Default::default() };
    f.apply(&[record("g", Change::Offset(commit(5)))]);
    assert_eq!(retries(&f).dlq.written.len(), 1, "offset 5 itself is not committed past");
    f.apply(&[record("g", Change::Offset(commit(6)))]);
    assert!(retries(&f).dlq.written.is_empty());
}

#[test]
fn given_an_expired_lease_then_it_is_a_failed_attempt_and_the_last_one_reaches_the_dead_letter_queue() {
    let mut f = group_with(3, false);
    settled(&mut f, NOW, vec![settle(0, 1, 1, SettleOutcome::Nack)]);
    let expired = f.state.lease_expired("g", (&place(0, 1), 2), NOW + 40_000, Some(9)).unwrap();
    f.apply(&expired.records);
    let e = retries(&f).table.get(&place(0, 1)).unwrap();
    assert_eq!((e.attempt, e.due_ms, e.reason.as_str()), (3, Some(NOW + 45_000), "lease expired"));
    let stale = f.state.lease_expired("g", (&place(0, 1), 2), NOW + 41_000, Some(9)).unwrap();
    assert!(stale.records.is_empty(), "a lease of an attempt settled since changes nothing");
    let last = f.state.lease_expired("g", (&place(0, 1), 3), NOW + 90_000, Some(9)).unwrap();
    assert_eq!(last.dead_lettered, 1);
}

#[test]
fn given_a_policy_then_members_naming_another_are_refused_and_an_operator_replaces_it() {
    let f = group_with(5, false);
    let other = client::RetryPolicy { max_attempts: 3, ..Default::default() };
    let by = |member: &str| SetRetryPolicyRequest {
        group: "g".into(),
        policy: Some(other.clone()),
        member_id: member.into(),
    };
    assert_eq!(f.state.set_retry_policy(&by("a")).unwrap_err().code, ErrorCode::RetryPolicyMismatch);
    assert_eq!(f.state.set_retry_policy(&by("")).unwrap().len(), 1, "administrative: replaced");
    let same = f.state.retries_of("g").map(|r| policy_to_client(&r.policy())).unwrap();
    let again = SetRetryPolicyRequest { group: "g".into(), policy: Some(same), member_id: "a".into() };
    assert!(f.state.set_retry_policy(&again).unwrap().is_empty(), "the same policy: nothing to write");
    let bad = client::RetryPolicy { max_attempts: 5_000, ..Default::default() };
    let bad = SetRetryPolicyRequest { group: "g".into(), policy: Some(bad), member_id: String::new() };
    assert_eq!(f.state.set_retry_policy(&bad).unwrap_err().code, ErrorCode::InvalidRequest);
}

#[test]
fn given_a_key_ordered_group_then_a_nacked_key_blocks_and_its_parked_message_is_due_only_after_the_head_is_acked() {
    let mut f = group_with(5, true);
    let keyed = |offset, attempt, outcome| Settle { key_hash: Some(77), ..settle(0, offset, attempt, outcome) };
    settled(&mut f, NOW, vec![keyed(10, 1, SettleOutcome::Nack), keyed(11, 1, SettleOutcome::Park)]);
    let poll_req =
        PollRetriesRequest { group: "g".into(), member_id: "a".into(), member_epoch: 1, ..Default::default() };
    let (_, blocked) = f.state.due_retries(&poll_req, NOW, 10, |_| false).unwrap();
    assert_eq!(blocked, [client::BlockedKeys { topic: "t".into(), partition: 0, key_hashes: vec![77] }]);
    assert_eq!(poll(&f, NOW + 10_000), [(place(0, 10), 2)], "the parked one waits behind its head");
    settled(&mut f, NOW + 10_000, vec![keyed(10, 2, SettleOutcome::Ack)]);
    assert_eq!(poll(&f, NOW + 10_000), [(place(0, 11), 1)], "due at once, as a first attempt");
    settled(&mut f, NOW + 10_001, vec![keyed(11, 1, SettleOutcome::Ack)]);
    assert!(retries(&f).table.is_empty());
}

#[test]
fn given_a_redrive_then_dead_letters_are_due_at_attempt_one_and_the_cursor_moves_in_one_batch() {
    let mut f = group_with(5, false);
    settled(&mut f, NOW, vec![settle(0, 3, 1, SettleOutcome::Nack)]);
    let read = vec![(place(0, 3), None), (place(1, 4), None), (place(1, 4), None)];
    let records = f.state.redrive("g", &read, 3, NOW + 5);
    assert_eq!(records.len(), 2, "one new retry (one already waits, one twice read) and the cursor");
    f.apply(&records);
    assert_eq!(retries(&f).dlq.redrive_offset, 3);
    assert_eq!(poll(&f, NOW + 5), [(place(1, 4), 1)]);
    f.apply(&f.state.purge("g", 10));
    assert!(f.state.purge("g", 9).is_empty(), "a purge never moves back");
    assert_eq!((retries(&f).dlq.purge_offset, retries(&f).dlq.redrive_offset), (10, 3));
}

#[test]
fn given_retry_state_when_checkpointed_then_replaying_the_checkpoint_rebuilds_it_exactly() {
    let mut f = group_with(2, true);
    let keyed = |offset, attempt, outcome| Settle { key_hash: Some(5), ..settle(1, offset, attempt, outcome) };
    settled(&mut f, NOW, vec![keyed(20, 1, SettleOutcome::Nack), keyed(21, 1, SettleOutcome::Park)]);
    settled(&mut f, NOW, vec![keyed(22, 1, SettleOutcome::Park), settle(0, 1, 1, SettleOutcome::Reject)]);
    settled(&mut f, NOW + 1, vec![settle(0, 2, 1, SettleOutcome::Nack)]);
    f.apply(&f.state.redrive("g", &[], 4, NOW + 2));
    let mut rebuilt = Coordinated::new();
    rebuilt.apply_batch(&f.state.checkpoint());
    assert_eq!(rebuilt, f.state);
    assert!(!rebuilt.groups["g"].retries.dlq.pending.is_empty() && rebuilt.groups["g"].retries.table.len() == 4);
}

#[test]
fn given_retries_waiting_when_the_last_member_leaves_then_the_group_stays_past_its_offsets_retention() {
    let mut f = group_with(2, false);
    settled(&mut f, NOW, vec![settle(0, 1, 1, SettleOutcome::Nack)]);
    f.ok(&req("g", "a", -1, &["t"], &Assignment::default()));
    let far = i64::MAX / 2;
    assert!(f.state.expired_groups(far, 1).is_empty(), "a message waits for its retry");
    let last = f.state.lease_expired("g", (&place(0, 1), 2), NOW, Some(9)).unwrap();
    assert_eq!(last.dead_lettered, 1);
    f.apply(&last.records);
    assert!(f.state.expired_groups(far, 1).is_empty(), "a dead letter waits to be written");
    f.apply(&[Coordinated::dead_letter_written("g", 0)]);
    assert_eq!(f.state.expired_groups(far, 1), ["g"], "nothing waits: retention applies");
}
