//! Batching rules of one partition, driven with made-up instants.

use std::time::{Duration, Instant};

use sluice_common::record::{ProducerStamp, Record, RecordBatch, parse_header};

use super::*;

const LINGER: Duration = Duration::from_millis(5);
const MAX: usize = 1024;

fn record(value_len: usize) -> Record {
    Record::new(vec![b'x'; value_len], 1_700_000_000_000)
}

fn known() -> Identity {
    Identity::Known { producer_id: 7, epoch: 0 }
}

fn send(q: &mut PartitionQueue, now: Instant) -> PendingBatch {
    match q.next(now, LINGER) {
        Next::Send(batch) => batch,
        other => panic!("expected a batch to send, got {other:?}"),
    }
}

#[test]
fn a_batch_goes_at_once_when_nothing_is_in_flight() {
    let t0 = Instant::now();
    let mut q = PartitionQueue::new(Identity::Off);
    assert!(matches!(q.next(t0, LINGER), Next::Idle));
    let first = q.append(&record(10), 30, t0, MAX).unwrap();
    assert!(first.wake, "a new batch wakes the sender");
    let batch = send(&mut q, t0);
    assert_eq!(batch.count(), 1, "no linger with nothing in flight");
    q.finished(true);
    assert!(matches!(q.next(t0, LINGER), Next::Idle), "nothing more is ready");
}

#[test]
fn a_batch_lingers_while_another_is_in_flight() {
    let t0 = Instant::now();
    let mut q = PartitionQueue::new(Identity::Off);
    q.append(&record(10), 30, t0, MAX).unwrap();
    let in_flight = send(&mut q, t0);
    let t1 = t0 + Duration::from_millis(1);
    let first = q.append(&record(10), 30, t1, MAX).unwrap();
    let second = q.append(&record(10), 30, t1, MAX).unwrap();
    assert!(!second.wake, "appending to an open batch needs no wake-up");
    assert_eq!((first.index, second.index), (0, 1));
    assert!(Arc::ptr_eq(&first.outcome, &second.outcome), "both records share the batch's outcome");
    assert!(!Arc::ptr_eq(&first.outcome, &in_flight.outcome));
    match q.next(t1 + Duration::from_millis(4), LINGER) {
        Next::WaitUntil(at) => assert_eq!(at, t1 + LINGER),
        other => panic!("expected to wait for the linger, got {other:?}"),
    }
    let batch = send(&mut q, t1 + LINGER);
    assert_eq!(batch.count(), 2);
    assert_eq!(batch.reserved_bytes, 60);
    q.finished(true);
    q.finished(true);
    assert!(q.is_empty());
}

#[test]
fn an_acknowledgement_releases_a_lingering_batch() {
    let t0 = Instant::now();
    let mut q = PartitionQueue::new(Identity::Off);
    q.append(&record(10), 30, t0, MAX).unwrap();
    let _in_flight = send(&mut q, t0);
    q.append(&record(10), 30, t0, MAX).unwrap();
    assert!(matches!(q.next(t0, LINGER), Next::WaitUntil(_)));
    q.finished(true);
    assert_eq!(send(&mut q, t0).count(), 1, "nothing in flight any more: it goes before its linger ends");
}

#[test]
fn a_full_batch_is_sealed_and_sent_without_lingering() {
    let t0 = Instant::now();
    let mut q = PartitionQueue::new(Identity::Off);
    let mut sealed_at = None;
    for i in 0..20 {
        let appended = q.append(&record(100), 110, t0, MAX).unwrap();
        if appended.index == 0 && i > 0 {
            sealed_at.get_or_insert(i);
        }
    }
    let per_batch = sealed_at.expect("twenty 100-byte records do not fit in 1 KiB");
    assert!((8..=10).contains(&per_batch), "{per_batch} records per 1 KiB batch");
    let first = send(&mut q, t0);
    assert_eq!(first.count(), per_batch);
    let (bytes, done) = first.encode(ProducerStamp::NONE);
    assert!(bytes.len() <= MAX, "a batch stays within max_batch_bytes: {}", bytes.len());
    assert_eq!(done.count, per_batch);
    q.finished(true);
    let second = send(&mut q, t0);
    assert_eq!(second.count(), per_batch, "the second full batch is sealed too");
}

#[test]
fn a_record_larger_than_a_batch_travels_alone() {
    let t0 = Instant::now();
    let mut q = PartitionQueue::new(Identity::Off);
    q.append(&record(10), 20, t0, MAX).unwrap();
    let big = q.append(&record(4 * MAX), 4 * MAX + 20, t0, MAX).unwrap();
    assert_eq!(big.index, 0, "the big record starts a batch of its own");
    assert!(big.wake);
    let small = send(&mut q, t0);
    assert_eq!(small.count(), 1);
    q.finished(true);
    let alone = send(&mut q, t0);
    assert_eq!(alone.count(), 1);
    assert_eq!(alone.reserved_bytes, 4 * MAX + 20);
}

#[test]
fn idempotent_batches_carry_consecutive_sequences_while_several_are_in_flight() {
    let t0 = Instant::now();
    let mut q = PartitionQueue::new(known());
    for _ in 0..3 {
        q.append(&record(10), 20, t0, MAX).unwrap();
    }
    q.flush();
    for _ in 0..2 {
        q.append(&record(10), 20, t0, MAX).unwrap();
    }
    let first = send(&mut q, t0);
    let stamp = q.stamp_next(first.count()).unwrap();
    assert_eq!(stamp, ProducerStamp { producer_id: 7, epoch: 0, base_sequence: 0 });
    let (bytes, _) = first.encode(stamp);
    assert_eq!(parse_header(&bytes).unwrap().producer.base_sequence, 0);
    // The first is not acknowledged yet; the second follows it at once.
    let second = send(&mut q, t0 + LINGER);
    let (bytes, _) = second.encode(q.stamp_next(2).unwrap());
    let header = parse_header(&bytes).unwrap();
    assert_eq!(header.producer, ProducerStamp { producer_id: 7, epoch: 0, base_sequence: 3 });
    assert_eq!(header.count, 2);
    assert_eq!(q.flush().len(), 2, "both are in flight");
}

#[test]
fn a_failed_batch_loses_the_identity_and_later_batches_are_restamped() {
    let t0 = Instant::now();
    let mut q = PartitionQueue::new(known());
    for _ in 0..4 {
        q.append(&record(10), 20, t0, MAX).unwrap();
        q.flush();
    }
    let failed = send(&mut q, t0);
    let _ = failed.encode(q.stamp_next(1).unwrap());
    q.finished(false);
    assert_eq!(q.identity(), Identity::Lost);
    assert_eq!(q.stamp_next(1), None, "no stamp without an identity");
    // The sender fetches a new producer id before the next batch goes out.
    let next = send(&mut q, t0);
    q.install(99, 0, next.count());
    let (bytes, _) = next.encode(q.stamp_next(1).unwrap());
    let batch = RecordBatch::parse(bytes).expect("a restamped batch has a valid checksum");
    assert_eq!(batch.header().producer, ProducerStamp { producer_id: 99, epoch: 0, base_sequence: 0 });
    assert_eq!(batch.records().count(), 1, "the records survive restamping");
    // Later batches continue the new identity's sequence.
    let third = send(&mut q, t0);
    let (bytes, _) = third.encode(q.stamp_next(1).unwrap());
    assert_eq!(parse_header(&bytes).unwrap().producer.base_sequence, 1);
    let fourth = send(&mut q, t0);
    let (bytes, _) = fourth.encode(q.stamp_next(1).unwrap());
    assert_eq!(parse_header(&bytes).unwrap().producer.base_sequence, 2);
    q.append(&record(10), 20, t0, MAX).unwrap();
    let last = send(&mut q, t0 + LINGER);
    assert_eq!(
        last.stamp,
        ProducerStamp { producer_id: 99, epoch: 0, base_sequence: 3 },
        "opened with the right guess"
    );
}

#[test]
fn flush_seals_the_open_batch_and_reports_everything_unfinished() {
    let t0 = Instant::now();
    let mut q = PartitionQueue::new(Identity::Off);
    q.append(&record(10), 20, t0, MAX).unwrap();
    q.flush();
    let in_flight = send(&mut q, t0);
    q.append(&record(10), 20, t0, MAX).unwrap();
    let outcomes = q.flush();
    assert_eq!(outcomes.len(), 2, "the batch in flight and the one just sealed");
    assert!(Arc::ptr_eq(&outcomes[0], &in_flight.outcome));
    assert!(!q.is_empty());
}

#[test]
fn a_closed_queue_refuses_records_and_drains_what_it_holds() {
    let t0 = Instant::now();
    let mut q = PartitionQueue::new(Identity::Off);
    q.append(&record(10), 20, t0, MAX).unwrap();
    q.close();
    assert!(matches!(q.append(&record(10), 20, t0, MAX), Err(Error::Closed)));
    let batch = send(&mut q, t0);
    let _ = batch.encode(ProducerStamp::NONE);
    q.finished(true);
    assert!(matches!(q.next(t0, LINGER), Next::Finished));
    assert!(q.is_empty());
}

#[tokio::test]
async fn every_waiter_sees_the_outcome() {
    let outcome = Arc::new(BatchOutcome::default());
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let outcome = Arc::clone(&outcome);
            tokio::spawn(async move { outcome.wait().await.clone().ok() })
        })
        .collect();
    tokio::task::yield_now().await;
    outcome.complete(Ok(41));
    outcome.complete(Ok(99));
    for waiter in waiters {
        let got = tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("woken").expect("no panic");
        assert_eq!(got, Some(41), "the first result wins");
    }
    assert!(outcome.get().is_some());
}

#[test]
fn running_out_of_sequence_numbers_asks_for_a_new_identity() {
    let t0 = Instant::now();
    let mut q = PartitionQueue::new(known());
    q.install(7, 0, 0);
    q.sent_sequence = i32::MAX - 1;
    q.append(&record(10), 20, t0, MAX).unwrap();
    q.append(&record(10), 20, t0, MAX).unwrap();
    let batch = send(&mut q, t0 + LINGER);
    assert_eq!(q.stamp_next(batch.count()), None);
    assert_eq!(q.identity(), Identity::Lost, "sequence {} + 2 does not fit", i32::MAX - 1);
}

#[test]
fn delayed_and_immediate_records_never_share_a_batch() {
    let t0 = Instant::now();
    let mut q = PartitionQueue::new(known());
    let mut delayed = record(10);
    delayed.properties.push((DELIVER_AT_PROPERTY.into(), "1700000005000".into()));
    q.append(&record(10), 30, t0, MAX).unwrap();
    let in_flight = send(&mut q, t0);
    for r in [&delayed, &delayed, &record(10)] {
        q.append(r, 30, t0, MAX).unwrap();
    }
    let kinds: Vec<(bool, u32)> = std::iter::from_fn(|| match q.next(t0 + LINGER, LINGER) {
        Next::Send(b) => Some((b.delayed, b.count())),
        _ => None,
    })
    .collect();
    assert_eq!(kinds, [(true, 2), (false, 1)], "the kind switch sealed the delayed batch");
    let (bytes, _) = in_flight.encode(ProducerStamp { producer_id: 7, epoch: 0, base_sequence: 0 });
    assert!(!parse_header(&bytes).unwrap().delayed);
}
