//! Group-owned filters: the first member's filter is the group's, members with another are
//! refused, an operator changes it only while no member consumes the topic, and it survives a
//! checkpoint.

use sluice_proto::ErrorCode;
use sluice_proto::v1::{GroupHeartbeatRequest, SetGroupFilterRequest, TopicFilter};

use super::tests::{Fixture, req};
use super::*;
use crate::groups::assignor::Assignment;

fn filter(topic: &str, tags: &str, sql: &str) -> TopicFilter {
    TopicFilter { topic: topic.into(), tag_filter: tags.into(), sql_filter: sql.into() }
}

fn join(id: &str, filters: Vec<TopicFilter>) -> GroupHeartbeatRequest {
    GroupHeartbeatRequest { filters, ..req("g", id, 0, &["t"], &Assignment::default()) }
}

fn leave(id: &str) -> GroupHeartbeatRequest {
    req("g", id, -1, &["t"], &Assignment::default())
}

fn set(tags: &str, sql: &str) -> SetGroupFilterRequest {
    SetGroupFilterRequest { group: "g".into(), filter: Some(filter("t", tags, sql)) }
}

fn refusal(f: &Fixture, r: &GroupHeartbeatRequest) -> GroupError {
    f.plan(r).expect_err("refused")
}

#[test]
fn the_first_members_filter_is_the_groups_and_a_member_with_another_is_refused() {
    let mut f = Fixture::new(&[("t", 4)]);
    f.ok(&join("m1", vec![filter("t", "TagB || TagA", "price > 100")]));
    let view = f.state.describe("g").unwrap();
    assert_eq!(view.filters, [filter("t", "TagA || TagB", "price > 100")], "kept in canonical form");
    f.ok(&join("m2", vec![filter("t", " TagA||TagB ", " price > 100 ")]));
    let e = refusal(&f, &join("m3", vec![filter("t", "TagA", "price > 100")]));
    assert_eq!(e.code, ErrorCode::FilterMismatch);
    assert!(e.message.contains("consumes t with --tag \"TagA || TagB\" --filter \"price > 100\""), "{e}");
    assert!(e.message.contains("asked for --tag \"TagA\" --filter \"price > 100\""), "{e}");
    assert!(e.message.contains("sluice group set-filter g t"), "{e}");
    assert_eq!(refusal(&f, &join("m3", vec![])).code, ErrorCode::FilterMismatch, "no filter is another filter");
}

#[test]
fn a_filtered_member_cannot_join_members_that_consume_unfiltered() {
    let mut f = Fixture::new(&[("t", 4)]);
    f.ok(&join("m1", vec![]));
    assert!(f.state.describe("g").unwrap().filters.is_empty(), "no record for an unfiltered group");
    let e = refusal(&f, &join("m2", vec![filter("t", "TagA", "")]));
    assert_eq!(e.code, ErrorCode::FilterMismatch);
    assert!(e.message.contains("consumes t with no filter"), "{e}");
    f.ok(&join("m2", vec![filter("t", "*", "")]));
}

#[test]
fn malformed_or_stray_filters_are_refused() {
    let f = Fixture::new(&[("t", 4)]);
    let e = refusal(&f, &join("m1", vec![filter("t", "", "price >")]));
    assert_eq!(e.code, ErrorCode::InvalidFilter);
    assert!(e.message.contains("Column: 8"), "{e}");
    assert_eq!(refusal(&f, &join("m1", vec![filter("other", "A", "")])).code, ErrorCode::InvalidRequest);
}

#[test]
fn an_operator_changes_the_filter_only_while_no_member_consumes_the_topic() {
    let mut f = Fixture::new(&[("t", 4)]);
    assert_eq!(f.state.set_filter(&set("A", "")).unwrap_err().code, ErrorCode::GroupNotFound);
    f.ok(&join("m1", vec![filter("t", "A", "")]));
    let e = f.state.set_filter(&set("B", "")).unwrap_err();
    assert_eq!(e.code, ErrorCode::GroupNotEmpty);
    assert!(e.message.contains("\"m1\""), "{e}");
    f.ok(&leave("m1"));
    // The group is gone with its last member (no offsets): commit one to keep it.
    f.ok(&join("m1", vec![filter("t", "A", "")]));
    let commit = f
        .state
        .commit(
            &v1::CommitOffsetsRequest {
                group: "g".into(),
                member_id: "m1".into(),
                member_epoch: f.state.describe("g").unwrap().members[0].member_epoch,
                offsets: vec![v1::OffsetToCommit {
                    topic: "t".into(),
                    partition: 0,
                    offset: 5,
                    metadata: String::new(),
                }],
            },
            1,
        )
        .unwrap();
    f.apply(&commit);
    f.ok(&leave("m1"));
    assert_eq!(
        refusal(&f, &join("m2", vec![filter("t", "B", "")])).code,
        ErrorCode::FilterMismatch,
        "kept while empty"
    );
    let records = f.state.set_filter(&set("B", "x = 1")).unwrap();
    f.apply(&records);
    f.ok(&join("m2", vec![filter("t", "B", "x = 1")]));
    assert_eq!(f.state.describe("g").unwrap().filters, [filter("t", "B", "x = 1")]);
    let mut replayed = Coordinated::new();
    f.state.checkpoint().iter().for_each(|r| replayed.apply(r));
    assert_eq!(replayed, f.state, "a checkpoint carries the filters");
}

fn broadcast_join(id: &str, instance: &str) -> GroupHeartbeatRequest {
    GroupHeartbeatRequest { broadcast: true, instance_id: Some(instance.into()), ..join(id, vec![]) }
}

#[test]
fn broadcast_members_each_get_every_partition_and_commit_their_own_offsets() {
    let mut f = Fixture::new(&[("t", 3)]);
    let all = |plan: &HeartbeatPlan| plan.response.assignment.as_ref().map(|a| a.partitions.clone());
    let every = vec![v1::TopicPartitions { topic: "t".into(), partitions: vec![0, 1, 2] }];
    assert_eq!(all(&f.ok(&broadcast_join("m1", "i1"))), Some(every.clone()));
    assert_eq!(all(&f.ok(&broadcast_join("m2", "i2"))), Some(every.clone()), "no waiting for m1 to give any up");
    let no_instance = GroupHeartbeatRequest { instance_id: None, ..broadcast_join("m3", "x") };
    assert_eq!(refusal(&f, &no_instance).code, ErrorCode::InvalidRequest);
    let clustering = refusal(&f, &join("m3", vec![]));
    assert_eq!(clustering.code, ErrorCode::InvalidRequest);
    assert!(clustering.message.contains("consumes in broadcast mode"), "{clustering}");

    let epoch = |f: &Fixture, id: &str| {
        f.state.describe("g").unwrap().members.iter().find(|m| m.member_id == id).unwrap().member_epoch
    };
    for (id, offset) in [("m1", 10), ("m2", 20)] {
        let commit = v1::CommitOffsetsRequest {
            group: "g".into(),
            member_id: id.into(),
            member_epoch: epoch(&f, id),
            offsets: vec![v1::OffsetToCommit { topic: "t".into(), partition: 1, offset, metadata: String::new() }],
        };
        let records = f.state.commit(&commit, 5).unwrap();
        f.apply(&records);
    }
    let fetch = |instance: Option<&str>| {
        let req = v1::FetchOffsetsRequest {
            group: "g".into(),
            partitions: vec![v1::TopicPartitions { topic: "t".into(), partitions: vec![1] }],
            instance_id: instance.map(str::to_owned),
        };
        f.state.fetch_offsets(&req).unwrap()[0].offset
    };
    assert_eq!((fetch(Some("i1")), fetch(Some("i2")), fetch(None)), (Some(10), Some(20), None));
    let admin =
        v1::CommitOffsetsRequest { group: "g".into(), member_id: String::new(), member_epoch: -1, offsets: vec![] };
    f.ok(&leave("m1"));
    f.ok(&leave("m2"));
    assert!(f.state.commit(&admin, 6).unwrap_err().message.contains("broadcast mode"));
    let mut replayed = Coordinated::new();
    f.state.checkpoint().iter().for_each(|r| replayed.apply(r));
    assert_eq!(replayed, f.state, "a checkpoint carries the mode and each instance's offsets");
    let rejoined = f.ok(&broadcast_join("m9", "i2"));
    assert_eq!(all(&rejoined), Some(every));
    assert_eq!(fetch_in(&f, "i2"), Some(20), "a restarted instance finds its offsets");
}

fn fetch_in(f: &Fixture, instance: &str) -> Option<u64> {
    let req = v1::FetchOffsetsRequest {
        group: "g".into(),
        partitions: vec![v1::TopicPartitions { topic: "t".into(), partitions: vec![1] }],
        instance_id: Some(instance.into()),
    };
    f.state.fetch_offsets(&req).unwrap()[0].offset
}
