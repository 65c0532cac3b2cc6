//! What `sluice bench txn` reports, plain or as JSON.

use std::fmt::Write as _;

use super::latency::LatencyRow;
use super::read::ReadRow;
use super::throughput::Throughput;
use super::*;
use crate::args::IsolationLevel;
use crate::bench::{latency_json, percentile_us};

/// The whole run.
pub(super) struct Report {
    pub(super) txn_topic: String,
    pub(super) plain_topic: String,
    pub(super) partitions: u32,
    pub(super) producers: u32,
    pub(super) message_bytes: u32,
    /// Latency: operations asked per row.
    pub(super) transactions: u64,
    pub(super) latency: Vec<LatencyRow>,
    /// `None` if Ctrl-C came before it.
    pub(super) throughput: Option<Throughput>,
    pub(super) reads: Vec<ReadRow>,
}

impl LatencyRow {
    fn label(&self) -> String {
        match self.width {
            None => "plain send, 1 message".to_owned(),
            Some(1) => "transaction, 1 partition".to_owned(),
            Some(width) => format!("transaction, {width} partitions"),
        }
    }
}

fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (denominator > 0.0).then(|| numerator / denominator)
}

fn ratio_plain(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"))
}

/// ` (incomplete: ...)` when a phase stopped early.
fn incomplete(tally: &Tally) -> &'static str {
    if tally.complete { "" } else { " (incomplete: stopped by a failure, its time limit or Ctrl-C)" }
}

impl Report {
    pub(super) fn plain(&self) -> String {
        let mut out = format!(
            "bench txn: topics {} and {}, {} partitions, {} producer(s), {}-byte values\n\n",
            self.txn_topic, self.plain_topic, self.partitions, self.producers, self.message_bytes
        );
        self.latency_plain(&mut out);
        self.throughput_plain(&mut out);
        self.reads_plain(&mut out);
        out
    }

    fn latency_plain(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "{:<36} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9}",
            format!("latency, ms ({} of each)", self.transactions),
            "done",
            "errors",
            "p50",
            "p99",
            "p999",
            "max"
        );
        let ms = |us: u64| us as f64 / 1000.0;
        for row in &self.latency {
            let h = &row.tally.latency_us;
            let _ = writeln!(
                out,
                "  {:<34} {:>8} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2}{}",
                row.label(),
                row.tally.ops,
                row.tally.errors,
                ms(percentile_us(h, 0.5)),
                ms(percentile_us(h, 0.99)),
                ms(percentile_us(h, 0.999)),
                ms(h.max()),
                incomplete(&row.tally)
            );
        }
        out.push('\n');
    }

    fn throughput_plain(&self, out: &mut String) {
        let Some(t) = &self.throughput else {
            out.push_str("throughput: not measured (interrupted)\n\n");
            return;
        };
        let bound = match t.limit {
            Limit::Seconds(seconds) => format!("{seconds:?} each"),
            Limit::Messages(messages) => format!("{messages} messages each"),
        };
        let _ = writeln!(out, "throughput ({bound}, transactions of {} messages)", t.records_per_txn);
        let _ = writeln!(
            out,
            "  {:<18} {} messages ({} transactions) in {:.2} s: {:.0} msgs/s, {} errors{}",
            "transactional",
            t.txn.messages,
            t.txn.ops,
            t.txn.seconds,
            t.txn.rate(),
            t.txn.errors,
            incomplete(&t.txn)
        );
        let _ = writeln!(
            out,
            "  {:<18} {} messages in {:.2} s: {:.0} msgs/s, {} errors{}",
            "plain",
            t.plain.messages,
            t.plain.seconds,
            t.plain.rate(),
            t.plain.errors,
            incomplete(&t.plain)
        );
        let _ = writeln!(out, "  transactional / plain: {}\n", ratio_plain(t.ratio()));
    }

    fn reads_plain(&self, out: &mut String) {
        if self.reads.is_empty() {
            out.push_str("reads: not measured (interrupted)\n");
            return;
        }
        let _ = writeln!(out, "reads of {} from the earliest offset", self.txn_topic);
        for row in &self.reads {
            let t = &row.tally;
            let _ = writeln!(
                out,
                "  {:<18} {} messages in {:.2} s: {:.0} msgs/s, {:.2} MB/s{}",
                row.isolation.name(),
                t.messages,
                t.seconds,
                t.rate(),
                t.bytes as f64 / 1e6 / t.seconds.max(1e-9),
                incomplete(t)
            );
        }
        let _ = writeln!(out, "  read_committed / read_uncommitted: {}", ratio_plain(self.read_ratio()));
    }

    /// read_committed msgs/s over read_uncommitted msgs/s.
    fn read_ratio(&self) -> Option<f64> {
        let rate = |level| self.reads.iter().find(|r| r.isolation == level).map(|r| r.tally.rate());
        let (committed, uncommitted) = (rate(IsolationLevel::ReadCommitted)?, rate(IsolationLevel::ReadUncommitted)?);
        ratio(committed, uncommitted)
    }

    pub(super) fn json(&self) -> serde_json::Value {
        let transactions: Vec<serde_json::Value> = self
            .latency
            .iter()
            .filter_map(|row| {
                let mut json = latency_row_json(&row.tally);
                json["partitions"] = row.width?.into();
                Some(json)
            })
            .collect();
        let plain = self.latency.iter().find(|row| row.width.is_none()).map(|row| latency_row_json(&row.tally));
        let reads: serde_json::Map<String, serde_json::Value> =
            self.reads.iter().map(|row| (row.isolation.name().to_owned(), rate_json(&row.tally))).collect();
        serde_json::json!({
            "txn_topic": self.txn_topic,
            "plain_topic": self.plain_topic,
            "partitions": self.partitions,
            "producers": self.producers,
            "message_bytes": self.message_bytes,
            "latency": { "count": self.transactions, "plain": plain, "transactions": transactions },
            "throughput": self.throughput_json(),
            "read": { "topic": self.txn_topic, "isolation": reads, "ratio": self.read_ratio() },
        })
    }

    fn throughput_json(&self) -> serde_json::Value {
        let Some(t) = &self.throughput else { return serde_json::Value::Null };
        let (seconds, messages) = match t.limit {
            Limit::Seconds(seconds) => (Some(seconds.as_secs_f64()), None),
            Limit::Messages(messages) => (None, Some(messages)),
        };
        let mut transactional = rate_json(&t.txn);
        transactional["transactions"] = t.txn.ops.into();
        serde_json::json!({
            "records_per_txn": t.records_per_txn,
            "limit_seconds": seconds,
            "limit_messages": messages,
            "transactional": transactional,
            "plain": rate_json(&t.plain),
            "ratio": t.ratio(),
        })
    }

    /// What makes the run fail: any failed send, transaction or read.
    pub(super) fn failures(&self) -> Vec<String> {
        let mut phases: Vec<(String, &Tally)> =
            self.latency.iter().map(|row| (format!("latency, {}", row.label()), &row.tally)).collect();
        if let Some(t) = &self.throughput {
            phases.push(("throughput, transactional".to_owned(), &t.txn));
            phases.push(("throughput, plain".to_owned(), &t.plain));
        }
        phases.extend(self.reads.iter().map(|row| (format!("read, {}", row.isolation.name()), &row.tally)));
        phases
            .into_iter()
            .filter(|(_, tally)| tally.errors > 0)
            .map(|(what, tally)| {
                format!(
                    "{what}: {} failed; the first: {}",
                    tally.errors,
                    tally.first_error.as_deref().unwrap_or_default()
                )
            })
            .collect()
    }
}

fn latency_row_json(tally: &Tally) -> serde_json::Value {
    serde_json::json!({
        "done": tally.ops,
        "errors": tally.errors,
        "complete": tally.complete,
        "seconds": tally.seconds,
        "latency_us": latency_json(&tally.latency_us),
    })
}

fn rate_json(tally: &Tally) -> serde_json::Value {
    serde_json::json!({
        "messages": tally.messages,
        "bytes": tally.bytes,
        "errors": tally.errors,
        "complete": tally.complete,
        "seconds": tally.seconds,
        "msgs_per_sec": tally.rate(),
    })
}
