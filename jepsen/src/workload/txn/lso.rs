//! The LSO monitor: every [`EVERY`], `describe_topic` of each transactional topic, recording
//! per partition that answered its last stable offset and its end (high watermark), until the
//! runner stops it after the transactions settled. The checker's `stuck-lso` check reads these.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use sluice_client::Client;
use tokio::time::{Instant, MissedTickBehavior};

use super::{Control, call};
use crate::history::{Kind, LsoSample, Op};
use crate::workload::{History, WorkloadConfig, WorkloadError};

/// How often the monitor looks.
pub const EVERY: Duration = Duration::from_millis(500);

/// Runs the monitor until the runner stops it.
pub(super) async fn run(
    client: Client,
    history: History,
    config: Arc<WorkloadConfig>,
    control: Arc<Control>,
) -> Result<(), WorkloadError> {
    let mut ticker = tokio::time::interval_at(Instant::now(), EVERY);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while !Control::flag(&control.stop_followers) {
        ticker.tick().await;
        history.record(Kind::Invoke, Op::TxnLso { partitions: Vec::new() })?;
        let admin = client.admin();
        let described = join_all(config.txn.topics.iter().map(|t| call("describe", admin.describe_topic(t)))).await;
        let mut partitions = Vec::new();
        let mut errors = Vec::new();
        for (topic, d) in config.txn.topics.iter().zip(described) {
            match d {
                Ok(d) => {
                    for p in &d.partitions {
                        if let (Ok(lso), Ok(end)) = (&p.last_stable_offset, &p.log_end_offset) {
                            let sample =
                                LsoSample { topic: topic.clone(), partition: p.partition, lso: *lso, end: *end };
                            partitions.push(sample);
                        }
                    }
                }
                Err(e) => errors.push(format!("{topic}: {e}")),
            }
        }
        if partitions.is_empty() {
            history.record_error(Kind::Fail, Op::TxnLso { partitions }, Some(errors.join("; ")))?;
        } else {
            history.record(Kind::Ok, Op::TxnLso { partitions })?;
        }
    }
    Ok(())
}
