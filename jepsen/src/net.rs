//! The test network: one Linux network namespace per node, all plugged into a bridge that
//! lives in a namespace of its own (so nothing routes out of the machine), plus one veth from
//! the root namespace into the bridge, so that the workload client (which runs in the root
//! namespace) reaches every node at `10.99.0.N`. Several runs can share a machine: each picks a
//! network number ([`select`], `--net`), and network `K` uses the names `sjK-…` and the
//! addresses `10.99.K.N` (network 0, the default, is `sj-…`). Partitions are nftables tables inside node
//! namespaces; healing deletes the table. Nothing here touches the root namespace's firewall.
//!
//! Every step shells out to `ip` and `nft` with a deadline: these are the tools this setup was
//! measured with on the machines the suite runs on, and they need no new dependency.

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// The highest network number (`--net`).
pub const MAX_NETWORK: u8 = 99;
/// The network this process uses, once chosen.
static NETWORK: OnceLock<u8> = OnceLock::new();

/// Chooses the test network (0 to [`MAX_NETWORK`]) for the rest of the process: call before
/// anything else in this module. Without a call it is 0.
pub fn select(network: u8) -> Result<()> {
    if network > MAX_NETWORK {
        bail!("--net {network}: networks are numbered 0 to {MAX_NETWORK}");
    }
    match NETWORK.set(network) {
        Ok(()) => Ok(()),
        Err(_) if network_number() == network => Ok(()),
        Err(_) => bail!("the test network is already chosen ({})", network_number()),
    }
}

fn network_number() -> u8 {
    NETWORK.get().copied().unwrap_or(0)
}

/// The prefix of every namespace and root-namespace link of this network; the start-up
/// clean-up removes whatever carries it (and nothing of another network).
pub fn prefix() -> String {
    match network_number() {
        0 => "sj-".into(),
        n => format!("sj{n}-"),
    }
}

/// The namespace holding the bridge.
fn switch_ns() -> String {
    format!("{}sw", prefix())
}

/// The root namespace's end of the veth into the bridge (the other end is `<this>-p`).
fn host_link() -> String {
    format!("{}host", prefix())
}

/// The root namespace's address on the test network: `10.99.<net>.254`.
pub fn host_addr() -> Ipv4Addr {
    Ipv4Addr::new(10, 99, network_number(), 254)
}
/// The nftables table a partition installs in a node's namespace.
const TABLE: &str = "sluice_jepsen";
/// How long one `ip` or `nft` invocation may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// A node's address on the test network: `10.99.<net>.<node>`.
pub fn node_addr(node: u64) -> Ipv4Addr {
    let last = u8::try_from(node).ok().filter(|n| (1..=250).contains(n)).expect("node ids are 1 to 250");
    Ipv4Addr::new(10, 99, network_number(), last)
}

/// The namespace a node runs in.
pub fn node_ns(node: u64) -> String {
    format!("{}n{node}", prefix())
}

/// Which packets a cut drops, seen from the node whose namespace holds the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Neither direction passes.
    Both,
    /// The node receives nothing from the others, but its own packets still reach them.
    InboundOnly,
}

/// The namespaces and links of one run. [`Network::teardown`] (also run on drop) removes
/// them all; [`Network::cleanup_leftovers`] removes those a crashed earlier run left.
#[derive(Debug)]
pub struct Network {
    nodes: Vec<u64>,
    up: bool,
}

impl Network {
    /// Creates the bridge, the root namespace's link into it and one namespace per node.
    /// Fails with a clear message when not run as root or without `ip`/`nft`.
    pub fn setup(nodes: &[u64]) -> Result<Network> {
        require_root()?;
        for tool in ["ip", "nft"] {
            if find_in_path(tool).is_none() {
                bail!("`{tool}` is not installed: run scripts/install-deps.sh (packages iproute2, nftables)");
            }
        }
        cleanup_leftovers()?;
        let mut net = Network { nodes: nodes.to_vec(), up: true };
        net.create().context("creating the test network (a failed step is undone)")?;
        Ok(net)
    }

    fn create(&mut self) -> Result<()> {
        let (host, switch, link, prefix) = (host_addr().to_string(), switch_ns(), host_link(), prefix());
        let (switch, link, link_peer) = (switch.as_str(), link.as_str(), format!("{link}-p"));
        ip(&["netns", "add", switch])?;
        ip(&["-n", switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", switch, "link", "set", "br0", "up"])?;
        ip(&["link", "add", link, "type", "veth", "peer", "name", &link_peer])?;
        ip(&["link", "set", &link_peer, "netns", switch])?;
        ip(&["-n", switch, "link", "set", &link_peer, "master", "br0"])?;
        ip(&["-n", switch, "link", "set", &link_peer, "up"])?;
        ip(&["addr", "add", &format!("{host}/24"), "dev", link])?;
        ip(&["link", "set", link, "up"])?;
        for &node in &self.nodes.clone() {
            let (ns, veth, port) = (node_ns(node), format!("{prefix}v{node}"), format!("{prefix}p{node}"));
            ip(&["netns", "add", &ns])?;
            ip(&["link", "add", &veth, "type", "veth", "peer", "name", &port])?;
            ip(&["link", "set", &veth, "netns", &ns])?;
            ip(&["link", "set", &port, "netns", switch])?;
            ip(&["-n", &ns, "link", "set", &veth, "name", "eth0"])?;
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", node_addr(node)), "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", switch, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", switch, "link", "set", &port, "up"])?;
        }
        Ok(())
    }

    /// The nodes the network was built for.
    pub fn nodes(&self) -> &[u64] {
        &self.nodes
    }

    /// Drops, inside `node`'s namespace, traffic between it and `peers` (replacing any cut
    /// the node had). The workload client at [`host_addr`] is never cut off.
    pub fn cut(&self, node: u64, peers: &[u64], direction: Direction) -> Result<()> {
        if peers.is_empty() {
            return Ok(());
        }
        self.heal(node)?;
        let set: Vec<String> = peers.iter().map(|&p| node_addr(p).to_string()).collect();
        let set = set.join(", ");
        let mut rules = format!(
            "table inet {TABLE} {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    \
             ip saddr {{ {set} }} drop\n  }}\n"
        );
        if direction == Direction::Both {
            rules.push_str(&format!(
                "  chain output {{\n    type filter hook output priority 0; policy accept;\n    \
                 ip daddr {{ {set} }} drop\n  }}\n"
            ));
        }
        rules.push_str("}\n");
        run_with_input(Command::new("ip").args(["netns", "exec", &node_ns(node), "nft", "-f", "-"]), &rules)
            .with_context(|| format!("cutting node {node} off from {peers:?}"))
    }

    /// Removes `node`'s cut, if it has one.
    pub fn heal(&self, node: u64) -> Result<()> {
        let ns = node_ns(node);
        let listed = output(Command::new("ip").args(["netns", "exec", &ns, "nft", "list", "tables"]))?;
        if listed.contains(TABLE) {
            run(Command::new("ip").args(["netns", "exec", &ns, "nft", "delete", "table", "inet", TABLE]))?;
        }
        Ok(())
    }

    /// Removes every node's cut.
    pub fn heal_all(&self) -> Result<()> {
        self.nodes.iter().try_for_each(|&n| self.heal(n))
    }

    /// Deletes the namespaces (which takes their nftables tables with them) and the root
    /// namespace's link. The caller must have stopped the processes inside first.
    pub fn teardown(&mut self) -> Result<()> {
        if !self.up {
            return Ok(());
        }
        self.up = false;
        cleanup_leftovers()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("tearing the test network down: {e:#}");
        }
    }
}

/// Removes everything this suite creates on this network that is still there: SIGKILLs every
/// process inside a namespace with its prefix (`sj-`; only this suite starts processes there),
/// deletes those namespaces and the root namespace's `sj-host` link. Processes outside the namespaces are never touched.
pub fn cleanup_leftovers() -> Result<()> {
    // The root namespace's link first: deleting the bridge's namespace also destroys it, but
    // asynchronously, so that a later `ip link del` could race with the kernel.
    let links = output(Command::new("ip").args(["-o", "link", "show"]))?;
    let link = host_link();
    if links.lines().any(|l| l.split(&[':', '@'][..]).nth(1).is_some_and(|name| name.trim() == link)) {
        match ip(&["link", "del", &link]) {
            Err(e) if !e.to_string().contains("Cannot find device") => return Err(e),
            _ => {}
        }
    }
    for ns in our_namespaces()? {
        let pids = output(Command::new("ip").args(["netns", "pids", &ns])).unwrap_or_default();
        for pid in pids.split_whitespace() {
            // The process may exit between listing and signalling: nothing to report then.
            let _ = run(Command::new("kill").args(["-KILL", pid]));
        }
        ip(&["netns", "del", &ns]).with_context(|| format!("deleting namespace {ns}"))?;
    }
    Ok(())
}

/// The namespaces that carry this suite's prefix.
fn our_namespaces() -> Result<Vec<String>> {
    let list = output(Command::new("ip").args(["netns", "list"]))?;
    Ok(list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| name.starts_with(&prefix()))
        .map(str::to_owned)
        .collect())
}

/// Fails unless the process runs as root (namespaces and nftables need it).
pub fn require_root() -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .context("no Uid line in /proc/self/status")?;
    if euid != "0" {
        bail!(
            "sluice-jepsen must run as root: it puts each node in its own network namespace and cuts links \
             with nftables (run it with sudo; a namespace-free proxy mode does not exist yet)"
        );
    }
    Ok(())
}

/// Where `tool` is on `PATH`, if anywhere.
pub fn find_in_path(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file())
}

fn ip(args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(args))
}

/// Runs a command to completion within [`COMMAND_TIMEOUT`]; fails with its stderr unless it
/// exits 0.
pub(crate) fn run(command: &mut Command) -> Result<()> {
    output(command).map(drop)
}

/// Like [`run`], returning its standard output.
pub(crate) fn output(command: &mut Command) -> Result<String> {
    finish(command.stdin(Stdio::null()), None)
}

fn run_with_input(command: &mut Command, input: &str) -> Result<()> {
    finish(command.stdin(Stdio::piped()), Some(input)).map(drop)
}

fn finish(command: &mut Command, input: Option<&str>) -> Result<String> {
    let shown = format!("{command:?}");
    let mut child =
        command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().with_context(|| format!("starting {shown}"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).with_context(|| format!("writing to {shown}"))?;
    }
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    while child.try_wait()?.is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{shown} did not finish within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("{shown} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_get_addresses_and_namespaces_by_id() {
        assert_eq!(node_addr(1), Ipv4Addr::new(10, 99, 0, 1));
        assert_eq!(node_addr(3).to_string(), "10.99.0.3");
        assert_eq!(node_ns(2), "sj-n2");
        let prefix = prefix();
        assert!(
            node_ns(2).starts_with(&prefix) && switch_ns().starts_with(&prefix) && host_link().starts_with(&prefix)
        );
    }

    #[test]
    fn a_failing_command_reports_its_stderr() {
        let e = run(Command::new("sh").args(["-c", "echo broken >&2; exit 3"])).unwrap_err().to_string();
        assert!(e.contains("broken") && e.contains("exit status: 3"), "{e}");
        assert_eq!(output(Command::new("sh").args(["-c", "echo hi"])).unwrap(), "hi\n");
    }
}
