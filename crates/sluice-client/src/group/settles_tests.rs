use std::time::Duration;

use super::*;

fn rec(offset: u64, key: Option<&str>, attempt: u32) -> ConsumedRecord {
    ConsumedRecord::for_test("orders", 0, offset, key, attempt)
}

fn outcomes(book: &mut SettleBook) -> Vec<(u64, u32, SettleOutcome)> {
    book.take_pending().into_iter().map(|s| (s.offset, s.attempt, s.outcome)).collect()
}

#[test]
fn an_ack_of_a_first_delivery_is_left_to_the_commit_and_the_rest_are_batched_in_order() {
    let mut book = SettleBook::new(false);
    book.settle(&rec(1, None, 1), SettleOutcome::Ack, String::new());
    assert!(!book.has_pending(), "a first delivery is settled by committing past it");
    let nack = SettleOutcome::Nack { delay: Some(Duration::from_secs(3)) };
    book.settle(&rec(2, None, 1), nack.clone(), "db down".into());
    book.settle(&rec(3, None, 1), SettleOutcome::Reject, "bad json".into());
    book.settle(&rec(4, None, 2), SettleOutcome::Ack, String::new());
    assert_eq!(outcomes(&mut book), [(2, 1, nack), (3, 1, SettleOutcome::Reject), (4, 2, SettleOutcome::Ack)]);
    assert!(!book.has_pending());
}

#[test]
fn a_retry_left_unsettled_is_acked_with_its_attempt_once_the_application_is_done() {
    let mut book = SettleBook::new(false);
    let (done, failed) = (rec(7, None, 3), rec(8, None, 2));
    book.delivered_retry(&done);
    book.delivered_retry(&failed);
    book.settle(&failed, SettleOutcome::Nack { delay: None }, "again".into());
    book.finish_retries();
    assert_eq!(outcomes(&mut book), [(8, 2, SettleOutcome::Nack { delay: None }), (7, 3, SettleOutcome::Ack)]);
    book.finish_retries();
    assert!(!book.has_pending(), "a retry is implicitly acked once");
}

#[test]
fn an_explicit_ack_of_a_retry_at_attempt_1_is_sent_as_a_first_deliverys_is_not() {
    // A parked message released in a key-ordered group comes back as a retry at attempt 1:
    // only an ack takes it out of the retry state (else its lease runs out, a failed attempt).
    let mut book = SettleBook::new(true);
    let released = rec(5, Some("k"), 1);
    book.delivered_retry(&released);
    book.settle(&released, SettleOutcome::Ack, String::new());
    book.settle(&rec(6, Some("j"), 1), SettleOutcome::Ack, String::new());
    assert_eq!(outcomes(&mut book), [(5, 1, SettleOutcome::Ack)]);
    book.finish_retries();
    assert!(!book.has_pending(), "settled once");
}

#[test]
fn settles_stay_in_the_book_until_stored_so_a_failed_or_dropped_send_loses_none() {
    let mut book = SettleBook::new(false);
    book.settle(&rec(1, None, 1), SettleOutcome::Reject, String::new());
    book.settle(&rec(2, None, 1), SettleOutcome::Nack { delay: None }, String::new());
    let first = book.next_to_send(1);
    assert_eq!(first.iter().map(|s| s.offset).collect::<Vec<_>>(), [1]);
    // The send failed, or the poll sending it was dropped: nothing was marked sent.
    book.settle(&rec(3, None, 1), SettleOutcome::Reject, String::new());
    assert_eq!(book.next_to_send(10).iter().map(|s| s.offset).collect::<Vec<_>>(), [1, 2, 3]);
    book.sent(2);
    assert_eq!(outcomes(&mut book).iter().map(|o| o.0).collect::<Vec<_>>(), [3]);
}

#[test]
fn a_nacked_key_parks_its_later_messages_while_other_keys_flow() {
    let mut book = SettleBook::new(true);
    book.settle(&rec(1, Some("a"), 1), SettleOutcome::Nack { delay: None }, "x".into());
    let batch = [rec(2, Some("a"), 1), rec(3, Some("b"), 1), rec(4, None, 1)];
    assert_eq!(book.admit(&batch), [Admit::Parked, Admit::Return, Admit::Return]);
    let sent = book.take_pending();
    assert_eq!(
        sent.iter().map(|s| (s.offset, s.outcome.clone())).collect::<Vec<_>>(),
        [(1, SettleOutcome::Nack { delay: None }), (2, SettleOutcome::Park)]
    );
    assert!(sent.iter().all(|s| s.key_hash == Some(key_hash(b"a"))));
}

#[test]
fn a_key_seen_twice_in_a_batch_defers_the_rest_of_its_partition() {
    let mut book = SettleBook::new(true);
    let other = ConsumedRecord::for_test("orders", 1, 9, Some("a"), 1);
    let batch = [rec(1, Some("a"), 1), rec(2, Some("b"), 1), rec(3, Some("a"), 1), rec(4, Some("c"), 1), other];
    assert_eq!(book.admit(&batch), [Admit::Return, Admit::Return, Admit::Defer, Admit::Defer, Admit::Return]);
    assert!(!book.has_pending());
}

#[test]
fn blocked_keys_follow_the_coordinator_but_keep_unsent_nacks() {
    let mut book = SettleBook::new(true);
    let owned = [TopicPartition::new("orders", 0)];
    book.set_blocked(&owned, vec![("orders".into(), 0, vec![key_hash(b"a")])]);
    assert_eq!(book.admit(&[rec(5, Some("a"), 1)]), [Admit::Parked]);
    book.take_pending();
    book.settle(&rec(6, Some("b"), 1), SettleOutcome::Nack { delay: None }, String::new());
    // The head of "a" was acked meanwhile; "b"'s nack is not sent yet.
    book.set_blocked(&owned, Vec::new());
    assert_eq!(book.admit(&[rec(7, Some("a"), 1), rec(8, Some("b"), 1)]), [Admit::Return, Admit::Parked]);
}

#[test]
fn outside_key_ordered_groups_nothing_is_parked_or_deferred() {
    let mut book = SettleBook::new(false);
    book.settle(&rec(1, Some("a"), 1), SettleOutcome::Nack { delay: None }, String::new());
    assert_eq!(book.admit(&[rec(2, Some("a"), 1), rec(3, Some("a"), 1)]), [Admit::Return, Admit::Return]);
    assert_eq!(book.take_pending()[0].key_hash, None);
}

#[test]
fn a_partition_given_up_drops_its_unsent_settles_and_blocks() {
    let mut book = SettleBook::new(true);
    book.settle(&rec(1, Some("a"), 1), SettleOutcome::Nack { delay: None }, String::new());
    book.delivered_retry(&rec(2, None, 2));
    book.forget(&TopicPartition::new("orders", 0));
    book.finish_retries();
    assert!(!book.has_pending());
    assert_eq!(book.admit(&[rec(3, Some("a"), 1)]), [Admit::Return]);
}
