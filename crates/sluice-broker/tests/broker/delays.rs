//! Delivery times over the real API: the bound (`max_delay_ms`, 365 days by default) and
//! malformed or overflowing values are refused with INVALID_DELAY and write nothing; a time
//! just inside the bound is accepted and numbered; one in the past is released at once.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sluice_common::delay::DEFAULT_MAX_DELAY_MS;
use sluice_common::record::{BatchBuilder, DELIVER_AT_PROPERTY, ProducerStamp, Record};
use sluice_proto::v1::TopicConfig;
use sluice_proto::{Error, ErrorCode, error_of};

use super::client::{code, create_topic, fetch_from_leader, fetch_request, messages, produce, single_broker};

fn due_at(value: &str, deliver_at: &str) -> Bytes {
    let mut b = BatchBuilder::new(ProducerStamp::NONE, 128).delayed(true);
    let mut r = Record::new(value.to_owned(), 1);
    r.properties.push((DELIVER_AT_PROPERTY.into(), deliver_at.to_owned()));
    b.push(&r);
    b.finish()
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_times_beyond_the_bound_or_malformed_are_refused_and_past_ones_released_at_once() {
    let cluster = single_broker().await;
    let config = TopicConfig { partitions: 1, replication_factor: 1, ..Default::default() };
    assert_eq!(create_topic(&cluster, "later", config).await, Error::ok());

    let day = 86_400_000;
    let beyond = (now_ms() + DEFAULT_MAX_DELAY_MS + day).to_string();
    let refused = [
        (beyond.as_str(), "more than the brokers' max_delay_ms"),
        ("18446744073709551616", "message 0"),
        ("-5", "message 0"),
        ("soon", "message 0"),
    ];
    for (deliver_at, says) in refused {
        let r = produce(&cluster, "later", 0, due_at("x", deliver_at)).await;
        let e = error_of(r.error.as_ref());
        assert_eq!(e.error_code(), ErrorCode::InvalidDelay, "{deliver_at}: {e:?}");
        assert!(e.message.contains(says), "{deliver_at}: {says:?} not in {:?}", e.message);
    }

    let inside = (now_ms() + DEFAULT_MAX_DELAY_MS - day).to_string();
    let r = produce(&cluster, "later", 0, due_at("next year", &inside)).await;
    assert_eq!(code(r.error.as_ref()), ErrorCode::Ok, "{r:?}");
    assert!(r.delayed && r.delayed_base_seq == 0, "the first delayed message of the partition: {r:?}");

    let past = (now_ms() - 60_000).to_string();
    let r = produce(&cluster, "later", 0, due_at("overdue", &past)).await;
    assert!(r.delayed && r.delayed_base_seq == 1, "refused ones took no number: {r:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let fetched = fetch_from_leader(&cluster, fetch_request("later", 0, 0, 500)).await;
        let read = messages(&fetched, 0);
        if !read.is_empty() {
            assert_eq!(read, [(0, "overdue".to_owned())], "only the overdue one is visible");
            break;
        }
        assert!(Instant::now() < deadline, "a message due in the past was not released");
    }
    cluster.shutdown().await;
}
