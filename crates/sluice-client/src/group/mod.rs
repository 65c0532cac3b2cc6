//! Consumer groups, the member's side (docs/adr/0005-consumer-groups.md): [`GroupConsumer`]
//! shares the partitions of the topics it subscribes to with the other members of its group,
//! and commits how far it got, so that whoever reads a partition next starts there.
//!
//! The brokers assign partitions (KIP-848); a member only says what it subscribes to and what
//! it owns. A background task heartbeats to the group's coordinator (`membership.rs`); `poll`
//! applies assignment changes between two batches of records: it commits and gives up
//! revoked partitions (running [`RebalanceListener::on_revoked`] first), and starts new ones
//! at their committed offsets. Offsets are only ever committed for records the application
//! has finished with (`book.rs`).

pub(crate) mod admin;
mod book;
pub(crate) mod coordinator;
mod inner;
mod listener;
mod membership;
mod retrying;
mod settles;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_common::TopicName;

pub use self::admin::{GroupDescription, GroupListing, GroupMemberDescription, PartitionLag};
use self::book::OffsetBook;
use self::coordinator::Coordinator;
use self::inner::{Core, reconcile};
pub use self::listener::{NoRebalanceListener, RebalanceListener};
use self::membership::Membership;
use self::settles::SettleBook;
use crate::client::Client;
use crate::config::{GroupConsumerConfig, SeekTo};
use crate::error::{Error, Result};
use crate::fetcher::Fetcher;
use crate::record::ConsumedRecord;
use crate::retries::SettleOutcome;
use crate::topic_partition::TopicPartition;

/// A member of a consumer group: reads the partitions the group's coordinator assigns it,
/// from the group's committed offsets, and commits its progress.
///
/// Make one with [`Client::group_consumer`], [`subscribe`](GroupConsumer::subscribe) it to
/// topics, then [`poll`](GroupConsumer::poll) in a loop. With auto-commit on (the default), a
/// record counts as processed once `poll` is called again, and positions are committed every
/// `auto_commit_interval`, before partitions are given up, and on
/// [`close`](GroupConsumer::close): after a crash, the records being processed and those
/// processed since the last commit are delivered again (at least once), nothing is skipped.
///
/// Always `close` a consumer: dropping it stops its heartbeats without leaving, and the
/// group waits for the session timeout before its partitions move (as after a crash).
///
/// ```no_run
/// # async fn example(client: sluice_client::Client) -> sluice_client::Result<()> {
/// use std::time::Duration;
/// use sluice_client::{GroupConsumerConfig, OffsetReset};
///
/// let config =
///     GroupConsumerConfig { auto_offset_reset: OffsetReset::Earliest, ..GroupConsumerConfig::new("billing") };
/// let mut consumer = client.group_consumer(config)?;
/// consumer.subscribe(&["orders"]).await?;
/// for _ in 0..100 {
///     for record in consumer.poll(Duration::from_secs(1)).await? {
///         println!("{}/{} {:?}", record.topic(), record.partition(), record.value());
///     }
/// }
/// consumer.close().await?; // commits, then leaves the group
/// # Ok(()) }
/// ```
pub struct GroupConsumer<L: RebalanceListener = NoRebalanceListener> {
    core: Core,
    listener: L,
}

impl<L: RebalanceListener> std::fmt::Debug for GroupConsumer<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (member_id, epoch) = {
            let state = self.core.membership.lock();
            (state.member_id.clone(), state.epoch)
        };
        f.debug_struct("GroupConsumer")
            .field("group", &self.core.config.group)
            .field("member_id", &member_id)
            .field("member_epoch", &epoch)
            .field("assignment", &self.core.assignment())
            .finish_non_exhaustive()
    }
}

/// What a [`RebalanceListener`] callback can do with the consumer while it runs: commit,
/// seek, and look at positions and the assignment.
///
/// ```no_run
/// # async fn example(group: &mut sluice_client::GroupContext<'_>) -> sluice_client::Result<()> {
/// for tp in group.assignment() {
///     println!("{tp} at {:?}", group.position(&tp));
/// }
/// group.commit().await?;
/// # Ok(()) }
/// ```
pub struct GroupContext<'a> {
    core: &'a mut Core,
}

impl Client {
    /// A consumer that will join `config.group` when it subscribes to topics. Fails only on
    /// invalid settings; nothing is sent until [`GroupConsumer::subscribe`].
    ///
    /// ```no_run
    /// # async fn example(client: sluice_client::Client) -> sluice_client::Result<()> {
    /// use sluice_client::GroupConsumerConfig;
    /// let mut consumer = client.group_consumer(GroupConsumerConfig::new("billing"))?;
    /// consumer.subscribe(&["orders", "refunds"]).await?;
    /// # Ok(()) }
    /// ```
    pub fn group_consumer(&self, config: GroupConsumerConfig) -> Result<GroupConsumer> {
        config.validate()?;
        let coordinator = Arc::new(Coordinator::new(self.clone(), &config.group));
        let core = Core {
            client: self.clone(),
            membership: Arc::new(Membership::new(config.instance_id.clone())),
            fetcher: Fetcher::new(self.clone(), config.fetch_max_bytes, config.fetch_max_wait)
                .with_filter(config.filter.clone().unwrap_or_default(), config.group.clone())
                .with_isolation(config.isolation),
            book: OffsetBook::default(),
            settles: SettleBook::new(config.key_ordered),
            next_retry_poll: Instant::now(),
            retry_polled_version: 0,
            applied_incarnation: 0,
            applied_version: 0,
            next_auto_commit: Instant::now() + config.auto_commit_interval,
            heartbeat: None,
            coordinator,
            config,
        };
        Ok(GroupConsumer { core, listener: NoRebalanceListener })
    }
}

impl<L: RebalanceListener> GroupConsumer<L> {
    /// The same consumer, calling `listener` when its partitions change.
    ///
    /// ```no_run
    /// # async fn example(client: sluice_client::Client) -> sluice_client::Result<()> {
    /// use sluice_client::{GroupConsumerConfig, GroupContext, RebalanceListener, TopicPartition};
    /// struct Log;
    /// impl RebalanceListener for Log {
    ///     async fn on_assigned(&mut self, _: &mut GroupContext<'_>, assigned: &[TopicPartition]) {
    ///         println!("assigned {assigned:?}");
    ///     }
    /// }
    /// let mut consumer = client.group_consumer(GroupConsumerConfig::new("billing"))?.with_listener(Log);
    /// consumer.subscribe(&["orders"]).await?;
    /// # Ok(()) }
    /// ```
    pub fn with_listener<M: RebalanceListener>(self, listener: M) -> GroupConsumer<M> {
        GroupConsumer { core: self.core, listener }
    }

    /// Subscribes to `topics` (replacing any earlier subscription): joins the group on the
    /// first call, and waits until the coordinator has accepted the member. The partitions
    /// arrive with the following polls.
    ///
    /// Fails if a topic name is invalid, if the coordinator refuses the member (an invalid
    /// group id, an instance id another live member uses), or if no coordinator answered
    /// within `ClientConfig::operation_timeout` (the member keeps trying in the background).
    ///
    /// ```no_run
    /// # async fn example(mut consumer: sluice_client::GroupConsumer) -> sluice_client::Result<()> {
    /// consumer.subscribe(&["orders"]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn subscribe<S: AsRef<str>>(&mut self, topics: &[S]) -> Result<()> {
        let mut names = Vec::with_capacity(topics.len());
        for topic in topics {
            let name = TopicName::new(topic.as_ref()).map_err(|e| Error::InvalidArgument(e.to_string()))?;
            names.push(name.as_str().to_owned());
        }
        if names.is_empty() {
            return Err(Error::InvalidArgument("subscribe to at least one topic".into()));
        }
        names.sort();
        names.dedup();
        self.core.membership.lock().topics = names;
        match &self.core.heartbeat {
            Some(_) => self.core.membership.wake.notify_one(),
            None => {
                let (membership, coordinator) = (Arc::clone(&self.core.membership), Arc::clone(&self.core.coordinator));
                let task = membership::run(membership, coordinator, self.core.config.clone());
                self.core.heartbeat = Some(tokio::spawn(task));
                self.core.wait_joined().await?;
                return self.join_retry_policy().await;
            }
        }
        self.core.wait_joined().await
    }

    /// On joining: agrees on the group's retry policy, or leaves again if the group has
    /// another (the next `subscribe` joins anew).
    async fn join_retry_policy(&mut self) -> Result<()> {
        let agreed = self.core.agree_retry_policy().await;
        if agreed.is_err() {
            self.core.leave().await;
        }
        agreed
    }

    /// Returns the records that arrive within `max_wait` from the partitions this member
    /// owns: as soon as any has some, or empty when none does in time. Records of a
    /// partition come in offset order.
    ///
    /// Calling `poll` tells the consumer the records of the previous call are processed (with
    /// auto-commit they become due for commit). Assignment changes are applied here, running
    /// the listener's callbacks; this may take longer than `max_wait` while partitions are
    /// being committed or their committed offsets read. A partition whose position is outside
    /// what it holds restarts at `auto_offset_reset`.
    ///
    /// Due retries of the owned partitions come first, each with its
    /// [`attempt`](ConsumedRecord::attempt), so records of a partition may arrive out of
    /// offset order. In a key-ordered group a record whose key waits behind a failing message
    /// is parked (delivered later as a retry, after it) instead of returned.
    ///
    /// Fails if the coordinator refused the member for good (the error says why; the member
    /// keeps trying), or with a fetch error (the partition is retried on the next call).
    ///
    /// Cancelling a poll (in a `select!`) loses nothing: an assignment change it was applying
    /// is applied by the next poll (whose callbacks may then run again for it).
    ///
    /// ```no_run
    /// # async fn example(mut consumer: sluice_client::GroupConsumer) -> sluice_client::Result<()> {
    /// use std::time::Duration;
    /// loop {
    ///     for record in consumer.poll(Duration::from_millis(500)).await? {
    ///         println!("{} {}", record.offset(), String::from_utf8_lossy(record.value()));
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn poll(&mut self, max_wait: Duration) -> Result<Vec<ConsumedRecord>> {
        let core = &mut self.core;
        core.check_subscribed()?;
        let deadline = Instant::now() + max_wait;
        core.book.finish_all();
        core.settles.finish_retries();
        core.auto_commit_if_due().await;
        loop {
            if let Some(error) = core.membership.lock().error.take() {
                return Err(error);
            }
            reconcile(core, &mut self.listener).await;
            core.resolve_positions().await?;
            if core.retry_poll_due() {
                let retries = core.poll_due_retries().await;
                match retries {
                    Ok(retries) if !retries.is_empty() => return Ok(retries),
                    Ok(_) => {}
                    // A key-ordered member must know the blocked keys before it fetches.
                    Err(error) if core.settles.key_ordered() => return Err(error),
                    Err(error) => tracing::warn!(group = core.config.group, %error, "polling due retries failed"),
                }
            }
            let until = deadline.min(core.next_retry_poll);
            let records = match core.fetcher.fetch(until, Some(&core.membership.changed)).await {
                Ok(records) => records,
                Err(Error::OffsetOutOfRange { topic, partition, offset, log_start_offset, high_watermark }) => {
                    let tp = TopicPartition::new(topic, partition);
                    tracing::warn!(%tp, offset, log_start_offset, high_watermark, "position out of range; resetting");
                    core.reset_position(&tp).await?;
                    Vec::new()
                }
                Err(error) => return Err(error),
            };
            let records = core.admit(records);
            core.note_returned();
            core.report_skipped();
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok(records);
            }
        }
    }

    /// Acknowledges a record `poll` returned: processed. Needed only for a retry (a record
    /// whose [`attempt`](ConsumedRecord::attempt) is above 1), and implied for every record
    /// left unsettled when `poll` is called again or positions are committed.
    ///
    /// ```no_run
    /// # async fn example(mut consumer: sluice_client::GroupConsumer) -> sluice_client::Result<()> {
    /// for record in consumer.poll(std::time::Duration::from_secs(1)).await? {
    ///     consumer.ack(&record)?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn ack(&mut self, record: &ConsumedRecord) -> Result<()> {
        self.core.settle(record, SettleOutcome::Ack, String::new())
    }

    /// Negatively acknowledges a record: it is delivered again (to a member of the group,
    /// with the next attempt number) after `delay`, or the group's backoff for this attempt
    /// if `None`; after its last attempt it goes to the dead-letter queue `<group>.dlq`. The
    /// nack is sent with the next batch of settles, before any commit past the record; the
    /// partition keeps flowing meanwhile (in a key-ordered group, the record's key waits).
    ///
    /// ```no_run
    /// # async fn example(mut consumer: sluice_client::GroupConsumer) -> sluice_client::Result<()> {
    /// for record in consumer.poll(std::time::Duration::from_secs(1)).await? {
    ///     consumer.nack(&record, Some(std::time::Duration::from_secs(30)))?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn nack(&mut self, record: &ConsumedRecord, delay: Option<Duration>) -> Result<()> {
        self.nack_because(record, delay, String::new())
    }

    /// Like [`nack`](GroupConsumer::nack), recording why (at most 256 bytes are kept; the
    /// dead-letter entry shows the last reason).
    ///
    /// ```no_run
    /// # fn example(consumer: &mut sluice_client::GroupConsumer, record: &sluice_client::ConsumedRecord) -> sluice_client::Result<()> {
    /// consumer.nack_because(record, None, "database unavailable")?;
    /// # Ok(()) }
    /// ```
    pub fn nack_because(
        &mut self,
        record: &ConsumedRecord,
        delay: Option<Duration>,
        reason: impl Into<String>,
    ) -> Result<()> {
        self.core.settle(record, SettleOutcome::Nack { delay }, reason.into())
    }

    /// Sends a record straight to the group's dead-letter queue, with `reason`.
    ///
    /// ```no_run
    /// # fn example(consumer: &mut sluice_client::GroupConsumer, record: &sluice_client::ConsumedRecord) -> sluice_client::Result<()> {
    /// consumer.reject(record, "not valid JSON")?;
    /// # Ok(()) }
    /// ```
    pub fn reject(&mut self, record: &ConsumedRecord, reason: impl Into<String>) -> Result<()> {
        self.core.settle(record, SettleOutcome::Reject, reason.into())
    }

    /// Sends the acks, nacks and rejects noted so far to the group's coordinator now, instead
    /// of with the next commit or retry poll.
    ///
    /// ```no_run
    /// # async fn example(mut consumer: sluice_client::GroupConsumer) -> sluice_client::Result<()> {
    /// consumer.flush_settles().await?;
    /// # Ok(()) }
    /// ```
    pub async fn flush_settles(&mut self) -> Result<()> {
        self.core.flush_settles().await
    }

    /// Commits the position after the last record `poll` returned, for every partition
    /// this member owns: call it once those records are processed. Waits until the
    /// coordinator has stored (replicated) the offsets.
    ///
    /// Fails with [`UnknownMemberId`](crate::ErrorCode::UnknownMemberId) or
    /// [`FencedMemberEpoch`](crate::ErrorCode::FencedMemberEpoch) if the member lost its
    /// partitions meanwhile (another member may be reading them now).
    ///
    /// ```no_run
    /// # async fn example(mut consumer: sluice_client::GroupConsumer) -> sluice_client::Result<()> {
    /// # fn process(_: &sluice_client::ConsumedRecord) {}
    /// use std::time::Duration;
    /// let records = consumer.poll(Duration::from_secs(1)).await?;
    /// records.iter().for_each(process);
    /// consumer.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn commit(&mut self) -> Result<()> {
        self.core.commit().await
    }

    /// Commits these offsets (each the *next* offset to read) for partitions this member
    /// owns. See [`GroupConsumer::commit`]. A retry (a record whose `attempt()` is above 1) is
    /// behind its partition's position: committing after it would move the position back.
    ///
    /// ```no_run
    /// # use sluice_client::{ConsumedRecord, GroupConsumer};
    /// # async fn example(mut consumer: GroupConsumer, record: ConsumedRecord) -> sluice_client::Result<()> {
    /// use std::collections::BTreeMap;
    /// use sluice_client::TopicPartition;
    /// let done = TopicPartition::new(record.topic(), record.partition());
    /// consumer.commit_offsets(&BTreeMap::from([(done, record.offset() + 1)])).await?;
    /// # Ok(()) }
    /// ```
    pub async fn commit_offsets(&mut self, offsets: &BTreeMap<TopicPartition, u64>) -> Result<()> {
        self.core.commit_offsets(offsets).await
    }

    /// Moves an owned partition to `to`; the next `poll` reads from there. Returns the offset.
    ///
    /// ```no_run
    /// # async fn example(mut consumer: sluice_client::GroupConsumer) -> sluice_client::Result<()> {
    /// use sluice_client::{SeekTo, TopicPartition};
    /// consumer.seek(&TopicPartition::new("orders", 0), SeekTo::Earliest).await?;
    /// # Ok(()) }
    /// ```
    pub async fn seek(&mut self, tp: &TopicPartition, to: SeekTo) -> Result<u64> {
        self.core.seek(tp, to).await
    }

    /// The partitions this member owns now, in order.
    ///
    /// ```no_run
    /// # fn example(consumer: &sluice_client::GroupConsumer) {
    /// println!("reading {:?}", consumer.assignment());
    /// # }
    /// ```
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.core.assignment()
    }

    /// The next offset `poll` returns from `tp`, once known (after its committed offset was read).
    ///
    /// ```no_run
    /// # fn example(consumer: &sluice_client::GroupConsumer) {
    /// let tp = sluice_client::TopicPartition::new("orders", 0);
    /// println!("{tp} at {:?}", consumer.position(&tp));
    /// # }
    /// ```
    pub fn position(&self, tp: &TopicPartition) -> Option<u64> {
        self.core.fetcher.position(tp)
    }

    /// The group's committed offset of an owned partition, as this member last read or
    /// committed it.
    ///
    /// ```no_run
    /// # fn example(consumer: &sluice_client::GroupConsumer) {
    /// println!("{:?}", consumer.committed(&sluice_client::TopicPartition::new("orders", 0)));
    /// # }
    /// ```
    pub fn committed(&self, tp: &TopicPartition) -> Option<u64> {
        self.core.book.committed_offset(tp)
    }

    /// The group's id.
    ///
    /// ```no_run
    /// # fn example(consumer: &sluice_client::GroupConsumer) {
    /// assert_eq!(consumer.group(), "billing");
    /// # }
    /// ```
    pub fn group(&self) -> &str {
        &self.core.config.group
    }

    /// This member's id in the group (a random UUID, or the one the coordinator gave it).
    ///
    /// ```no_run
    /// # fn example(consumer: &sluice_client::GroupConsumer) {
    /// println!("member {} at epoch {}", consumer.member_id(), consumer.member_epoch());
    /// # }
    /// ```
    pub fn member_id(&self) -> String {
        self.core.membership.lock().member_id.clone()
    }

    /// This member's epoch: 0 until it has joined (and while it rejoins).
    ///
    /// ```no_run
    /// # fn example(consumer: &sluice_client::GroupConsumer) {
    /// let joined = consumer.member_epoch() > 0;
    /// # }
    /// ```
    pub fn member_epoch(&self) -> i32 {
        self.core.membership.lock().epoch
    }

    /// Commits (with auto-commit on) what `poll` returned, runs
    /// [`RebalanceListener::on_revoked`] for every owned partition, and leaves the group: a
    /// dynamic member's partitions move to the others at once; a static member's wait for
    /// its return for the session timeout. Returns the commit's error, if any (the member
    /// leaves regardless).
    ///
    /// ```no_run
    /// # async fn example(consumer: sluice_client::GroupConsumer) -> sluice_client::Result<()> {
    /// consumer.close().await?;
    /// # Ok(()) }
    /// ```
    pub async fn close(self) -> Result<()> {
        let GroupConsumer { mut core, mut listener } = self;
        if core.heartbeat.is_none() {
            return Ok(());
        }
        // Without auto-commit the positions are the application's to commit, but its nacks and
        // rejects must still reach the coordinator.
        let committed = if core.config.auto_commit { core.commit().await } else { core.flush_settles().await };
        let owned = core.assignment();
        if !owned.is_empty() {
            listener.on_revoked(&mut GroupContext { core: &mut core }, &owned).await;
        }
        core.fetcher.clear();
        core.leave().await;
        committed
    }
}

impl GroupContext<'_> {
    /// Like [`GroupConsumer::commit`].
    ///
    /// ```no_run
    /// # async fn example(group: &mut sluice_client::GroupContext<'_>) -> sluice_client::Result<()> {
    /// group.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn commit(&mut self) -> Result<()> {
        self.core.commit().await
    }

    /// Like [`GroupConsumer::commit_offsets`].
    ///
    /// ```no_run
    /// # async fn example(group: &mut sluice_client::GroupContext<'_>) -> sluice_client::Result<()> {
    /// use std::collections::BTreeMap;
    /// group.commit_offsets(&BTreeMap::from([(sluice_client::TopicPartition::new("orders", 0), 42)])).await?;
    /// # Ok(()) }
    /// ```
    pub async fn commit_offsets(&mut self, offsets: &BTreeMap<TopicPartition, u64>) -> Result<()> {
        self.core.commit_offsets(offsets).await
    }

    /// Like [`GroupConsumer::seek`]; in `on_assigned`, it replaces the committed offset as
    /// the partition's start.
    ///
    /// ```no_run
    /// # async fn example(group: &mut sluice_client::GroupContext<'_>) -> sluice_client::Result<()> {
    /// use sluice_client::{SeekTo, TopicPartition};
    /// group.seek(&TopicPartition::new("orders", 0), SeekTo::Offset(1_000)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn seek(&mut self, tp: &TopicPartition, to: SeekTo) -> Result<u64> {
        self.core.seek(tp, to).await
    }

    /// Like [`GroupConsumer::assignment`] (revoked partitions are still in it during
    /// `on_revoked`).
    ///
    /// ```no_run
    /// # fn example(group: &sluice_client::GroupContext<'_>) {
    /// println!("{:?}", group.assignment());
    /// # }
    /// ```
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.core.assignment()
    }

    /// Like [`GroupConsumer::position`].
    ///
    /// ```no_run
    /// # fn example(group: &sluice_client::GroupContext<'_>) {
    /// println!("{:?}", group.position(&sluice_client::TopicPartition::new("orders", 0)));
    /// # }
    /// ```
    pub fn position(&self, tp: &TopicPartition) -> Option<u64> {
        self.core.fetcher.position(tp)
    }

    /// Like [`GroupConsumer::member_id`].
    ///
    /// ```no_run
    /// # fn example(group: &sluice_client::GroupContext<'_>) {
    /// println!("{}", group.member_id());
    /// # }
    /// ```
    pub fn member_id(&self) -> String {
        self.core.membership.lock().member_id.clone()
    }
}
