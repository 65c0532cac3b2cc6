//! The SDK against an in-process fake cluster (`sdk/fake.rs`) that speaks the client protocol:
//! routing, retries, idempotent delivery, back-pressure, consumer positions and errors. The
//! same tests against real brokers belong with the broker's end-to-end suite.

#[path = "sdk/fake.rs"]
mod fake;

use std::time::Duration;

use fake::FakeCluster;
use sluice_client::partitioner::partition_for_key;
use sluice_client::{
    Client, ClientConfig, ConsumedRecord, Consumer, ConsumerConfig, Error, ErrorCode, ProducerConfig, ProducerRecord,
    SeekTo, TopicConfig, TopicConfigChanges,
};
use sluice_common::record::{Compression, TopicCompression};

/// Every wait in these tests ends within this.
const WAIT: Duration = Duration::from_secs(20);

/// A client bootstrapped from the first fake broker only, with short timeouts.
async fn connect(cluster: &FakeCluster) -> Client {
    let config = ClientConfig {
        request_timeout: Duration::from_secs(2),
        operation_timeout: Duration::from_secs(5),
        retry_backoff_min: Duration::from_millis(5),
        retry_backoff_max: Duration::from_millis(50),
        ..ClientConfig::new([cluster.addresses[0].clone()])
    };
    Client::connect(config).await.expect("the fake cluster answers")
}

/// Polls until `count` records arrived.
async fn read(consumer: &mut Consumer, count: usize) -> Vec<ConsumedRecord> {
    let mut records = Vec::new();
    tokio::time::timeout(WAIT, async {
        while records.len() < count {
            records.extend(consumer.poll(Duration::from_millis(200)).await.expect("poll"));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {count} records arrived", records.len()));
    records
}

async fn earliest_consumer(client: &Client, topic: &str) -> Consumer {
    let mut consumer =
        client.consumer(ConsumerConfig { start: SeekTo::Earliest, ..ConsumerConfig::default() }).unwrap();
    consumer.assign(topic, &[]).await.unwrap();
    consumer
}

#[tokio::test]
async fn records_round_trip_with_every_field_and_keys_keep_their_partition() {
    let cluster = FakeCluster::start(3).await;
    cluster.create("orders", 3, 1);
    // Each partition led by another broker: the client must route by partition.
    cluster
        .with(|s| s.topics.get_mut("orders").unwrap().partitions.iter_mut().zip(1..).for_each(|(p, n)| p.leader = n));
    let client = connect(&cluster).await;
    let producer = client.producer(ProducerConfig::default()).await.unwrap();
    let mut deliveries = Vec::new();
    for i in 0..30 {
        let record = ProducerRecord::new("orders", format!("value-{i}"))
            .key(format!("k{}", i % 5))
            .tag("created")
            .property("i", i.to_string())
            .timestamp_ms(1_000 + i);
        deliveries.push(producer.enqueue(record).await.unwrap());
    }
    producer.flush().await;
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let written = tokio::time::timeout(WAIT, delivery).await.unwrap().unwrap();
        assert_eq!(written.partition, partition_for_key(format!("k{}", i % 5).as_bytes(), 3));
    }

    let mut consumer = earliest_consumer(&client, "orders").await;
    let records = read(&mut consumer, 30).await;
    assert_eq!(records.len(), 30);
    for partition in 0..3 {
        let mine: Vec<&ConsumedRecord> = records.iter().filter(|r| r.partition() == partition).collect();
        let offsets: Vec<u64> = mine.iter().map(|r| r.offset()).collect();
        assert_eq!(offsets, (0..mine.len() as u64).collect::<Vec<_>>(), "dense offsets in partition {partition}");
        let sent_order: Vec<i64> = mine.iter().map(|r| r.timestamp_ms()).collect();
        assert!(sent_order.windows(2).all(|w| w[0] < w[1]), "send order kept in partition {partition}");
        assert_eq!(consumer.position(partition), Some(mine.len() as u64));
    }
    let first = records.iter().find(|r| r.timestamp_ms() == 1_000).unwrap();
    assert_eq!((first.topic(), first.tag(), &first.value()[..]), ("orders", Some("created"), &b"value-0"[..]));
    assert_eq!(first.key().map(|k| &k[..]), Some(&b"k0"[..]));
    assert_eq!(first.properties().collect::<Vec<_>>(), [("i", "0")]);
}

#[tokio::test]
async fn a_lost_acknowledgement_is_retried_and_written_once() {
    let cluster = FakeCluster::start(1).await;
    cluster.create("t", 1, 1);
    let client = connect(&cluster).await;
    let producer = client.producer(ProducerConfig::default()).await.unwrap();
    cluster.with(|s| s.lose_acks = 1);
    let first = tokio::time::timeout(WAIT, producer.send(ProducerRecord::new("t", "a"))).await.unwrap().unwrap();
    let second = tokio::time::timeout(WAIT, producer.send(ProducerRecord::new("t", "b"))).await.unwrap().unwrap();
    assert_eq!((first.offset, second.offset), (0, 1), "the retry was recognised as a duplicate");
    cluster.with(|s| {
        assert_eq!(s.produce_requests, 3, "one request was sent twice");
        assert_eq!(s.topics["t"].partitions[0].end, 2, "nothing was written twice");
    });
}

/// A retry refused UNKNOWN_TOPIC may follow an attempt that was written (a restarted leader's
/// metadata lags): the batch is retried, not failed as certainly unwritten. Found by
/// `sluice-jepsen` (jepsen/FINDINGS.md, F1).
#[tokio::test]
async fn an_unknown_topic_answer_to_a_retry_is_retried_not_reported_as_unwritten() {
    let cluster = FakeCluster::start(1).await;
    cluster.create("t", 1, 1);
    let client = connect(&cluster).await;
    let producer = client.producer(ProducerConfig::default()).await.unwrap();
    cluster.with(|s| {
        s.lose_acks = 1;
        s.unknown_after_lost_ack = 2;
    });
    let sent = tokio::time::timeout(WAIT, producer.send(ProducerRecord::new("t", "a"))).await.unwrap();
    assert_eq!(sent.expect("written once, acknowledged by the last retry").offset, 0);
    cluster.with(|s| {
        assert_eq!(s.produce_requests, 4, "the written attempt, two refusals, the deduplicated retry");
        assert_eq!(s.topics["t"].partitions[0].end, 1, "nothing was written twice");
    });
    // A batch that was never sent before is refused for good.
    cluster.with(|s| s.unknown_answers = 1);
    let refused = tokio::time::timeout(WAIT, producer.send(ProducerRecord::new("t", "b"))).await.unwrap();
    assert_eq!(refused.unwrap_err().code(), Some(ErrorCode::UnknownTopic));
}

/// A leader that stops answering (paused, or cut off one way) does not break the stream; the
/// producer notices the new leader in metadata within about a second, well before its request
/// timeout, and the batch is written once.
#[tokio::test]
async fn a_silent_leader_is_left_for_the_new_one_before_the_request_timeout() {
    leave_a_silent_leader(false).await;
}

/// Checks that a producer whose leader went silent finds the new leader even when the silent
/// broker is also the controller and, cut off from the others, still names itself the leader:
/// the producer asks the other brokers first.
#[tokio::test]
async fn a_silent_leader_that_is_also_the_controller_does_not_keep_the_producer() {
    leave_a_silent_leader(true).await;
}

/// On two brokers, broker 1 (the controller) leads the partition and stops answering produce
/// requests, and broker 2 takes the partition over once broker 1 holds a batch; with `cut_off`,
/// broker 1 also goes on answering metadata as it was before. The held batch must reach broker 2
/// within 5 s (the request timeout is 30 s) and be written once.
async fn leave_a_silent_leader(cut_off: bool) {
    let cluster = FakeCluster::start(2).await;
    cluster.create("t", 1, 1);
    let config =
        ClientConfig { request_timeout: Duration::from_secs(30), ..ClientConfig::new([cluster.addresses[0].clone()]) };
    let client = Client::connect(config).await.unwrap();
    let producer = client.producer(ProducerConfig::default()).await.unwrap();
    producer.send(ProducerRecord::new("t", "before")).await.unwrap();
    if cut_off {
        cluster.cut_off(1);
    }
    cluster.with(|s| s.stall_node = Some(1));
    let started = std::time::Instant::now();
    let delivery = producer.enqueue(ProducerRecord::new("t", "during")).await.unwrap();
    // The leader moves only once the batch is stuck at the silent broker: that is the case tested.
    tokio::time::timeout(WAIT, async {
        while cluster.with(|s| s.held_requests) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the batch reached the silent broker");
    cluster.with(|s| {
        let p = &mut s.topics.get_mut("t").unwrap().partitions[0];
        p.leader = 2;
        p.term += 1;
    });
    let written = tokio::time::timeout(WAIT, delivery).await.expect("delivered").expect("written");
    let took = started.elapsed();
    assert_eq!(written.offset, 1);
    assert!(took < Duration::from_secs(5), "moved to the new leader after {took:?}, not the 30 s request timeout");
    cluster.with(|s| s.stall_node = None);
    cluster.with(|s| assert_eq!(s.topics["t"].partitions[0].end, 2, "written once"));
}

#[tokio::test]
async fn producers_and_consumers_follow_a_moved_leader() {
    let cluster = FakeCluster::start(3).await;
    cluster.create("t", 1, 1);
    let client = connect(&cluster).await;
    let producer = client.producer(ProducerConfig::default()).await.unwrap();
    let mut consumer = earliest_consumer(&client, "t").await;
    producer.send(ProducerRecord::new("t", "before")).await.unwrap();
    assert_eq!(read(&mut consumer, 1).await.len(), 1);

    cluster.with(|s| {
        let p = &mut s.topics.get_mut("t").unwrap().partitions[0];
        (p.leader, p.term) = (3, 2);
    });
    let moved = tokio::time::timeout(WAIT, producer.send(ProducerRecord::new("t", "after"))).await.unwrap().unwrap();
    assert_eq!(moved.offset, 1);
    let records = read(&mut consumer, 1).await;
    assert_eq!((records[0].offset(), &records[0].value()[..]), (1, &b"after"[..]));
}

#[tokio::test]
async fn admin_calls_find_the_controller_alter_topics_and_describe_offsets() {
    let cluster = FakeCluster::start(3).await;
    let client = connect(&cluster).await;
    let admin = client.admin();
    cluster.with(|s| s.controller = 3); // the client still believes node 1 leads
    admin.create_topic("events", &TopicConfig::new(2, 3).retention_ms(60_000)).await.unwrap();
    let info = admin.wait_for_leaders("events", WAIT).await.unwrap();
    assert_eq!(info.partitions.len(), 2);
    assert_eq!(info.config.retention_ms, Some(60_000));
    let again = admin.create_topic("events", &TopicConfig::new(2, 3)).await.unwrap_err();
    assert_eq!(again.code(), Some(ErrorCode::TopicExists));

    let producer = client.producer(ProducerConfig::default()).await.unwrap();
    for _ in 0..3 {
        producer.send(ProducerRecord::new("events", "x").partition(1)).await.unwrap();
    }
    let described = admin.describe_topic("events").await.unwrap();
    let ends: Vec<_> =
        described.partitions.iter().map(|p| (p.log_start_offset.clone(), p.log_end_offset.clone())).collect();
    assert_eq!(ends, [(Ok(0), Ok(0)), (Ok(0), Ok(3))]);
    let names: Vec<String> = admin.list_topics().await.unwrap().iter().map(|t| t.name.clone()).collect();
    assert_eq!(names, ["events"]);
    let status = admin.cluster_status().await.unwrap();
    assert_eq!((status.controller_id, status.brokers.len()), (Some(3), 3));
    assert_eq!(status.brokers.iter().map(|b| b.partition_leaders).sum::<usize>(), 2);

    let zstd = TopicCompression::Codec(Compression::Zstd);
    let changes = TopicConfigChanges::new().clear_retention_ms().max_message_bytes(100).compression(zstd);
    let altered = admin.alter_topic_config("events", &changes).await.unwrap();
    assert_eq!(
        (altered.previous.retention_ms, altered.previous.compression),
        (Some(60_000), TopicCompression::Producer)
    );
    let now = &altered.topic.config;
    assert_eq!((now.retention_ms, now.max_message_bytes, now.compression), (None, Some(100), zstd));
    assert_eq!(admin.describe_topic("events").await.unwrap().config.compression, zstd);
    let missing = admin.alter_topic_config("nope", &changes).await.unwrap_err();
    assert_eq!(missing.code(), Some(ErrorCode::UnknownTopic), "{missing}");
    let nothing = admin.alter_topic_config("events", &TopicConfigChanges::new()).await.unwrap_err();
    assert!(matches!(nothing, Error::InvalidArgument(_)), "{nothing}");

    admin.delete_topic("events").await.unwrap();
    let gone = admin.describe_topic("events").await.unwrap_err();
    assert_eq!(gone.code(), Some(ErrorCode::UnknownTopic), "{gone}");
    assert!(matches!(admin.create_topic("bad name", &TopicConfig::new(1, 1)).await, Err(Error::InvalidArgument(_))));
}

#[tokio::test]
async fn send_waits_while_the_buffer_is_full() {
    let cluster = FakeCluster::start(1).await;
    cluster.create("t", 1, 1);
    let client = connect(&cluster).await;
    let config = ProducerConfig { max_batch_bytes: 1024, buffer_memory_bytes: 4096, ..ProducerConfig::default() };
    let producer = client.producer(config).await.unwrap();
    cluster.with(|s| s.stall_produce = true);
    let record = || ProducerRecord::new("t", vec![b'x'; 900]);
    let mut deliveries = Vec::new();
    while producer.available_buffer_bytes() >= 1000 {
        deliveries.push(producer.enqueue(record()).await.unwrap());
    }
    let blocked = {
        let producer = producer.clone();
        tokio::spawn(async move { producer.enqueue(record()).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!blocked.is_finished(), "a full buffer makes send wait");
    cluster.with(|s| s.stall_produce = false);
    deliveries.push(tokio::time::timeout(WAIT, blocked).await.unwrap().unwrap().unwrap());
    producer.flush().await;
    for (i, delivery) in deliveries.into_iter().enumerate() {
        assert_eq!(delivery.try_result().expect("flushed").unwrap().offset, i as u64);
    }
    assert_eq!(producer.available_buffer_bytes(), 4096, "acknowledged records release their memory");
}

#[tokio::test]
async fn fatal_errors_reach_the_caller_with_what_to_do() {
    let cluster = FakeCluster::start(1).await;
    cluster.create("t", 1, 1);
    cluster.with(|s| s.topics.get_mut("t").unwrap().config.max_message_bytes = Some(100));
    let client = connect(&cluster).await;
    let producer = client.producer(ProducerConfig::default()).await.unwrap();

    let unknown = producer.send(ProducerRecord::new("nope", "x")).await.unwrap_err();
    assert_eq!(unknown.code(), Some(ErrorCode::UnknownTopic));
    assert!(unknown.to_string().contains("sluice topic create"), "{unknown}");
    let partition = producer.send(ProducerRecord::new("t", "x").partition(7)).await.unwrap_err();
    assert_eq!(partition.code(), Some(ErrorCode::UnknownPartition));
    let large = producer.send(ProducerRecord::new("t", vec![0u8; 101])).await.unwrap_err();
    assert!(matches!(large, Error::RecordTooLarge { size: 101, limit: 100, .. }), "{large}");
    producer.send(ProducerRecord::new("t", "fits")).await.unwrap();

    let mut consumer = earliest_consumer(&client, "t").await;
    consumer.seek(0, SeekTo::Offset(10)).await.unwrap();
    let error = tokio::time::timeout(WAIT, consumer.poll(Duration::from_secs(1))).await.unwrap().unwrap_err();
    assert!(matches!(error, Error::OffsetOutOfRange { offset: 10, high_watermark: 1, .. }), "{error}");
    consumer.seek(0, SeekTo::Latest).await.unwrap();
    assert_eq!(consumer.position(0), Some(1));

    producer.close().await;
    assert!(matches!(producer.send(ProducerRecord::new("t", "late")).await, Err(Error::Closed)));
}

#[tokio::test]
async fn seek_by_time_finds_the_first_record_at_or_after_it() {
    let cluster = FakeCluster::start(1).await;
    cluster.create("t", 1, 1);
    let client = connect(&cluster).await;
    let producer = client.producer(ProducerConfig::default()).await.unwrap();
    for ts in [1_000, 2_000, 3_000] {
        producer.send(ProducerRecord::new("t", "x").timestamp_ms(ts)).await.unwrap();
    }
    let mut consumer = client.consumer(ConsumerConfig::default()).unwrap();
    consumer.assign("t", &[0]).await.unwrap();
    assert_eq!(consumer.seek(0, SeekTo::Timestamp(1_500)).await.unwrap(), 1);
    let records = read(&mut consumer, 2).await;
    assert_eq!(records.iter().map(ConsumedRecord::offset).collect::<Vec<_>>(), [1, 2]);
}

#[tokio::test]
async fn unreachable_bootstrap_brokers_are_reported_with_the_fix() {
    // Port 1 on loopback refuses connections at once.
    let error = Client::connect(ClientConfig::new(["127.0.0.1:1"])).await.err().expect("nothing listens there");
    assert!(matches!(error, Error::NoBroker { .. }));
    let text = error.to_string();
    assert!(text.starts_with("cannot reach any bootstrap broker at 127.0.0.1:1"), "{text}");
    assert!(text.contains("scripts/start-cluster.sh"), "{text}");
}
