//! Broker and partition state read at scrape time: nothing here runs on the request path.
//!
//! Each partition group's Raft metrics are one watch `borrow`; high watermarks are a `borrow` of
//! the watch the broker keeps per hosted partition.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabel, EncodeLabelSet, EncodeMetric, LabelSetEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use sluice_common::NodeId;
use sluice_raft::Liveness;
use sluice_raft::typ::{Raft, ServerState, WatchReceiver};
use tokio::sync::watch;

use super::requests::{PartitionTraffic, RequestMetrics};
use crate::controller::{BrokerStateMachine, ControllerGroup};
use crate::disk::DiskState;
use crate::partitions::Partitions;

/// The Raft roles, each a value of the `role` label of `sluice_partition_raft_role`.
const ROLES: [(ServerState, &str); 5] = [
    (ServerState::Leader, "leader"),
    (ServerState::Follower, "follower"),
    (ServerState::Candidate, "candidate"),
    (ServerState::Learner, "learner"),
    (ServerState::Shutdown, "shutdown"),
];

/// One partition group's Raft state on this broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// This member's role.
    pub role: ServerState,
    /// Its current term.
    pub term: u64,
    /// The index of its last log entry; `None` before the group is initialized.
    pub last_log_index: Option<u64>,
    /// The index of the last entry it knows committed.
    pub committed_index: Option<u64>,
    /// The index of the last entry its state machine applied.
    pub applied_index: Option<u64>,
    /// On the leader: each follower's node id and how many entries of the leader's log it is
    /// not known to hold. Empty elsewhere.
    pub follower_lag_entries: Vec<(u64, u64)>,
}

impl GroupView {
    /// Reads the group's Raft metrics as member `node_id` sees them.
    pub fn of(raft: &Raft<BrokerStateMachine>, node_id: u64) -> GroupView {
        let metrics = raft.metrics();
        let m = metrics.borrow_watched();
        // Entries up to and including an index: log indexes start at 0.
        let entries = |index: Option<u64>| index.map_or(0, |i| i + 1);
        let have = entries(m.last_log_index);
        let follower_lag_entries = m
            .replication
            .iter()
            .flatten()
            .filter(|(id, _)| **id != node_id)
            .map(|(id, matched)| (*id, have.saturating_sub(entries(matched.map(|l| l.index)))))
            .collect();
        GroupView {
            role: m.state,
            term: m.current_term,
            last_log_index: m.last_log_index,
            committed_index: m.local_committed.map(|l| l.index),
            applied_index: m.last_applied.map(|l| l.index),
            follower_lag_entries,
        }
    }
}

/// A hosted partition at scrape time.
struct PartitionView {
    topic: String,
    partition: u32,
    group: GroupView,
    high_watermark: Option<u64>,
    /// The last stable offset, open transactions, and the age in seconds of the oldest.
    stable: Option<(u64, u64, u64)>,
    traffic: Option<Arc<PartitionTraffic>>,
    /// Pending delayed messages, on a leader how long the earliest due one is overdue, and how
    /// many this broker released as its leader.
    delays: Option<(u64, Option<u64>, u64)>,
}

/// The `topic` and `partition` labels, and optionally one more.
struct PartitionLabels<'a> {
    topic: &'a str,
    partition: u32,
    extra: Option<(&'static str, LabelValue<'a>)>,
}

enum LabelValue<'a> {
    Str(&'a str),
    Node(u64),
}

impl EncodeLabelSet for PartitionLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        ("topic", self.topic).encode(encoder.encode_label())?;
        ("partition", self.partition).encode(encoder.encode_label())?;
        match self.extra {
            Some((key, LabelValue::Str(v))) => (key, v).encode(encoder.encode_label()),
            Some((key, LabelValue::Node(v))) => (key, v).encode(encoder.encode_label()),
            None => Ok(()),
        }
    }
}

impl<'a> PartitionLabels<'a> {
    fn of(p: &'a PartitionView) -> PartitionLabels<'a> {
        PartitionLabels { topic: &p.topic, partition: p.partition, extra: None }
    }
}

/// Encodes the broker-wide gauges and every hosted partition's Raft state and traffic.
pub struct BrokerCollector {
    node_id: u64,
    controller: Arc<ControllerGroup>,
    partitions: Arc<Partitions>,
    liveness: Arc<Liveness>,
    requests: Arc<RequestMetrics>,
    disk: Option<watch::Receiver<DiskState>>,
}

impl fmt::Debug for BrokerCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerCollector").field("node_id", &self.node_id).finish_non_exhaustive()
    }
}

impl BrokerCollector {
    /// The collector of broker `node_id`.
    pub fn new(
        node_id: u64,
        controller: Arc<ControllerGroup>,
        partitions: Arc<Partitions>,
        liveness: Arc<Liveness>,
        requests: Arc<RequestMetrics>,
    ) -> BrokerCollector {
        BrokerCollector { node_id, controller, partitions, liveness, requests, disk: None }
    }

    /// Reports the free-space guard's latest check too.
    pub(crate) fn with_disk(self, disk: watch::Receiver<DiskState>) -> BrokerCollector {
        BrokerCollector { disk: Some(disk), ..self }
    }

    /// The hosted partitions the metadata names, with their state now.
    fn partitions_now(&self) -> Vec<PartitionView> {
        let assigned = self.controller.metadata().read(|m| m.partitions_of(NodeId(self.node_id)));
        let traffic = self.requests.traffic_by_group();
        let mut views: Vec<PartitionView> = assigned
            .into_iter()
            .filter_map(|p| {
                let raft = self.partitions.raft(p.group_id)?;
                let group = GroupView::of(&raft, self.node_id);
                let delays = self.delays_of(p.group_id, group.role == ServerState::Leader, group.term);
                Some(PartitionView {
                    topic: p.topic.as_str().to_owned(),
                    partition: p.partition.0,
                    group,
                    high_watermark: self.partitions.high_watermark(p.group_id).map(|w| *w.borrow()),
                    stable: self.partitions.stable(p.group_id).map(|s| stable_view(&s.borrow())),
                    traffic: traffic.get(&p.group_id).cloned(),
                    delays,
                })
            })
            .collect();
        views.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        views
    }

    /// A partition's pending delayed messages, and if `leading` how far past due the earliest
    /// is (0 if none is due): two reads of the store.
    fn delays_of(&self, group: u64, leading: bool, term: u64) -> Option<(u64, Option<u64>, u64)> {
        let delays = self.partitions.delays()?;
        let pending = delays.store().count(group).ok()?;
        let overdue = if leading && pending > 0 {
            let now = crate::delays::wall_clock_ms();
            delays.next_due(group, term).ok().map(|due| due.map_or(0, |due| now.saturating_sub(due)))
        } else {
            None
        };
        Some((pending, overdue, delays.metrics().released_in(group)))
    }

    fn encode_node(&self, encoder: &mut DescriptorEncoder, hosted: usize, led: usize) -> fmt::Result {
        let leader = u64::from(self.controller.is_leader());
        let live = self.liveness.live_peers().len() as u64;
        for (name, help, value) in [
            ("sluice_controller_leader", "1 if this broker leads the controller group, else 0.", leader),
            ("sluice_live_peers", "Other brokers this broker has heard from within node_timeout_ms.", live),
            ("sluice_partitions_hosted", "Partition replicas this broker hosts.", hosted as u64),
            ("sluice_partitions_led", "Partition replicas this broker hosts and leads.", led as u64),
            (
                "sluice_max_replicas",
                "The most partition replicas this broker hosts (max_replicas, or its open-file budget; 0: no limit).",
                u64::from(self.liveness.resources(self.node_id).max_replicas),
            ),
            (
                "sluice_partitions_parked",
                "Partition replicas stopped by a full disk (ENOSPC), waiting for space to start again.",
                self.partitions.parked_count() as u64,
            ),
            (
                "sluice_replicas_offline",
                "Partition replicas assigned to this broker that it is not running: parked, failing to start, or not started yet.",
                self.partitions.offline_count(),
            ),
            (
                "sluice_partitions_under_replicated",
                "Partitions this broker leads in which some replica is not live or more than 64 entries behind.",
                u64::from(self.liveness.resources(self.node_id).under_replicated),
            ),
            (
                "sluice_broker_stopping",
                "1 while this broker is handing its leaderships over before it stops (a controlled shutdown).",
                u64::from(self.liveness.is_stopping(self.node_id)),
            ),
        ] {
            ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
        self.encode_disk(encoder)?;
        encode_files(encoder)?;
        self.encode_segment_cache(encoder)
    }

    /// The shared cache of sealed segments' open files (docs/OPERATIONS.md).
    fn encode_segment_cache(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let stats = self.partitions.segment_cache_stats();
        for (name, help, value) in [
            ("sluice_segment_cache_open_files", "Files the sealed-segment cache holds open.", stats.open_files as u64),
            ("sluice_segment_cache_max_open_files", "The bound on them.", stats.max_open_files as u64),
        ] {
            ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
        for (name, help, value) in [
            ("sluice_segment_cache_hits", "Reads of a sealed segment that found it open.", stats.hits),
            ("sluice_segment_cache_misses", "Reads of a sealed segment that had to open it.", stats.misses),
            ("sluice_segment_cache_evictions", "Sealed segments closed to make room.", stats.evictions),
            ("sluice_segment_files_idle_closed", "Segment log files closed after going unused.", stats.idle_closed),
            (
                "sluice_segment_files_idle_reopened",
                "Segment log files reopened after such a close.",
                stats.idle_reopened,
            ),
        ] {
            ConstCounter::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)?;
        }
        Ok(())
    }

    /// The free-space guard's latest check, once there was one (docs/OPERATIONS.md).
    fn encode_disk(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let Some(disk) = self.disk.as_ref().map(|d| *d.borrow()).filter(|d| d.checked) else { return Ok(()) };
        for (name, help, value) in [
            ("sluice_disk_free_bytes", "Free bytes on the data directory's file system.", disk.free_bytes),
            ("sluice_disk_total_bytes", "Size of the data directory's file system.", disk.total_bytes),
            (
                "sluice_disk_threshold_bytes",
                "Free space below which the broker refuses writes (0: the guard is off).",
                disk.threshold_bytes,
            ),
            ("sluice_disk_full", "1 while the broker refuses writes for want of disk space.", u64::from(disk.full)),
        ] {
            ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
        Ok(())
    }
}

impl Collector for BrokerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let parts = self.partitions_now();
        let hosted = self.partitions.group_ids();
        let led = hosted.iter().filter(|g| self.partitions.raft(**g).is_some_and(|r| r.is_leader())).count();
        self.encode_node(&mut encoder, hosted.len(), led)?;
        encode_roles(&mut encoder, &parts)?;
        encode_raft_positions(&mut encoder, &parts)?;
        encode_lags(&mut encoder, &parts)?;
        encode_delays(&mut encoder, &parts)?;
        encode_traffic(&mut encoder, &parts)
    }
}

fn encode_roles(encoder: &mut DescriptorEncoder, parts: &[PartitionView]) -> fmt::Result {
    let help = "1 for this replica's Raft role in the partition group (label role), 0 for the others.";
    let mut metric = encoder.encode_descriptor("sluice_partition_raft_role", help, None, MetricType::Gauge)?;
    for p in parts {
        for (role, name) in ROLES {
            let labels = PartitionLabels { extra: Some(("role", LabelValue::Str(name))), ..PartitionLabels::of(p) };
            ConstGauge::new(u64::from(p.group.role == role)).encode(metric.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// The process's open files and its open-file limit (unlimited: no sample).
fn encode_files(encoder: &mut DescriptorEncoder) -> fmt::Result {
    let gauges = [
        ("sluice_open_files", "Files (and sockets) this broker process has open.", crate::files::open_files()),
        ("sluice_open_files_limit", "The broker's open-file limit (RLIMIT_NOFILE).", crate::files::open_file_limit()),
    ];
    for (name, help, value) in gauges {
        if let Some(value) = value {
            ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
    }
    let help = "Bytes of recently appended entries the partition replicas keep in memory for their readers.";
    let cached = sluice_raft::tail_cache::cached_bytes() as u64;
    ConstGauge::new(cached).encode(encoder.encode_descriptor(
        "sluice_tail_cache_bytes",
        help,
        None,
        MetricType::Gauge,
    )?)
}

/// A per-partition gauge; partitions for which `value` is `None` get no sample.
type Position = fn(&PartitionView) -> Option<u64>;

fn encode_raft_positions(encoder: &mut DescriptorEncoder, parts: &[PartitionView]) -> fmt::Result {
    let gauges: [(&str, &str, Position); 8] = [
        ("sluice_partition_raft_term", "The replica's current Raft term.", |p| Some(p.group.term)),
        ("sluice_partition_raft_last_log_index", "Index of the last entry in the replica's Raft log.", |p| {
            p.group.last_log_index
        }),
        ("sluice_partition_raft_committed_index", "Index of the last entry the replica knows committed.", |p| {
            p.group.committed_index
        }),
        ("sluice_partition_raft_applied_index", "Index of the last entry the replica applied.", |p| {
            p.group.applied_index
        }),
        (
            "sluice_partition_high_watermark_offset",
            "The replica's high watermark: the offset the next committed message gets.",
            |p| p.high_watermark,
        ),
        (
            "sluice_partition_last_stable_offset",
            "The last stable offset: read_committed consumers read below it (docs/TRANSACTIONS.md).",
            |p| p.stable.map(|s| s.0),
        ),
        ("sluice_partition_open_transactions", "Transactions open in the partition.", |p| p.stable.map(|s| s.1)),
        (
            "sluice_partition_oldest_open_transaction_age_seconds",
            "Age of the partition's oldest open transaction (0: none): it holds the last stable offset back.",
            |p| p.stable.map(|s| s.2),
        ),
    ];
    for (name, help, value) in gauges {
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for p in parts {
            if let Some(v) = value(p) {
                ConstGauge::new(v).encode(metric.encode_family(&PartitionLabels::of(p))?)?;
            }
        }
    }
    Ok(())
}

fn encode_delays(encoder: &mut DescriptorEncoder, parts: &[PartitionView]) -> fmt::Result {
    let help = "Delayed messages the partition holds pending (every replica).";
    let mut metric = encoder.encode_descriptor("sluice_delay_pending", help, None, MetricType::Gauge)?;
    for p in parts {
        if let Some((pending, _, _)) = p.delays {
            ConstGauge::new(pending).encode(metric.encode_family(&PartitionLabels::of(p))?)?;
        }
    }
    let help = "On the partition leader: how long its earliest pending delayed message is past due (0: none due).";
    let mut metric = encoder.encode_descriptor("sluice_delay_overdue_seconds", help, None, MetricType::Gauge)?;
    for p in parts {
        if let Some((_, Some(overdue_ms), _)) = p.delays {
            ConstGauge::new(overdue_ms as f64 / 1000.0).encode(metric.encode_family(&PartitionLabels::of(p))?)?;
        }
    }
    let help = "Delayed messages this broker released as the partition's leader (sum over brokers; rate() for releases per second).";
    let mut metric = encoder.encode_descriptor("sluice_delay_released_messages", help, None, MetricType::Counter)?;
    for p in parts {
        if let Some((_, _, released)) = p.delays {
            ConstCounter::new(released).encode(metric.encode_family(&PartitionLabels::of(p))?)?;
        }
    }
    Ok(())
}

fn encode_lags(encoder: &mut DescriptorEncoder, parts: &[PartitionView]) -> fmt::Result {
    let help = "On the partition leader: entries of its log each follower is not known to hold.";
    let mut metric =
        encoder.encode_descriptor("sluice_partition_follower_lag_entries", help, None, MetricType::Gauge)?;
    for p in parts {
        for (follower, lag) in &p.group.follower_lag_entries {
            let labels =
                PartitionLabels { extra: Some(("follower", LabelValue::Node(*follower))), ..PartitionLabels::of(p) };
            ConstGauge::new(*lag).encode(metric.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

fn encode_traffic(encoder: &mut DescriptorEncoder, parts: &[PartitionView]) -> fmt::Result {
    type Field = fn(&PartitionTraffic) -> u64;
    let counters: [(&str, &str, Field); 3] = [
        ("sluice_produce_messages", "Messages appended by produce requests to the partition led here.", |t| {
            t.produced_messages.load(Ordering::Relaxed)
        }),
        ("sluice_produce_bytes", "Record batch bytes appended by produce requests to the partition led here.", |t| {
            t.produced_bytes.load(Ordering::Relaxed)
        }),
        ("sluice_fetch_bytes", "Record batch bytes returned by fetches of the partition led here.", |t| {
            t.fetched_bytes.load(Ordering::Relaxed)
        }),
    ];
    for (name, help, value) in counters {
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for p in parts {
            if let Some(t) = &p.traffic {
                ConstCounter::new(value(t)).encode(metric.encode_family(&PartitionLabels::of(p))?)?;
            }
        }
    }
    Ok(())
}

/// The last stable offset, open transactions and the oldest one's age in seconds, by this
/// broker's clock.
fn stable_view(s: &sluice_raft::partition::Stable) -> (u64, u64, u64) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let age = s.oldest_open_ms.map_or(0, |started| now.saturating_sub(started) / 1000);
    (s.offset, s.open as u64, age)
}
