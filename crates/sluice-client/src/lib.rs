//! The Rust SDK for Sluice: produce to, consume from and administer a Sluice cluster over its
//! client protocol (`sluice-proto`, `proto/client.proto`).
//!
//! It is async (tokio) and talks gRPC to the brokers; it never links server code. Its main
//! types:
//!
//! - [`Client`]: the connection, made from a [`ClientConfig`]. It keeps a metadata cache
//!   (brokers, controller, partition leaders), refreshed when a broker says it is not the
//!   leader and on a timer, and one lazily connected channel per broker.
//! - [`Producer`]: batches records per partition (linger, batch size, bounded buffer memory),
//!   sends each batch to the partition's leader and retries it idempotently.
//! - [`Consumer`]: reads assigned partitions from a position ([`SeekTo`]) with long-poll
//!   fetches that follow leader changes.
//! - [`GroupConsumer`]: a member of a consumer group — subscribes to topics, reads the
//!   partitions the group's coordinator assigns it from the group's committed offsets, and
//!   commits its progress; [`RebalanceListener`] hears about partitions coming and going.
//!   Per message it can `ack`, `nack` (retried after the group's [`RetryPolicy`]) or `reject`
//!   (to the group's dead-letter queue), and consume in key order (docs/RETRIES.md).
//! - [`Admin`]: creates, alters, deletes, lists and describes topics; reports the cluster's status;
//!   lists, describes and resets consumer groups; sets retry policies, redrives and purges
//!   dead-letter queues.
//! - [`Error`]: every failure, with the broker's code and message kept.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use sluice_client::{Client, ClientConfig, ConsumerConfig, ProducerConfig, ProducerRecord, SeekTo, TopicConfig};
//!
//! # async fn run() -> sluice_client::Result<()> {
//! // Bootstrap from SLUICE_BOOTSTRAP, or the local three-node cluster.
//! let client = Client::connect(ClientConfig::from_env()).await?;
//! client.admin().create_topic("orders", &TopicConfig::new(3, 3)).await?;
//! client.admin().wait_for_leaders("orders", Duration::from_secs(10)).await?;
//!
//! let producer = client.producer(ProducerConfig::default()).await?;
//! let written = producer.send(ProducerRecord::new("orders", "order 17 placed").key("customer-4")).await?;
//! println!("written to partition {} at offset {}", written.partition, written.offset);
//!
//! let mut consumer = client.consumer(ConsumerConfig::default())?;
//! consumer.assign("orders", &[written.partition]).await?;
//! consumer.seek(written.partition, SeekTo::Offset(written.offset)).await?;
//! for record in consumer.poll(Duration::from_secs(1)).await? {
//!     println!("{} {:?}", record.offset(), record.value());
//! }
//! # Ok(()) }
//! ```

mod admin;
mod client;
mod config;
mod consumer;
mod delay;
mod error;
mod fetcher;
mod filter;
mod group;
mod half;
mod metadata;
pub mod partitioner;
mod producer;
mod record;
mod redrive;
mod retries;
pub mod schedule;
mod topic_alter;
mod topic_partition;
mod transaction;
mod transaction_admin;

pub use admin::{Admin, BrokerStatus, ClusterStatus, PartitionDescription, TopicDescription};
pub use client::Client;
pub use config::{
    Acks, BOOTSTRAP_ENV, ClientConfig, ConsumerConfig, DEFAULT_BOOTSTRAP, GroupConsumerConfig, Isolation,
    MAX_GROUP_ID_LEN, OffsetReset, ProducerConfig, SeekTo, parse_bootstrap,
};
pub use consumer::Consumer;
pub use delay::{CancelOutcome, DelayedId, DelayedInfo, DelayedListing};
pub use error::{Error, Result};
pub use filter::MessageFilter;
pub use group::{
    GroupConsumer, GroupContext, GroupDescription, GroupListing, GroupMemberDescription, NoRebalanceListener,
    PartitionLag, RebalanceListener,
};
pub use half::{CheckAnswer, HalfCheck, HalfConfig, HalfMessage, HalfProducer, TransactionChecker};
pub use metadata::{BrokerInfo, ClusterMetadata, DiskFull, PartitionInfo, TopicConfig, TopicInfo};
pub use producer::{Delivery, Producer, SendFailure};
pub use record::{ConsumedRecord, ProducerRecord, RecordMetadata};
pub use redrive::{RedrivenTo, redrive_group};
pub use retries::{
    GroupRetryPolicy, PolledRetries, PurgeBefore, RetriesDescription, RetryDelivery, Settle, SettleOutcome, Settled,
    key_hash,
};
pub use schedule::{Cadence, ScheduleInfo};
pub use sluice_common::record::{Compression, DEFAULT_ZSTD_LEVEL, TopicCompression};
pub use sluice_common::retry::{Backoff, RetryPolicy};
pub use sluice_proto::ErrorCode;
pub use topic_alter::{AlteredTopic, ConfigChange, TopicConfigChanges};
pub use topic_partition::TopicPartition;
pub use transaction::{TransactionalConfig, TransactionalProducer};
pub use transaction_admin::TransactionInfo;
