//! The workload: what the suite does to the cluster while faults are injected, recorded in the
//! history (`crate::history`) as it happens.
//!
//! - **Producers** (process ids `0..producers`): each has its own client and one
//!   [`Producer`](sluice_client::Producer) per acknowledgement level (`levels.rs`: `all` and
//!   `leader` idempotent, `none` not), and sends unique values `"{process}-{n}"` at a bounded
//!   rate with a few records in flight, each at a level drawn from the run's seed
//!   ([`WorkloadConfig::leader_percent`], [`WorkloadConfig::none_percent`]). A send is recorded
//!   with its level when invoked (before `enqueue`) and when its delivery resolves: `ok` with its
//!   partition and offset (`leader`, `none`: its partition only), `fail` only when the SDK says
//!   it certainly was not written, `info` otherwise (see `outcome.rs`).
//! - **Group members** (the next `members` process ids): [`GroupConsumer`](sluice_client::GroupConsumer)s
//!   of one group with a short session timeout and auto-commit, recording every poll and an
//!   `Assign` whenever their partitions changed. Auto-commit is invisible to the application, so
//!   no `Commit` events are recorded; the group's committed offsets are read once at the end
//!   (`FinalCommitted`).
//! - **Filtered members** (the next `filtered_members` process ids): the same, in a second group
//!   (`{group}-filtered`) whose members consume with the tag filter [`FILTER_TAGS`]; producers
//!   tag each value by [`tag_of`](crate::history::tag_of), and a `Subscribe` event records the
//!   filter before the run, so the checker knows what the group owes and must never receive.
//! - **Readers** (the next `readers` process ids): assign-mode consumers reading every partition
//!   from the earliest offset, recording every poll and an `Assign` after each (re)seek.
//!
//! The delay workload (`WorkloadKind::Delay`, `delay/`) runs other processes instead: producers
//! of delayed messages, a canceller and consumers; see `delay/mod.rs`. So does the txn workload
//! (`WorkloadKind::Txn`, `txn/`): transactional writers, a consume-transform-produce processor
//! and its source's feeder, `read_committed` readers and a monitor of last stable offsets; see
//! `txn/mod.rs`. And so does the retry workload (`WorkloadKind::Retry`, `retry/`): keyed
//! producers and the members of an unordered and a key-ordered group that ack, nack and reject
//! by each message's fate; see `retry/mod.rs`.
//!
//! Afterwards, [`Workload::drain`] reads every partition whole (`FinalRead`) and the group's
//! committed offsets (`FinalCommitted`), and [`record_node_logs`] records each stopped broker's
//! own copy of every partition (`NodeLog`). Those three, being observations of the final state
//! rather than operations that can fail, are single `ok` events of process `u32::MAX`; so is an
//! `Assign`, which records a change seen by its process (inside a poll, for a group member)
//! rather than an operation of its own. Every other operation is an `invoke` followed by one
//! completion of the same process.

mod delay;
mod drain;
mod levels;
mod member;
mod node_log;
mod outcome;
mod producer;
mod reader;
mod retry;
mod txn;

use std::fs::File;
use std::io::BufWriter;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sluice_client::{
    Client, ClientConfig, ConsumedRecord, ErrorCode, GroupConsumerConfig, MessageFilter, TopicConfig, parse_bootstrap,
};
use sluice_common::TopicName;
use tokio::time::Instant;

pub use crate::history::WorkloadKind;
use crate::history::{Kind, Op, Recorder};

pub use self::delay::DelayConfig;
pub use self::node_log::record_node_logs;
pub use self::retry::RetryConfig;
pub use self::txn::TxnConfig;

/// The history being written, shared by every task of the workload and the runner.
pub type SharedRecorder = Arc<Mutex<Recorder<BufWriter<File>>>>;

/// The process id of the runner itself: final reads, committed offsets and node logs.
pub const RUNNER_PROCESS: u32 = u32::MAX;

/// The process id of the runner's probes (`crate::probe`): single writes it sends itself.
pub const PROBE_PROCESS: u32 = u32::MAX - 1;

/// The highest send rate a producer may be given, per second.
pub const MAX_SENDS_PER_SECOND: u32 = 10_000;

/// The tags the filtered group's filter selects (of the four [`tag_of`](crate::history::tag_of)
/// gives).
pub const FILTER_TAGS: [&str; 2] = ["t0", "t2"];

/// The replication factor of the workload's topic.
const REPLICATION_FACTOR: u32 = 3;

/// How long `setup` waits for every partition of the new topic to elect a leader.
const LEADER_WAIT: Duration = Duration::from_secs(30);

/// How long one poll of a consumer waits for records.
const POLL_WAIT: Duration = Duration::from_millis(500);

/// The longest one poll may take in all (a group member's poll may also commit and rebalance);
/// beyond it the poll is abandoned (which loses nothing in the SDK) and recorded as failed.
const POLL_LIMIT: Duration = Duration::from_secs(15);

/// How far past the end of the run a poll begun before it may go on.
const POLL_OVERRUN: Duration = Duration::from_secs(1);

/// When a poll begun now must be abandoned: after [`POLL_LIMIT`], and shortly after `until`.
fn poll_deadline(until: Instant) -> Instant {
    (Instant::now() + POLL_LIMIT).min(until + POLL_OVERRUN)
}

/// The pause after a failed operation before the next attempt, so that an unavailable cluster
/// is not asked in a tight loop.
const ERROR_PAUSE: Duration = Duration::from_millis(200);

/// What the workload does: its topic, group and how many clients of each kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// Which workload: the message log (the fields below) or delayed messages (producers,
    /// readers and rate below, and [`WorkloadConfig::delay`]; no group members).
    pub kind: WorkloadKind,
    /// The delay workload's own settings.
    pub delay: DelayConfig,
    /// The txn workload's own settings (its first topic must be `topic`).
    pub txn: TxnConfig,
    /// The retry workload's own settings (it runs `members` members in each of its groups).
    pub retry: RetryConfig,
    /// The topic written and read; created by [`Workload::setup`] with replication factor 3.
    pub topic: String,
    /// The topic's partitions.
    pub partitions: u32,
    /// Producer processes.
    pub producers: u32,
    /// The consumer group the members join.
    pub group: String,
    /// Group member processes.
    pub members: u32,
    /// Processes of the filtered group.
    pub filtered_members: u32,
    /// Assign-mode reader processes (the delay workload's consumers).
    pub readers: u32,
    /// Sends per second of each producer, 1 to [`MAX_SENDS_PER_SECOND`].
    pub sends_per_second: u32,
    /// The log workload's share of sends at `Acks::Leader`, in percent: acknowledged before
    /// the commit, so their loss is allowed and only counted.
    pub leader_percent: u32,
    /// The log workload's share of sends at `Acks::None`, in percent; the rest are at
    /// `Acks::All`, whose loss is an anomaly. `leader_percent + none_percent` is at most 100.
    pub none_percent: u32,
    /// Seeds each log producer's choice of level, so a replay sends the same values at the
    /// same levels.
    pub seed: u64,
}

impl Default for WorkloadConfig {
    fn default() -> WorkloadConfig {
        WorkloadConfig {
            kind: WorkloadKind::Log,
            delay: DelayConfig::default(),
            txn: TxnConfig::default(),
            retry: RetryConfig::default(),
            topic: "jepsen".into(),
            partitions: 6,
            producers: 2,
            group: "jepsen-group".into(),
            members: 2,
            filtered_members: 1,
            readers: 1,
            sends_per_second: 200,
            // Most sends stay at `all`, so the loss checks keep their power.
            leader_percent: 15,
            none_percent: 15,
            seed: 0,
        }
    }
}

impl WorkloadConfig {
    /// Checks that the configuration can run; the error names the field.
    pub fn validate(&self) -> Result<(), WorkloadError> {
        TopicName::new(&self.topic).map_err(|e| WorkloadError::Config(format!("topic: {e}")))?;
        GroupConsumerConfig::new(self.group.as_str()).validate().map_err(|e| WorkloadError::Config(e.to_string()))?;
        if self.partitions == 0 {
            return Err(WorkloadError::Config("partitions must be at least 1".into()));
        }
        if !(1..=MAX_SENDS_PER_SECOND).contains(&self.sends_per_second) {
            return Err(WorkloadError::Config(format!(
                "sends_per_second must be 1 to {MAX_SENDS_PER_SECOND}, not {}",
                self.sends_per_second
            )));
        }
        if self.leader_percent.saturating_add(self.none_percent) > 100 {
            return Err(WorkloadError::Config(format!(
                "leader_percent + none_percent must be at most 100, not {} + {}",
                self.leader_percent, self.none_percent
            )));
        }
        if self.kind == WorkloadKind::Delay {
            return self.delay.validate(self.producers, self.readers);
        }
        if self.kind == WorkloadKind::Txn {
            return self.txn.validate(&self.topic, self.readers);
        }
        if self.kind == WorkloadKind::Retry {
            return self.retry.validate(self.producers, self.members);
        }
        let processes = u64::from(self.producers)
            + u64::from(self.members)
            + u64::from(self.filtered_members)
            + u64::from(self.readers);
        if processes == 0 || processes >= u64::from(PROBE_PROCESS) {
            return Err(WorkloadError::Config(format!(
                "producers + members + filtered members + readers must be at least 1 and below {PROBE_PROCESS}, not \
                 {processes}"
            )));
        }
        Ok(())
    }

    /// How many client processes the workload runs.
    fn processes(&self) -> u32 {
        match self.kind {
            WorkloadKind::Log => self.producers + self.members + self.filtered_members + self.readers,
            WorkloadKind::Delay => self.producers + 1 + self.readers,
            WorkloadKind::Txn => self.txn.processes(self.readers),
            WorkloadKind::Retry => self.producers + 2 * self.members,
        }
    }

    /// The shares of sends at `leader` and at `none`, in percent: none in the retry
    /// workload, whose checks need every message acknowledged with its offset.
    fn level_shares(&self) -> (u32, u32) {
        match self.kind {
            WorkloadKind::Retry => (0, 0),
            _ => (self.leader_percent, self.none_percent),
        }
    }

    /// The group the filtered members join.
    pub fn filtered_group(&self) -> String {
        format!("{}-filtered", self.group)
    }

    /// The groups whose members run, with the filter each consumes with.
    fn groups(&self) -> Vec<(String, Option<MessageFilter>)> {
        let mut groups = Vec::new();
        if self.kind == WorkloadKind::Retry {
            // Its groups' positions move past failing messages: the log's group checks do not
            // apply (the retry checks do).
            return groups;
        }
        if self.members > 0 {
            groups.push((self.group.clone(), None));
        }
        if self.filtered_members > 0 {
            groups.push((self.filtered_group(), Some(MessageFilter::tags(FILTER_TAGS.join(" || ")))));
        }
        groups
    }
}

/// Why the workload could not set up, drain or record.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// The configuration cannot run.
    #[error("invalid workload configuration: {0}")]
    Config(String),
    /// The cluster refused or did not answer a call the workload cannot do without.
    #[error("{what}: {source}")]
    Cluster {
        /// What was being done.
        what: String,
        /// What the SDK said.
        #[source]
        source: sluice_client::Error,
    },
    /// Writing the history failed; it is incomplete and cannot be checked.
    #[error("writing the history failed: {0}")]
    History(String),
    /// A retried phase did not finish in its time.
    #[error("{what} did not finish within {} ms; last error: {last}", limit.as_millis())]
    Incomplete {
        /// What was being done.
        what: String,
        /// The time it had.
        limit: Duration,
        /// The last error seen.
        last: String,
    },
    /// A broker's data directory could not be read.
    #[error("node {node}'s copy of topic {topic} in {dir}: {message}")]
    NodeLog {
        /// The node.
        node: u64,
        /// The topic.
        topic: String,
        /// Its data directory.
        dir: String,
        /// What went wrong, per partition.
        message: String,
    },
}

impl WorkloadError {
    fn cluster(what: impl Into<String>, source: sluice_client::Error) -> WorkloadError {
        WorkloadError::Cluster { what: what.into(), source }
    }
}

/// A connected workload, its topic created: [`Workload::run`] it, then [`Workload::drain`] it.
pub struct Workload {
    config: Arc<WorkloadConfig>,
    /// For the topic, the drain and the group's offsets.
    admin: Client,
    /// One per process, so that each has its own connections and metadata.
    clients: Vec<Client>,
    /// The first failure to write the history during `run` (which cannot return it); `drain`
    /// reports it.
    history_failure: Mutex<Option<String>>,
    /// The delay workload's consumers and what they have seen (unused by the log workload).
    delay: delay::Delays,
    /// The txn workload's processes that outlive the run (unused by the others).
    txn: txn::Txns,
    /// The retry workload's members and what they have seen (unused by the others).
    retry: retry::Retries,
}

impl std::fmt::Debug for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workload").field("config", &self.config).field("clients", &self.clients.len()).finish()
    }
}

impl Workload {
    /// Connects (bootstrap `"host:port,..."`), creates the topic (RF 3) and waits for leaders.
    ///
    /// An existing topic of the same shape is accepted, since a creation retried after a lost
    /// answer finds the topic it created.
    pub async fn setup(bootstrap: &str, config: WorkloadConfig) -> Result<Workload, WorkloadError> {
        config.validate()?;
        let client_config = ClientConfig {
            request_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(10),
            metadata_max_age: Duration::from_secs(2),
            ..ClientConfig::new(parse_bootstrap(bootstrap))
        };
        client_config.validate().map_err(|e| WorkloadError::Config(e.to_string()))?;
        let connect = || async {
            Client::connect(client_config.clone()).await.map_err(|e| WorkloadError::cluster("connecting", e))
        };
        let admin = connect().await?;
        create_topic(&admin, &config.topic, config.partitions).await?;
        if config.kind == WorkloadKind::Txn {
            for topic in &config.txn.topics[1..] {
                create_topic(&admin, topic, config.partitions).await?;
            }
            create_topic(&admin, &config.txn.source, config.txn.source_partitions).await?;
        }
        let mut clients = Vec::with_capacity(config.processes() as usize);
        for _ in 0..config.processes() {
            clients.push(connect().await?);
        }
        Ok(Workload {
            config: Arc::new(config),
            admin,
            clients,
            history_failure: Mutex::new(None),
            delay: delay::Delays::default(),
            txn: txn::Txns::default(),
            retry: retry::Retries::default(),
        })
    }

    /// The configuration it runs.
    pub fn config(&self) -> &WorkloadConfig {
        &self.config
    }

    /// Drives producers, group members and assign-mode readers until `until`, recording every
    /// operation at invoke and completion; never panics on cluster errors (they become
    /// fail/info). Returns shortly after `until`: deliveries still unresolved a moment after it
    /// are recorded as `info`, and members leave their group.
    ///
    /// The delay workload's producers and canceller stop the same way; its consumers read on,
    /// until [`Workload::drain`] stops them. So do the txn workload's writers and source
    /// feeder; its processor, readers and LSO monitor go on until [`Workload::drain`].
    ///
    /// If the history cannot be written, the processes stop and [`Workload::drain`] reports it.
    pub async fn run(&self, recorder: SharedRecorder, until: Instant) {
        let started = match self.config.kind {
            WorkloadKind::Log => self.start_log(&recorder, until),
            WorkloadKind::Delay => delay::start(self, &recorder, until),
            WorkloadKind::Txn => txn::start(self, &recorder, until),
            WorkloadKind::Retry => retry::start(self, &recorder, until),
        };
        let tasks = match started {
            Ok(tasks) => tasks,
            Err(e) => {
                self.history_failure.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(e.to_string());
                return;
            }
        };
        for task in tasks {
            let failure = match task.await {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(e) => format!("a workload process failed: {e}"),
            };
            tracing::error!(%failure, "workload process stopped");
            self.history_failure.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(failure);
        }
        if let Err(e) = recorder.lock().unwrap_or_else(PoisonError::into_inner).flush() {
            let failure = format!("flushing the history: {e}");
            self.history_failure.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(failure);
        }
    }

    /// Starts the log workload's processes.
    fn start_log(&self, recorder: &SharedRecorder, until: Instant) -> Result<Vec<Task>, WorkloadError> {
        let config = &self.config;
        if config.filtered_members > 0 {
            let runner = History { recorder: Arc::clone(recorder), process: RUNNER_PROCESS };
            let tags = FILTER_TAGS.iter().map(|t| (*t).to_owned()).collect();
            runner.record(Kind::Ok, Op::Subscribe { group: config.filtered_group(), tags })?;
        }
        let mut tasks = Vec::with_capacity(self.clients.len());
        for (process, client) in (0u32..).zip(&self.clients) {
            let history = History { recorder: Arc::clone(recorder), process };
            let (client, config) = (client.clone(), Arc::clone(config));
            let task = if process < config.producers {
                tokio::spawn(producer::run(client, history, config, until, None))
            } else if process < config.producers + config.members {
                tokio::spawn(member::run(client, history, config, until, false))
            } else if process < config.producers + config.members + config.filtered_members {
                tokio::spawn(member::run(client, history, config, until, true))
            } else {
                tokio::spawn(reader::run(client, history, config, until))
            };
            tasks.push(task);
        }
        Ok(tasks)
    }

    /// After every fault healed: reads every partition from the start (`FinalRead` events) and
    /// the group's committed offsets (`FinalCommitted`), retrying until it succeeds or `limit`
    /// passes. Fails if `run` could not write the history, or if something could not be read
    /// in time (what was read is recorded).
    ///
    /// The delay workload instead lets its consumers read on until every message it expects
    /// has arrived, or its grace (`DelayConfig::grace`) has passed since the latest delivery
    /// time (and since now), then stops them (`DelayEnd`); `limit` does not apply.
    ///
    /// The txn workload lets its processor catch up with its source, waits for its
    /// transactions to settle, stops its readers and monitor (`TxnEnd`), then reads every
    /// partition whole both ways and the processor's group's offsets (`TxnDrain`,
    /// `TxnOffsets`) within `limit`.
    pub async fn drain(&self, recorder: SharedRecorder, limit: Duration) -> Result<(), WorkloadError> {
        let history = History { recorder, process: RUNNER_PROCESS };
        let result = match self.config.kind {
            WorkloadKind::Log => self.drain_log(&history, limit).await,
            WorkloadKind::Delay => delay::drain(self, &history).await,
            WorkloadKind::Txn => txn::drain(self, &history, limit).await,
            WorkloadKind::Retry => retry::drain(self, &history, limit).await,
        };
        history.flush()?;
        result
    }

    async fn drain_log(&self, history: &History, limit: Duration) -> Result<(), WorkloadError> {
        self.check_history()?;
        drain::run(&self.admin, history, &self.config, Instant::now() + limit).await
    }

    /// The failure to write the history during `run`, if there was one.
    fn check_history(&self) -> Result<(), WorkloadError> {
        match self.history_failure.lock().unwrap_or_else(PoisonError::into_inner).clone() {
            Some(failure) => Err(WorkloadError::History(failure)),
            None => Ok(()),
        }
    }
}

/// Creates `topic` with `partitions`, or accepts an existing one of the same shape, and waits
/// for its leaders.
async fn create_topic(admin: &Client, topic: &str, partitions: u32) -> Result<(), WorkloadError> {
    let wanted = TopicConfig::new(partitions, REPLICATION_FACTOR);
    match admin.admin().create_topic(topic, &wanted).await {
        Ok(_) => {}
        Err(e) if e.code() == Some(ErrorCode::TopicExists) => {}
        Err(e) => return Err(WorkloadError::cluster(format!("creating topic {topic}"), e)),
    }
    let info = admin
        .admin()
        .wait_for_leaders(topic, LEADER_WAIT)
        .await
        .map_err(|e| WorkloadError::cluster(format!("waiting for the leaders of {topic}"), e))?;
    let shape = (info.partition_count(), info.config.replication_factor);
    if shape != (partitions, REPLICATION_FACTOR) {
        return Err(WorkloadError::Config(format!(
            "topic {topic} exists with {} partitions and replication factor {}; the workload needs {partitions} and \
             {REPLICATION_FACTOR}: delete it or choose another topic",
            shape.0, shape.1
        )));
    }
    Ok(())
}

/// A workload process's task.
type Task = tokio::task::JoinHandle<Result<(), WorkloadError>>;

/// How long a process told to stop may take to end.
const STOP_LIMIT: Duration = Duration::from_secs(20);

/// Waits for each of `tasks` (told to stop) to end, at most [`STOP_LIMIT`] each; the first
/// failure. `what` names a task in messages ("a delay consumer").
async fn stop_tasks(tasks: Vec<Task>, what: &str) -> Option<WorkloadError> {
    let mut failure = None;
    for task in tasks {
        let stopped = match tokio::time::timeout(STOP_LIMIT, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(WorkloadError::History(format!("{what} failed: {e}"))),
            Err(_) => Err(WorkloadError::History(format!("{what} did not stop within {STOP_LIMIT:?}"))),
        };
        if let Err(e) = stopped {
            tracing::error!(error = %e, "{what}");
            failure.get_or_insert(e);
        }
    }
    failure
}

/// `d` in whole milliseconds.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One process's view of the history: records its events.
#[derive(Clone)]
struct History {
    recorder: SharedRecorder,
    process: u32,
}

impl History {
    /// Records one event of this process.
    fn record(&self, kind: Kind, op: Op) -> Result<(), WorkloadError> {
        self.record_error(kind, op, None)
    }

    /// Records one event of this process with the error that ended the operation.
    fn record_error(&self, kind: Kind, op: Op, error: Option<String>) -> Result<(), WorkloadError> {
        let mut recorder = self.recorder.lock().unwrap_or_else(PoisonError::into_inner);
        recorder
            .record_error(self.process, kind, op, error)
            .map(drop)
            .map_err(|e| WorkloadError::History(format!("process {}: {e}", self.process)))
    }

    fn flush(&self) -> Result<(), WorkloadError> {
        let mut recorder = self.recorder.lock().unwrap_or_else(PoisonError::into_inner);
        recorder.flush().map_err(|e| WorkloadError::History(format!("flushing: {e}")))
    }
}

/// A poll's records as the history lists them: per partition (ascending), (offset, value) in
/// the order they were returned.
fn poll_reads(records: &[ConsumedRecord]) -> Vec<(u32, Vec<(u64, String)>)> {
    group_reads(records.iter().map(|r| (r.partition(), r.offset(), &r.value()[..])))
}

/// Groups (partition, offset, value) triples per partition, ascending, keeping their order
/// within each partition.
fn group_reads<'a>(records: impl IntoIterator<Item = (u32, u64, &'a [u8])>) -> Vec<(u32, Vec<(u64, String)>)> {
    let mut reads: Vec<(u32, Vec<(u64, String)>)> = Vec::new();
    for (partition, offset, value) in records {
        let read = (offset, value_text(value));
        match reads.iter_mut().find(|(p, _)| *p == partition) {
            Some((_, list)) => list.push(read),
            None => reads.push((partition, vec![read])),
        }
    }
    reads.sort_by_key(|(p, _)| *p);
    reads
}

/// A record's value as the history holds it (the workload only writes UTF-8; anything else
/// is kept recognisably rather than dropped).
fn value_text(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}

/// An empty poll, as invoked, or as failed.
fn empty_poll(group: Option<&str>) -> Op {
    Op::Poll { group: group.map(str::to_owned), reads: Vec::new() }
}

#[cfg(test)]
mod tests;
