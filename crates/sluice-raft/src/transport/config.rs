//! Settings of the peer transport: connection liveness, message and snapshot bounds, pipelining
//! depth and replication backoff. Per-RPC deadlines are not here: they come from openraft's
//! `RPCOption` (derived from the group's `heartbeat_interval` and `install_snapshot_timeout`).

use std::time::Duration;

/// The largest snapshot data chunk the protocol allows.
pub const MAX_SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// How the peer transport connects, bounds and retries. Both ends of a connection should use
/// the same values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// How long to wait for a TCP connection to a peer before the RPC fails as unreachable.
    /// Default: 1000.
    pub connect_timeout_ms: u64,
    /// Interval of HTTP/2 PINGs on every peer connection, sent even while no RPC is in flight,
    /// so a dead or partitioned peer is noticed without waiting for an RPC. Default: 1000.
    pub keepalive_interval_ms: u64,
    /// A PING unanswered for this long closes the connection and fails its RPCs. Default: 3000.
    pub keepalive_timeout_ms: u64,
    /// HTTP/2 streams a peer may have open at once on its connection to this node. Every group
    /// the peer leads with a replica here keeps a replication stream open, and heartbeats and
    /// snapshots open more; past the limit new RPCs queue, heartbeats included, so it must exceed
    /// twice the groups two nodes can share (hyper's own default is 200). Default: 16384.
    pub max_concurrent_streams: u32,
    /// HTTP/2 flow-control window of one stream (bytes a sender may have unread by the receiver).
    /// Default: 1 MiB.
    pub stream_window_bytes: u32,
    /// HTTP/2 flow-control window of a whole connection, shared by every group's streams. Kept
    /// far above `stream_window_bytes` so a few groups whose Raft stops reading (a slow disk)
    /// cannot use it up and stall every other group's replication and heartbeats on that peer.
    /// Default: 64 MiB.
    pub connection_window_bytes: u32,
    /// Largest gRPC message either end sends or accepts (an AppendEntries batch, a snapshot
    /// chunk). Default: 64 MiB.
    pub max_message_bytes: usize,
    /// Largest snapshot a receiver accepts, all chunks together. Default: 64 MiB.
    pub max_snapshot_bytes: u64,
    /// Size of the data chunks a snapshot is sent in; at most 1 MiB. Default: 1 MiB.
    pub snapshot_chunk_bytes: usize,
    /// AppendEntries requests one replication stream may have sent but not yet answered; more
    /// wait. Bounds the memory a slow follower can pin on the leader. Default: 64.
    pub max_inflight_appends: usize,
    /// First pause before replicating again to a peer that was unreachable. Default: 50.
    pub backoff_initial_ms: u64,
    /// Longest pause between replication attempts to an unreachable peer; pauses double from
    /// `backoff_initial_ms` up to this. Default: 1000.
    pub backoff_max_ms: u64,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            connect_timeout_ms: 1000,
            keepalive_interval_ms: 1000,
            keepalive_timeout_ms: 3000,
            max_concurrent_streams: 16384,
            stream_window_bytes: 1024 * 1024,
            connection_window_bytes: 64 * 1024 * 1024,
            max_message_bytes: 64 * 1024 * 1024,
            max_snapshot_bytes: 64 * 1024 * 1024,
            snapshot_chunk_bytes: MAX_SNAPSHOT_CHUNK_BYTES,
            max_inflight_appends: 64,
            backoff_initial_ms: 50,
            backoff_max_ms: 1000,
        }
    }
}

/// A [`TransportConfig`] field that is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transport config: {field} {reason}")]
pub struct TransportConfigError {
    /// The field's name.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl TransportConfig {
    /// Checks every field; the first one out of range is the error.
    pub fn validate(&self) -> Result<(), TransportConfigError> {
        let err = |field, reason: String| Err(TransportConfigError { field, reason });
        let positive = [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("keepalive_interval_ms", self.keepalive_interval_ms),
            ("keepalive_timeout_ms", self.keepalive_timeout_ms),
            ("backoff_initial_ms", self.backoff_initial_ms),
            ("max_inflight_appends", self.max_inflight_appends as u64),
            ("snapshot_chunk_bytes", self.snapshot_chunk_bytes as u64),
        ];
        for (field, value) in positive {
            if value == 0 {
                return err(field, "must be greater than 0".into());
            }
        }
        // HTTP/2 allows windows of 65535 ..= 2^31 - 1 bytes.
        for (field, window) in [
            ("stream_window_bytes", self.stream_window_bytes),
            ("connection_window_bytes", self.connection_window_bytes),
        ] {
            if !(65_535..=i32::MAX as u32).contains(&window) {
                return err(field, "must be in 65535 ..= 2147483647".into());
            }
        }
        if self.connection_window_bytes < self.stream_window_bytes {
            return err("connection_window_bytes", "must be at least stream_window_bytes".into());
        }
        if self.max_concurrent_streams == 0 {
            return err("max_concurrent_streams", "must be greater than 0".into());
        }
        if self.snapshot_chunk_bytes > MAX_SNAPSHOT_CHUNK_BYTES {
            return err("snapshot_chunk_bytes", format!("must be at most {MAX_SNAPSHOT_CHUNK_BYTES}"));
        }
        // A chunk plus its framing must fit in one message.
        if self.max_message_bytes < self.snapshot_chunk_bytes + 1024 {
            return err("max_message_bytes", "must exceed snapshot_chunk_bytes by at least 1 KiB".into());
        }
        if self.backoff_max_ms < self.backoff_initial_ms {
            return err("backoff_max_ms", "must be at least backoff_initial_ms".into());
        }
        Ok(())
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub(crate) fn keepalive_interval(&self) -> Duration {
        Duration::from_millis(self.keepalive_interval_ms)
    }

    pub(crate) fn keepalive_timeout(&self) -> Duration {
        Duration::from_millis(self.keepalive_timeout_ms)
    }

    /// The replication backoff: `backoff_initial_ms`, doubling, capped at `backoff_max_ms`.
    pub(crate) fn backoff(&self) -> openraft::network::Backoff {
        let max = self.backoff_max_ms;
        let delays = std::iter::successors(Some(self.backoff_initial_ms), move |ms| Some((ms * 2).min(max)));
        openraft::network::Backoff::new(delays.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_backoff_doubles_to_the_cap() {
        let config = TransportConfig::default();
        config.validate().unwrap();
        let delays: Vec<u64> = config.backoff().take(7).map(|d| d.as_millis() as u64).collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let cases = [
            TransportConfig { keepalive_interval_ms: 0, ..Default::default() },
            TransportConfig { snapshot_chunk_bytes: MAX_SNAPSHOT_CHUNK_BYTES + 1, ..Default::default() },
            TransportConfig { max_message_bytes: 1024, ..Default::default() },
            TransportConfig { backoff_max_ms: 10, ..Default::default() },
            TransportConfig { stream_window_bytes: 1000, ..Default::default() },
            TransportConfig { connection_window_bytes: 70_000, ..Default::default() },
        ];
        let fields = [
            "keepalive_interval_ms",
            "snapshot_chunk_bytes",
            "max_message_bytes",
            "backoff_max_ms",
            "stream_window_bytes",
            "connection_window_bytes",
        ];
        for (config, field) in cases.iter().zip(fields) {
            assert_eq!(config.validate().unwrap_err().field, field);
        }
    }
}
