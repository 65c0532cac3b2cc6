//! The filters a group consumes its topics with (docs/FILTERS.md): one per topic, set by the
//! first member to subscribe to the topic with a filter while no other member consumes it,
//! and kept in the group's replicated state (even while it has no members), so that
//! no member can consume a topic with another filter and silently lose messages another
//! member's filter would have kept (RocketMQ's long-standing trap). An operator changes it with
//! `SetGroupFilter` while no member subscribes to the topic.

use std::collections::{BTreeMap, BTreeSet};

use sluice_common::filter::{Filter, TagFilter};
use sluice_proto::internal::group_record::Change;
use sluice_proto::internal::{self, GroupRecord};
use sluice_proto::{ErrorCode, v1};

use super::{Coordinated, Group, GroupError, record, validate_group_id, validate_topic};

/// A topic's filter in the form groups compare: the tag expression canonical (tags sorted,
/// `*` as none), the SQL trimmed. Both empty: no filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FilterSpec {
    pub tags: String,
    pub sql: String,
}

impl FilterSpec {
    /// Checks both expressions and brings them to the form groups compare.
    pub fn normalized(tags: &str, sql: &str) -> Result<FilterSpec, GroupError> {
        Filter::compile(tags, sql).map_err(|e| GroupError::new(ErrorCode::InvalidFilter, e.to_string()))?;
        let tags = match tags.trim() {
            "" => String::new(),
            t => {
                TagFilter::parse(t).map(|f| if f.is_all() { String::new() } else { f.canonical() }).unwrap_or_default()
            }
        };
        Ok(FilterSpec { tags, sql: sql.trim().to_owned() })
    }

    fn from_record(r: &internal::SubscriptionFilter) -> FilterSpec {
        FilterSpec { tags: r.tag_filter.clone(), sql: r.sql_filter.clone() }
    }

    fn to_record(&self, topic: &str) -> internal::SubscriptionFilter {
        internal::SubscriptionFilter {
            topic: topic.to_owned(),
            tag_filter: self.tags.clone(),
            sql_filter: self.sql.clone(),
        }
    }

    /// As clients see it.
    pub fn to_client(&self, topic: &str) -> v1::TopicFilter {
        v1::TopicFilter { topic: topic.to_owned(), tag_filter: self.tags.clone(), sql_filter: self.sql.clone() }
    }

    /// For messages: `--tag 'A || B' --filter 'x > 1'`, or "no filter".
    fn describe(&self) -> String {
        match (self.tags.is_empty(), self.sql.is_empty()) {
            (true, true) => "no filter".to_owned(),
            (false, true) => format!("--tag {:?}", self.tags),
            (true, false) => format!("--filter {:?}", self.sql),
            (false, false) => format!("--tag {:?} --filter {:?}", self.tags, self.sql),
        }
    }
}

impl Group {
    /// Applies a `SubscriptionFilter` record.
    pub(super) fn apply_filter(&mut self, r: &internal::SubscriptionFilter) {
        self.filters.insert(r.topic.clone(), FilterSpec::from_record(r));
    }

    /// The records that restore its filters, for a checkpoint.
    pub(super) fn filter_records(&self, group: &str) -> impl Iterator<Item = GroupRecord> + '_ {
        let group = group.to_owned();
        self.filters.iter().map(move |(topic, spec)| record(&group, Change::Filter(spec.to_record(topic))))
    }

    /// Its filters as clients see them, by topic.
    pub(super) fn filters_view(&self) -> Vec<v1::TopicFilter> {
        self.filters.iter().map(|(topic, spec)| spec.to_client(topic)).collect()
    }
}

/// The filter a member asks for on each topic it subscribes to; a filter for a topic it does
/// not subscribe to is refused.
fn member_filters(
    req: &v1::GroupHeartbeatRequest,
    topics: &BTreeSet<String>,
) -> Result<BTreeMap<String, FilterSpec>, GroupError> {
    let mut wanted = BTreeMap::new();
    for f in &req.filters {
        if !topics.contains(&f.topic) {
            return Err(GroupError::new(
                ErrorCode::InvalidRequest,
                format!("a filter for topic {:?}, which the member does not subscribe to", f.topic),
            ));
        }
        wanted.insert(f.topic.clone(), FilterSpec::normalized(&f.tag_filter, &f.sql_filter)?);
    }
    Ok(wanted)
}

/// Checks a member's filters against its group's: the records that set the group's filter of
/// topics no one subscribed to before, or FILTER_MISMATCH naming both filters.
pub(super) fn check_member_filters(
    group: Option<&Group>,
    req: &v1::GroupHeartbeatRequest,
    topics: &BTreeSet<String>,
) -> Result<Vec<Change>, GroupError> {
    let wanted = member_filters(req, topics)?;
    let mut set = Vec::new();
    let none = FilterSpec::default();
    for topic in topics {
        let want = wanted.get(topic).cloned().unwrap_or_default();
        // Without a record, a topic other members consume is consumed unfiltered; one no one
        // consumes takes this member's filter (a record only if it has one).
        let others =
            group.is_some_and(|g| g.members.iter().any(|(id, m)| *id != req.member_id && m.topics.contains(topic)));
        let kept = group.and_then(|g| g.filters.get(topic)).or(others.then_some(&none));
        match kept {
            Some(kept) if *kept != want => {
                let message = format!(
                    "group {} consumes {topic} with {}, and this member asked for {}: every member of a group \
                     consumes a topic with the same filter (else messages one filter keeps could go to a member \
                     whose filter drops them). Use the group's filter, or stop the group's consumers and change \
                     it with `sluice group set-filter {} {topic}`",
                    req.group,
                    kept.describe(),
                    want.describe(),
                    req.group
                );
                return Err(GroupError::new(ErrorCode::FilterMismatch, message));
            }
            Some(_) => {}
            None if want != none => set.push(Change::Filter(want.to_record(topic))),
            None => {}
        }
    }
    Ok(set)
}

impl Coordinated {
    /// Plans an operator's change of the filter `req.group` consumes `req.filter.topic` with:
    /// refused GROUP_NOT_FOUND for a group that does not exist, GROUP_NOT_EMPTY while a member
    /// subscribes to the topic.
    pub fn set_filter(&self, req: &v1::SetGroupFilterRequest) -> Result<Vec<GroupRecord>, GroupError> {
        validate_group_id(&req.group)?;
        let Some(f) = &req.filter else {
            return Err(GroupError::new(ErrorCode::InvalidRequest, "set the filter: its topic and expressions"));
        };
        validate_topic(&f.topic)?;
        let spec = FilterSpec::normalized(&f.tag_filter, &f.sql_filter)?;
        let Some(group) = self.groups.get(&req.group) else {
            return Err(GroupError::new(
                ErrorCode::GroupNotFound,
                format!("group {:?} does not exist; its first member sets its filter", req.group),
            ));
        };
        let subscribed: Vec<&String> =
            group.members.iter().filter(|(_, m)| m.topics.contains(&f.topic)).map(|(id, _)| id).collect();
        if !subscribed.is_empty() {
            return Err(GroupError::new(
                ErrorCode::GroupNotEmpty,
                format!(
                    "members {subscribed:?} of group {} consume {}; stop them first (`sluice group describe {}` \
                     lists them), change the filter, then start them with the new one",
                    req.group, f.topic, req.group
                ),
            ));
        }
        Ok(vec![record(&req.group, Change::Filter(spec.to_record(&f.topic)))])
    }
}
