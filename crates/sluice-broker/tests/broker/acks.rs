//! Acknowledgement levels on the wire (docs/PROTOCOL.md, "Produce"): `ACKS_LEADER` is answered
//! before the commit with no offsets, a transactional batch must be `ACKS_ALL`, and an
//! `ACKS_NONE` stream gets no answers until one of its batches fails, which ends it with a
//! status naming the error.

use futures_util::stream;
use sluice_common::record::{BatchBuilder, ProducerStamp, Record, RecordBatch};
use sluice_proto::v1::{Acks, ProduceRequest, TopicConfig};
use sluice_proto::{ErrorCode, error_of};

use super::client::{
    batch, code, create_topic, fetch_from_leader, fetch_request, produce, produce_request, single_broker,
};

const TOPIC: &str = "levels";

fn at(acks: Acks, request: ProduceRequest) -> ProduceRequest {
    ProduceRequest { acks: acks.into(), ..request }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_acks_answer_without_offsets_and_a_failed_unacknowledged_batch_ends_its_stream() {
    let cluster = single_broker().await;
    let config = TopicConfig { partitions: 1, replication_factor: 1, ..Default::default() };
    assert_eq!(create_topic(&cluster, TOPIC, config).await, sluice_proto::Error::ok());
    let mut client = cluster.client(0).await;
    let one = |v: &str| batch(ProducerStamp::NONE, &[v.to_owned()], 5);

    // Warm up the lease with a committed write, so the next is answered early. A leader whose
    // lease lapsed in between (a slow machine) writes through instead and answers with offsets:
    // such a send is stored like the rest, and the next one, right behind it, is answered early.
    let first = produce(&cluster, TOPIC, 0, one("all")).await;
    assert_eq!((code(first.error.as_ref()), first.leader_only), (ErrorCode::Ok, false));
    let mut stored = vec!["all".to_owned()];
    for attempt in 0.. {
        assert!(attempt < 20, "no ACKS_LEADER answer came before the commit in 20 sends");
        let value = format!("leader {attempt}");
        let early = client.produce(at(Acks::Leader, produce_request(TOPIC, 0, one(&value)))).await;
        let early = early.expect("rpc").into_inner();
        assert_eq!(code(early.error.as_ref()), ErrorCode::Ok, "{early:?}");
        stored.push(value);
        if early.leader_only {
            assert!(early.count == 1 && early.base_offset == 0, "no offsets before the commit: {early:?}");
            break;
        }
    }

    let mut txn =
        BatchBuilder::new(ProducerStamp { producer_id: 7, epoch: 0, base_sequence: 0 }, 256).transactional(true);
    txn.push(&Record::new("in a transaction", 5));
    let refused = client.produce(at(Acks::Leader, produce_request(TOPIC, 0, txn.finish()))).await;
    let refused = error_of(refused.expect("rpc").get_ref().error.as_ref());
    assert_eq!(refused.error_code(), ErrorCode::InvalidRequest);
    assert!(refused.message.contains("ACKS_ALL"), "{refused:?}");

    let requests = [
        at(Acks::None, produce_request(TOPIC, 0, one("none 1"))),
        at(Acks::None, produce_request(TOPIC, 0, one("none 2"))),
        at(Acks::None, produce_request(TOPIC, 9, one("to no partition"))),
    ];
    let answers = client.produce_stream(stream::iter(requests)).await.expect("a stream");
    let status = answers.into_inner().message().await.expect_err("no answer, only the failure");
    assert!(status.message().contains("UNKNOWN_PARTITION"), "{status:?}");

    let fetched = fetch_from_leader(&cluster, fetch_request(TOPIC, 0, 0, 0)).await;
    let values: Vec<String> = fetched
        .batches
        .iter()
        .flat_map(|b| {
            let parsed = RecordBatch::parse(b.batch.clone()).expect("a batch");
            parsed
                .records()
                .map(|r| String::from_utf8_lossy(&r.expect("a record").value).into_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        values,
        [stored, vec!["none 1".to_owned(), "none 2".to_owned()]].concat(),
        "what was answered early and sent unacknowledged is stored"
    );
    cluster.shutdown().await;
}
