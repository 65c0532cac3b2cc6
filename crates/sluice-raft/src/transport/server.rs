//! Running the peer service: [`bind`] a listener, then [`serve`] on it until shutdown.
//!
//! Binding first lets a caller learn its address (port 0) before any Raft group advertises it.
//! The server sends its own HTTP/2 keepalive PINGs, so it notices a vanished client and frees
//! that client's streams, and sets TCP_NODELAY on every accepted connection. Because one
//! connection carries every group a peer shares with this node, it allows many concurrent
//! streams (hyper's default of 200 would queue heartbeats behind idle replication streams) and a
//! connection window far larger than one stream's.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use super::config::TransportConfig;
use super::registry::{GroupStateMachine, RaftRegistry};
use super::service::PeerService;

/// Binds the peer listener on `addr` (port 0 picks a free one; see `TcpIncoming::local_addr`).
pub fn bind(addr: SocketAddr) -> io::Result<TcpIncoming> {
    Ok(TcpIncoming::bind(addr)?.with_nodelay(Some(true)))
}

/// Serves the `RaftPeer` service for the groups in `registry` on `incoming` until `shutdown`
/// resolves; then stops accepting, ends open `StreamAppend` streams, lets in-flight RPCs finish
/// and returns.
pub async fn serve<SM: GroupStateMachine>(
    incoming: TcpIncoming,
    registry: Arc<RaftRegistry<SM>>,
    config: TransportConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let keepalive_interval = config.keepalive_interval();
    let keepalive_timeout = config.keepalive_timeout();
    // Open StreamAppend streams end when the server closes, or the graceful stop would wait
    // for leaders' idle replication streams forever.
    let (closing_tx, closing) = watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = closing_tx.send(true);
    };
    Server::builder()
        .tcp_nodelay(true)
        .max_concurrent_streams(config.max_concurrent_streams)
        .initial_stream_window_size(config.stream_window_bytes)
        .initial_connection_window_size(config.connection_window_bytes)
        .http2_keepalive_interval(Some(keepalive_interval))
        .http2_keepalive_timeout(Some(keepalive_timeout))
        // Peers are trusted, and a mass leadership change (a broker returning, a big topic's
        // replicas rebalancing) ends hundreds of replication streams at once, some before this
        // server accepted them. h2's default of 20 such resets (its defence against the rapid
        // reset attack) then closed the whole connection, and every group replicating over it
        // stalled until it reconnected.
        .http2_max_pending_accept_reset_streams(Some(config.max_concurrent_streams as usize))
        // Likewise for the resets this side sends (see the client's endpoint in clients.rs).
        .http2_max_local_error_reset_streams(None)
        .add_service(PeerService::new(registry, config).closing_on(closing).into_server())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
