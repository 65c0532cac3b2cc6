//! Helpers for this crate's unit tests: metadata built by applying commands, as Raft would.

use sluice_common::NodeId;
use sluice_raft::Fsm;

use crate::command::ControllerCommand;
use crate::config::TopicConfig;
use crate::metadata::Metadata;
use crate::reply::{Applied, ControllerReply};

/// Applies `command` at the next index and returns what it did; panics if it was refused.
pub(crate) fn apply_ok(meta: &mut Metadata, command: ControllerCommand) -> Applied {
    let reply = meta.apply(meta.version() + 1, &command.encode());
    ControllerReply::decode(&reply).expect("reply decodes").into_result().expect("command applied")
}

/// Metadata with brokers 1..=`brokers` registered and topics `a` (3 partitions, RF 2) and `b`
/// (2 partitions, RF 1), `a`'s partition 0 with a reported leader.
pub(crate) fn sample(brokers: u64) -> Metadata {
    let mut meta = Metadata::new();
    for id in 1..=brokers {
        let (raft_addr, client_addr) = (format!("10.0.0.{id}:7000"), format!("10.0.0.{id}:9000"));
        apply_ok(
            &mut meta,
            ControllerCommand::RegisterBroker { node_id: NodeId(id), raft_addr, client_addr, max_replicas: 0 },
        );
    }
    apply_ok(&mut meta, ControllerCommand::CreateTopic { name: "a".into(), config: TopicConfig::new(3, 2) });
    let config = TopicConfig { retention_ms: Some(1000), ..TopicConfig::new(2, 1) };
    apply_ok(&mut meta, ControllerCommand::CreateTopic { name: "b".into(), config });
    let p = meta.topic("a").unwrap().partitions[0].clone();
    let report = ControllerCommand::ReportLeader {
        topic: "a".into(),
        partition: sluice_common::PartitionId(0),
        group_id: p.group_id,
        leader: p.replicas[1],
        term: 3,
    };
    apply_ok(&mut meta, report);
    meta
}
