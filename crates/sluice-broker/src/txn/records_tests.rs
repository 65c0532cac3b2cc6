//! Transaction records through a record batch and back, and what damaged batches give.

use sluice_proto::internal::{TxnMeta, TxnPartition, TxnRemoved};

use super::*;
use crate::txn::state::MAX_EPOCH;

fn meta() -> TxnMeta {
    let mut m = TxnMeta {
        producer_id: 7,
        epoch: 3,
        partitions: vec![
            TxnPartition { topic: "orders".into(), partition: 0 },
            TxnPartition { topic: "orders".into(), partition: 2 },
        ],
        offset_groups: vec!["billing".into()],
        timeout_ms: 60_000,
        started_ms: 1_700_000_000_000,
        updated_ms: 1_700_000_000_500,
        check_group: Some("producers".into()),
        check_attempts: 2,
        next_check_ms: 1_700_000_009_000,
        undecided: true,
        ..TxnMeta::default()
    };
    m.set_state(TxnState::PrepareCommit);
    m.set_ended_by(TxnEndedBy::CheckBack);
    m
}

fn sample() -> Vec<TxnRecord> {
    vec![
        TxnRecord { transactional_id: "tx-1".into(), change: Some(Change::Put(meta())) },
        TxnRecord { transactional_id: "tx-2".into(), change: Some(Change::Removed(TxnRemoved {})) },
        TxnRecord { transactional_id: "tx-1".into(), change: Some(Change::Put(TxnMeta::default())) },
    ]
}

fn parse(bytes: Bytes) -> RecordBatch {
    RecordBatch::parse(bytes).expect("a valid batch")
}

fn one(record: &TxnRecord) -> RecordBatch {
    parse(encode_batch(std::slice::from_ref(record), 1))
}

#[test]
fn given_records_when_encoded_and_decoded_then_they_come_back_in_order_keyed_by_id() {
    let records = sample();
    let batch = parse(encode_batch(&records, 1_700_000_000_000));
    assert_eq!(batch.header().count, 3);
    assert_eq!(batch.header().producer, ProducerStamp::NONE);
    assert_eq!(decode_batch(&batch).unwrap(), records);
    let keys: Vec<Option<Bytes>> = batch.records().map(|r| r.unwrap().key).collect();
    let key = |k: &'static [u8]| Some(Bytes::from_static(k));
    assert_eq!(keys, vec![key(b"tx-1"), key(b"tx-2"), key(b"tx-1")]);
    assert!(batch.records().all(|r| r.unwrap().timestamp_ms == 1_700_000_000_000));
}

#[test]
fn given_no_records_when_encoded_then_the_batch_is_empty_and_decodes_to_nothing() {
    let batch = parse(encode_batch(&[], 5));
    assert_eq!(batch.header().count, 0);
    assert!(decode_batch(&batch).unwrap().is_empty());
}

#[test]
fn given_a_value_that_is_not_a_txn_record_when_decoding_then_the_error_names_the_message() {
    let mut b = BatchBuilder::new(ProducerStamp::NONE, 64);
    b.push(&Record { key: Some(Bytes::from_static(b"tx")), ..Record::new(vec![0xff, 0xff, 0xff], 1) });
    let err = decode_batch(&parse(b.finish())).unwrap_err();
    assert!(matches!(err, DecodeError::Value { index: 0, .. }), "{err:?}");
    assert!(err.to_string().contains("message 0"), "{err}");
}

#[test]
fn given_a_record_without_a_change_or_an_id_when_decoding_then_it_is_invalid() {
    let no_change = TxnRecord { transactional_id: "tx".into(), change: None };
    let err = decode_batch(&one(&no_change)).unwrap_err();
    assert_eq!(err, DecodeError::Invalid { index: 0, what: "it has no change" });

    let no_id = TxnRecord { transactional_id: String::new(), change: Some(Change::Removed(TxnRemoved {})) };
    let err = decode_batch(&one(&no_id)).unwrap_err();
    assert!(err.to_string().contains("names no transactional id"), "{err}");
}

#[test]
fn given_a_meta_no_coordinator_writes_when_decoding_then_it_is_invalid() {
    let with = |f: &dyn Fn(&mut TxnMeta)| {
        let mut m = meta();
        f(&mut m);
        TxnRecord { transactional_id: "tx".into(), change: Some(Change::Put(m)) }
    };
    let last_epoch = with(&|m| m.epoch = i32::from(MAX_EPOCH));
    assert_eq!(decode_batch(&one(&last_epoch)).unwrap(), vec![last_epoch]);
    for (bad, what) in [
        (with(&|m| m.epoch = i32::from(MAX_EPOCH) + 1), "epoch"),
        (with(&|m| m.epoch = -1), "epoch"),
        (with(&|m| m.state = 6), "state"),
        (with(&|m| m.ended_by = 5), "ended_by"),
    ] {
        let err = decode_batch(&one(&bad)).unwrap_err();
        assert!(matches!(err, DecodeError::Invalid { index: 0, what: w } if w.contains(what)), "{err:?}");
    }
}

#[test]
fn given_a_key_that_is_not_the_transactional_id_when_decoding_then_it_is_refused() {
    let record = &sample()[0];
    for key in [Some(Bytes::from_static(b"other")), None] {
        let mut b = BatchBuilder::new(ProducerStamp::NONE, 256);
        b.push(&Record { key: key.clone(), ..Record::new(record.encode_to_vec(), 1) });
        let err = decode_batch(&parse(b.finish())).unwrap_err();
        let shown = key.map(|k| String::from_utf8_lossy(&k).into_owned()).unwrap_or_default();
        assert_eq!(err, DecodeError::KeyMismatch { index: 0, key: shown, id: "tx-1".into() }, "{err}");
    }
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
fn given_a_value_with_a_flipped_byte_when_decoding_then_it_is_refused_or_still_a_valid_record() {
    // Protobuf has no checksum of its own (the batch's CRC guards the log); what decoding must
    // never do is accept a value that names another id than its key.
    let record = &sample()[0];
    let value = record.encode_to_vec();
    for at in 0..value.len() {
        let mut damaged = value.clone();
        damaged[at] ^= 0x5a;
        let mut b = BatchBuilder::new(ProducerStamp::NONE, 256);
        b.push(&Record { key: Some(Bytes::from_static(b"tx-1")), ..Record::new(damaged, 1) });
        if let Ok(decoded) = decode_batch(&parse(b.finish())) {
            assert_eq!(decoded[0].transactional_id, "tx-1", "byte {at}");
        }
    }
}
