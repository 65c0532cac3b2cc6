//! `AlterTopicConfig` driven through `Fsm::apply` as the controller's Raft group drives it:
//! alterable settings change (and survive a snapshot), fixed ones, out-of-range values, unknown
//! topics and bad names are refused with their codes and leave the topic as it was.

use sluice_common::NodeId;
use sluice_common::record::{Compression, TopicCompression};
use sluice_controller::{
    Applied, ConfigChange, ControllerCommand, ControllerReply, Metadata, Rejection, TopicConfig, TopicConfigChanges,
    codes,
};
use sluice_raft::Fsm;

const ZSTD: TopicCompression = TopicCompression::Codec(Compression::Zstd);

fn run(meta: &mut Metadata, command: &ControllerCommand) -> Result<Applied, Rejection> {
    let reply = meta.apply(meta.version() + 1, &command.encode());
    ControllerReply::decode(&reply).expect("every reply decodes").into_result()
}

/// Three brokers and topic `t` (2 partitions, RF 3) with `config`'s settings.
fn with_topic(config: TopicConfig) -> Metadata {
    let mut meta = Metadata::new();
    for id in 1..=3 {
        let (raft_addr, client_addr) = (format!("h{id}:1"), format!("h{id}:2"));
        let register =
            ControllerCommand::RegisterBroker { node_id: NodeId(id), raft_addr, client_addr, max_replicas: 0 };
        run(&mut meta, &register).unwrap();
    }
    run(&mut meta, &ControllerCommand::CreateTopic { name: "t".into(), config }).unwrap();
    meta
}

fn alter(name: &str, changes: TopicConfigChanges) -> ControllerCommand {
    ControllerCommand::AlterTopicConfig { name: name.into(), changes }
}

/// Applies `command` expecting a refusal with `code`; checks the topic is as it was.
fn refused(meta: &mut Metadata, command: ControllerCommand, code: u16) -> String {
    let before = meta.topic("t").cloned();
    let r = run(meta, &command).expect_err("should be refused");
    assert_eq!(r.code, code, "{command:?}: {r}");
    assert_eq!(meta.topic("t").cloned(), before, "a refused alteration changes nothing");
    r.message
}

#[test]
fn given_a_topic_when_altered_then_only_the_named_settings_change_and_survive_a_snapshot() {
    let created = TopicConfig { retention_ms: Some(60_000), compression: ZSTD, ..TopicConfig::new(2, 3) };
    let mut meta = with_topic(created.clone());
    let replicas = meta.topic("t").unwrap().partitions.clone();
    let changes = TopicConfigChanges {
        retention_ms: Some(ConfigChange::Clear),
        retention_bytes: Some(ConfigChange::Set(1 << 20)),
        max_message_bytes: Some(1000),
        compression: Some(TopicCompression::Codec(Compression::Lz4)),
        ..TopicConfigChanges::default()
    };
    let applied = run(&mut meta, &alter("t", changes)).unwrap();
    let expected = TopicConfig {
        retention_ms: None,
        retention_bytes: Some(1 << 20),
        max_message_bytes: 1000,
        compression: TopicCompression::Codec(Compression::Lz4),
        ..created.clone()
    };
    let Applied::TopicConfigAltered { topic, previous, config } = applied else {
        panic!("expected TopicConfigAltered")
    };
    assert_eq!((topic.as_str(), &previous, &config), ("t", &created, &expected));
    let t = meta.topic("t").unwrap();
    assert_eq!(t.config, expected);
    assert_eq!(t.partitions, replicas, "partitions, replicas and groups are untouched");

    let back = TopicConfigChanges { compression: Some(TopicCompression::Producer), ..TopicConfigChanges::default() };
    run(&mut meta, &alter("t", back)).unwrap();
    assert_eq!(meta.topic("t").unwrap().config.compression, TopicCompression::Producer);
    let mut restored = Metadata::new();
    restored.restore(&meta.snapshot()).unwrap();
    assert_eq!(restored, meta);
}

#[test]
fn given_fixed_settings_when_altered_then_refused_as_invalid_config_saying_why() {
    let mut meta = with_topic(TopicConfig::new(2, 3));
    let partitions = alter("t", TopicConfigChanges { partitions: Some(4), ..TopicConfigChanges::default() });
    let message = refused(&mut meta, partitions, codes::INVALID_CONFIG);
    assert!(message.contains("partitions cannot be altered") && message.contains("not supported yet"), "{message}");
    let rf = alter("t", TopicConfigChanges { replication_factor: Some(1), ..TopicConfigChanges::default() });
    assert!(refused(&mut meta, rf, codes::INVALID_CONFIG).contains("replication_factor cannot be altered"));
    let flush = alter("t", TopicConfigChanges { flush_interval_ms: Some(100), ..TopicConfigChanges::default() });
    assert!(refused(&mut meta, flush, codes::INVALID_CONFIG).contains("flush_interval_ms cannot be altered"));
    // A fixed setting refuses the whole command, the alterable changes with it.
    let mixed =
        TopicConfigChanges { partitions: Some(4), max_message_bytes: Some(10), ..TopicConfigChanges::default() };
    refused(&mut meta, alter("t", mixed), codes::INVALID_CONFIG);
    assert!(refused(&mut meta, alter("t", TopicConfigChanges::default()), codes::INVALID_CONFIG).contains("no change"));
}

#[test]
fn given_out_of_range_values_when_altered_then_refused_like_at_creation() {
    let mut meta = with_topic(TopicConfig::new(2, 3));
    let cases = [
        (TopicConfigChanges { max_message_bytes: Some(0), ..Default::default() }, "max_message_bytes is 0"),
        (TopicConfigChanges { max_message_bytes: Some(64 << 20 | 1), ..Default::default() }, "64 MiB"),
        (TopicConfigChanges { retention_ms: Some(ConfigChange::Set(0)), ..Default::default() }, "retention_ms is 0"),
        (TopicConfigChanges { retention_bytes: Some(ConfigChange::Set(0)), ..Default::default() }, "retention_bytes"),
    ];
    for (changes, says) in cases {
        let message = refused(&mut meta, alter("t", changes), codes::INVALID_CONFIG);
        assert!(message.starts_with("invalid topic config: ") && message.contains(says), "{message}");
    }
}

#[test]
fn given_no_such_topic_when_altered_then_refused_as_unknown_or_invalid_name() {
    let mut meta = with_topic(TopicConfig::new(1, 1));
    let changes = TopicConfigChanges { max_message_bytes: Some(10), ..TopicConfigChanges::default() };
    let message = refused(&mut meta, alter("nope", changes.clone()), codes::UNKNOWN_TOPIC);
    assert!(message.contains("\"nope\" does not exist"), "{message}");
    refused(&mut meta, alter("no spaces", changes.clone()), codes::INVALID_TOPIC_NAME);
    run(&mut meta, &ControllerCommand::DeleteTopic { name: "t".into() }).unwrap();
    assert_eq!(run(&mut meta, &alter("t", changes)).unwrap_err().code, codes::UNKNOWN_TOPIC);
}
