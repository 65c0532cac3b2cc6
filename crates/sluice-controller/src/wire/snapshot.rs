//! Wire form of the [`Metadata`] snapshot.
//!
//! ```text
//! | magic "SLCM" (4 bytes) | SnapshotMsg (protobuf) |
//!
//! message SnapshotMsg {
//!   uint32 format_version = 1;          // SNAPSHOT_VERSION; a newer one is refused
//!   uint64 version = 2;                 // index of the last applied command
//!   uint64 next_group_id = 3;
//!   repeated BrokerMsg brokers = 4;     // ascending node id
//!   repeated TopicMsg topics = 5;       // ascending name
//!   uint64 next_producer_id = 6;        // 0 (absent) in snapshots from before producer ids: 1
//!   fixed32 end = 15;                   // END_MARKER, written last: a cut snapshot lacks it
//! }
//! message BrokerMsg { uint64 node_id = 1; string raft_addr = 2; string client_addr = 3;
//!                     bool live = 4; uint64 registered_at_index = 5;
//!                     uint32 max_replicas = 6; }  // 0 (absent): no limit
//! message TopicMsg  { string name = 1; uint32 replication_factor = 2; optional uint64 retention_ms = 3;
//!                     optional uint64 retention_bytes = 4; uint32 max_message_bytes = 5;
//!                     uint64 created_at_index = 6; repeated PartitionMsg partitions = 7;
//!                     optional uint64 flush_interval_ms = 8; optional string compression = 9; }
//!                     // the partition count is the length of `partitions`; flush_interval_ms
//!                     // is absent in snapshots from before flush policies: fsync before ack;
//!                     // compression is absent in those from before it, and for the default:
//!                     // producer
//! message PartitionMsg { uint64 group_id = 1; repeated uint64 replicas = 2;
//!                        optional uint64 leader = 3; uint64 leader_term = 4; }
//! ```
//!
//! Maps are written in key order and prost writes fields in tag order, so equal states give
//! byte-identical snapshots. The magic tells a controller snapshot from any other state
//! machine's; the per-broker loads are not stored but recomputed from the topics.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use sluice_common::NodeId;

use super::{compression_from, compression_name, topic_name};
use crate::assignment::Loads;
use crate::broker::Broker;
use crate::config::TopicConfig;
use crate::metadata::Metadata;
use crate::topic::{FIRST_PRODUCER_ID, Partition, Topic};

/// The first bytes of every controller snapshot.
pub(crate) const MAGIC: &[u8; 4] = b"SLCM";

/// The snapshot format this build writes, and the newest it reads.
pub(crate) const SNAPSHOT_VERSION: u32 = 1;

/// The last field of every snapshot. prost writes fields in tag order, so a snapshot cut short
/// anywhere — which could otherwise still parse, as a smaller state — lacks it and is refused.
pub(crate) const END_MARKER: u32 = u32::from_le_bytes(*b"SLCE");

/// The whole metadata.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SnapshotMsg {
    #[prost(uint32, tag = "1")]
    pub format_version: u32,
    #[prost(uint64, tag = "2")]
    pub version: u64,
    #[prost(uint64, tag = "3")]
    pub next_group_id: u64,
    #[prost(message, repeated, tag = "4")]
    pub brokers: Vec<BrokerMsg>,
    #[prost(message, repeated, tag = "5")]
    pub topics: Vec<TopicMsg>,
    #[prost(uint64, tag = "6")]
    pub next_producer_id: u64,
    #[prost(fixed32, tag = "15")]
    pub end: u32,
}

/// One broker.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct BrokerMsg {
    #[prost(uint64, tag = "1")]
    pub node_id: u64,
    #[prost(string, tag = "2")]
    pub raft_addr: String,
    #[prost(string, tag = "3")]
    pub client_addr: String,
    #[prost(bool, tag = "4")]
    pub live: bool,
    #[prost(uint64, tag = "5")]
    pub registered_at_index: u64,
    #[prost(uint32, tag = "6")]
    pub max_replicas: u32,
}

/// One topic.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TopicMsg {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(uint32, tag = "2")]
    pub replication_factor: u32,
    #[prost(uint64, optional, tag = "3")]
    pub retention_ms: Option<u64>,
    #[prost(uint64, optional, tag = "4")]
    pub retention_bytes: Option<u64>,
    #[prost(uint32, tag = "5")]
    pub max_message_bytes: u32,
    #[prost(uint64, tag = "6")]
    pub created_at_index: u64,
    #[prost(message, repeated, tag = "7")]
    pub partitions: Vec<PartitionMsg>,
    #[prost(uint64, optional, tag = "8")]
    pub flush_interval_ms: Option<u64>,
    #[prost(string, optional, tag = "9")]
    pub compression: Option<String>,
}

/// One partition.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PartitionMsg {
    #[prost(uint64, tag = "1")]
    pub group_id: u64,
    #[prost(uint64, repeated, tag = "2")]
    pub replicas: Vec<u64>,
    #[prost(uint64, optional, tag = "3")]
    pub leader: Option<u64>,
    #[prost(uint64, tag = "4")]
    pub leader_term: u64,
}

/// Encodes `meta` as a snapshot.
pub(crate) fn encode(meta: &Metadata) -> Bytes {
    let msg = SnapshotMsg {
        format_version: SNAPSHOT_VERSION,
        version: meta.version,
        next_group_id: meta.next_group_id,
        brokers: meta.brokers.values().map(broker_msg).collect(),
        topics: meta.topics.values().map(topic_msg).collect(),
        next_producer_id: meta.next_producer_id,
        end: END_MARKER,
    };
    let mut b = BytesMut::with_capacity(MAGIC.len() + msg.encoded_len());
    b.put_slice(MAGIC);
    msg.encode(&mut b).expect("BytesMut grows as needed");
    b.freeze()
}

/// Decodes a snapshot into metadata; `Err` says what is wrong. The result is not yet checked
/// for consistency: see [`Metadata::check`].
pub(crate) fn decode(raw: &[u8]) -> Result<Metadata, String> {
    let body = raw.strip_prefix(MAGIC).ok_or("not a controller snapshot (no SLCM magic)")?;
    let msg = SnapshotMsg::decode(body).map_err(|e| format!("controller snapshot: {e}"))?;
    if msg.end != END_MARKER {
        return Err("controller snapshot is cut short (no end marker)".into());
    }
    if msg.format_version == 0 || msg.format_version > SNAPSHOT_VERSION {
        let v = msg.format_version;
        return Err(format!("controller snapshot format {v}; this build reads 1 to {SNAPSHOT_VERSION} (upgrade it)"));
    }
    let mut brokers = BTreeMap::new();
    for b in msg.brokers {
        let broker = broker_from(b);
        if brokers.insert(broker.node_id, broker).is_some() {
            return Err("controller snapshot lists a broker twice".into());
        }
    }
    let mut topics = BTreeMap::new();
    for t in msg.topics {
        let topic = topic_from(t)?;
        if topics.insert(topic.name.clone(), topic).is_some() {
            return Err("controller snapshot lists a topic twice".into());
        }
    }
    let mut loads = Loads::default();
    topics.values().flat_map(|t: &Topic| &t.partitions).for_each(|p| loads.add(&p.replicas));
    // A snapshot written before producer ids existed has none: no id was ever handed out.
    let next_producer_id = msg.next_producer_id.max(FIRST_PRODUCER_ID);
    Ok(Metadata { brokers, topics, next_group_id: msg.next_group_id, next_producer_id, version: msg.version, loads })
}

fn broker_msg(b: &Broker) -> BrokerMsg {
    BrokerMsg {
        node_id: b.node_id.0,
        raft_addr: b.raft_addr.clone(),
        client_addr: b.client_addr.clone(),
        live: b.live,
        registered_at_index: b.registered_at_index,
        max_replicas: b.max_replicas,
    }
}

fn broker_from(m: BrokerMsg) -> Broker {
    Broker {
        node_id: NodeId(m.node_id),
        raft_addr: m.raft_addr,
        client_addr: m.client_addr,
        live: m.live,
        registered_at_index: m.registered_at_index,
        max_replicas: m.max_replicas,
    }
}

fn topic_msg(t: &Topic) -> TopicMsg {
    TopicMsg {
        name: t.name.to_string(),
        replication_factor: t.config.replication_factor,
        retention_ms: t.config.retention_ms,
        retention_bytes: t.config.retention_bytes,
        max_message_bytes: t.config.max_message_bytes,
        created_at_index: t.created_at_index,
        partitions: t.partitions.iter().map(partition_msg).collect(),
        flush_interval_ms: t.config.flush_interval_ms,
        compression: compression_name(t.config.compression),
    }
}

fn topic_from(m: TopicMsg) -> Result<Topic, String> {
    let name = topic_name("topic name", m.name).map_err(|e| format!("controller snapshot: {e}"))?;
    let partitions = u32::try_from(m.partitions.len()).map_err(|_| format!("topic {name} has too many partitions"))?;
    let config = TopicConfig {
        partitions,
        replication_factor: m.replication_factor,
        retention_ms: m.retention_ms,
        retention_bytes: m.retention_bytes,
        max_message_bytes: m.max_message_bytes,
        flush_interval_ms: m.flush_interval_ms,
        compression: compression_from("compression", m.compression)
            .map_err(|e| format!("controller snapshot: topic {name}: {e}"))?,
    };
    let partitions = m.partitions.into_iter().map(partition_from).collect();
    Ok(Topic { name, config, created_at_index: m.created_at_index, partitions })
}

fn partition_msg(p: &Partition) -> PartitionMsg {
    PartitionMsg {
        group_id: p.group_id,
        replicas: p.replicas.iter().map(|n| n.0).collect(),
        leader: p.leader.map(|n| n.0),
        leader_term: p.leader_term,
    }
}

fn partition_from(m: PartitionMsg) -> Partition {
    Partition {
        group_id: m.group_id,
        replicas: m.replicas.into_iter().map(NodeId).collect(),
        leader: m.leader.map(NodeId),
        leader_term: m.leader_term,
    }
}

#[cfg(test)]
mod tests {
    use sluice_common::record::{Compression, TopicCompression};
    use sluice_raft::Fsm;

    use super::*;
    use crate::testing::sample;

    fn msg_of(meta: &Metadata) -> SnapshotMsg {
        SnapshotMsg::decode(&meta.snapshot()[MAGIC.len()..]).unwrap()
    }

    fn raw(msg: &SnapshotMsg) -> Vec<u8> {
        let mut raw = MAGIC.to_vec();
        raw.extend(msg.encode_to_vec());
        raw
    }

    /// Restores `msg` into a copy of `meta`, expecting a refusal that mentions `what`.
    fn refused(meta: &Metadata, msg: &SnapshotMsg, what: &str) {
        let mut target = meta.clone();
        let err = target.restore(&raw(msg)).unwrap_err();
        assert!(err.contains(what), "expected {what:?} in {err:?}");
        assert_eq!(&target, meta, "a refused snapshot changes nothing");
    }

    #[test]
    fn restores_exactly_what_it_snapshotted() {
        let meta = sample(4);
        let snap = meta.snapshot();
        let mut restored = Metadata::new();
        restored.restore(&snap).unwrap();
        assert_eq!(restored, meta);
        assert_eq!(restored.snapshot(), snap);
    }

    #[test]
    fn a_snapshot_cut_anywhere_is_refused() {
        let snap = sample(3).snapshot();
        for cut in 0..snap.len() {
            assert!(Metadata::new().restore(&snap[..cut]).is_err(), "cut at {cut} of {}", snap.len());
        }
    }

    #[test]
    fn foreign_and_newer_snapshots_are_refused() {
        let meta = sample(3);
        assert!(Metadata::new().restore(b"SLPS....").unwrap_err().contains("magic"));
        let newer = SnapshotMsg { format_version: SNAPSHOT_VERSION + 1, ..msg_of(&meta) };
        refused(&meta, &newer, "upgrade");
        refused(&meta, &SnapshotMsg { end: 0, ..msg_of(&meta) }, "cut short");
    }

    #[test]
    fn inconsistent_snapshots_are_refused() {
        let meta = sample(3);
        let with = |f: &dyn Fn(&mut SnapshotMsg)| {
            let mut m = msg_of(&meta);
            f(&mut m);
            m
        };
        refused(&meta, &with(&|m| m.brokers.push(m.brokers[0].clone())), "broker twice");
        refused(&meta, &with(&|m| m.topics.push(m.topics[0].clone())), "topic twice");
        refused(&meta, &with(&|m| m.topics[0].name = "a b".into()), "[a-zA-Z0-9._-]");
        refused(&meta, &with(&|m| m.topics[0].partitions[1].group_id = 1), "shares group id");
        refused(&meta, &with(&|m| m.next_group_id = 3), "next group id");
        refused(&meta, &with(&|m| m.topics[0].partitions[0].replicas[0] = 99), "not a registered broker");
        refused(&meta, &with(&|m| m.topics[0].partitions[0].replicas.pop().map(drop).unwrap()), "distinct");
        refused(&meta, &with(&|m| m.topics[0].partitions[0].leader = Some(99)), "not a replica");
        refused(&meta, &with(&|m| m.topics[0].partitions.clear()), "partitions is 0");
        refused(&meta, &with(&|m| m.brokers[0].client_addr.clear()), "empty");
        refused(&meta, &with(&|m| m.next_producer_id = u64::MAX), "next producer id");
    }

    #[test]
    fn the_producer_id_counter_survives_a_snapshot_and_old_snapshots_start_it_at_one() {
        let mut meta = sample(3);
        for _ in 0..3 {
            crate::testing::apply_ok(&mut meta, crate::ControllerCommand::AllocateProducerId);
        }
        let mut restored = Metadata::new();
        restored.restore(&meta.snapshot()).unwrap();
        assert_eq!(restored.next_producer_id(), 4);
        let old = SnapshotMsg { next_producer_id: 0, ..msg_of(&meta) };
        let mut from_old = Metadata::new();
        from_old.restore(&raw(&old)).unwrap();
        assert_eq!(from_old.next_producer_id(), FIRST_PRODUCER_ID);
    }

    #[test]
    fn a_topics_flush_interval_survives_a_snapshot_and_old_snapshots_mean_fsync_before_ack() {
        let mut meta = sample(3);
        let config = TopicConfig { flush_interval_ms: Some(250), ..TopicConfig::new(1, 3) };
        crate::testing::apply_ok(&mut meta, crate::ControllerCommand::CreateTopic { name: "fast".into(), config });
        let mut restored = Metadata::new();
        restored.restore(&meta.snapshot()).unwrap();
        assert_eq!(restored.topic("fast").unwrap().config.flush_interval_ms, Some(250));
        assert_eq!(restored.topic("a").unwrap().config.flush_interval_ms, None);
        // A snapshot written before the field existed has no tag 8 at all.
        let mut old = msg_of(&meta);
        old.topics.iter_mut().for_each(|t| t.flush_interval_ms = None);
        let mut from_old = Metadata::new();
        from_old.restore(&raw(&old)).unwrap();
        assert_eq!(from_old.topic("fast").unwrap().config.flush_interval_ms, None);
    }

    #[test]
    fn a_topics_compression_survives_a_snapshot_and_old_snapshots_mean_producer() {
        let mut meta = sample(3);
        let zstd = TopicCompression::Codec(Compression::Zstd);
        let config = TopicConfig { compression: zstd, ..TopicConfig::new(1, 3) };
        crate::testing::apply_ok(&mut meta, crate::ControllerCommand::CreateTopic { name: "packed".into(), config });
        let mut restored = Metadata::new();
        restored.restore(&meta.snapshot()).unwrap();
        assert_eq!(restored.topic("packed").unwrap().config.compression, zstd);
        assert_eq!(restored.topic("a").unwrap().config.compression, TopicCompression::Producer);
        // A snapshot written before the setting existed has no tag 9 at all.
        let mut old = msg_of(&meta);
        assert_eq!(old.topics.iter().filter(|t| t.compression.is_some()).count(), 1, "only the non-default");
        old.topics.iter_mut().for_each(|t| t.compression = None);
        let mut from_old = Metadata::new();
        from_old.restore(&raw(&old)).unwrap();
        assert_eq!(from_old.topic("packed").unwrap().config.compression, TopicCompression::Producer);
        // A codec this build does not know (a newer build's) refuses the snapshot.
        let mut newer = msg_of(&meta);
        newer.topics.iter_mut().for_each(|t| t.compression = Some("brotli".into()));
        refused(&meta, &newer, "brotli");
    }
}
