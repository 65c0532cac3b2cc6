//! Check-back of half transactions (RocketMQ's transactional messages, docs/TRANSACTIONS.md):
//! members of a producer group keep a `CheckBack` stream open to every broker; a coordinator
//! whose half transaction is past its check time asks one connected member of its group, and
//! applies the answer (commit, roll back, or unknown: ask again after the back-off).
//!
//! An attempt counts only when a member was there to ask: with none connected the transaction
//! waits, its attempts untouched, however long that lasts. After `max_check_attempts` answered
//! (or unanswered) checks it is left *undecided* for an operator, never aborted or dropped. A
//! check rewrites no message: the attempt count and the next check time are one small record.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::Stream;
use sluice_proto::internal::TxnMeta;
use sluice_proto::v1::check_back_message::Kind;
use sluice_proto::v1::{CheckAnswer as WireAnswer, CheckBackMessage, CheckOutcome, CheckRequest, TxnTopicPartitions};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::coordinator::TxnCoordinator;
use super::coordinators::TxnCoordinators;
use super::state::{CheckAnswer, Producer};
use crate::groups::context::now_ms;

/// Check requests queued per member before the broker stops sending it more.
const MEMBER_QUEUE: usize = 256;

/// The stream of check requests a member receives.
pub(super) type Checks = Pin<Box<dyn Stream<Item = Result<CheckRequest, Status>> + Send>>;

/// One connected member of a producer group.
struct Member {
    id: u64,
    name: String,
    requests: mpsc::Sender<Result<CheckRequest, Status>>,
}

/// The members of every producer group connected to this broker.
#[derive(Default)]
pub(super) struct CheckRegistry {
    groups: Mutex<HashMap<String, Vec<Member>>>,
    next_id: AtomicU64,
    /// Spreads checks over a group's members.
    turn: AtomicU64,
}

impl CheckRegistry {
    fn add(&self, group: &str, name: String, requests: mpsc::Sender<Result<CheckRequest, Status>>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.groups.lock().expect("check registry").entry(group.to_owned()).or_default().push(Member {
            id,
            name,
            requests,
        });
        id
    }

    fn remove(&self, group: &str, id: u64) {
        let mut groups = self.groups.lock().expect("check registry");
        if let Some(members) = groups.get_mut(group) {
            members.retain(|m| m.id != id);
            if members.is_empty() {
                groups.remove(group);
            }
        }
    }

    /// Sends `request` to a connected member of `group`; the member's name, or `None` when no
    /// member could take it.
    fn send(&self, group: &str, request: CheckRequest) -> Option<String> {
        let groups = self.groups.lock().expect("check registry");
        let members = groups.get(group)?;
        let start = self.turn.fetch_add(1, Ordering::Relaxed) as usize;
        let mut request = Some(request);
        for i in 0..members.len() {
            let m = &members[(start + i) % members.len()];
            match m.requests.try_send(Ok(request.take().expect("a request to send"))) {
                Ok(()) => return Some(m.name.clone()),
                Err(e) => request = Some(e.into_inner().expect("an unsent request")),
            }
        }
        None
    }
}

impl TxnCoordinators {
    /// Serves one member's `CheckBack` stream: registers it under its group, applies its
    /// answers, and unregisters it when the stream ends.
    pub async fn check_back(self: &Arc<Self>, mut inbound: Streaming<CheckBackMessage>) -> Result<Checks, Status> {
        let hello = match inbound.message().await? {
            Some(CheckBackMessage { kind: Some(Kind::Hello(h)) }) if !h.producer_group.is_empty() => h,
            _ => {
                return Err(Status::invalid_argument(
                    "a CheckBack stream starts with a hello naming the producer group",
                ));
            }
        };
        let (tx, rx) = mpsc::channel(MEMBER_QUEUE);
        let group = hello.producer_group;
        let id = self.checkers.add(&group, hello.member.clone(), tx);
        tracing::info!(group, member = hello.member, "a producer group member connected for check-backs");
        let coordinators = Arc::clone(self);
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                if let Some(Kind::Answer(answer)) = message.kind {
                    let coordinators = Arc::clone(&coordinators);
                    tokio::spawn(async move { coordinators.apply_answer(answer).await });
                }
            }
            coordinators.checkers.remove(&group, id);
            tracing::info!(group, member = hello.member, "a producer group member disconnected");
        });
        Ok(Box::pin(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) })))
    }

    /// Applies a member's answer to its coordinator here (a stale one changes nothing).
    async fn apply_answer(&self, a: WireAnswer) {
        let answer = match a.outcome() {
            CheckOutcome::CheckCommit => CheckAnswer::Commit,
            CheckOutcome::CheckRollback => CheckAnswer::Rollback,
            CheckOutcome::CheckUnknown => CheckAnswer::Unknown,
        };
        let Ok(epoch) = i16::try_from(a.epoch) else { return };
        let Ok(c) = self.route(&a.transactional_id) else { return };
        let id = a.transactional_id.as_str();
        let Ok(turn) = c.turn(id).await else { return };
        let producer = Producer { producer_id: a.producer_id, epoch };
        let planned = c.table().check_answer(id, producer, answer, now_ms() as u64);
        let outcome = match planned {
            Ok(plan) if plan.markers.is_some() => match c.write(&plan.records).await {
                Ok(_) => c.finish(id).await.map(drop),
                Err(e) => Err(e),
            },
            Ok(plan) => c.write(&plan.records).await.map(drop),
            Err(e) => Err(e.into()),
        };
        match outcome {
            Ok(()) if answer == CheckAnswer::Unknown => {}
            Ok(()) => tracing::info!(id, ?answer, "half transaction decided by its check-back"),
            Err(e) => tracing::info!(id, "applying a check-back answer: {}", e.message),
        }
        drop(turn);
    }
}

impl TxnCoordinator {
    /// Checks back the half transactions due: each with a connected member of its group
    /// counts an attempt; the others wait for one.
    pub async fn check_due(self: &Arc<Self>, registry: &CheckRegistry) {
        let due = self.table().due_checks(now_ms() as u64);
        for id in due {
            let Ok(turn) = self.turn(&id).await else { return };
            let Some(meta) = self.table().get(&id).cloned() else { continue };
            let Some(group) = meta.check_group.clone() else { continue };
            let Some(plan) = self.table().check_sent(&id, now_ms() as u64, &self.limits()) else { continue };
            let Some(member) = registry.send(&group, request(&id, &meta)) else {
                tracing::debug!(
                    id,
                    group,
                    "half transaction due for a check-back: no member of its group is connected"
                );
                continue;
            };
            if let Err(e) = self.write(&plan.records).await {
                tracing::info!(id, "counting a check-back: {}", e.message);
            }
            tracing::info!(id, group, member, attempt = meta.check_attempts + 1, "half transaction checked back");
            drop(turn);
        }
    }
}

/// The check request for `meta`'s transaction.
fn request(id: &str, meta: &TxnMeta) -> CheckRequest {
    let mut by_topic: std::collections::BTreeMap<&str, Vec<u32>> = std::collections::BTreeMap::new();
    meta.partitions.iter().for_each(|p| by_topic.entry(p.topic.as_str()).or_default().push(p.partition));
    CheckRequest {
        transactional_id: id.to_owned(),
        producer_id: meta.producer_id,
        epoch: meta.epoch,
        partitions: by_topic
            .into_iter()
            .map(|(topic, partitions)| TxnTopicPartitions { topic: topic.to_owned(), partitions })
            .collect(),
        started_ms: meta.started_ms,
        attempt: meta.check_attempts + 1,
    }
}
