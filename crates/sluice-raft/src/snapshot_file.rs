//! The latest snapshot of a group's state machine, kept in a state file beside its log so a
//! restarted member starts from it (and openraft re-applies only the entries after it).

use std::io;
use std::path::Path;

use bytes::Bytes;
use openraft::storage::SnapshotMeta;
use openraft::type_config::alias::SnapshotMetaOf;
use sluice_storage::{read_state_file, write_state_file};

use crate::codec;
use crate::typ::{PartitionConfig, StoredMembership, log_id};

/// Name of the state file holding the latest snapshot.
const SNAPSHOT_FILE: &str = "snapshot";

/// Writes the snapshot durably (atomically replacing the previous one).
pub(crate) fn store(dir: &Path, meta: &SnapshotMetaOf<PartitionConfig>, data: &Bytes) -> io::Result<()> {
    write_state_file(dir, SNAPSHOT_FILE, &encode(meta, data))?;
    Ok(())
}

/// Reads the stored snapshot, if there is one.
pub(crate) fn load(dir: &Path) -> io::Result<Option<(SnapshotMetaOf<PartitionConfig>, Bytes)>> {
    let Some(raw) = read_state_file(dir, SNAPSHOT_FILE)? else { return Ok(None) };
    let why = |e: String| io::Error::new(io::ErrorKind::InvalidData, format!("snapshot in {}: {e}", dir.display()));
    decode(&raw).map(Some).map_err(why)
}

/// ```text
/// | has_last u8 | last term u64 | last index u64 |
/// | has_membership_log u8 | its term u64 | its index u64 | membership_len u32 | membership |
/// | state machine data ... |
/// ```
/// The membership is encoded as a membership entry's payload (`codec`).
fn encode(meta: &SnapshotMetaOf<PartitionConfig>, data: &Bytes) -> Vec<u8> {
    let membership = codec::encode_membership(meta.last_membership.membership());
    let mut out = Vec::with_capacity(42 + membership.len() + data.len());
    for id in [meta.last_log_id, *meta.last_membership.log_id()] {
        out.push(u8::from(id.is_some()));
        out.extend_from_slice(&id.map_or(0, |l| l.leader_id.term).to_le_bytes());
        out.extend_from_slice(&id.map_or(0, |l| l.index).to_le_bytes());
    }
    out.extend_from_slice(&(membership.len() as u32).to_le_bytes());
    out.extend_from_slice(&membership);
    out.extend_from_slice(data);
    out
}

fn decode(raw: &[u8]) -> Result<(SnapshotMetaOf<PartitionConfig>, Bytes), String> {
    let cut = || "snapshot file cut short".to_string();
    let u64_at = |at: usize| raw.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let id_at = |at: usize| -> Result<Option<crate::typ::LogId>, String> {
        let present = *raw.get(at).ok_or_else(cut)? == 1;
        let (term, index) = (u64_at(at + 1).ok_or_else(cut)?, u64_at(at + 9).ok_or_else(cut)?);
        Ok(present.then(|| log_id(term, index)))
    };
    let (last, m_log) = (id_at(0)?, id_at(17)?);
    let len = raw.get(34..38).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize).ok_or_else(cut)?;
    let payload = raw.get(38..38 + len).ok_or_else(cut)?;
    let membership = payload
        .split_first()
        .and_then(|(_, rest)| codec::decode_membership(rest))
        .ok_or("malformed membership in snapshot")?;
    let meta = SnapshotMeta { last_log_id: last, last_membership: StoredMembership::new(m_log, membership) };
    Ok((meta, Bytes::copy_from_slice(&raw[38 + len..])))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::typ::{Membership, Node};

    #[test]
    fn stored_snapshots_round_trip_and_cuts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        let nodes: BTreeMap<u64, Node> = (1..=3).map(|i| (i, Node { addr: format!("n{i}") })).collect();
        let membership = Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes).unwrap();
        let meta = SnapshotMeta {
            last_log_id: Some(log_id(4, 900)),
            last_membership: StoredMembership::new(Some(log_id(2, 7)), membership),
        };
        let data = Bytes::from_static(b"state bytes");
        store(dir.path(), &meta, &data).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some((meta.clone(), data.clone())));
        let raw = encode(&meta, &data);
        for cut in 0..38 {
            assert!(decode(&raw[..cut]).is_err(), "cut at {cut}");
        }
    }
}
