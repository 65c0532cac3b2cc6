//! What the read commands print: one JSON shape per command (`--output json`, stable for
//! scripts) and plain tables for people; and what `topic alter` changed.

use std::fmt::Write as _;

use serde::Serialize;
use serde::ser::SerializeMap;
use sluice_client::{
    AlteredTopic, BrokerInfo, ClusterStatus, ConsumedRecord, DiskFull, TopicConfig, TopicDescription, TopicInfo,
};

/// A topic's settings in JSON.
#[derive(Debug, Serialize)]
pub struct ConfigJson {
    partitions: u32,
    replication_factor: u32,
    retention_ms: Option<u64>,
    retention_bytes: Option<u64>,
    max_message_bytes: Option<u32>,
    /// `null`: fsync before every acknowledgement.
    flush_interval_ms: Option<u64>,
    /// `producer` (batches stored as sent) or a codec's name.
    compression: &'static str,
}

impl From<&TopicConfig> for ConfigJson {
    fn from(c: &TopicConfig) -> ConfigJson {
        ConfigJson {
            partitions: c.partitions,
            replication_factor: c.replication_factor,
            retention_ms: c.retention_ms,
            retention_bytes: c.retention_bytes,
            max_message_bytes: c.max_message_bytes,
            flush_interval_ms: c.flush_interval_ms,
            compression: c.compression.name(),
        }
    }
}

/// One topic in `topic list --output json` (the output is an array of these).
#[derive(Debug, Serialize)]
pub struct TopicJson {
    name: String,
    #[serde(flatten)]
    config: ConfigJson,
}

/// `topic list --output json`.
pub fn topic_list_json(topics: &[std::sync::Arc<TopicInfo>]) -> serde_json::Value {
    let list: Vec<TopicJson> =
        topics.iter().map(|t| TopicJson { name: t.name.clone(), config: ConfigJson::from(&t.config) }).collect();
    serde_json::to_value(list).expect("plain data serializes")
}

/// `topic list` for people.
pub fn topic_list_plain(topics: &[std::sync::Arc<TopicInfo>]) -> String {
    let mut out = format!("{:<40} {:>10} {:>18}\n", "TOPIC", "PARTITIONS", "REPLICATION-FACTOR");
    for t in topics {
        let _ = writeln!(out, "{:<40} {:>10} {:>18}", t.name, t.config.partitions, t.config.replication_factor);
    }
    out
}

#[derive(Debug, Serialize)]
struct PartitionJson<'a> {
    partition: u32,
    leader: Option<u64>,
    leader_term: u64,
    replicas: &'a [u64],
    log_start_offset: Option<u64>,
    log_end_offset: Option<u64>,
    last_stable_offset: Option<u64>,
    /// Why the offsets are missing, if they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    offsets_error: Option<&'a str>,
}

/// `topic describe --output json`.
pub fn describe_json(d: &TopicDescription) -> serde_json::Value {
    let partitions: Vec<PartitionJson<'_>> = d
        .partitions
        .iter()
        .map(|p| PartitionJson {
            partition: p.partition,
            leader: p.leader,
            leader_term: p.leader_term,
            replicas: &p.replicas,
            log_start_offset: p.log_start_offset.as_ref().ok().copied(),
            log_end_offset: p.log_end_offset.as_ref().ok().copied(),
            last_stable_offset: p.last_stable_offset.as_ref().ok().copied(),
            offsets_error: p.log_start_offset.as_ref().err().or(p.log_end_offset.as_ref().err()).map(String::as_str),
        })
        .collect();
    serde_json::json!({ "name": d.name, "config": ConfigJson::from(&d.config), "partitions": partitions })
}

/// A flush policy for people: what an acknowledgement waits for.
fn flush_plain(flush_interval_ms: Option<u64>) -> String {
    match flush_interval_ms {
        None => "before every ack".to_owned(),
        Some(ms) => format!("every {ms} ms (acks from memory)"),
    }
}

/// Retention for people: by age, by size, both (whichever trims first), or none.
fn retention_plain(ms: Option<u64>, bytes: Option<u64>) -> String {
    match (ms, bytes) {
        (None, None) => "forever".to_owned(),
        (Some(ms), None) => format!("{ms} ms"),
        (None, Some(b)) => format!("{b} bytes"),
        (Some(ms), Some(b)) => format!("{ms} ms or {b} bytes"),
    }
}

fn max_message_plain(bytes: Option<u32>) -> String {
    bytes.map_or_else(|| "default".to_owned(), |b| format!("{b} bytes"))
}

/// `topic alter` for people: each alterable setting that changed, before and after.
pub fn altered_plain(a: &AlteredTopic) -> String {
    let (before, after) = (&a.previous, &a.topic.config);
    let keep = |limit: Option<u64>| limit.map_or_else(|| "default (no limit)".to_owned(), |v| v.to_string());
    let settings = [
        ("retention_ms", keep(before.retention_ms), keep(after.retention_ms)),
        ("retention_bytes", keep(before.retention_bytes), keep(after.retention_bytes)),
        ("max_message_bytes", max_message_plain(before.max_message_bytes), max_message_plain(after.max_message_bytes)),
        ("compression", before.compression.to_string(), after.compression.to_string()),
    ];
    let changed: Vec<String> =
        settings.iter().filter(|(_, b, a)| b != a).map(|(name, b, a)| format!("  {name}: {b} -> {a}\n")).collect();
    if changed.is_empty() {
        return format!("topic {}: nothing changed (it already had these settings)\n", a.topic.name);
    }
    format!("altered topic {}:\n{}", a.topic.name, changed.concat())
}

/// `topic describe` for people.
pub fn describe_plain(d: &TopicDescription) -> String {
    let c = &d.config;
    let mut out = format!(
        "topic {}: {} partitions, replication factor {}, retention {}, max message {}, flush {}, compression {}\n",
        d.name,
        c.partitions,
        c.replication_factor,
        retention_plain(c.retention_ms, c.retention_bytes),
        max_message_plain(c.max_message_bytes),
        flush_plain(c.flush_interval_ms),
        c.compression,
    );
    let _ = writeln!(
        out,
        "{:>9} {:>7} {:>6} {:<16} {:>14} {:>14} {:>14}",
        "PARTITION", "LEADER", "TERM", "REPLICAS", "START", "END", "STABLE"
    );
    let mut errors = Vec::new();
    for p in &d.partitions {
        let leader = p.leader.map_or_else(|| "none".to_owned(), |l| l.to_string());
        let replicas = p.replicas.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        let offset = |o: &Result<u64, String>| o.as_ref().map_or_else(|_| "?".to_owned(), u64::to_string);
        let _ = writeln!(
            out,
            "{:>9} {:>7} {:>6} {:<16} {:>14} {:>14} {:>14}",
            p.partition,
            leader,
            p.leader_term,
            replicas,
            offset(&p.log_start_offset),
            offset(&p.log_end_offset),
            offset(&p.last_stable_offset)
        );
        if let Some(e) = p.log_start_offset.as_ref().err().or(p.log_end_offset.as_ref().err()) {
            errors.push(format!("partition {}: offsets unavailable: {e}", p.partition));
        }
    }
    for e in errors {
        let _ = writeln!(out, "{e}");
    }
    out
}

#[derive(Debug, Serialize)]
struct BrokerJson<'a> {
    node_id: u64,
    address: &'a str,
    live: bool,
    controller: bool,
    partition_leaders: usize,
    /// `{free_bytes, threshold_bytes}` while the broker's disk is below its threshold, else null.
    disk_full: Option<serde_json::Value>,
    /// Replicas assigned, the most it can host (0: no limit), and those it is not running.
    replicas: u32,
    max_replicas: u32,
    offline_replicas: u32,
    /// Partitions it leads with a replica not caught up.
    under_replicated: u32,
    /// Whether it is handing its leaderships over before it stops.
    stopping: bool,
}

/// `cluster status --output json`.
pub fn status_json(s: &ClusterStatus) -> serde_json::Value {
    let brokers: Vec<BrokerJson<'_>> = s
        .brokers
        .iter()
        .map(|b| BrokerJson {
            node_id: b.broker.node_id,
            address: &b.broker.address,
            live: b.broker.live,
            controller: b.is_controller,
            partition_leaders: b.partition_leaders,
            disk_full: b
                .broker
                .disk_full
                .map(|d| serde_json::json!({"free_bytes": d.free_bytes, "threshold_bytes": d.threshold_bytes})),
            replicas: b.broker.replicas,
            max_replicas: b.broker.max_replicas,
            offline_replicas: b.broker.offline_replicas,
            under_replicated: b.broker.under_replicated,
            stopping: b.broker.stopping,
        })
        .collect();
    serde_json::json!({
        "controller_id": s.controller_id,
        "metadata_version": s.metadata_version,
        "topics": s.topics,
        "leaderless_partitions": s.leaderless_partitions,
        "brokers": brokers,
    })
}

/// A broker's disk in `cluster status`: "ok", or what is free below which threshold.
fn disk(full: Option<DiskFull>) -> String {
    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    match full {
        None => "ok".into(),
        Some(d) => {
            format!("FULL: {:.1} MiB free < {:.1} MiB; refusing writes", mib(d.free_bytes), mib(d.threshold_bytes))
        }
    }
}

/// `cluster status` for people.
pub fn status_plain(s: &ClusterStatus) -> String {
    let controller = s.controller_id.map_or_else(|| "none (electing?)".to_owned(), |id| format!("node {id}"));
    let mut out = format!(
        "controller: {controller}; {} topics; {} partitions without a leader; metadata version {}\n",
        s.topics, s.leaderless_partitions, s.metadata_version
    );
    let header = ("NODE", "ADDRESS", "LIVE", "CONTROLLER", "LEADERS", "REPLICAS", "OFFLINE", "UNDER-REPL", "DISK");
    let _ = writeln!(
        out,
        "{:>6} {:<24} {:>8} {:>10} {:>8} {:>13} {:>7} {:>10}  {}",
        header.0, header.1, header.2, header.3, header.4, header.5, header.6, header.7, header.8
    );
    for b in &s.brokers {
        let yes = |v: bool| if v { "yes" } else { "no" };
        let live = if b.broker.live && b.broker.stopping { "stopping" } else { yes(b.broker.live) };
        let _ = writeln!(
            out,
            "{:>6} {:<24} {:>8} {:>10} {:>8} {:>13} {:>7} {:>10}  {}",
            b.broker.node_id,
            b.broker.address,
            live,
            yes(b.is_controller),
            b.partition_leaders,
            replicas(&b.broker),
            b.broker.offline_replicas,
            b.broker.under_replicated,
            disk(b.broker.disk_full)
        );
    }
    out
}

/// A broker's replicas in `cluster status`: assigned, and of how many it can host.
fn replicas(b: &BrokerInfo) -> String {
    match b.max_replicas {
        0 => b.replicas.to_string(),
        max => format!("{}/{max}", b.replicas),
    }
}

/// One consumed message in `consume --output json`: key and value as UTF-8 text (invalid
/// bytes become U+FFFD), the timestamp in ms since the Unix epoch, properties as an object.
#[derive(Debug, Serialize)]
pub struct RecordJson<'a> {
    /// The partition.
    pub partition: u32,
    /// The offset.
    pub offset: u64,
    /// The key, if any.
    pub key: Option<std::borrow::Cow<'a, str>>,
    /// The value.
    pub value: std::borrow::Cow<'a, str>,
    /// The tag, if any.
    pub tag: Option<&'a str>,
    /// Create time, ms since the Unix epoch.
    pub timestamp: i64,
    /// String headers.
    pub properties: Properties<'a>,
}

/// Properties serialized as a JSON object, in their order.
#[derive(Debug)]
pub struct Properties<'a>(pub Vec<(&'a str, &'a str)>);

impl Serialize for Properties<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'a> From<&'a ConsumedRecord> for RecordJson<'a> {
    fn from(r: &'a ConsumedRecord) -> RecordJson<'a> {
        RecordJson {
            partition: r.partition(),
            offset: r.offset(),
            key: r.key().map(|k| String::from_utf8_lossy(k)),
            value: String::from_utf8_lossy(r.value()),
            tag: r.tag(),
            timestamp: r.timestamp_ms(),
            properties: Properties(r.properties().collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use sluice_client::{BrokerStatus, PartitionDescription, TopicCompression};

    use super::*;

    #[test]
    fn consumed_records_are_one_flat_object() {
        let record = RecordJson {
            partition: 2,
            offset: 41,
            key: Some("k".into()),
            value: "hello".into(),
            tag: None,
            timestamp: 1_714_564_800_000,
            properties: Properties(vec![("source", "web"), ("trace", "abc")]),
        };
        let line = serde_json::to_string(&record).unwrap();
        assert!(!line.contains('\n'), "one object per line");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&line).unwrap(),
            json!({
                "partition": 2, "offset": 41, "key": "k", "value": "hello", "tag": null,
                "timestamp": 1_714_564_800_000i64, "properties": {"source": "web", "trace": "abc"}
            })
        );
    }

    #[test]
    fn topic_list_is_an_array_of_flat_topics() {
        let topic =
            TopicInfo { name: "orders".into(), config: TopicConfig::new(3, 2).retention_ms(1000), partitions: vec![] };
        assert_eq!(
            topic_list_json(&[Arc::new(topic.clone())]),
            json!([{
                "name": "orders", "partitions": 3, "replication_factor": 2, "retention_ms": 1000,
                "retention_bytes": null, "max_message_bytes": null, "flush_interval_ms": null,
                "compression": "producer"
            }])
        );
        assert!(topic_list_plain(&[Arc::new(topic)]).lines().nth(1).unwrap().starts_with("orders "));
    }

    #[test]
    fn describe_reports_offsets_or_why_not() {
        let d = TopicDescription {
            name: "orders".into(),
            config: TopicConfig::new(2, 3),
            partitions: vec![
                PartitionDescription {
                    partition: 0,
                    replicas: vec![1, 2, 3],
                    leader: Some(1),
                    leader_term: 4,
                    log_start_offset: Ok(0),
                    log_end_offset: Ok(17),
                    last_stable_offset: Ok(12),
                },
                PartitionDescription {
                    partition: 1,
                    replicas: vec![2, 3, 1],
                    leader: None,
                    leader_term: 0,
                    log_start_offset: Err("no leader".into()),
                    log_end_offset: Err("no leader".into()),
                    last_stable_offset: Err("no leader".into()),
                },
            ],
        };
        let v = describe_json(&d);
        assert_eq!(v["name"], "orders");
        assert_eq!(v["config"]["partitions"], 2);
        assert_eq!(
            v["partitions"][0],
            json!({"partition": 0, "leader": 1, "leader_term": 4, "replicas": [1, 2, 3], "log_start_offset": 0, "log_end_offset": 17, "last_stable_offset": 12})
        );
        assert_eq!(v["partitions"][1]["leader"], json!(null));
        assert_eq!(v["partitions"][1]["offsets_error"], "no leader");
        let plain = describe_plain(&d);
        assert!(plain.contains("partition 1: offsets unavailable: no leader"), "{plain}");
        assert!(plain.lines().next().unwrap().ends_with("flush before every ack, compression producer"), "{plain}");
        assert!(plain.contains("retention forever, max message default"), "{plain}");
        assert_eq!(v["config"]["flush_interval_ms"], json!(null));
        assert_eq!(v["config"]["compression"], "producer");
        let config = TopicConfig::new(2, 3).flush_interval_ms(250).retention_ms(9).retention_bytes(7).compression(ZSTD);
        let relaxed = TopicDescription { config, ..d };
        assert_eq!(describe_json(&relaxed)["config"]["flush_interval_ms"], 250);
        assert_eq!(describe_json(&relaxed)["config"]["compression"], "zstd");
        let plain = describe_plain(&relaxed);
        let first = plain.lines().next().unwrap();
        assert!(first.ends_with("flush every 250 ms (acks from memory), compression zstd"), "{plain}");
        assert!(first.contains("retention 9 ms or 7 bytes"), "{plain}");
    }

    const ZSTD: TopicCompression = TopicCompression::Codec(sluice_client::Compression::Zstd);

    #[test]
    fn alter_prints_each_setting_that_changed_before_and_after() {
        let previous = TopicConfig::new(3, 3).retention_ms(60_000);
        let config = TopicConfig::new(3, 3).max_message_bytes(100).compression(ZSTD);
        let altered = AlteredTopic {
            previous: previous.clone(),
            topic: TopicInfo { name: "orders".into(), config, partitions: vec![] },
        };
        assert_eq!(
            altered_plain(&altered),
            "altered topic orders:\n  retention_ms: 60000 -> default (no limit)\n  \
             max_message_bytes: default -> 100 bytes\n  compression: producer -> zstd\n"
        );
        let same = AlteredTopic { topic: TopicInfo { config: previous.clone(), ..altered.topic }, previous };
        assert_eq!(altered_plain(&same), "topic orders: nothing changed (it already had these settings)\n");
    }

    #[test]
    fn status_lists_brokers_with_roles() {
        let s = ClusterStatus {
            brokers: vec![BrokerStatus {
                broker: BrokerInfo {
                    node_id: 1,
                    address: "127.0.0.1:9091".into(),
                    live: true,
                    disk_full: None,
                    replicas: 7,
                    max_replicas: 18_976,
                    offline_replicas: 1,
                    under_replicated: 2,
                    stopping: false,
                },
                is_controller: true,
                partition_leaders: 5,
            }],
            controller_id: Some(1),
            topics: 2,
            leaderless_partitions: 0,
            metadata_version: 12,
        };
        assert_eq!(
            status_json(&s),
            json!({
                "controller_id": 1, "metadata_version": 12, "topics": 2, "leaderless_partitions": 0,
                "brokers": [{"node_id": 1, "address": "127.0.0.1:9091", "live": true, "controller": true, "partition_leaders": 5, "disk_full": null,
                    "replicas": 7, "max_replicas": 18_976, "offline_replicas": 1, "under_replicated": 2,
                    "stopping": false}]
            })
        );
        assert!(status_plain(&s).starts_with("controller: node 1;"));
        assert!(status_plain(&s).lines().nth(2).is_some_and(|l| l.ends_with("  ok")), "{}", status_plain(&s));
        assert!(
            status_plain(&s).lines().nth(2).is_some_and(|l| l.contains(" 7/18976       1          2  ok")),
            "{}",
            status_plain(&s)
        );
        let mut full = s.clone();
        full.brokers[0].broker.disk_full = Some(DiskFull { free_bytes: 3 << 20, threshold_bytes: 16 << 20 });
        assert_eq!(
            status_json(&full)["brokers"][0]["disk_full"],
            json!({"free_bytes": 3 << 20, "threshold_bytes": 16 << 20})
        );
        let plain = status_plain(&full);
        assert!(plain.contains("FULL: 3.0 MiB free < 16.0 MiB; refusing writes"), "{plain}");
    }
}
