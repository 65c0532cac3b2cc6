//! The Sluice broker: one process of a Sluice cluster.
//!
//! A [`Broker`] serves the peer (Raft) transport and is a voter of the controller group, whose
//! replicated [`sluice_controller::Metadata`] replaces RocketMQ's NameServer. A cluster forms from
//! the brokers' configuration files (`cluster-configs/`) with no manual step, and re-forms from
//! stored state after a restart.
//!
//! Each broker hosts the partition replicas the controller assigns it ([`Partitions`]): one
//! Raft group per partition, over the segment log, started and stopped as the metadata changes.
//!
//! Clients reach a broker through the [`client`] API (`sluice-proto`'s gRPC service) on its
//! client address. The `sluice-broker` binary parses its flags and calls [`run`].
//!
//! Retention runs on each partition's leader, which proposes trimming whole expired segments
//! through Raft so that every replica deletes the same entries (`retention`).
//!
//! Consumer [`groups`] are coordinated by the leaders of the internal `__consumer_offsets`
//! topic's partitions, whose logs hold every group's state (docs/adr/0005-consumer-groups.md).
//!
//! A broker whose storage fails stops ([`fail_stop`]): when any of its Raft groups stops on a
//! fatal error, [`run`] shuts it down and returns [`StartError::GroupFailed`], so that a restart
//! recovers it from disk (docs/DURABILITY.md).
//!
//! With `metrics_listen` set, a broker serves Prometheus [`metrics`] over HTTP
//! (docs/METRICS.md).
//!
//! Partition leadership is balanced: the controller spreads preferred leaders over the brokers,
//! and a group led elsewhere hands leadership back to its preferred leader once that broker has
//! been live for `leader_rebalance_delay_ms` (`sluice_raft::liveness`, docs/adr/0004).

pub mod client;
mod config;
mod controller;
pub mod delays;
mod disk;
mod fail_stop;
pub mod files;
pub mod filters;
pub mod groups;
pub mod metrics;
mod node;
mod parked;
mod partitions;
mod retention;
mod txn;

pub use config::{BrokerConfig, ConfigError, GroupConfig, PeerConfig, RaftTimings, TxnConfig};
pub use controller::{BrokerStateMachine, ControllerGroup, ProposeError};
pub use fail_stop::GroupFailure;
pub use node::{Broker, StartError};
pub use partitions::Partitions;

/// How long a broker whose storage failed may take to stop its groups before it returns anyway:
/// a fail-stop must not hang on a disk that no longer answers.
const FAILED_STOP_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Runs a broker with `config` until `shutdown` resolves, then stops it gracefully. Returns an
/// error if it cannot start (invalid configuration, an address in use, unreadable state), or
/// [`StartError::GroupFailed`] once it has stopped because one of its Raft groups stopped on a
/// fatal error (its storage failed): restarted, it recovers from disk.
pub async fn run(config: BrokerConfig, shutdown: impl std::future::Future<Output = ()>) -> Result<(), StartError> {
    config.validate()?;
    tracing::info!(?config, "effective configuration");
    match files::raise_open_file_limit() {
        Ok(limit) => {
            tracing::info!("open-file limit: {limit} (each partition replica holds a few; docs/OPERATIONS.md)")
        }
        Err(e) => tracing::warn!("cannot raise the open-file limit to the hard limit: {e}"),
    }
    let broker = Broker::start(config).await?;
    tracing::info!(
        node_id = broker.config().node_id,
        client = %broker.client_addr(),
        raft = %broker.raft_addr(),
        metrics = ?broker.metrics_addr(),
        "serving"
    );
    let failure = tokio::select! {
        () = shutdown => None,
        failure = broker.failed() => Some(failure),
    };
    let Some(failure) = failure else {
        tracing::info!("shutting down: handing leadership over first");
        broker.stop_gracefully().await;
        return Ok(());
    };
    // The reason is logged already, as the failure was reported. Whatever hangs from here on (a
    // disk that no longer answers, a thread stuck in a system call, a store that will not
    // close), the process must end: a broker left half-dead looks alive to its supervisor.
    std::thread::spawn(|| {
        std::thread::sleep(FAILED_STOP_LIMIT * 2);
        eprintln!("sluice-broker: the broker did not stop within {:?} of its failure; exiting", FAILED_STOP_LIMIT * 2);
        std::process::exit(1);
    });
    if tokio::time::timeout(FAILED_STOP_LIMIT, broker.shutdown()).await.is_err() {
        tracing::warn!("the broker's groups did not stop within {FAILED_STOP_LIMIT:?}; exiting anyway");
    }
    Err(StartError::GroupFailed(failure))
}
