//! Exactly-once consume-transform-produce against three broker processes
//! (docs/TRANSACTIONS.md): a processor reads a topic in a consumer group and, per poll, writes
//! its results and the group's offsets in one transaction. Its first instance is dropped in the
//! middle of a transaction (its records written, not committed); a second instance with the same
//! transactional id fences it, aborts what it left, and carries on from the committed offsets.
//! A `read_committed` reader of the output then finds every input exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use sluice_client::{
    Client, GroupConsumerConfig, OffsetReset, ProducerConfig, ProducerRecord, TopicConfig, TopicPartition,
    TransactionalConfig,
};
use sluice_system_tests::{Cluster, read_topic, within};

const INPUT: &str = "eos-in";
const OUTPUT: &str = "eos-out";
const GROUP: &str = "eos-processor";
const MESSAGES: usize = 2_000;
/// Inputs processed per transaction.
const PER_TRANSACTION: usize = 100;
const LIMIT: Duration = Duration::from_secs(240);

/// Reads, transforms and writes in transactions until `stop_after` inputs were processed (then
/// returns, leaving its last transaction open, records written: a crash) or every input was.
async fn process(client: &Client, stop_after: Option<usize>, done: &mut usize) {
    let config = GroupConsumerConfig {
        auto_commit: false,
        auto_offset_reset: OffsetReset::Earliest,
        ..GroupConsumerConfig::new(GROUP)
    };
    let mut consumer = client.group_consumer(config).expect("group consumer");
    consumer.subscribe(&[INPUT]).await.expect("subscribe");
    let mut producer = client.transactional_producer(TransactionalConfig::new("eos-processor-1")).await.expect("init");
    let deadline = Instant::now() + Duration::from_secs(120);
    while *done < MESSAGES {
        assert!(Instant::now() < deadline, "processed only {done} of {MESSAGES} inputs in 120 s");
        let records = consumer.poll(Duration::from_millis(500)).await.expect("poll");
        if records.is_empty() {
            continue;
        }
        for chunk in records.chunks(PER_TRANSACTION) {
            producer.begin().expect("begin");
            let mut offsets = BTreeMap::new();
            for r in chunk {
                let out = format!("out:{}", String::from_utf8_lossy(r.value()));
                producer.send(ProducerRecord::new(OUTPUT, out).key(r.value().clone())).await.expect("send");
                offsets.insert(TopicPartition::new(INPUT, r.partition()), r.offset() + 1);
            }
            producer.send_offsets(GROUP, &offsets).await.expect("send offsets");
            if stop_after.is_some_and(|n| *done + chunk.len() >= n) {
                producer.flush().await.expect("flush");
                eprintln!("dropping the processor in the middle of a transaction of {} records", chunk.len());
                return; // the transaction stays open: its records are written, not committed
            }
            producer.commit().await.expect("commit");
            *done += chunk.len();
        }
    }
    consumer.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_processor_is_replaced_without_losing_or_duplicating_an_output() {
    let mut cluster = Cluster::start(3).await;
    within(LIMIT, "the exactly-once test", async {
        let client = cluster.client().await;
        for topic in [INPUT, OUTPUT] {
            client.admin().create_topic(topic, &TopicConfig::new(2, 3)).await.expect("create");
            client.admin().wait_for_leaders(topic, Duration::from_secs(30)).await.expect("leaders");
        }
        let producer = client.producer(ProducerConfig::default()).await.expect("producer");
        for i in 0..MESSAGES {
            producer.enqueue(ProducerRecord::new(INPUT, format!("{i:05}"))).await.expect("enqueue");
        }
        producer.flush().await;

        let mut done = 0;
        process(&client, Some(MESSAGES / 2), &mut done).await;
        eprintln!("first instance committed {done} inputs; a second instance takes over");
        // The second instance starts from the committed offsets: it has the rest to do, the
        // inputs of the transaction the first left open included.
        process(&client, None, &mut done).await;
        let out = read_topic(&client, OUTPUT, Duration::from_secs(60)).await;
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for r in out.values().flatten() {
            *seen.entry(String::from_utf8_lossy(r.value()).into_owned()).or_default() += 1;
        }
        let expected: BTreeSet<String> = (0..MESSAGES).map(|i| format!("out:{i:05}")).collect();
        let duplicated: Vec<&String> = seen.iter().filter(|(_, n)| **n > 1).map(|(v, _)| v).collect();
        assert!(
            duplicated.is_empty(),
            "{} outputs appear more than once, e.g. {:?}",
            duplicated.len(),
            &duplicated[..duplicated.len().min(5)]
        );
        let got: BTreeSet<String> = seen.into_keys().collect();
        let missing: Vec<&String> = expected.difference(&got).collect();
        assert!(
            missing.is_empty(),
            "{} outputs are missing, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        assert_eq!(got, expected);
    })
    .await;
    cluster.stop_all().await;
}
