//! The nemesis: plays a [`Schedule`] against a [`Cluster`] — starts each window's fault,
//! holds it, heals it, waits out the quiet time — and reports every start and heal to a
//! [`FaultLog`] (the history's `fault` events).
//!
//! Healing undoes exactly what the start did: a killed broker is restarted, a paused one is
//! continued, a node's nftables table is deleted, a skewed clock is set back to `+0`, a full
//! disk's filler is deleted. [`Nemesis::heal_everything`] does all of it for every node,
//! whatever the schedule left.
//!
//! The disk-full faults also check the broker's promises with the runner's own probes
//! ([`Probe`]): while the disk is full every probe must be refused (recorded, and checked like
//! any send), the broker must still be running at the heal, and after the heal every
//! partition must take a write again within [`WRITES_RESUME_LIMIT`].

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::disk::Fill;
use crate::net::Direction;
use crate::nodes::Cluster;
use crate::probe::{Answer, Probe};
use crate::schedule::{FLAP_MS, Fault, Schedule, SplitMix64};

/// Where fault starts and heals are recorded.
pub trait FaultLog {
    /// A fault `name` entered `phase` (`start` or `heal`) on `nodes`.
    fn fault(&self, name: &str, phase: &str, nodes: &[u64]) -> Result<()>;
}

/// The libfiu failure points of the `fsync-eio` fault: both calls, failing with EIO (5).
const EIO_POINTS: [&str; 2] = ["posix/io/sync/fsync", "posix/io/sync/fdatasync"];
/// The exit status a broker stops with when its storage fails (docs/DURABILITY.md).
const STORAGE_FAILED_EXIT: i32 = 1;
/// How long after a disk filled every write must be refused: the brokers look at their free
/// space every 200 ms (`crate::disk::CHECK_INTERVAL_MS`), and the others must hear of it.
const REFUSALS_AFTER: Duration = Duration::from_secs(3);
/// How long after a full disk's heal every partition must have taken a write again.
pub const WRITES_RESUME_LIMIT: Duration = Duration::from_secs(30);
/// The pause between rounds of probes while partitions do not take writes yet.
const PROBE_PAUSE: Duration = Duration::from_millis(250);

/// What a started fault did, so that its heal undoes exactly that (in order).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Undo {
    Restart(Vec<u64>),
    Resume(Vec<u64>),
    Reconnect,
    ResetClock(u64),
    /// Disable the EIO failure points; the broker must have stopped meanwhile: restart it.
    HealDisk(u64),
    /// Delete the node's filler; the broker must still be running.
    EmptyDisk(u64),
}

/// A fault in force.
#[derive(Debug, Clone)]
struct Active {
    fault: Fault,
    nodes: Vec<u64>,
    undo: Vec<Undo>,
}

/// Starts and heals faults; finds leaders through the SDK's metadata.
pub struct Nemesis {
    client: sluice_client::Client,
    topic: String,
    rng: SplitMix64,
    problems: Vec<String>,
    /// The node whose fsyncs fail now, if any.
    failing_disk: Option<u64>,
    probe: Probe,
}

impl std::fmt::Debug for Nemesis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nemesis").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl Nemesis {
    /// A nemesis finding leaders among the partitions of `topic`, through `client`; `seed`
    /// chooses among several leaders the same way on every run with the same metadata.
    /// `probe` writes to the same topic on the disk-full faults' behalf.
    pub fn new(client: sluice_client::Client, topic: impl Into<String>, seed: u64, probe: Probe) -> Nemesis {
        Nemesis {
            client,
            topic: topic.into(),
            rng: SplitMix64::new(seed ^ 0x6e65_6d65_7369_7321),
            problems: Vec::new(),
            failing_disk: None,
            probe,
        }
    }

    /// What the faults showed to be wrong with the brokers themselves (a broker that did not
    /// stop when its disk failed, or stopped the wrong way; one that stopped for a full disk,
    /// took writes while it was full, or did not take them again after it); drained by the
    /// call.
    pub fn take_problems(&mut self) -> Vec<String> {
        std::mem::take(&mut self.problems)
    }

    /// Plays every window of `schedule`, timed from `started`, until the schedule ends or
    /// `until` passes. A fault that cannot be started is reported and skipped; one that
    /// cannot be healed is an error (the run must not go on with an unknown cluster).
    pub async fn play(
        &mut self,
        cluster: &mut Cluster,
        schedule: &Schedule,
        started: Instant,
        until: Instant,
        log: &dyn FaultLog,
    ) -> Result<()> {
        for window in &schedule.windows {
            let at = started + window.at;
            if at + window.hold > until {
                break;
            }
            tokio::time::sleep_until(at.into()).await;
            let active = match self.start(cluster, window.fault).await {
                Ok(active) => active,
                Err(e) => {
                    tracing::warn!("could not start {}: {e:#}", window.fault);
                    continue;
                }
            };
            tracing::info!("fault {} started on {:?}", window.fault, active.nodes);
            log.fault(active.fault.name(), "start", &active.nodes)?;
            self.hold(cluster, &active, at + window.hold).await?;
            self.heal(cluster, &active).await?;
            tracing::info!("fault {} healed", window.fault);
            log.fault(active.fault.name(), "heal", &active.nodes)?;
            if let Fault::DiskFull(n) | Fault::DiskFullEnospc(n) = active.fault {
                self.await_writes(&format!("{} n{n}", active.fault.name())).await?;
            }
        }
        Ok(())
    }

    /// Undoes every fault there may be: continues paused brokers, restarts stopped ones,
    /// removes every cut, sets every clock back, empties every disk.
    pub fn heal_everything(&mut self, cluster: &mut Cluster) -> Result<()> {
        cluster.net().heal_all()?;
        for node in cluster.node_ids() {
            if let Ok(disks) = cluster.disks() {
                disks.empty(node)?;
            }
            if cluster.is_paused(node) {
                cluster.resume(node)?;
            }
            if self.failing_disk == Some(node) && cluster.is_running(node) {
                disable_eio(cluster, node)?;
            }
            if !cluster.is_running(node) {
                cluster.restart(node)?;
            }
            let clock = cluster.clock_file(node)?;
            std::fs::write(clock, "+0\n").with_context(|| format!("resetting {}", clock.display()))?;
        }
        self.failing_disk = None;
        Ok(())
    }

    async fn start(&mut self, cluster: &mut Cluster, fault: Fault) -> Result<Active> {
        let all = cluster.node_ids();
        let one = |n: u64, undo: Undo| (vec![n], vec![undo]);
        let (nodes, undo) = match fault {
            Fault::KillOne(n) => {
                cluster.kill(n)?;
                one(n, Undo::Restart(vec![n]))
            }
            Fault::KillLeader => {
                let n = self.leader(cluster).await;
                cluster.kill(n)?;
                one(n, Undo::Restart(vec![n]))
            }
            Fault::KillAll => {
                all.iter().try_for_each(|&n| cluster.kill(n))?;
                (all.clone(), vec![Undo::Restart(all)])
            }
            Fault::PauseOne(n) => {
                cluster.pause(n)?;
                one(n, Undo::Resume(vec![n]))
            }
            Fault::PauseLeader => {
                let n = self.leader(cluster).await;
                cluster.pause(n)?;
                one(n, Undo::Resume(vec![n]))
            }
            Fault::IsolateOne(n) | Fault::Flap(n) => {
                isolate(cluster, n, Direction::Both)?;
                one(n, Undo::Reconnect)
            }
            Fault::IsolateLeader => {
                let n = self.leader(cluster).await;
                isolate(cluster, n, Direction::Both)?;
                one(n, Undo::Reconnect)
            }
            Fault::OneWay(n) => {
                isolate(cluster, n, Direction::InboundOnly)?;
                one(n, Undo::Reconnect)
            }
            Fault::Bridge(bridge) => {
                let ends: Vec<u64> = all.iter().copied().filter(|&n| n != bridge).collect();
                for &n in &ends {
                    let others: Vec<u64> = ends.iter().copied().filter(|&m| m != n).collect();
                    cluster.net().cut(n, &others, Direction::Both)?;
                }
                (ends, vec![Undo::Reconnect])
            }
            Fault::ClockSkew(n, secs) => {
                let clock = cluster.clock_file(n)?;
                std::fs::write(clock, format!("{secs:+}\n")).with_context(|| format!("writing {}", clock.display()))?;
                one(n, Undo::ResetClock(n))
            }
            Fault::LoseOne(n) => {
                lose_unfsynced(cluster, &[n])?;
                one(n, Undo::Restart(vec![n]))
            }
            Fault::LoseLeader => {
                let n = self.leader(cluster).await;
                lose_unfsynced(cluster, &[n])?;
                one(n, Undo::Restart(vec![n]))
            }
            Fault::LoseAll => {
                lose_unfsynced(cluster, &all)?;
                (all.clone(), vec![Undo::Restart(all)])
            }
            Fault::EioOne(n) => {
                self.enable_eio(cluster, n)?;
                one(n, Undo::HealDisk(n))
            }
            Fault::EioLeader => {
                let n = self.leader(cluster).await;
                self.enable_eio(cluster, n)?;
                one(n, Undo::HealDisk(n))
            }
            Fault::DiskFull(n) | Fault::DiskFullEnospc(n) => {
                let fill = if matches!(fault, Fault::DiskFull(_)) { Fill::BelowThreshold } else { Fill::Full };
                let free = cluster.disks()?.fill(n, fill)?;
                tracing::info!("{fault}: {free} bytes left free");
                one(n, Undo::EmptyDisk(n))
            }
            // Restart the killed node before continuing the paused one: the paused node then
            // comes back to a cluster that moved on without it.
            Fault::PauseKill(paused, killed) => {
                cluster.pause(paused)?;
                cluster.kill(killed)?;
                (vec![paused, killed], vec![Undo::Restart(vec![killed]), Undo::Resume(vec![paused])])
            }
            // The kill comes half-way through the hold (see `hold`).
            Fault::PartitionKill(cut, killed) => {
                isolate(cluster, cut, Direction::Both)?;
                (vec![cut, killed], vec![Undo::Restart(vec![killed]), Undo::Reconnect])
            }
        };
        Ok(Active { fault, nodes, undo })
    }

    /// Waits until `end`; a flapping partition heals and cuts again every [`FLAP_MS`]; a
    /// partition + kill kills half-way through; a full disk is probed.
    async fn hold(&mut self, cluster: &mut Cluster, active: &Active, end: Instant) -> Result<()> {
        if let Fault::DiskFull(n) | Fault::DiskFullEnospc(n) = active.fault {
            let fault = format!("{} n{n}", active.fault.name());
            self.expect_refusals(cluster, n, &fault, Instant::now(), end).await?;
        }
        if let Fault::PartitionKill(_, killed) = active.fault {
            let remaining = end.saturating_duration_since(Instant::now());
            tokio::time::sleep(remaining / 2).await;
            cluster.kill(killed)?;
            tracing::info!("partition+kill: killed n{killed}");
        }
        let Fault::Flap(node) = active.fault else {
            tokio::time::sleep_until(end.into()).await;
            return Ok(());
        };
        let mut cut = true;
        loop {
            let next = Instant::now() + Duration::from_millis(FLAP_MS);
            if next >= end {
                tokio::time::sleep_until(end.into()).await;
                return Ok(());
            }
            tokio::time::sleep_until(next.into()).await;
            if cut {
                cluster.net().heal(node)?;
            } else {
                isolate(cluster, node, Direction::Both)?;
            }
            cut = !cut;
        }
    }

    async fn heal(&mut self, cluster: &mut Cluster, active: &Active) -> Result<()> {
        for undo in &active.undo {
            match undo {
                Undo::Restart(nodes) => nodes.iter().try_for_each(|&n| cluster.restart(n))?,
                Undo::Resume(nodes) => nodes.iter().try_for_each(|&n| cluster.resume(n))?,
                Undo::Reconnect => cluster.net().heal_all()?,
                Undo::ResetClock(n) => {
                    let clock = cluster.clock_file(*n)?;
                    std::fs::write(clock, "+0\n").with_context(|| format!("resetting {}", clock.display()))?;
                }
                Undo::HealDisk(n) => self.heal_disk(cluster, *n).await?,
                Undo::EmptyDisk(n) => self.empty_disk(cluster, active.fault, *n)?,
            }
        }
        Ok(())
    }

    /// Ends a disk-full fault: deletes the filler. A full disk is no reason for a broker to
    /// stop (it refuses writes, or stops the partitions whose appends failed, and goes on): one
    /// that exited is a problem of the run, and is restarted.
    fn empty_disk(&mut self, cluster: &mut Cluster, fault: Fault, node: u64) -> Result<()> {
        let free = cluster.disks()?.empty(node)?;
        tracing::info!("{fault}: the disk has {free} bytes free again");
        if let Some(status) = cluster.take_exit(node)? {
            self.problems.push(format!(
                "{fault}: broker {node} exited ({status}) while its disk was full; it should have kept running; see \
                 node{node}.log"
            ));
            cluster.restart(node)?;
        }
        Ok(())
    }

    /// While `node`'s disk is full: once [`REFUSALS_AFTER`] passed since `filled`, probes every
    /// partition once, starting no probe after `end` (a probe is never cut short: its answer
    /// is recorded). Every one that takes the write is a problem: a broker below its
    /// free-space threshold must refuse writes to the partitions it holds, and with three
    /// nodes it holds them all. Unless the broker exited meanwhile: then the others no longer
    /// hear of its disk and rightly go on without it, and its exit is the problem, which the
    /// heal reports.
    async fn expect_refusals(
        &mut self,
        cluster: &mut Cluster,
        node: u64,
        fault: &str,
        filled: Instant,
        end: Instant,
    ) -> Result<()> {
        tokio::time::sleep_until((filled + REFUSALS_AFTER).min(end).into()).await;
        let mut written = Vec::new();
        for partition in self.probe.partitions() {
            if Instant::now() >= end {
                break;
            }
            let answer = self.probe.write(partition).await?;
            tracing::info!("{fault}: probe of partition {partition}: {answer:?}");
            if let Answer::Written(offset) = answer {
                written.push((partition, offset, filled.elapsed()));
            }
        }
        if cluster.has_exited(node)? {
            tracing::warn!("{fault}: broker {node} exited while its disk was full; writes went on without it");
            return Ok(());
        }
        for (partition, offset, after) in written {
            self.problems.push(format!(
                "{fault}: partition {partition} took a write (offset {offset}) {:.1} s after the disk filled; it \
                 should have been refused with STORAGE_FULL",
                after.as_secs_f64()
            ));
        }
        Ok(())
    }

    /// After a disk-full heal: probes every partition until each has taken a write, for up to
    /// [`WRITES_RESUME_LIMIT`]; those that did not are a problem.
    async fn await_writes(&mut self, fault: &str) -> Result<()> {
        let healed = Instant::now();
        let mut waiting: Vec<u32> = self.probe.partitions().collect();
        let mut last: Vec<(u32, Answer)> = Vec::new();
        while !waiting.is_empty() && healed.elapsed() < WRITES_RESUME_LIMIT {
            last.clear();
            for partition in std::mem::take(&mut waiting) {
                if healed.elapsed() >= WRITES_RESUME_LIMIT {
                    waiting.push(partition);
                    continue;
                }
                match self.probe.write(partition).await? {
                    Answer::Written(_) => {}
                    answer => {
                        waiting.push(partition);
                        last.push((partition, answer));
                    }
                }
            }
            if !waiting.is_empty() {
                tokio::time::sleep(PROBE_PAUSE).await;
            }
        }
        if waiting.is_empty() {
            tracing::info!(
                "{fault}: every partition took a write {:.1} s after the heal",
                healed.elapsed().as_secs_f64()
            );
        } else {
            self.problems.push(format!(
                "{fault}: partitions {waiting:?} took no write within {} s of the heal; last answers: {last:?}",
                WRITES_RESUME_LIMIT.as_secs()
            ));
        }
        Ok(())
    }

    /// Makes every fsync and fdatasync of `node` fail with EIO from now on.
    fn enable_eio(&mut self, cluster: &Cluster, node: u64) -> Result<()> {
        self.failing_disk = Some(node);
        EIO_POINTS.iter().try_for_each(|point| cluster.fiu_ctrl(node, &format!("enable name={point},failinfo=5")))
    }

    /// Ends an `fsync-eio` fault. The broker must have stopped, with the storage-failure exit
    /// status, as soon as an fsync failed (under the workload it fsyncs many times a second);
    /// anything else is a problem of the run. Either way it restarts with a healthy disk.
    async fn heal_disk(&mut self, cluster: &mut Cluster, node: u64) -> Result<()> {
        self.failing_disk = None;
        match cluster.take_exit(node)? {
            Some(status) if status.code() == Some(STORAGE_FAILED_EXIT) => {
                tracing::info!("fsync-eio: broker {node} stopped as it should ({status})");
            }
            Some(status) => self.problems.push(format!(
                "fsync-eio: broker {node} exited with {status}, not status {STORAGE_FAILED_EXIT}; see node{node}.log"
            )),
            None => {
                disable_eio(cluster, node)?;
                // A broker may have failed just now: give it a moment to finish stopping.
                tokio::time::sleep(Duration::from_millis(500)).await;
                if cluster.take_exit(node)?.is_none() {
                    self.problems.push(format!("fsync-eio: broker {node} kept running while its fsyncs failed"));
                    cluster.kill(node)?;
                }
            }
        }
        cluster.restart(node)
    }

    /// The leader of a random partition of the topic, among running brokers; the controller
    /// leader if no partition has one; a random running node if the metadata cannot be had.
    async fn leader(&mut self, cluster: &Cluster) -> u64 {
        let candidates: Vec<u64> =
            cluster.node_ids().into_iter().filter(|&n| cluster.is_running(n) && !cluster.is_paused(n)).collect();
        let fallback = if candidates.is_empty() { 1 } else { self.rng.pick(&candidates) };
        let fresh = tokio::time::timeout(Duration::from_secs(5), self.client.refresh_metadata()).await;
        let Ok(Ok(metadata)) = fresh else {
            tracing::warn!("no metadata to find a leader with; picking node {fallback}");
            return fallback;
        };
        let leaders: Vec<u64> = metadata
            .topics
            .get(&self.topic)
            .map(|t| t.partitions.iter().filter_map(|p| p.leader).filter(|l| candidates.contains(l)).collect())
            .unwrap_or_default();
        if !leaders.is_empty() {
            return self.rng.pick(&leaders);
        }
        metadata.controller_id.filter(|c| candidates.contains(c)).unwrap_or(fallback)
    }
}

/// SIGKILLs `nodes`, then cuts each one's files back to what it had fsynced.
fn lose_unfsynced(cluster: &mut Cluster, nodes: &[u64]) -> Result<()> {
    for &n in nodes {
        cluster.kill(n)?;
    }
    for &n in nodes {
        let loss = crate::unfsynced::lose_unfsynced(cluster.fsync_log(n)?, cluster.data_dir(n)?)
            .with_context(|| format!("dropping the un-fsynced writes of broker {n}"))?;
        tracing::info!("lose-unfsynced n{n}: {loss}");
    }
    Ok(())
}

/// Lets `node`'s fsyncs succeed again.
fn disable_eio(cluster: &Cluster, node: u64) -> Result<()> {
    EIO_POINTS.iter().try_for_each(|point| cluster.fiu_ctrl(node, &format!("disable name={point}")))
}

/// Cuts `node` off from every other node.
fn isolate(cluster: &Cluster, node: u64, direction: Direction) -> Result<()> {
    let others: Vec<u64> = cluster.node_ids().into_iter().filter(|&n| n != node).collect();
    cluster.net().cut(node, &others, direction)
}
