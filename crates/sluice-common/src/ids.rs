//! Identifier newtypes.

use std::fmt;

/// A broker's identity in the cluster; stable across restarts, unique per cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub u64);

/// A partition's number within its topic, counted from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PartitionId(pub u32);

/// The position of one message in a partition. Offsets are dense: every message gets the next
/// one, assigned when its batch is applied (so all replicas agree without coordination).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(pub u64);

impl Offset {
    /// The offset `count` messages after this one.
    #[must_use]
    pub fn advance(self, count: u64) -> Offset {
        Offset(self.0 + count)
    }
}

macro_rules! display_inner {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    )*};
}
display_inner!(NodeId, PartitionId, Offset);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_advance_and_display() {
        assert_eq!(Offset(7).advance(3), Offset(10));
        assert_eq!(Offset(42).to_string(), "42");
        assert_eq!(NodeId(3).to_string(), "3");
        assert_eq!(PartitionId(11).to_string(), "11");
    }
}
