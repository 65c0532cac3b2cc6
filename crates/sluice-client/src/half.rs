//! [`HalfProducer`]: RocketMQ's transactional messages ("half messages") on Sluice's
//! transactions (docs/TRANSACTIONS.md).
//!
//! [`HalfProducer::send_half`] writes records (to any partitions) in a transaction no consumer
//! sees; the application runs its local transaction and then commits or rolls the half message
//! back. If it never says — it crashed, or lost the answer — the transaction's coordinator asks
//! a connected member of the producer group, through its [`TransactionChecker`], once the
//! transaction is past its check time, and again after a back-off while the answer is
//! "unknown". A check-back needs some member of the group to be running: until one is, the
//! transaction waits (holding back `read_committed` readers of its partitions). After the
//! brokers' `max_check_attempts` it is left *undecided* for an operator (`sluice txn list
//! --undecided`, then `sluice txn commit|abort ID`), never dropped.
//!
//! Each half message is a transaction of its own transactional id, `{group}-{instance}-{n}`:
//! the producer keeps up to `concurrency` of them, reused one after another. An instance never
//! reuses the id of a half message it did not end, so a restarted producer never fences (and so
//! aborts) what its predecessor left for the check-back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_proto::v1::check_back_message::Kind;
use sluice_proto::v1::{self, CheckBackHello, CheckBackMessage, CheckOutcome};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::record::ProducerRecord;
use crate::transaction::{TransactionalConfig, TransactionalProducer};

/// How often the producer looks for brokers it has no check-back stream to.
const RECONNECT_INTERVAL: Duration = Duration::from_secs(1);

/// A check-back: which half transaction the coordinator asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HalfCheck {
    /// The half message's transactional id ([`HalfMessage::transactional_id`]).
    pub transactional_id: String,
    /// Its partitions, as `(topic, partition)`.
    pub partitions: Vec<(String, u32)>,
    /// When it began, ms since the Unix epoch.
    pub started_ms: u64,
    /// 1 for the first check-back.
    pub attempt: u32,
}

/// What a [`TransactionChecker`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckAnswer {
    /// The local transaction committed: commit the half message.
    Commit,
    /// It rolled back: roll the half message back.
    Rollback,
    /// Not known yet: ask again later.
    Unknown,
}

/// Answers check-backs for a producer group: looks up, in the application's own records, how
/// the local transaction of a half message ended. Runs on a blocking thread.
pub trait TransactionChecker: Send + Sync + 'static {
    /// The outcome of `half`'s local transaction.
    fn check(&self, half: &HalfCheck) -> CheckAnswer;
}

/// Settings of a [`HalfProducer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HalfConfig {
    /// The producer group: every member can answer for the group's half messages.
    pub producer_group: String,
    /// A half message neither committed nor rolled back this long after it was sent is checked
    /// back. Default: 6 s (RocketMQ's `transactionTimeout`).
    pub check_after: Duration,
    /// Half messages this producer may have open at once. Default: 16.
    pub concurrency: usize,
}

impl HalfConfig {
    /// Defaults, for producer group `group`.
    pub fn new(group: impl Into<String>) -> HalfConfig {
        HalfConfig { producer_group: group.into(), check_after: Duration::from_secs(6), concurrency: 16 }
    }
}

struct Shared {
    client: Client,
    config: HalfConfig,
    /// This instance's name: part of its transactional ids.
    instance: String,
    /// Transactional producers ready for the next half message.
    idle: Mutex<Vec<TransactionalProducer>>,
    next_id: AtomicU64,
    permits: Arc<Semaphore>,
    /// Turns true when the producer is dropped: the check-back streams end.
    stop: watch::Sender<bool>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Sends half messages for a producer group and answers its check-backs.
#[derive(Clone)]
pub struct HalfProducer {
    shared: Arc<Shared>,
}

/// A half message sent and not yet ended: commit or roll it back.
pub struct HalfMessage {
    producer: TransactionalProducer,
    transactional_id: String,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
}

impl Client {
    /// A half-message producer of `config.producer_group`, answering the group's check-backs
    /// with `checker` (one stream to every broker, kept open while the producer lives).
    pub async fn half_producer(
        &self,
        config: HalfConfig,
        checker: Arc<dyn TransactionChecker>,
    ) -> Result<HalfProducer> {
        if config.producer_group.is_empty() || config.concurrency == 0 {
            return Err(Error::InvalidArgument(
                "a half producer needs a producer group and a concurrency of at least 1".into(),
            ));
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let instance = format!("{:x}{:04x}", now as u64, std::process::id() & 0xffff);
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            client: self.clone(),
            permits: Arc::new(Semaphore::new(config.concurrency)),
            config,
            instance,
            idle: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            stop,
        });
        tokio::spawn(answer_checks(
            self.clone(),
            shared.config.producer_group.clone(),
            shared.instance.clone(),
            checker,
            stopped,
        ));
        Ok(HalfProducer { shared })
    }
}

impl HalfProducer {
    /// Writes `records` as one half message: invisible to `read_committed` consumers until
    /// committed. Waits while `concurrency` half messages are open.
    pub async fn send_half(&self, records: Vec<ProducerRecord>) -> Result<HalfMessage> {
        let permit = Arc::clone(&self.shared.permits).acquire_owned().await.map_err(|_| Error::Closed)?;
        let idle = self.shared.idle.lock().expect("idle producers").pop();
        let mut producer = match idle {
            Some(p) => p,
            None => self.new_producer().await?,
        };
        let transactional_id = producer.transactional_id().to_owned();
        producer.begin()?;
        for record in records {
            producer.send(record).await?;
        }
        producer.flush().await?;
        Ok(HalfMessage { producer, transactional_id, shared: Arc::clone(&self.shared), _permit: permit })
    }

    async fn new_producer(&self) -> Result<TransactionalProducer> {
        let s = &self.shared;
        let n = s.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{}-{n}", s.config.producer_group, s.instance);
        let config = TransactionalConfig {
            timeout: s.config.check_after,
            check_group: Some(s.config.producer_group.clone()),
            ..TransactionalConfig::new(id)
        };
        s.client.transactional_producer(config).await
    }
}

impl HalfMessage {
    /// The transactional id a check-back names ([`HalfCheck::transactional_id`]).
    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    /// Commits the half message: its records become visible.
    pub async fn commit(mut self) -> Result<()> {
        self.producer.commit().await?;
        self.recycle();
        Ok(())
    }

    /// Rolls the half message back: its records are never visible.
    pub async fn rollback(mut self) -> Result<()> {
        self.producer.abort().await?;
        self.recycle();
        Ok(())
    }

    /// An ended half message's producer serves the next one.
    fn recycle(self) {
        self.shared.idle.lock().expect("idle producers").push(self.producer);
    }
}

/// Keeps a check-back stream open to every live broker until `stop`, answering each check with
/// `checker`.
async fn answer_checks(
    client: Client,
    group: String,
    member: String,
    checker: Arc<dyn TransactionChecker>,
    mut stop: watch::Receiver<bool>,
) {
    let mut streams: std::collections::HashMap<String, tokio::task::JoinHandle<()>> = Default::default();
    loop {
        streams.retain(|_, task| !task.is_finished());
        let brokers: Vec<String> =
            client.metadata().brokers.values().filter(|b| b.live).map(|b| b.address.clone()).collect();
        for address in brokers {
            if streams.contains_key(&address) {
                continue;
            }
            let stream = serve_broker(
                client.clone(),
                address.clone(),
                (group.clone(), member.clone()),
                Arc::clone(&checker),
                stop.clone(),
            );
            streams.insert(address, tokio::spawn(stream));
        }
        tokio::select! {
            () = tokio::time::sleep(RECONNECT_INTERVAL) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let _ = client.refresh_metadata().await;
    }
    streams.into_values().for_each(|t| t.abort());
}

/// One check-back stream to the broker at `address`, until it breaks or `stop`.
async fn serve_broker(
    client: Client,
    address: String,
    (group, member): (String, String),
    checker: Arc<dyn TransactionChecker>,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(mut rpc) = client.txn_rpc(&address) else { return };
    let (tx, rx) = mpsc::unbounded_channel();
    let hello = CheckBackMessage { kind: Some(Kind::Hello(CheckBackHello { producer_group: group, member })) };
    if tx.send(hello).is_err() {
        return;
    }
    let outbound = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let Ok(response) = rpc.check_back(outbound).await else { return };
    let mut checks = response.into_inner();
    loop {
        let request = tokio::select! {
            r = checks.message() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok(Some(request)) = request else { return };
        let (checker, tx) = (Arc::clone(&checker), tx.clone());
        tokio::spawn(async move {
            let answer = answer(&checker, request).await;
            let _ = tx.send(CheckBackMessage { kind: Some(Kind::Answer(answer)) });
        });
    }
}

/// Runs the checker for one request, on a blocking thread.
async fn answer(checker: &Arc<dyn TransactionChecker>, r: v1::CheckRequest) -> v1::CheckAnswer {
    let half = HalfCheck {
        transactional_id: r.transactional_id.clone(),
        partitions: r.partitions.iter().flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.clone(), *p))).collect(),
        started_ms: r.started_ms,
        attempt: r.attempt,
    };
    let checker = Arc::clone(checker);
    let outcome = tokio::task::spawn_blocking(move || checker.check(&half)).await.unwrap_or(CheckAnswer::Unknown);
    let outcome = match outcome {
        CheckAnswer::Commit => CheckOutcome::CheckCommit,
        CheckAnswer::Rollback => CheckOutcome::CheckRollback,
        CheckAnswer::Unknown => CheckOutcome::CheckUnknown,
    };
    v1::CheckAnswer {
        transactional_id: r.transactional_id,
        producer_id: r.producer_id,
        epoch: r.epoch,
        outcome: outcome.into(),
    }
}
