//! Planning requests: the records a heartbeat, an expiry or a commit implies, computed against
//! the current state without changing it.
//!
//! A [`Planner`] applies each record it emits to a copy of the group (made on the first record,
//! with the same `Group::apply` that replay uses), so each step sees the effect of the steps
//! before it and the answer is read from exactly the state the records will rebuild.
//!
//! Reconciliation follows KIP-848: a member behind the target first gets its assignment minus
//! the partitions it must give up (if it still owns any) and keeps its member epoch; once it
//! reports them released, it moves to the group epoch and receives the target's partitions that
//! no other member owns or is giving up. Those still held elsewhere come on a later heartbeat.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use sluice_proto::internal::group_record::Change;
use sluice_proto::internal::{self, GroupRecord};
use sluice_proto::{ErrorCode, v1};

use super::filters::check_member_filters;
use super::{
    Coordinated, Group, GroupDefaults, GroupError, HeartbeatPlan, JOIN_EPOCH, LEAVE_EPOCH, LeaveKind,
    MAX_COMMIT_METADATA_BYTES, Member, STATIC_LEAVE_EPOCH, current_record, epoch_record, record, target_record,
    validate_group_id, validate_member_id, validate_topic,
};
use crate::groups::assignor::{self, Assignment, MemberSpec};

/// A partition-count lookup: `None` when the topic does not exist.
type PartitionCount<'f> = &'f dyn Fn(&str) -> Option<u32>;

/// No members, and the last commit at least `retention_ms` before `now_ms`.
fn is_expired(g: &Group, now_ms: i64, retention_ms: u64) -> bool {
    let retention = i64::try_from(retention_ms).unwrap_or(i64::MAX);
    g.members.is_empty()
        && g.txn_offsets.is_empty()
        && g.retries.is_idle()
        && g.last_commit_ms().is_none_or(|last| now_ms.saturating_sub(last) >= retention)
}

impl Coordinated {
    /// Validates a heartbeat (join with epoch 0, stay with the member's epoch, leave with -1,
    /// leave for a while with -2) and plans it. `partition_count(topic)` gives the current
    /// partition count of a topic; subscribed topics that do not exist contribute nothing.
    pub fn heartbeat(
        &self,
        req: &v1::GroupHeartbeatRequest,
        client_host: &str,
        partition_count: PartitionCount<'_>,
        defaults: &GroupDefaults,
    ) -> Result<HeartbeatPlan, GroupError> {
        validate_group_id(&req.group)?;
        validate_member_id("member id", &req.member_id)?;
        if let Some(instance) = &req.instance_id {
            validate_member_id("instance id", instance)?;
        }
        let group = self.groups.get(&req.group);
        match req.member_epoch {
            LEAVE_EPOCH => Ok(plan_leave(group, req, partition_count, defaults)),
            STATIC_LEAVE_EPOCH => plan_static_leave(group, req, defaults),
            epoch if epoch < STATIC_LEAVE_EPOCH => Err(GroupError::new(
                ErrorCode::InvalidRequest,
                format!("member epoch {epoch} is invalid: send 0 to join, -1 to leave, -2 to leave as a static member"),
            )),
            _ => plan_stay(group, req, client_host, partition_count, defaults),
        }
    }

    /// The records that remove `member_id` from `group` (its session or rebalance timeout
    /// expired, or a static member did not come back in time): the group epoch grows and the
    /// targets of the others are recomputed. Empty if the member is not in the group.
    pub fn expire(&self, group: &str, member_id: &str, partition_count: PartitionCount<'_>) -> Vec<GroupRecord> {
        let Some(g) = self.groups.get(group).filter(|g| g.members.contains_key(member_id)) else {
            return Vec::new();
        };
        let mut plan = Planner::new(group, Some(g));
        plan.remove_member(member_id, partition_count);
        plan.records
    }

    /// Groups past their offsets retention at `now_ms`: no members, and no commit for
    /// `retention_ms` (Kafka's `offsets.retention.minutes` for an empty group), by name.
    pub fn expired_groups(&self, now_ms: i64, retention_ms: u64) -> Vec<String> {
        let expired = |g: &&Group| is_expired(g, now_ms, retention_ms);
        self.groups.iter().filter(|(_, g)| expired(g)).map(|(name, _)| name.clone()).collect()
    }

    /// The record that deletes `group` if it is past its offsets retention at `now_ms` (see
    /// [`Coordinated::expired_groups`]); empty otherwise, as when a member joined or an offset
    /// was committed since the group was found expired.
    pub fn delete_expired(&self, group: &str, now_ms: i64, retention_ms: u64) -> Vec<GroupRecord> {
        match self.groups.get(group) {
            Some(g) if is_expired(g, now_ms, retention_ms) => {
                vec![record(group, Change::GroupDeleted(internal::GroupDeleted {}))]
            }
            _ => Vec::new(),
        }
    }

    /// Validates a commit against the fencing rules and returns its records (one per offset),
    /// stamped `now_ms`. A member's commit needs its current epoch and partitions it owns (or is
    /// giving up); an administrative one (no member id, epoch -1) needs a group with no members
    /// and creates the group if it does not exist.
    pub fn commit(&self, req: &v1::CommitOffsetsRequest, now_ms: i64) -> Result<Vec<GroupRecord>, GroupError> {
        validate_group_id(&req.group)?;
        for o in &req.offsets {
            validate_topic(&o.topic)?;
            if o.metadata.len() > MAX_COMMIT_METADATA_BYTES {
                return Err(GroupError::new(
                    ErrorCode::InvalidRequest,
                    format!(
                        "the metadata committed with {}/{} is {} bytes; the limit is {MAX_COMMIT_METADATA_BYTES}",
                        o.topic,
                        o.partition,
                        o.metadata.len()
                    ),
                ));
            }
        }
        let group = self.groups.get(&req.group);
        if req.member_id.is_empty() {
            check_admin_commit(group, req)?;
        } else {
            check_member_commit(group, req)?;
        }
        // A broadcast member's offsets are its instance's own.
        let instance_id = match group {
            Some(g) if g.broadcast => {
                g.members.get(&req.member_id).and_then(|m| m.instance_id.clone()).unwrap_or_default()
            }
            _ => String::new(),
        };
        let offset = |o: &v1::OffsetToCommit| {
            let commit = internal::OffsetCommit {
                topic: o.topic.clone(),
                partition: o.partition,
                offset: o.offset,
                metadata: o.metadata.clone(),
                commit_timestamp_ms: now_ms,
                instance_id: instance_id.clone(),
            };
            record(&req.group, Change::Offset(commit))
        };
        Ok(req.offsets.iter().map(offset).collect())
    }
}

fn check_admin_commit(group: Option<&Group>, req: &v1::CommitOffsetsRequest) -> Result<(), GroupError> {
    if group.is_some_and(|g| g.broadcast) {
        return Err(GroupError::new(
            ErrorCode::InvalidRequest,
            format!(
                "group {} consumes in broadcast mode: each instance keeps its own offsets, which only it commits",
                req.group
            ),
        ));
    }
    if req.member_epoch != LEAVE_EPOCH {
        return Err(GroupError::new(
            ErrorCode::InvalidRequest,
            format!(
                "a commit without a member id is administrative and must carry member epoch -1, not {}",
                req.member_epoch
            ),
        ));
    }
    match group.map_or(0, |g| g.members.len()) {
        0 => Ok(()),
        n => Err(GroupError::new(
            ErrorCode::GroupNotEmpty,
            format!("group {} has {n} members; stop its consumers before changing its offsets", req.group),
        )),
    }
}

fn check_member_commit(group: Option<&Group>, req: &v1::CommitOffsetsRequest) -> Result<(), GroupError> {
    let partitions = req.offsets.iter().map(|o| (o.topic.as_str(), o.partition));
    check_member_owns(group, &req.group, (&req.member_id, req.member_epoch), partitions, true)
}

/// Checks that `member_id` at `epoch` is a live member of `group` (named `name`) that owns
/// every one of `partitions` (or, with `revoking_too`, is still giving it up): a commit's
/// fencing, which settles share.
pub(super) fn check_member_owns<'p>(
    group: Option<&Group>,
    name: &str,
    (member_id, epoch): (&str, i32),
    mut partitions: impl Iterator<Item = (&'p str, u32)>,
    revoking_too: bool,
) -> Result<(), GroupError> {
    let Some(m) = group.and_then(|g| g.members.get(member_id)) else {
        return Err(unknown_member(name, member_id));
    };
    if m.static_left || m.epoch != epoch {
        return Err(fenced(member_id, epoch, m));
    }
    let owns = |t: &str, p: u32| m.assigned.contains(t, p) || (revoking_too && m.pending_revocation.contains(t, p));
    match partitions.find(|(t, p)| !owns(t, *p)) {
        Some((topic, partition)) => Err(GroupError::new(
            ErrorCode::FencedMemberEpoch,
            format!(
                "member {member_id} does not own {topic}/{partition}: it may commit only partitions assigned to it; \
                 rejoin with member epoch 0"
            ),
        )),
        None => Ok(()),
    }
}

/// How a joining or heartbeating member relates to the group's members.
enum Who {
    /// Not in the group yet.
    New,
    /// In the group under its member id.
    Existing,
    /// Takes over the place of the static member that left with this member id.
    Takeover(String),
}

fn plan_stay(
    group: Option<&Group>,
    req: &v1::GroupHeartbeatRequest,
    client_host: &str,
    partition_count: PartitionCount<'_>,
    defaults: &GroupDefaults,
) -> Result<HeartbeatPlan, GroupError> {
    let who = resolve(group, req)?;
    let topics = subscription(&req.topics)?;
    let set_filters = check_member_filters(group, req, &topics)?;
    let set_mode = check_mode(group, req)?;
    let mode_changed = set_mode.is_some();
    let owned = Assignment::from_client(&req.owned);
    let id = req.member_id.as_str();
    let upsert = internal::MemberUpsert {
        member_id: id.to_owned(),
        instance_id: req.instance_id.clone(),
        topics: topics.iter().cloned().collect(),
        session_timeout_ms: or_default(req.session_timeout_ms, defaults.session_timeout_ms),
        rebalance_timeout_ms: or_default(req.rebalance_timeout_ms, defaults.rebalance_timeout_ms),
        client_host: client_host.to_owned(),
    };
    let before = group.and_then(|g| g.members.get(id)).map(|m| m.assigned.clone());
    let mut plan = Planner::new(&req.group, group);
    let resubscribed = match who {
        Who::New => {
            plan.push(Change::Member(upsert));
            true
        }
        Who::Existing => {
            let m = plan.member(id);
            let resubscribed = m.topics != topics;
            if m.upsert(id) != upsert || m.static_left {
                plan.push(Change::Member(upsert));
            }
            resubscribed
        }
        Who::Takeover(old) => {
            let resubscribed = plan.member(&old).topics != topics;
            plan.take_over(&old, upsert);
            resubscribed
        }
    };
    set_filters.into_iter().chain(set_mode).for_each(|f| plan.push(f));
    let counts = plan.group.subscribed_counts(partition_count);
    if resubscribed || mode_changed || counts != plan.group.partition_counts {
        plan.bump_epoch(counts);
    }
    plan.reconcile(id, &owned);
    let m = plan.member(id);
    let send = req.member_epoch == JOIN_EPOCH || before.as_ref() != Some(&m.assigned) || owned != m.assigned;
    let response = v1::GroupHeartbeatResponse {
        error: Some(sluice_proto::Error::ok()),
        member_id: id.to_owned(),
        member_epoch: m.epoch,
        heartbeat_interval_ms: defaults.heartbeat_interval_ms,
        assignment: send.then(|| v1::Assignment { partitions: m.assigned.to_client() }),
    };
    let revoking = !m.pending_revocation.is_empty();
    Ok(HeartbeatPlan { records: plan.records, response, revoking, left: LeaveKind::None })
}

/// Finds who the request speaks for, refusing stale or conflicting members.
fn resolve(group: Option<&Group>, req: &v1::GroupHeartbeatRequest) -> Result<Who, GroupError> {
    let id = &req.member_id;
    let member = group.and_then(|g| g.members.get(id));
    if req.member_epoch != JOIN_EPOCH {
        let Some(m) = member else { return Err(unknown_member(&req.group, id)) };
        if m.instance_id != req.instance_id {
            return Err(GroupError::new(
                ErrorCode::UnknownMemberId,
                format!(
                    "member {id} joined with instance id {:?}, not {:?}; rejoin with member epoch 0",
                    m.instance_id, req.instance_id
                ),
            ));
        }
        if m.static_left || m.epoch != req.member_epoch {
            return Err(fenced(id, req.member_epoch, m));
        }
        return Ok(Who::Existing);
    }
    let instance = req.instance_id.as_deref();
    let holder =
        group.and_then(|g| g.members.iter().find(|(_, m)| instance.is_some() && m.instance_id.as_deref() == instance));
    match holder {
        Some((holder_id, holder)) if holder_id != id => {
            if !holder.static_left {
                return Err(GroupError::new(
                    ErrorCode::UnreleasedInstanceId,
                    format!(
                        "instance id {} is used by live member {holder_id} of group {}; stop that consumer or wait \
                         for its session to time out",
                        instance.unwrap_or_default(),
                        req.group
                    ),
                ));
            }
            if member.is_some() {
                return Err(GroupError::new(
                    ErrorCode::InvalidRequest,
                    format!(
                        "member {id} is already in group {} and cannot take over instance id {}; join with a new \
                         member id",
                        req.group,
                        instance.unwrap_or_default()
                    ),
                ));
            }
            Ok(Who::Takeover(holder_id.clone()))
        }
        _ => Ok(if member.is_some() { Who::Existing } else { Who::New }),
    }
}

fn plan_leave(
    group: Option<&Group>,
    req: &v1::GroupHeartbeatRequest,
    partition_count: PartitionCount<'_>,
    defaults: &GroupDefaults,
) -> HeartbeatPlan {
    let mut plan = Planner::new(&req.group, group);
    // Leaving twice (a retry whose first answer was lost) is not an error.
    if group.is_some_and(|g| g.members.contains_key(&req.member_id)) {
        plan.remove_member(&req.member_id, partition_count);
    }
    left(req, plan.records, LEAVE_EPOCH, LeaveKind::Left, defaults)
}

fn plan_static_leave(
    group: Option<&Group>,
    req: &v1::GroupHeartbeatRequest,
    defaults: &GroupDefaults,
) -> Result<HeartbeatPlan, GroupError> {
    let Some(instance) = &req.instance_id else {
        return Err(GroupError::new(
            ErrorCode::InvalidRequest,
            "member epoch -2 is for static members leaving for a while: set instance_id, or leave with -1",
        ));
    };
    let mut records = Vec::new();
    if let Some(m) = group.and_then(|g| g.members.get(&req.member_id)) {
        if m.instance_id.as_ref() != Some(instance) {
            return Err(GroupError::new(
                ErrorCode::UnknownMemberId,
                format!("member {} did not join with instance id {instance}", req.member_id),
            ));
        }
        if !m.static_left {
            let left = internal::StaticMemberLeft { member_id: req.member_id.clone() };
            records.push(record(&req.group, Change::StaticLeft(left)));
        }
    }
    Ok(left(req, records, STATIC_LEAVE_EPOCH, LeaveKind::StaticLeft, defaults))
}

fn left(
    req: &v1::GroupHeartbeatRequest,
    records: Vec<GroupRecord>,
    epoch: i32,
    kind: LeaveKind,
    defaults: &GroupDefaults,
) -> HeartbeatPlan {
    let response = v1::GroupHeartbeatResponse {
        error: Some(sluice_proto::Error::ok()),
        member_id: req.member_id.clone(),
        member_epoch: epoch,
        heartbeat_interval_ms: defaults.heartbeat_interval_ms,
        assignment: None,
    };
    HeartbeatPlan { records, response, revoking: false, left: kind }
}

/// Records being planned for one group, applied as they are emitted to a copy of the group.
struct Planner<'a> {
    name: &'a str,
    group: Cow<'a, Group>,
    records: Vec<GroupRecord>,
}

impl<'a> Planner<'a> {
    fn new(name: &'a str, group: Option<&'a Group>) -> Planner<'a> {
        let group = group.map_or_else(|| Cow::Owned(Group::default()), Cow::Borrowed);
        Planner { name, group, records: Vec::new() }
    }

    fn push(&mut self, change: Change) {
        self.group.to_mut().apply(&change);
        self.records.push(record(self.name, change));
    }

    fn member(&self, id: &str) -> &Member {
        self.group.members.get(id).expect("planned member is in the group")
    }

    /// `upsert`'s member replaces the static member `old`, with its epoch and assignments.
    fn take_over(&mut self, old: &str, upsert: internal::MemberUpsert) {
        let id = upsert.member_id.clone();
        let was = self.member(old).clone();
        self.push(Change::Member(upsert));
        self.push(Change::Target(target_record(&id, &was.target)));
        self.push(Change::Current(current_record(&id, was.epoch, &was.assigned, &was.pending_revocation)));
        self.push(Change::MemberRemoved(internal::MemberRemoved { member_id: old.to_owned() }));
    }

    fn remove_member(&mut self, id: &str, partition_count: PartitionCount<'_>) {
        self.push(Change::MemberRemoved(internal::MemberRemoved { member_id: id.to_owned() }));
        if !self.group.members.is_empty() {
            let counts = self.group.subscribed_counts(partition_count);
            self.bump_epoch(counts);
        }
    }

    /// A new group epoch for `counts`, with every member's new target.
    fn bump_epoch(&mut self, counts: BTreeMap<String, u32>) {
        let specs: Vec<MemberSpec<'_>> = self
            .group
            .members
            .iter()
            .map(|(id, m)| MemberSpec { id, topics: &m.topics, previous: &m.target })
            .collect();
        let targets =
            if self.group.broadcast { broadcast_targets(&specs, &counts) } else { assignor::assign(&specs, &counts) };
        let epoch = self.group.epoch + 1;
        self.push(Change::GroupEpoch(epoch_record(epoch, &counts)));
        for (id, target) in targets {
            if self.member(&id).target != target {
                self.push(Change::Target(target_record(&id, &target)));
            }
        }
    }

    /// Moves member `id` towards its target, given the partitions it reports owning.
    fn reconcile(&mut self, id: &str, owned: &Assignment) {
        if let Some((epoch, assigned, pending)) = next_assignment(&self.group, id, owned) {
            self.push(Change::Current(current_record(id, epoch, &assigned, &pending)));
        }
    }
}

/// The member's next (epoch, assigned, pending revocation), or `None` if it stays as it is.
fn next_assignment(group: &Group, id: &str, owned: &Assignment) -> Option<(i32, Assignment, Assignment)> {
    let m = group.members.get(id).expect("reconciled member is in the group");
    if !m.pending_revocation.is_empty() {
        if owned.intersects(&m.pending_revocation) {
            return None; // still giving partitions up
        }
    } else if m.epoch == group.epoch && m.assigned == m.target {
        return None; // reconciled
    }
    let keep = m.assigned.intersection(&m.target);
    let revoke = m.assigned.difference(&m.target);
    let next = if owned.intersects(&revoke) {
        (m.epoch, keep, revoke)
    } else {
        // In broadcast every member reads every partition: none is held against another.
        let held = if group.broadcast { Assignment::default() } else { group.held_by_others(id) };
        let mut assigned = keep;
        for (topic, p) in m.target.iter().filter(|&(t, p)| !held.contains(t, p)) {
            assigned.insert(topic, p);
        }
        (group.epoch, assigned, Assignment::default())
    };
    let same = next.0 == m.epoch && next.1 == m.assigned && next.2 == m.pending_revocation;
    (!same).then_some(next)
}

/// Broadcast targets: each member every partition of the topics it subscribes to.
fn broadcast_targets(specs: &[MemberSpec<'_>], counts: &BTreeMap<String, u32>) -> BTreeMap<String, Assignment> {
    let all = |topics: &BTreeSet<String>| {
        let mut a = Assignment::default();
        for (topic, &n) in counts.iter().filter(|(t, _)| topics.contains(*t)) {
            (0..n).for_each(|p| a.insert(topic, p));
        }
        a
    };
    specs.iter().map(|s| (s.id.to_owned(), all(s.topics))).collect()
}

/// Checks a member's way of consuming against its group's: every member of a group consumes
/// in broadcast mode, or none; the first member of a group without members decides (the record
/// to write if that changes the group's mode). A broadcast member needs an instance id, under
/// which its offsets are kept.
fn check_mode(group: Option<&Group>, req: &v1::GroupHeartbeatRequest) -> Result<Option<Change>, GroupError> {
    if req.broadcast && req.instance_id.is_none() {
        return Err(GroupError::new(
            ErrorCode::InvalidRequest,
            "a broadcast member needs an instance id: its committed offsets are kept under it, so a restarted \
             instance resumes where it was",
        ));
    }
    let current = group.is_some_and(|g| g.broadcast);
    if current == req.broadcast {
        return Ok(None);
    }
    let others = group.is_some_and(|g| g.members.keys().any(|id| *id != req.member_id));
    if others {
        let mode = |b: bool| if b { "broadcast" } else { "clustering (partitions shared out)" };
        return Err(GroupError::new(
            ErrorCode::InvalidRequest,
            format!(
                "group {} consumes in {} mode and this member asked for {} mode: every member of a group consumes \
                 the same way; use another group, or stop the group's members first",
                req.group,
                mode(current),
                mode(req.broadcast)
            ),
        ));
    }
    Ok(Some(Change::Mode(internal::GroupMode { broadcast: req.broadcast })))
}

/// The subscribed topics, validated, sorted and without duplicates.
fn subscription(topics: &[String]) -> Result<BTreeSet<String>, GroupError> {
    for t in topics {
        validate_topic(t)?;
    }
    Ok(topics.iter().cloned().collect())
}

fn or_default(ms: u32, default: u32) -> u32 {
    if ms == 0 { default } else { ms }
}

fn unknown_member(group: &str, id: &str) -> GroupError {
    GroupError::new(
        ErrorCode::UnknownMemberId,
        format!(
            "member {id} is not in group {group} (its session expired, it left, or it was replaced); rejoin with \
             member epoch 0"
        ),
    )
}

fn fenced(id: &str, epoch: i32, m: &Member) -> GroupError {
    let message = if m.static_left {
        format!("member {id} left the group as a static member; rejoin with member epoch 0")
    } else {
        format!("member {id} sent epoch {epoch} but its epoch is {}; rejoin with member epoch 0", m.epoch)
    };
    GroupError::new(ErrorCode::FencedMemberEpoch, message)
}
