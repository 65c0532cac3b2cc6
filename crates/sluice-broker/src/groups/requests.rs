//! The group calls a coordinator serves: `GroupHeartbeat`, `CommitOffsets`, `FetchOffsets`,
//! `ListGroups`, `DescribeGroup`. Each finds the group's coordinator on this broker (or answers
//! `NOT_COORDINATOR` naming it), and changes go through the group's turn (see `coordinator`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use sluice_proto::v1::{
    CommitOffsetsRequest, CommitOffsetsResponse, DescribeGroupRequest, DescribeGroupResponse, FetchOffsetsRequest,
    FetchOffsetsResponse, GroupHeartbeatRequest, GroupHeartbeatResponse, ListGroupsResponse, PartitionLag,
    SetGroupFilterRequest, SetGroupFilterResponse,
};
use sluice_proto::{Error, ErrorCode, v1};
use tokio::time::Instant;

use super::context::now_ms;
use super::coordinator::{Coordinator, refused};
use super::coordinators::Coordinators;
use super::lag::{GroupLag, Position};
use super::state::{GroupDefaults, GroupView, HeartbeatPlan, LeaveKind};
use super::timers::Deadline;

/// How long `DescribeGroup` waits for a partition's leader to say where the partition stands.
const POSITION_TIMEOUT: Duration = Duration::from_secs(2);

impl Coordinators {
    pub async fn heartbeat(&self, request: GroupHeartbeatRequest, client_host: &str) -> GroupHeartbeatResponse {
        let answer = match self.route(&request.group) {
            Ok(c) => heartbeat(&c, &request, client_host).await,
            Err(e) => Err(e),
        };
        answer.unwrap_or_else(|e| GroupHeartbeatResponse { error: Some(e), ..GroupHeartbeatResponse::default() })
    }

    pub async fn commit(&self, request: CommitOffsetsRequest) -> CommitOffsetsResponse {
        let outcome = match self.route(&request.group) {
            Ok(c) => commit(&c, &request).await,
            Err(e) => Err(e),
        };
        CommitOffsetsResponse { error: Some(outcome.err().unwrap_or_else(Error::ok)) }
    }

    pub async fn set_filter(&self, request: SetGroupFilterRequest) -> SetGroupFilterResponse {
        let outcome = match self.route(&request.group) {
            Ok(c) => set_filter(&c, &request).await,
            Err(e) => Err(e),
        };
        SetGroupFilterResponse { error: Some(outcome.err().unwrap_or_else(Error::ok)) }
    }

    pub async fn fetch_offsets(&self, request: FetchOffsetsRequest) -> FetchOffsetsResponse {
        let offsets = self.route(&request.group).and_then(|c| c.state().fetch_offsets(&request).map_err(refused));
        match offsets {
            Ok(offsets) => FetchOffsetsResponse { error: Some(Error::ok()), offsets },
            Err(e) => FetchOffsetsResponse { error: Some(e), offsets: Vec::new() },
        }
    }

    pub fn list_groups(&self) -> ListGroupsResponse {
        let mut groups: Vec<_> = self.active().iter().flat_map(|c| c.state().list()).collect();
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        ListGroupsResponse { error: Some(Error::ok()), groups }
    }

    pub async fn describe(&self, request: DescribeGroupRequest) -> DescribeGroupResponse {
        let failed = |e: Error| DescribeGroupResponse { error: Some(e), ..DescribeGroupResponse::default() };
        let coordinator = match self.route(&request.group) {
            Ok(c) => c,
            Err(e) => return failed(e),
        };
        let Some(view) = coordinator.state().describe(&request.group) else {
            return failed(Error::new(
                ErrorCode::GroupNotFound,
                format!("group {:?} does not exist (it has no members and no committed offsets)", request.group),
            ));
        };
        let partitions = self.partition_lags(&view, POSITION_TIMEOUT).await.into_iter().map(|(row, _)| row).collect();
        DescribeGroupResponse {
            error: Some(Error::ok()),
            group: view.group,
            state: view.state.as_str().to_owned(),
            group_epoch: view.group_epoch,
            coordinator: self.ctx.broker_address(self.ctx.node_id),
            members: view.members,
            partitions,
            filters: view.filters,
            broadcast: view.broadcast,
            skipped: coordinator.skipped.of(&request.group),
        }
    }

    /// Every partition of the group's subscribed topics and every partition it committed an
    /// offset for, with its owner, committed offset and lag, and where the partition stands
    /// (`None` if that could not be learnt within `limit`: the row has no lag then).
    async fn partition_lags(&self, view: &GroupView, limit: Duration) -> Vec<(PartitionLag, Option<Position>)> {
        // A broadcast group has a row per instance and partition; any other, per partition.
        let mut rows: BTreeMap<(String, String, u32), PartitionLag> = BTreeMap::new();
        // A member's row key: its instance id in a broadcast group, "" otherwise.
        let instance_of = |m: &v1::GroupMember| match &m.instance_id {
            Some(instance) if view.broadcast => instance.clone(),
            _ => String::new(),
        };
        let instances: Vec<String> =
            if view.broadcast { view.members.iter().map(instance_of).collect() } else { vec![String::new()] };
        for topic in &view.topics {
            for partition in 0..self.ctx.partition_count(topic).unwrap_or(0) {
                for instance in &instances {
                    let row = PartitionLag {
                        topic: topic.clone(),
                        partition,
                        instance_id: instance.clone(),
                        ..PartitionLag::default()
                    };
                    rows.insert((instance.clone(), topic.clone(), partition), row);
                }
            }
        }
        for o in &view.offsets {
            let key = (o.instance_id.clone(), o.topic.clone(), o.partition);
            let row = rows.entry(key).or_insert_with(|| PartitionLag {
                topic: o.topic.clone(),
                partition: o.partition,
                instance_id: o.instance_id.clone(),
                ..PartitionLag::default()
            });
            row.committed_offset = o.offset;
        }
        for m in &view.members {
            let instance = instance_of(m);
            for tp in &m.assigned {
                for p in &tp.partitions {
                    if let Some(row) = rows.get_mut(&(instance.clone(), tp.topic.clone(), *p)) {
                        row.member_id = Some(m.member_id.clone());
                    }
                }
            }
        }
        let positions = rows.values().map(|r| self.ctx.position(&r.topic, r.partition, r.committed_offset, limit));
        let positions = join_all(positions).await;
        rows.into_values()
            .zip(positions)
            .map(|(row, position)| match position {
                Some(p) => {
                    let row = PartitionLag {
                        end_offset: p.end_offset,
                        lag_messages: p.lag_messages,
                        lag_ms: p.lag_ms,
                        ..row
                    };
                    (row, position)
                }
                None => (row, None),
            })
            .collect()
    }

    /// The lag of every group coordinated here, per partition with a committed offset (all
    /// asked at once: a scrape waits for the slowest partition, not for their sum).
    pub async fn lag(&self, limit: Duration) -> Vec<GroupLag> {
        let views: Vec<GroupView> = self
            .active()
            .iter()
            .flat_map(|c| {
                let state = c.state();
                state.list().into_iter().filter_map(|g| state.describe(&g.group)).collect::<Vec<_>>()
            })
            // Only partitions with a committed offset: no subscribed-topic expansion.
            .map(|view| GroupView { topics: Vec::new(), ..view })
            .collect();
        let lags = join_all(views.iter().map(|view| self.partition_lags(view, limit))).await;
        let rows = views.iter().zip(lags).flat_map(|(view, rows)| rows.into_iter().map(move |row| (view, row)));
        // A broadcast instance's rows are not exported: the metric has no instance label.
        rows.filter(|(_, (row, _))| row.instance_id.is_empty())
            .filter_map(|(view, (row, position))| {
                let p = position?;
                Some(GroupLag {
                    group: view.group.clone(),
                    topic: row.topic,
                    partition: row.partition,
                    messages: p.lag_messages,
                    seconds: p.lag_ms as f64 / 1000.0,
                })
            })
            .collect()
    }
}

async fn heartbeat(
    c: &Arc<Coordinator>,
    request: &GroupHeartbeatRequest,
    client_host: &str,
) -> Result<GroupHeartbeatResponse, Error> {
    let defaults = c.ctx.defaults();
    check_timeouts(request, &defaults)?;
    let turn = c.turn(&request.group).await?;
    let plan = c.state().heartbeat(request, client_host, &|t| c.ctx.partition_count(t), &defaults).map_err(refused)?;
    c.write(&request.group, &plan.records).await?;
    track(c, request, &plan);
    let state = c.state();
    let left = plan.left != LeaveKind::None;
    c.skipped
        .report(&request.group, &request.member_id, &request.skipped, left, |m| state.is_member(&request.group, m));
    drop(state);
    drop(turn);
    let mut response = plan.response;
    response.error.get_or_insert_with(Error::ok);
    Ok(response)
}

/// The longest session or rebalance timeout a member may ask for (Kafka's upper bound).
const MAX_MEMBER_TIMEOUT_MS: u32 = 30 * 60 * 1000;

/// Refuses timeouts a member cannot live with: a session shorter than three heartbeat
/// intervals would expire between heartbeats delayed by one slow round trip, and a rebalance
/// timeout shorter than one interval before the member has even heard what to revoke.
fn check_timeouts(request: &GroupHeartbeatRequest, defaults: &GroupDefaults) -> Result<(), Error> {
    let beat = defaults.heartbeat_interval_ms;
    let fields = [
        ("session_timeout_ms", request.session_timeout_ms, beat.saturating_mul(3)),
        ("rebalance_timeout_ms", request.rebalance_timeout_ms, beat),
    ];
    for (name, value, min) in fields {
        if value != 0 && !(min..=MAX_MEMBER_TIMEOUT_MS).contains(&value) {
            let message = format!(
                "{name} {value} is out of range: with heartbeats every {beat} ms it must be 0 (the broker's \
                 default) or {min} to {MAX_MEMBER_TIMEOUT_MS}"
            );
            return Err(Error::new(ErrorCode::InvalidRequest, message));
        }
    }
    Ok(())
}

/// Moves the member's deadlines after a heartbeat was answered.
fn track(c: &Coordinator, request: &GroupHeartbeatRequest, plan: &HeartbeatPlan) {
    let defaults = c.ctx.defaults();
    let or_default = |ms: u32, default: u32| Duration::from_millis(u64::from(if ms == 0 { default } else { ms }));
    let session = or_default(request.session_timeout_ms, defaults.session_timeout_ms);
    let rebalance = or_default(request.rebalance_timeout_ms, defaults.rebalance_timeout_ms);
    let id = if plan.response.member_id.is_empty() { &request.member_id } else { &plan.response.member_id };
    let member = (request.group.clone(), id.clone());
    let now = Instant::now();
    match plan.left {
        LeaveKind::Left => c.timers.clear_member(&member),
        LeaveKind::StaticLeft => {
            c.timers.clear(Deadline::Rebalance, &member);
            c.timers.set(Deadline::Session, member, now + session);
        }
        LeaveKind::None => {
            c.timers.set(Deadline::Session, member.clone(), now + session);
            if plan.revoking {
                c.timers.set_if_unset(Deadline::Rebalance, member, now + rebalance);
            } else {
                c.timers.clear(Deadline::Rebalance, &member);
            }
        }
    }
}

async fn set_filter(c: &Arc<Coordinator>, request: &SetGroupFilterRequest) -> Result<(), Error> {
    let turn = c.turn(&request.group).await?;
    let records = c.state().set_filter(request).map_err(refused)?;
    c.write(&request.group, &records).await?;
    drop(turn);
    Ok(())
}

async fn commit(c: &Arc<Coordinator>, request: &CommitOffsetsRequest) -> Result<(), Error> {
    let turn = c.turn(&request.group).await?;
    let records = c.state().commit(request, now_ms()).map_err(refused)?;
    c.write(&request.group, &records).await?;
    drop(turn);
    Ok(())
}

#[cfg(test)]
mod timeout_tests {
    use super::*;

    #[test]
    fn member_timeouts_must_span_three_heartbeats_and_at_most_half_an_hour() {
        let defaults =
            GroupDefaults { session_timeout_ms: 10_000, rebalance_timeout_ms: 60_000, heartbeat_interval_ms: 1_000 };
        let with = |session, rebalance| GroupHeartbeatRequest {
            session_timeout_ms: session,
            rebalance_timeout_ms: rebalance,
            ..GroupHeartbeatRequest::default()
        };
        assert!(check_timeouts(&with(0, 0), &defaults).is_ok(), "0 takes the defaults");
        assert!(check_timeouts(&with(3_000, 1_000), &defaults).is_ok());
        let short = check_timeouts(&with(2_999, 0), &defaults).unwrap_err();
        assert_eq!(short.error_code(), ErrorCode::InvalidRequest);
        assert!(
            short.message.contains("session_timeout_ms 2999") && short.message.contains("3000"),
            "{}",
            short.message
        );
        assert!(check_timeouts(&with(0, 999), &defaults).is_err());
        assert!(check_timeouts(&with(MAX_MEMBER_TIMEOUT_MS + 1, 0), &defaults).is_err());
    }
}
