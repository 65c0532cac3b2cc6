//! [`TransactionalProducer`]: writes to any partitions of any topics all-or-nothing
//! (docs/TRANSACTIONS.md).
//!
//! A transactional id names the producer across restarts: [`Client::transactional_producer`]
//! registers it with its coordinator (InitTransactions), which fences every older instance with
//! the same id and aborts what it left open. Then, per transaction: [`begin`], any number of
//! [`send`], and [`commit`] or [`abort`].
//!
//! Records are buffered per partition and written when the transaction commits, or earlier
//! when a partition's buffer reaches `max_batch_bytes`; before its first write to a partition
//! the producer adds the partition to the transaction at the coordinator. Each batch is
//! transactional and idempotent (the producer id and epoch of the transaction, sequences from
//! 0 per partition), so a retried write is never applied twice. Commit writes what is
//! buffered, then asks the coordinator to commit: it answers once the decision is durable and
//! every partition has its marker, with the epoch of the next transaction.
//!
//! [`begin`]: TransactionalProducer::begin
//! [`send`]: TransactionalProducer::send
//! [`commit`]: TransactionalProducer::commit
//! [`abort`]: TransactionalProducer::abort

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::try_join_all;
use sluice_common::record::{BatchBuilder, ProducerStamp, Record};
use sluice_proto::{ErrorCode, v1};

use crate::client::{Client, Route, TxnRpc};
use crate::error::{Error, Result};
use crate::group::coordinator::{Coordinator, Txns};
use crate::partitioner::{Sticky, choose};
use crate::record::ProducerRecord;
use crate::topic_partition::TopicPartition;

/// Settings of a [`TransactionalProducer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionalConfig {
    /// Names the producer across restarts: a new instance with the same id fences the old one
    /// and aborts what it left open. 1 to 249 characters from `[A-Za-z0-9._-]`.
    pub transactional_id: String,
    /// A transaction still open this long after it began is aborted by its coordinator.
    /// Default: 60 s (at most the brokers' `max_timeout_ms`, 15 minutes by default).
    pub timeout: Duration,
    /// A partition's buffered records are written (before commit) once they reach this many
    /// bytes. Default: 1 MiB.
    pub max_batch_bytes: usize,
    /// Half messages ([`crate::HalfProducer`] sets it): at its timeout a transaction is not
    /// aborted but checked back with a connected member of this producer group. Default: none.
    pub check_group: Option<String>,
}

impl TransactionalConfig {
    /// Defaults, for transactional id `id`.
    pub fn new(id: impl Into<String>) -> TransactionalConfig {
        TransactionalConfig {
            transactional_id: id.into(),
            timeout: Duration::from_secs(60),
            max_batch_bytes: 1024 * 1024,
            check_group: None,
        }
    }
}

/// One partition's part of the open transaction.
#[derive(Default)]
struct PartitionPart {
    /// Added to the transaction at the coordinator.
    added: bool,
    /// Records not written yet.
    records: Vec<Record>,
    bytes: usize,
    /// The sequence of the next record written.
    next_sequence: i32,
}

/// Writes records to many partitions in transactions: all of a transaction's records become
/// visible to `read_committed` consumers together, or none does. One transaction at a time.
pub struct TransactionalProducer {
    client: Client,
    config: TransactionalConfig,
    coordinator: Coordinator<Txns>,
    producer_id: i64,
    epoch: i16,
    sticky: Sticky,
    /// The open transaction's partitions; `None` when none is open.
    open: Option<BTreeMap<(Arc<str>, u32), PartitionPart>>,
    /// The open transaction committed group offsets (so it exists at the coordinator even if
    /// it wrote nothing).
    offsets_sent: bool,
}

impl Client {
    /// A transactional producer for `config.transactional_id`: registers the id with its
    /// coordinator, fencing any older instance and aborting what it left open (retried while
    /// that abort completes).
    pub async fn transactional_producer(&self, config: TransactionalConfig) -> Result<TransactionalProducer> {
        let timeout_ms = u32::try_from(config.timeout.as_millis())
            .ok()
            .filter(|ms| *ms > 0)
            .ok_or_else(|| Error::InvalidArgument("the transaction timeout must be 1 ms to 49 days".into()))?;
        let id = &config.transactional_id;
        let valid = !id.is_empty()
            && id.len() <= 249
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid {
            return Err(Error::InvalidArgument(format!(
                "transactional id {id:?} is invalid: use 1 to 249 characters from [A-Za-z0-9._-]"
            )));
        }
        if config.max_batch_bytes == 0 {
            return Err(Error::InvalidArgument("max_batch_bytes must be greater than zero".into()));
        }
        let coordinator = Coordinator::<Txns>::of(self.clone(), &config.transactional_id);
        let id = config.transactional_id.clone();
        let check_group = config.check_group.clone().unwrap_or_default();
        let deadline = Instant::now() + self.config().operation_timeout;
        let answer = coordinator
            .call("InitTransactions", deadline, |mut rpc: TxnRpc| {
                let request = v1::InitTransactionsRequest {
                    transactional_id: id.clone(),
                    timeout_ms,
                    check_group: check_group.clone(),
                };
                async move { rpc.init_transactions(request).await }
            })
            .await?;
        let epoch = epoch_of(answer.epoch)?;
        Ok(TransactionalProducer {
            client: self.clone(),
            config,
            coordinator,
            producer_id: answer.producer_id,
            epoch,
            sticky: Sticky::new(16 * 1024),
            open: None,
            offsets_sent: false,
        })
    }
}

fn epoch_of(epoch: i32) -> Result<i16> {
    i16::try_from(epoch).map_err(|_| Error::InvalidArgument(format!("the coordinator answered epoch {epoch}")))
}

impl TransactionalProducer {
    /// The transactional id.
    pub fn transactional_id(&self) -> &str {
        &self.config.transactional_id
    }

    /// The producer id and epoch the next transaction writes with.
    pub fn identity(&self) -> (i64, i16) {
        (self.producer_id, self.epoch)
    }

    /// Begins a transaction. Fails if one is open.
    pub fn begin(&mut self) -> Result<()> {
        if self.open.is_some() {
            return Err(Error::InvalidArgument("a transaction is open: commit or abort it first".into()));
        }
        self.open = Some(BTreeMap::new());
        Ok(())
    }

    /// Adds `record` to the open transaction; returns the partition it goes to. Written at
    /// commit, or before once its partition's buffer is full.
    pub async fn send(&mut self, mut record: ProducerRecord) -> Result<u32> {
        if self.open.is_none() {
            return Err(Error::InvalidArgument("no transaction is open: call begin first".into()));
        }
        if record.is_delayed() {
            return Err(Error::InvalidArgument("a delayed record cannot be part of a transaction".into()));
        }
        let topic = self.client.topic(record.topic()).await?;
        let partitions = topic.partition_count();
        let key = record.key_bytes().map(|k| &k[..]);
        let partition = choose(record.explicit_partition(), key, partitions.max(1), &self.sticky, record.size_bytes());
        if partition >= partitions {
            let message =
                format!("topic {} has {partitions} partitions; there is no partition {partition}", topic.name);
            return Err(Error::broker(ErrorCode::UnknownPartition, message));
        }
        record.stamp_now();
        let size = record.size_bytes();
        let tp = (record.topic_arc().clone(), partition);
        let part = self.open.as_mut().expect("checked above").entry(tp.clone()).or_default();
        part.records.push(record.record);
        part.bytes += size;
        if part.bytes >= self.config.max_batch_bytes {
            self.add_partitions(std::slice::from_ref(&tp)).await?;
            self.write_partition(&tp).await?;
        }
        Ok(partition)
    }

    /// Commits consumer group `group`'s offsets (each the *next* offset to read) as part of the
    /// open transaction: they become the group's committed offsets if and when it commits, and
    /// never if it aborts — exactly-once consume-transform-produce. Until the transaction ends,
    /// a member fetching these partitions' offsets waits (the coordinator answers
    /// CONCURRENT_TRANSACTIONS, which the SDK retries).
    pub async fn send_offsets(&mut self, group: &str, offsets: &BTreeMap<TopicPartition, u64>) -> Result<()> {
        if self.open.is_none() {
            return Err(Error::InvalidArgument("no transaction is open: call begin first".into()));
        }
        let request = v1::TxnCommitOffsetsRequest {
            transactional_id: self.config.transactional_id.clone(),
            producer_id: self.producer_id,
            epoch: i32::from(self.epoch),
            group: group.to_owned(),
            offsets: offsets
                .iter()
                .map(|(tp, offset)| v1::OffsetToCommit {
                    topic: tp.topic().to_owned(),
                    partition: tp.partition(),
                    offset: *offset,
                    metadata: String::new(),
                })
                .collect(),
        };
        let deadline = Instant::now() + self.client.config().operation_timeout;
        self.coordinator
            .call("TxnCommitOffsets", deadline, |mut rpc: TxnRpc| {
                let request = request.clone();
                async move { rpc.txn_commit_offsets(request).await }
            })
            .await?;
        self.offsets_sent = true;
        Ok(())
    }

    /// Commits the open transaction: writes what is buffered, then has the coordinator commit.
    /// Returns once every partition has its commit marker: `read_committed` consumers then see
    /// the transaction's records. On an error the transaction's outcome is the coordinator's
    /// (abort it, or it is aborted at its timeout), and a fenced producer must be replaced.
    pub async fn commit(&mut self) -> Result<()> {
        self.flush().await?;
        self.end(true).await
    }

    /// Writes every buffered record of the open transaction now (they stay invisible to
    /// `read_committed` consumers until the commit), one batch per partition, all partitions
    /// at once.
    pub async fn flush(&mut self) -> Result<()> {
        let Some(parts) = &self.open else {
            return Err(Error::InvalidArgument("no transaction is open: call begin first".into()));
        };
        let to_add: Vec<(Arc<str>, u32)> = parts.keys().cloned().collect();
        self.add_partitions(&to_add).await?;
        let keys: Vec<(Arc<str>, u32)> = to_add.into_iter().filter(|tp| !self.buffered(tp).is_empty()).collect();
        let writes = keys.iter().map(|tp| self.write_batch(tp));
        let written = try_join_all(writes).await?;
        for (tp, next) in keys.iter().zip(written) {
            let part = self.open.as_mut().expect("open").get_mut(tp).expect("part");
            part.records.clear();
            part.bytes = 0;
            part.next_sequence = next;
        }
        Ok(())
    }

    /// Aborts the open transaction: nothing of it is ever visible to `read_committed`
    /// consumers.
    pub async fn abort(&mut self) -> Result<()> {
        let Some(parts) = &self.open else {
            return Err(Error::InvalidArgument("no transaction is open: call begin first".into()));
        };
        if self.offsets_sent || parts.values().any(|p| p.added) {
            return self.end(false).await;
        }
        self.open = None;
        Ok(())
    }

    fn buffered(&self, tp: &(Arc<str>, u32)) -> &[Record] {
        self.open.as_ref().and_then(|o| o.get(tp)).map_or(&[], |p| &p.records)
    }

    /// Adds the partitions of `tps` not yet in the transaction, in one call.
    async fn add_partitions(&mut self, tps: &[(Arc<str>, u32)]) -> Result<()> {
        let open = self.open.as_ref().expect("a transaction is open");
        let mut by_topic: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for tp in tps.iter().filter(|tp| !open.get(*tp).is_some_and(|p| p.added)) {
            by_topic.entry(&tp.0).or_default().push(tp.1);
        }
        if by_topic.is_empty() {
            return Ok(());
        }
        let partitions: Vec<v1::TxnTopicPartitions> = by_topic
            .into_iter()
            .map(|(topic, partitions)| v1::TxnTopicPartitions { topic: topic.to_owned(), partitions })
            .collect();
        let request = v1::AddTxnPartitionsRequest {
            transactional_id: self.config.transactional_id.clone(),
            producer_id: self.producer_id,
            epoch: i32::from(self.epoch),
            partitions,
            groups: Vec::new(),
        };
        let deadline = Instant::now() + self.client.config().operation_timeout;
        self.coordinator
            .call("AddTxnPartitions", deadline, |mut rpc: TxnRpc| {
                let request = request.clone();
                async move { rpc.add_txn_partitions(request).await }
            })
            .await?;
        let open = self.open.as_mut().expect("a transaction is open");
        tps.iter().for_each(|tp| open.entry(tp.clone()).or_default().added = true);
        Ok(())
    }

    /// Writes `tp`'s buffered records now.
    async fn write_partition(&mut self, tp: &(Arc<str>, u32)) -> Result<()> {
        let next = self.write_batch(tp).await?;
        let part = self.open.as_mut().expect("open").get_mut(tp).expect("part");
        part.records.clear();
        part.bytes = 0;
        part.next_sequence = next;
        Ok(())
    }

    /// Writes `tp`'s buffered records as one transactional batch; returns the next sequence.
    async fn write_batch(&self, tp: &(Arc<str>, u32)) -> Result<i32> {
        let part = self.open.as_ref().and_then(|o| o.get(tp)).expect("a buffered partition");
        let stamp =
            ProducerStamp { producer_id: self.producer_id, epoch: self.epoch, base_sequence: part.next_sequence };
        let mut builder = BatchBuilder::new(stamp, part.bytes + 64).transactional(true);
        part.records.iter().for_each(|r| builder.push(r));
        let count = i32::try_from(part.records.len()).expect("a batch holds under 2^31 records");
        let batch = builder.finish();
        let (topic, partition) = (tp.0.to_string(), tp.1);
        let call = self.client.call("Produce", Route::Leader { topic: &topic, partition });
        self.client
            .execute(call, |mut rpc| {
                let request = v1::ProduceRequest {
                    topic: topic.clone(),
                    partition,
                    batch: batch.clone(),
                    timeout_ms: 0,
                    ..Default::default()
                };
                async move { rpc.produce(request).await }
            })
            .await?;
        Ok(part.next_sequence + count)
    }

    /// Ends the open transaction at the coordinator; takes the next transaction's identity.
    async fn end(&mut self, commit: bool) -> Result<()> {
        let request = v1::EndTransactionRequest {
            transactional_id: self.config.transactional_id.clone(),
            producer_id: self.producer_id,
            epoch: i32::from(self.epoch),
            commit,
        };
        let deadline = Instant::now() + self.client.config().operation_timeout;
        let answer = self
            .coordinator
            .call("EndTransaction", deadline, |mut rpc: TxnRpc| {
                let request = request.clone();
                async move { rpc.end_transaction(request).await }
            })
            .await?;
        self.producer_id = answer.producer_id;
        self.epoch = epoch_of(answer.epoch)?;
        self.open = None;
        self.offsets_sent = false;
        Ok(())
    }
}
