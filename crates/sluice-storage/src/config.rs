//! Log configuration: limits, segment rolling and retention.

use std::time::Duration;

use crate::error::{Result, StorageError};
use crate::format::ENTRY_HEADER_LEN;
use crate::lock::LockMode;

/// How a [`Log`](crate::Log) lays out and limits its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Largest payload of one entry, in bytes. Larger appends fail with `EntryTooLarge`.
    /// Default: 16 MiB.
    pub max_entry_bytes: u32,
    /// A segment is sealed and a new one started once it would grow past this size. Positions
    /// inside a segment are 32-bit, so at most 4 GiB − 1. Default: 128 MiB.
    pub max_segment_bytes: u64,
    /// A segment holding entries is rolled once it is this old, so retention by age can delete
    /// data on quiet partitions too. `None` rolls by size only. Default: 7 days.
    pub max_segment_age: Option<Duration>,
    /// One position-index record is written per this many bytes of log (sparse index); a read
    /// scans at most this many bytes past the nearest record. Default: 4096.
    pub index_interval_bytes: u32,
    /// What retention may delete. Default: keep everything.
    pub retention: Retention,
    /// How the log keeps others out of its directory: a `LOCK` file of its own, or nothing but
    /// a claim in this process when the opener locks a directory above it. Default:
    /// [`LockMode::PerLog`].
    pub lock: LockMode,
}

/// Retention limits. Only whole sealed segments are ever deleted; the active segment is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    /// Delete sealed segments whose newest data is older than this. Default: none.
    pub max_age: Option<Duration>,
    /// Delete the oldest sealed segments while the log would still hold at least this many
    /// bytes without them. Default: none.
    pub max_bytes: Option<u64>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_entry_bytes: 16 * 1024 * 1024,
            max_segment_bytes: 128 * 1024 * 1024,
            max_segment_age: Some(Duration::from_secs(7 * 24 * 3600)),
            index_interval_bytes: 4096,
            retention: Retention::default(),
            lock: LockMode::PerLog,
        }
    }
}

impl LogConfig {
    /// Checks that the limits are consistent with each other and with the file format.
    pub fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(StorageError::Config(m));
        if self.max_entry_bytes == 0 {
            return fail("max_entry_bytes must be at least 1".into());
        }
        if self.max_segment_bytes > u64::from(u32::MAX) {
            return fail(format!(
                "max_segment_bytes is {}; positions are 32-bit so the limit is {}",
                self.max_segment_bytes,
                u32::MAX
            ));
        }
        let min_segment =
            crate::format::SEGMENT_HEADER_LEN as u64 + ENTRY_HEADER_LEN as u64 + u64::from(self.max_entry_bytes);
        if self.max_segment_bytes < min_segment {
            return fail(format!(
                "max_segment_bytes ({}) must hold one largest entry: at least {min_segment}",
                self.max_segment_bytes
            ));
        }
        if self.index_interval_bytes == 0 {
            return fail("index_interval_bytes must be at least 1".into());
        }
        if self.max_segment_age == Some(Duration::ZERO) {
            return fail("max_segment_age must be positive or unset".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_bad_limits_say_why() {
        LogConfig::default().validate().unwrap();
        let too_big = LogConfig { max_segment_bytes: 5 << 30, ..LogConfig::default() };
        assert!(too_big.validate().unwrap_err().to_string().contains("32-bit"));
        let too_small = LogConfig { max_segment_bytes: 1024, ..LogConfig::default() };
        assert!(too_small.validate().unwrap_err().to_string().contains("largest entry"));
    }
}
