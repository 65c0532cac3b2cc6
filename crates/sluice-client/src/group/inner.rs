//! [`Core`]: everything a [`GroupConsumer`](super::GroupConsumer) is but its listener — the
//! reading, the offset bookkeeping, commits, and the application of assignment changes
//! ([`reconcile`]) — kept apart so that a listener's callback can use it through a
//! [`GroupContext`] while the listener itself is borrowed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use sluice_proto::{ErrorCode, v1};
use tokio::task::JoinHandle;

use super::book::{OffsetBook, diff, to_proto};
use super::coordinator::Coordinator;
use super::membership::Membership;
use super::settles::SettleBook;
use super::{GroupContext, RebalanceListener};
use crate::client::Client;
use crate::config::{GroupConsumerConfig, SeekTo};
use crate::error::{Error, Result};
use crate::fetcher::Fetcher;
use crate::topic_partition::TopicPartition;

/// Everything but the listener, so a callback can use it while the listener is borrowed.
pub(super) struct Core {
    pub(super) client: Client,
    pub(super) config: GroupConsumerConfig,
    pub(super) coordinator: Arc<Coordinator>,
    pub(super) membership: Arc<Membership>,
    pub(super) fetcher: Fetcher,
    pub(super) book: OffsetBook,
    /// Per-message outcomes not sent yet, open retries, blocked keys (`settles.rs`).
    pub(super) settles: SettleBook,
    /// When `poll` next asks for due retries, and the assignment version it last asked under.
    pub(super) next_retry_poll: Instant,
    pub(super) retry_polled_version: u64,
    /// The loss count and assignment version `poll` has applied (see `membership.rs`).
    pub(super) applied_incarnation: u64,
    pub(super) applied_version: u64,
    pub(super) next_auto_commit: Instant,
    pub(super) heartbeat: Option<JoinHandle<()>>,
}

impl Drop for Core {
    fn drop(&mut self) {
        if let Some(task) = self.heartbeat.take() {
            task.abort();
        }
    }
}

/// Applies what the heartbeat task learned: a loss first, then the latest assignment.
pub(super) async fn reconcile<L: RebalanceListener>(core: &mut Core, listener: &mut L) {
    let (incarnation, version, assignment) = {
        let state = core.membership.lock();
        (state.incarnation, state.version, state.assignment.clone())
    };
    // Each step is recorded as applied only once it is complete: a poll cancelled half-way
    // (in a `select!`) leaves the rest to the next one.
    if incarnation != core.applied_incarnation {
        let lost = core.assignment();
        if !lost.is_empty() {
            listener.on_lost(&mut GroupContext { core }, &lost).await;
            lost.iter().for_each(|tp| core.forget(tp));
        }
        core.applied_incarnation = incarnation;
    }
    let Some(target) = assignment.filter(|_| version != core.applied_version) else { return };
    let change = diff(core.fetcher.partitions(), &target);
    if !change.revoked.is_empty() {
        // Outcomes of the partitions given up go to the coordinator while they are still owned.
        if let Err(error) = core.flush_settles().await {
            tracing::warn!(group = core.config.group, %error, "settling before giving up partitions failed");
        }
        if core.config.auto_commit {
            let due = core.book.finished_uncommitted(Some(&change.revoked));
            if let Err(error) = core.commit_now(due).await {
                tracing::warn!(group = core.config.group, %error, "commit before giving up partitions failed");
            }
        }
        listener.on_revoked(&mut GroupContext { core }, &change.revoked).await;
        change.revoked.iter().for_each(|tp| core.forget(tp));
    }
    for tp in &change.added {
        core.fetcher.insert(tp.clone());
    }
    core.applied_version = version;
    if change.revoked.is_empty() && change.added.is_empty() {
        return;
    }
    core.report_owned(incarnation);
    if !change.added.is_empty() {
        listener.on_assigned(&mut GroupContext { core }, &change.added).await;
    }
}

impl Core {
    /// Hands what the filter skipped to the heartbeats, which report it to the coordinator.
    pub(super) fn report_skipped(&self) {
        let skipped = self.fetcher.skipped();
        if skipped.is_empty() {
            return;
        }
        let counts = skipped.iter().map(|(topic, &count)| v1::TopicCount { topic: topic.to_string(), count });
        self.membership.lock().skipped = counts.collect();
    }

    pub(super) fn check_subscribed(&self) -> Result<()> {
        match self.heartbeat {
            Some(_) => Ok(()),
            None => Err(Error::InvalidArgument("subscribe to topics before polling or committing".into())),
        }
    }

    pub(super) fn assignment(&self) -> Vec<TopicPartition> {
        self.fetcher.partitions().cloned().collect()
    }

    pub(super) fn forget(&mut self, tp: &TopicPartition) {
        self.fetcher.remove(tp);
        self.book.remove(tp);
        self.settles.forget(tp);
    }

    /// Tells the heartbeat task what is owned now, so it reports it at once.
    pub(super) fn report_owned(&self, incarnation: u64) {
        let owned = self.fetcher.partitions().cloned().collect();
        if self.membership.lock().set_owned(incarnation, owned) {
            self.membership.wake.notify_one();
        }
    }

    /// Positions after what `poll` is returning.
    pub(super) fn note_returned(&mut self) {
        for tp in self.fetcher.partitions() {
            if let Some(position) = self.fetcher.position(tp) {
                self.book.returned(tp, position);
            }
        }
    }

    /// Waits until the coordinator accepted the member, or refused it, for at most the
    /// operation timeout.
    pub(super) async fn wait_joined(&self) -> Result<()> {
        let started = Instant::now();
        let deadline = started + self.client.config().operation_timeout;
        loop {
            {
                let mut state = self.membership.lock();
                if let Some(error) = state.error.take() {
                    return Err(error);
                }
                if state.joined && state.epoch > 0 {
                    return Ok(());
                }
            }
            tokio::select! {
                () = self.membership.changed.notified() => {}
                () = tokio::time::sleep_until(deadline.into()) => {
                    let last = self.membership.lock().last_retriable.clone().unwrap_or_else(|| {
                        Error::broker(ErrorCode::Unavailable, "the coordinator has not answered yet")
                    });
                    let operation = format!("joining group {}", self.config.group);
                    return Err(Error::Timeout { operation, elapsed: started.elapsed(), last: Box::new(last) });
                }
            }
        }
    }

    pub(super) async fn auto_commit_if_due(&mut self) {
        if !self.config.auto_commit || Instant::now() < self.next_auto_commit {
            return;
        }
        self.next_auto_commit = Instant::now() + self.config.auto_commit_interval;
        let due = self.book.finished_uncommitted(None);
        if let Err(error) = self.commit_now(due).await {
            tracing::warn!(group = self.config.group, %error, "auto-commit failed; retrying at the next interval");
        }
    }

    pub(super) async fn commit(&mut self) -> Result<()> {
        self.check_subscribed()?;
        self.settles.finish_retries();
        let due = self.book.returned_uncommitted();
        self.commit_now(due).await
    }

    pub(super) async fn commit_offsets(&mut self, offsets: &BTreeMap<TopicPartition, u64>) -> Result<()> {
        self.check_subscribed()?;
        if let Some(tp) = offsets.keys().find(|tp| !self.fetcher.contains(tp)) {
            return Err(Error::InvalidArgument(format!(
                "{tp} is not assigned to this member; a member commits only the partitions it owns"
            )));
        }
        self.commit_now(offsets.iter().map(|(tp, &o)| (tp.clone(), o)).collect()).await
    }

    /// Commits `offsets` under the member's current epoch. A refusal because the epoch moved
    /// on while the commit was under way is retried once with the new epoch.
    /// The batched settles are sent first: a position never passes a message whose nack or
    /// reject the coordinator has not stored.
    pub(super) async fn commit_now(&mut self, offsets: Vec<(TopicPartition, u64)>) -> Result<()> {
        self.flush_settles().await?;
        if offsets.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + self.client.config().operation_timeout;
        let entries: Vec<v1::OffsetToCommit> = offsets
            .iter()
            .map(|(tp, offset)| v1::OffsetToCommit {
                topic: tp.topic().to_owned(),
                partition: tp.partition(),
                offset: *offset,
                metadata: String::new(),
            })
            .collect();
        let mut retried = false;
        loop {
            let (member_id, epoch) = {
                let state = self.membership.lock();
                (state.member_id.clone(), state.epoch)
            };
            if epoch <= 0 {
                let message =
                    format!("this consumer is not a member of group {} now: it is (re)joining", self.config.group);
                return Err(Error::broker(ErrorCode::UnknownMemberId, message));
            }
            let request = v1::CommitOffsetsRequest {
                group: self.config.group.clone(),
                member_id,
                member_epoch: epoch,
                offsets: entries.clone(),
            };
            let result = self
                .coordinator
                .call("CommitOffsets", deadline, |mut rpc| {
                    let request = request.clone();
                    async move { rpc.commit_offsets(request).await }
                })
                .await;
            match result {
                Ok(_) => {
                    self.book.committed(&offsets);
                    return Ok(());
                }
                Err(e) if e.code() == Some(ErrorCode::FencedMemberEpoch) && !retried => {
                    if self.membership.lock().epoch == epoch {
                        return Err(e);
                    }
                    retried = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts the partitions without a position at the group's committed offsets, or at
    /// `auto_offset_reset` where nothing is committed.
    pub(super) async fn resolve_positions(&mut self) -> Result<()> {
        let unresolved = self.fetcher.unresolved();
        if unresolved.is_empty() {
            return Ok(());
        }
        let committed = self.fetch_committed(&unresolved).await?;
        let (reset, isolation) = (self.config.auto_offset_reset.seek_to(), self.config.isolation);
        let client = &self.client;
        let starts = join_all(unresolved.iter().map(|tp| {
            let committed = committed.get(tp).copied().flatten();
            async move {
                match committed {
                    Some(offset) => Ok((offset, Some(offset))),
                    None => client.list_offset(tp.topic(), tp.partition(), reset, isolation).await.map(|o| (o, None)),
                }
            }
        }))
        .await;
        for (tp, start) in unresolved.into_iter().zip(starts) {
            let (offset, committed) = start?;
            if self.fetcher.position(&tp).is_none() && self.fetcher.seek(&tp, offset) {
                self.book.start(tp, offset, committed);
            }
        }
        Ok(())
    }

    /// The group's committed offsets of `partitions` (`None`: nothing committed).
    pub(super) async fn fetch_committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<u64>>> {
        let request = v1::FetchOffsetsRequest {
            group: self.config.group.clone(),
            partitions: to_proto(partitions),
            // A broadcast member resumes from its own instance's offsets.
            instance_id: self.config.instance_id.clone().filter(|_| self.config.broadcast),
        };
        let deadline = Instant::now() + self.client.config().operation_timeout;
        let answer = self
            .coordinator
            .call("FetchOffsets", deadline, |mut rpc| {
                let request = request.clone();
                async move { rpc.fetch_offsets(request).await }
            })
            .await?;
        Ok(answer.offsets.into_iter().map(|c| (TopicPartition::new(c.topic, c.partition), c.offset)).collect())
    }

    /// Moves a partition whose position fell outside its log to `auto_offset_reset`.
    pub(super) async fn reset_position(&mut self, tp: &TopicPartition) -> Result<()> {
        let reset = self.config.auto_offset_reset.seek_to();
        let offset = self.client.list_offset(tp.topic(), tp.partition(), reset, self.config.isolation).await?;
        if self.fetcher.seek(tp, offset) {
            self.book.returned(tp, offset);
        }
        Ok(())
    }

    pub(super) async fn seek(&mut self, tp: &TopicPartition, to: SeekTo) -> Result<u64> {
        if !self.fetcher.contains(tp) {
            return Err(Error::InvalidArgument(format!("{tp} is not assigned to this member")));
        }
        let offset = self.client.list_offset(tp.topic(), tp.partition(), to, self.config.isolation).await?;
        let started = self.fetcher.position(tp).is_some();
        self.fetcher.seek(tp, offset);
        if started {
            self.book.returned(tp, offset);
        } else {
            self.book.start(tp.clone(), offset, None);
        }
        Ok(offset)
    }

    /// Stops the heartbeat task after it has sent the leave (bounded: the coordinator removes
    /// a silent member after its session timeout anyway).
    pub(super) async fn leave(&mut self) {
        self.membership.lock().leaving = true;
        self.membership.wake.notify_one();
        let Some(task) = self.heartbeat.take() else { return };
        let abort = task.abort_handle();
        // A heartbeat in flight, then the leave: two requests at most.
        let limit = 2 * self.client.config().request_timeout + Duration::from_secs(1);
        if tokio::time::timeout(limit, task).await.is_err() {
            abort.abort();
        }
    }
}
