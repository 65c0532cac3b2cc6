//! The broker's configuration (DESIGN D8), read from a TOML file; `cluster-configs/` holds the
//! local three-node cluster's. Every field is documented with its default; [`BrokerConfig::validate`]
//! checks the whole of it before anything starts.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sluice_raft::typ::RaftConfig;

/// Why a configuration cannot be used. The message names the field and says what is expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading config {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("parsing config {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said (line, column, field).
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// One broker of the cluster, as every broker's configuration lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The broker's node id. Required.
    pub node_id: u64,
    /// Where its peer (Raft) service listens, `host:port`. Required.
    pub raft_addr: String,
    /// Where its client API listens, `host:port`. Required.
    pub client_addr: String,
}

/// Raft timings. The controller group is small and keeps fast timers; partition groups are many,
/// so theirs are slower (each group's heartbeats cost CPU even when idle; docs/adr/0002).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTimings {
    /// Controller group heartbeat, in ms. Default: 100.
    pub controller_heartbeat_ms: u64,
    /// Controller group election timeout range `[min, max]`, in ms. Default: [500, 1000].
    pub controller_election_timeout_ms: [u64; 2],
    /// Partition group heartbeat, in ms. Default: 250.
    pub partition_heartbeat_ms: u64,
    /// Partition group election timeout range `[min, max]`, in ms. Default: [700, 1400]. A
    /// failed leader's partitions are writable again after about 1.6–2× the max (openraft's
    /// leader lease equals it): measured p99 2.7 s with these defaults, 4.5 s with [1200, 2400].
    pub partition_election_timeout_ms: [u64; 2],
}

impl Default for RaftTimings {
    fn default() -> Self {
        RaftTimings {
            controller_heartbeat_ms: 100,
            controller_election_timeout_ms: [500, 1000],
            partition_heartbeat_ms: 250,
            partition_election_timeout_ms: [700, 1400],
        }
    }
}

impl RaftTimings {
    /// The openraft settings of the controller group.
    pub fn controller(&self) -> Result<RaftConfig, ConfigError> {
        raft_config("controller", self.controller_heartbeat_ms, self.controller_election_timeout_ms)
    }

    /// The openraft settings of a partition group. Snapshots never purge its log.
    pub fn partition(&self) -> Result<RaftConfig, ConfigError> {
        let config = raft_config("partition", self.partition_heartbeat_ms, self.partition_election_timeout_ms)?;
        // A partition's Raft log is its message data (DESIGN D1) and its snapshot holds only the
        // next offset and the producer table. openraft's default purges all but 1,000 entries
        // after every snapshot (one per 5,000 entries), which deleted unexpired messages; the
        // log start must move only by retention (or an explicit purge), never by a snapshot.
        Ok(RaftConfig { max_in_snapshot_log_to_keep: u64::MAX, ..config })
    }
}

fn raft_config(group: &str, heartbeat_ms: u64, [min, max]: [u64; 2]) -> Result<RaftConfig, ConfigError> {
    if heartbeat_ms == 0 || min <= heartbeat_ms * 2 || max <= min {
        return Err(ConfigError::Invalid(format!(
            "raft.{group}_*: need 0 < heartbeat ({heartbeat_ms} ms) < election min / 2 ({min} ms) and min < max ({max} ms)"
        )));
    }
    let config = RaftConfig {
        cluster_name: format!("sluice-{group}"),
        heartbeat_interval: heartbeat_ms,
        election_timeout_min: min,
        election_timeout_max: max,
        // Installing a snapshot includes fsyncs on a slow disk: give it room.
        install_snapshot_timeout: 5_000,
        // A member whose heartbeats arrive late (a slow disk, a busy runtime) asks first whether
        // it could win, instead of raising the term and deposing a healthy leader.
        enable_pre_vote: Some(true),
        ..RaftConfig::default()
    };
    config.validate().map_err(|e| ConfigError::Invalid(format!("raft.{group}_*: {e}")))
}

/// A broker's whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// This broker's node id; must appear in `peers`. Required.
    pub node_id: u64,
    /// Directory for everything this broker stores. Required.
    pub data_dir: PathBuf,
    /// Address the peer (Raft) service binds, `ip:port`. Default: this node's `raft_addr` in
    /// `peers`.
    #[serde(default)]
    pub raft_listen: Option<SocketAddr>,
    /// Every broker of the cluster, this one included. They are the controller group's voters:
    /// a new cluster forms from them without a manual init step. Required, at least one.
    pub peers: Vec<PeerConfig>,
    /// Raft timings. Default: see [`RaftTimings`].
    #[serde(default)]
    pub raft: RaftTimings,
    /// A broker that has not acknowledged the controller leader for this long is marked dead
    /// in the metadata (and live again when it answers). Default: 6000.
    #[serde(default = "default_session_timeout_ms")]
    pub broker_session_timeout_ms: u64,
}

fn default_session_timeout_ms() -> u64 {
    6_000
}

impl BrokerConfig {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<BrokerConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let config: BrokerConfig =
            toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the whole configuration; the error names the field at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.peers.is_empty() {
            return invalid("peers: list every broker of the cluster, this one included".into());
        }
        let ids: BTreeSet<u64> = self.peers.iter().map(|p| p.node_id).collect();
        if ids.len() != self.peers.len() {
            return invalid("peers: node ids must be unique".into());
        }
        if !ids.contains(&self.node_id) {
            return invalid(format!("node_id {} is not among peers {ids:?}", self.node_id));
        }
        for p in &self.peers {
            for (field, addr) in [("raft_addr", &p.raft_addr), ("client_addr", &p.client_addr)] {
                if !addr.contains(':') || addr.len() > 255 {
                    return invalid(format!("peers[node_id = {}].{field} = {addr:?}: expected host:port", p.node_id));
                }
            }
        }
        if self.raft_listen().is_none() {
            return invalid(format!(
                "raft_listen: not set and this node's raft_addr ({}) is not ip:port",
                self.me().raft_addr
            ));
        }
        self.raft.controller()?;
        self.raft.partition()?;
        if self.broker_session_timeout_ms <= self.raft.controller_election_timeout_ms[1] {
            return invalid(format!(
                "broker_session_timeout_ms ({}) must exceed the controller election timeout max ({} ms)",
                self.broker_session_timeout_ms, self.raft.controller_election_timeout_ms[1]
            ));
        }
        Ok(())
    }

    /// This broker's own entry in `peers`.
    pub fn me(&self) -> &PeerConfig {
        self.peers.iter().find(|p| p.node_id == self.node_id).expect("validated: node_id is a peer")
    }

    /// The address the peer service binds.
    pub fn raft_listen(&self) -> Option<SocketAddr> {
        self.raft_listen.or_else(|| self.me().raft_addr.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE: &str = r#"
        node_id = 2
        data_dir = "data/node2"
        [[peers]]
        node_id = 1
        raft_addr = "127.0.0.1:9101"
        client_addr = "127.0.0.1:9091"
        [[peers]]
        node_id = 2
        raft_addr = "127.0.0.1:9102"
        client_addr = "127.0.0.1:9092"
    "#;

    #[test]
    fn parses_with_defaults_and_validates() {
        let c: BrokerConfig = toml::from_str(THREE).unwrap();
        c.validate().unwrap();
        assert_eq!(c.raft_listen(), Some("127.0.0.1:9102".parse().unwrap()));
        assert_eq!(c.raft, RaftTimings::default());
        assert_eq!(c.raft.partition().unwrap().heartbeat_interval, 250);
        assert_eq!(c.raft.partition().unwrap().max_in_snapshot_log_to_keep, u64::MAX, "snapshots never purge");
    }

    #[test]
    fn the_local_cluster_configs_load_and_agree() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cluster-configs");
        let configs: Vec<BrokerConfig> =
            (1..=3).map(|n| BrokerConfig::load(&dir.join(format!("node{n}.toml"))).unwrap()).collect();
        for (i, c) in configs.iter().enumerate() {
            assert_eq!(c.node_id, i as u64 + 1);
            assert_eq!(c.peers, configs[0].peers, "every broker lists the same peers");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let c: BrokerConfig =
            toml::from_str(&THREE.replace("node_id = 2\n        data_dir", "node_id = 7\n        data_dir")).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("node_id 7"));
        let unknown = toml::from_str::<BrokerConfig>(&format!("{THREE}\nbogus = 1")).unwrap_err().to_string();
        assert!(unknown.contains("bogus"), "{unknown}");
        let mut c: BrokerConfig = toml::from_str(THREE).unwrap();
        c.raft.partition_election_timeout_ms = [100, 50];
        assert!(c.validate().unwrap_err().to_string().contains("raft.partition"));
    }
}
