//! What `sluice bench delay` reports, plain or as JSON.

use super::*;

/// A mode's result.
pub(super) enum Report {
    Steady(SteadyReport),
    Burst(BurstReport),
    Pending(PendingReport),
}

impl Report {
    pub(super) fn json(&self) -> serde_json::Value {
        match self {
            Report::Steady(r) => r.json(),
            Report::Burst(r) => r.json(),
            Report::Pending(r) => r.json(),
        }
    }

    pub(super) fn plain(&self) -> String {
        match self {
            Report::Steady(r) => r.plain(),
            Report::Burst(r) => r.plain(),
            Report::Pending(r) => r.plain(),
        }
    }

    /// What makes the run fail.
    pub(super) fn failures(&self) -> Vec<String> {
        let (sent, received) = match self {
            Report::Steady(r) => (&r.sent, Some(&r.received)),
            Report::Burst(r) => (&r.sent, Some(&r.received)),
            Report::Pending(r) => (&r.sent, None),
        };
        let mut failures = Vec::new();
        if sent.errors > 0 {
            failures.push(format!(
                "{} delayed messages failed; the first error: {}",
                sent.errors,
                sent.first_error.as_deref().unwrap_or_default()
            ));
        }
        if let Some(received) = received {
            let missing = sent.acknowledged.saturating_sub(received.received);
            if missing > 0 {
                failures.push(format!("{missing} acknowledged delayed messages were not read in time"));
            }
            if received.early > 0 {
                failures.push(format!(
                    "{} delayed messages were read before their due time (up to {:.3} ms)",
                    received.early,
                    received.max_early_us as f64 / 1000.0
                ));
            }
            if received.undated > 0 {
                failures.push(format!("{} released messages had no {DELIVER_AT_PROPERTY} property", received.undated));
            }
        }
        failures
    }
}

/// The sends' figures for `--output json`.
pub(super) fn sent_json(sent: &Sent) -> serde_json::Value {
    serde_json::json!({
        "offered": sent.offered,
        "acknowledged": sent.acknowledged,
        "errors": sent.errors,
        "seconds": sent.seconds,
        "msgs_per_sec": sent.rate(),
        "ack_latency_us": latency_json(&sent.latency_us[0]),
    })
}

/// The reads' figures for `--output json`.
pub(super) fn received_json(sent: &Sent, received: &Received) -> serde_json::Value {
    serde_json::json!({
        "received": received.received,
        "missing": sent.acknowledged.saturating_sub(received.received),
        "early": received.early,
        "undated": received.undated,
        "foreign": received.foreign,
        "released_msgs_per_sec": received.rate(),
        "released_peak_per_sec": received.releases.peak(),
        "lateness_us": latency_json(&received.lateness_us),
    })
}

/// The sends' line for plain output.
pub(super) fn sent_plain(sent: &Sent) -> String {
    format!(
        "  sent {} of {} offered in {:.2} s: {:.0} msgs/s, {} errors; ack latency ms: {}\n",
        sent.acknowledged,
        sent.offered,
        sent.seconds,
        sent.rate(),
        sent.errors,
        latency_ms_line(&sent.latency_us[0]),
    )
}

/// The reads' lines for plain output.
pub(super) fn received_plain(sent: &Sent, received: &Received) -> String {
    let mut out = format!(
        "  released and read {} ({} missing, {} early): {:.0} msgs/s from first to last, peak {} in a second\n\
         \x20 release lateness ms: {}\n",
        received.received,
        sent.acknowledged.saturating_sub(received.received),
        received.early,
        received.rate(),
        received.releases.peak(),
        latency_ms_line(&received.lateness_us),
    );
    if received.foreign > 0 {
        out.push_str(&format!("  (also read {} messages of other runs)\n", received.foreign));
    }
    out
}

pub(super) struct SteadyReport {
    pub(super) topic: String,
    pub(super) rate: u32,
    pub(super) duration: Duration,
    pub(super) delay: Duration,
    pub(super) planned: u64,
    pub(super) sent: Sent,
    pub(super) received: Received,
}

impl SteadyReport {
    pub(super) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "mode": "steady",
            "topic": self.topic,
            "rate": self.rate,
            "duration_seconds": self.duration.as_secs_f64(),
            "delay_ms": self.delay.as_millis() as u64,
            "planned": self.planned,
            "sent": sent_json(&self.sent),
            "released": received_json(&self.sent, &self.received),
        })
    }

    pub(super) fn plain(&self) -> String {
        let mut out = format!(
            "steady: {} delayed messages planned to {} ({}/s for {:.1} s, each due {:.1} s after it is sent)\n",
            self.planned,
            self.topic,
            self.rate,
            self.duration.as_secs_f64(),
            self.delay.as_secs_f64(),
        );
        out.push_str(&sent_plain(&self.sent));
        if self.sent.offered < self.planned && self.sent.errors == 0 {
            out.push_str(&format!(
                "  the send rate fell short: {} of {} planned were offered in time\n",
                self.sent.offered, self.planned
            ));
        }
        out.push_str(&received_plain(&self.sent, &self.received));
        out
    }
}

pub(super) struct BurstReport {
    pub(super) topic: String,
    pub(super) count: u64,
    pub(super) due_ms: u64,
    /// From the end of sending to T.
    pub(super) slack_seconds: f64,
    /// From T to the first and the last message read.
    pub(super) first_release_ms: Option<f64>,
    pub(super) drain_ms: Option<f64>,
    pub(super) sent: Sent,
    pub(super) received: Received,
    pub(super) plain_topic: String,
    pub(super) plain_rate: u32,
    /// How long the baseline phase lasted.
    pub(super) baseline_seconds: f64,
    pub(super) plain: Sent,
}

impl BurstReport {
    /// The plain producer's latency quantile `q` during the drain over the baseline's.
    pub(super) fn ratio(&self, q: f64) -> Option<f64> {
        let baseline = percentile_us(&self.plain.latency_us[PHASE_BASELINE], q);
        let drain = percentile_us(&self.plain.latency_us[PHASE_DRAIN], q);
        (baseline > 0 && drain > 0).then(|| drain as f64 / baseline as f64)
    }

    pub(super) fn drain_rate(&self) -> Option<f64> {
        self.drain_ms.filter(|&ms| ms > 0.0).map(|ms| self.received.received as f64 / (ms / 1000.0))
    }

    pub(super) fn json(&self) -> serde_json::Value {
        let phase = |p: usize| {
            serde_json::json!({
                "messages": self.plain.latency_us[p].len(),
                "ack_latency_us": latency_json(&self.plain.latency_us[p]),
            })
        };
        serde_json::json!({
            "mode": "burst",
            "topic": self.topic,
            "count": self.count,
            "due_ms": self.due_ms,
            "sent": sent_json(&self.sent),
            "slack_seconds": self.slack_seconds,
            "released": received_json(&self.sent, &self.received),
            "first_release_ms": self.first_release_ms,
            "drain_ms": self.drain_ms,
            "drain_msgs_per_sec": self.drain_rate(),
            "plain": {
                "topic": self.plain_topic,
                "rate": self.plain_rate,
                "offered": self.plain.offered,
                "acknowledged": self.plain.acknowledged,
                "errors": self.plain.errors,
                "baseline_seconds": self.baseline_seconds,
                "baseline": phase(PHASE_BASELINE),
                "drain": phase(PHASE_DRAIN),
                "ratio_p50": self.ratio(0.5),
                "ratio_p99": self.ratio(0.99),
            },
        })
    }

    pub(super) fn plain(&self) -> String {
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0} ms"));
        let ratio = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}x"));
        let mut out =
            format!("burst: {} delayed messages to {}, all due at T = {}\n", self.count, self.topic, self.due_ms);
        out.push_str(&sent_plain(&self.sent));
        out.push_str(&format!("  sending ended {:.1} s before T\n", self.slack_seconds));
        out.push_str(&received_plain(&self.sent, &self.received));
        out.push_str(&format!(
            "  drain: first read {} after T, last {} after T ({} msgs/s)\n",
            ms(self.first_release_ms),
            ms(self.drain_ms),
            self.drain_rate().map_or_else(|| "-".to_owned(), |r| format!("{r:.0}")),
        ));
        out.push_str(&format!(
            "plain producer ({}/s to {}, {} errors), ack latency ms:\n  baseline ({:.1} s before T, {} msgs): {}\n  during the drain ({} msgs): {}\n  drain / baseline: p50 {}, p99 {}\n",
            self.plain_rate,
            self.plain_topic,
            self.plain.errors,
            self.baseline_seconds,
            self.plain.latency_us[PHASE_BASELINE].len(),
            latency_ms_line(&self.plain.latency_us[PHASE_BASELINE]),
            self.plain.latency_us[PHASE_DRAIN].len(),
            latency_ms_line(&self.plain.latency_us[PHASE_DRAIN]),
            ratio(self.ratio(0.5)),
            ratio(self.ratio(0.99)),
        ));
        out
    }
}

pub(super) struct PendingReport {
    pub(super) topic: String,
    pub(super) count: u64,
    pub(super) delay: Duration,
    pub(super) value_bytes: u32,
    pub(super) sent: Sent,
    pub(super) pending_before: u64,
    pub(super) pending_after: u64,
}

impl PendingReport {
    pub(super) fn mb_per_sec(&self) -> f64 {
        self.sent.rate() * f64::from(self.value_bytes) / 1e6
    }

    pub(super) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "mode": "pending",
            "topic": self.topic,
            "count": self.count,
            "delay_ms": self.delay.as_millis() as u64,
            "sent": sent_json(&self.sent),
            "mb_per_sec": self.mb_per_sec(),
            "pending_before": self.pending_before,
            "pending_after": self.pending_after,
        })
    }

    pub(super) fn plain(&self) -> String {
        let mut out = format!(
            "pending: {} delayed messages to {}, each due {:.0} s after it is sent\n",
            self.count,
            self.topic,
            self.delay.as_secs_f64()
        );
        out.push_str(&sent_plain(&self.sent));
        out.push_str(&format!(
            "  {:.2} MB/s of values; pending in the topic: {} before, {} after\n",
            self.mb_per_sec(),
            self.pending_before,
            self.pending_after
        ));
        out
    }
}
