//! Committed offsets: fencing of member commits, administrative commits, fetching offsets, and
//! deleting groups past their offsets retention.

use sluice_proto::ErrorCode;
use sluice_proto::v1::{CommitOffsetsRequest, FetchOffsetsRequest, OffsetToCommit, TopicPartitions};

use super::tests::{Fixture, req};
use super::*;

fn offset(topic: &str, partition: u32, offset: u64) -> OffsetToCommit {
    OffsetToCommit { topic: topic.into(), partition, offset, metadata: format!("at {offset}") }
}

fn commit(group: &str, member: &str, epoch: i32, offsets: Vec<OffsetToCommit>) -> CommitOffsetsRequest {
    CommitOffsetsRequest { group: group.into(), member_id: member.into(), member_epoch: epoch, offsets }
}

fn refused(f: &Fixture, request: &CommitOffsetsRequest) -> ErrorCode {
    f.state.commit(request, 1).expect_err("refused").code
}

/// A group `g` at epoch 2 where `a` (still at member epoch 1) keeps two partitions of `t` and
/// is giving up the other two to `b` (epoch 2, owning nothing yet).
fn rebalancing() -> Fixture {
    let mut f = Fixture::new(&[("t", 4)]);
    let plan = f.ok(&req("g", "a", 0, &["t"], &Assignment::default()));
    let all = Assignment::from_client(&plan.response.assignment.unwrap().partitions);
    f.ok(&req("g", "b", 0, &["t"], &Assignment::default()));
    f.ok(&req("g", "a", 1, &["t"], &all));
    f
}

#[test]
fn given_a_member_when_it_commits_partitions_it_owns_or_is_giving_up_then_the_offsets_are_stored() {
    let mut f = rebalancing();
    let a = &f.state.groups["g"].members["a"];
    assert_eq!(a.epoch, 1);
    let (kept, revoking): (Vec<_>, Vec<_>) =
        (a.assigned.iter().map(|(_, p)| p).collect(), a.pending_revocation.iter().map(|(_, p)| p).collect());
    let request = commit("g", "a", 1, vec![offset("t", kept[0], 10), offset("t", revoking[0], 20)]);
    let records = f.state.commit(&request, 1_700_000_000_000).expect("accepted");
    assert_eq!(records.len(), 2);
    f.apply(&records);
    let fetched = f
        .state
        .fetch_offsets(&FetchOffsetsRequest { group: "g".into(), partitions: vec![], instance_id: None })
        .unwrap();
    assert_eq!(fetched.len(), 2);
    let first = fetched.iter().find(|o| o.partition == kept[0]).unwrap();
    assert_eq!(
        (first.offset, first.metadata.as_str(), first.commit_timestamp_ms),
        (Some(10), "at 10", 1_700_000_000_000)
    );
}

#[test]
fn given_a_commit_from_an_unknown_or_stale_member_or_for_a_partition_it_does_not_own_then_it_is_refused() {
    let f = rebalancing();
    let b_target: Vec<u32> = f.state.groups["g"].members["b"].target.iter().map(|(_, p)| p).collect();
    assert_eq!(refused(&f, &commit("g", "zed", 1, vec![offset("t", 0, 1)])), ErrorCode::UnknownMemberId);
    assert_eq!(refused(&f, &commit("nogroup", "a", 1, vec![offset("t", 0, 1)])), ErrorCode::UnknownMemberId);
    assert_eq!(refused(&f, &commit("g", "a", 2, vec![])), ErrorCode::FencedMemberEpoch);
    assert_eq!(refused(&f, &commit("g", "a", 0, vec![])), ErrorCode::FencedMemberEpoch);
    // b's target, not yet released by a: b does not own it.
    assert_eq!(refused(&f, &commit("g", "b", 2, vec![offset("t", b_target[0], 1)])), ErrorCode::FencedMemberEpoch);
    assert_eq!(refused(&f, &commit("g", "a", 1, vec![offset("u", 0, 1)])), ErrorCode::FencedMemberEpoch);
    assert_eq!(refused(&f, &commit("g", "a", 1, vec![offset("bad topic", 0, 1)])), ErrorCode::InvalidTopicName);
    assert_eq!(refused(&f, &commit("bad group", "a", 1, vec![])), ErrorCode::InvalidGroupId);
    let mut long = offset("t", 0, 1);
    long.metadata = "x".repeat(4097);
    assert_eq!(refused(&f, &commit("g", "a", 1, vec![long])), ErrorCode::InvalidRequest);
}

#[test]
fn given_a_static_member_that_left_when_it_commits_then_it_is_fenced() {
    let mut f = Fixture::new(&[("t", 1)]);
    let join =
        v1::GroupHeartbeatRequest { instance_id: Some("i".into()), ..req("g", "s", 0, &["t"], &Assignment::default()) };
    f.ok(&join);
    f.ok(&v1::GroupHeartbeatRequest { member_epoch: -2, ..join });
    assert_eq!(refused(&f, &commit("g", "s", 1, vec![offset("t", 0, 1)])), ErrorCode::FencedMemberEpoch);
}

#[test]
fn given_administrative_commits_then_they_need_epoch_minus_one_and_a_group_without_members() {
    let mut f = rebalancing();
    assert_eq!(refused(&f, &commit("g", "", -1, vec![offset("t", 0, 1)])), ErrorCode::GroupNotEmpty);
    assert_eq!(refused(&f, &commit("g", "", 0, vec![offset("t", 0, 1)])), ErrorCode::InvalidRequest);
    // A group that does not exist is created by the commit (`sluice group reset`).
    let records = f.state.commit(&commit("fresh", "", -1, vec![offset("t", 3, 7), offset("t", 1, 2)]), 5).unwrap();
    f.apply(&records);
    let listing = f.state.list().into_iter().find(|l| l.group == "fresh").expect("created");
    assert_eq!((listing.state.as_str(), listing.members), ("EMPTY", 0));
    let view = f.state.describe("fresh").unwrap();
    assert_eq!(
        view.offsets.iter().map(|o| (o.partition, o.offset)).collect::<Vec<_>>(),
        vec![(1, Some(2)), (3, Some(7))]
    );
    // Once everyone has left g, an administrative commit is accepted there too.
    f.ok(&req("g", "a", -1, &["t"], &Assignment::default()));
    f.ok(&req("g", "b", -1, &["t"], &Assignment::default()));
    assert!(f.state.commit(&commit("g", "", -1, vec![offset("t", 0, 1)]), 5).is_ok());
}

#[test]
fn given_committed_offsets_when_fetching_then_asked_partitions_come_in_order_with_gaps_marked() {
    let mut f = Fixture::new(&[]);
    let records = f
        .state
        .commit(&commit("g", "", -1, vec![offset("b", 0, 4), offset("a", 2, 9), offset("a", 2, 11)]), 3)
        .unwrap();
    f.apply(&records);
    let all = f
        .state
        .fetch_offsets(&FetchOffsetsRequest { group: "g".into(), partitions: vec![], instance_id: None })
        .unwrap();
    let got: Vec<(&str, u32, Option<u64>)> = all.iter().map(|o| (o.topic.as_str(), o.partition, o.offset)).collect();
    assert_eq!(got, vec![("a", 2, Some(11)), ("b", 0, Some(4))], "the last commit of a partition wins");
    let asked = vec![TopicPartitions { topic: "b".into(), partitions: vec![1, 0] }];
    let some = f
        .state
        .fetch_offsets(&FetchOffsetsRequest { group: "g".into(), partitions: asked.clone(), instance_id: None })
        .unwrap();
    let got: Vec<(u32, Option<u64>, i64)> =
        some.iter().map(|o| (o.partition, o.offset, o.commit_timestamp_ms)).collect();
    assert_eq!(got, vec![(1, None, 0), (0, Some(4), 3)]);
    let none = f
        .state
        .fetch_offsets(&FetchOffsetsRequest { group: "other".into(), partitions: asked, instance_id: None })
        .unwrap();
    assert!(none.iter().all(|o| o.offset.is_none()));
    assert!(
        f.state
            .fetch_offsets(&FetchOffsetsRequest { group: "other".into(), partitions: vec![], instance_id: None })
            .unwrap()
            .is_empty()
    );
    let bad = FetchOffsetsRequest { group: String::new(), partitions: vec![], instance_id: None };
    assert_eq!(f.state.fetch_offsets(&bad).unwrap_err().code, ErrorCode::InvalidGroupId);
}

#[test]
fn given_an_empty_group_when_no_commit_came_for_the_retention_then_a_record_deletes_it_and_replay_agrees() {
    const RETENTION_MS: u64 = 3_000;
    let mut f = Fixture::new(&[("t", 4)]);
    for (group, at) in [("old", 1_000), ("recent", 2_000)] {
        let records = f.state.commit(&commit(group, "", -1, vec![offset("t", 0, 5)]), at).expect("admin commit");
        f.apply(&records);
    }
    f.ok(&req("busy", "a", 0, &["t"], &Assignment::default()));
    let checkpoint = f.state.checkpoint();

    assert_eq!(f.state.expired_groups(3_999, RETENTION_MS), Vec::<String>::new(), "idle 2,999 ms");
    assert_eq!(f.state.expired_groups(4_000, RETENTION_MS), ["old"], "idle 3,000 ms, no members");
    assert_eq!(f.state.expired_groups(1_000_000, RETENTION_MS), ["old", "recent"], "members keep `busy`");
    assert_eq!(f.state.delete_expired("recent", 4_000, RETENTION_MS), []);
    assert_eq!(f.state.delete_expired("busy", 1_000_000, RETENTION_MS), []);
    let deletion = f.state.delete_expired("old", 4_000, RETENTION_MS);
    assert_eq!(deletion.len(), 1);
    f.apply(&deletion);
    assert!(f.state.describe("old").is_none());
    let fetched =
        f.state.fetch_offsets(&FetchOffsetsRequest { group: "old".into(), partitions: Vec::new(), instance_id: None });
    assert_eq!(fetched, Ok(Vec::new()), "its offsets went with it");
    assert!(f.state.describe("recent").is_some());

    tracing::info!("--- replay of the checkpoint and the deletion rebuilds the same state");
    let mut replayed = Fixture::new(&[("t", 4)]);
    replayed.apply(&checkpoint);
    replayed.apply(&deletion);
    assert_eq!(replayed.state, f.state);

    tracing::info!("--- a deletion replayed after a member joined changes nothing");
    let mut joined = Fixture::new(&[("t", 4)]);
    joined.apply(&checkpoint);
    joined.ok(&req("old", "m", 0, &["t"], &Assignment::default()));
    joined.apply(&deletion);
    assert!(joined.state.describe("old").is_some_and(|g| g.members.len() == 1 && g.offsets.len() == 1));
}
