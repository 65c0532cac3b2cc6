//! [`FlushPolicy`]: when a replica may call an append durable — after its fsync, or once it is
//! in the operating system with an fsync promised within an interval.

use std::time::Duration;

/// The most a relaxed policy may leave data unsynced: one hour. Longer gains nothing (the
/// kernel writes dirty pages back within about 30 s anyway) and only widens what a crash of a
/// majority can lose.
pub const MAX_FLUSH_INTERVAL_MS: u64 = 3_600_000;

/// When the writes of a log count as saved for its Raft group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Only after an fsync covers them, through the group-commit [`Flusher`](crate::Flusher):
    /// an acknowledged write is on the disk of a majority (docs/ARCHITECTURE.md, D3). The default.
    #[default]
    EveryAppend,
    /// As soon as they are in the operating system (page cache): an acknowledged write is in the
    /// memory of a majority. The flusher fsyncs them within this interval of being written.
    Interval(Duration),
}

impl FlushPolicy {
    /// The policy a topic's `flush_interval_ms` asks for: unset fsyncs before every
    /// acknowledgement; a value (1 to [`MAX_FLUSH_INTERVAL_MS`], checked by the controller)
    /// fsyncs at least that often.
    pub fn from_interval_ms(flush_interval_ms: Option<u64>) -> FlushPolicy {
        match flush_interval_ms {
            None => FlushPolicy::EveryAppend,
            Some(ms) => FlushPolicy::Interval(Duration::from_millis(ms.clamp(1, MAX_FLUSH_INTERVAL_MS))),
        }
    }

    /// The interval of a relaxed policy; `None` for [`FlushPolicy::EveryAppend`].
    pub fn interval(self) -> Option<Duration> {
        match self {
            FlushPolicy::EveryAppend => None,
            FlushPolicy::Interval(d) => Some(d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_means_every_append_and_values_are_kept_within_range() {
        assert_eq!(FlushPolicy::from_interval_ms(None), FlushPolicy::EveryAppend);
        assert_eq!(FlushPolicy::from_interval_ms(Some(50)).interval(), Some(Duration::from_millis(50)));
        assert_eq!(FlushPolicy::from_interval_ms(Some(0)).interval(), Some(Duration::from_millis(1)));
        let max = Duration::from_millis(MAX_FLUSH_INTERVAL_MS);
        assert_eq!(FlushPolicy::from_interval_ms(Some(u64::MAX)).interval(), Some(max));
        assert_eq!(FlushPolicy::default().interval(), None);
    }
}
