//! Compressed batches against three broker processes (docs/FORMAT.md, "Compressed batches"):
//! one producer per codec and an uncompressed one write to the same RF-3 topic; a consumer in
//! assign mode and a group of two members read back every message once, at its acknowledged
//! offset, with its key, tag, properties and value; tag and SQL filters over the compressed
//! batches deliver exactly the matching messages.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_client::{
    Compression, ConsumedRecord, GroupConsumerConfig, MessageFilter, OffsetReset, ProducerConfig, ProducerRecord,
    RecordMetadata, TopicConfig,
};
use sluice_system_tests::groups::{Member, eventually};
use sluice_system_tests::{Cluster, read_topic_filtered, within};

const TOPIC: &str = "compressed";
const PARTITIONS: u32 = 3;
/// Messages per codec.
const PER_CODEC: usize = 2_000;
const LIMIT: Duration = Duration::from_secs(180);

/// Message `n` of `codec`'s value.
fn value_of(codec: Compression, n: usize) -> String {
    format!("{{\"codec\":\"{codec}\",\"n\":{n},\"text\":\"{}\"}}", "lorem ipsum ".repeat(n % 20))
}

/// Message `n` of `codec`'s key.
fn key_of(codec: Compression, n: usize) -> String {
    format!("{codec}-{}", n % 50)
}

fn record(topic: &Arc<str>, codec: Compression, n: usize) -> ProducerRecord {
    ProducerRecord::new(Arc::clone(topic), value_of(codec, n))
        .key(key_of(codec, n))
        .tag(codec.name())
        .property("n", n.to_string())
}

/// The acknowledged place of every message, by (codec, n).
type Acked = HashMap<(Compression, usize), RecordMetadata>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_round_trips_through_assign_and_group_consumers_and_filters() {
    let cluster = Cluster::start(3).await;
    within(LIMIT, "the compression round trips", async {
        let client = cluster.client().await;
        client.admin().create_topic(TOPIC, &TopicConfig::new(PARTITIONS, 3)).await.expect("create the topic");
        client.admin().wait_for_leaders(TOPIC, Duration::from_secs(30)).await.expect("leaders");
        let acked = produce_every_codec(&client).await;

        let read = read_topic_filtered(&client, TOPIC, None, Duration::from_secs(60)).await;
        let all: Vec<&ConsumedRecord> = read.values().flatten().collect();
        check(&all, &acked, |_, _| true, "assign mode");

        let tags = MessageFilter::tags("zstd || lz4");
        let read = read_topic_filtered(&client, TOPIC, Some(tags), Duration::from_secs(60)).await;
        let tagged: Vec<&ConsumedRecord> = read.values().flatten().collect();
        check(&tagged, &acked, |c, _| matches!(c, Compression::Zstd | Compression::Lz4), "tag filter");

        let sql = MessageFilter::sql("n < 100 AND TAGS <> 'none'");
        let read = read_topic_filtered(&client, TOPIC, Some(sql), Duration::from_secs(60)).await;
        let few: Vec<&ConsumedRecord> = read.values().flatten().collect();
        check(&few, &acked, |c, n| n < 100 && c != Compression::None, "SQL filter");

        group_reads_everything_once(&client, &acked).await;
    })
    .await;
}

async fn produce_every_codec(client: &sluice_client::Client) -> Acked {
    let topic: Arc<str> = Arc::from(TOPIC);
    let mut acked = HashMap::new();
    for codec in Compression::ALL {
        let config = ProducerConfig { compression: codec, ..ProducerConfig::default() };
        let producer = client.producer(config).await.expect("a producer");
        let mut deliveries = Vec::with_capacity(PER_CODEC);
        for n in 0..PER_CODEC {
            deliveries.push(producer.enqueue(record(&topic, codec, n)).await.expect("enqueue"));
        }
        for (n, d) in deliveries.into_iter().enumerate() {
            let at = d.await.unwrap_or_else(|e| panic!("{codec} message {n} not acknowledged: {e}"));
            acked.insert((codec, n), at);
        }
    }
    acked
}

/// Which message `r` is, checking every field against what was sent.
fn identify(r: &ConsumedRecord) -> (Compression, usize) {
    let codec = Compression::from_name(r.tag().expect("every message has a tag")).expect("a codec's name");
    let n: usize = r.properties().find(|(k, _)| *k == "n").and_then(|(_, v)| v.parse().ok()).expect("property n");
    assert_eq!(&r.value()[..], value_of(codec, n).as_bytes(), "{codec} message {n}: the value");
    assert_eq!(r.key().map(|k| &k[..]), Some(key_of(codec, n).as_bytes()), "{codec} message {n}: the key");
    (codec, n)
}

/// `read` holds exactly the messages `matches` selects, once each, at their acknowledged places.
fn check(read: &[&ConsumedRecord], acked: &Acked, matches: impl Fn(Compression, usize) -> bool, what: &str) {
    let mut seen = HashMap::new();
    for r in read {
        let id = identify(r);
        assert!(matches(id.0, id.1), "{what}: {id:?} does not match but was read");
        let at = RecordMetadata { partition: r.partition(), offset: r.offset(), delayed_id: None };
        assert_eq!(acked.get(&id), Some(&at), "{what}: {id:?} read where it was not acknowledged");
        assert!(seen.insert(id, ()).is_none(), "{what}: {id:?} read twice");
    }
    let want = acked.keys().filter(|(c, n)| matches(*c, *n)).count();
    assert_eq!(seen.len(), want, "{what}: every matching message read");
    eprintln!("{what}: {want} messages read back exactly");
}

async fn group_reads_everything_once(client: &sluice_client::Client, acked: &Acked) {
    let config = GroupConsumerConfig { auto_offset_reset: OffsetReset::Earliest, ..GroupConsumerConfig::new("codecs") };
    let members =
        [Member::join(client, "m1", config.clone(), TOPIC).await, Member::join(client, "m2", config, TOPIC).await];
    eventually(Duration::from_secs(60), "the group reads every message", || {
        let got: usize = members.iter().map(|m| m.view().records.len()).sum();
        async move { if got >= acked.len() { Ok(()) } else { Err(format!("{got} of {}", acked.len())) } }
    })
    .await;
    let mut seen: HashMap<(u32, u64), ()> = HashMap::new();
    for member in members {
        for place in member.close().await.records {
            assert!(seen.insert(place, ()).is_none(), "the group read {place:?} twice");
        }
    }
    let places: Vec<(u32, u64)> = acked.values().map(|m| (m.partition, m.offset)).collect();
    assert!(places.iter().all(|p| seen.contains_key(p)), "the group read every acknowledged message");
    assert_eq!(seen.len(), acked.len(), "and nothing else");
}
