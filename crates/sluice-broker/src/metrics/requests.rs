//! Produce and fetch metrics, recorded by the client API once per request: a counter by outcome
//! code, a latency histogram, and per-partition message and byte counters added per batch.
//!
//! The per-partition counters live in a table keyed by Raft group id, not in a labelled
//! `Family`: looking a family up by `(topic, partition)` would build an owned label set on every
//! request. The collector attaches the topic and partition labels at scrape time instead.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use sluice_proto::ErrorCode;
use sluice_storage::SyncObserver;

use crate::filters::ScanStats;

/// Upper bounds of the latency buckets, in seconds: 0.1 ms to 10 s in 1-2.5-5 steps, from an
/// acknowledgement without fsync on an idle broker to a produce waiting out a slow disk.
pub const LATENCY_BUCKETS_SECONDS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The `code` label: a client error code's stable name (`OK`, `NOT_LEADER`, …), so the label
/// has as many values as the protocol has codes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CodeLabel(&'static str);

impl EncodeLabelSet for CodeLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> std::fmt::Result {
        prometheus_client::encoding::EncodeLabel::encode(&("code", self.0), encoder.encode_label())
    }
}

/// The `group` and `topic` labels of the filter metrics. A fetch outside a group has group "".
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GroupTopic {
    group: String,
    topic: String,
}

/// What subscription filters did on this broker, by consumer group and topic.
#[derive(Debug, Default)]
struct FilterMetrics {
    matched: Family<GroupTopic, Counter>,
    skipped: Family<GroupTopic, Counter>,
    errors: Family<GroupTopic, Counter>,
    evaluating: Family<GroupTopic, Counter<f64, AtomicU64>>,
    /// The label sets in use: the group name comes from clients, so past
    /// [`MAX_FILTER_LABEL_SETS`] new ones are counted under the group `_other`.
    seen: std::sync::Mutex<HashSet<GroupTopic>>,
}

/// Most (group, topic) pairs the filter metrics keep apart.
const MAX_FILTER_LABEL_SETS: usize = 1000;

impl FilterMetrics {
    fn labels(&self, group: &str, topic: &str) -> GroupTopic {
        let labels = GroupTopic { group: group.to_owned(), topic: topic.to_owned() };
        let mut seen = self.seen.lock().expect("filter labels lock");
        if seen.contains(&labels) {
            return labels;
        }
        if seen.len() >= MAX_FILTER_LABEL_SETS {
            return GroupTopic { group: "_other".into(), topic: topic.to_owned() };
        }
        seen.insert(labels.clone());
        labels
    }
}

/// What one partition's leader on this broker took in and handed out.
#[derive(Debug, Default)]
pub struct PartitionTraffic {
    /// Messages of the batches appended by produce requests (duplicates excluded).
    pub produced_messages: AtomicU64,
    /// Bytes of those batches, as sent.
    pub produced_bytes: AtomicU64,
    /// Batch bytes returned by fetches.
    pub fetched_bytes: AtomicU64,
}

/// One request kind's counter by code and latency histogram.
#[derive(Debug)]
struct RequestKind {
    requests: Family<CodeLabel, Counter>,
    latency: Histogram,
}

impl RequestKind {
    fn new() -> RequestKind {
        let kind = RequestKind { requests: Family::default(), latency: Histogram::new(LATENCY_BUCKETS_SECONDS) };
        // Present from the start, so that a rate over a fresh broker reads 0 rather than nothing.
        drop(kind.requests.get_or_create(&CodeLabel(ErrorCode::Ok.as_str_name())));
        kind
    }

    fn answered(&self, code: ErrorCode, latency: Duration) {
        self.requests.get_or_create(&CodeLabel(code.as_str_name())).inc();
        if code == ErrorCode::Ok {
            self.latency.observe(latency.as_secs_f64());
        }
    }

    /// Registers `sluice_{kind}_requests` and `sluice_{kind}_latency_seconds` (prometheus-client
    /// ends each help text with a period).
    fn register(&self, registry: &mut Registry, kind: &str, requests_help: &str, latency_help: &str) {
        registry.register(format!("sluice_{kind}_requests"), requests_help.to_owned(), self.requests.clone());
        registry.register_with_unit(
            format!("sluice_{kind}_latency"),
            latency_help.to_owned(),
            Unit::Seconds,
            self.latency.clone(),
        );
    }
}

/// The client API's request metrics on one broker, and the fsync times of its partition logs
/// (what a produce's commit wait is made of).
#[derive(Debug)]
pub struct RequestMetrics {
    produce: RequestKind,
    /// Batches answered before their commit (`ACKS_LEADER`, `ACKS_NONE`) whose commit failed.
    early_failed: Family<CodeLabel, Counter>,
    fetch: RequestKind,
    log_syncs: Histogram,
    filters: FilterMetrics,
    /// Per-partition counters by Raft group id: only partitions hosted here, pruned when one is
    /// added (see [`RequestMetrics::traffic`]).
    traffic: RwLock<HashMap<u64, Arc<PartitionTraffic>>>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics::new()
    }
}

impl RequestMetrics {
    /// All counters at zero.
    pub fn new() -> RequestMetrics {
        RequestMetrics {
            produce: RequestKind::new(),
            early_failed: Family::default(),
            fetch: RequestKind::new(),
            log_syncs: Histogram::new(LATENCY_BUCKETS_SECONDS),
            filters: FilterMetrics::default(),
            traffic: RwLock::default(),
        }
    }

    /// Adds the request counters and histograms to `registry` (the per-partition counters are
    /// encoded by the broker's collector).
    pub fn register(&self, registry: &mut Registry) {
        self.produce.register(
            registry,
            "produce",
            "Produce requests answered, by outcome code",
            "Time from receiving a produce request to answering it OK, commit wait included",
        );
        registry.register(
            "sluice_produce_early_answer_failures",
            "Batches answered before their commit (acks leader or none) whose commit then failed, by outcome code: \
             acknowledged writes the producer may think are stored",
            self.early_failed.clone(),
        );
        self.fetch.register(
            registry,
            "fetch",
            "Fetch requests answered, by outcome code",
            "Time from receiving a fetch request to answering it OK, less any wait for new data (long poll)",
        );
        registry.register_with_unit(
            "sluice_log_sync_latency",
            "Time one fsync of a partition log took (the group commit's fdatasync, or the relaxed policy's timed one)",
            Unit::Seconds,
            self.log_syncs.clone(),
        );
        let f = &self.filters;
        registry.register(
            "sluice_filter_matched_messages",
            "Messages a fetch filter matched and returned, by consumer group and topic",
            f.matched.clone(),
        );
        registry.register(
            "sluice_filter_skipped_messages",
            "Messages a fetch filter examined and did not return (evaluation errors included), by consumer group and topic",
            f.skipped.clone(),
        );
        registry.register(
            "sluice_filter_evaluation_errors",
            "Messages whose filter evaluation failed (a type mismatch; the message did not match), by consumer group and topic",
            f.errors.clone(),
        );
        registry.register_with_unit(
            "sluice_filter_evaluation",
            "Time fetch filters spent examining batches, by consumer group and topic",
            Unit::Seconds,
            f.evaluating.clone(),
        );
    }

    /// A filtered fetch for `group` (empty outside a group) on `topic` did `stats`.
    pub fn filtered(&self, group: &str, topic: &str, stats: &ScanStats) {
        let f = &self.filters;
        let labels = f.labels(group, topic);
        f.matched.get_or_create(&labels).inc_by(stats.matched);
        f.skipped.get_or_create(&labels).inc_by(stats.skipped);
        f.errors.get_or_create(&labels).inc_by(stats.errors);
        f.evaluating.get_or_create(&labels).inc_by(stats.evaluating.as_secs_f64());
    }

    /// What the broker's flusher tells of each fsync it ran.
    pub fn log_sync_observer(&self) -> SyncObserver {
        let syncs = self.log_syncs.clone();
        Arc::new(move |took| syncs.observe(took.as_secs_f64()))
    }

    /// A produce request was answered with `code` after `latency`.
    pub fn produce_answered(&self, code: ErrorCode, latency: Duration) {
        self.produce.answered(code, latency);
    }

    /// A batch answered before its commit failed to commit with `code`.
    pub fn produce_early_failed(&self, code: ErrorCode) {
        self.early_failed.get_or_create(&CodeLabel(code.as_str_name())).inc();
    }

    /// A fetch request was answered with `code`; `latency` excludes its wait for new data.
    pub fn fetch_answered(&self, code: ErrorCode, latency: Duration) {
        self.fetch.answered(code, latency);
    }

    /// A batch of `messages` messages and `bytes` bytes was appended to group `group_id`.
    /// `hosted` lists the groups hosted here; it is called only when the group is new here.
    pub fn produced(&self, group_id: u64, messages: u32, bytes: usize, hosted: impl FnOnce() -> Vec<u64>) {
        let t = self.traffic(group_id, hosted);
        t.produced_messages.fetch_add(u64::from(messages), Ordering::Relaxed);
        t.produced_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A fetch of group `group_id` returned `bytes` bytes of batches.
    pub fn fetched(&self, group_id: u64, bytes: usize, hosted: impl FnOnce() -> Vec<u64>) {
        self.traffic(group_id, hosted).fetched_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The counters of every group served since it started being hosted here.
    pub fn traffic_by_group(&self) -> HashMap<u64, Arc<PartitionTraffic>> {
        self.traffic.read().expect("traffic lock").clone()
    }

    /// The counters of `group_id`, added if new. Adding one drops those of groups no longer
    /// hosted, so the table stays as large as what this broker hosts.
    fn traffic(&self, group_id: u64, hosted: impl FnOnce() -> Vec<u64>) -> Arc<PartitionTraffic> {
        if let Some(t) = self.traffic.read().expect("traffic lock").get(&group_id) {
            return Arc::clone(t);
        }
        let hosted: HashSet<u64> = hosted().into_iter().collect();
        let mut all = self.traffic.write().expect("traffic lock");
        all.retain(|g, _| hosted.contains(g));
        Arc::clone(all.entry(group_id).or_default())
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn requests_count_by_code_and_only_ok_ones_are_timed() {
        let m = RequestMetrics::new();
        m.produce_answered(ErrorCode::Ok, Duration::from_micros(300));
        m.produce_answered(ErrorCode::NotLeader, Duration::from_secs(20));
        m.fetch_answered(ErrorCode::OffsetOutOfRange, Duration::ZERO);
        let observe = m.log_sync_observer();
        observe(Duration::from_micros(400));
        observe(Duration::from_millis(3));
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            "sluice_produce_requests_total{code=\"OK\"} 1\n",
            "sluice_produce_requests_total{code=\"NOT_LEADER\"} 1\n",
            "sluice_produce_latency_seconds_count 1\n",
            "sluice_produce_latency_seconds_bucket{le=\"0.0005\"} 1\n",
            "sluice_produce_latency_seconds_bucket{le=\"0.00025\"} 0\n",
            "sluice_fetch_requests_total{code=\"OK\"} 0\n",
            "sluice_fetch_requests_total{code=\"OFFSET_OUT_OF_RANGE\"} 1\n",
            "sluice_fetch_latency_seconds_count 0\n",
            "sluice_log_sync_latency_seconds_count 2\n",
            "sluice_log_sync_latency_seconds_bucket{le=\"0.0005\"} 1\n",
            "sluice_log_sync_latency_seconds_bucket{le=\"0.005\"} 2\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn filter_counters_are_kept_per_group_and_topic_and_bounded() {
        let m = RequestMetrics::new();
        let stats =
            ScanStats { matched: 3, skipped: 7, errors: 1, batches_skipped: 1, evaluating: Duration::from_millis(2) };
        m.filtered("billing", "orders", &stats);
        m.filtered("billing", "orders", &stats);
        m.filtered("", "orders", &stats);
        for i in 0..MAX_FILTER_LABEL_SETS {
            m.filtered(&format!("g{i}"), "t", &stats);
        }
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            "sluice_filter_matched_messages_total{group=\"billing\",topic=\"orders\"} 6\n",
            "sluice_filter_skipped_messages_total{group=\"billing\",topic=\"orders\"} 14\n",
            "sluice_filter_evaluation_errors_total{group=\"\",topic=\"orders\"} 1\n",
            "sluice_filter_evaluation_seconds_total{group=\"billing\",topic=\"orders\"} 0.004\n",
            "sluice_filter_matched_messages_total{group=\"_other\",topic=\"t\"} 6\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn partition_counters_add_per_batch_and_forget_groups_no_longer_hosted() {
        let m = RequestMetrics::new();
        m.produced(7, 3, 100, || vec![7]);
        m.produced(7, 2, 50, || unreachable!("group 7 is known"));
        m.fetched(7, 150, || unreachable!("group 7 is known"));
        let t = &m.traffic_by_group()[&7];
        assert_eq!(t.produced_messages.load(Ordering::Relaxed), 5);
        assert_eq!(t.produced_bytes.load(Ordering::Relaxed), 150);
        assert_eq!(t.fetched_bytes.load(Ordering::Relaxed), 150);
        m.fetched(9, 10, || vec![9]);
        assert_eq!(m.traffic_by_group().keys().copied().collect::<Vec<_>>(), vec![9], "group 7 left");
    }
}
