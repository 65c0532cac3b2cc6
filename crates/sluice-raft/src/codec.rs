//! Raft entries ⇄ storage entries. Pure codec.
//!
//! A storage entry is `(index, term, payload)`; the payload's first byte says what the Raft
//! entry is:
//!
//! ```text
//! blank       | 0 |
//! normal      | 1 | command body ...                         (the Command's stored bytes)
//! membership  | 2 | config_count u32 | (voter_count u32, voter u64 *)* |
//!                   node_count u32 | (node u64, addr_len u32, addr UTF-8)* |
//! ```
//! All integers little-endian.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use openraft::EntryPayload;
use openraft::entry::RaftEntry as _;
use sluice_storage::Entry;

use crate::typ::{Command, Membership, Node, NodeId, RaftEntry, log_id};

/// Payload kind byte of a blank entry.
pub const KIND_BLANK: u8 = 0;
/// Payload kind byte of an entry carrying a [`Command`].
pub const KIND_NORMAL: u8 = 1;
/// Payload kind byte of a membership change.
pub const KIND_MEMBERSHIP: u8 = 2;

/// Encodes a Raft entry for storage. Blank and normal entries are not copied.
pub fn encode(entry: &RaftEntry) -> Entry {
    let payload = match &entry.payload {
        EntryPayload::Blank => Bytes::from_static(&[KIND_BLANK]),
        EntryPayload::Normal(command) => command.stored().clone(),
        EntryPayload::Membership(m) => encode_membership(m),
    };
    Entry { index: entry.log_id.index, term: entry.log_id.leader_id.term, payload }
}

/// Decodes a stored entry; an unknown kind or a malformed membership is an `InvalidData` error.
pub fn decode(entry: Entry) -> io::Result<RaftEntry> {
    let id = log_id(entry.term, entry.index);
    let payload = match entry.payload.first() {
        Some(&KIND_BLANK) => EntryPayload::Blank,
        Some(&KIND_NORMAL) => EntryPayload::Normal(Command::from_stored(entry.payload).expect("kind checked")),
        Some(&KIND_MEMBERSHIP) => {
            EntryPayload::Membership(decode_membership(&entry.payload[1..]).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("entry {}: malformed membership", entry.index))
            })?)
        }
        other => {
            let why = format!("entry {}: unknown payload kind {other:?}", entry.index);
            return Err(io::Error::new(io::ErrorKind::InvalidData, why));
        }
    };
    Ok(RaftEntry::new(id, payload))
}

/// A membership entry's payload: the kind byte, then the membership (also the peer
/// transport's snapshot encoding of a membership).
pub(crate) fn encode_membership(m: &Membership) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(KIND_MEMBERSHIP);
    let configs = m.get_joint_config();
    b.put_u32_le(configs.len() as u32);
    for voters in configs {
        b.put_u32_le(voters.len() as u32);
        for v in voters {
            b.put_u64_le(*v);
        }
    }
    let nodes: Vec<(&NodeId, &Node)> = m.nodes().collect();
    b.put_u32_le(nodes.len() as u32);
    for (id, node) in nodes {
        b.put_u64_le(*id);
        b.put_u32_le(node.addr.len() as u32);
        b.put_slice(node.addr.as_bytes());
    }
    b.freeze()
}

/// Decodes a membership from the payload bytes after the kind byte.
pub(crate) fn decode_membership(mut b: &[u8]) -> Option<Membership> {
    let mut configs = Vec::new();
    for _ in 0..get_u32(&mut b)? {
        let mut voters = BTreeSet::new();
        for _ in 0..get_u32(&mut b)? {
            voters.insert(get_u64(&mut b)?);
        }
        configs.push(voters);
    }
    let mut nodes = BTreeMap::new();
    for _ in 0..get_u32(&mut b)? {
        let id = get_u64(&mut b)?;
        let len = get_u32(&mut b)? as usize;
        if b.len() < len {
            return None;
        }
        let addr = std::str::from_utf8(&b[..len]).ok()?.to_owned();
        b.advance(len);
        nodes.insert(id, Node { addr });
    }
    if !b.is_empty() {
        return None;
    }
    Membership::new(configs, nodes).ok()
}

fn get_u32(b: &mut &[u8]) -> Option<u32> {
    (b.len() >= 4).then(|| b.get_u32_le())
}

fn get_u64(b: &mut &[u8]) -> Option<u64> {
    (b.len() >= 8).then(|| b.get_u64_le())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn membership() -> Membership {
        let nodes: BTreeMap<NodeId, Node> = (1..=3).map(|i| (i, Node { addr: format!("127.0.0.1:90{i}0") })).collect();
        Membership::new(vec![BTreeSet::from([1, 2, 3]), BTreeSet::from([2, 3])], nodes).unwrap()
    }

    #[test]
    fn every_kind_round_trips_and_commands_are_not_copied() {
        let command = Command::new(b"batch bytes");
        let entries = [
            RaftEntry::new(log_id(1, 0), EntryPayload::Blank),
            RaftEntry::new(log_id(2, 7), EntryPayload::Normal(command.clone())),
            RaftEntry::new(log_id(3, 9), EntryPayload::Membership(membership())),
        ];
        for e in entries {
            let stored = encode(&e);
            assert_eq!((stored.index, stored.term), (e.log_id.index, e.log_id.leader_id.term));
            assert_eq!(decode(stored).unwrap(), e);
        }
        let stored = encode(&RaftEntry::new(log_id(2, 7), EntryPayload::Normal(command.clone())));
        assert_eq!(stored.payload.as_ptr(), command.stored().as_ptr(), "normal payloads are shared, not copied");
        assert_eq!(&command.body()[..], b"batch bytes");
    }

    #[test]
    fn malformed_payloads_are_invalid_data() {
        for bad in [&[][..], &[9u8][..], &[KIND_MEMBERSHIP, 1, 0][..]] {
            let err = decode(Entry::new(5, 1, Bytes::copy_from_slice(bad))).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{bad:?}");
            assert!(err.to_string().contains("entry 5"), "{err}");
        }
        let mut cut = encode(&RaftEntry::new(log_id(1, 1), EntryPayload::Membership(membership()))).payload.to_vec();
        for len in 1..cut.len() {
            assert!(decode(Entry::new(1, 1, Bytes::copy_from_slice(&cut[..len]))).is_err(), "cut at {len}");
        }
        cut.push(0);
        assert!(decode(Entry::new(1, 1, Bytes::from(cut))).is_err(), "trailing byte");
    }
}
