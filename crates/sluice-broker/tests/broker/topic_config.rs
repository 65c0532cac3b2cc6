//! A topic's settings over the client API, created and altered while it runs: a `compression`
//! given at creation is described back; `AlterTopicConfig` lowers `max_message_bytes` and the
//! next produce of a larger message is refused, changes compression and retention and every
//! broker's metadata shows them, and retention altered on a topic created without any trims its
//! partition with no restart. Settings that cannot be altered, contradictory or empty changes,
//! unknown codecs, internal and unknown topics are refused with the codes that say so.

use std::time::Duration;

use bytes::Bytes;
use sluice_broker::BrokerConfig;
use sluice_common::record::ProducerStamp;
use sluice_proto::v1::list_offsets_request::At;
use sluice_proto::v1::{
    AlterTopicConfigRequest, AlterTopicConfigResponse, CreateTopicRequest, CreateTopicResponse, Empty,
    ListOffsetsRequest, MetadataRequest, TopicConfig, TopicConfigChanges,
};
use sluice_proto::{Error, ErrorCode, error_of};
use sluice_storage::Retention;

use super::client::{admin, ask_leader, batch, code, produce, wait_live};
use super::cluster::{Cluster, eventually, unless_retriable};

const TOPIC: &str = "tuned";
/// How long a change may take to reach every broker, or retention to trim.
const LIMIT: Duration = Duration::from_secs(30);
/// The limit the test lowers `max_message_bytes` to.
const SMALL_MESSAGE_BYTES: u32 = 200;
/// The `retention_bytes` altered in: well below what the test writes.
const RETENTION_BYTES: u64 = 2_000;

fn fast_retention(config: &mut BrokerConfig) {
    config.retention_check_ms = 100;
    // Segments roll this often, so the writes below seal many of them for retention to trim.
    config.segment_roll_ms = 150;
}

async fn create(cluster: &Cluster, name: &str, compression: Option<&str>) -> CreateTopicResponse {
    let config = TopicConfig {
        partitions: 1,
        replication_factor: 3,
        compression: compression.map(Into::into),
        ..TopicConfig::default()
    };
    admin(cluster, |mut c| {
        let request = CreateTopicRequest { name: name.into(), config: Some(config.clone()) };
        async move {
            let r = c.create_topic(request).await.expect("rpc").into_inner();
            (error_of(r.error.as_ref()), r)
        }
    })
    .await
    .1
}

/// Alters `name` through the controller leader, following `NOT_CONTROLLER` hints.
async fn alter(cluster: &Cluster, name: &str, changes: TopicConfigChanges) -> AlterTopicConfigResponse {
    admin(cluster, |mut c| {
        let request = AlterTopicConfigRequest { name: name.into(), changes: Some(changes.clone()) };
        async move {
            let r = c.alter_topic_config(request).await.expect("rpc").into_inner();
            (error_of(r.error.as_ref()), r)
        }
    })
    .await
    .1
}

/// Alters `name` with `changes`, expecting `expected`; returns the answer's message.
async fn refused(cluster: &Cluster, name: &str, changes: TopicConfigChanges, expected: ErrorCode) -> String {
    let e = error_of(alter(cluster, name, changes).await.error.as_ref());
    assert_eq!(e.error_code(), expected, "{e:?}");
    e.message
}

/// Waits until every broker's metadata has `TOPIC` with a config that `wanted` accepts.
async fn every_broker_describes(cluster: &Cluster, what: &str, wanted: impl Fn(&TopicConfig) -> bool) {
    for i in 0..cluster.brokers.len() {
        eventually(LIMIT, &format!("broker {i} to describe {what}"), || async {
            let request = MetadataRequest { topics: vec![TOPIC.into()] };
            let m = cluster.client(i).await.metadata(request).await.map_err(|s| s.to_string())?.into_inner();
            unless_retriable(m.error.as_ref())?;
            let config = m.topics.first().and_then(|t| t.config.clone());
            config.filter(|c| wanted(c)).map(drop).ok_or_else(|| format!("described {:?}", m.topics.first()))
        })
        .await;
    }
}

fn message_of(len: usize) -> Bytes {
    batch(ProducerStamp::NONE, &["x".repeat(len)], 1_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_topics_settings_are_altered_and_every_broker_applies_them_without_a_restart() {
    let cluster = Cluster::start_adjusted(3, fast_retention).await;
    wait_live(&cluster, 3).await;

    tracing::info!("--- a topic created with compression zstd describes it; unknown codecs are refused");
    let created = create(&cluster, TOPIC, Some("zstd")).await;
    assert_eq!(error_of(created.error.as_ref()), Error::ok());
    let config = created.topic.and_then(|t| t.config).expect("the created topic's config");
    assert_eq!(config.compression.as_deref(), Some("zstd"));
    let brotli = error_of(create(&cluster, "brotli", Some("brotli")).await.error.as_ref());
    assert_eq!(brotli.error_code(), ErrorCode::InvalidConfig, "{brotli:?}");
    assert!(brotli.message.contains("producer, none, gzip, snappy, lz4 or zstd"), "{}", brotli.message);
    every_broker_describes(&cluster, "compression zstd", |c| c.compression.as_deref() == Some("zstd")).await;

    lowered_max_message_bytes_refuses_larger_messages(&cluster).await;
    altered_retention_trims_and_compression_is_described_everywhere(&cluster).await;
    what_cannot_be_altered_is_refused(&cluster).await;
    cluster.shutdown().await;
}

async fn lowered_max_message_bytes_refuses_larger_messages(cluster: &Cluster) {
    tracing::info!("--- a message of 500 bytes is accepted; max_message_bytes is lowered to 200");
    let large = message_of(500);
    assert_eq!(code(produce(cluster, TOPIC, 0, large.clone()).await.error.as_ref()), ErrorCode::Ok);
    let changes = TopicConfigChanges { max_message_bytes: Some(SMALL_MESSAGE_BYTES), ..TopicConfigChanges::default() };
    let altered = alter(cluster, TOPIC, changes).await;
    assert_eq!(error_of(altered.error.as_ref()), Error::ok());
    assert_eq!(altered.previous.and_then(|c| c.max_message_bytes), Some(1024 * 1024));
    let now = altered.topic.and_then(|t| t.config).expect("the altered topic's config");
    assert_eq!((now.max_message_bytes, now.compression.as_deref()), (Some(SMALL_MESSAGE_BYTES), Some("zstd")));

    tracing::info!("--- the partition's leader refuses the same message once it has applied the change");
    // Until then (the leader may be another broker than the controller's) it still accepts it.
    let refusal = eventually(LIMIT, "a 500-byte message refused", || async {
        let r = produce(cluster, TOPIC, 0, large.clone()).await;
        match error_of(r.error.as_ref()) {
            e if e.error_code() == ErrorCode::MessageTooLarge => Ok(e),
            e => Err(format!("answered {e:?}")),
        }
    })
    .await;
    assert!(refusal.message.contains("max_message_bytes"), "{}", refusal.message);
    assert_eq!(code(produce(cluster, TOPIC, 0, message_of(50)).await.error.as_ref()), ErrorCode::Ok);
}

async fn altered_retention_trims_and_compression_is_described_everywhere(cluster: &Cluster) {
    tracing::info!("--- writes over a few seconds seal segments; the topic keeps them all (no retention)");
    for _ in 0..60 {
        assert_eq!(code(produce(cluster, TOPIC, 0, message_of(150)).await.error.as_ref()), ErrorCode::Ok);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(earliest(cluster).await, 0, "nothing trimmed before the change");

    tracing::info!("--- compression lz4 and retention_bytes are altered in; every broker describes them");
    let changes = TopicConfigChanges {
        retention_bytes: Some(RETENTION_BYTES),
        compression: Some("lz4".into()),
        ..TopicConfigChanges::default()
    };
    let altered = alter(cluster, TOPIC, changes).await;
    assert_eq!(error_of(altered.error.as_ref()), Error::ok());
    let previous = altered.previous.expect("the settings before");
    assert_eq!((previous.retention_bytes, previous.compression.as_deref()), (None, Some("zstd")));
    every_broker_describes(cluster, "lz4 and retention_bytes", |c| {
        c.compression.as_deref() == Some("lz4")
            && c.retention_bytes == Some(RETENTION_BYTES)
            && c.max_message_bytes == Some(SMALL_MESSAGE_BYTES)
    })
    .await;

    tracing::info!("--- every replica's log takes the new limit, and the leader trims: the log start moves");
    let group = cluster.brokers[0].controller().metadata().read(|m| m.topic(TOPIC).map(|t| t.partitions[0].group_id));
    let wanted = Retention { max_age: None, max_bytes: Some(RETENTION_BYTES) };
    cluster
        .wait_for(LIMIT, "every replica's log under the new retention", |c| {
            c.brokers
                .iter()
                .all(|b| b.partitions().log(group.expect("applied")).is_some_and(|l| l.retention() == wanted))
        })
        .await;
    eventually(LIMIT, "the log start to move", || async {
        let start = earliest(cluster).await;
        if start > 0 { Ok(start) } else { Err("still 0".into()) }
    })
    .await;

    tracing::info!("--- retention_bytes cleared: back to the broker default everywhere");
    let clear = TopicConfigChanges { clear_retention_bytes: true, ..TopicConfigChanges::default() };
    assert_eq!(error_of(alter(cluster, TOPIC, clear).await.error.as_ref()), Error::ok());
    every_broker_describes(cluster, "no retention_bytes", |c| c.retention_bytes.is_none()).await;
}

/// The partition's first offset, from its leader.
async fn earliest(cluster: &Cluster) -> u64 {
    let request = ListOffsetsRequest {
        topic: TOPIC.into(),
        partition: 0,
        at: Some(At::Earliest(Empty {})),
        ..Default::default()
    };
    ask_leader(cluster, TOPIC, 0, |mut leader| {
        let request = request.clone();
        async move {
            let r = leader.list_offsets(request).await.map_err(|s| s.to_string())?.into_inner();
            unless_retriable(r.error.as_ref())?;
            assert_eq!(code(r.error.as_ref()), ErrorCode::Ok, "{:?}", r.error);
            Ok(r.offset)
        }
    })
    .await
}

async fn what_cannot_be_altered_is_refused(cluster: &Cluster) {
    tracing::info!("--- fixed settings, contradictions, unknown codecs and topics are refused");
    let partitions = TopicConfigChanges { partitions: Some(4), ..TopicConfigChanges::default() };
    let message = refused(cluster, TOPIC, partitions, ErrorCode::InvalidConfig).await;
    assert!(message.contains("partitions cannot be altered") && message.contains("not supported yet"), "{message}");
    let flush = TopicConfigChanges { flush_interval_ms: Some(100), ..TopicConfigChanges::default() };
    assert!(refused(cluster, TOPIC, flush, ErrorCode::InvalidConfig).await.contains("flush_interval_ms"));
    let both = TopicConfigChanges { retention_ms: Some(5), clear_retention_ms: true, ..TopicConfigChanges::default() };
    refused(cluster, TOPIC, both, ErrorCode::InvalidRequest).await;
    refused(cluster, TOPIC, TopicConfigChanges::default(), ErrorCode::InvalidRequest).await;
    let codec = TopicConfigChanges { compression: Some("brotli".into()), ..TopicConfigChanges::default() };
    refused(cluster, TOPIC, codec, ErrorCode::InvalidConfig).await;
    let zero = TopicConfigChanges { max_message_bytes: Some(0), ..TopicConfigChanges::default() };
    refused(cluster, TOPIC, zero, ErrorCode::InvalidConfig).await;
    let some = TopicConfigChanges { max_message_bytes: Some(10), ..TopicConfigChanges::default() };
    let unknown = refused(cluster, "missing", some.clone(), ErrorCode::UnknownTopic).await;
    assert!(unknown.contains("\"missing\" does not exist"), "{unknown}");
    refused(cluster, "__consumer_offsets", some, ErrorCode::InvalidTopicName).await;
    every_broker_describes(cluster, "the settings the refusals left alone", |c| {
        c.partitions == 1 && c.max_message_bytes == Some(SMALL_MESSAGE_BYTES) && c.compression.as_deref() == Some("lz4")
    })
    .await;
}
