//! The proxy network (`--network proxy`): where network namespaces are not available (no
//! root, no `ip`/`nft`), every broker runs on 127.0.0.1 with ports of its own, and every
//! ordered pair of nodes `(i, j)` has a TCP proxy in the runner, a task listening on a port of
//! its own and forwarding to `j`'s Raft port. Broker `i`'s config maps `j`'s advertised Raft
//! address to that proxy (`peer_dial`), so each broker-to-broker link can be cut on its own.
//! The workload's client traffic goes to the brokers directly and is never cut.
//!
//! A cut stops a direction of a link the way a DROP rule does, not the way a reset does: the
//! proxy stops reading from the sender (whose socket buffers fill and whose writes then block)
//! and stops writing to the receiver; a byte it read is never thrown away, but held until the
//! heal, when the stream resumes intact. A connection opened across a cut is accepted and held,
//! unconnected, until both directions pass again (its handshake could not complete across the
//! cut). What cannot be reproduced: timeouts of the TCP stack itself (a held connection is
//! established, only silent), and the brokers' client-API calls to each other (group
//! coordinators) go directly, never cut.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::net::{Direction, Layout, NetworkMode, NodeAddrs};

/// The lowest port given to a broker.
const FIRST_BROKER_PORT: u16 = 10_000;
/// Where the kernel's ephemeral ports start when `/proc` does not say (Linux's default).
const DEFAULT_EPHEMERAL_START: u16 = 32_768;
/// How much one direction of a connection reads at once (and holds during a cut).
const BUFFER_BYTES: usize = 64 * 1024;
/// How long the proxy waits for a broker to accept its connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause after a failed accept (out of file descriptors), so as not to spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Free client and Raft ports on 127.0.0.1 for `nodes`.
///
/// Below the kernel's ephemeral range when it leaves room: a port picked there could be
/// taken as the source port of some outgoing connection while its broker is killed, and the
/// restart would find it in use. Free when picked; nothing holds them until the brokers bind.
pub fn pick_addrs(nodes: &[u64]) -> Result<Vec<NodeAddrs>> {
    let ports = pick_ports(2 * nodes.len())?;
    let at = |port: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    Ok(nodes
        .iter()
        .zip(ports.chunks(2))
        .map(|(&node, pair)| NodeAddrs { node, raft: at(pair[0]), client: at(pair[1]) })
        .collect())
}

fn pick_ports(count: usize) -> Result<Vec<u16>> {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(DEFAULT_EPHEMERAL_START);
    // Held until every port is chosen, so that none is chosen twice.
    let mut held = Vec::new();
    if let Some(span) = ephemeral_start.checked_sub(FIRST_BROKER_PORT).filter(|&span| span >= 1_000) {
        // Start somewhere else on every run, so that runs side by side rarely try the same ports.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let start = (nanos ^ std::process::id().wrapping_mul(7_919)) % u32::from(span);
        for i in 0..u32::from(span) {
            let port = FIRST_BROKER_PORT + ((start + i) % u32::from(span)) as u16;
            if let Ok(listener) = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
                held.push(listener);
                if held.len() == count {
                    break;
                }
            }
        }
    }
    while held.len() < count {
        held.push(std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("picking a free port")?);
    }
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// The cuts in force, by the node they were placed on, and the flows `(from, to)` they stop.
#[derive(Debug, Default)]
struct Cuts {
    by_node: BTreeMap<u64, (Vec<u64>, Direction)>,
    stopped: BTreeSet<(u64, u64)>,
}

impl Cuts {
    fn set(&mut self, node: u64, cut: Option<(Vec<u64>, Direction)>) {
        match cut {
            Some(cut) => self.by_node.insert(node, cut),
            None => self.by_node.remove(&node),
        };
        self.stopped.clear();
        for (&node, (peers, direction)) in &self.by_node {
            for &peer in peers {
                self.stopped.insert((peer, node));
                if *direction == Direction::Both {
                    self.stopped.insert((node, peer));
                }
            }
        }
    }

    fn passes(&self, from: u64, to: u64) -> bool {
        !self.stopped.contains(&(from, to))
    }
}

/// The proxies of one run: one listener task per ordered pair of nodes. Dropping it (or
/// [`Proxies::stop`]) ends every listener and connection.
#[derive(Debug)]
pub struct Proxies {
    layout: Layout,
    cuts: watch::Sender<Cuts>,
    tasks: Vec<JoinHandle<()>>,
}

impl Proxies {
    /// Starts a proxy for every ordered pair of `nodes` (each forwarding to the second node's
    /// Raft address), as tasks of the current tokio runtime.
    pub fn start(nodes: Vec<NodeAddrs>) -> Result<Proxies> {
        let runtime = tokio::runtime::Handle::try_current().context("the proxy network runs inside a tokio runtime")?;
        let (cuts, _) = watch::channel(Cuts::default());
        let mut proxies = Proxies {
            layout: Layout { mode: NetworkMode::Proxy, nodes: nodes.clone(), dial: Vec::new() },
            cuts,
            tasks: Vec::new(),
        };
        for from in &nodes {
            for to in nodes.iter().filter(|to| to.node != from.node) {
                let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a proxy")?;
                listener.set_nonblocking(true)?;
                let listen = listener.local_addr()?;
                let listener = TcpListener::from_std(listener)?;
                let link = Link { from: from.node, to: to.node, target: to.raft };
                proxies.layout.dial.push((from.node, to.raft, listen));
                proxies.tasks.push(runtime.spawn(link.serve(listener, proxies.cuts.subscribe())));
            }
        }
        let nodes: Vec<String> =
            nodes.iter().map(|a| format!("n{} raft {} client {}", a.node, a.raft, a.client)).collect();
        tracing::info!("proxy network: {}; {} link proxies", nodes.join(", "), proxies.layout.dial.len());
        Ok(proxies)
    }

    /// Where every node listens, and the proxy each one dials each peer through.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Stops what flows between `node` and `peers` (toward `node` only, with
    /// [`Direction::InboundOnly`]), replacing any cut the node had.
    pub fn cut(&self, node: u64, peers: &[u64], direction: Direction) -> Result<()> {
        if peers.is_empty() {
            return Ok(());
        }
        let known = |n: &u64| self.layout.nodes.iter().any(|a| a.node == *n);
        if let Some(unknown) = std::iter::once(&node).chain(peers).find(|n| !known(n)) {
            bail!("cutting node {node} off from {peers:?}: no node {unknown}");
        }
        self.cuts.send_modify(|cuts| cuts.set(node, Some((peers.to_vec(), direction))));
        Ok(())
    }

    /// Removes `node`'s cut, if it has one: held bytes flow again.
    pub fn heal(&self, node: u64) -> Result<()> {
        self.cuts.send_modify(|cuts| cuts.set(node, None));
        Ok(())
    }

    /// Ends every proxy task and connection.
    pub fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for Proxies {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The connections node `from` opens to node `to`, whose Raft service is at `target`.
#[derive(Debug, Clone, Copy)]
struct Link {
    from: u64,
    to: u64,
    target: SocketAddr,
}

impl Link {
    /// Accepts and forwards connections until aborted (which also ends its connections).
    async fn serve(self, listener: TcpListener, cuts: watch::Receiver<Cuts>) {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        connections.spawn(self.forward(stream, cuts.clone()));
                    }
                    Err(e) => {
                        tracing::warn!("proxy n{}->n{}: accepting: {e}", self.from, self.to);
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
                Some(done) = connections.join_next() => {
                    if let Ok(Err(e)) = done {
                        tracing::debug!("proxy n{}->n{}: connection ended: {e}", self.from, self.to);
                    }
                }
            }
        }
    }

    /// One connection: held while the link is cut either way, then connected to the target
    /// and pumped both ways until both ends close or either fails.
    async fn forward(self, dialer: TcpStream, mut cuts: watch::Receiver<Cuts>) -> io::Result<()> {
        let (from, to) = (self.from, self.to);
        cuts.wait_for(|c| c.passes(from, to) && c.passes(to, from)).await.map_err(|_| stopped())?;
        let upstream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.target))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {}", self.target)))??;
        dialer.set_nodelay(true)?;
        upstream.set_nodelay(true)?;
        let (dialer_in, dialer_out) = dialer.into_split();
        let (upstream_in, upstream_out) = upstream.into_split();
        let forth = pump(dialer_in, upstream_out, Gate { cuts: cuts.clone(), from, to });
        let back = pump(upstream_in, dialer_out, Gate { cuts, from: to, to: from });
        // The first error drops the other direction too: both sockets close.
        tokio::try_join!(forth, back).map(drop)
    }
}

fn stopped() -> io::Error {
    io::Error::other("the proxy network stopped")
}

/// Whether one direction of a link passes.
struct Gate {
    cuts: watch::Receiver<Cuts>,
    from: u64,
    to: u64,
}

impl Gate {
    /// Returns once the direction passes; fails once the proxies have stopped.
    async fn open(&mut self) -> io::Result<()> {
        let (from, to) = (self.from, self.to);
        self.cuts.wait_for(|c| c.passes(from, to)).await.map(drop).map_err(|_| stopped())
    }

    /// Returns once the direction is cut (or the proxies have stopped: the next `open` says so).
    async fn closed(&mut self) {
        let (from, to) = (self.from, self.to);
        let _ = self.cuts.wait_for(|c| !c.passes(from, to)).await;
    }
}

/// Copies one direction while its gate is open. A cut stops it between reads or between
/// partial writes: what was read is written after the heal, never dropped. The sender's end
/// of the file (FIN) passes on as a write shutdown.
async fn pump(mut source: OwnedReadHalf, mut sink: OwnedWriteHalf, mut gate: Gate) -> io::Result<()> {
    let mut buf = vec![0; BUFFER_BYTES];
    loop {
        gate.open().await?;
        let read = tokio::select! {
            biased;
            () = gate.closed() => continue,
            read = source.read(&mut buf) => read?,
        };
        if read == 0 {
            return sink.shutdown().await;
        }
        let mut sent = 0;
        while sent < read {
            gate.open().await?;
            tokio::select! {
                biased;
                () = gate.closed() => {}
                written = sink.write(&buf[sent..read]) => match written? {
                    0 => return Err(io::ErrorKind::WriteZero.into()),
                    n => sent += n,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How long a stalled direction must stay silent to count as stalled.
    const SILENCE: Duration = Duration::from_millis(300);
    /// The bound on every wait that should succeed.
    const WAIT: Duration = Duration::from_secs(10);

    /// Proxies between nodes 1 and 2, whose "Raft services" are listeners the test accepts on.
    async fn two_nodes() -> (Proxies, BTreeMap<u64, TcpListener>) {
        let mut listeners = BTreeMap::new();
        let mut addrs = Vec::new();
        for node in [1, 2] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let raft = listener.local_addr().unwrap();
            addrs.push(NodeAddrs { node, raft, client: "127.0.0.1:9".parse().unwrap() });
            listeners.insert(node, listener);
        }
        (Proxies::start(addrs).unwrap(), listeners)
    }

    /// The proxy node `from` dials node `to` through.
    fn proxy_addr(proxies: &Proxies, from: u64, to: u64) -> SocketAddr {
        let peer = proxies.layout().addrs(to).unwrap().raft;
        proxies.layout().dial_of(from).find(|(p, _)| *p == peer).unwrap().1
    }

    /// A connection from `from` to `to` through the proxy: (the dialer's end, the target's end).
    async fn connect(
        proxies: &Proxies,
        listeners: &BTreeMap<u64, TcpListener>,
        from: u64,
        to: u64,
    ) -> (TcpStream, TcpStream) {
        let dialer = TcpStream::connect(proxy_addr(proxies, from, to)).await.unwrap();
        let (target, _) = tokio::time::timeout(WAIT, listeners[&to].accept()).await.unwrap().unwrap();
        (dialer, target)
    }

    async fn expect(stream: &mut TcpStream, bytes: &[u8]) {
        let mut got = vec![0; bytes.len()];
        tokio::time::timeout(WAIT, stream.read_exact(&mut got)).await.expect("bytes within the bound").unwrap();
        assert!(got == bytes, "the stream delivers exactly what was sent");
    }

    async fn expect_silence(stream: &mut TcpStream) {
        let mut byte = [0; 1];
        let read = tokio::time::timeout(SILENCE, stream.read(&mut byte)).await;
        assert!(read.is_err(), "nothing passes a cut: {read:?}");
    }

    #[tokio::test]
    async fn bytes_pass_both_ways_and_every_ordered_pair_has_a_proxy() {
        let (proxies, listeners) = two_nodes().await;
        assert_eq!(proxies.layout().dial.len(), 2);
        assert_ne!(proxy_addr(&proxies, 1, 2), proxy_addr(&proxies, 2, 1));
        let (mut dialer, mut target) = connect(&proxies, &listeners, 1, 2).await;
        dialer.write_all(b"request").await.unwrap();
        expect(&mut target, b"request").await;
        target.write_all(b"response").await.unwrap();
        expect(&mut dialer, b"response").await;
        // The end of one direction passes on; the other still works.
        dialer.shutdown().await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(WAIT, target.read_to_end(&mut rest)).await.unwrap().unwrap();
        assert!(rest.is_empty());
        target.write_all(b"late").await.unwrap();
        expect(&mut dialer, b"late").await;
    }

    #[tokio::test]
    async fn a_cut_stalls_both_directions_without_losing_bytes_and_heals() {
        let (proxies, listeners) = two_nodes().await;
        let (dialer, mut target) = connect(&proxies, &listeners, 1, 2).await;
        proxies.cut(1, &[2], Direction::Both).unwrap();
        // Far more than the socket buffers and the proxy hold: the writer must block, not lose.
        let data: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let (mut dialer_in, mut dialer_out) = dialer.into_split();
        let sent = data.clone();
        let writer = tokio::spawn(async move { dialer_out.write_all(&sent).await.map(|()| dialer_out) });
        expect_silence(&mut target).await;
        target.write_all(b"reply").await.unwrap();
        let mut byte = [0; 1];
        assert!(tokio::time::timeout(SILENCE, dialer_in.read(&mut byte)).await.is_err(), "no reply across the cut");
        assert!(!writer.is_finished(), "the writer is blocked, not drained");
        proxies.heal(1).unwrap();
        expect(&mut target, &data).await;
        let mut reply = [0; 5];
        tokio::time::timeout(WAIT, dialer_in.read_exact(&mut reply)).await.unwrap().unwrap();
        assert_eq!(&reply, b"reply");
        tokio::time::timeout(WAIT, writer).await.unwrap().unwrap().unwrap();
        // A cut placed on the other node stops the same link.
        proxies.cut(2, &[1], Direction::Both).unwrap();
        target.write_all(b"again").await.unwrap();
        assert!(tokio::time::timeout(SILENCE, dialer_in.read(&mut byte)).await.is_err());
        proxies.heal(2).unwrap();
        let mut again = [0; 5];
        tokio::time::timeout(WAIT, dialer_in.read_exact(&mut again)).await.unwrap().unwrap();
        assert_eq!(&again, b"again");
    }

    #[tokio::test]
    async fn a_one_way_cut_stops_only_what_flows_toward_the_node() {
        let (proxies, listeners) = two_nodes().await;
        let (mut out_dialer, mut out_target) = connect(&proxies, &listeners, 1, 2).await;
        let (mut in_dialer, mut in_target) = connect(&proxies, &listeners, 2, 1).await;
        proxies.cut(1, &[2], Direction::InboundOnly).unwrap();
        // Node 1's own connection to 2: its requests pass, the answers are held.
        out_dialer.write_all(b"to two").await.unwrap();
        expect(&mut out_target, b"to two").await;
        out_target.write_all(b"to one").await.unwrap();
        expect_silence(&mut out_dialer).await;
        // Node 2's connection to 1: its requests are held, 1's answers pass.
        in_dialer.write_all(b"held").await.unwrap();
        expect_silence(&mut in_target).await;
        in_target.write_all(b"passes").await.unwrap();
        expect(&mut in_dialer, b"passes").await;
        proxies.heal(1).unwrap();
        expect(&mut out_dialer, b"to one").await;
        expect(&mut in_target, b"held").await;
    }

    #[tokio::test]
    async fn connections_opened_during_a_cut_wait_for_the_heal() {
        let (mut proxies, mut listeners) = two_nodes().await;
        proxies.cut(2, &[1], Direction::InboundOnly).unwrap();
        let mut dialer = TcpStream::connect(proxy_addr(&proxies, 1, 2)).await.unwrap();
        dialer.write_all(b"early").await.unwrap();
        let accepted = tokio::time::timeout(SILENCE, listeners[&2].accept()).await;
        assert!(accepted.is_err(), "not connected to the target across a cut");
        proxies.heal(2).unwrap();
        let (mut target, _) = tokio::time::timeout(WAIT, listeners[&2].accept()).await.unwrap().unwrap();
        expect(&mut target, b"early").await;
        // A node that is down: the proxy closes the connection it accepted.
        drop(listeners.remove(&1));
        let mut to_down = TcpStream::connect(proxy_addr(&proxies, 2, 1)).await.unwrap();
        let mut byte = [0; 1];
        let read = tokio::time::timeout(WAIT, to_down.read(&mut byte)).await.expect("closed within the bound");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        // Stopping the proxies ends held and open connections.
        proxies.stop();
        let read = tokio::time::timeout(WAIT, target.read(&mut byte)).await.expect("closed within the bound");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }

    #[test]
    fn picked_ports_are_distinct_and_below_the_ephemeral_range() {
        let addrs = pick_addrs(&[1, 2, 3]).unwrap();
        let ports: BTreeSet<u16> = addrs.iter().flat_map(|a| [a.raft.port(), a.client.port()]).collect();
        assert_eq!(ports.len(), 6);
        let ephemeral_start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .map_or(DEFAULT_EPHEMERAL_START, |r| r.split_whitespace().next().unwrap().parse().unwrap());
        if ephemeral_start >= FIRST_BROKER_PORT + 1_000 {
            assert!(ports.iter().all(|&p| (FIRST_BROKER_PORT..ephemeral_start).contains(&p)), "{ports:?}");
        }
        assert!(addrs.iter().all(|a| a.raft.ip().is_loopback()) && addrs[2].node == 3);
    }

    #[test]
    fn cuts_stop_the_flows_of_their_direction() {
        let mut cuts = Cuts::default();
        cuts.set(1, Some((vec![2, 3], Direction::InboundOnly)));
        assert!(!cuts.passes(2, 1) && !cuts.passes(3, 1) && cuts.passes(1, 2) && cuts.passes(2, 3));
        cuts.set(2, Some((vec![3], Direction::Both)));
        assert!(!cuts.passes(2, 3) && !cuts.passes(3, 2));
        cuts.set(1, Some((vec![3], Direction::Both)));
        assert!(cuts.passes(2, 1) && !cuts.passes(1, 3) && !cuts.passes(3, 1), "a new cut replaces the node's old one");
        cuts.set(1, None);
        cuts.set(2, None);
        assert!(cuts.stopped.is_empty());
    }
}
