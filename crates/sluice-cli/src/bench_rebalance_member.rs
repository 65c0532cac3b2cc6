//! The moving parts of `sluice bench rebalance`: group members that report when each newly
//! assigned partition delivers its first message, and the background producer that keeps
//! every partition supplied with messages.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use sluice_client::{Client, ConsumedRecord, GroupConsumer, GroupConsumerConfig, ProducerConfig, ProducerRecord};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long one `poll` waits for messages.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// After a failed poll, the pause before the next (the error is usually a leader moving).
const POLL_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// The longest a member runs: a bound on its loop should the benchmark lose track of it.
const MEMBER_LIFETIME: Duration = Duration::from_secs(600);
/// How often the background producer offers the messages that are due.
const FEED_TICK: Duration = Duration::from_millis(5);
/// Unacknowledged messages at which the producer skips what is due rather than queue more.
const FEED_MAX_PENDING: usize = 10_000;
/// How long the producer waits for its last acknowledgements when stopped.
const FEED_DRAIN: Duration = Duration::from_secs(10);
/// Bytes of each background message.
static PAYLOAD: [u8; 100] = [b'x'; 100];

/// A partition newly assigned to `member` delivered its first message at `at`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Event {
    pub member: usize,
    pub partition: u32,
    pub at: Instant,
}

/// What a member owns now, and which of those partitions have delivered a message since it
/// was given them.
#[derive(Debug, Default, Clone)]
pub(crate) struct View {
    pub owned: BTreeSet<u32>,
    pub delivering: BTreeSet<u32>,
    pub last_error: Option<String>,
}

/// A running member: its task polls until told to close (then it leaves the group) or until
/// it is aborted (then it stops heartbeating without leaving, as a crashed process does).
pub(crate) struct Member {
    pub index: usize,
    view: Arc<Mutex<View>>,
    close: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<()>>>,
}

impl Member {
    /// Joins `group` (returning once the coordinator has accepted the member) and starts
    /// polling, reporting to `events`.
    pub(crate) async fn start(
        client: &Client,
        topic: &str,
        group: &str,
        session_timeout: Duration,
        index: usize,
        events: mpsc::UnboundedSender<Event>,
    ) -> Result<Member> {
        let config = GroupConsumerConfig { session_timeout, ..GroupConsumerConfig::new(group) };
        let mut consumer = client.group_consumer(config)?;
        consumer.subscribe(&[topic]).await.with_context(|| format!("member {index} cannot join group {group}"))?;
        let view = Arc::new(Mutex::new(View::default()));
        let (close, closed) = oneshot::channel();
        let task = tokio::spawn(poll_loop(consumer, index, Arc::clone(&view), events, closed));
        Ok(Member { index, view, close: Some(close), task: Some(task) })
    }

    /// A copy of what the member owns and delivers now.
    pub(crate) fn view(&self) -> View {
        lock(&self.view).clone()
    }

    /// Tells the member to leave the group; [`Member::finish`] waits for it.
    pub(crate) fn leave(&mut self) {
        if let Some(close) = self.close.take() {
            // A member whose task already ended has nothing to leave.
            let _ = close.send(());
        }
    }

    /// Stops the member as a crash would: its consumer is dropped without leaving.
    pub(crate) fn crash(&mut self) {
        self.close = None;
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Leaves the group (unless crashed) and waits for the member's task, for at most `limit`.
    pub(crate) async fn finish(mut self, limit: Duration) -> Result<()> {
        self.leave();
        let Some(task) = self.task.take() else { return Ok(()) };
        let abort = task.abort_handle();
        match tokio::time::timeout(limit, task).await {
            Ok(joined) => joined.context("a member's task panicked")?,
            Err(_) => {
                abort.abort();
                anyhow::bail!("member {} did not leave within {limit:?}", self.index)
            }
        }
    }
}

fn lock(view: &Mutex<View>) -> MutexGuard<'_, View> {
    view.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Polls until told to close, then leaves the group. Reports the first message of each
/// partition after it was assigned, stamped when `poll` returned it.
async fn poll_loop(
    mut consumer: GroupConsumer,
    index: usize,
    view: Arc<Mutex<View>>,
    events: mpsc::UnboundedSender<Event>,
    mut closed: oneshot::Receiver<()>,
) -> Result<()> {
    let deadline = Instant::now() + MEMBER_LIFETIME;
    while Instant::now() < deadline {
        let polled = tokio::select! {
            polled = consumer.poll(POLL_WAIT) => polled,
            _ = &mut closed => break,
        };
        let at = Instant::now();
        let owned: BTreeSet<u32> = consumer.assignment().iter().map(|tp| tp.partition()).collect();
        let failed = note(&view, owned, polled, |partition| {
            // The receiver is gone only when the benchmark stopped measuring.
            let _ = events.send(Event { member: index, partition, at });
        });
        if failed {
            tokio::time::sleep(POLL_ERROR_PAUSE).await;
        }
    }
    consumer.close().await.with_context(|| format!("member {index} leaving"))
}

/// Updates `view` with a poll's outcome, calling `first` for each owned partition that
/// delivered for the first time since it was assigned. Returns whether the poll failed.
fn note(
    view: &Mutex<View>,
    owned: BTreeSet<u32>,
    polled: sluice_client::Result<Vec<ConsumedRecord>>,
    mut first: impl FnMut(u32),
) -> bool {
    let mut view = lock(view);
    view.delivering.retain(|p| owned.contains(p));
    let failed = match polled {
        Ok(records) => {
            for partition in records.iter().map(ConsumedRecord::partition) {
                if owned.contains(&partition) && view.delivering.insert(partition) {
                    first(partition);
                }
            }
            false
        }
        Err(e) => {
            view.last_error = Some(e.to_string());
            true
        }
    };
    view.owned = owned;
    failed
}

/// What the background producer did.
#[derive(Debug, Default)]
pub(crate) struct FeedOutcome {
    pub acknowledged: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Messages that were due while too many were unacknowledged, and were not sent.
    pub skipped: u64,
}

/// Sets its flag when dropped: stops the background producer however the benchmark ends.
pub(crate) struct StopOnDrop(pub Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Writes `rate` messages per second to `topic`'s partitions in turn until `stop`.
pub(crate) async fn feed(
    client: Client,
    topic: Arc<str>,
    partitions: u32,
    rate: u32,
    stop: Arc<AtomicBool>,
) -> Result<FeedOutcome> {
    let producer = client.producer(ProducerConfig::default()).await?;
    let payload = Bytes::from_static(&PAYLOAD);
    let mut tick = tokio::time::interval(FEED_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let start = Instant::now();
    let (mut out, mut due_done) = (FeedOutcome::default(), 0u64);
    let mut pending = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            Some(result) = pending.next(), if !pending.is_empty() => out.count(result),
            _ = tick.tick() => {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let due = (start.elapsed().as_secs_f64() * f64::from(rate)) as u64;
                while due_done < due {
                    if pending.len() >= FEED_MAX_PENDING {
                        out.skipped += due - due_done;
                        due_done = due;
                        break;
                    }
                    let partition = u32::try_from(due_done % u64::from(partitions))?;
                    let record = ProducerRecord::new(Arc::clone(&topic), payload.clone()).partition(partition);
                    pending.push(producer.enqueue(record).await?.wait());
                    due_done += 1;
                }
            }
        }
    }
    let drained = tokio::time::timeout(FEED_DRAIN, async {
        while let Some(result) = pending.next().await {
            out.count(result);
        }
    });
    if drained.await.is_err() {
        out.errors += pending.len() as u64;
        out.first_error
            .get_or_insert_with(|| format!("{} messages unacknowledged after {FEED_DRAIN:?}", pending.len()));
    }
    producer.close().await;
    Ok(out)
}

impl FeedOutcome {
    fn count(&mut self, result: sluice_client::Result<sluice_client::RecordMetadata>) {
        match result {
            Ok(_) => self.acknowledged += 1,
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
}
