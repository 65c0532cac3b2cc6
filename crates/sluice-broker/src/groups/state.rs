//! The state of every consumer group of one `__consumer_offsets` partition, as the replay of
//! its records (docs/adr/0005-consumer-groups.md). Pure: no I/O, no clock, no randomness.
//!
//! [`Coordinated::apply_batch`] (record by record, [`Coordinated::apply`]) is the only mutation: the coordinator calls it on load, for every
//! committed record in log order, and after each write it made commits. Requests never change
//! the state directly: [`Coordinated::heartbeat`], [`Coordinated::expire`] and
//! [`Coordinated::commit`] validate against the current state and *plan* the records the
//! request implies (computing them against a copy), so that what is answered is exactly what
//! the log will rebuild. Planning lives in `plan`.
//!
//! [`Coordinated::expired_groups`] and [`Coordinated::delete_expired`] find and plan the deletion
//! of groups past their offsets retention; the decision reads the coordinator's clock, the
//! deletion is a record, so replay agrees without one.
//!
//! Per group: a group epoch with the partition counts it was computed for, members (metadata,
//! target assignment, current assignment: member epoch, partitions it may own, partitions it
//! must give up), and committed offsets. A group with no members and no offsets does not exist.

use std::collections::{BTreeMap, BTreeSet};

use sluice_common::TopicName;
use sluice_proto::internal::group_record::Change;
use sluice_proto::internal::{self, GroupRecord};
use sluice_proto::{ErrorCode, v1};

use super::assignor::Assignment;

mod filters;
mod plan;
mod retries;
mod settle;
mod txn_offsets;

pub(crate) use filters::FilterSpec;
pub(crate) use retries::{GroupRetries, Reserved, policy_to_client};
pub(crate) use settle::{DueRetry, NeedsProducer, SettlePlan};

/// The member epoch a member joins (or rejoins after being fenced) with.
const JOIN_EPOCH: i32 = 0;
/// The member epoch of a member leaving for good.
const LEAVE_EPOCH: i32 = -1;
/// The member epoch of a static member leaving for a while (it keeps its assignment).
const STATIC_LEAVE_EPOCH: i32 = -2;
/// The longest group id, as for topic names.
const MAX_GROUP_ID_BYTES: usize = 249;
/// The longest member id or instance id.
const MAX_MEMBER_ID_BYTES: usize = 255;
/// The longest metadata string stored with a committed offset (Kafka's default limit).
const MAX_COMMIT_METADATA_BYTES: usize = 4096;

/// The member settings of the broker's configuration, for members that leave them at 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupDefaults {
    /// Session timeout of a member that asks for 0.
    pub session_timeout_ms: u32,
    /// Rebalance timeout of a member that asks for 0.
    pub rebalance_timeout_ms: u32,
    /// How often members are told to heartbeat.
    pub heartbeat_interval_ms: u32,
}

/// A refused request: the code to answer with and a message saying what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub(crate) struct GroupError {
    /// The stable error code.
    pub code: ErrorCode,
    /// For a human.
    pub message: String,
}

impl GroupError {
    fn new(code: ErrorCode, message: impl Into<String>) -> GroupError {
        GroupError { code, message: message.into() }
    }
}

impl From<GroupError> for sluice_proto::Error {
    fn from(e: GroupError) -> sluice_proto::Error {
        sluice_proto::Error::new(e.code, e.message)
    }
}

/// Whether a heartbeat took its member out of the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaveKind {
    /// The member stays (or joined).
    None,
    /// Epoch -1: the member is gone (or was not there); its timers can stop.
    Left,
    /// Epoch -2: a static member left for a while and keeps its assignment until its session
    /// timeout, measured from now, runs out.
    StaticLeft,
}

/// What a heartbeat does: the records to write through Raft first, then the answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HeartbeatPlan {
    /// To write and apply before answering; empty when nothing changes.
    pub records: Vec<GroupRecord>,
    /// The answer, valid once `records` are applied.
    pub response: v1::GroupHeartbeatResponse,
    /// The member has partitions it was told to give up: its rebalance timeout runs (from the
    /// first such answer until an answer where this is false).
    pub revoking: bool,
    /// Whether the member left.
    pub left: LeaveKind,
}

/// A member's timeouts, for the coordinator's timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberTimers {
    /// The group.
    pub group: String,
    /// The member.
    pub member_id: String,
    /// Removed after this long without a heartbeat (or, static-left, without rejoining).
    pub session_timeout_ms: u32,
    /// Removed after keeping partitions to revoke this long.
    pub rebalance_timeout_ms: u32,
    /// A static member that left with epoch -2.
    pub static_left: bool,
    /// It has partitions to give up.
    pub revoking: bool,
}

/// Where a group stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupState {
    /// No members.
    Empty,
    /// Every member has reached the group epoch's target assignment.
    Stable,
    /// Some member has partitions to give up or to receive.
    Reconciling,
}

impl GroupState {
    /// The name clients see (`GroupListing.state`).
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "EMPTY",
            GroupState::Stable => "STABLE",
            GroupState::Reconciling => "RECONCILING",
        }
    }
}

/// A group as `DescribeGroup` shows it, lag aside.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GroupView {
    /// The group id.
    pub group: String,
    /// Where it stands.
    pub state: GroupState,
    /// Its group epoch.
    pub group_epoch: i32,
    /// Members by id; `assigned` includes partitions still being revoked, and a static member
    /// that left shows member epoch -2.
    pub members: Vec<v1::GroupMember>,
    /// Committed offsets, by instance (a broadcast group's; "" otherwise), topic and partition.
    pub offsets: Vec<v1::CommittedOffset>,
    /// Every topic some member subscribes to, ascending.
    pub topics: Vec<String>,
    /// The filter of each topic the group consumes with one (docs/FILTERS.md), by topic.
    pub filters: Vec<v1::TopicFilter>,
    /// Whether the group consumes in broadcast mode.
    pub broadcast: bool,
}

/// Every group of one `__consumer_offsets` partition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Coordinated {
    groups: BTreeMap<String, Group>,
    /// A checkpoint written in several batches, being read.
    pending: Option<PendingCheckpoint>,
}

/// The parts of a multi-part checkpoint read so far: they rebuild the state apart, which they
/// replace only with the last part, so a checkpoint abandoned part-way never stands for the
/// state (what it copied still is the state).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PendingCheckpoint {
    /// The part expected next (1-based).
    next_part: u32,
    /// How many parts the checkpoint has.
    parts: u32,
    /// What its parts so far rebuild.
    state: Box<Coordinated>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Group {
    /// Grows with every change of membership, subscriptions or partition counts.
    epoch: i32,
    /// The partition counts of the subscribed topics at `epoch` (existing topics only).
    partition_counts: BTreeMap<String, u32>,
    members: BTreeMap<String, Member>,
    /// By instance id (a broadcast group's members commit their own; "" for the group's),
    /// topic and partition.
    offsets: BTreeMap<OffsetKey, Committed>,
    /// Broadcast consumption: every member is given every partition of its topics.
    broadcast: bool,
    /// The filter each topic is consumed with, once a member subscribed to it (`filters`).
    filters: BTreeMap<String, FilterSpec>,
    /// Offsets of open transactions, by producer id (`txn_offsets`).
    txn_offsets: BTreeMap<i64, txn_offsets::PendingTxn>,
    /// Retry policy, messages waiting for a retry, dead letters (`retries`).
    retries: GroupRetries,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Member {
    instance_id: Option<String>,
    topics: BTreeSet<String>,
    session_timeout_ms: u32,
    rebalance_timeout_ms: u32,
    client_host: String,
    /// Left with epoch -2 and not back yet.
    static_left: bool,
    /// The group epoch whose target the member has reached (0: none yet).
    epoch: i32,
    /// The partitions it may own.
    assigned: Assignment,
    /// Partitions it was told to give up and has not reported released.
    pending_revocation: Assignment,
    /// What it should own at the group epoch.
    target: Assignment,
}

/// Whose offset of which partition: (instance id or "", topic, partition).
type OffsetKey = (String, String, u32);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Committed {
    offset: u64,
    metadata: String,
    commit_timestamp_ms: i64,
}

impl Coordinated {
    /// No groups.
    pub fn new() -> Coordinated {
        Coordinated::default()
    }

    /// Applies one committed batch of records (see [`Coordinated::apply`]). A batch that is a
    /// part of a multi-part checkpoint is collected apart, and the whole checkpoint replaces
    /// the state with its last part; any other batch abandons a checkpoint in progress (its
    /// writer gave up, and the state it copied is still the state).
    pub fn apply_batch(&mut self, records: &[GroupRecord]) {
        if let Some(Change::Checkpoint(c)) = records.first().and_then(|r| r.change.as_ref())
            && c.parts > 1
        {
            return self.apply_part(c.part, c.parts, &records[1..]);
        }
        self.pending = None;
        records.iter().for_each(|r| self.apply(r));
    }

    /// Part `part` of `parts` of a checkpoint, after its marker.
    fn apply_part(&mut self, part: u32, parts: u32, records: &[GroupRecord]) {
        let mut pending = match self.pending.take() {
            Some(p) if p.next_part == part && p.parts == parts => p,
            // A first part starts a checkpoint (abandoning one in progress).
            _ if part == 1 => PendingCheckpoint { next_part: 1, parts, state: Box::default() },
            // A part whose predecessors were not read belongs to no checkpoint that can complete.
            _ => return,
        };
        records.iter().for_each(|r| pending.state.apply(r));
        if part == parts {
            self.groups = std::mem::take(&mut pending.state.groups);
        } else {
            pending.next_part = part + 1;
            self.pending = Some(pending);
        }
    }

    /// Applies one committed record. Deterministic; the only way the state changes. Records
    /// about a member or group that does not exist change nothing. A multi-part checkpoint's
    /// markers are for [`Coordinated::apply_batch`], and change nothing here.
    pub fn apply(&mut self, record: &GroupRecord) {
        let Some(change) = &record.change else { return };
        match change {
            Change::Checkpoint(c) => {
                if c.parts <= 1 {
                    self.groups.clear();
                }
            }
            Change::GroupDeleted(_) => {
                // The coordinator decided on a state where the group had no members, and held
                // its lock until this was applied; checking again keeps any replay safe.
                if self.groups.get(&record.group).is_some_and(|g| g.members.is_empty()) {
                    self.groups.remove(&record.group);
                }
            }
            // These may create the group: a first member, a checkpoint's group, a commit.
            Change::Member(_)
            | Change::GroupEpoch(_)
            | Change::Offset(_)
            | Change::TxnOffsets(_)
            | Change::RetryPolicy(_)
            | Change::Retry(_)
            | Change::DeadLetter(_)
            | Change::DeadLetterCursors(_) => {
                if let Some(group) = self.groups.get_mut(&record.group) {
                    group.apply(change);
                } else {
                    let mut group = Group::default();
                    group.apply(change);
                    self.groups.insert(record.group.clone(), group);
                }
            }
            _ => {
                let Some(group) = self.groups.get_mut(&record.group) else { return };
                group.apply(change);
                let gone = group.members.is_empty()
                    && group.offsets.is_empty()
                    && group.txn_offsets.is_empty()
                    && group.retries == GroupRetries::default();
                if matches!(change, Change::MemberRemoved(_) | Change::TxnOffsetsEnded(_)) && gone {
                    self.groups.remove(&record.group);
                }
            }
        }
    }

    /// The committed offsets asked for (every one the group has when `req.partitions` is
    /// empty); a partition with none comes back with no offset. A group that does not exist has
    /// committed nothing.
    pub fn fetch_offsets(&self, req: &v1::FetchOffsetsRequest) -> Result<Vec<v1::CommittedOffset>, GroupError> {
        validate_group_id(&req.group)?;
        self.refuse_unstable(req)?;
        let instance = req.instance_id.clone().unwrap_or_default();
        let offsets = self.groups.get(&req.group).map(|g| &g.offsets);
        if req.partitions.is_empty() {
            let mine = offsets.into_iter().flatten().filter(|((i, _, _), _)| *i == instance);
            return Ok(mine.map(|(key, c)| committed_offset(key, Some(c))).collect());
        }
        let lookup = |topic: &str, p: u32| {
            let key = (instance.clone(), topic.to_owned(), p);
            committed_offset(&key, offsets.and_then(|o| o.get(&key)))
        };
        Ok(req.partitions.iter().flat_map(|tp| tp.partitions.iter().map(|&p| lookup(&tp.topic, p))).collect())
    }

    /// Whether `member` is in `group`.
    pub fn is_member(&self, group: &str, member: &str) -> bool {
        self.groups.get(group).is_some_and(|g| g.members.contains_key(member))
    }

    /// Every group, by name.
    pub fn list(&self) -> Vec<v1::GroupListing> {
        let listing = |(name, g): (&String, &Group)| v1::GroupListing {
            group: name.clone(),
            state: g.state().as_str().to_owned(),
            members: u32::try_from(g.members.len()).unwrap_or(u32::MAX),
        };
        self.groups.iter().map(listing).collect()
    }

    /// One group's members, assignments and committed offsets; `None` if it does not exist.
    pub fn describe(&self, group: &str) -> Option<GroupView> {
        let g = self.groups.get(group)?;
        let members = g.members.iter().map(|(id, m)| m.view(id)).collect();
        let offsets = g.offsets.iter().map(|(key, c)| committed_offset(key, Some(c))).collect();
        let topics: BTreeSet<&String> = g.members.values().flat_map(|m| &m.topics).collect();
        Some(GroupView {
            group: group.to_owned(),
            state: g.state(),
            group_epoch: g.epoch,
            members,
            offsets,
            topics: topics.into_iter().cloned().collect(),
            filters: g.filters_view(),
            broadcast: g.broadcast,
        })
    }

    /// Every member of every group with its timeouts, for (re)starting timers after loading.
    pub fn members(&self) -> Vec<MemberTimers> {
        let mut out = Vec::new();
        for (name, g) in &self.groups {
            out.extend(g.members.iter().map(|(id, m)| MemberTimers {
                group: name.clone(),
                member_id: id.clone(),
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                static_left: m.static_left,
                revoking: !m.pending_revocation.is_empty(),
            }));
        }
        out
    }

    /// The records that rebuild the whole state from nothing, starting with a checkpoint
    /// marker (replay forgets what came before it). Write them as one batch, or split them
    /// into parts (`checkpoint::split`).
    pub fn checkpoint(&self) -> Vec<GroupRecord> {
        let mut out = vec![GroupRecord {
            group: String::new(),
            change: Some(Change::Checkpoint(internal::Checkpoint::default())),
        }];
        for (name, g) in &self.groups {
            let rec = |change| record(name, change);
            out.push(rec(Change::GroupEpoch(epoch_record(g.epoch, &g.partition_counts))));
            out.extend(g.filter_records(name));
            if g.broadcast {
                out.push(rec(Change::Mode(internal::GroupMode { broadcast: true })));
            }
            for (id, m) in &g.members {
                out.push(rec(Change::Member(m.upsert(id))));
                out.push(rec(Change::Target(target_record(id, &m.target))));
                out.push(rec(Change::Current(current_record(id, m.epoch, &m.assigned, &m.pending_revocation))));
                if m.static_left {
                    out.push(rec(Change::StaticLeft(internal::StaticMemberLeft { member_id: id.clone() })));
                }
            }
            for ((instance, topic, partition), c) in &g.offsets {
                out.push(rec(Change::Offset(internal::OffsetCommit {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: c.offset,
                    metadata: c.metadata.clone(),
                    commit_timestamp_ms: c.commit_timestamp_ms,
                    instance_id: instance.clone(),
                })));
            }
            out.extend(g.txn_records(name));
            out.extend(g.retry_records(name));
        }
        out
    }
}

impl Group {
    /// The in-group effect of a record (creation, deletion and checkpoints are the caller's).
    fn apply(&mut self, change: &Change) {
        match change {
            Change::Member(u) => {
                let m = self.members.entry(u.member_id.clone()).or_default();
                m.instance_id.clone_from(&u.instance_id);
                m.topics = u.topics.iter().cloned().collect();
                m.session_timeout_ms = u.session_timeout_ms;
                m.rebalance_timeout_ms = u.rebalance_timeout_ms;
                m.client_host.clone_from(&u.client_host);
                m.static_left = false;
            }
            Change::MemberRemoved(r) => {
                self.members.remove(&r.member_id);
            }
            Change::GroupEpoch(e) => {
                self.epoch = e.epoch;
                self.partition_counts = e.partition_counts.iter().map(|c| (c.topic.clone(), c.partitions)).collect();
            }
            Change::Target(t) => {
                if let Some(m) = self.members.get_mut(&t.member_id) {
                    m.target = Assignment::from_internal(&t.partitions);
                }
            }
            Change::Current(c) => {
                if let Some(m) = self.members.get_mut(&c.member_id) {
                    m.epoch = c.member_epoch;
                    m.assigned = Assignment::from_internal(&c.assigned);
                    m.pending_revocation = Assignment::from_internal(&c.pending_revocation);
                }
            }
            Change::Offset(o) => {
                let committed = Committed {
                    offset: o.offset,
                    metadata: o.metadata.clone(),
                    commit_timestamp_ms: o.commit_timestamp_ms,
                };
                self.offsets.insert((o.instance_id.clone(), o.topic.clone(), o.partition), committed);
                self.retries.dlq.committed(&o.topic, o.partition, o.offset);
            }
            Change::StaticLeft(s) => {
                if let Some(m) = self.members.get_mut(&s.member_id) {
                    m.static_left = true;
                }
            }
            Change::Filter(f) => self.apply_filter(f),
            Change::Mode(m) => self.broadcast = m.broadcast,
            Change::TxnOffsets(_) | Change::TxnOffsetsEnded(_) => self.apply_txn(change),
            Change::RetryPolicy(_)
            | Change::Retry(_)
            | Change::DeadLetter(_)
            | Change::DeadLetterWritten(_)
            | Change::DeadLetterCursors(_) => self.apply_retry(change),
            Change::Checkpoint(_) | Change::GroupDeleted(_) => {}
        }
    }

    /// The latest commit time of its offsets (`None` without offsets).
    fn last_commit_ms(&self) -> Option<i64> {
        self.offsets.values().map(|c| c.commit_timestamp_ms).max()
    }

    fn state(&self) -> GroupState {
        if self.members.is_empty() {
            GroupState::Empty
        } else if self.members.values().all(|m| m.epoch == self.epoch && m.assigned == m.target) {
            GroupState::Stable
        } else {
            GroupState::Reconciling
        }
    }

    /// The partition counts of every topic a member subscribes to, for those that exist.
    fn subscribed_counts(&self, partition_count: &dyn Fn(&str) -> Option<u32>) -> BTreeMap<String, u32> {
        let topics: BTreeSet<&String> = self.members.values().flat_map(|m| &m.topics).collect();
        topics.into_iter().filter_map(|t| partition_count(t).map(|n| (t.clone(), n))).collect()
    }

    /// Partitions owned, or still being given up, by members other than `member_id`.
    fn held_by_others(&self, member_id: &str) -> Assignment {
        let mut held = Assignment::default();
        for (_, m) in self.members.iter().filter(|(id, _)| *id != member_id) {
            held.extend(&m.assigned);
            held.extend(&m.pending_revocation);
        }
        held
    }
}

impl Member {
    fn upsert(&self, id: &str) -> internal::MemberUpsert {
        internal::MemberUpsert {
            member_id: id.to_owned(),
            instance_id: self.instance_id.clone(),
            topics: self.topics.iter().cloned().collect(),
            session_timeout_ms: self.session_timeout_ms,
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            client_host: self.client_host.clone(),
        }
    }

    fn view(&self, id: &str) -> v1::GroupMember {
        let mut owned = self.assigned.clone();
        owned.extend(&self.pending_revocation);
        v1::GroupMember {
            member_id: id.to_owned(),
            instance_id: self.instance_id.clone(),
            member_epoch: if self.static_left { STATIC_LEAVE_EPOCH } else { self.epoch },
            topics: self.topics.iter().cloned().collect(),
            assigned: owned.to_client(),
            target: self.target.to_client(),
            client_host: self.client_host.clone(),
        }
    }
}

fn record(group: &str, change: Change) -> GroupRecord {
    GroupRecord { group: group.to_owned(), change: Some(change) }
}

fn epoch_record(epoch: i32, counts: &BTreeMap<String, u32>) -> internal::GroupEpoch {
    let count = |(topic, &partitions): (&String, &u32)| internal::PartitionCount { topic: topic.clone(), partitions };
    internal::GroupEpoch { epoch, partition_counts: counts.iter().map(count).collect() }
}

fn target_record(member_id: &str, target: &Assignment) -> internal::TargetAssignment {
    internal::TargetAssignment { member_id: member_id.to_owned(), partitions: target.to_internal() }
}

fn current_record(
    member_id: &str,
    epoch: i32,
    assigned: &Assignment,
    pending: &Assignment,
) -> internal::CurrentAssignment {
    internal::CurrentAssignment {
        member_id: member_id.to_owned(),
        member_epoch: epoch,
        assigned: assigned.to_internal(),
        pending_revocation: pending.to_internal(),
    }
}

fn committed_offset((instance, topic, partition): &OffsetKey, c: Option<&Committed>) -> v1::CommittedOffset {
    v1::CommittedOffset {
        instance_id: instance.clone(),
        topic: topic.clone(),
        partition: *partition,
        offset: c.map(|c| c.offset),
        metadata: c.map(|c| c.metadata.clone()).unwrap_or_default(),
        commit_timestamp_ms: c.map_or(0, |c| c.commit_timestamp_ms),
    }
}

/// Group ids follow the topic name rules: 1 to 249 characters from `[A-Za-z0-9._-]`.
fn validate_group_id(group: &str) -> Result<(), GroupError> {
    let bad = group.is_empty()
        || group.len() > MAX_GROUP_ID_BYTES
        || !group.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if bad {
        return Err(GroupError::new(
            ErrorCode::InvalidGroupId,
            format!("group id {group:?} is invalid: use 1 to {MAX_GROUP_ID_BYTES} characters from [A-Za-z0-9._-]"),
        ));
    }
    Ok(())
}

/// Member and instance ids are chosen by clients: anything from 1 to 255 bytes.
fn validate_member_id(what: &str, id: &str) -> Result<(), GroupError> {
    if id.is_empty() || id.len() > MAX_MEMBER_ID_BYTES {
        return Err(GroupError::new(
            ErrorCode::InvalidRequest,
            format!("{what} is {} bytes long; use 1 to {MAX_MEMBER_ID_BYTES} (a random UUID is usual)", id.len()),
        ));
    }
    Ok(())
}

fn validate_topic(topic: &str) -> Result<(), GroupError> {
    TopicName::new(topic).map(drop).map_err(|e| GroupError::new(ErrorCode::InvalidTopicName, e.to_string()))
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "state_commit_tests.rs"]
mod commit_tests;

#[cfg(test)]
#[path = "state_replay_tests.rs"]
mod replay_tests;

#[cfg(test)]
#[path = "state_filter_tests.rs"]
mod filter_tests;

#[cfg(test)]
#[path = "state_txn_tests.rs"]
mod txn_tests;

#[cfg(test)]
#[path = "state_retry_tests.rs"]
mod retry_tests;
