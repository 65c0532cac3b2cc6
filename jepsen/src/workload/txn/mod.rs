//! The txn workload (`run --workload txn`; docs/TRANSACTIONS.md): transactions over two topics
//! committed, aborted, abandoned and fenced on purpose, a consume-transform-produce processor,
//! `read_committed` readers following along and a monitor of the partitions' last stable
//! offsets, all recorded for the checker's txn checks (`crate::checker`, `txns.rs`).
//!
//! - **Writers** (process ids `0..writers`, `writer.rs`): each a transactional producer of its
//!   own id (`jepsen-txn-w{process}`), running transactions `w{process}-{n}` of 1–8 values
//!   `w{process}-{n}-{i}` to random partitions of the topics, at a bounded rate. Most commit;
//!   some abort (after writing), some are abandoned (written by a producer of a throwaway id,
//!   then dropped: the coordinator must abort them at their timeout), some are fenced (written,
//!   then a new instance of the id registers, then the old one is asked to commit). After an
//!   error it cannot classify a writer registers a new instance of its id, which fences the old
//!   one. Each transaction is recorded at invoke (its plan and values) and at its end (its
//!   outcome).
//! - **The processor** (process `writers`, `processor.rs`): a member of group `group` reading
//!   `source` (auto-commit off) and, per poll, in transactions of up to
//!   [`processor::PER_TXN`] inputs, writing `out:<input>@x-{n}-{i}` to the topics and the
//!   group's offsets; it rewinds to the inputs of an aborted transaction, and after an unknown
//!   outcome registers a new instance and rejoins (reading the committed offsets); now and
//!   then it drops itself mid-transaction.
//! - **The source feeder** (process `writers + 1`, `source.rs`): a plain idempotent producer
//!   writing `s-{n}` to `source` at a bounded rate; not recorded (the final drain of `source`
//!   says what it holds).
//! - **Readers** (the next `readers` processes, `reader.rs`): `read_committed` consumers of
//!   every partition of both topics from the earliest offset, recording every poll.
//! - **The LSO monitor** (the last process, `lso.rs`): `describe_topic` of both topics every
//!   [`lso::EVERY`], recording every partition's last stable offset and end.
//!
//! The writers and the feeder stop at the end of the run; the others go on into [`drain`]:
//! the processor until it has caught up with its source (or [`CATCH_UP_LIMIT`]), then the
//! runner waits until every partition's LSO reached its end and no transaction of the workload
//! is open (or the time the checks allow), stops the readers and the monitor, records
//! `TxnEnd`, and drains every partition whole: both topics and the source `read_committed`,
//! both topics `read_uncommitted`; then the group's committed offsets.

mod drain;
mod lso;
mod processor;
mod reader;
mod source;
mod writer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sluice_client::{Client, Error, TransactionalConfig, TransactionalProducer};
use tokio::time::Instant;

use super::{History, PROBE_PROCESS, RUNNER_PROCESS, SharedRecorder, Task, Workload, WorkloadError};
use crate::history::{Kind, Op, TxnOutcome, TxnPlan, TxnValue};

/// Every transactional id of the workload starts so (the drain waits for none of them to have a
/// transaction open).
pub const ID_PREFIX: &str = "jepsen-txn-";

/// How long the processor may take to catch up with its source once the run is over.
pub const CATCH_UP_LIMIT: Duration = Duration::from_secs(30);

/// The longest one producer or consumer call may take (the SDK retries within its operation
/// timeout, 10 s); beyond it the call is given up, its effect unknown.
const CALL_LIMIT: Duration = Duration::from_secs(15);

/// How long a process may take to stop once told (one transaction's calls at most).
const STOP_LIMIT: Duration = Duration::from_secs(45);

/// How often the settling wait looks.
const SETTLE_CHECK: Duration = Duration::from_millis(250);

/// The txn workload's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnConfig {
    /// The topics transactions write to (`partitions` each, replication factor 3). The first
    /// must be the workload's `topic`: the runner's probes write to it and its node copies are
    /// recorded.
    pub topics: Vec<String>,
    /// The processor's input topic.
    pub source: String,
    /// Its partitions.
    pub source_partitions: u32,
    /// The processor's consumer group.
    pub group: String,
    /// Writer processes.
    pub writers: u32,
    /// Transactions each writer begins per second, at most.
    pub rate: u32,
    /// Values written to the source per second.
    pub source_rate: u32,
    /// The transaction timeout every producer registers.
    pub timeout: Duration,
    /// The share of a writer's transactions aborted (after writing), in percent.
    pub abort_percent: u32,
    /// The share abandoned, in percent.
    pub abandon_percent: u32,
    /// The share fenced by a new instance of the id before their commit, in percent.
    pub fence_percent: u32,
    /// How much longer than `timeout + 1 s` an offset may stay above the LSO with no fault.
    pub lso_allowance: Duration,
    /// The same after a fault heals.
    pub heal_allowance: Duration,
    /// Seeds every random choice of the clients.
    pub seed: u64,
}

impl Default for TxnConfig {
    fn default() -> TxnConfig {
        TxnConfig {
            topics: vec!["txn-a".into(), "txn-b".into()],
            source: "txn-src".into(),
            source_partitions: 3,
            group: "txn-processor".into(),
            writers: 3,
            rate: 10,
            source_rate: 20,
            timeout: Duration::from_secs(5),
            abort_percent: 10,
            abandon_percent: 3,
            fence_percent: 3,
            lso_allowance: Duration::from_secs(2),
            heal_allowance: Duration::from_secs(20),
            seed: 0,
        }
    }
}

impl TxnConfig {
    /// Checks the settings, with the workload's topic and reader count.
    pub(super) fn validate(&self, topic: &str, readers: u32) -> Result<(), WorkloadError> {
        let bad = |message: String| Err(WorkloadError::Config(message));
        if self.topics.first().map(String::as_str) != Some(topic) {
            return bad(format!(
                "the txn workload's first topic must be the workload's topic {topic}, not {:?}",
                self.topics
            ));
        }
        for name in self.topics.iter().chain([&self.source]) {
            sluice_common::TopicName::new(name).map_err(|e| WorkloadError::Config(format!("topic {name}: {e}")))?;
        }
        let distinct: std::collections::BTreeSet<&String> = self.topics.iter().chain([&self.source]).collect();
        if distinct.len() != self.topics.len() + 1 {
            return bad("the txn workload's topics and source must all differ".into());
        }
        if self.writers == 0 || readers == 0 || self.rate == 0 || self.source_rate == 0 || self.source_partitions == 0 {
            return bad(format!(
                "the txn workload needs at least one writer, reader, transaction and source value per second and source \
                 partition, not {}, {readers}, {}, {} and {}",
                self.writers, self.rate, self.source_rate, self.source_partitions
            ));
        }
        if u64::from(self.writers) + 3 + u64::from(readers) >= u64::from(PROBE_PROCESS) {
            return bad(format!("writers + readers + 3 must be below {PROBE_PROCESS}"));
        }
        if self.abort_percent + self.abandon_percent + self.fence_percent > 100 {
            return bad("abort, abandon and fence percentages must add up to 100 at most".into());
        }
        if self.timeout < Duration::from_millis(100) || self.timeout > Duration::from_secs(900) {
            return bad(format!("the transaction timeout must be 100 ms to 900 s, not {:?}", self.timeout));
        }
        sluice_client::GroupConsumerConfig::new(self.group.as_str())
            .validate()
            .map_err(|e| WorkloadError::Config(e.to_string()))
    }

    /// The processes: writers, the processor, the feeder, readers and the monitor.
    pub(super) fn processes(&self, readers: u32) -> u32 {
        self.writers + 3 + readers
    }

    /// The parameters as the history records them.
    fn setup(&self, partitions: u32) -> Op {
        Op::TxnSetup {
            topics: self.topics.clone(),
            partitions,
            source: self.source.clone(),
            source_partitions: self.source_partitions,
            group: self.group.clone(),
            timeout_ms: millis(self.timeout),
            lso_allowance_ms: millis(self.lso_allowance),
            heal_allowance_ms: millis(self.heal_allowance),
        }
    }

    /// How long the runner waits for every LSO to reach its end: what the checks allow after
    /// a heal, and a little more.
    fn settle_limit(&self) -> Duration {
        self.timeout + Duration::from_secs(1) + self.heal_allowance + Duration::from_secs(5)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How the runner steers the processes that outlive the run.
#[derive(Debug, Default)]
pub(super) struct Control {
    /// The run is over: the processor checks whether it has caught up.
    wind_down: AtomicBool,
    /// The processor has caught up with its source.
    caught_up: AtomicBool,
    /// The processor stops.
    stop_processor: AtomicBool,
    /// The readers and the monitor stop.
    stop_followers: AtomicBool,
}

impl Control {
    fn flag(flag: &AtomicBool) -> bool {
        flag.load(Ordering::Relaxed)
    }
}

/// What the txn workload keeps between [`start`] and [`drain`].
#[derive(Debug, Default)]
pub(super) struct Txns {
    control: Arc<Control>,
    processor: Mutex<Option<Task>>,
    followers: Mutex<Vec<Task>>,
}

/// Records the parameters and starts every process: returns the writers' and the feeder's
/// tasks (done shortly after `until`); the others are kept for [`drain`].
pub(super) fn start(
    workload: &Workload,
    recorder: &SharedRecorder,
    until: Instant,
) -> Result<Vec<Task>, WorkloadError> {
    let config = &workload.config;
    let txn = &config.txn;
    let runner = History { recorder: Arc::clone(recorder), process: RUNNER_PROCESS };
    runner.record(Kind::Ok, txn.setup(config.partitions))?;
    let state = &workload.txn;
    let (mut tasks, mut followers) = (Vec::new(), Vec::new());
    let monitor = txn.processes(config.readers) - 1;
    for (process, client) in (0u32..).zip(&workload.clients) {
        let history = History { recorder: Arc::clone(recorder), process };
        let (client, config, control) = (client.clone(), Arc::clone(config), Arc::clone(&state.control));
        if process < txn.writers {
            tasks.push(tokio::spawn(writer::run(client, history, config, until)));
        } else if process == txn.writers {
            let task = tokio::spawn(processor::run(client, history, config, control));
            *state.processor.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
        } else if process == txn.writers + 1 {
            tasks.push(tokio::spawn(source::run(client, config, until)));
        } else if process < monitor {
            followers.push(tokio::spawn(reader::run(client, history, config, control)));
        } else {
            followers.push(tokio::spawn(lso::run(client, history, config, control)));
        }
    }
    *state.followers.lock().unwrap_or_else(PoisonError::into_inner) = followers;
    Ok(tasks)
}

/// Lets the processor catch up, waits for the transactions to settle, stops the readers and
/// the monitor, records `TxnEnd`, then drains every partition and the group's offsets (within
/// `limit`). Fails if the history could not be written or a drain did not finish.
pub(super) async fn drain(workload: &Workload, history: &History, limit: Duration) -> Result<(), WorkloadError> {
    let state = &workload.txn;
    let control = &state.control;
    let txn = &workload.config.txn;
    let mut failure = None;
    control.wind_down.store(true, Ordering::Relaxed);
    let processor = state.processor.lock().unwrap_or_else(PoisonError::into_inner).take();
    let catch_up = Instant::now() + CATCH_UP_LIMIT;
    while !Control::flag(&control.caught_up)
        && Instant::now() < catch_up
        && processor.as_ref().is_some_and(|p| !p.is_finished())
    {
        tokio::time::sleep(SETTLE_CHECK).await;
    }
    let caught_up = Control::flag(&control.caught_up);
    tracing::info!(caught_up, "stopping the processor");
    control.stop_processor.store(true, Ordering::Relaxed);
    if let Some(task) = processor {
        record_stop("the processor", task, &mut failure).await;
    }
    let (unsettled, open) = settle(&workload.admin, workload, txn.settle_limit()).await;
    if unsettled.is_empty() {
        tracing::info!("every transaction settled");
    } else {
        tracing::warn!(?unsettled, "transactions did not settle");
    }
    control.stop_followers.store(true, Ordering::Relaxed);
    let followers = std::mem::take(&mut *state.followers.lock().unwrap_or_else(PoisonError::into_inner));
    for task in followers {
        record_stop("a reader or the LSO monitor", task, &mut failure).await;
    }
    let settled = unsettled.is_empty();
    history.record(Kind::Ok, Op::TxnEnd { caught_up, settled, unsettled, open })?;
    workload.check_history()?;
    drain::run(&workload.admin, history, &workload.config, Instant::now() + limit).await?;
    failure.map_or(Ok(()), Err)
}

/// Awaits a stopping process, keeping the first failure; one that does not stop in time is
/// aborted (so that nothing is written after the drains begin).
async fn record_stop(what: &str, mut task: Task, failure: &mut Option<WorkloadError>) {
    let stopped = match tokio::time::timeout(STOP_LIMIT, &mut task).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(WorkloadError::History(format!("{what} failed: {e}"))),
        Err(_) => {
            task.abort();
            Err(WorkloadError::History(format!("{what} did not stop within {STOP_LIMIT:?}; aborted")))
        }
    };
    if let Err(e) = stopped {
        tracing::error!(error = %e, "{what}");
        failure.get_or_insert(e);
    }
}

/// Waits until every partition of the topics has its LSO at its end and no transaction of the
/// workload is open, or `limit` passes; returns what was still unsettled (empty: settled) and,
/// of it, the open transactions.
async fn settle(admin: &Client, workload: &Workload, limit: Duration) -> (Vec<String>, Vec<String>) {
    let deadline = Instant::now() + limit;
    loop {
        let (unsettled, open) = unsettled(admin, &workload.config.txn.topics).await;
        if unsettled.is_empty() || Instant::now() >= deadline {
            return (unsettled, open);
        }
        tokio::time::sleep(SETTLE_CHECK).await;
    }
}

/// The partitions whose LSO is below their end, the open transactions of the workload, and
/// what could not be asked; and the open transactions alone.
async fn unsettled(admin: &Client, topics: &[String]) -> (Vec<String>, Vec<String>) {
    let mut unsettled = Vec::new();
    for topic in topics {
        match tokio::time::timeout(CALL_LIMIT, admin.admin().describe_topic(topic)).await {
            Ok(Ok(d)) => {
                for p in &d.partitions {
                    match (&p.last_stable_offset, &p.log_end_offset) {
                        (Ok(lso), Ok(end)) if lso == end => {}
                        (Ok(lso), Ok(end)) => unsettled.push(format!("{topic}/{} at {lso} of {end}", p.partition)),
                        (Err(e), _) | (_, Err(e)) => unsettled.push(format!("{topic}/{}: {e}", p.partition)),
                    }
                }
            }
            Ok(Err(e)) => unsettled.push(format!("{topic}: {e}")),
            Err(_) => unsettled.push(format!("{topic}: no answer within {CALL_LIMIT:?}")),
        }
    }
    match tokio::time::timeout(CALL_LIMIT, admin.admin().list_transactions(true, false)).await {
        Ok(Ok(list)) => {
            let open: Vec<String> = list
                .iter()
                .filter(|t| t.transactional_id.starts_with(ID_PREFIX) && t.is_open())
                .map(|t| format!("{} {}", t.transactional_id, t.state))
                .collect();
            unsettled.extend(open.iter().cloned());
            return (unsettled, open);
        }
        Ok(Err(e)) => unsettled.push(format!("listing transactions: {e}")),
        Err(_) => unsettled.push(format!("listing transactions: no answer within {CALL_LIMIT:?}")),
    }
    (unsettled, Vec::new())
}

/// Registers a producer instance of `id` (recorded as `TxnInit`), retrying while `go_on`
/// holds; `None` once it does not.
async fn init(
    client: &Client,
    history: &History,
    id: &str,
    timeout: Duration,
    go_on: impl Fn() -> bool,
) -> Result<Option<TransactionalProducer>, WorkloadError> {
    while go_on() {
        match init_once(client, history, id, timeout).await? {
            Ok(producer) => return Ok(Some(producer)),
            Err(_) => tokio::time::sleep(super::ERROR_PAUSE).await,
        }
    }
    Ok(None)
}

/// One attempt to register a producer instance of `id`, recorded.
async fn init_once(
    client: &Client,
    history: &History,
    id: &str,
    timeout: Duration,
) -> Result<Result<TransactionalProducer, String>, WorkloadError> {
    let op = || Op::TxnInit { transactional_id: id.to_owned() };
    history.record(Kind::Invoke, op())?;
    let config = TransactionalConfig { timeout, ..TransactionalConfig::new(id) };
    let error = match tokio::time::timeout(CALL_LIMIT, client.transactional_producer(config)).await {
        Ok(Ok(producer)) => {
            history.record(Kind::Ok, op())?;
            return Ok(Ok(producer));
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {CALL_LIMIT:?}"),
    };
    tracing::debug!(process = history.process, id, error, "registering a transactional producer failed");
    history.record_error(Kind::Info, op(), Some(error.clone()))?;
    Ok(Err(error))
}

/// Why a producer call failed: the SDK's error, or no answer in time.
#[derive(Debug)]
enum CallError {
    Sdk(Error),
    NoAnswer(&'static str),
}

impl CallError {
    /// Whether the broker said the instance is fenced (or its transaction was ended by
    /// another).
    fn fenced(&self) -> bool {
        matches!(self, CallError::Sdk(e) if e.code() == Some(sluice_client::ErrorCode::ProducerFenced))
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Sdk(e) => write!(f, "{e}"),
            CallError::NoAnswer(what) => write!(f, "{what}: no answer within {CALL_LIMIT:?}"),
        }
    }
}

/// Runs one producer call within [`CALL_LIMIT`].
async fn call<T>(
    what: &'static str,
    future: impl std::future::Future<Output = sluice_client::Result<T>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(CALL_LIMIT, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(CallError::Sdk(e)),
        Err(_) => Err(CallError::NoAnswer(what)),
    }
}

/// Begins a transaction and writes `values` (sent, then flushed: in the log, not committed).
async fn write(producer: &mut TransactionalProducer, values: &[TxnValue]) -> Result<(), CallError> {
    producer.begin().map_err(CallError::Sdk)?;
    for v in values {
        let record = sluice_client::ProducerRecord::new(v.topic.as_str(), v.value.clone()).partition(v.partition);
        call("send", producer.send(record)).await?;
    }
    call("flush", producer.flush()).await
}

/// How a transaction ended, and whether its producer may run the next one.
#[derive(Debug)]
struct Ended {
    outcome: TxnOutcome,
    error: Option<String>,
    /// The producer is fine for the next transaction (otherwise a new instance is needed).
    reusable: bool,
}

impl Ended {
    fn ok(outcome: TxnOutcome) -> Ended {
        Ended { outcome, error: None, reusable: true }
    }

    /// The transaction failed before its commit was asked for, with `error`: aborts it if it
    /// can (`aborted` then), else it is fenced or failed, and the producer is replaced.
    async fn before_commit(producer: &mut TransactionalProducer, error: &CallError) -> Ended {
        let mut text = error.to_string();
        match call("abort", producer.abort()).await {
            Ok(()) => return Ended { outcome: TxnOutcome::Aborted, error: Some(text), reusable: true },
            Err(e) => text.push_str(&format!("; then the abort: {e}")),
        }
        let outcome = if error.fenced() { TxnOutcome::Fenced } else { TxnOutcome::Failed };
        Ended { outcome, error: Some(text), reusable: false }
    }
}

/// The history's record of a transaction, with its outcome once known.
fn txn_op(label: &str, plan: TxnPlan, values: &[TxnValue], offsets: &[(u32, u64)], outcome: Option<TxnOutcome>) -> Op {
    Op::Txn { label: label.to_owned(), plan, values: values.to_vec(), offsets: offsets.to_vec(), outcome }
}

/// Records a transaction's end: `ok` committed, `info` unknown, `fail` otherwise.
fn record_end(
    history: &History,
    label: &str,
    plan: TxnPlan,
    values: &[TxnValue],
    offsets: &[(u32, u64)],
    ended: &Ended,
) -> Result<(), WorkloadError> {
    let kind = match ended.outcome {
        TxnOutcome::Committed => Kind::Ok,
        TxnOutcome::Unknown => Kind::Info,
        _ => Kind::Fail,
    };
    history.record_error(kind, txn_op(label, plan, values, offsets, Some(ended.outcome)), ended.error.clone())
}

#[cfg(test)]
mod tests;
