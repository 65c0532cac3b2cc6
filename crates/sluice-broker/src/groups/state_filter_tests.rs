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
