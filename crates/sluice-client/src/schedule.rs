//! Recurring schedules (docs/DELAYS.md, "Schedules"): a named message a topic receives each
//! time a cron expression or an interval fires, kept and fired by the brokers.

use std::time::Duration;

use futures_util::future::join_all;
use sluice_common::record::{BatchBuilder, ProducerStamp};
use sluice_proto::v1;

use crate::client::{Client, Route};
use crate::error::{Error, Result};
use crate::record::ProducerRecord;

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cadence {
    /// A cron expression with seconds, `sec min hour dom mon dow [year]`, read in an IANA time
    /// zone (default UTC): `0 */5 * * * *` fires every five minutes.
    Cron {
        /// The expression.
        expr: String,
        /// The time zone, such as `Europe/Berlin`.
        time_zone: Option<String>,
    },
    /// Every interval (at least 100 ms) from its creation.
    Every(Duration),
}

/// A schedule, as [`Admin::list_schedules`](crate::Admin::list_schedules) shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleInfo {
    /// Its topic.
    pub topic: String,
    /// The partition that keeps it and receives its messages.
    pub partition: u32,
    /// Its name.
    pub name: String,
    /// Its cadence, `cron|TZ|EXPR` or `every|INTERVAL_MS|ANCHOR_MS`.
    pub cadence: String,
    /// Its next fire, ms since the Unix epoch.
    pub next_due_ms: u64,
    /// Its message's key.
    pub key: Option<bytes::Bytes>,
    /// Its message's tag.
    pub tag: Option<String>,
    /// Its message's value size.
    pub value_bytes: u32,
}

/// The partition of `topic` (of `partitions`) that keeps schedule `name`.
pub fn partition_of(name: &str, partitions: u32) -> u32 {
    crc32fast::hash(name.as_bytes()) % partitions.max(1)
}

/// Creates schedule `name` sending `record` (its value, key, tag and properties) to its topic;
/// returns its first fire time.
pub(crate) async fn create(client: &Client, name: &str, cadence: &Cadence, record: &ProducerRecord) -> Result<u64> {
    let topic = record.topic();
    let partition = partition_of(name, client.topic(topic).await?.partition_count());
    let mut batch = BatchBuilder::new(ProducerStamp::NONE, record.size_bytes() + 64);
    batch.push(&record.record);
    let (cron, time_zone, every_ms) = match cadence {
        Cadence::Cron { expr, time_zone } => (expr.clone(), time_zone.clone().unwrap_or_default(), 0),
        Cadence::Every(every) => (String::new(), String::new(), every.as_millis().max(1) as u64),
    };
    let request = v1::CreateScheduleRequest {
        topic: topic.to_owned(),
        partition,
        name: name.to_owned(),
        cron,
        time_zone,
        every_ms,
        record: batch.finish(),
    };
    let call = client.call("CreateSchedule", Route::Leader { topic, partition });
    let answer = client
        .execute(call, |mut rpc| {
            let request = request.clone();
            async move { rpc.create_schedule(request).await }
        })
        .await?;
    Ok(answer.first_due_ms)
}

/// Deletes schedule `name` of `topic`.
pub(crate) async fn delete(client: &Client, topic: &str, name: &str) -> Result<()> {
    let partition = partition_of(name, client.topic(topic).await?.partition_count());
    let call = client.call("DeleteSchedule", Route::Leader { topic, partition });
    client
        .execute(call, |mut rpc| {
            let request = v1::DeleteScheduleRequest { topic: topic.to_owned(), partition, name: name.to_owned() };
            async move { rpc.delete_schedule(request).await }
        })
        .await?;
    Ok(())
}

/// Every schedule of `topic`, by name.
pub(crate) async fn list(client: &Client, topic: &str) -> Result<Vec<ScheduleInfo>> {
    let partitions = client.topic(topic).await?.partition_count();
    let lists = join_all((0..partitions).map(|partition| async move {
        let call = client.call("ListSchedules", Route::Leader { topic, partition });
        let answer = client
            .execute(call, |mut rpc| {
                let request = v1::ListSchedulesRequest { topic: topic.to_owned(), partition };
                async move { rpc.list_schedules(request).await }
            })
            .await?;
        Ok::<_, Error>((partition, answer.schedules))
    }))
    .await;
    let mut all = Vec::new();
    for list in lists {
        let (partition, schedules) = list?;
        all.extend(schedules.into_iter().map(|s| ScheduleInfo {
            topic: topic.to_owned(),
            partition,
            name: s.name,
            cadence: s.cadence,
            next_due_ms: s.next_due_ms,
            key: s.key,
            tag: s.tag,
            value_bytes: s.value_bytes,
        }));
    }
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}
