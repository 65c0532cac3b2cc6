//! Group records through a record batch and back, and what damaged batches give.

use sluice_proto::internal;

use super::*;

fn sample() -> Vec<GroupRecord> {
    let member = internal::MemberUpsert {
        member_id: "m-1".into(),
        instance_id: Some("host-a".into()),
        topics: vec!["orders".into(), "payments".into()],
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 60_000,
        client_host: "10.0.0.7".into(),
    };
    let offset = internal::OffsetCommit {
        topic: "orders".into(),
        partition: 3,
        offset: 42,
        metadata: "note".into(),
        commit_timestamp_ms: 1_700_000_000_123,
        instance_id: String::new(),
    };
    vec![
        GroupRecord { group: String::new(), change: Some(Change::Checkpoint(internal::Checkpoint::default())) },
        GroupRecord { group: "billing".into(), change: Some(Change::Member(member)) },
        GroupRecord { group: "billing".into(), change: Some(Change::Offset(offset)) },
    ]
}

fn parse(bytes: Bytes) -> RecordBatch {
    RecordBatch::parse(bytes).expect("a valid batch")
}

#[test]
fn given_records_when_encoded_and_decoded_then_they_come_back_in_order() {
    let records = sample();
    let batch = parse(encode_batch(&records, 1_700_000_000_000));
    assert_eq!(batch.header().count, 3);
    assert_eq!(batch.header().producer, ProducerStamp::NONE);
    assert_eq!(decode_batch(&batch).unwrap(), records);
    let keys: Vec<Option<Bytes>> = batch.records().map(|r| r.unwrap().key).collect();
    assert_eq!(keys, vec![None, Some(Bytes::from_static(b"billing")), Some(Bytes::from_static(b"billing"))]);
    assert!(batch.records().all(|r| r.unwrap().timestamp_ms == 1_700_000_000_000));
}

#[test]
fn given_no_records_when_encoded_then_the_batch_is_empty_and_decodes_to_nothing() {
    let batch = parse(encode_batch(&[], 5));
    assert_eq!(batch.header().count, 0);
    assert!(decode_batch(&batch).unwrap().is_empty());
}

#[test]
fn given_a_value_that_is_not_a_group_record_when_decoding_then_the_error_names_the_message() {
    let mut b = BatchBuilder::new(ProducerStamp::NONE, 64);
    b.push(&Record { key: Some(Bytes::from_static(b"g")), ..Record::new(vec![0xff, 0xff, 0xff], 1) });
    let err = decode_batch(&parse(b.finish())).unwrap_err();
    assert!(matches!(err, DecodeError::Value { index: 0, .. }), "{err:?}");
    assert!(err.to_string().contains("message 0"), "{err}");
}

#[test]
fn given_a_record_without_a_change_or_a_group_when_decoding_then_it_is_incomplete() {
    let no_change = GroupRecord { group: "g".into(), change: None };
    let err = decode_batch(&parse(encode_batch(&[no_change], 1))).unwrap_err();
    assert!(matches!(err, DecodeError::Incomplete { index: 0, .. }), "{err:?}");

    let removed = Change::MemberRemoved(internal::MemberRemoved { member_id: "m".into() });
    let no_group = GroupRecord { group: String::new(), change: Some(removed) };
    let err = decode_batch(&parse(encode_batch(&[no_group], 1))).unwrap_err();
    assert!(err.to_string().contains("names no group"), "{err}");
}

#[test]
fn given_a_key_that_is_not_the_group_when_decoding_then_it_is_refused() {
    let record = &sample()[1];
    let mut b = BatchBuilder::new(ProducerStamp::NONE, 256);
    b.push(&Record { key: Some(Bytes::from_static(b"other")), ..Record::new(record.encode_to_vec(), 1) });
    let err = decode_batch(&parse(b.finish())).unwrap_err();
    assert_eq!(err, DecodeError::KeyMismatch { index: 0, key: "other".into(), group: "billing".into() }, "{err}");
}

#[test]
fn given_a_batch_cut_at_every_byte_when_parsed_or_decoded_then_it_never_yields_records() {
    let bytes = encode_batch(&sample(), 9);
    for cut in 0..bytes.len() {
        if let Ok(batch) = RecordBatch::parse(bytes.slice(..cut)) {
            assert!(decode_batch(&batch).is_err(), "a batch cut at {cut} decoded");
        }
    }
}

#[test]
fn given_a_batch_whose_record_section_is_damaged_when_decoding_then_the_batch_error_is_kept() {
    // A structurally damaged records section behind a valid checksum: rebuild the header CRC.
    let bytes = encode_batch(&sample(), 9);
    let mut damaged = bytes.to_vec();
    let at = sluice_common::record::BATCH_HEADER_LEN;
    damaged[at] = 0xff; // the first record's length prefix now runs past the end
    damaged[at + 1] = 0xff;
    let crc = crc32(&damaged[4..]);
    damaged[..4].copy_from_slice(&crc.to_le_bytes());
    let err = decode_batch(&parse(Bytes::from(damaged))).unwrap_err();
    assert!(matches!(err, DecodeError::Batch(BatchError::Record { index: 0, .. })), "{err:?}");
}

/// CRC-32 (IEEE), as the batch header stores it; bitwise, for a test only.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn given_retry_records_when_encoded_and_decoded_then_they_come_back_and_a_nack_stays_small() {
    let due = internal::RetryDue {
        attempt: 2,
        due_ms: 1_796_000_001_000,
        key_hash: None,
        failed_ms: 1_796_000_000_000,
        reason: String::new(),
    };
    let nack = internal::RetryChange {
        topic: "orders".into(),
        partition: 3,
        offset: 1_234_567,
        change: Some(internal::retry_change::Change::Retry(due)),
    };
    let nack = GroupRecord { group: "billing".into(), change: Some(Change::Retry(nack)) };
    // The message's key (the group) and value: the state a nack replicates, framing aside.
    let state_bytes = nack.group.len() + nack.encoded_len();
    assert!(state_bytes <= 64, "a nack without a reason is {state_bytes} bytes of key and value");
    let reserved = internal::DeadLetterReserved {
        topic: "orders".into(),
        partition: 3,
        offset: 7,
        sequence: 12,
        producer_id: 99,
        attempts: 16,
        first_failure_ms: 1,
        last_failure_ms: 2,
        reason: "timeout".into(),
        key_hash: Some(u64::MAX),
    };
    let records = vec![
        nack,
        GroupRecord { group: "billing".into(), change: Some(Change::DeadLetter(reserved)) },
        GroupRecord {
            group: "billing".into(),
            change: Some(Change::DeadLetterWritten(internal::DeadLetterWritten { sequence: 12 })),
        },
    ];
    assert_eq!(decode_batch(&parse(encode_batch(&records, 5))).unwrap(), records);
}
