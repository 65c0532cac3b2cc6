//! Random operations by modelled clients (joins, heartbeats with slow revocations, leaves,
//! static leaves, expiries, commits, subscription and partition-count changes), with a small
//! seeded PRNG. After every step:
//! - the state is exactly what its checkpoint rebuilds, and applying the checkpoint on top of
//!   it changes nothing;
//! - no partition is held by two members, at the coordinator or at the clients;
//! - a client in good standing is never refused, and only clients in good standing are served.
//!
//! Once the operations stop and every client keeps heartbeating, each group settles: stable,
//! every subscribed partition assigned, equal subscriptions balanced.

use sluice_common::record::RecordBatch;
use sluice_proto::ErrorCode;
use sluice_proto::v1::{CommitOffsetsRequest, GroupHeartbeatRequest, OffsetToCommit};

use super::tests::{DEFAULTS, Fixture, assert_exclusive};
use super::*;
use crate::groups::records::{decode_batch, encode_batch};

/// xorshift64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

const GROUPS: [&str; 2] = ["g0", "g1"];
const TOPICS: [&str; 3] = ["a", "b", "c"];
const CLIENTS_PER_GROUP: usize = 4;
const MAX_PARTITIONS: u32 = 6;

/// A consumer as the protocol expects it to behave.
struct Client {
    group: &'static str,
    index: usize,
    instance: Option<String>,
    /// Grows after a static leave: the next process of the same instance has a new member id.
    generation: u32,
    member_id: String,
    /// 0 until joined.
    epoch: i32,
    topics: Vec<String>,
    /// The last assignment received.
    given: Assignment,
    /// What it consumes: `given` plus partitions it has not finished giving up.
    owned: Assignment,
}

impl Client {
    fn new(group: &'static str, index: usize) -> Client {
        let instance = index.is_multiple_of(2).then(|| format!("{group}-i{index}"));
        let mut c = Client {
            group,
            index,
            instance,
            generation: 0,
            member_id: String::new(),
            epoch: 0,
            topics: vec!["a".into(), "b".into()],
            given: Assignment::default(),
            owned: Assignment::default(),
        };
        c.rename();
        c
    }

    fn rename(&mut self) {
        self.member_id = format!("{}-c{}-{}", self.group, self.index, self.generation);
    }

    fn request(&self, epoch: i32) -> GroupHeartbeatRequest {
        GroupHeartbeatRequest {
            group: self.group.into(),
            member_id: self.member_id.clone(),
            member_epoch: epoch,
            instance_id: self.instance.clone(),
            topics: self.topics.clone(),
            owned: self.owned.to_client(),
            session_timeout_ms: 0,
            rebalance_timeout_ms: 0,
            filters: Vec::new(),
            broadcast: false,
            skipped: Vec::new(),
        }
    }

    /// Drops everything, as after being fenced or leaving.
    fn reset(&mut self) {
        self.epoch = 0;
        self.given = Assignment::default();
        self.owned = Assignment::default();
    }

    /// Whether the coordinator knows this client as the member it thinks it is.
    fn in_good_standing(&self, state: &Coordinated) -> bool {
        let member = state.groups.get(self.group).and_then(|g| g.members.get(&self.member_id));
        self.epoch > 0 && member.is_some_and(|m| !m.static_left && m.epoch == self.epoch)
    }
}

fn heartbeat(f: &mut Fixture, c: &mut Client, rng: &mut Rng, release: bool) {
    if c.owned != c.given && (release || rng.chance(2)) {
        c.owned = c.given.clone(); // finished giving partitions up
    }
    let expected_ok = c.epoch == 0 || c.in_good_standing(&f.state);
    match f.beat(&c.request(c.epoch)) {
        Ok(plan) => {
            assert!(expected_ok, "{} served although not in good standing", c.member_id);
            c.epoch = plan.response.member_epoch;
            if let Some(a) = plan.response.assignment {
                c.given = Assignment::from_client(&a.partitions);
                c.owned.extend(&c.given);
                if release || rng.chance(2) {
                    c.owned = c.given.clone();
                }
            }
        }
        Err(e) => {
            assert!(!expected_ok, "{} refused: {e}", c.member_id);
            assert!(matches!(e.code, ErrorCode::FencedMemberEpoch | ErrorCode::UnknownMemberId), "{e}");
            c.reset();
        }
    }
}

fn leave(f: &mut Fixture, c: &mut Client, statically: bool) {
    let plan = f.ok(&c.request(if statically { -2 } else { -1 }));
    assert_eq!(plan.left, if statically { LeaveKind::StaticLeft } else { LeaveKind::Left });
    c.reset();
    if statically {
        c.generation += 1;
        c.rename();
    }
}

fn commit(f: &mut Fixture, c: &Client, rng: &mut Rng) {
    let owned: Vec<(&str, u32)> = c.owned.iter().collect();
    if owned.is_empty() {
        return;
    }
    let (topic, partition) = owned[rng.below(owned.len())];
    let offset =
        OffsetToCommit { topic: topic.into(), partition, offset: rng.below(1000) as u64, metadata: String::new() };
    let request = CommitOffsetsRequest {
        group: c.group.into(),
        member_id: c.member_id.clone(),
        member_epoch: c.epoch,
        offsets: vec![offset],
    };
    match f.state.commit(&request, 42) {
        Ok(records) => {
            assert!(c.in_good_standing(&f.state), "a commit from {} accepted", c.member_id);
            f.apply(&records);
        }
        Err(e) => assert!(!c.in_good_standing(&f.state), "{} could not commit {topic}/{partition}: {e}", c.member_id),
    }
}

fn expire_any(f: &mut Fixture, rng: &mut Rng) {
    let group = GROUPS[rng.below(GROUPS.len())];
    let ids: Vec<String> = f.state.groups.get(group).map(|g| g.members.keys().cloned().collect()).unwrap_or_default();
    if !ids.is_empty() {
        let id = ids[rng.below(ids.len())].clone();
        assert!(!f.expire(group, &id).is_empty());
    }
}

fn step(f: &mut Fixture, clients: &mut [Client], rng: &mut Rng) {
    let i = rng.below(clients.len());
    match rng.below(20) {
        0 if clients[i].epoch > 0 => leave(f, &mut clients[i], false),
        1 if clients[i].epoch > 0 && clients[i].instance.is_some() => leave(f, &mut clients[i], true),
        2 => expire_any(f, rng),
        3 | 4 => commit(f, &clients[i], rng),
        5 => {
            let mask = 1 + rng.below(7);
            clients[i].topics = (0..3).filter(|b| mask & (1 << b) != 0).map(|b| TOPICS[b].to_owned()).collect();
        }
        6 => {
            let topic = TOPICS[rng.below(TOPICS.len())];
            let count = f.topics.entry(topic.to_owned()).or_insert(0);
            *count = (*count + 1).min(MAX_PARTITIONS);
        }
        _ => heartbeat(f, &mut clients[i], rng, false),
    }
}

/// The invariants that hold after every step.
fn check(f: &Fixture, clients: &[Client]) {
    let checkpoint = f.state.checkpoint();
    let batch = RecordBatch::parse(encode_batch(&checkpoint, 0)).expect("a checkpoint is one valid batch");
    let mut rebuilt = Coordinated::new();
    decode_batch(&batch).expect("a checkpoint decodes").iter().for_each(|r| rebuilt.apply(r));
    assert_eq!(rebuilt, f.state, "the checkpoint does not rebuild the state");
    let mut again = f.state.clone();
    checkpoint.iter().for_each(|r| again.apply(r));
    assert_eq!(again, f.state, "applying a checkpoint over the state changed it");
    for g in f.state.groups.values() {
        assert!(!g.members.is_empty() || !g.offsets.is_empty(), "a vacant group is kept");
        assert_exclusive(g);
    }
    let standing: Vec<&Client> = clients.iter().filter(|c| c.in_good_standing(&f.state)).collect();
    for (n, a) in standing.iter().enumerate() {
        for b in standing.iter().skip(n + 1).filter(|b| b.group == a.group) {
            assert!(
                !a.owned.intersects(&b.owned),
                "{} and {} both consume {:?}",
                a.member_id,
                b.member_id,
                a.owned.intersection(&b.owned)
            );
        }
    }
}

/// Stops the random operations: static members that left are expired, everyone heartbeats
/// until nothing changes, and each group must then be stable and complete.
fn settle(f: &mut Fixture, clients: &mut [Client], rng: &mut Rng) {
    for group in GROUPS {
        let gone: Vec<String> = f.state.groups.get(group).map_or_else(Vec::new, |g| {
            g.members.iter().filter(|(_, m)| m.static_left).map(|(id, _)| id.clone()).collect()
        });
        for id in gone {
            f.expire(group, &id);
        }
    }
    for _round in 0..12 {
        for c in clients.iter_mut() {
            heartbeat(f, c, rng, true);
        }
    }
    for (name, g) in &f.state.groups {
        assert_eq!(g.state(), GroupState::Stable, "{name} did not settle: {g:#?}");
        let mut by_subscription: BTreeMap<&BTreeSet<String>, Vec<usize>> = BTreeMap::new();
        let mut assigned = Assignment::default();
        for m in g.members.values() {
            by_subscription.entry(&m.topics).or_default().push(m.assigned.len());
            assigned.extend(&m.assigned);
        }
        for counts in by_subscription.values() {
            assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1, "{name}: {counts:?}");
        }
        for (topic, &n) in &f.topics {
            if g.members.values().any(|m| m.topics.contains(topic)) {
                assert!((0..n).all(|p| assigned.contains(topic, p)), "{name}: {topic} not fully assigned");
            }
        }
    }
}

#[test]
fn given_random_operations_then_checkpoints_rebuild_the_state_ownership_is_exclusive_and_groups_settle() {
    for seed in 1..=24_u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut f = Fixture::new(&[("a", 3), ("b", 2)]);
        let mut clients: Vec<Client> =
            GROUPS.iter().flat_map(|&g| (0..CLIENTS_PER_GROUP).map(move |i| Client::new(g, i))).collect();
        for _ in 0..400 {
            step(&mut f, &mut clients, &mut rng);
            check(&f, &clients);
        }
        settle(&mut f, &mut clients, &mut rng);
        check(&f, &clients);
    }
}

#[test]
fn given_the_same_history_then_two_replays_reach_identical_states() {
    // The coordinator's state is a function of the log alone.
    let mut f = Fixture::new(&[("a", 4)]);
    let mut log = Vec::new();
    let mut rng = Rng(7);
    let mut clients: Vec<Client> = (0..3).map(|i| Client::new("g0", i)).collect();
    for _ in 0..200 {
        let c = &mut clients[rng.below(3)];
        let plan = f.state.heartbeat(&c.request(c.epoch), "h", &|t| (t == "a").then_some(4), &DEFAULTS);
        let Ok(plan) = plan else {
            c.reset();
            continue;
        };
        log.extend(plan.records.iter().cloned());
        f.apply(&plan.records);
        c.epoch = plan.response.member_epoch;
        if let Some(a) = plan.response.assignment {
            c.given = Assignment::from_client(&a.partitions);
            c.owned = c.given.clone();
        }
    }
    let replay = |records: &[GroupRecord]| {
        let mut s = Coordinated::new();
        records.iter().for_each(|r| s.apply(r));
        s
    };
    assert!(!log.is_empty());
    assert_eq!(replay(&log), f.state);
    assert_eq!(replay(&log), replay(&log));
}
