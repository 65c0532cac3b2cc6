//! The delay lane of a partition (docs/adr/0009-delayed-messages.md, D11): delayed messages
//! wait in the partition's own Raft group, and are released into it by the leader.
//!
//! - A delayed batch is an ordinary produce entry with the batch's `delayed` bit set. Applying
//!   it numbers its messages (`next_delay_seq`, dense like offsets) and stores each in the
//!   broker's [`DelayStore`], by due time. It gets no offset: consumers do not see it.
//! - Once messages are due, the leader proposes a *release* entry holding them as one batch,
//!   stamped with its clock (`release_ms`). Applying it gives the batch offsets like any
//!   produce, and removes the messages from the store: release and append are one entry, so a
//!   message is released once, on every replica, or not at all.
//! - A *cancel* entry removes a pending message. Cancel and release are ordered by the log: a
//!   message released before the cancel is `AlreadyDelivered`; after a cancel no release holds
//!   it (the leader builds releases from what it has applied, and serialises its proposals).
//! - Nothing is released early: every message in a release is due by its `release_ms` (checked
//!   at apply, deterministically), and a new leader waits until its clock passes the latest
//!   `release_ms` committed before it releases anything.

mod lane;
mod schedules;
mod store;
pub mod transfer;

pub use lane::{DelayLane, DueHook, LaneShared};
pub use schedules::ScheduleRow;
pub use store::{CancelOutcome, DelayStore, Pending, StoreBatch};
