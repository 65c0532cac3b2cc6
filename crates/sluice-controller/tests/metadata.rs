//! The controller's metadata state machine driven as its Raft group drives it: encoded commands
//! applied at increasing log indexes through `Fsm::apply`, replies decoded from the bytes it
//! returns. Covers every command and every rejection, replica assignment and its balance,
//! determinism, snapshots, and garbage input.

use proptest::prelude::*;
use sluice_common::{NodeId, PartitionId, TopicName};
use sluice_controller::{
    Applied, ConfigChange, ControllerCommand, ControllerReply, FIRST_PARTITION_GROUP_ID, Metadata, Rejection,
    TopicConfig, codes, limits,
};
use sluice_raft::Fsm;

/// Applies `command` at the next log index and decodes the reply.
fn run(meta: &mut Metadata, command: &ControllerCommand) -> ControllerReply {
    let reply = meta.apply(meta.version() + 1, &command.encode());
    ControllerReply::decode(&reply).expect("every reply decodes")
}

fn ok(meta: &mut Metadata, command: ControllerCommand) -> Applied {
    run(meta, &command).into_result().unwrap_or_else(|r| panic!("{command:?} refused: {r}"))
}

/// Applies `command`, expecting a refusal with `code` that leaves everything but the version alone.
fn refused(meta: &mut Metadata, command: ControllerCommand, code: u16) -> Rejection {
    let before = meta.snapshot();
    let rejection = run(meta, &command).into_result().expect_err("command should be refused");
    assert_eq!(rejection.code, code, "{command:?}: {rejection}");
    let mut unchanged = Metadata::new();
    unchanged.restore(&before).unwrap();
    assert_eq!(unchanged.routes().topics, meta.routes().topics);
    assert_eq!(unchanged.brokers().collect::<Vec<_>>(), meta.brokers().collect::<Vec<_>>());
    rejection
}

fn register(id: u64) -> ControllerCommand {
    ControllerCommand::RegisterBroker {
        node_id: NodeId(id),
        raft_addr: format!("10.0.0.{id}:7000"),
        client_addr: format!("10.0.0.{id}:9000"),
        max_replicas: 0,
    }
}

/// Broker `id` registering with room for `max_replicas` replicas.
fn register_with(id: u64, max_replicas: u32) -> ControllerCommand {
    match register(id) {
        ControllerCommand::RegisterBroker { node_id, raft_addr, client_addr, .. } => {
            ControllerCommand::RegisterBroker { node_id, raft_addr, client_addr, max_replicas }
        }
        _ => unreachable!("register makes a registration"),
    }
}

fn live(id: u64, live: bool) -> ControllerCommand {
    ControllerCommand::SetBrokerLive { node_id: NodeId(id), live }
}

fn create(name: &str, partitions: u32, rf: u32) -> ControllerCommand {
    ControllerCommand::CreateTopic { name: name.into(), config: TopicConfig::new(partitions, rf) }
}

fn delete(name: &str) -> ControllerCommand {
    ControllerCommand::DeleteTopic { name: name.into() }
}

fn report(topic: &str, partition: u32, group_id: u64, leader: u64, term: u64) -> ControllerCommand {
    let (topic, partition, leader) = (topic.into(), PartitionId(partition), NodeId(leader));
    ControllerCommand::ReportLeader { topic, partition, group_id, leader, term }
}

fn cluster(brokers: u64) -> Metadata {
    let mut meta = Metadata::new();
    for id in 1..=brokers {
        ok(&mut meta, register(id));
    }
    meta
}

fn group_of(meta: &Metadata, topic: &str, partition: usize) -> u64 {
    meta.topic(topic).unwrap().partitions[partition].group_id
}

#[test]
fn given_a_new_broker_when_it_registers_then_it_is_live_and_reregistering_updates_it() {
    let mut meta = Metadata::new();
    let reply = ok(&mut meta, register(1));
    assert_eq!(reply, Applied::BrokerRegistered { node_id: NodeId(1), registered_at_index: 1, reregistered: false });
    let b = meta.broker(NodeId(1)).unwrap();
    assert_eq!((b.live, b.registered_at_index, b.client_addr.as_str()), (true, 1, "10.0.0.1:9000"));

    ok(&mut meta, live(1, false));
    let moved = ControllerCommand::RegisterBroker {
        node_id: NodeId(1),
        raft_addr: "h:1".into(),
        client_addr: "h:2".into(),
        max_replicas: 0,
    };
    assert!(matches!(
        ok(&mut meta, moved),
        Applied::BrokerRegistered { registered_at_index: 3, reregistered: true, .. }
    ));
    let b = meta.broker(NodeId(1)).unwrap();
    assert_eq!((b.live, b.raft_addr.as_str(), b.client_addr.as_str()), (true, "h:1", "h:2"));
    assert_eq!(meta.brokers().count(), 1);
}

#[test]
fn given_bad_addresses_when_registering_then_refused_saying_why() {
    let mut meta = Metadata::new();
    let empty = ControllerCommand::RegisterBroker {
        node_id: NodeId(1),
        raft_addr: "".into(),
        client_addr: "c:1".into(),
        max_replicas: 0,
    };
    let r = refused(&mut meta, empty, codes::INVALID_BROKER_ADDRESS);
    assert!(r.message.contains("raft address \"\"") && r.message.contains("host:port"), "{r}");
    let long = "x".repeat(limits::MAX_ADDRESS_LEN + 1);
    let long = ControllerCommand::RegisterBroker {
        node_id: NodeId(1),
        raft_addr: "r:1".into(),
        client_addr: long,
        max_replicas: 0,
    };
    assert!(refused(&mut meta, long, codes::INVALID_BROKER_ADDRESS).message.contains("the limit is 261"));
    assert_eq!(meta.brokers().count(), 0);
}

#[test]
fn given_the_broker_limit_when_one_more_registers_then_refused_but_reregistration_works() {
    let mut meta = cluster(limits::MAX_BROKERS as u64);
    let r = refused(&mut meta, register(limits::MAX_BROKERS as u64 + 1), codes::LIMIT_EXCEEDED);
    assert!(r.message.contains("1000 brokers"), "{r}");
    ok(&mut meta, register(7));
}

#[test]
fn given_brokers_when_liveness_is_set_then_it_is_recorded_and_unknown_brokers_are_refused() {
    let mut meta = cluster(2);
    assert_eq!(
        ok(&mut meta, live(2, false)),
        Applied::BrokerLiveness { node_id: NodeId(2), live: false, changed: true }
    );
    assert_eq!(
        ok(&mut meta, live(2, false)),
        Applied::BrokerLiveness { node_id: NodeId(2), live: false, changed: false }
    );
    assert_eq!(meta.live_brokers(), vec![NodeId(1)]);
    let r = refused(&mut meta, live(9, true), codes::UNKNOWN_BROKER);
    assert!(r.message.contains("broker 9 has not registered"), "{r}");
}

#[test]
fn given_live_brokers_when_a_topic_is_created_then_its_assignment_and_groups_are_returned() {
    let mut meta = cluster(3);
    let config =
        TopicConfig { retention_ms: Some(86_400_000), retention_bytes: Some(1 << 30), ..TopicConfig::new(3, 3) };
    let Applied::TopicCreated { topic, partitions } =
        ok(&mut meta, ControllerCommand::CreateTopic { name: "orders".into(), config: config.clone() })
    else {
        panic!("expected TopicCreated")
    };
    assert_eq!(topic.as_str(), "orders");
    let groups: Vec<u64> = partitions.iter().map(|p| p.group_id).collect();
    assert_eq!(groups, vec![FIRST_PARTITION_GROUP_ID, FIRST_PARTITION_GROUP_ID + 1, FIRST_PARTITION_GROUP_ID + 2]);
    let leaders: Vec<NodeId> = partitions.iter().map(|p| p.replicas[0]).collect();
    assert_eq!(leaders, vec![NodeId(1), NodeId(2), NodeId(3)], "preferred leaders rotate");
    let t = meta.topic("orders").unwrap();
    assert_eq!((&t.config, t.partitions.len(), t.partitions[1].leader), (&config, 3, None));
    assert_eq!(meta.load(NodeId(2)).replicas, 3);
}

#[test]
fn given_invalid_names_when_creating_or_deleting_then_the_name_rule_is_quoted() {
    let mut meta = cluster(1);
    for bad in ["", "a b", "..", &"x".repeat(250)] {
        let expected = TopicName::new(bad).unwrap_err().to_string();
        assert_eq!(refused(&mut meta, create(bad, 1, 1), codes::INVALID_TOPIC_NAME).message, expected);
        assert_eq!(refused(&mut meta, delete(bad), codes::INVALID_TOPIC_NAME).message, expected);
    }
    let r = refused(&mut meta, create("a/b", 1, 1), codes::INVALID_TOPIC_NAME);
    assert!(r.message.contains("'/'") && r.message.contains("[a-zA-Z0-9._-]"), "{r}");
}

#[test]
fn given_a_topic_when_created_again_then_refused() {
    let mut meta = cluster(1);
    ok(&mut meta, create("t", 1, 1));
    let r = refused(&mut meta, create("t", 2, 1), codes::TOPIC_EXISTS);
    assert!(r.message.contains("already exists"), "{r}");
}

#[test]
fn given_fewer_live_brokers_than_rf_when_creating_then_refused() {
    let mut meta = cluster(3);
    ok(&mut meta, live(3, false));
    let r = refused(&mut meta, create("t", 1, 3), codes::NOT_ENOUGH_LIVE_BROKERS);
    assert!(r.message.contains("needs 3 live brokers but 2 are live"), "{r}");
    refused(&mut meta, create("t", 1, 4), codes::NOT_ENOUGH_LIVE_BROKERS);
    // The dead broker gets nothing; when it returns it is used again.
    ok(&mut meta, create("two", 4, 2));
    assert_eq!(meta.load(NodeId(3)).replicas, 0);
    ok(&mut meta, live(3, true));
    ok(&mut meta, create("t", 1, 3));
}

#[test]
fn given_brokers_max_replicas_a_topic_that_does_not_fit_is_refused_whole_and_others_fill_the_room_left() {
    let mut meta = Metadata::new();
    for (id, max) in [(1, 4), (2, 4), (3, 0)] {
        ok(&mut meta, register_with(id, max));
    }
    ok(&mut meta, create("a", 3, 3));
    assert_eq!(meta.broker(NodeId(1)).map(|b| b.max_replicas), Some(4));
    let r = refused(&mut meta, create("big", 2, 3), codes::INSUFFICIENT_CAPACITY);
    assert!(r.message.contains("broker 1 (4 replicas)") && r.message.contains("broker 2 (4 replicas)"), "{r}");
    assert!(r.message.contains("after 1 of them"), "{r}");
    assert!(meta.topic("big").is_none(), "nothing of a refused topic is created");
    assert_eq!((meta.load(NodeId(1)).replicas, meta.load(NodeId(3)).replicas), (3, 3));
    // One replica more fits on each; then only broker 3, which has no limit, has room.
    ok(&mut meta, create("one", 3, 1));
    assert_eq!((meta.load(NodeId(1)).replicas, meta.load(NodeId(2)).replicas), (4, 4));
    refused(&mut meta, create("more", 1, 2), codes::INSUFFICIENT_CAPACITY);
    ok(&mut meta, create("solo", 2, 1));
    assert_eq!(meta.load(NodeId(3)).replicas, 6);
    // A broker that registers again with more room takes more; a deletion frees room.
    ok(&mut meta, register_with(1, 10));
    ok(&mut meta, create("more", 1, 2));
    ok(&mut meta, delete("a"));
    ok(&mut meta, create("big", 1, 3));
}

#[test]
fn given_out_of_range_settings_when_creating_then_refused_as_invalid_config() {
    let mut meta = cluster(1);
    let max = limits::MAX_MESSAGE_BYTES_LIMIT;
    let bad = [
        TopicConfig::new(0, 1),
        TopicConfig::new(limits::MAX_PARTITIONS_PER_TOPIC + 1, 1),
        TopicConfig::new(1, 0),
        TopicConfig { max_message_bytes: 0, ..TopicConfig::new(1, 1) },
        TopicConfig { max_message_bytes: max + 1, ..TopicConfig::new(1, 1) },
        TopicConfig { retention_ms: Some(0), ..TopicConfig::new(1, 1) },
        TopicConfig { retention_bytes: Some(0), ..TopicConfig::new(1, 1) },
    ];
    for config in bad {
        let r = refused(&mut meta, ControllerCommand::CreateTopic { name: "t".into(), config }, codes::INVALID_CONFIG);
        assert!(r.message.starts_with("invalid topic config: ") && r.message.contains("; "), "{r}");
    }
}

#[test]
fn given_the_cluster_partition_limit_when_exceeded_then_refused() {
    let mut meta = cluster(1);
    let per_topic = limits::MAX_PARTITIONS_PER_TOPIC;
    let topics = limits::MAX_CLUSTER_PARTITIONS / u64::from(per_topic);
    for i in 0..topics {
        ok(&mut meta, create(&format!("t{i}"), per_topic, 1));
    }
    let r = refused(&mut meta, create("one-more", 1, 1), codes::LIMIT_EXCEEDED);
    assert!(r.message.contains("100001 partitions"), "{r}");
}

#[test]
fn given_a_deleted_topic_then_its_load_is_freed_and_its_group_ids_are_never_reused() {
    let mut meta = cluster(3);
    ok(&mut meta, create("old", 3, 3));
    let Applied::TopicDeleted { partitions, .. } = ok(&mut meta, delete("old")) else {
        panic!("expected TopicDeleted")
    };
    assert_eq!(partitions.iter().map(|p| p.group_id).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(meta.topic("old").is_none() && meta.partitions_of(NodeId(1)).is_empty());
    assert_eq!(meta.load(NodeId(1)), Default::default());
    assert_eq!(refused(&mut meta, delete("old"), codes::UNKNOWN_TOPIC).code_name(), Some("UNKNOWN_TOPIC"));

    ok(&mut meta, create("old", 3, 3));
    assert_eq!(group_of(&meta, "old", 0), 4, "a recreated topic gets new groups");
    assert_eq!(meta.next_group_id(), 7);
}

#[test]
fn given_rf1_topics_when_one_is_deleted_then_spread_can_reach_2_and_new_partitions_fill_the_gap() {
    // Deletion frees replicas wherever they were: no placement rule can keep counts within 1
    // without moving existing replicas. New partitions go to the emptiest broker first.
    let mut meta = cluster(3);
    for name in ["a", "b", "c", "d"] {
        ok(&mut meta, create(name, 1, 1));
    }
    ok(&mut meta, delete("c")); // c was on broker 3; broker 1 holds a and d.
    let counts = |m: &Metadata| (1..=3).map(|n| m.load(NodeId(n)).replicas).collect::<Vec<_>>();
    assert_eq!(counts(&meta), vec![2, 1, 0]);
    ok(&mut meta, create("e", 2, 1));
    assert_eq!(counts(&meta), vec![2, 2, 1]);
}

#[test]
fn given_leader_reports_then_newer_terms_win_and_stale_ones_are_ignored() {
    let mut meta = cluster(3);
    ok(&mut meta, create("t", 2, 3));
    let g = group_of(&meta, "t", 1);
    let accepted = |leader, term| Applied::LeaderReported { accepted: true, leader: NodeId(leader), term };
    assert_eq!(ok(&mut meta, report("t", 1, g, 2, 5)), accepted(2, 5));
    assert_eq!(ok(&mut meta, report("t", 1, g, 2, 5)), accepted(2, 5), "a repeated report is harmless");
    let stale = ok(&mut meta, report("t", 1, g, 3, 4));
    assert_eq!(stale, Applied::LeaderReported { accepted: false, leader: NodeId(2), term: 5 });
    assert_eq!(ok(&mut meta, report("t", 1, g, 3, 6)), accepted(3, 6));
    let p = &meta.topic("t").unwrap().partitions[1];
    assert_eq!((p.leader, p.leader_term), (Some(NodeId(3)), 6));
    assert_eq!(meta.topic("t").unwrap().partitions[0].leader, None);
}

#[test]
fn given_bad_leader_reports_then_each_is_refused_with_its_code() {
    let mut meta = cluster(4);
    ok(&mut meta, create("t", 2, 3));
    let g = group_of(&meta, "t", 0);
    let outsider = (1..=4).find(|n| !meta.topic("t").unwrap().partitions[0].replicas.contains(&NodeId(*n))).unwrap();
    refused(&mut meta, report("nope", 0, g, 1, 1), codes::UNKNOWN_TOPIC);
    refused(&mut meta, report("bad name", 0, g, 1, 1), codes::INVALID_TOPIC_NAME);
    let r = refused(&mut meta, report("t", 2, g, 1, 1), codes::UNKNOWN_PARTITION);
    assert!(r.message.contains("has 2 partitions"), "{r}");
    let r = refused(&mut meta, report("t", 0, g, outsider, 1), codes::NOT_A_REPLICA);
    assert!(r.message.contains(&format!("broker {outsider} is not a replica of t/0")), "{r}");
    refused(&mut meta, report("t", 0, g + 1, 1, 1), codes::GROUP_MISMATCH);

    // The group of a deleted topic cannot poison a new topic of the same name.
    ok(&mut meta, delete("t"));
    ok(&mut meta, create("t", 2, 3));
    let leader = meta.topic("t").unwrap().partitions[0].replicas[0].0;
    let r = refused(&mut meta, report("t", 0, g, leader, 99), codes::GROUP_MISMATCH);
    assert!(r.message.contains("deleted and created again"), "{r}");
}

#[test]
fn given_topics_then_routes_and_hosted_partitions_say_where_everything_is() {
    let mut meta = cluster(3);
    ok(&mut meta, create("t", 3, 2));
    let g = group_of(&meta, "t", 0);
    let leader = meta.topic("t").unwrap().partitions[0].replicas[1];
    ok(&mut meta, report("t", 0, g, leader.0, 2));
    ok(&mut meta, live(leader.0, false));

    let routes = meta.routes();
    assert_eq!(routes.version, meta.version());
    let p0 = &routes.topics[0].partitions[0];
    assert_eq!((p0.partition, p0.group_id), (PartitionId(0), g));
    let l = p0.leader.as_ref().unwrap();
    assert_eq!((l.node_id, l.term, l.client_addr.clone()), (leader, 2, format!("10.0.0.{leader}:9000")));
    let r = p0.replicas.iter().find(|r| r.node_id == leader).unwrap();
    assert_eq!((r.live, r.raft_addr.clone()), (false, format!("10.0.0.{leader}:7000")));
    assert_eq!(meta.route("t").as_ref(), Some(&routes.topics[0]));
    assert!(meta.route("missing").is_none());

    let hosted: usize = (1..=3).map(|n| meta.partitions_of(NodeId(n)).len()).sum();
    assert_eq!(hosted, 6, "3 partitions × RF 2");
    for h in meta.partitions_of(NodeId(1)) {
        assert!(h.replicas.contains(&NodeId(1)));
        assert_eq!(h.group_id, group_of(&meta, "t", h.partition.0 as usize));
    }
}

#[test]
fn given_any_command_then_the_version_grows_even_when_refused() {
    let mut meta = cluster(1);
    let v = meta.version();
    refused(&mut meta, delete("missing"), codes::UNKNOWN_TOPIC);
    assert_eq!(meta.version(), v + 1);
    assert!(!meta.apply(v + 10, &register(2).encode()).is_empty());
    assert_eq!(meta.version(), v + 10, "the version is the log index of the last command");
}

#[test]
#[should_panic(expected = "out of log order")]
fn given_an_index_not_after_the_last_then_apply_asserts() {
    let mut meta = cluster(2);
    meta.apply(1, &register(3).encode());
}

#[test]
fn given_allocations_then_producer_ids_start_at_one_never_repeat_and_survive_a_snapshot() {
    let mut meta = cluster(1);
    let allocate = |meta: &mut Metadata| match ok(meta, ControllerCommand::AllocateProducerId) {
        Applied::ProducerIdAllocated { producer_id } => producer_id,
        other => panic!("expected ProducerIdAllocated, got {other:?}"),
    };
    let first: Vec<u64> = (0..3).map(|_| allocate(&mut meta)).collect();
    assert_eq!(first, [1, 2, 3], "ids start at 1 (0 is never handed out) and grow by one");
    ok(&mut meta, create("t", 1, 1));
    let mut restored = Metadata::new();
    restored.restore(&meta.snapshot()).unwrap();
    assert_eq!(allocate(&mut restored), 4, "a restored controller carries on after the last id");
    assert_eq!(restored.next_producer_id(), 5);
}

/// A random but plausible command: small id and name pools so that commands interact.
fn command() -> impl Strategy<Value = ControllerCommand> {
    let name = prop::sample::select(vec!["a", "b", "c", "bad name", ""]);
    prop_oneof![
        (1u64..=5).prop_map(register),
        (1u64..=5, any::<bool>()).prop_map(|(id, l)| live(id, l)),
        (name.clone(), 0u32..=4, 0u32..=4).prop_map(|(n, p, rf)| create(n, p, rf)),
        name.clone().prop_map(delete),
        (name, 0u32..=4, 1u64..=12, 1u64..=5, 0u64..=6).prop_map(|(n, p, g, l, t)| report(n, p, g, l, t)),
        Just(ControllerCommand::AllocateProducerId),
        (prop::sample::select(vec!["a", "b", "c", "bad name", ""]), prop::option::of(0u64..=3), 0u32..=2)
            .prop_map(|(n, retention, max)| alter(n, retention, max)),
    ]
}

/// An alteration of `name`'s retention (`Some(0)`: clear it) and message size limit (0:
/// unchanged); with neither, a change of nothing, which is refused.
fn alter(name: &str, retention_ms: Option<u64>, max_message_bytes: u32) -> ControllerCommand {
    let changes = sluice_controller::TopicConfigChanges {
        retention_ms: retention_ms.map(|ms| if ms == 0 { ConfigChange::Clear } else { ConfigChange::Set(ms) }),
        max_message_bytes: (max_message_bytes > 0).then_some(max_message_bytes),
        ..Default::default()
    };
    ControllerCommand::AlterTopicConfig { name: name.into(), changes }
}

/// Creation (partitions, RF) or deletion (index into the live topics) on `brokers` brokers.
fn topic_ops(brokers: u32) -> impl Strategy<Value = Vec<(bool, u32, u32)>> {
    prop::collection::vec((prop::bool::weighted(0.25), 1u32..=12, 1u32..=brokers), 1..40)
}

fn spreads(meta: &Metadata, brokers: u64) -> (u32, u32) {
    let loads: Vec<_> = (1..=brokers).map(|n| meta.load(NodeId(n))).collect();
    let spread = |f: fn(&sluice_controller::BrokerLoad) -> u32| {
        loads.iter().map(f).max().unwrap() - loads.iter().map(f).min().unwrap()
    };
    (spread(|l| l.replicas), spread(|l| l.preferred_leaders))
}

proptest! {
    #[test]
    fn creations_keep_replicas_and_preferred_leaders_within_one(
        (brokers, ops) in (3u32..=7).prop_flat_map(|n| (Just(n), topic_ops(n)))
    ) {
        let mut meta = cluster(u64::from(brokers));
        for (i, (_, partitions, rf)) in ops.into_iter().enumerate() {
            ok(&mut meta, create(&format!("t{i}"), partitions, rf));
            let (replicas, leaders) = spreads(&meta, u64::from(brokers));
            prop_assert!(replicas <= 1 && leaders <= 1, "spreads: replicas {}, preferred leaders {}", replicas, leaders);
        }
    }

    #[test]
    fn with_deletions_creations_never_widen_the_replica_spread_and_groups_are_never_reused(
        (brokers, ops) in (3u32..=7).prop_flat_map(|n| (Just(n), topic_ops(n)))
    ) {
        let (mut meta, n) = (cluster(u64::from(brokers)), u64::from(brokers));
        let (mut topics, mut groups_seen) = (Vec::new(), std::collections::BTreeSet::new());
        for (i, (is_delete, partitions, rf)) in ops.into_iter().enumerate() {
            if is_delete && !topics.is_empty() {
                let name: String = topics.remove(partitions as usize % topics.len());
                ok(&mut meta, delete(&name));
            } else {
                let before = spreads(&meta, n).0;
                let Applied::TopicCreated { partitions, .. } = ok(&mut meta, create(&format!("t{i}"), partitions, rf))
                else { panic!("expected TopicCreated") };
                prop_assert!(spreads(&meta, n).0 <= before.max(1));
                for p in partitions {
                    prop_assert!(groups_seen.insert(p.group_id), "group {} reused", p.group_id);
                }
                topics.push(format!("t{i}"));
            }
            prop_assert_eq!(meta.check(), Ok(()));
        }
    }

    #[test]
    fn the_same_commands_give_byte_identical_snapshots_however_snapshotted(
        commands in prop::collection::vec(command(), 1..60), cut in any::<prop::sample::Index>()
    ) {
        let (mut straight, mut first) = (Metadata::new(), Metadata::new());
        let cut = cut.index(commands.len());
        for (i, c) in commands.iter().enumerate() {
            let reply = straight.apply(i as u64 + 1, &c.encode());
            prop_assert!(ControllerReply::decode(&reply).is_ok());
            prop_assert_eq!(straight.check(), Ok(()));
            if i < cut {
                prop_assert_eq!(first.apply(i as u64 + 1, &c.encode()), reply);
            }
        }
        let mut resumed = Metadata::new();
        resumed.restore(&first.snapshot()).unwrap();
        for (i, c) in commands.iter().enumerate().skip(cut) {
            resumed.apply(i as u64 + 1, &c.encode());
        }
        prop_assert_eq!(resumed.snapshot(), straight.snapshot());
        prop_assert_eq!(resumed, straight);
    }

    #[test]
    fn garbage_commands_are_answered_never_panicked_on(raw in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut meta = cluster(3);
        ok(&mut meta, create("t", 2, 2));
        let reply = ControllerReply::decode(&meta.apply(meta.version() + 1, &raw)).unwrap();
        if ControllerCommand::decode(&raw).is_err() {
            prop_assert_eq!(reply.into_result().unwrap_err().code, codes::MALFORMED_COMMAND);
        }
        prop_assert_eq!(meta.check(), Ok(()));
        prop_assert!(Metadata::new().restore(&raw).is_err() || raw.starts_with(b"SLCM"));
    }
}
