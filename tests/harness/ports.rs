//! Free loopback ports for brokers to bind.

use std::net::{SocketAddr, TcpListener};

/// `count` distinct loopback addresses with ports the kernel just handed out and that are free
/// again. They are all held at once while being picked, so they differ from one another;
/// another process may still take one before a broker binds it — [`crate::Cluster::start`]
/// retries with new ports when a broker reports its address in use.
pub fn free_ports(count: usize) -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> =
        (0..count).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port")).collect();
    listeners.iter().map(|l| l.local_addr().expect("a bound listener has an address")).collect()
}
