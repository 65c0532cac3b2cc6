//! A run's result, printed with the same fields and wording as `sluice bench produce`, so the
//! comparison script reads both with one parser.

use std::time::Duration;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;

/// Latencies above this (an hour, in µs) are clamped: the histogram's upper bound.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A new latency histogram in microseconds, 3 significant digits.
pub fn new_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).context("cannot create the latency histogram")
}

/// Records one latency, clamped to the histogram's range.
pub fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    histogram.saturating_record(latency.as_micros().min(u128::from(MAX_LATENCY_US)) as u64);
}

/// What a run measured.
#[derive(Debug)]
pub struct Summary {
    /// `produce` or `fsync`.
    pub mode: &'static str,
    /// What the latency spans, e.g. `send-to-ack`.
    pub latency: &'static str,
    /// Operations that succeeded (messages acknowledged, blocks synced).
    pub messages: u64,
    /// Payload bytes of those operations.
    pub bytes: u64,
    /// Operations that failed.
    pub errors: u64,
    /// The first failure's message.
    pub first_error: Option<String>,
    /// Wall time of the run.
    pub seconds: f64,
    /// Latency of each successful operation, in µs.
    pub latency_us: Histogram<u64>,
}

impl Summary {
    /// An empty summary.
    pub fn new(mode: &'static str, latency: &'static str) -> Result<Summary> {
        Ok(Summary {
            mode,
            latency,
            messages: 0,
            bytes: 0,
            errors: 0,
            first_error: None,
            seconds: 0.0,
            latency_us: new_histogram()?,
        })
    }

    /// Adds one worker's counts and latencies.
    pub fn merge(&mut self, other: Summary) -> Result<()> {
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latency_us.add(&other.latency_us).context("cannot merge latency histograms")
    }

    /// Counts a failed operation, keeping the first error's message.
    pub fn fail(&mut self, error: impl std::fmt::Display) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| error.to_string());
    }

    fn rates(&self) -> (f64, f64) {
        let seconds = self.seconds.max(1e-9);
        (self.messages as f64 / seconds, self.bytes as f64 / 1e6 / seconds)
    }

    fn percentile_us(&self, q: f64) -> u64 {
        if self.latency_us.is_empty() { 0 } else { self.latency_us.value_at_quantile(q) }
    }

    /// The summary as one JSON object (the fields of `sluice bench produce --output json`).
    pub fn json(&self) -> serde_json::Value {
        let (msgs_per_sec, mb_per_sec) = self.rates();
        serde_json::json!({
            "mode": self.mode,
            "messages": self.messages,
            "bytes": self.bytes,
            "errors": self.errors,
            "seconds": self.seconds,
            "msgs_per_sec": msgs_per_sec,
            "mb_per_sec": mb_per_sec,
            "latency": self.latency,
            "latency_us": {
                "p50": self.percentile_us(0.5),
                "p99": self.percentile_us(0.99),
                "p999": self.percentile_us(0.999),
                "max": self.latency_us.max(),
            },
        })
    }

    /// The summary for people.
    pub fn plain(&self) -> String {
        let (msgs_per_sec, mb_per_sec) = self.rates();
        let ms = |q| self.percentile_us(q) as f64 / 1000.0;
        format!(
            "{}: {} operations ({:.1} MB) in {:.2} s: {msgs_per_sec:.0} ops/s, {mb_per_sec:.2} MB/s, {} errors\n\
             {} latency ms: p50 {:.2}  p99 {:.2}  p999 {:.2}  max {:.2}\n",
            self.mode,
            self.messages,
            self.bytes as f64 / 1e6,
            self.seconds,
            self.errors,
            self.latency,
            ms(0.5),
            ms(0.99),
            ms(0.999),
            self.latency_us.max() as f64 / 1000.0,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_percentiles() {
        let mut s = Summary::new("produce", "send-to-ack").unwrap();
        for us in 1..=1000 {
            record(&mut s.latency_us, Duration::from_micros(us));
        }
        (s.messages, s.bytes, s.seconds) = (1000, 2_000_000, 2.0);
        let v = s.json();
        assert_eq!(v["msgs_per_sec"].as_f64(), Some(500.0));
        assert_eq!(v["mb_per_sec"].as_f64(), Some(1.0));
        assert_eq!(v["latency_us"]["p50"].as_u64(), Some(500));
        assert_eq!(v["latency_us"]["p99"].as_u64(), Some(990));
        assert!(s.plain().contains("500 ops/s, 1.00 MB/s"), "{}", s.plain());
    }

    #[test]
    fn merging_keeps_the_first_error() {
        let mut a = Summary::new("produce", "send-to-ack").unwrap();
        let mut b = Summary::new("produce", "send-to-ack").unwrap();
        b.fail("timed out");
        b.fail("later");
        b.messages = 3;
        record(&mut b.latency_us, Duration::from_millis(4));
        a.merge(b).unwrap();
        assert_eq!((a.messages, a.errors, a.first_error.as_deref()), (3, 2, Some("timed out")));
        assert_eq!(a.latency_us.len(), 1);
        assert!(Summary::new("fsync", "x").unwrap().json()["latency_us"]["p99"] == 0);
    }
}
