//! [`RebalanceListener`]: what the application does when its partitions change.

use std::future::Future;

use super::GroupContext;
use crate::topic_partition::TopicPartition;

/// Callbacks run by [`GroupConsumer::poll`](crate::GroupConsumer::poll) (and
/// [`close`](crate::GroupConsumer::close)) when the member's partitions change, in the
/// application's task, between two batches of records. Each gets a [`GroupContext`] through
/// which it may commit, seek or look at positions; the consumer waits for it to finish before
/// it goes on (for `on_revoked`: before it tells the coordinator the partitions are free).
///
/// Every method has a default that does nothing (`on_lost` calls `on_revoked`). Implement
/// them with `async fn`:
///
/// ```no_run
/// use sluice_client::{GroupContext, RebalanceListener, TopicPartition};
///
/// struct SaveProgress;
///
/// impl RebalanceListener for SaveProgress {
///     async fn on_revoked(&mut self, group: &mut GroupContext<'_>, revoked: &[TopicPartition]) {
///         // With auto-commit off, commit what was processed before another member takes over.
///         if let Err(e) = group.commit().await {
///             eprintln!("commit before giving up {revoked:?} failed: {e}");
///         }
///     }
///
///     async fn on_assigned(&mut self, group: &mut GroupContext<'_>, assigned: &[TopicPartition]) {
///         println!("now reading {assigned:?} as member {}", group.member_id());
///     }
/// }
/// ```
pub trait RebalanceListener: Send {
    /// The member was given `assigned` (newly; it keeps what it had). They are read from the
    /// group's committed offsets, or from `auto_offset_reset` where nothing is committed,
    /// unless this callback seeks them elsewhere.
    fn on_assigned(
        &mut self,
        group: &mut GroupContext<'_>,
        assigned: &[TopicPartition],
    ) -> impl Future<Output = ()> + Send {
        let _ = (group, assigned);
        async {}
    }

    /// The member must give up `revoked`. With auto-commit on, their positions have just
    /// been committed; records of them already returned by `poll` are the application's
    /// last. Commit here anything the application tracks itself.
    fn on_revoked(
        &mut self,
        group: &mut GroupContext<'_>,
        revoked: &[TopicPartition],
    ) -> impl Future<Output = ()> + Send {
        let _ = (group, revoked);
        async {}
    }

    /// The member lost `lost` without a chance to commit: it was fenced or its session
    /// expired, and they may already belong to another member (commits for them are
    /// refused). By default this calls [`RebalanceListener::on_revoked`].
    fn on_lost(&mut self, group: &mut GroupContext<'_>, lost: &[TopicPartition]) -> impl Future<Output = ()> + Send {
        self.on_revoked(group, lost)
    }
}

/// The listener of a [`GroupConsumer`](crate::GroupConsumer) made without one: it does
/// nothing (auto-commit, when on, still commits revoked partitions).
///
/// ```
/// use sluice_client::{NoRebalanceListener, RebalanceListener};
/// fn takes(_: impl RebalanceListener) {}
/// takes(NoRebalanceListener);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRebalanceListener;

impl RebalanceListener for NoRebalanceListener {}
