//! The test network, in one of two modes ([`NetworkMode`]):
//!
//! - **netns** (the default, root only): one Linux network namespace per node, all plugged into
//!   a bridge that lives in a namespace of its own (so nothing routes out of the machine), plus
//!   one veth from the root namespace into the bridge, so that the workload client (which runs
//!   in the root namespace) reaches every node at `10.99.0.N`. Several runs can share a
//!   machine: each picks a network number ([`select`], `--net`), and network `K` uses the names
//!   `sjK-…` and the addresses `10.99.K.N` (network 0, the default, is `sj-…`). Partitions are
//!   nftables tables inside node namespaces; healing deletes the table. Nothing here touches
//!   the root namespace's firewall. Every step shells out to `ip` and `nft` with a deadline:
//!   these are the tools this setup was measured with on the machines the suite runs on, and
//!   they need no new dependency.
//! - **proxy** (no root, no `ip`/`nft` needed): every broker on 127.0.0.1 with its own ports,
//!   reaching each peer through a proxy of its own ([`crate::proxy`]); partitions stall the
//!   proxies.
//!
//! [`Network`] hides the difference from the rest of the runner: where each node listens
//! ([`Layout`]), how its broker is started ([`Network::command`]), [`Network::cut`] and
//! [`Network::heal`].

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::proxy::Proxies;

/// The port every broker's client API listens on in netns mode (each node has its own address).
pub const CLIENT_PORT: u16 = 9092;
/// The port every broker's peer (Raft) service listens on in netns mode.
pub const RAFT_PORT: u16 = 9093;
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

/// Which traffic a cut stops, seen from the node it is placed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Neither direction passes.
    Both,
    /// The node receives nothing from the others, but its own packets still reach them.
    InboundOnly,
}

/// How the test network is built (`--network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetworkMode {
    /// A network namespace per node, nftables cuts; needs root, `ip` and `nft`.
    Netns,
    /// Every node on 127.0.0.1, a proxy per link in the runner, cuts stall the proxies.
    Proxy,
}

impl std::fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NetworkMode::Netns => "netns",
            NetworkMode::Proxy => "proxy",
        })
    }
}

/// Why the netns mode cannot run here (not root, `ip` or `nft` missing), if it cannot.
pub fn namespaces_unavailable() -> Option<String> {
    match is_root() {
        Ok(true) => {}
        Ok(false) => return Some("not running as root".into()),
        Err(e) => return Some(format!("{e:#}")),
    }
    ["ip", "nft"].into_iter().find(|tool| find_in_path(tool).is_none()).map(|tool| format!("`{tool}` is not installed"))
}

/// Where one node's broker listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeAddrs {
    /// The node id.
    pub node: u64,
    /// Its peer (Raft) service, as every broker's config advertises it.
    pub raft: SocketAddr,
    /// Its client API.
    pub client: SocketAddr,
}

/// Where every node listens, and which peer addresses each one dials through another address
/// (its broker config's `peer_dial`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// How the network is built.
    pub mode: NetworkMode,
    /// Every node, in id order.
    pub nodes: Vec<NodeAddrs>,
    /// `(dialing node, a peer's raft address, the address it dials instead)`.
    pub dial: Vec<(u64, SocketAddr, SocketAddr)>,
}

impl Layout {
    /// The netns layout: node `N` at `10.99.<net>.N`, fixed ports, no dial overrides.
    pub fn namespaces(nodes: &[u64]) -> Layout {
        let addrs = |node| NodeAddrs {
            node,
            raft: SocketAddr::from((node_addr(node), RAFT_PORT)),
            client: SocketAddr::from((node_addr(node), CLIENT_PORT)),
        };
        Layout { mode: NetworkMode::Netns, nodes: nodes.iter().map(|&n| addrs(n)).collect(), dial: Vec::new() }
    }

    /// Where `node` listens.
    pub fn addrs(&self, node: u64) -> Result<NodeAddrs> {
        self.nodes.iter().find(|a| a.node == node).copied().with_context(|| format!("no node {node}"))
    }

    /// The `(peer raft address, dialed address)` overrides of `node`.
    pub fn dial_of(&self, node: u64) -> impl Iterator<Item = (SocketAddr, SocketAddr)> + '_ {
        self.dial.iter().filter(move |(n, _, _)| *n == node).map(|&(_, peer, through)| (peer, through))
    }

    /// Where `node` runs, in words (for its config and errors).
    pub fn place(&self, node: u64) -> String {
        match self.mode {
            NetworkMode::Netns => format!("in network namespace {}", node_ns(node)),
            NetworkMode::Proxy => "on 127.0.0.1, reaching each peer through a proxy of the runner".into(),
        }
    }
}

/// The test network of one run: [`Namespaces`] or [`Proxies`]. Both undo themselves when
/// dropped.
#[derive(Debug)]
pub enum Network {
    /// The netns mode.
    Namespaces(Namespaces),
    /// The proxy mode.
    Proxy(Proxies),
}

impl Network {
    /// Builds the network for `nodes`. The netns mode fails with a clear message when not run
    /// as root or without `ip`/`nft`; the proxy mode must be called inside a tokio runtime
    /// (its proxies are tasks of it).
    pub fn setup(mode: NetworkMode, nodes: &[u64]) -> Result<Network> {
        match mode {
            NetworkMode::Netns => Namespaces::setup(nodes).map(Network::Namespaces),
            NetworkMode::Proxy => Proxies::start(crate::proxy::pick_addrs(nodes)?).map(Network::Proxy),
        }
    }

    /// Where every node listens.
    pub fn layout(&self) -> &Layout {
        match self {
            Network::Namespaces(n) => &n.layout,
            Network::Proxy(p) => p.layout(),
        }
    }

    /// The nodes the network was built for.
    pub fn nodes(&self) -> Vec<u64> {
        self.layout().nodes.iter().map(|a| a.node).collect()
    }

    /// The start of the command line that runs a program as `node` (the program and its
    /// arguments follow): `env`, inside the node's namespace in netns mode. Both `ip netns
    /// exec` and `env` exec, so the child's pid is the program's.
    pub fn command(&self, node: u64) -> Command {
        match self {
            Network::Namespaces(_) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", &node_ns(node), "env"]);
                command
            }
            Network::Proxy(_) => Command::new("env"),
        }
    }

    /// Stops traffic between `node` and `peers` (replacing any cut the node had); the
    /// workload's client traffic is never cut.
    pub fn cut(&self, node: u64, peers: &[u64], direction: Direction) -> Result<()> {
        match self {
            Network::Namespaces(n) => n.cut(node, peers, direction),
            Network::Proxy(p) => p.cut(node, peers, direction),
        }
    }

    /// Removes `node`'s cut, if it has one.
    pub fn heal(&self, node: u64) -> Result<()> {
        match self {
            Network::Namespaces(n) => n.heal(node),
            Network::Proxy(p) => p.heal(node),
        }
    }

    /// Removes every node's cut.
    pub fn heal_all(&self) -> Result<()> {
        self.nodes().into_iter().try_for_each(|n| self.heal(n))
    }

    /// Removes the network (also done on drop). The caller must have stopped the brokers first.
    pub fn teardown(&mut self) -> Result<()> {
        match self {
            Network::Namespaces(n) => n.teardown(),
            Network::Proxy(p) => {
                p.stop();
                Ok(())
            }
        }
    }
}

/// The namespaces and links of one netns-mode run. [`Namespaces::teardown`] (also run on
/// drop) removes them all; [`cleanup_leftovers`] removes those a crashed earlier run left.
#[derive(Debug)]
pub struct Namespaces {
    layout: Layout,
    up: bool,
}

impl Namespaces {
    /// Creates the bridge, the root namespace's link into it and one namespace per node.
    /// Fails with a clear message when not run as root or without `ip`/`nft`.
    pub fn setup(nodes: &[u64]) -> Result<Namespaces> {
        require_root()?;
        for tool in ["ip", "nft"] {
            if find_in_path(tool).is_none() {
                bail!(
                    "`{tool}` is not installed: run scripts/install-deps.sh (packages iproute2, nftables), or use \
                     --network proxy"
                );
            }
        }
        cleanup_leftovers()?;
        let mut net = Namespaces { layout: Layout::namespaces(nodes), up: true };
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
        let nodes: Vec<u64> = self.layout.nodes.iter().map(|a| a.node).collect();
        for node in nodes {
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

impl Drop for Namespaces {
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
    if !is_root()? {
        bail!(
            "the netns network needs root: it puts each node in its own network namespace and cuts links with \
             nftables (run it with sudo, or use --network proxy)"
        );
    }
    Ok(())
}

/// Whether the process's effective user is root.
pub(crate) fn is_root() -> Result<bool> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .context("no Uid line in /proc/self/status")?;
    Ok(euid == "0")
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
    fn the_netns_layout_gives_each_node_its_address_and_the_fixed_ports() {
        let layout = Layout::namespaces(&[1, 2, 3]);
        assert_eq!(layout.addrs(3).unwrap().raft.to_string(), "10.99.0.3:9093");
        assert_eq!(layout.addrs(1).unwrap().client.to_string(), "10.99.0.1:9092");
        assert!(layout.dial.is_empty() && layout.dial_of(1).next().is_none());
        assert!(layout.addrs(4).unwrap_err().to_string().contains("no node 4"));
        assert_eq!(layout.place(2), "in network namespace sj-n2");
    }

    #[test]
    fn a_failing_command_reports_its_stderr() {
        let e = run(Command::new("sh").args(["-c", "echo broken >&2; exit 3"])).unwrap_err().to_string();
        assert!(e.contains("broken") && e.contains("exit status: 3"), "{e}");
        assert_eq!(output(Command::new("sh").args(["-c", "echo hi"])).unwrap(), "hi\n");
    }
}
