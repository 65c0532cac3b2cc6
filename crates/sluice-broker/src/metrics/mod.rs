//! The broker's Prometheus metrics (docs/METRICS.md lists every one), served over HTTP on
//! `metrics_listen` when it is configured.
//!
//! Two sources, so that the request path does as little as possible:
//!
//! - [`RequestMetrics`]: the client API records each produce and fetch once — a counter by
//!   outcome code, a latency observation, and per-partition message and byte counts added per
//!   batch, never per message.
//! - [`BrokerCollector`]: everything else (Raft role and positions of each hosted partition,
//!   follower lag, high watermarks, controller leadership, live peers) is read when scraped.
//!
//! - The consumer lag of the groups this broker coordinates, gathered when a scrape comes in
//!   (`groups`: some of it is asked of other brokers).
//!
//! [`Exporter`] joins them in one `prometheus-client` registry; [`serve`] answers scrapes.

mod collector;
mod groups;
mod http;
mod requests;

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

use crate::groups::GroupsService;

pub use collector::{BrokerCollector, GroupView};
use groups::{LagCollector, LagRows, RetryCollector};
pub use http::{METRICS_PATH, OPENMETRICS_CONTENT_TYPE, bind};
pub use requests::{LATENCY_BUCKETS_SECONDS, PartitionTraffic, RequestMetrics};

/// Renders the exposition of one broker.
#[derive(Debug)]
pub struct Exporter {
    registry: Registry,
    /// The groups service and the lag rows its collector encodes, if group lag is exported.
    groups: Option<(GroupsService, LagRows)>,
}

impl Exporter {
    /// The exposition of `requests` and of what `collector` reads at scrape time.
    pub fn new(requests: &RequestMetrics, collector: BrokerCollector) -> Exporter {
        let mut registry = Registry::default();
        requests.register(&mut registry);
        registry.register_collector(Box::new(collector));
        Exporter { registry, groups: None }
    }

    /// Also exports the delay releaser's metrics.
    pub fn with_delays(mut self, delays: Option<&crate::delays::DelayMetrics>) -> Exporter {
        if let Some(delays) = delays {
            delays.register(&mut self.registry);
        }
        self
    }

    /// Also exports the consumer lag of the groups `groups` coordinates, gathered by
    /// [`Exporter::refresh`].
    pub fn with_groups(mut self, groups: GroupsService) -> Exporter {
        let rows = LagRows::default();
        self.registry.register_collector(Box::new(LagCollector(rows.clone())));
        self.registry.register_collector(Box::new(RetryCollector(groups.clone())));
        self.groups = Some((groups, rows));
        self
    }

    /// Gathers what is not read at render time (group lag), within a bounded time.
    pub async fn refresh(&self) {
        if let Some((groups, rows)) = &self.groups {
            rows.refresh(groups).await;
        }
    }

    /// The whole exposition now, in the OpenMetrics text format (ending in `# EOF`).
    pub fn render(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// Serves `exporter` on `listener` until `shutdown` resolves.
pub async fn serve(listener: tokio::net::TcpListener, exporter: Exporter, shutdown: impl Future<Output = ()>) {
    let exporter = Arc::new(exporter);
    let render = move || {
        let exporter = Arc::clone(&exporter);
        async move {
            exporter.refresh().await;
            exporter.render()
        }
    };
    http::serve(listener, render, shutdown).await;
}
