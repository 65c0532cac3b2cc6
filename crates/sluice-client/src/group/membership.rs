//! A member's standing in its group, shared by the application's side of a
//! [`GroupConsumer`](crate::GroupConsumer) and its background heartbeat task ([`run`]).
//!
//! The task owns the conversation with the coordinator: it joins, sends a heartbeat every
//! `heartbeat_interval_ms` (at once when the owned partitions change), and records what the
//! coordinator answers — the member epoch and, when it changed, the assignment. `poll` reads
//! that, gives up and takes partitions, and writes back what the member owns, which the next
//! heartbeat reports. A fenced or expired member loses everything at once: the task clears
//! what it reports as owned, bumps the *incarnation* (so `poll` drops its partitions too) and
//! rejoins with epoch 0.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use sluice_proto::{ErrorCode, error_of, v1};
use tokio::sync::Notify;

use super::book::{from_proto, to_proto};
use super::coordinator::{Coordinator, Failure, MAX_IMMEDIATE_REDIRECTS};
use crate::config::{ClientConfig, GroupConsumerConfig};
use crate::error::Error;
use crate::filter::MessageFilter;
use crate::topic_partition::TopicPartition;

/// The member epoch that joins a group.
pub(crate) const JOIN_EPOCH: i32 = 0;
/// The member epoch that leaves a group.
const LEAVE_EPOCH: i32 = -1;
/// The member epoch with which a static member leaves but keeps its assignment.
const STATIC_LEAVE_EPOCH: i32 = -2;

/// What the application side and the heartbeat task share.
#[derive(Debug)]
pub(crate) struct Membership {
    state: Mutex<MemberState>,
    /// Wakes `poll` (and `subscribe`): a new assignment, a loss, or an error.
    pub(crate) changed: Notify,
    /// Wakes the heartbeat task: the owned partitions or the subscription changed, or the
    /// member is leaving.
    pub(crate) wake: Notify,
}

impl Membership {
    pub(crate) fn new(instance_id: Option<String>) -> Membership {
        Membership { state: Mutex::new(MemberState::new(instance_id)), changed: Notify::new(), wake: Notify::new() }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, MemberState> {
        self.state.lock().expect("membership lock")
    }
}

/// A member's standing, as the coordinator last described it.
#[derive(Debug)]
pub(crate) struct MemberState {
    pub(crate) member_id: String,
    /// 0 until the coordinator accepts the member (and again after it is fenced).
    pub(crate) epoch: i32,
    instance_id: Option<String>,
    /// Subscribed topics, sorted.
    pub(crate) topics: Vec<String>,
    /// What the application side holds: reported by every heartbeat.
    pub(crate) owned: BTreeSet<TopicPartition>,
    /// The latest assignment, numbered by `version`.
    pub(crate) assignment: Option<Arc<BTreeSet<TopicPartition>>>,
    pub(crate) version: u64,
    /// Bumped each time the member is fenced or expires: everything it owned is lost.
    pub(crate) incarnation: u64,
    /// An error the application should see: the next `poll` returns it.
    pub(crate) error: Option<Error>,
    /// The last retriable error, for a `subscribe` that times out.
    pub(crate) last_retriable: Option<Error>,
    pub(crate) heartbeat_interval: Duration,
    /// Whether the coordinator ever accepted this member (a leave is then worth sending).
    pub(crate) joined: bool,
    pub(crate) leaving: bool,
    /// Messages the filter skipped, per topic, reported by every heartbeat.
    pub(crate) skipped: Vec<v1::TopicCount>,
}

impl MemberState {
    fn new(instance_id: Option<String>) -> MemberState {
        MemberState {
            member_id: random_member_id(),
            epoch: JOIN_EPOCH,
            instance_id,
            topics: Vec::new(),
            owned: BTreeSet::new(),
            assignment: None,
            version: 0,
            incarnation: 0,
            error: None,
            last_retriable: None,
            heartbeat_interval: Duration::from_secs(3),
            joined: false,
            leaving: false,
            skipped: Vec::new(),
        }
    }

    /// The heartbeat to send now.
    pub(crate) fn request(&self, group: &str, config: &GroupConsumerConfig) -> v1::GroupHeartbeatRequest {
        v1::GroupHeartbeatRequest {
            group: group.to_owned(),
            member_id: self.member_id.clone(),
            member_epoch: self.epoch,
            instance_id: self.instance_id.clone(),
            topics: self.topics.clone(),
            owned: to_proto(&self.owned),
            session_timeout_ms: millis(config.session_timeout),
            rebalance_timeout_ms: millis(config.rebalance_timeout),
            filters: topic_filters(&self.topics, config.filter.as_ref()),
            broadcast: config.broadcast,
            skipped: self.skipped.clone(),
        }
    }

    /// The leave to send when closing: static members keep their assignment for their
    /// session timeout.
    pub(crate) fn leave_request(&self, group: &str, config: &GroupConsumerConfig) -> v1::GroupHeartbeatRequest {
        let epoch = if self.instance_id.is_some() { STATIC_LEAVE_EPOCH } else { LEAVE_EPOCH };
        v1::GroupHeartbeatRequest { member_epoch: epoch, owned: Vec::new(), ..self.request(group, config) }
    }

    /// Takes in a successful answer; returns whether it carried a new assignment.
    pub(crate) fn on_answer(&mut self, answer: &v1::GroupHeartbeatResponse) -> bool {
        if !answer.member_id.is_empty() {
            self.member_id.clone_from(&answer.member_id);
        }
        self.epoch = answer.member_epoch;
        self.joined = true;
        self.last_retriable = None;
        if answer.heartbeat_interval_ms > 0 {
            self.heartbeat_interval = Duration::from_millis(u64::from(answer.heartbeat_interval_ms));
        }
        let Some(assignment) = &answer.assignment else { return false };
        let assignment = from_proto(&assignment.partitions);
        if self.assignment.as_deref() == Some(&assignment) {
            return false;
        }
        self.assignment = Some(Arc::new(assignment));
        self.version += 1;
        true
    }

    /// The coordinator no longer knows this member (`UNKNOWN_MEMBER_ID`) or refused its
    /// epoch (`FENCED_MEMBER_EPOCH`): its partitions are gone; it rejoins with epoch 0. A
    /// member the coordinator forgot, or fenced even as it joined, rejoins under a new id.
    pub(crate) fn on_fenced(&mut self, code: ErrorCode, sent_epoch: i32) {
        if code == ErrorCode::UnknownMemberId || sent_epoch == JOIN_EPOCH {
            self.member_id = random_member_id();
        }
        self.epoch = JOIN_EPOCH;
        self.owned.clear();
        self.assignment = None;
        self.incarnation += 1;
    }

    /// Records what the application side holds, unless the member lost everything since it
    /// read `incarnation` (then the loss is processed first). Returns whether it was recorded.
    pub(crate) fn set_owned(&mut self, incarnation: u64, owned: BTreeSet<TopicPartition>) -> bool {
        if incarnation != self.incarnation {
            return false;
        }
        self.owned = owned;
        true
    }
}

/// Milliseconds, saturating (the configuration is validated to fit).
fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

/// A random (version 4) UUID, from the standard library's randomly keyed hasher: 128 bits the
/// coordinator can tell apart from every other member's.
pub(crate) fn random_member_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let half = |salt: u64| {
        // Each RandomState has fresh keys (per-thread random, then incremented).
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(count);
        hasher.write_u128(nanos);
        hasher.write_u64(salt);
        u128::from(hasher.finish())
    };
    let mut bits = (half(1) << 64) | half(2);
    bits = (bits & !(0xF << 76)) | (0x4 << 76); // version 4
    bits = (bits & !(0x3 << 62)) | (0x2 << 62); // RFC 4122 variant
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        bits >> 96,
        (bits >> 80) & 0xFFFF,
        (bits >> 64) & 0xFFFF,
        (bits >> 48) & 0xFFFF,
        bits & 0xFFFF_FFFF_FFFF
    )
}

/// The heartbeat task: runs until the member leaves (then sends the leave) or the consumer
/// is dropped (then it is aborted, and the coordinator removes the member after its session
/// timeout, as after a crash).
pub(crate) async fn run(membership: Arc<Membership>, coordinator: Arc<Coordinator>, config: GroupConsumerConfig) {
    let client_config = coordinator.client().config().clone();
    let mut backoff = client_config.retry_backoff_min;
    // Consecutive redirects: followed at once a few times, then paced like other failures.
    let mut redirects = 0;
    loop {
        let (request, leaving) = {
            let state = membership.lock();
            (state.request(coordinator.group(), &config), state.leaving)
        };
        if leaving {
            leave(&membership, &coordinator, &config).await;
            return;
        }
        let sent_epoch = request.member_epoch;
        let mut op = |mut rpc: crate::client::GroupsRpc| {
            let request = request.clone();
            async move { rpc.group_heartbeat(request).await }
        };
        let pause = match coordinator.attempt(&mut op).await {
            Ok(answer) => {
                backoff = client_config.retry_backoff_min;
                absorb(&membership, coordinator.group(), &answer, sent_epoch, &client_config)
            }
            Err(Failure::Retry { redirected: true, .. }) if redirects < MAX_IMMEDIATE_REDIRECTS => {
                redirects += 1;
                continue;
            }
            Err(Failure::Retry { error, .. }) => {
                tracing::debug!(group = coordinator.group(), %error, "heartbeat failed; retrying");
                membership.lock().last_retriable = Some(error);
                let pause = backoff;
                backoff = (backoff * 2).min(client_config.retry_backoff_max);
                pause
            }
            Err(Failure::Fatal(error)) => {
                membership.lock().error = Some(error);
                membership.changed.notify_one();
                client_config.retry_backoff_max
            }
        };
        redirects = 0;
        wait(&membership, pause).await;
    }
}

/// Takes in the coordinator's answer to a heartbeat; returns how long to wait before the next.
fn absorb(
    membership: &Membership,
    group: &str,
    answer: &v1::GroupHeartbeatResponse,
    sent_epoch: i32,
    client_config: &ClientConfig,
) -> Duration {
    let error = error_of(answer.error.as_ref());
    match error.error_code() {
        ErrorCode::Ok => {
            let (changed, interval) = {
                let mut state = membership.lock();
                (state.on_answer(answer), state.heartbeat_interval)
            };
            if changed || sent_epoch == JOIN_EPOCH {
                membership.changed.notify_one();
            }
            interval
        }
        code @ (ErrorCode::UnknownMemberId | ErrorCode::FencedMemberEpoch) => {
            tracing::warn!(group, ?code, "the member lost its partitions; rejoining");
            membership.lock().on_fenced(code, sent_epoch);
            membership.changed.notify_one();
            client_config.retry_backoff_min
        }
        _ => {
            let error = Error::from_proto(&error);
            tracing::warn!(group, %error, "heartbeat refused");
            membership.lock().error = Some(error);
            membership.changed.notify_one();
            client_config.retry_backoff_max
        }
    }
}

/// Waits `pause`, or less if the application side has news for the coordinator.
async fn wait(membership: &Membership, pause: Duration) {
    if pause.is_zero() {
        return;
    }
    tokio::select! {
        () = tokio::time::sleep(pause) => {}
        () = membership.wake.notified() => {}
    }
}

/// Sends the leave, retried for at most one request timeout: a member that cannot say
/// goodbye is removed after its session timeout anyway.
async fn leave(membership: &Membership, coordinator: &Coordinator, config: &GroupConsumerConfig) {
    let (request, joined) = {
        let state = membership.lock();
        (state.leave_request(coordinator.group(), config), state.joined)
    };
    if !joined {
        return;
    }
    let deadline = Instant::now() + coordinator.client().config().request_timeout;
    let answer = coordinator
        .call("leaving", deadline, |mut rpc| {
            let request = request.clone();
            async move { rpc.group_heartbeat(request).await }
        })
        .await;
    match answer {
        Ok(_) => tracing::debug!(group = coordinator.group(), "left the group"),
        Err(error) => tracing::warn!(group = coordinator.group(), %error, "leaving the group failed"),
    }
}

/// The member's filter of each subscribed topic, as its heartbeats carry it (the same filter
/// for every topic; none without one).
fn topic_filters(topics: &[String], filter: Option<&MessageFilter>) -> Vec<v1::TopicFilter> {
    let Some(f) = filter else { return Vec::new() };
    let filter = |topic: &String| v1::TopicFilter {
        topic: topic.clone(),
        tag_filter: f.tag_expression().to_owned(),
        sql_filter: f.sql_expression().to_owned(),
    };
    topics.iter().map(filter).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(epoch: i32, assignment: Option<&[u32]>) -> v1::GroupHeartbeatResponse {
        v1::GroupHeartbeatResponse {
            error: None,
            member_id: String::new(),
            member_epoch: epoch,
            heartbeat_interval_ms: 250,
            assignment: assignment.map(|p| v1::Assignment {
                partitions: vec![v1::TopicPartitions { topic: "t".into(), partitions: p.to_vec() }],
            }),
        }
    }

    fn config() -> GroupConsumerConfig {
        GroupConsumerConfig::new("g")
    }

    #[test]
    fn member_ids_are_distinct_version_4_uuids() {
        let ids: BTreeSet<String> = (0..1000).map(|_| random_member_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in ids.iter().take(20) {
            let parts: Vec<&str> = id.split('-').collect();
            assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12], "{id}");
            assert!(parts[2].starts_with('4'), "version 4: {id}");
            assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "variant: {id}");
        }
    }

    #[test]
    fn a_join_carries_the_subscription_and_answers_set_epoch_interval_and_assignment() {
        let mut state = MemberState::new(None);
        state.topics = vec!["t".into()];
        let join = state.request("g", &config());
        assert_eq!((join.member_epoch, join.session_timeout_ms, join.rebalance_timeout_ms), (0, 10_000, 60_000));
        assert_eq!((join.topics.as_slice(), join.owned.len()), (&["t".to_owned()][..], 0));
        assert!(state.on_answer(&answer(3, Some(&[0, 1]))), "a first assignment is news");
        assert_eq!((state.epoch, state.version, state.heartbeat_interval), (3, 1, Duration::from_millis(250)));
        assert!(!state.on_answer(&answer(4, None)), "no assignment: unchanged");
        assert!(!state.on_answer(&answer(4, Some(&[1, 0]))), "the same assignment again is no news");
        assert_eq!((state.epoch, state.version), (4, 1));
        state.owned = from_proto(&answer(4, Some(&[0, 1])).assignment.unwrap().partitions);
        assert_eq!(state.request("g", &config()).owned[0].partitions, [0, 1], "heartbeats report what is owned");
    }

    #[test]
    fn fencing_drops_everything_and_only_a_forgotten_member_changes_its_id() {
        let mut state = MemberState::new(None);
        state.on_answer(&answer(5, Some(&[0])));
        state.owned = state.assignment.as_deref().cloned().unwrap();
        let id = state.member_id.clone();
        state.on_fenced(ErrorCode::FencedMemberEpoch, 5);
        assert_eq!((state.epoch, state.incarnation, state.member_id.as_str()), (0, 1, id.as_str()));
        assert!(state.owned.is_empty() && state.assignment.is_none());
        assert!(!state.set_owned(0, BTreeSet::from([TopicPartition::new("t", 0)])), "stale: the loss comes first");
        assert!(state.owned.is_empty());
        state.on_fenced(ErrorCode::FencedMemberEpoch, JOIN_EPOCH);
        assert_ne!(state.member_id, id, "fenced as it joined: a new id");
        let id = state.member_id.clone();
        state.on_fenced(ErrorCode::UnknownMemberId, 7);
        assert_ne!(state.member_id, id, "forgotten: a new id");
        assert_eq!(state.incarnation, 3);
        assert!(state.set_owned(3, BTreeSet::new()));
    }

    #[test]
    fn static_members_leave_with_epoch_minus_2_and_dynamic_ones_with_minus_1() {
        let mut dynamic = MemberState::new(None);
        dynamic.epoch = 4;
        assert_eq!(dynamic.leave_request("g", &config()).member_epoch, -1);
        let mut fixed = MemberState::new(Some("host-1".into()));
        fixed.epoch = 4;
        fixed.owned.insert(TopicPartition::new("t", 0));
        let leave = fixed.leave_request("g", &config());
        assert_eq!((leave.member_epoch, leave.instance_id.as_deref()), (-2, Some("host-1")));
        assert_eq!(fixed.request("g", &config()).instance_id.as_deref(), Some("host-1"));
    }
}
