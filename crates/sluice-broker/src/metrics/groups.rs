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

use crate::groups::{GroupLag, GroupsService};

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
