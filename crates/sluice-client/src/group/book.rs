//! The pure bookkeeping of a group member: which offsets may be committed, and how an
//! assignment change splits into partitions to give up and partitions to take.
//!
//! For every partition it owns, a member keeps three positions (each the *next* offset to
//! consume, as a committed offset is):
//!
//! ```text
//!   committed ≤? finished ≤ returned
//!   │           │          └ after the last record `poll` returned
//!   │           └ after the last record the application has finished with: what `poll`
//!   │             had returned when the application called `poll` again (or `commit`)
//!   └ the last offset the coordinator accepted for it (None: nothing known)
//! ```
//!
//! Auto-commit commits `finished`, never `returned`: a record is only committed once the
//! application asked for more (or committed), so a crash while processing redelivers it.

use std::collections::{BTreeMap, BTreeSet};

use sluice_proto::v1;

use crate::topic_partition::TopicPartition;

/// Positions of the partitions a member owns.
#[derive(Debug, Default)]
pub(crate) struct OffsetBook {
    tracks: BTreeMap<TopicPartition, Track>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Track {
    returned: u64,
    finished: u64,
    committed: Option<u64>,
}

impl OffsetBook {
    /// Starts tracking `tp` at `position`; `committed` is the group's committed offset if the
    /// position came from it.
    pub(crate) fn start(&mut self, tp: TopicPartition, position: u64, committed: Option<u64>) {
        self.tracks.insert(tp, Track { returned: position, finished: position, committed });
    }

    /// Stops tracking `tp`.
    pub(crate) fn remove(&mut self, tp: &TopicPartition) {
        self.tracks.remove(tp);
    }

    /// `poll` has returned every record of `tp` before `position` (or the application moved
    /// the partition there with a seek).
    pub(crate) fn returned(&mut self, tp: &TopicPartition, position: u64) {
        if let Some(track) = self.tracks.get_mut(tp) {
            track.returned = position;
        }
    }

    /// The application has finished with every record `poll` returned so far.
    pub(crate) fn finish_all(&mut self) {
        for track in self.tracks.values_mut() {
            track.finished = track.returned;
        }
    }

    /// Finished positions not known to be committed, of the partitions in `only` (all when
    /// `None`): what auto-commit sends.
    pub(crate) fn finished_uncommitted(&self, only: Option<&[TopicPartition]>) -> Vec<(TopicPartition, u64)> {
        self.uncommitted(only, |t| t.finished)
    }

    /// Returned positions not known to be committed: what an explicit `commit` sends.
    pub(crate) fn returned_uncommitted(&self) -> Vec<(TopicPartition, u64)> {
        self.uncommitted(None, |t| t.returned)
    }

    fn uncommitted(&self, only: Option<&[TopicPartition]>, pick: fn(&Track) -> u64) -> Vec<(TopicPartition, u64)> {
        self.tracks
            .iter()
            .filter(|(tp, _)| only.is_none_or(|only| only.contains(tp)))
            .filter(|(_, t)| t.committed != Some(pick(t)))
            .map(|(tp, t)| (tp.clone(), pick(t)))
            .collect()
    }

    /// The coordinator accepted these offsets. Records before a committed offset count as
    /// finished (an explicit commit says so), up to what `poll` returned: auto-commit then
    /// never sends an older position over a newer explicit commit.
    pub(crate) fn committed(&mut self, offsets: &[(TopicPartition, u64)]) {
        for (tp, offset) in offsets {
            if let Some(track) = self.tracks.get_mut(tp) {
                track.committed = Some(*offset);
                track.finished = track.finished.max((*offset).min(track.returned));
            }
        }
    }

    /// The last committed offset of `tp` known to this member.
    pub(crate) fn committed_offset(&self, tp: &TopicPartition) -> Option<u64> {
        self.tracks.get(tp).and_then(|t| t.committed)
    }
}

/// How a member's partitions change when a new assignment arrives.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Diff {
    /// Owned and no longer assigned: commit, call `on_revoked`, stop reading, report.
    pub revoked: Vec<TopicPartition>,
    /// Assigned and not owned yet: start reading, call `on_assigned`.
    pub added: Vec<TopicPartition>,
}

/// What changes from `owned` to `target`, each list in order.
pub(crate) fn diff<'a>(owned: impl IntoIterator<Item = &'a TopicPartition>, target: &BTreeSet<TopicPartition>) -> Diff {
    let owned: BTreeSet<&TopicPartition> = owned.into_iter().collect();
    Diff {
        revoked: owned.iter().filter(|tp| !target.contains(**tp)).map(|tp| (*tp).clone()).collect(),
        added: target.iter().filter(|tp| !owned.contains(tp)).cloned().collect(),
    }
}

/// The protocol's per-topic lists, flattened.
pub(crate) fn from_proto(lists: &[v1::TopicPartitions]) -> BTreeSet<TopicPartition> {
    lists
        .iter()
        .flat_map(|list| {
            let topic: std::sync::Arc<str> = std::sync::Arc::from(list.topic.as_str());
            list.partitions.iter().map(move |&p| TopicPartition::new(std::sync::Arc::clone(&topic), p))
        })
        .collect()
}

/// Partitions grouped per topic as the protocol sends them, topics and partitions in order.
pub(crate) fn to_proto<'a>(partitions: impl IntoIterator<Item = &'a TopicPartition>) -> Vec<v1::TopicPartitions> {
    let mut lists: Vec<v1::TopicPartitions> = Vec::new();
    let sorted: BTreeSet<&TopicPartition> = partitions.into_iter().collect();
    for tp in sorted {
        match lists.last_mut() {
            Some(list) if list.topic == tp.topic() => list.partitions.push(tp.partition()),
            _ => lists.push(v1::TopicPartitions { topic: tp.topic().to_owned(), partitions: vec![tp.partition()] }),
        }
    }
    lists
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: u32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    #[test]
    fn auto_commit_never_runs_ahead_of_what_the_application_finished() {
        let mut book = OffsetBook::default();
        book.start(tp(0), 10, Some(10));
        book.start(tp(1), 0, None);
        assert_eq!(book.finished_uncommitted(None), [(tp(1), 0)], "a reset position is worth committing");
        book.committed(&[(tp(1), 0)]);
        // poll returned records 10..15 of p0: being processed, not finished.
        book.returned(&tp(0), 15);
        assert!(book.finished_uncommitted(None).is_empty(), "nothing finished yet");
        assert_eq!(book.returned_uncommitted(), [(tp(0), 15)], "an explicit commit takes what was returned");
        // The next poll: what the last one returned is finished.
        book.finish_all();
        assert_eq!(book.finished_uncommitted(None), [(tp(0), 15)]);
        // That poll returns more; auto-commit still only sends 15.
        book.returned(&tp(0), 20);
        assert_eq!(book.finished_uncommitted(None), [(tp(0), 15)]);
        book.committed(&[(tp(0), 15)]);
        assert!(book.finished_uncommitted(None).is_empty(), "committed positions are not sent again");
        assert_eq!(book.committed_offset(&tp(0)), Some(15));
    }

    #[test]
    fn an_explicit_commit_finishes_records_and_revocation_commits_only_the_revoked() {
        let mut book = OffsetBook::default();
        book.start(tp(0), 0, None);
        book.start(tp(1), 0, None);
        book.returned(&tp(0), 5);
        book.returned(&tp(1), 7);
        book.committed(&book.returned_uncommitted());
        assert!(book.finished_uncommitted(None).is_empty(), "finished up to the explicit commit");
        book.returned(&tp(0), 9);
        book.returned(&tp(1), 9);
        book.finish_all();
        assert_eq!(book.finished_uncommitted(Some(&[tp(1)])), [(tp(1), 9)]);
        book.remove(&tp(1));
        assert_eq!(book.finished_uncommitted(None), [(tp(0), 9)]);
        book.returned(&tp(1), 100);
        book.committed(&[(tp(1), 100)]);
        assert_eq!(book.committed_offset(&tp(1)), None, "a removed partition stays forgotten");
    }

    #[test]
    fn an_explicit_commit_between_finished_and_returned_is_not_undone_by_auto_commit() {
        let mut book = OffsetBook::default();
        book.start(tp(0), 10, Some(10));
        book.returned(&tp(0), 15);
        book.finish_all();
        book.returned(&tp(0), 20);
        book.committed(&[(tp(0), 18)]);
        assert!(book.finished_uncommitted(None).is_empty(), "15 would move the commit back");
        book.finish_all();
        assert_eq!(book.finished_uncommitted(None), [(tp(0), 20)]);
    }

    #[test]
    fn a_seek_backwards_is_committed_as_the_new_position_once_finished() {
        let mut book = OffsetBook::default();
        book.start(tp(0), 50, Some(50));
        book.returned(&tp(0), 3);
        assert!(book.finished_uncommitted(None).is_empty());
        book.finish_all();
        assert_eq!(book.finished_uncommitted(None), [(tp(0), 3)]);
    }

    #[test]
    fn assignment_changes_split_into_revoked_and_added() {
        let owned = [tp(0), tp(1), tp(2)];
        let target: BTreeSet<_> = [tp(2), tp(3), TopicPartition::new("u", 0)].into_iter().collect();
        let d = diff(&owned, &target);
        assert_eq!(d.revoked, [tp(0), tp(1)]);
        assert_eq!(d.added, [tp(3), TopicPartition::new("u", 0)]);
        assert_eq!(diff(&owned, &owned.iter().cloned().collect()), Diff::default(), "no change");
        assert_eq!(diff([], &BTreeSet::new()), Diff::default());
    }

    #[test]
    fn partitions_round_trip_through_per_topic_lists() {
        let set: BTreeSet<_> = [tp(3), TopicPartition::new("a", 1), tp(0), TopicPartition::new("a", 0)].into();
        let lists = to_proto(&set);
        assert_eq!(lists.len(), 2);
        assert_eq!((lists[0].topic.as_str(), &lists[0].partitions[..]), ("a", &[0, 1][..]));
        assert_eq!((lists[1].topic.as_str(), &lists[1].partitions[..]), ("t", &[0, 3][..]));
        assert_eq!(from_proto(&lists), set);
    }
}
