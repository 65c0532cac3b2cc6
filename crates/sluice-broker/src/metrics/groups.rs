//! Consumer lag of the groups this broker coordinates, refreshed when a scrape comes in.
//!
//! Lag needs the end of each consumed partition and the timestamp of the first unconsumed
//! message, which may live on another broker: so it is gathered asynchronously
//! ([`GroupsService::lag`]) just before the exposition is rendered, bounded in time, and the
//! collector encodes what was gathered. Groups coordinated elsewhere are left to their
//! coordinator's endpoint, so summing over brokers counts each group once.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, LabelSetEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::groups::{GroupLag, GroupsService, RetryCounts, RetryRow};

/// How long a scrape waits for the lag of partitions led elsewhere.
const LAG_TIMEOUT: Duration = Duration::from_secs(2);

/// The lag rows of the latest scrape, shared by the refresher and the collector.
#[derive(Debug, Clone, Default)]
pub(super) struct LagRows(Arc<Mutex<Vec<GroupLag>>>);

impl LagRows {
    /// Replaces the rows with the lag of `groups` now.
    pub async fn refresh(&self, groups: &GroupsService) {
        let rows = groups.lag(LAG_TIMEOUT).await;
        *self.0.lock().expect("lag rows") = rows;
    }
}

/// Encodes the lag rows.
#[derive(Debug)]
pub(super) struct LagCollector(pub LagRows);

struct Labels<'a>(&'a GroupLag);

impl EncodeLabelSet for Labels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        use prometheus_client::encoding::EncodeLabel;
        ("group", self.0.group.as_str()).encode(encoder.encode_label())?;
        ("topic", self.0.topic.as_str()).encode(encoder.encode_label())?;
        ("partition", self.0.partition).encode(encoder.encode_label())
    }
}

impl Collector for LagCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let rows = self.0.0.lock().expect("lag rows").clone();
        let help = "Messages between the group's committed offset (clamped to the log start) and the partition's end.";
        let mut metric = encoder.encode_descriptor("sluice_group_lag_messages", help, None, MetricType::Gauge)?;
        for row in &rows {
            ConstGauge::new(row.messages).encode(metric.encode_family(&Labels(row))?)?;
        }
        let help = "Age of the group's first unconsumed message in the partition, in seconds; 0 when caught up.";
        let mut metric = encoder.encode_descriptor("sluice_group_lag_seconds", help, None, MetricType::Gauge)?;
        for row in &rows {
            ConstGauge::new(row.seconds).encode(metric.encode_family(&Labels(row))?)?;
        }
        Ok(())
    }
}

/// A metric's name, help, and value in a row.
type Column<T> = (&'static str, &'static str, fn(&RetryRow) -> T);

/// Encodes the retry figures of the groups this broker coordinates (docs/METRICS.md,
/// "Retries"), read from the coordinators when scraped.
#[derive(Debug)]
pub(super) struct RetryCollector(pub GroupsService);

struct GroupLabel<'a>(&'a str);

impl EncodeLabelSet for GroupLabel<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        use prometheus_client::encoding::EncodeLabel;
        ("group", self.0).encode(encoder.encode_label())
    }
}

struct AttemptLabels<'a>(&'a str, &'a str);

impl EncodeLabelSet for AttemptLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        use prometheus_client::encoding::EncodeLabel;
        ("group", self.0).encode(encoder.encode_label())?;
        ("attempt", self.1).encode(encoder.encode_label())
    }
}

impl Collector for RetryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        use prometheus_client::metrics::counter::ConstCounter;
        let rows = self.0.retries();
        let gauges: [Column<Option<u64>>; 2] = [
            (
                "sluice_group_retry_waiting_messages",
                "Messages of the group waiting for another attempt, parked ones included.",
                |r| r.waiting,
            ),
            (
                "sluice_group_dlq_pending_messages",
                "Dead letters of the group reserved and not yet written to its DLQ topic.",
                |r| r.dlq_pending,
            ),
        ];
        for (name, help, value) in gauges {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for row in &rows {
                if let Some(v) = value(row) {
                    ConstGauge::new(v).encode(metric.encode_family(&GroupLabel(&row.group))?)?;
                }
            }
        }
        let counters: [Column<u64>; 2] = [
            (
                "sluice_group_dead_lettered_messages",
                "Messages of the group sent to its dead-letter queue by this broker (the atomic step).",
                |r| r.counts.dead_lettered,
            ),
            (
                "sluice_group_dlq_written_messages",
                "Dead letters of the group this broker wrote to its DLQ topic.",
                |r| r.counts.dlq_written,
            ),
        ];
        for (name, help, value) in counters {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for row in &rows {
                ConstCounter::new(value(row)).encode(metric.encode_family(&GroupLabel(&row.group))?)?;
            }
        }
        let help = "Retries of the group this broker handed out, by attempt number (17+ together).";
        let mut metric = encoder.encode_descriptor("sluice_group_retries", help, None, MetricType::Counter)?;
        for row in &rows {
            for (i, n) in row.counts.by_attempt.iter().enumerate().filter(|(_, n)| **n > 0) {
                let label = RetryCounts::attempt_label(i);
                ConstCounter::new(*n).encode(metric.encode_family(&AttemptLabels(&row.group, &label))?)?;
            }
        }
        Ok(())
    }
}
