//! Broker-side filters against three broker processes (docs/FILTERS.md): a 6-partition RF-3
//! topic holds 100,000 messages with tags spread over 10 values and generated properties; a
//! consumer with a tag filter, an SQL filter, or both receives exactly the matching messages —
//! nothing more, nothing missing, once each, in offset order per partition, at the offsets
//! their acknowledgements named. The CLI's `consume --tag/--filter` agrees, and a malformed
//! expression is refused with its position.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use sluice_client::{
    ConsumedRecord, ErrorCode, GroupConsumerConfig, MessageFilter, OffsetReset, ProducerConfig, ProducerRecord,
    RecordMetadata, TopicConfig,
};
use sluice_system_tests::cli::sluice;
use sluice_system_tests::groups::{Member, eventually};
use sluice_system_tests::{Cluster, read_topic_filtered, within};

const TOPIC: &str = "filtered";
const MESSAGES: usize = 100_000;
const PARTITIONS: u32 = 6;
const LIMIT: Duration = Duration::from_secs(240);
const REGIONS: [&str; 3] = ["eu", "us", "apac"];
const SQL: &str = "price > 500 AND region IN ('eu', 'us')";

fn both_filter() -> MessageFilter {
    MessageFilter::tags("tag-1 || tag-2 || tag-3").and_sql("price BETWEEN 100 AND 400 OR price IS NULL")
}

/// Message `i`'s generated fields: its tag, price (absent on every 17th) and region.
struct Generated {
    tag: String,
    price: Option<u64>,
    region: &'static str,
}

fn generated(i: usize) -> Generated {
    let mixed = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
    Generated {
        tag: format!("tag-{}", i % 10),
        price: (!i.is_multiple_of(17)).then_some(mixed % 1000),
        region: REGIONS[(mixed / 1000) as usize % 3],
    }
}

fn record(topic: &Arc<str>, i: usize) -> ProducerRecord {
    let g = generated(i);
    let mut r = ProducerRecord::new(Arc::clone(topic), format!("message {i}")).tag(g.tag).property("region", g.region);
    if let Some(price) = g.price {
        r = r.property("price", price.to_string());
    }
    r
}

fn number(record: &ConsumedRecord) -> usize {
    let text = std::str::from_utf8(record.value()).expect("UTF-8 values");
    text.strip_prefix("message ").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("not a test value: {text}"))
}

/// Checks that `read` is exactly the acknowledged messages `matches` selects, each at its
/// acknowledged offset, in offset order per partition.
fn check(
    what: &str,
    read: &BTreeMap<u32, Vec<ConsumedRecord>>,
    acked: &[RecordMetadata],
    matches: impl Fn(usize) -> bool,
) {
    let mut seen = vec![false; acked.len()];
    for (&partition, records) in read {
        let mut last = None;
        for r in records {
            let i = number(r);
            assert!(matches(i), "{what}: message {i} does not match but was received");
            assert!(!seen[i], "{what}: message {i} was received twice");
            seen[i] = true;
            assert_eq!(
                acked[i],
                RecordMetadata { partition, offset: r.offset(), delayed_id: None },
                "{what}: message {i}'s offset"
            );
            assert!(last < Some(r.offset()), "{what}: partition {partition} out of order at {}", r.offset());
            last = Some(r.offset());
        }
    }
    let missing: Vec<usize> = (0..acked.len()).filter(|&i| matches(i) && !seen[i]).take(10).collect();
    assert!(missing.is_empty(), "{what}: matching messages never received (first 10): {missing:?}");
    let expected = (0..acked.len()).filter(|&i| matches(i)).count();
    assert!(expected > 1000 && expected < acked.len() / 2, "{what}: a filter that selects a real subset ({expected})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_and_sql_filters_deliver_exactly_the_matching_messages() {
    let cluster = Cluster::start(3).await;
    within(LIMIT, "the filter round trips", async {
        let client = cluster.client().await;
        let admin = client.admin();
        admin.create_topic(TOPIC, &TopicConfig::new(PARTITIONS, 3)).await.expect("create the topic");
        admin.wait_for_leaders(TOPIC, Duration::from_secs(30)).await.expect("every partition elects a leader");
        let producer = client.producer(ProducerConfig::default()).await.expect("a producer");
        let topic: Arc<str> = Arc::from(TOPIC);
        let mut deliveries = Vec::with_capacity(MESSAGES);
        for i in 0..MESSAGES {
            deliveries.push(producer.enqueue(record(&topic, i)).await.expect("enqueue"));
        }
        producer.flush().await;
        let mut acked = Vec::with_capacity(MESSAGES);
        for (i, d) in deliveries.into_iter().enumerate() {
            acked.push(d.await.unwrap_or_else(|e| panic!("message {i} was not acknowledged: {e}")));
        }

        let tags = MessageFilter::tags("tag-3 || tag-7");
        let tagged = |i: usize| matches!(i % 10, 3 | 7);
        let sql = MessageFilter::sql(SQL);
        let priced = |i: usize| {
            let g = generated(i);
            g.price.is_some_and(|p| p > 500) && g.region != "apac"
        };
        let both = both_filter();
        let both_match =
            |i: usize| matches!(i % 10, 1..=3) && generated(i).price.is_none_or(|p| (100..=400).contains(&p));
        for (what, filter, matches) in [
            ("tag filter", tags, &tagged as &dyn Fn(usize) -> bool),
            ("SQL filter", sql, &priced),
            ("tag and SQL filter", both, &both_match),
        ] {
            eprintln!("--- {what}: only the matching messages arrive");
            let read = read_topic_filtered(&client, TOPIC, Some(filter), Duration::from_secs(60)).await;
            check(what, &read, &acked, matches);
        }

        eprintln!("--- the CLI: consume --tag and --filter, and a malformed expression");
        let bootstrap = cluster.bootstrap();
        let limit = Duration::from_secs(60);
        let args = ["consume", TOPIC, "--tag", "tag-3 || tag-7", "--filter", "price > 500", "--output", "json"];
        let out = sluice(&bootstrap, &args, None, limit).await;
        out.assert_success("consume --tag --filter");
        let want = (0..MESSAGES).filter(|&i| tagged(i) && generated(i).price.is_some_and(|p| p > 500)).count();
        assert_eq!(out.stdout.lines().count(), want, "consume --tag --filter prints the matching messages");
        let bad = sluice(&bootstrap, &["consume", TOPIC, "--filter", "price >"], None, limit).await;
        bad.assert_failure("a malformed --filter", &["SQL filter", "Column: 8"]);

        for (what, group, filter, matches) in [
            ("tag filter", "group-tags", MessageFilter::tags("tag-3 || tag-7"), &tagged as &dyn Fn(usize) -> bool),
            ("tag and SQL filter", "group-both", both_filter(), &both_match),
            ("SQL filter", "filtered-group", MessageFilter::sql(SQL), &priced),
        ] {
            eprintln!("--- {what}: a group of 3 members shares exactly the matching messages");
            group_consumes_the_matching_messages(&client, group, filter, &acked, matches).await;
        }
        eprintln!("--- a member with another filter is refused; set-filter once the members are gone");
        the_group_keeps_its_filter(&client, &bootstrap, &acked, &priced).await;
    })
    .await;
}

fn group_config(group: &str, filter: MessageFilter) -> GroupConsumerConfig {
    GroupConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        filter: Some(filter),
        ..GroupConsumerConfig::new(group)
    }
}

/// Three members of `group` with `filter` receive, together, exactly the messages `matches`
/// selects, each once (they close cleanly, committing what they read).
async fn group_consumes_the_matching_messages(
    client: &sluice_client::Client,
    group: &str,
    filter: MessageFilter,
    acked: &[RecordMetadata],
    matches: &dyn Fn(usize) -> bool,
) {
    let mut members = Vec::new();
    for name in ["m1", "m2", "m3"] {
        members.push(Member::join(client, name, group_config(group, filter.clone()), TOPIC).await);
    }
    let want = (0..acked.len()).filter(|&i| matches(i)).count();
    eventually(Duration::from_secs(60), "the group receives every matching message", || {
        let got: usize = members.iter().map(|m| m.view().records.len()).sum();
        async move { if got >= want { Ok(()) } else { Err(format!("{got} of {want}")) } }
    })
    .await;
    let by_offset: HashMap<(u32, u64), usize> =
        acked.iter().enumerate().map(|(i, m)| ((m.partition, m.offset), i)).collect();
    let mut seen = vec![false; acked.len()];
    for member in members {
        let name = member.name.clone();
        for (partition, offset) in member.close().await.records {
            let i = by_offset[&(partition, offset)];
            assert!(matches(i), "{group}: {name} received message {i}, which does not match");
            assert!(!std::mem::replace(&mut seen[i], true), "{group}: message {i} was received twice");
        }
    }
    assert_eq!(seen.iter().filter(|s| **s).count(), want, "{group}: every matching message was received once");
}

/// The SQL-filtered group refuses a member with another filter, its filter changes only once
/// its members are gone, and describe shows the filter and what it skipped.
async fn the_group_keeps_its_filter(
    client: &sluice_client::Client,
    bootstrap: &str,
    acked: &[RecordMetadata],
    matches: &dyn Fn(usize) -> bool,
) {
    let member = Member::join(client, "m1", group_config("filtered-group", MessageFilter::sql(SQL)), TOPIC).await;
    let mut other = client
        .group_consumer(group_config("filtered-group", MessageFilter::sql("price > 100")))
        .expect("a group consumer");
    let e = other.subscribe(&[TOPIC]).await.expect_err("another filter is refused");
    assert_eq!(e.code(), Some(ErrorCode::FilterMismatch), "{e}");
    assert!(e.to_string().contains(SQL), "{e}");
    drop(other);
    let set_filter = ["group", "set-filter", "filtered-group", TOPIC, "--tag", "tag-1"];
    let limit = Duration::from_secs(60);
    sluice(bootstrap, &set_filter, None, limit).await.assert_failure("set-filter with members", &["stop them first"]);
    member.close().await;
    sluice(bootstrap, &set_filter, None, limit).await.assert_success("set-filter once the members are gone");
    let described = sluice(bootstrap, &["group", "describe", "filtered-group", "--output", "json"], None, limit).await;
    let json: serde_json::Value = serde_json::from_str(&described.assert_success("group describe").stdout).unwrap();
    assert_eq!(json["filters"][TOPIC], serde_json::json!({"tag": "tag-1", "sql": ""}), "{json}");
    // Every message the members examined and did not match, as they reported it (a partition
    // that moved between members may have been examined twice from its committed offset).
    let skipped = json["skipped"][TOPIC].as_u64().unwrap_or(0);
    let unmatched = (0..acked.len()).filter(|&i| !matches(i)).count() as u64;
    assert!(skipped >= unmatched, "skipped {skipped} of {unmatched} non-matching: {json}");
}
