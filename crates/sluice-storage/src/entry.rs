//! The unit the log stores: a Raft entry with an opaque payload.

use bytes::Bytes;

/// A Raft log position: index and the term it was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EntryId {
    /// Dense log index.
    pub index: u64,
    /// Raft term.
    pub term: u64,
}

impl EntryId {
    /// The position `(index, term)`.
    pub const fn new(index: u64, term: u64) -> EntryId {
        EntryId { index, term }
    }
}

/// One log entry. `payload` is opaque to storage; reading returns it as a slice of the read
/// buffer, so a range read makes one copy from the file and none per entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Dense log index.
    pub index: u64,
    /// Raft term.
    pub term: u64,
    /// The entry's bytes.
    pub payload: Bytes,
}

impl Entry {
    /// An entry at `index` in `term`.
    pub fn new(index: u64, term: u64, payload: impl Into<Bytes>) -> Entry {
        Entry { index, term, payload: payload.into() }
    }

    /// Its position.
    pub fn id(&self) -> EntryId {
        EntryId::new(self.index, self.term)
    }
}

/// Where a message offset lives: the batch (entry) holding it, from the offset index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetLocation {
    /// The entry holding the batch.
    pub entry_index: u64,
    /// The batch's first offset.
    pub base_offset: u64,
    /// Messages in the batch.
    pub count: u32,
}

/// How far the offset index reaches: the last indexed batch's entry and the offset after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexedEnd {
    /// Entry index of the last indexed batch.
    pub entry_index: u64,
    /// The offset the next batch must start at.
    pub next_offset: u64,
}
