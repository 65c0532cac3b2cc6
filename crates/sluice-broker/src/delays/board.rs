//! When each partition next has a delayed message due: the releaser sleeps until the earliest.
//! Pure: no clock, no I/O.

use std::collections::{BTreeSet, HashMap};

/// Partition groups by the earliest due time the releaser knows of.
#[derive(Debug, Default)]
pub(crate) struct Board {
    by_due: BTreeSet<(u64, u64)>,
    due_of: HashMap<u64, u64>,
}

impl Board {
    /// Notes that `group` has a message due at `due_ms`; an earlier note for it stays.
    pub(crate) fn note(&mut self, group: u64, due_ms: u64) {
        match self.due_of.get(&group) {
            Some(&known) if known <= due_ms => {}
            known => {
                if let Some(known) = known {
                    self.by_due.remove(&(*known, group));
                }
                self.by_due.insert((due_ms, group));
                self.due_of.insert(group, due_ms);
            }
        }
    }

    /// The earliest due time noted.
    pub(crate) fn first_due(&self) -> Option<u64> {
        self.by_due.first().map(|(due, _)| *due)
    }

    /// Takes the groups due at or before `now_ms`, earliest first.
    pub(crate) fn take_due(&mut self, now_ms: u64) -> Vec<u64> {
        let mut due = Vec::new();
        while let Some(&(at, group)) = self.by_due.first() {
            if at > now_ms {
                break;
            }
            self.by_due.pop_first();
            self.due_of.remove(&group);
            due.push(group);
        }
        due
    }

    /// Forgets `group` (its replica stopped).
    pub(crate) fn forget(&mut self, group: u64) {
        if let Some(due) = self.due_of.remove(&group) {
            self.by_due.remove(&(due, group));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_earliest_note_per_group_and_takes_in_due_order() {
        let mut b = Board::default();
        b.note(1, 500);
        b.note(2, 300);
        b.note(1, 700);
        b.note(3, 300);
        b.note(1, 200);
        assert_eq!(b.first_due(), Some(200));
        assert_eq!(b.take_due(299), vec![1]);
        assert_eq!(b.take_due(300), vec![2, 3]);
        assert_eq!((b.take_due(10_000), b.first_due()), (vec![], None), "group 1's later notes were merged");
        b.note(4, 50);
        b.forget(4);
        assert_eq!(b.first_due(), None);
    }
}
