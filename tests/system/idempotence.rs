//! Idempotent producers whose partition forgot them (docs/DURABILITY.md, "Bounded producer
//! state"): brokers forget a producer id idle for `producer_id_expiration_ms` (2 s here) and take
//! an unknown producer only from its sequence 0. A producer that idled past it carries on
//! under a new producer id without an error, and so does a group's dead-letter writer; nothing
//! is lost or written twice.

use std::time::Duration;

use sluice_client::{
    Client, ConsumedRecord, GroupConsumerConfig, OffsetReset, Producer, ProducerConfig, ProducerRecord, TopicConfig,
};
use sluice_system_tests::groups::eventually;
use sluice_system_tests::{Cluster, read_topic, within};

const TOPIC: &str = "forgetful";
const GROUP: &str = "forgetful-worker";
const EXPIRATION: Duration = Duration::from_millis(2_000);
const LIMIT: Duration = Duration::from_secs(120);

async fn send(producer: &Producer, values: &[&str]) {
    let mut deliveries = Vec::new();
    for v in values {
        deliveries.push(producer.enqueue(ProducerRecord::new(TOPIC, (*v).to_owned())).await.expect("enqueue"));
    }
    for d in deliveries {
        d.await.expect("acknowledged");
    }
}

fn values_of(records: &[ConsumedRecord]) -> Vec<String> {
    records.iter().map(|r| String::from_utf8_lossy(r.value()).into_owned()).collect()
}

/// The values in the dead-letter queue `dlq` (none before it is created).
async fn dead_letters(client: &Client, dlq: &str) -> Vec<String> {
    let topics = client.admin().list_topics().await.expect("list topics");
    if !topics.iter().any(|t| t.name == dlq) {
        return Vec::new();
    }
    let letters = read_topic(client, dlq, Duration::from_secs(10)).await;
    letters.values().flat_map(|records| values_of(records)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_and_dead_letter_writers_idle_past_their_expiration_carry_on_under_new_ids() {
    let extra = format!("producer_id_expiration_ms = {}\n", EXPIRATION.as_millis());
    let cluster = Cluster::start_with(3, &extra).await;
    within(LIMIT, "the producer expiry test", async {
        let client = cluster.client().await;
        let admin = client.admin();
        admin.create_topic(TOPIC, &TopicConfig::new(1, 3)).await.expect("create the topic");
        admin.wait_for_leaders(TOPIC, Duration::from_secs(30)).await.expect("leaders");
        let dlq = format!("{GROUP}.dlq");
        let idle = client.producer(ProducerConfig::default()).await.expect("a producer");
        let busy = client.producer(ProducerConfig::default()).await.expect("another producer");
        let mut failures = idle.failures();
        send(&idle, &["a0", "a1", "a2"]).await;

        // Expiry runs on the partition's clock, which moves with stamped writes: another
        // producer's write after the expiration makes the partition forget the idle one.
        tokio::time::sleep(EXPIRATION + Duration::from_millis(500)).await;
        send(&busy, &["b0"]).await;
        // Its next batch does not start at sequence 0: refused as unknown, resent under a new id.
        send(&idle, &["a3", "a4"]).await;
        assert!(failures.try_recv().is_err(), "no send failed");
        let read = read_topic(&client, TOPIC, Duration::from_secs(30)).await;
        assert_eq!(values_of(&read[&0]), ["a0", "a1", "a2", "b0", "a3", "a4"], "each once, in order");

        // The group's dead-letter writer idles past the expiration between two dead letters.
        let config =
            GroupConsumerConfig { auto_offset_reset: OffsetReset::Earliest, ..GroupConsumerConfig::new(GROUP) };
        let mut consumer = client.group_consumer(config).expect("a group consumer");
        consumer.subscribe(&[TOPIC]).await.expect("join");
        let mut seen = 0;
        while seen < 6 {
            for record in consumer.poll(Duration::from_millis(500)).await.expect("poll") {
                seen += 1;
                let value = String::from_utf8_lossy(record.value()).into_owned();
                if value.starts_with('b') {
                    continue; // processed: acknowledged by the commit
                }
                consumer.reject(&record, "rejected by the test").expect("reject");
                if value == "a1" {
                    consumer.flush_settles().await.expect("send the rejects");
                    eventually(Duration::from_secs(30), "two dead letters", || async {
                        let got = dead_letters(&client, &dlq).await;
                        if got.len() == 2 { Ok(()) } else { Err(format!("dead letters {got:?}")) }
                    })
                    .await;
                    tokio::time::sleep(EXPIRATION + Duration::from_millis(500)).await;
                }
            }
        }
        consumer.commit().await.expect("commit");
        eventually(Duration::from_secs(30), "every rejected message dead-lettered once", || async {
            let got = dead_letters(&client, &dlq).await;
            if got == ["a0", "a1", "a2", "a3", "a4"] { Ok(()) } else { Err(format!("dead letters {got:?}")) }
        })
        .await;
        consumer.close().await.expect("leave the group");
    })
    .await;
}
