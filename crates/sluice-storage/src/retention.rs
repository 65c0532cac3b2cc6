//! Retention: which whole, sealed segments may be deleted by age or by total size.
//!
//! Storage only answers the question and deletes on request. In a replicated partition the
//! answer is proposed through Raft and every replica purges at the same index; a standalone log
//! can call [`Log::apply_retention`] directly.

use crate::config::Retention;
use crate::entry::EntryId;
use crate::error::Result;
use crate::log::Log;

impl Log {
    /// The retention limits in force: those the log was opened with, or the last set.
    pub fn retention(&self) -> Retention {
        self.retention.lock().expect("retention lock").clone()
    }

    /// Replaces the retention limits; the next [`Log::retention_point`] uses them. A topic's
    /// retention can be altered while its partitions run.
    pub fn set_retention(&self, retention: Retention) {
        *self.retention.lock().expect("retention lock") = retention;
    }

    /// The highest entry retention allows to purge, if any. A segment qualifies by age when it
    /// was rolled (the next segment was created) at least `retention.max_age` ago, and by size
    /// while the log would still hold `retention.max_bytes` without it. Only a prefix of sealed
    /// segments qualifies; the active segment is always kept.
    pub fn retention_point(&self) -> Option<EntryId> {
        let retention = self.retention();
        if retention.max_age.is_none() && retention.max_bytes.is_none() {
            return None;
        }
        let segments = self.segments();
        let now = self.clock.now_ms();
        let max_age_ms = retention.max_age.map(|a| i64::try_from(a.as_millis()).unwrap_or(i64::MAX));
        let mut total: u64 = segments.iter().map(|s| s.meta().size).sum();
        let mut point = None;
        for pair in segments.windows(2) {
            let (seg, next) = (&pair[0], &pair[1]);
            let m = seg.meta();
            let by_age = max_age_ms.is_some_and(|age| now.saturating_sub(next.created_ms) >= age);
            let by_size = retention.max_bytes.is_some_and(|max| total - m.size >= max);
            if !(by_age || by_size) {
                break;
            }
            total -= m.size;
            point = Some(EntryId::new(m.next_index - 1, m.last_term));
        }
        point.filter(|p| self.purged_id().is_none_or(|purged| p.index > purged.index))
    }

    /// Purges what [`Log::retention_point`] allows and returns the new purge point, if it moved.
    pub fn apply_retention(&self) -> Result<Option<EntryId>> {
        let point = self.retention_point();
        if let Some(p) = point {
            self.purge_to(p)?;
        }
        Ok(point)
    }
}
