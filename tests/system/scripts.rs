//! `scripts/start-cluster.sh`, `scripts/restart-cluster.sh` and `scripts/stop-cluster.sh` with
//! this run's binaries (`SLUICE_BIN_DIR`) and a temporary data directory (`SLUICE_DATA_DIR`): the
//! cluster comes up and serves, a second start starts nothing, a rolling restart of one broker
//! replaces just it, and the stop script ends exactly the brokers the start script recorded.
//!
//! The scripts run on copies of `cluster-configs/` whose addresses are moved to free ports
//! (`SLUICE_CONFIG_DIR`), so the test passes while the quickstart cluster runs on the fixed ones.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sluice_system_tests::cli::{Output, run, sluice};
use sluice_system_tests::{binaries, free_ports, within, workspace_root};

/// The addresses `cluster-configs/` uses: clients, peers, metrics, for brokers 1 to 3.
const FIXED_ADDRS: [&str; 9] = [
    "127.0.0.1:9091",
    "127.0.0.1:9092",
    "127.0.0.1:9093",
    "127.0.0.1:9101",
    "127.0.0.1:9102",
    "127.0.0.1:9103",
    "127.0.0.1:9191",
    "127.0.0.1:9192",
    "127.0.0.1:9193",
];
const SCRIPT_LIMIT: Duration = Duration::from_secs(120);
const LIMIT: Duration = Duration::from_secs(150);

/// Stops whatever the start script left running if the test fails half way.
struct StopOnDrop {
    data: PathBuf,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for n in 1..=3 {
                let log = std::fs::read_to_string(self.data.join(format!("node{n}.log"))).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                eprintln!(
                    "----- node{n}.log, last 40 lines -----\n{}",
                    lines[lines.len().saturating_sub(40)..].join("\n")
                );
            }
        }
        if pids(&self.data).is_empty() {
            return;
        }
        let script = workspace_root().join("scripts/stop-cluster.sh");
        let _ = std::process::Command::new(script)
            .env("SLUICE_DATA_DIR", &self.data)
            .env("SLUICE_STOP_TIMEOUT", "10")
            .status();
        for pid in pids(&self.data).into_iter().filter(|&pid| alive(pid)) {
            let _ = std::process::Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_cluster_starts_one_cluster_once_and_stop_cluster_stops_exactly_it() {
    let bin_dir = binaries().dir.clone();
    let data = tempfile::Builder::new().prefix("sluice-scripts-").tempdir().expect("a temporary directory");
    let configs = tempfile::Builder::new().prefix("sluice-configs-").tempdir().expect("a temporary directory");
    let bootstrap = &write_configs_on_free_ports(configs.path());
    let _stop = StopOnDrop { data: data.path().to_owned() };
    let env = [
        ("SLUICE_BIN_DIR", bin_dir.as_os_str()),
        ("SLUICE_DATA_DIR", data.path().as_os_str()),
        ("SLUICE_CONFIG_DIR", configs.path().as_os_str()),
    ];
    let script = |name: &str| workspace_root().join("scripts").join(name);
    let run_script = |name: &str| {
        let path = script(name);
        async move { run(&path, &[] as &[&str], &env, None, SCRIPT_LIMIT).await }
    };

    within(LIMIT, "the cluster scripts test", async {
        let started = run_script("start-cluster.sh").await;
        started.assert_success("start-cluster.sh");
        assert!(
            started.stdout.contains(bootstrap.as_str()) && started.stdout.contains("sluice cluster status"),
            "{started:?}"
        );
        let first = pids(data.path());
        assert_eq!(first.len(), 3, "three PID files: {first:?}");
        assert_eq!(brokers_under(data.path()), first, "the PID files name the running brokers");
        assert_serving(bootstrap).await;

        let again = run_script("start-cluster.sh").await;
        again.assert_success("a second start-cluster.sh");
        assert!(again.stdout.contains("already running"), "{again:?}");
        assert_eq!(pids(data.path()), first, "the PID files are unchanged");
        assert_eq!(brokers_under(data.path()), first, "no broker was started a second time");
        assert_serving(bootstrap).await;

        // A rolling restart of one broker (all three would only take longer): it hands its
        // leaderships over, stops, comes back under a new PID, and the cluster is whole again.
        let path = script("restart-cluster.sh");
        let restart_env = [env[0], env[1], env[2], ("SLUICE_RESTART_NODES", OsStr::new("2"))];
        let restarted = run(&path, &[] as &[&str], &restart_env, None, SCRIPT_LIMIT).await;
        restarted.assert_success("restart-cluster.sh");
        assert!(
            restarted.stdout.contains("node 2: stopped in")
                && restarted.stdout.contains("rolling restart of nodes 2 done"),
            "{restarted:?}"
        );
        let after = pids(data.path());
        assert_eq!(after.len(), 3, "three PID files after the restart: {after:?}");
        assert_eq!(after.iter().filter(|pid| first.contains(pid)).count(), 2, "only node 2 was restarted");
        let log = std::fs::read_to_string(data.path().join("node2.log")).expect("node 2's log");
        assert!(log.contains("stopping: handed over"), "node 2 handed its leaderships over:\n{log}");
        assert_serving(bootstrap).await;
        let first = after;

        let stopped = run_script("stop-cluster.sh").await;
        stopped.assert_success("stop-cluster.sh");
        assert!(stopped.stdout.contains("stopped: node1 node2 node3"), "{stopped:?}");
        for pid in &first {
            assert!(!alive(*pid), "broker pid {pid} still runs after stop-cluster.sh");
        }
        assert!(pids(data.path()).is_empty(), "the PID files are removed");
        assert!(brokers_under(data.path()).is_empty(), "no broker of this cluster runs");
        let down = sluice(bootstrap, &["cluster", "status"], None, SCRIPT_LIMIT).await;
        down.assert_failure("cluster status after the stop", &["cannot reach any bootstrap broker"]);
        let idle = run_script("stop-cluster.sh").await;
        idle.assert_success("stop-cluster.sh with nothing running");
        for n in 1..=3 {
            let log = std::fs::read_to_string(data.path().join(format!("node{n}.log"))).expect("a broker log");
            assert!(log.contains("SIGTERM received"), "node {n} stopped gracefully:\n{log}");
        }
    })
    .await;
}

/// Copies `cluster-configs/node{1,2,3}.toml` into `dir` with every address moved to a free
/// port; returns the bootstrap list of the copies' client addresses.
fn write_configs_on_free_ports(dir: &Path) -> String {
    let free = free_ports(FIXED_ADDRS.len());
    for n in 1..=3 {
        let source = workspace_root().join(format!("cluster-configs/node{n}.toml"));
        let mut text = std::fs::read_to_string(&source).unwrap_or_else(|e| panic!("read {}: {e}", source.display()));
        for (fixed, port) in FIXED_ADDRS.iter().zip(&free) {
            text = text.replace(fixed, &port.to_string());
        }
        assert!(!text.contains("127.0.0.1:9"), "every address of {} was moved:\n{text}", source.display());
        std::fs::write(dir.join(format!("node{n}.toml")), text).expect("write a config copy");
    }
    free[..3].iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

async fn assert_serving(bootstrap: &str) {
    let status = sluice(bootstrap, &["cluster", "status", "--output", "json"], None, SCRIPT_LIMIT).await;
    let status: &Output = status.assert_success("cluster status");
    let json: Value = serde_json::from_str(status.stdout.trim()).expect("cluster status JSON");
    let live = json["brokers"].as_array().expect("brokers").iter().filter(|b| b["live"] == true).count();
    assert_eq!(live, 3, "three live brokers: {json}");
}

/// The process ids in the data directory's PID files, in increasing order.
fn pids(data: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = (1..=3)
        .filter_map(|n| std::fs::read_to_string(data.join(format!("node{n}.pid"))).ok())
        .map(|text| text.trim().parse().unwrap_or_else(|e| panic!("a PID file holds {text:?}: {e}")))
        .collect();
    pids.sort_unstable();
    pids
}

/// Whether a process runs (and is not a zombie: an orphaned broker is reaped by init).
fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
    state.is_some_and(|s| s != 'Z')
}

/// The running sluice-broker processes whose config lies in `data`, in increasing pid order.
fn brokers_under(data: &Path) -> Vec<u32> {
    let mut found: Vec<u32> = std::fs::read_dir("/proc")
        .expect("list /proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let text = String::from_utf8_lossy(&cmdline);
            let mut args = text.split('\0');
            let is_broker = args.next().is_some_and(|a| Path::new(a).file_name() == Some(OsStr::new("sluice-broker")));
            is_broker && args.any(|a| Path::new(a).starts_with(data)) && alive(pid)
        })
        .collect();
    found.sort_unstable();
    found
}
