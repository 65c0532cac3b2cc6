//! A full disk, on one broker of three whose data directory is a small tmpfs (the tests mount
//! one: they need root, and say so and pass vacuously without it).
//!
//! With the free-space guard on, filling the disk makes every partition with a replica there
//! refuse writes with STORAGE_FULL, naming the broker, while reads go on everywhere and
//! `Metadata` shows the broker's disk full; deleting a topic frees the space and writes resume
//! without a restart. With the guard off, ENOSPC stops only that broker's replicas, never the
//! broker; they restart and catch up as soon as space returns. Either way every acknowledged
//! message is still there, once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_broker::BrokerConfig;
use sluice_common::record::ProducerStamp;
use sluice_proto::v1::{DeleteTopicRequest, FetchResponse, MetadataRequest, ProduceResponse, TopicConfig};
use sluice_proto::{Error, ErrorCode, error_of};

use super::catchup::{agreeing_logs, assert_same_entries};
use super::client::{
    admin, batch, code, create_topic, fetch_from_leader, fetch_request, leader_of, messages, wait_live,
};
use super::cluster::Cluster;

/// The tmpfs's size: the controller's store, the guard's threshold and a few MiB of data.
const TMPFS_BYTES: u64 = 48 << 20;
/// The guard's threshold on the small disk.
const THRESHOLD_BYTES: u64 = 32 << 20;
/// Each message's size: 64 KiB, so a few hundred fill the disk.
const VALUE_BYTES: usize = 64 << 10;

/// A tmpfs mounted for one test, unmounted (lazily, in case a file is still open) when dropped.
struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes`, or says why it cannot and returns `None`.
    fn mount(bytes: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).expect("mount point");
        let size = format!("size={bytes}");
        let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", &size, "tmpfs"]).arg(&path).output();
        match mounted {
            Ok(out) if out.status.success() => Some(Tmpfs { _dir: dir, path }),
            Ok(out) => skip(&String::from_utf8_lossy(&out.stderr)),
            Err(e) => skip(&e.to_string()),
        }
    }

    /// Takes all but `leave` bytes of the free space with a file; returns its path.
    fn fill_leaving(&self, leave: u64) -> PathBuf {
        let filler = self.path.join("filler");
        let free = free_bytes(&self.path);
        std::fs::write(&filler, vec![0u8; free.saturating_sub(leave) as usize]).expect("write the filler");
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn skip(why: &str) -> Option<Tmpfs> {
    eprintln!("SKIPPED: cannot mount a tmpfs for a small disk (the test needs root): {}", why.trim());
    None
}

fn free_bytes(path: &Path) -> u64 {
    sluice_storage::disk_space(path).expect("statvfs").free_bytes
}

/// Broker 2 keeps its data on `disk`; every broker checks its disk every 100 ms.
fn on_small_disk(disk: &Path, guard_on: bool) -> impl Fn(&mut BrokerConfig) + use<> {
    let disk = disk.to_owned();
    move |c| {
        c.disk_check_interval_ms = 100;
        if c.node_id == 2 {
            c.data_dir = disk.join("node2");
            c.disk_min_free_bytes = if guard_on { THRESHOLD_BYTES } else { 0 };
        }
    }
}

fn message(topic: &str, i: u64) -> Bytes {
    let value = format!("{topic}-{i:06}-{}", "x".repeat(VALUE_BYTES));
    batch(ProducerStamp::NONE, &[value], 1_000 + i as i64)
}

/// Produces `b` to the leader of `topic`/`partition`, retrying retriable answers other than
/// STORAGE_FULL (which the tests expect) for up to 20 s.
async fn try_produce(cluster: &Cluster, topic: &str, partition: u32, b: Bytes) -> ProduceResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut client = cluster.client(leader_of(cluster, topic, partition).await).await;
        let request = super::client::produce_request(topic, partition, b.clone());
        let r = client.produce(request).await.expect("rpc").into_inner();
        match code(r.error.as_ref()) {
            ErrorCode::StorageFull => return r,
            c if c.is_retriable() && Instant::now() < deadline => {}
            _ => return r,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every message of `topic`/`partition`, by offset, read from its leader.
async fn read_all(cluster: &Cluster, topic: &str, partition: u32) -> BTreeMap<u64, String> {
    let mut out = BTreeMap::new();
    let mut next = 0;
    loop {
        let r: FetchResponse = fetch_from_leader(cluster, fetch_request(topic, partition, next, 0)).await;
        let got = messages(&r, next);
        match got.last() {
            Some((last, _)) => next = last + 1,
            None => return out,
        }
        for (offset, value) in got {
            assert!(out.insert(offset, value).is_none(), "offset {offset} read twice");
        }
    }
}

/// Asserts every acknowledged message is in `topic` at its offset, and nothing is there twice.
async fn assert_acknowledged_kept(cluster: &Cluster, topic: &str, acked: &BTreeMap<(u32, u64), u64>) {
    let partitions: std::collections::BTreeSet<u32> = acked.keys().map(|(p, _)| *p).collect();
    for p in partitions {
        let read = read_all(cluster, topic, p).await;
        // A message's name is its value up to the padding: `{topic}-{i}`.
        let name = |v: &str| v.split('-').take(2).collect::<Vec<_>>().join("-");
        let mut seen = std::collections::HashSet::new();
        for value in read.values() {
            assert!(seen.insert(name(value)), "{topic}/{p}: {} written twice", name(value));
        }
        for ((_, i), offset) in acked.range((p, 0)..(p + 1, 0)) {
            let found = read.get(offset).map(|v| name(v));
            assert_eq!(found, Some(format!("{topic}-{i:06}")), "{topic}/{p} offset {offset}");
        }
    }
}

async fn assert_no_broker_failed(cluster: &Cluster) {
    for b in &cluster.brokers {
        let failed = tokio::time::timeout(Duration::from_millis(1), b.failed()).await;
        assert!(failed.is_err(), "broker {} stopped: {failed:?}", b.config().node_id);
    }
}

/// The Raft groups of `topic`'s partitions.
fn groups_of(cluster: &Cluster, topic: &str) -> Vec<u64> {
    let groups = cluster.brokers[0]
        .controller()
        .metadata()
        .read(|m| m.topic(topic).map(|t| t.partitions.iter().map(|p| p.group_id).collect::<Vec<_>>()));
    groups.expect("the topic exists")
}

async fn delete_topic(cluster: &Cluster, name: &str) {
    let (e, ()) = admin(cluster, |mut c| {
        let request = DeleteTopicRequest { name: name.into() };
        async move { (error_of(c.delete_topic(request).await.expect("rpc").get_ref().error.as_ref()), ()) }
    })
    .await;
    assert_eq!(e, Error::ok(), "deleting {name}");
}

fn rf3(partitions: u32) -> TopicConfig {
    TopicConfig { partitions, replication_factor: 3, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_the_guard_a_full_disk_refuses_writes_keeps_reads_and_resumes_when_a_topic_is_deleted() {
    let Some(disk) = Tmpfs::mount(TMPFS_BYTES) else { return };
    let cluster = Cluster::start_adjusted(3, on_small_disk(&disk.path, true)).await;
    wait_live(&cluster, 3).await;
    assert_eq!(create_topic(&cluster, "keep", rf3(1)).await, Error::ok());
    assert_eq!(create_topic(&cluster, "bulk", rf3(3)).await, Error::ok());
    let mut kept = BTreeMap::new();
    for i in 0..5 {
        let r = try_produce(&cluster, "keep", 0, message("keep", i)).await;
        assert_eq!(code(r.error.as_ref()), ErrorCode::Ok, "{r:?}");
        kept.insert((0, i), r.base_offset);
    }

    tracing::info!("--- bulk writes fill broker 2's disk until the guard refuses them");
    let mut bulk = BTreeMap::new();
    let refused = 'fill: {
        for i in 0..2_000u64 {
            let p = (i % 3) as u32;
            let r = try_produce(&cluster, "bulk", p, message("bulk", i)).await;
            match code(r.error.as_ref()) {
                ErrorCode::Ok => bulk.insert((p, i), r.base_offset),
                ErrorCode::StorageFull => break 'fill r,
                other => panic!("bulk write {i} answered {other:?}: {r:?}"),
            };
        }
        panic!("broker 2's disk never filled: {} MiB free", free_bytes(&disk.path) >> 20);
    };
    let why = error_of(refused.error.as_ref()).message;
    assert!(why.contains("broker 2's disk") && why.contains("threshold"), "{why}");

    tracing::info!("--- every partition with a replica there refuses writes; reads and metadata go on");
    // The other brokers learn it from broker 2's next heartbeat.
    cluster
        .wait_for(Duration::from_secs(5), "every broker to see broker 2's disk full", |c| {
            c.brokers.iter().all(|b| b.partitions().disk_full(2).is_some())
        })
        .await;
    let r = try_produce(&cluster, "keep", 0, message("keep", 99)).await;
    assert_eq!(code(r.error.as_ref()), ErrorCode::StorageFull, "{r:?}");
    let m = cluster.client(0).await.metadata(MetadataRequest { topics: vec![] }).await.expect("rpc").into_inner();
    let full = m.brokers.iter().find(|b| b.node_id == 2).and_then(|b| b.disk_full);
    assert!(full.is_some_and(|f| f.free_bytes < f.threshold_bytes && f.threshold_bytes == THRESHOLD_BYTES), "{m:?}");
    assert_acknowledged_kept(&cluster, "keep", &kept).await;
    assert_acknowledged_kept(&cluster, "bulk", &bulk).await;
    assert_no_broker_failed(&cluster).await;

    tracing::info!("--- deleting the bulk topic frees the disk: writes resume without a restart");
    delete_topic(&cluster, "bulk").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let i = 5;
    loop {
        let r = try_produce(&cluster, "keep", 0, message("keep", i)).await;
        match code(r.error.as_ref()) {
            ErrorCode::Ok => {
                kept.insert((0, i), r.base_offset);
                break;
            }
            ErrorCode::StorageFull => assert!(Instant::now() < deadline, "writes never resumed: {r:?}"),
            other => panic!("answered {other:?}: {r:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_acknowledged_kept(&cluster, "keep", &kept).await;
    assert_no_broker_failed(&cluster).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_no_guard_enospc_stops_only_the_replicas_which_restart_and_catch_up_when_space_returns() {
    let Some(disk) = Tmpfs::mount(TMPFS_BYTES) else { return };
    let cluster = Cluster::start_adjusted(3, on_small_disk(&disk.path, false)).await;
    wait_live(&cluster, 3).await;
    assert_eq!(create_topic(&cluster, "bulk", rf3(3)).await, Error::ok());
    let filler = disk.fill_leaving(4 << 20);

    tracing::info!("--- writes go on through the other two replicas while broker 2's hit ENOSPC");
    let parked = || cluster.brokers[1].partitions().parked_count();
    let mut acked = BTreeMap::new();
    let mut i = 0;
    while parked() == 0 {
        assert!(i < 2_000, "broker 2 never ran out of space: {} KiB free", free_bytes(&disk.path) >> 10);
        let p = (i % 3) as u32;
        let r = try_produce(&cluster, "bulk", p, message("bulk", i)).await;
        assert_eq!(code(r.error.as_ref()), ErrorCode::Ok, "bulk write {i}: {r:?}");
        acked.insert((p, i), r.base_offset);
        i += 1;
    }
    assert_no_broker_failed(&cluster).await;

    tracing::info!("--- space returns: the parked replicas restart and catch up");
    std::fs::remove_file(filler).expect("remove the filler");
    let freed = Instant::now();
    cluster.wait_for(Duration::from_secs(10), "broker 2's replicas running again", |_| parked() == 0).await;
    let restarted = freed.elapsed();
    for group in groups_of(&cluster, "bulk") {
        let (_, theirs, ours) = agreeing_logs(&cluster, group, 1).await;
        assert_same_entries(&theirs, &ours);
    }
    for p in 0..3 {
        leader_of(&cluster, "bulk", p).await;
    }
    // The election timeout is at most 600 ms here; the disk check runs every 100 ms.
    assert!(restarted < Duration::from_secs(2), "the replicas restarted {restarted:?} after space returned");
    assert_acknowledged_kept(&cluster, "bulk", &acked).await;
    assert_no_broker_failed(&cluster).await;
    cluster.shutdown().await;
}
