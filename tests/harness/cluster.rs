//! [`Cluster`]: `sluice-broker` processes on loopback, each with a generated configuration, a
//! data directory and a log file under one temporary directory.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sluice_proto::v1::sluice_client::SluiceClient;
use sluice_proto::v1::{MetadataRequest, MetadataResponse};
use tempfile::TempDir;
use tonic::transport::Endpoint;

use crate::binaries::binaries;
use crate::ports::free_ports;

/// A broker's node id (1 to the cluster's size).
pub type NodeId = u64;

/// How often a cluster is started on fresh ports when a broker finds its port taken.
const START_ATTEMPTS: usize = 3;
/// How long brokers may take to serve after starting or restarting.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a broker may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often readiness and exits are polled.
const POLL: Duration = Duration::from_millis(100);
/// Log lines shown per broker when a test fails.
const FAILURE_LOG_LINES: usize = 60;
/// The environment variable that sets the brokers' `RUST_LOG`.
const BROKER_LOG_ENV: &str = "SLUICE_TEST_BROKER_LOG";
/// The brokers' `RUST_LOG` by default: openraft logs every vote at info, which would bury
/// the brokers' own lines in the tail printed on failure.
const DEFAULT_BROKER_LOG: &str = "info,openraft=warn";

/// One broker process and everything it keeps.
#[derive(Debug)]
struct Node {
    id: NodeId,
    client_addr: SocketAddr,
    config: PathBuf,
    data_dir: PathBuf,
    log: PathBuf,
    /// Environment variables added to the broker's process on its next starts.
    env: Vec<(String, String)>,
    /// The open-file limit (soft and hard) of its next starts, set with util-linux's `prlimit`.
    file_limit: Option<u64>,
    child: Option<Child>,
    starts: u32,
}

/// Why brokers did not come up.
enum NotReady {
    /// A broker could not bind its port: start again elsewhere.
    PortTaken(String),
    /// Anything else: the test fails.
    Failed(String),
}

/// Brokers running as processes. Dropping it SIGKILLs every broker still running; if the
/// thread is panicking (a failed test) it also prints each broker's log tail and keeps the
/// temporary directory, whose path it prints.
#[derive(Debug)]
pub struct Cluster {
    dir: Option<TempDir>,
    broker_bin: PathBuf,
    nodes: Vec<Node>,
}

impl Cluster {
    /// Starts `size` brokers forming one cluster (building the binaries first if this is the
    /// first cluster of the run) and waits until every one of them answers `Metadata` with
    /// a controller leader and all brokers live.
    pub async fn start(size: usize) -> Cluster {
        Cluster::start_with(size, "").await
    }

    /// [`Cluster::start`], with `extra` (TOML, e.g. a `[transactions]` table) appended to every
    /// broker's configuration.
    pub async fn start_with(size: usize, extra: &str) -> Cluster {
        assert!(size > 0, "a cluster has at least one broker");
        let broker_bin = binaries().broker.clone();
        let mut last = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let mut cluster = Cluster::configure(size, broker_bin.clone(), extra);
            for node in cluster.node_ids() {
                cluster.spawn(node);
            }
            match cluster.ready_within(READY_TIMEOUT).await {
                Ok(()) => return cluster,
                Err(NotReady::PortTaken(why)) => {
                    eprintln!("cluster start attempt {attempt}: {why}; trying other ports");
                    last = why;
                }
                Err(NotReady::Failed(why)) => panic!("{why}"),
            }
        }
        panic!("brokers found their ports taken {START_ATTEMPTS} times; last: {last}");
    }

    fn configure(size: usize, broker_bin: PathBuf, extra: &str) -> Cluster {
        let dir = tempfile::Builder::new().prefix("sluice-system-").tempdir().expect("create a temporary directory");
        let addrs = free_ports(2 * size);
        let ids: Vec<NodeId> = (1..=size as u64).collect();
        let mut peers = String::new();
        for (i, id) in ids.iter().enumerate() {
            let _ = write!(
                peers,
                "\n[[peers]]\nnode_id = {id}\nraft_addr = \"{}\"\nclient_addr = \"{}\"\n",
                addrs[2 * i + 1],
                addrs[2 * i]
            );
        }
        let nodes = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                let data_dir = dir.path().join(format!("node{id}"));
                let config = dir.path().join(format!("node{id}.toml"));
                // Top-level keys of `extra` go before the tables, or TOML would put them in the last.
                let tables = if extra.starts_with('[') { 0 } else { extra.find("\n[").map_or(extra.len(), |i| i + 1) };
                let (keys, tables) = extra.split_at(tables);
                let text = format!(
                    "node_id = {id}\ndata_dir = {:?}\n{keys}\n{peers}\n{tables}",
                    data_dir.display().to_string()
                );
                std::fs::write(&config, text).expect("write a broker config");
                let log = dir.path().join(format!("node{id}.log"));
                Node {
                    id,
                    client_addr: addrs[2 * i],
                    config,
                    data_dir,
                    log,
                    env: Vec::new(),
                    file_limit: None,
                    child: None,
                    starts: 0,
                }
            })
            .collect();
        Cluster { dir: Some(dir), broker_bin, nodes }
    }

    /// The brokers' node ids, in order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// A broker's client API address, `127.0.0.1:port`.
    pub fn client_addr(&self, node: NodeId) -> String {
        self.node(node).client_addr.to_string()
    }

    /// Every broker's client address, comma-separated (`--bootstrap`, `SLUICE_BOOTSTRAP`).
    pub fn bootstrap(&self) -> String {
        self.nodes.iter().map(|n| n.client_addr.to_string()).collect::<Vec<_>>().join(",")
    }

    /// An SDK client bootstrapped from every broker.
    pub async fn client(&self) -> sluice_client::Client {
        let addrs = self.nodes.iter().map(|n| n.client_addr.to_string());
        sluice_client::Client::connect(sluice_client::ClientConfig::new(addrs)).await.expect("connect the SDK client")
    }

    /// A broker's data directory (its config's `data_dir`).
    pub fn data_dir(&self, node: NodeId) -> &Path {
        &self.node(node).data_dir
    }

    /// Whether the broker's process is running (started and not yet seen to exit).
    pub fn is_running(&mut self, node: NodeId) -> bool {
        let child = &mut self.node_mut(node).child;
        match child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_))) | Some(Err(_)) | None => false,
        }
    }

    /// The broker's process id, while it runs.
    pub fn pid(&self, node: NodeId) -> Option<u32> {
        self.node(node).child.as_ref().map(Child::id)
    }

    /// SIGKILLs the broker and reaps it: nothing of it runs once this returns.
    pub fn kill(&mut self, node: NodeId) {
        let mut child = self.node_mut(node).child.take().unwrap_or_else(|| panic!("broker {node} is not running"));
        child.kill().expect("SIGKILL a broker");
        child.wait().expect("reap a killed broker");
    }

    /// SIGTERMs the broker and waits until it exits; panics if it has not within 30 s.
    /// Returns its exit status (0 for a graceful stop).
    pub async fn terminate(&mut self, node: NodeId) -> ExitStatus {
        self.signal_term(node);
        self.wait_exit(node).await
    }

    /// SIGTERMs every running broker at once and waits for each; panics unless every one
    /// exits with status 0.
    pub async fn stop_all(&mut self) {
        let running: Vec<NodeId> = self.nodes.iter().filter(|n| n.child.is_some()).map(|n| n.id).collect();
        for &node in &running {
            self.signal_term(node);
        }
        for node in running {
            let status = self.wait_exit(node).await;
            assert!(status.success(), "broker {node} did not stop gracefully: {status}");
        }
    }

    /// Sets the environment variables the broker's process gets, besides the harness's own, from
    /// its next start on (an empty list: none). For running it under a preloaded library.
    pub fn set_env(&mut self, node: NodeId, vars: &[(&str, &str)]) {
        self.node_mut(node).env = vars.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect();
    }

    /// Sets the open-file limit (soft and hard) the broker runs with from its next start on
    /// (`None`: the harness's own).
    pub fn set_file_limit(&mut self, node: NodeId, limit: Option<u64>) {
        self.node_mut(node).file_limit = limit;
    }

    /// The temporary directory holding every broker's config, data and log.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("the directory is kept until drop").path()
    }

    /// Starts a stopped broker again with the same configuration, ports and data.
    pub fn restart(&mut self, node: NodeId) {
        assert!(!self.is_running(node), "broker {node} is still running");
        self.spawn(node);
    }

    /// Waits until every running broker answers `Metadata` with a controller leader and every
    /// running broker live; panics after 60 s, or if a broker exits.
    pub async fn wait_ready(&mut self) {
        match self.ready_within(READY_TIMEOUT).await {
            Ok(()) => {}
            Err(NotReady::PortTaken(why) | NotReady::Failed(why)) => panic!("{why}"),
        }
    }

    /// The last `lines` lines the broker logged, over all its starts.
    pub fn log_tail(&self, node: NodeId, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.node(node).log).unwrap_or_else(|e| format!("(no log: {e})"));
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn node(&self, node: NodeId) -> &Node {
        self.nodes.iter().find(|n| n.id == node).unwrap_or_else(|| panic!("no broker {node}"))
    }

    fn node_mut(&mut self, node: NodeId) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == node).unwrap_or_else(|| panic!("no broker {node}"))
    }

    fn spawn(&mut self, node: NodeId) {
        let broker_bin = self.broker_bin.clone();
        let cwd = self.dir.as_ref().expect("the directory is kept until drop").path().to_owned();
        let n = self.node_mut(node);
        n.starts += 1;
        let mut log = OpenOptions::new().create(true).append(true).open(&n.log).expect("open a broker log");
        writeln!(log, "==== system test harness: start {} of broker {} ====", n.starts, n.id).expect("write a log");
        let stderr = log.try_clone().expect("clone a log handle");
        let level = std::env::var(BROKER_LOG_ENV).unwrap_or_else(|_| DEFAULT_BROKER_LOG.into());
        let mut command = match n.file_limit {
            None => Command::new(&broker_bin),
            Some(limit) => {
                let mut prlimit = Command::new("prlimit");
                prlimit.arg(format!("--nofile={limit}:{limit}")).arg(&broker_bin);
                prlimit
            }
        };
        let child = command
            .arg("--config")
            .arg(&n.config)
            .current_dir(cwd)
            .env("RUST_LOG", level)
            // Plain text: the log is a file, not a terminal.
            .env("NO_COLOR", "1")
            .envs(n.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", broker_bin.display()));
        n.child = Some(child);
    }

    fn signal_term(&mut self, node: NodeId) {
        let pid = self.pid(node).unwrap_or_else(|| panic!("broker {node} is not running"));
        let status = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().expect("run kill -TERM");
        assert!(status.success(), "kill -TERM {pid} failed: {status}");
    }

    async fn wait_exit(&mut self, node: NodeId) -> ExitStatus {
        self.exit_within(node, STOP_TIMEOUT).await.unwrap_or_else(|| {
            panic!("broker {node} did not exit within {STOP_TIMEOUT:?} of SIGTERM");
        })
    }

    /// Waits up to `limit` for the running broker to exit on its own, and reaps it; its exit
    /// status, or `None` if it is still running.
    pub async fn exit_within(&mut self, node: NodeId, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let child = self.node_mut(node).child.as_mut().unwrap_or_else(|| panic!("broker {node} is not running"));
            if let Some(status) = child.try_wait().expect("poll a broker") {
                self.node_mut(node).child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn ready_within(&mut self, limit: Duration) -> Result<(), NotReady> {
        let deadline = Instant::now() + limit;
        loop {
            let state = self.readiness().await?;
            if state.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(NotReady::Failed(format!("brokers not ready within {limit:?}:\n{}", state.join("\n"))));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// What keeps the cluster from being ready, one line per broker; empty when it is.
    async fn readiness(&mut self) -> Result<Vec<String>, NotReady> {
        self.check_exits()?;
        let running: Vec<NodeId> = self.nodes.iter().filter(|n| n.child.is_some()).map(|n| n.id).collect();
        let mut waiting = Vec::new();
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            match metadata(n.client_addr).await {
                Err(e) => waiting.push(format!("broker {}: no answer: {e}", n.id)),
                Ok(m) => {
                    let live: Vec<u64> = m.brokers.iter().filter(|b| b.live).map(|b| b.node_id).collect();
                    let complete = m.brokers.len() == self.nodes.len() && running.iter().all(|id| live.contains(id));
                    if m.controller_id.is_none() || !complete {
                        waiting.push(format!(
                            "broker {}: controller {:?}, {} brokers known, live {live:?}",
                            n.id,
                            m.controller_id,
                            m.brokers.len()
                        ));
                    }
                }
            }
        }
        Ok(waiting)
    }

    /// Fails if a broker that should be running has exited.
    fn check_exits(&mut self) -> Result<(), NotReady> {
        for i in 0..self.nodes.len() {
            let Some(child) = self.nodes[i].child.as_mut() else { continue };
            if let Some(status) = child.try_wait().expect("poll a broker") {
                self.nodes[i].child = None;
                let id = self.nodes[i].id;
                let tail = self.log_tail(id, FAILURE_LOG_LINES);
                let why = format!("broker {id} exited ({status}); its log ends:\n{tail}");
                return Err(if tail.contains("Address already in use") {
                    NotReady::PortTaken(why)
                } else {
                    NotReady::Failed(why)
                });
            }
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            for node in &self.nodes {
                eprintln!(
                    "----- broker {} log, last {FAILURE_LOG_LINES} lines ({}) -----\n{}",
                    node.id,
                    node.log.display(),
                    self.log_tail(node.id, FAILURE_LOG_LINES)
                );
            }
            if let Some(dir) = self.dir.take() {
                eprintln!("the brokers' configs, data and full logs are kept in {}", dir.keep().display());
            }
        }
    }
}

/// Asks one broker for metadata about every topic.
async fn metadata(addr: SocketAddr) -> Result<MetadataResponse, String> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(3));
    let channel = endpoint.connect().await.map_err(|e| format!("connect: {e}"))?;
    let answer = SluiceClient::new(channel).metadata(MetadataRequest::default()).await;
    answer.map(tonic::Response::into_inner).map_err(|s| format!("{}: {}", s.code(), s.message()))
}
