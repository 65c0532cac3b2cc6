//! Client, producer and consumer settings. Every field says its default; `validate` refuses
//! values that cannot work, with a message that names the field.

use std::time::Duration;

use crate::error::{Error, Result};

/// The local three-node cluster of `cluster-configs/`.
pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9091,127.0.0.1:9092,127.0.0.1:9093";

/// The environment variable [`ClientConfig::from_env`] reads bootstrap addresses from.
pub const BOOTSTRAP_ENV: &str = "SLUICE_BOOTSTRAP";

/// How to reach a cluster and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `host:port` client addresses of some brokers; any one that answers is enough, the rest
    /// of the cluster is learned from metadata. Default: [`DEFAULT_BOOTSTRAP`].
    pub bootstrap: Vec<String>,
    /// How long to wait for a TCP connection to a broker. Default: 3 s.
    pub connect_timeout: Duration,
    /// How long one request may take before it is abandoned and retried (a fetch may take its
    /// long-poll wait on top). Default: 10 s.
    pub request_timeout: Duration,
    /// How long an admin, metadata or offset operation is retried on retriable errors before
    /// it fails with [`Error::Timeout`]. Default: 30 s.
    pub operation_timeout: Duration,
    /// Metadata older than this is refreshed in the background. Default: 10 s.
    pub metadata_max_age: Duration,
    /// First pause between retries; it doubles up to `retry_backoff_max`. Default: 25 ms.
    pub retry_backoff_min: Duration,
    /// Longest pause between retries. Default: 1 s.
    pub retry_backoff_max: Duration,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            bootstrap: parse_bootstrap(DEFAULT_BOOTSTRAP),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(30),
            metadata_max_age: Duration::from_secs(10),
            retry_backoff_min: Duration::from_millis(25),
            retry_backoff_max: Duration::from_secs(1),
        }
    }
}

impl ClientConfig {
    /// Defaults, with these bootstrap addresses.
    pub fn new<S: Into<String>>(bootstrap: impl IntoIterator<Item = S>) -> ClientConfig {
        ClientConfig { bootstrap: bootstrap.into_iter().map(Into::into).collect(), ..ClientConfig::default() }
    }

    /// Defaults, with bootstrap addresses from `SLUICE_BOOTSTRAP` (comma-separated) when it is
    /// set and not empty, else [`DEFAULT_BOOTSTRAP`].
    pub fn from_env() -> ClientConfig {
        let list = std::env::var(BOOTSTRAP_ENV).ok().filter(|s| !s.trim().is_empty());
        ClientConfig::new(parse_bootstrap(list.as_deref().unwrap_or(DEFAULT_BOOTSTRAP)))
    }

    /// Checks that the settings can work.
    pub fn validate(&self) -> Result<()> {
        if self.bootstrap.is_empty() {
            return Err(invalid("bootstrap: give at least one broker address (host:port)"));
        }
        for address in &self.bootstrap {
            check_address(address)?;
        }
        for (name, value) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
            ("operation_timeout", self.operation_timeout),
            ("metadata_max_age", self.metadata_max_age),
            ("retry_backoff_min", self.retry_backoff_min),
        ] {
            if value.is_zero() {
                return Err(invalid(format!("{name} must be greater than zero")));
            }
        }
        if self.retry_backoff_max < self.retry_backoff_min {
            return Err(invalid("retry_backoff_max must be at least retry_backoff_min"));
        }
        Ok(())
    }
}

/// Splits a comma-separated address list, dropping blanks.
pub fn parse_bootstrap(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn check_address(address: &str) -> Result<()> {
    let port = address.rsplit_once(':').map(|(host, port)| (host, port.parse::<u16>()));
    match port {
        Some((host, Ok(_))) if !host.is_empty() && !address.contains("://") => Ok(()),
        _ => Err(invalid(format!("bootstrap address {address:?} is not host:port (e.g. 127.0.0.1:9091)"))),
    }
}

/// How a [`Producer`](crate::Producer) batches, bounds memory and retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerConfig {
    /// How long a batch waits for more records before it is sent (it goes earlier once it is
    /// full or on [`flush`](crate::Producer::flush)). Default: 5 ms.
    pub linger: Duration,
    /// A batch is sent once it holds this many bytes; a single larger record travels alone.
    /// Default: 256 KiB.
    pub max_batch_bytes: usize,
    /// Records buffered and not yet acknowledged, in bytes, across all partitions; `send` waits
    /// when the buffer is full. Default: 32 MiB.
    pub buffer_memory_bytes: usize,
    /// Idempotent delivery: retries of a batch are written once (producer id, epoch and
    /// per-partition sequence numbers). Default: true.
    pub idempotence: bool,
    /// How long a batch may take from its creation until it is acknowledged, retries included,
    /// before its records fail with [`Error::Timeout`]. Default: 30 s.
    pub delivery_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> ProducerConfig {
        ProducerConfig {
            linger: Duration::from_millis(5),
            max_batch_bytes: 256 * 1024,
            buffer_memory_bytes: 32 * 1024 * 1024,
            idempotence: true,
            delivery_timeout: Duration::from_secs(30),
        }
    }
}

impl ProducerConfig {
    /// Checks that the settings can work.
    pub fn validate(&self) -> Result<()> {
        if self.max_batch_bytes < 1024 {
            return Err(invalid("max_batch_bytes must be at least 1024"));
        }
        if self.buffer_memory_bytes < self.max_batch_bytes {
            return Err(invalid("buffer_memory_bytes must be at least max_batch_bytes"));
        }
        if self.buffer_memory_bytes > u32::MAX as usize {
            return Err(invalid("buffer_memory_bytes must be below 4 GiB"));
        }
        if self.delivery_timeout.is_zero() {
            return Err(invalid("delivery_timeout must be greater than zero"));
        }
        Ok(())
    }
}

/// Where a consumer starts reading a partition, or moves to with `seek`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    /// The first offset still stored.
    Earliest,
    /// The offset after the last committed message: only new messages.
    Latest,
    /// This offset.
    Offset(u64),
    /// The first message whose timestamp is at or after this many ms since the Unix epoch
    /// (the latest offset if there is none).
    Timestamp(i64),
}

/// How a [`Consumer`](crate::Consumer) fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Where a partition without a position starts (after `assign`, before any `seek`).
    /// Default: [`SeekTo::Latest`].
    pub start: SeekTo,
    /// Bytes asked for per partition per fetch; a larger batch still arrives whole.
    /// Default: 1 MiB.
    pub fetch_max_bytes: u32,
    /// How long a broker holds a fetch open when there is nothing new (long poll).
    /// Default: 500 ms.
    pub fetch_max_wait: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> ConsumerConfig {
        ConsumerConfig {
            start: SeekTo::Latest,
            fetch_max_bytes: 1024 * 1024,
            fetch_max_wait: Duration::from_millis(500),
        }
    }
}

impl ConsumerConfig {
    /// Checks that the settings can work.
    pub fn validate(&self) -> Result<()> {
        if self.fetch_max_bytes == 0 {
            return Err(invalid("fetch_max_bytes must be greater than zero"));
        }
        if u32::try_from(self.fetch_max_wait.as_millis()).is_err() {
            return Err(invalid("fetch_max_wait is too long"));
        }
        Ok(())
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidArgument(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_lists_split_on_commas_and_drop_blanks() {
        assert_eq!(parse_bootstrap(" a:1, ,b:2,"), vec!["a:1", "b:2"]);
        assert_eq!(ClientConfig::default().bootstrap.len(), 3);
    }

    #[test]
    fn validation_names_the_bad_field() {
        assert!(ClientConfig::default().validate().is_ok());
        let bad = ClientConfig::new(["localhost"]).validate().unwrap_err().to_string();
        assert!(bad.contains("\"localhost\" is not host:port"), "{bad}");
        let bad = ClientConfig::new(["http://a:1"]).validate().unwrap_err().to_string();
        assert!(bad.contains("not host:port"), "{bad}");
        let empty = ClientConfig::new(Vec::<String>::new()).validate().unwrap_err().to_string();
        assert!(empty.contains("at least one broker"), "{empty}");
        let p = ProducerConfig { buffer_memory_bytes: 1024, ..ProducerConfig::default() };
        assert!(p.validate().unwrap_err().to_string().contains("buffer_memory_bytes"));
        assert!(ProducerConfig::default().validate().is_ok());
        assert!(ConsumerConfig::default().validate().is_ok());
    }
}
