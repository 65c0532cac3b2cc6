//! Membership and reconciliation: joins, heartbeats, leaves, static members, fencing, expiry.
//! Every plan is applied (through a record batch, as the coordinator does) and then checked
//! against the state it produced; see [`Fixture::beat`].

use std::collections::BTreeMap;

use sluice_common::record::RecordBatch;
use sluice_proto::ErrorCode;
use sluice_proto::v1::GroupHeartbeatRequest;

use super::*;
use crate::groups::records::{decode_batch, encode_batch};

pub(super) const DEFAULTS: GroupDefaults =
    GroupDefaults { session_timeout_ms: 10_000, rebalance_timeout_ms: 60_000, heartbeat_interval_ms: 1_000 };

/// A coordinator's state and the partition counts of the cluster's topics.
pub(super) struct Fixture {
    pub state: Coordinated,
    pub topics: BTreeMap<String, u32>,
}

impl Fixture {
    pub fn new(topics: &[(&str, u32)]) -> Fixture {
        Fixture { state: Coordinated::new(), topics: topics.iter().map(|&(t, n)| (t.to_owned(), n)).collect() }
    }

    pub fn plan(&self, req: &GroupHeartbeatRequest) -> Result<HeartbeatPlan, GroupError> {
        let topics = &self.topics;
        self.state.heartbeat(req, "10.0.0.1", &|t| topics.get(t).copied(), &DEFAULTS)
    }

    /// Writes `records` as the coordinator would (one batch) and applies what is read back.
    pub fn apply(&mut self, records: &[GroupRecord]) {
        let batch = RecordBatch::parse(encode_batch(records, 1)).expect("encoded batch parses");
        for r in decode_batch(&batch).expect("encoded batch decodes") {
            self.state.apply(&r);
        }
    }

    /// Plans `req`, applies its records, and checks that the answer matches the new state and
    /// that asking again changes nothing.
    pub fn beat(&mut self, req: &GroupHeartbeatRequest) -> Result<HeartbeatPlan, GroupError> {
        let plan = self.plan(req)?;
        self.apply(&plan.records);
        self.check(req, &plan);
        Ok(plan)
    }

    pub fn ok(&mut self, req: &GroupHeartbeatRequest) -> HeartbeatPlan {
        self.beat(req).unwrap_or_else(|e| panic!("{req:?} refused: {e}"))
    }

    pub fn expire(&mut self, group: &str, member: &str) -> Vec<GroupRecord> {
        let topics = &self.topics;
        let records = self.state.expire(group, member, &|t| topics.get(t).copied());
        self.apply(&records);
        records
    }

    fn check(&self, req: &GroupHeartbeatRequest, plan: &HeartbeatPlan) {
        let member = self.state.groups.get(&req.group).and_then(|g| g.members.get(&req.member_id));
        match plan.left {
            LeaveKind::Left => assert!(member.is_none(), "{} still in the group after leaving", req.member_id),
            LeaveKind::StaticLeft => assert!(member.is_none_or(|m| m.static_left)),
            LeaveKind::None => {
                let m = member.expect("a member that stays is in the group");
                assert_eq!(plan.response.member_epoch, m.epoch, "answered epoch vs state");
                if let Some(a) = &plan.response.assignment {
                    assert_eq!(Assignment::from_client(&a.partitions), m.assigned, "answered assignment vs state");
                }
                assert_eq!(plan.revoking, !m.pending_revocation.is_empty());
                let again = GroupHeartbeatRequest {
                    member_epoch: if req.member_epoch == 0 { 0 } else { m.epoch },
                    ..req.clone()
                };
                let replan = self.plan(&again).expect("asking again is accepted");
                assert!(replan.records.is_empty(), "asking again changed something: {:?}", replan.records);
                assert_eq!(replan.response.member_epoch, m.epoch);
            }
        }
        if let Some(g) = self.state.groups.get(&req.group) {
            assert_exclusive(g);
        }
    }

    pub fn member(&self, group: &str, id: &str) -> &Member {
        &self.state.groups[group].members[id]
    }

    pub fn group(&self, group: &str) -> &Group {
        &self.state.groups[group]
    }
}

/// No partition is owned, or being given up, by two members at once.
pub(super) fn assert_exclusive(g: &Group) {
    if g.broadcast {
        return; // every member reads every partition
    }
    let mut seen: BTreeMap<(String, u32), &str> = BTreeMap::new();
    for (id, m) in &g.members {
        for (t, p) in m.assigned.iter().chain(m.pending_revocation.iter()) {
            if let Some(other) = seen.insert((t.to_owned(), p), id) {
                panic!("{t}/{p} held by both {other} and {id}");
            }
        }
    }
}

pub(super) fn req(group: &str, id: &str, epoch: i32, topics: &[&str], owned: &Assignment) -> GroupHeartbeatRequest {
    GroupHeartbeatRequest {
        group: group.into(),
        member_id: id.into(),
        member_epoch: epoch,
        instance_id: None,
        topics: topics.iter().map(|t| (*t).to_owned()).collect(),
        owned: owned.to_client(),
        session_timeout_ms: 0,
        rebalance_timeout_ms: 0,
        filters: Vec::new(),
        broadcast: false,
        skipped: Vec::new(),
    }
}

fn join(group: &str, id: &str, topics: &[&str]) -> GroupHeartbeatRequest {
    req(group, id, 0, topics, &Assignment::default())
}

fn parts(list: &[(&str, &[u32])]) -> Assignment {
    let mut a = Assignment::default();
    for (t, ps) in list {
        for &p in *ps {
            a.insert(t, p);
        }
    }
    a
}

fn given(plan: &HeartbeatPlan) -> Assignment {
    Assignment::from_client(&plan.response.assignment.as_ref().expect("an assignment in the answer").partitions)
}

fn code(result: Result<HeartbeatPlan, GroupError>) -> ErrorCode {
    result.expect_err("refused").code
}

fn kinds(records: &[GroupRecord]) -> Vec<&'static str> {
    let kind = |r: &GroupRecord| match r.change.as_ref().expect("a change") {
        Change::Member(_) => "member",
        Change::MemberRemoved(_) => "removed",
        Change::GroupEpoch(_) => "epoch",
        Change::Target(_) => "target",
        Change::Current(_) => "current",
        Change::Offset(_) => "offset",
        Change::StaticLeft(_) => "static_left",
        Change::Checkpoint(_) => "checkpoint",
        Change::GroupDeleted(_) => "deleted",
        Change::Filter(_) => "filter",
        Change::Mode(_) => "mode",
        Change::TxnOffsets(_) => "txn_offsets",
        Change::TxnOffsetsEnded(_) => "txn_ended",
        Change::RetryPolicy(_) => "retry_policy",
        Change::Retry(_) => "retry",
        Change::DeadLetter(_) => "dead_letter",
        Change::DeadLetterWritten(_) => "dead_letter_written",
        Change::DeadLetterCursors(_) => "dead_letter_cursors",
    };
    records.iter().map(kind).collect()
}

#[test]
fn given_bad_ids_or_epochs_when_heartbeating_then_the_request_is_refused_with_the_matching_code() {
    let f = Fixture::new(&[("t", 4)]);
    for bad in ["", "has space", "ünïcode", "g".repeat(250).as_str()] {
        assert_eq!(code(f.plan(&join(bad, "m", &["t"]))), ErrorCode::InvalidGroupId, "{bad:?}");
    }
    assert!(f.plan(&join(&"g".repeat(249), "m", &["t"])).is_ok());
    assert!(f.plan(&join("a.B_c-9", "m", &["t"])).is_ok());
    assert_eq!(code(f.plan(&join("g", "", &["t"]))), ErrorCode::InvalidRequest);
    assert_eq!(code(f.plan(&join("g", &"m".repeat(256), &["t"]))), ErrorCode::InvalidRequest);
    assert_eq!(code(f.plan(&req("g", "m", -3, &["t"], &Assignment::default()))), ErrorCode::InvalidRequest);
    assert_eq!(code(f.plan(&join("g", "m", &["bad topic"]))), ErrorCode::InvalidTopicName);
    let no_instance = req("g", "m", -2, &["t"], &Assignment::default());
    assert_eq!(code(f.plan(&no_instance)), ErrorCode::InvalidRequest);
    let empty_instance = GroupHeartbeatRequest { instance_id: Some(String::new()), ..join("g", "m", &["t"]) };
    assert_eq!(code(f.plan(&empty_instance)), ErrorCode::InvalidRequest);
}

#[test]
fn given_a_new_group_when_the_first_member_joins_then_it_gets_every_partition_at_epoch_one() {
    let mut f = Fixture::new(&[("t", 4), ("u", 2)]);
    let plan = f.ok(&join("g", "a", &["t", "u", "t"]));
    assert_eq!(kinds(&plan.records), ["member", "epoch", "target", "current"]);
    assert_eq!(plan.response.member_epoch, 1);
    assert_eq!(plan.response.heartbeat_interval_ms, 1_000);
    assert_eq!(given(&plan), parts(&[("t", &[0, 1, 2, 3]), ("u", &[0, 1])]));
    assert!(!plan.revoking && plan.left == LeaveKind::None);
    let g = f.group("g");
    assert_eq!((g.epoch, g.state()), (1, GroupState::Stable));
    assert_eq!(g.partition_counts, BTreeMap::from([("t".to_owned(), 4), ("u".to_owned(), 2)]));
    assert_eq!(f.member("g", "a").topics.len(), 2, "duplicate topics are folded");
}

#[test]
fn given_a_stable_member_when_it_heartbeats_unchanged_then_nothing_is_written_and_no_assignment_is_sent() {
    let mut f = Fixture::new(&[("t", 3)]);
    let joined = f.ok(&join("g", "a", &["t"]));
    let plan = f.ok(&req("g", "a", 1, &["t"], &given(&joined)));
    assert!(plan.records.is_empty());
    assert_eq!(plan.response.assignment, None);
    assert_eq!(plan.response.member_epoch, 1);
}

#[test]
fn given_two_members_when_the_second_joins_then_partitions_move_only_after_the_first_releases_them() {
    let mut f = Fixture::new(&[("t", 4)]);
    let all = given(&f.ok(&join("g", "a", &["t"])));
    // b joins at group epoch 2: its target is half, but a still owns everything.
    let b = f.ok(&join("g", "b", &["t"]));
    assert_eq!(f.group("g").epoch, 2);
    assert_eq!((b.response.member_epoch, given(&b)), (2, Assignment::default()));
    assert_eq!(f.member("g", "b").target.iter().count(), 2);
    assert_eq!(f.group("g").state(), GroupState::Reconciling);
    // a is told to give up b's half and keeps epoch 1 until it has.
    let a = f.ok(&req("g", "a", 1, &["t"], &all));
    let kept = given(&a);
    assert_eq!((a.response.member_epoch, kept.iter().count(), a.revoking), (1, 2, true));
    assert_eq!(f.member("g", "a").pending_revocation, all.difference(&kept));
    // b still gets nothing while a has not released them.
    let b = f.ok(&req("g", "b", 2, &["t"], &Assignment::default()));
    assert!(b.records.is_empty() && b.response.assignment.is_none());
    // Still owning them: a's answer repeats the assignment, and nothing changes.
    let again = f.ok(&req("g", "a", 1, &["t"], &all));
    assert!(again.records.is_empty() && again.revoking);
    assert_eq!(given(&again), kept);
    // a reports them released: it reaches epoch 2.
    let a = f.ok(&req("g", "a", 1, &["t"], &kept));
    assert_eq!((a.response.member_epoch, a.revoking, a.response.assignment), (2, false, None));
    // b now receives its half.
    let b = f.ok(&req("g", "b", 2, &["t"], &Assignment::default()));
    assert_eq!(given(&b), all.difference(&kept));
    assert_eq!(f.group("g").state(), GroupState::Stable);
}

#[test]
fn given_a_member_that_no_longer_owns_what_it_must_revoke_when_it_heartbeats_then_it_moves_on_at_once() {
    let mut f = Fixture::new(&[("t", 4)]);
    f.ok(&join("g", "a", &["t"]));
    f.ok(&join("g", "b", &["t"]));
    // a reports owning nothing (it lost its partitions): no revocation round-trip needed.
    let a = f.ok(&req("g", "a", 1, &["t"], &Assignment::default()));
    assert_eq!((a.response.member_epoch, a.revoking), (2, false));
    assert_eq!(given(&a), f.member("g", "a").target);
}

#[test]
fn given_a_member_when_its_epoch_is_wrong_or_its_id_unknown_then_it_is_fenced_or_unknown() {
    let mut f = Fixture::new(&[("t", 2)]);
    let owned = given(&f.ok(&join("g", "a", &["t"])));
    assert_eq!(code(f.plan(&req("g", "a", 2, &["t"], &owned))), ErrorCode::FencedMemberEpoch);
    f.ok(&join("g", "b", &["t"]));
    let a = f.ok(&req("g", "a", 1, &["t"], &owned));
    f.ok(&req("g", "a", 1, &["t"], &given(&a)));
    assert_eq!(f.member("g", "a").epoch, 2);
    assert_eq!(code(f.plan(&req("g", "a", 1, &["t"], &owned))), ErrorCode::FencedMemberEpoch);
    assert_eq!(code(f.plan(&req("g", "zed", 1, &["t"], &owned))), ErrorCode::UnknownMemberId);
    assert_eq!(code(f.plan(&req("other", "a", 1, &["t"], &owned))), ErrorCode::UnknownMemberId);
}

#[test]
fn given_a_fenced_member_when_it_rejoins_with_epoch_zero_then_it_gets_its_assignment_back_without_a_new_epoch() {
    let mut f = Fixture::new(&[("t", 2)]);
    let owned = given(&f.ok(&join("g", "a", &["t"])));
    let plan = f.ok(&join("g", "a", &["t"]));
    assert!(plan.records.is_empty(), "{:?}", kinds(&plan.records));
    assert_eq!((plan.response.member_epoch, given(&plan)), (1, owned));
    assert_eq!(f.group("g").epoch, 1);
}

#[test]
fn given_a_lost_answer_when_the_member_reports_what_it_had_then_the_assignment_is_sent_again() {
    let mut f = Fixture::new(&[("t", 4)]);
    f.ok(&join("g", "a", &["t"]));
    f.ok(&join("g", "b", &["t"]));
    let mut a_owned = f.member("g", "a").assigned.clone();
    a_owned.extend(&f.member("g", "a").pending_revocation);
    let a = f.ok(&req("g", "a", 1, &["t"], &a_owned));
    f.ok(&req("g", "a", 1, &["t"], &given(&a)));
    // b's answer with its partitions is lost; its next heartbeat still reports nothing owned.
    let b = f.ok(&req("g", "b", 2, &["t"], &Assignment::default()));
    let lost = given(&b);
    let b = f.ok(&req("g", "b", 2, &["t"], &Assignment::default()));
    assert!(b.records.is_empty());
    assert_eq!(given(&b), lost);
    let b = f.ok(&req("g", "b", 2, &["t"], &lost));
    assert_eq!(b.response.assignment, None);
}

#[test]
fn given_changes_to_subscriptions_or_partition_counts_when_heartbeating_then_the_group_epoch_grows() {
    let mut f = Fixture::new(&[("t", 2), ("u", 2)]);
    let mut owned = given(&f.ok(&join("g", "a", &["t", "ghost"])));
    assert_eq!(f.group("g").epoch, 1);
    // Subscribing to another topic.
    let plan = f.ok(&req("g", "a", 1, &["t", "u", "ghost"], &owned));
    assert_eq!((f.group("g").epoch, plan.response.member_epoch), (2, 2));
    owned = given(&plan);
    assert_eq!(owned.iter().count(), 4);
    // The topic grows.
    f.topics.insert("t".into(), 3);
    let plan = f.ok(&req("g", "a", 2, &["t", "u", "ghost"], &owned));
    assert_eq!(f.group("g").epoch, 3);
    owned = given(&plan);
    assert!(owned.contains("t", 2));
    // A subscribed topic comes into existence.
    f.topics.insert("ghost".into(), 1);
    let plan = f.ok(&req("g", "a", 3, &["t", "u", "ghost"], &owned));
    assert_eq!(f.group("g").epoch, 4);
    assert!(given(&plan).contains("ghost", 0));
    // Only timeouts change: the member is updated, the epoch stays.
    let slow =
        GroupHeartbeatRequest { session_timeout_ms: 30_000, ..req("g", "a", 4, &["t", "u", "ghost"], &given(&plan)) };
    let plan = f.ok(&slow);
    assert_eq!(kinds(&plan.records), ["member"]);
    assert_eq!((f.group("g").epoch, f.member("g", "a").session_timeout_ms), (4, 30_000));
}

#[test]
fn given_members_when_one_leaves_then_the_epoch_grows_and_the_others_take_its_partitions() {
    let mut f = Fixture::new(&[("t", 4)]);
    let a0 = given(&f.ok(&join("g", "a", &["t"])));
    f.ok(&join("g", "b", &["t"]));
    let a = f.ok(&req("g", "a", 1, &["t"], &a0));
    let a1 = given(&a);
    f.ok(&req("g", "a", 1, &["t"], &a1));
    let b1 = given(&f.ok(&req("g", "b", 2, &["t"], &Assignment::default())));
    let plan = f.ok(&req("g", "b", -1, &["t"], &b1));
    assert_eq!((plan.left, plan.response.member_epoch, plan.response.assignment.clone()), (LeaveKind::Left, -1, None));
    assert_eq!(&kinds(&plan.records)[..2], ["removed", "epoch"]);
    assert_eq!(f.group("g").epoch, 3);
    let a = f.ok(&req("g", "a", 2, &["t"], &a1));
    assert_eq!((a.response.member_epoch, given(&a).iter().count()), (3, 4));
    // Leaving again, or a member that never was: nothing to write.
    let again = f.ok(&req("g", "b", -1, &["t"], &Assignment::default()));
    assert!(again.records.is_empty() && again.left == LeaveKind::Left);
}

#[test]
fn given_the_last_member_when_it_leaves_then_a_group_without_offsets_disappears() {
    let mut f = Fixture::new(&[("t", 1)]);
    f.ok(&join("g", "a", &["t"]));
    f.ok(&join("h", "a", &["t"]));
    let commit = v1::CommitOffsetsRequest {
        group: "h".into(),
        member_id: "a".into(),
        member_epoch: 1,
        offsets: vec![v1::OffsetToCommit { topic: "t".into(), partition: 0, offset: 5, metadata: String::new() }],
    };
    let records = f.state.commit(&commit, 7).expect("owner commits");
    f.apply(&records);
    f.ok(&req("g", "a", -1, &["t"], &Assignment::default()));
    f.ok(&req("h", "a", -1, &["t"], &Assignment::default()));
    let listed: Vec<(String, String, u32)> =
        f.state.list().into_iter().map(|l| (l.group, l.state, l.members)).collect();
    assert_eq!(listed, vec![("h".to_owned(), "EMPTY".to_owned(), 0)]);
    assert!(f.state.describe("g").is_none());
    // A new member of h continues h's epochs.
    let plan = f.ok(&join("h", "b", &["t"]));
    assert_eq!(plan.response.member_epoch, 2);
}

fn static_join(group: &str, id: &str, instance: &str, topics: &[&str]) -> GroupHeartbeatRequest {
    GroupHeartbeatRequest { instance_id: Some(instance.into()), ..join(group, id, topics) }
}

fn static_req(group: &str, id: &str, instance: &str, epoch: i32, owned: &Assignment) -> GroupHeartbeatRequest {
    GroupHeartbeatRequest { instance_id: Some(instance.into()), ..req(group, id, epoch, &["t"], owned) }
}

#[test]
fn given_a_static_member_that_left_when_it_rejoins_under_a_new_id_then_it_takes_over_without_a_new_epoch() {
    let mut f = Fixture::new(&[("t", 4)]);
    let s = f.ok(&static_join("g", "s1", "host-a", &["t"]));
    let s_owned = given(&s);
    f.ok(&join("g", "d", &["t"]));
    let s = f.ok(&static_req("g", "s1", "host-a", 1, &s_owned));
    let s_kept = given(&s);
    f.ok(&static_req("g", "s1", "host-a", 1, &s_kept));
    let d_owned = given(&f.ok(&req("g", "d", 2, &["t"], &Assignment::default())));
    // It leaves for a while: its assignment stays and blocks the others.
    let left = f.ok(&static_req("g", "s1", "host-a", -2, &s_kept));
    assert_eq!(
        (kinds(&left.records), left.left, left.response.member_epoch),
        (vec!["static_left"], LeaveKind::StaticLeft, -2)
    );
    assert_eq!(f.group("g").epoch, 2);
    let view = f.state.describe("g").unwrap();
    assert_eq!(view.members.iter().find(|m| m.member_id == "s1").unwrap().member_epoch, -2);
    let again = f.ok(&static_req("g", "s1", "host-a", -2, &Assignment::default()));
    assert!(again.records.is_empty());
    let d = f.ok(&req("g", "d", 2, &["t"], &d_owned));
    assert!(d.records.is_empty(), "the static member's partitions stay its own");
    // Its old id is fenced; a new process with the same instance id takes its place.
    assert_eq!(code(f.plan(&static_req("g", "s1", "host-a", 2, &s_kept))), ErrorCode::FencedMemberEpoch);
    let back = f.ok(&static_join("g", "s2", "host-a", &["t"]));
    assert_eq!(&kinds(&back.records)[..4], ["member", "target", "current", "removed"]);
    assert_eq!((back.response.member_epoch, given(&back)), (2, s_kept.clone()));
    assert_eq!(f.group("g").epoch, 2, "no rebalance");
    assert!(!f.group("g").members.contains_key("s1"));
    assert_eq!(code(f.plan(&static_req("g", "s1", "host-a", 2, &s_kept))), ErrorCode::UnknownMemberId);
    assert_eq!(f.group("g").state(), GroupState::Stable);
}

#[test]
fn given_a_live_static_member_when_another_joins_with_its_instance_id_then_it_is_refused() {
    let mut f = Fixture::new(&[("t", 2)]);
    f.ok(&static_join("g", "s1", "host-a", &["t"]));
    assert_eq!(code(f.plan(&static_join("g", "s2", "host-a", &["t"]))), ErrorCode::UnreleasedInstanceId);
    // The same member rejoining with its own instance id is fine.
    assert!(f.plan(&static_join("g", "s1", "host-a", &["t"])).is_ok());
    // A heartbeat claiming another instance id than the member joined with is not that member.
    assert_eq!(code(f.plan(&static_req("g", "s1", "host-b", 1, &Assignment::default()))), ErrorCode::UnknownMemberId);
    assert_eq!(code(f.plan(&static_req("g", "s1", "host-b", -2, &Assignment::default()))), ErrorCode::UnknownMemberId);
}

#[test]
fn given_a_static_member_that_changed_its_subscription_when_it_takes_over_then_the_group_rebalances() {
    let mut f = Fixture::new(&[("t", 2), ("u", 2)]);
    let s = f.ok(&static_join("g", "s1", "host-a", &["t"]));
    f.ok(&static_req("g", "s1", "host-a", -2, &given(&s)));
    let back = f.ok(&static_join("g", "s2", "host-a", &["t", "u"]));
    assert_eq!(f.group("g").epoch, 2);
    assert_eq!(given(&back).iter().count(), 4);
}

#[test]
fn given_members_when_one_expires_then_it_goes_and_the_group_rebalances() {
    let mut f = Fixture::new(&[("t", 2)]);
    f.ok(&join("g", "a", &["t"]));
    let s = f.ok(&static_join("g", "s", "host-a", &["t"]));
    f.ok(&static_req("g", "s", "host-a", -2, &given(&s)));
    assert!(f.expire("g", "nobody").is_empty());
    assert!(f.expire("nogroup", "a").is_empty());
    let records = f.expire("g", "s");
    assert_eq!(&kinds(&records)[..2], ["removed", "epoch"]);
    assert_eq!(f.group("g").epoch, 3);
    assert_eq!(f.member("g", "a").target.iter().count(), 2);
    let records = f.expire("g", "a");
    assert_eq!(kinds(&records), ["removed"]);
    assert!(f.state.list().is_empty());
}

#[test]
fn given_members_when_listing_timers_then_defaults_fill_zero_timeouts_and_flags_show_state() {
    let mut f = Fixture::new(&[("t", 2)]);
    let a = f.ok(&join("g", "a", &["t"]));
    let custom =
        GroupHeartbeatRequest { session_timeout_ms: 45_000, rebalance_timeout_ms: 5_000, ..join("g", "b", &["t"]) };
    f.ok(&custom);
    f.ok(&req("g", "a", 1, &["t"], &given(&a)));
    let timers = f.state.members();
    let t = |id: &str| timers.iter().find(|m| m.member_id == id).unwrap().clone();
    assert_eq!((t("a").session_timeout_ms, t("a").rebalance_timeout_ms, t("a").revoking), (10_000, 60_000, true));
    assert_eq!((t("b").session_timeout_ms, t("b").rebalance_timeout_ms, t("b").static_left), (45_000, 5_000, false));
    assert_eq!(t("b").group, "g");
}

#[test]
fn given_a_group_mid_rebalance_when_described_then_owned_includes_partitions_being_revoked() {
    let mut f = Fixture::new(&[("t", 4), ("u", 1)]);
    let all = given(&f.ok(&join("g", "a", &["t"])));
    f.ok(&join("g", "b", &["t", "u"]));
    f.ok(&req("g", "a", 1, &["t"], &all));
    let view = f.state.describe("g").expect("the group exists");
    assert_eq!(
        (view.state, view.group_epoch, view.topics.clone()),
        (GroupState::Reconciling, 2, vec!["t".into(), "u".into()])
    );
    let a = &view.members[0];
    assert_eq!((a.member_id.as_str(), a.member_epoch, a.client_host.as_str()), ("a", 1, "10.0.0.1"));
    assert_eq!(Assignment::from_client(&a.assigned), all);
    assert_eq!(a.target.iter().map(|tp| tp.partitions.len()).sum::<usize>(), 3);
    assert_eq!(view.members[1].topics, vec!["t".to_owned(), "u".to_owned()]);
    assert_eq!(f.state.list()[0].state, "RECONCILING");
}
