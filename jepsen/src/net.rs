//! The test network: one Linux network namespace per node, all plugged into a bridge that
//! lives in a namespace of its own (so nothing routes out of the machine), plus one veth from
//! the root namespace into the bridge, so that the workload client (which runs in the root
//! namespace) reaches every node at `10.99.0.N`. Partitions are nftables tables inside node
//! namespaces; healing deletes the table. Nothing here touches the root namespace's firewall.
//!
//! Every step shells out to `ip` and `nft` with a deadline: these are the tools this setup was
//! measured with on the machines the suite runs on, and they need no new dependency.

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// The prefix of every namespace and root-namespace link this suite creates; the start-up
/// clean-up removes whatever carries it.
pub const PREFIX: &str = "sj-";
/// The namespace holding the bridge.
const SWITCH_NS: &str = "sj-sw";
/// The root namespace's end of the veth into the bridge.
const HOST_LINK: &str = "sj-host";
/// The root namespace's address on the test network.
pub const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 254);
/// The nftables table a partition installs in a node's namespace.
const TABLE: &str = "sluice_jepsen";
/// How long one `ip` or `nft` invocation may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// A node's address on the test network: `10.99.0.<node>`.
pub fn node_addr(node: u64) -> Ipv4Addr {
    let last = u8::try_from(node).ok().filter(|n| (1..=250).contains(n)).expect("node ids are 1 to 250");
    Ipv4Addr::new(10, 99, 0, last)
}

/// The namespace a node runs in.
pub fn node_ns(node: u64) -> String {
    format!("{PREFIX}n{node}")
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
        let host = HOST_ADDR.to_string();
        ip(&["netns", "add", SWITCH_NS])?;
        ip(&["-n", SWITCH_NS, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", SWITCH_NS, "link", "set", "br0", "up"])?;
        ip(&["link", "add", HOST_LINK, "type", "veth", "peer", "name", "sj-host-p"])?;
        ip(&["link", "set", "sj-host-p", "netns", SWITCH_NS])?;
        ip(&["-n", SWITCH_NS, "link", "set", "sj-host-p", "master", "br0"])?;
        ip(&["-n", SWITCH_NS, "link", "set", "sj-host-p", "up"])?;
        ip(&["addr", "add", &format!("{host}/24"), "dev", HOST_LINK])?;
        ip(&["link", "set", HOST_LINK, "up"])?;
        for &node in &self.nodes.clone() {
            let (ns, veth, port) = (node_ns(node), format!("{PREFIX}v{node}"), format!("{PREFIX}p{node}"));
            ip(&["netns", "add", &ns])?;
            ip(&["link", "add", &veth, "type", "veth", "peer", "name", &port])?;
            ip(&["link", "set", &veth, "netns", &ns])?;
            ip(&["link", "set", &port, "netns", SWITCH_NS])?;
            ip(&["-n", &ns, "link", "set", &veth, "name", "eth0"])?;
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", node_addr(node)), "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", SWITCH_NS, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", SWITCH_NS, "link", "set", &port, "up"])?;
        }
        Ok(())
    }

    /// The nodes the network was built for.
    pub fn nodes(&self) -> &[u64] {
        &self.nodes
    }

    /// Drops, inside `node`'s namespace, traffic between it and `peers` (replacing any cut
    /// the node had). The workload client at [`HOST_ADDR`] is never cut off.
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

/// Removes everything this suite creates that is still there: SIGKILLs every process inside
/// a `sj-` namespace (only this suite starts processes there), deletes those namespaces and
/// the root namespace's `sj-host` link. Processes outside the namespaces are never touched.
pub fn cleanup_leftovers() -> Result<()> {
    // The root namespace's link first: deleting the bridge's namespace also destroys it, but
    // asynchronously, so that a later `ip link del` could race with the kernel.
    let links = output(Command::new("ip").args(["-o", "link", "show"]))?;
    if links.lines().any(|l| l.split(&[':', '@'][..]).nth(1).is_some_and(|name| name.trim() == HOST_LINK)) {
        match ip(&["link", "del", HOST_LINK]) {
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
        .filter(|name| name.starts_with(PREFIX))
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
        assert!(node_ns(2).starts_with(PREFIX) && SWITCH_NS.starts_with(PREFIX) && HOST_LINK.starts_with(PREFIX));
    }

    #[test]
    fn a_failing_command_reports_its_stderr() {
        let e = run(Command::new("sh").args(["-c", "echo broken >&2; exit 3"])).unwrap_err().to_string();
        assert!(e.contains("broken") && e.contains("exit status: 3"), "{e}");
        assert_eq!(output(Command::new("sh").args(["-c", "echo hi"])).unwrap(), "hi\n");
    }
}
