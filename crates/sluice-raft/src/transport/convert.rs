//! Wire types ⇄ openraft types: the one boundary where `pb` messages become Raft values. Pure,
//! no I/O.
//!
//! Entries use the storage encoding of [`crate::codec`] (`index`, `term`, `payload` = kind byte
//! and body), so a command's bytes go from the log store to the socket and from the socket to
//! the follower's log store as the same `bytes::Bytes`, never copied. Snapshot memberships use
//! the membership-entry payload of the same codec.

use bytes::Bytes;
use openraft::impls::leader_id_std::LeaderId;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendError, StreamAppendResult,
    TransferLeaderError, TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::SnapshotMetaOf;
use openraft::{SnapshotMeta, StoredMembership};

use sluice_storage::EntryId;

use super::error::WireError;
use super::pb;
use crate::codec::{self, KIND_MEMBERSHIP};
use crate::partition::RetainedRange;
use crate::typ::{LogId, PartitionConfig, RaftEntry, Vote, log_id};

type C = PartitionConfig;

pub(crate) fn log_id_to_pb(id: &LogId) -> pb::LogId {
    pb::LogId { term: id.leader_id.term, index: id.index }
}

pub(crate) fn log_id_from_pb(id: pb::LogId) -> LogId {
    log_id(id.term, id.index)
}

fn opt_log_id_to_pb(id: Option<&LogId>) -> Option<pb::LogId> {
    id.map(log_id_to_pb)
}

fn opt_log_id_from_pb(id: Option<pb::LogId>) -> Option<LogId> {
    id.map(log_id_from_pb)
}

pub(crate) fn vote_to_pb(vote: &Vote) -> pb::Vote {
    pb::Vote { term: vote.leader_id.term, voted_for: vote.leader_id.voted_for, committed: vote.committed }
}

/// `what` names the field for the error if the vote is absent.
pub(crate) fn vote_from_pb(vote: Option<pb::Vote>, what: &'static str) -> Result<Vote, WireError> {
    let v = vote.ok_or(WireError::Missing(what))?;
    Ok(Vote { leader_id: LeaderId { term: v.term, voted_for: v.voted_for }, committed: v.committed })
}

/// Shares the entry's payload bytes; copies nothing but the header fields.
pub(crate) fn entry_to_pb(entry: &RaftEntry) -> pb::Entry {
    let stored = codec::encode(entry);
    pb::Entry { index: stored.index, term: stored.term, payload: stored.payload }
}

pub(crate) fn entry_from_pb(entry: pb::Entry) -> Result<RaftEntry, WireError> {
    codec::decode(sluice_storage::Entry { index: entry.index, term: entry.term, payload: entry.payload })
        .map_err(WireError::Entry)
}

pub(crate) fn append_request_to_pb(group_id: u64, req: &AppendEntriesRequest<C>) -> pb::AppendEntriesRequest {
    pb::AppendEntriesRequest {
        group_id,
        vote: Some(vote_to_pb(&req.vote)),
        prev_log_id: opt_log_id_to_pb(req.prev_log_id.as_ref()),
        entries: req.entries.iter().map(entry_to_pb).collect(),
        leader_commit: opt_log_id_to_pb(req.leader_commit.as_ref()),
    }
}

pub(crate) fn append_request_from_pb(req: pb::AppendEntriesRequest) -> Result<AppendEntriesRequest<C>, WireError> {
    Ok(AppendEntriesRequest {
        vote: vote_from_pb(req.vote, "AppendEntriesRequest.vote")?,
        prev_log_id: opt_log_id_from_pb(req.prev_log_id),
        entries: req.entries.into_iter().map(entry_from_pb).collect::<Result<_, _>>()?,
        leader_commit: opt_log_id_from_pb(req.leader_commit),
    })
}

pub(crate) fn append_response_to_pb(resp: &AppendEntriesResponse<C>) -> pb::AppendEntriesResponse {
    use pb::append_entries_response::Result as R;
    let result = match resp {
        AppendEntriesResponse::Success => R::Success(pb::Success {}),
        AppendEntriesResponse::PartialSuccess(m) => {
            R::PartialSuccess(pb::Matching { log_id: opt_log_id_to_pb(m.as_ref()) })
        }
        AppendEntriesResponse::Conflict => R::Conflict(pb::Conflict {}),
        AppendEntriesResponse::HigherVote(v) => R::HigherVote(vote_to_pb(v)),
    };
    pb::AppendEntriesResponse { result: Some(result) }
}

pub(crate) fn append_response_from_pb(resp: pb::AppendEntriesResponse) -> Result<AppendEntriesResponse<C>, WireError> {
    use pb::append_entries_response::Result as R;
    Ok(match resp.result.ok_or(WireError::Missing("AppendEntriesResponse.result"))? {
        R::Success(_) => AppendEntriesResponse::Success,
        R::PartialSuccess(m) => AppendEntriesResponse::PartialSuccess(opt_log_id_from_pb(m.log_id)),
        R::Conflict(_) => AppendEntriesResponse::Conflict,
        R::HigherVote(v) => AppendEntriesResponse::HigherVote(vote_from_pb(Some(v), "higher_vote")?),
    })
}

pub(crate) fn stream_result_to_pb(result: &StreamAppendResult<C>) -> pb::StreamAppendResponse {
    use pb::stream_append_response::Result as R;
    let result = match result {
        Ok(m) => R::Matching(pb::Matching { log_id: opt_log_id_to_pb(m.as_ref()) }),
        Err(StreamAppendError::Conflict(id)) => R::Conflict(log_id_to_pb(id)),
        Err(StreamAppendError::HigherVote(v)) => R::HigherVote(vote_to_pb(v)),
    };
    pb::StreamAppendResponse { result: Some(result) }
}

pub(crate) fn stream_result_from_pb(resp: pb::StreamAppendResponse) -> Result<StreamAppendResult<C>, WireError> {
    use pb::stream_append_response::Result as R;
    Ok(match resp.result.ok_or(WireError::Missing("StreamAppendResponse.result"))? {
        R::Matching(m) => Ok(opt_log_id_from_pb(m.log_id)),
        R::Conflict(id) => Err(StreamAppendError::Conflict(log_id_from_pb(id))),
        R::HigherVote(v) => Err(StreamAppendError::HigherVote(vote_from_pb(Some(v), "higher_vote")?)),
    })
}

pub(crate) fn vote_request_to_pb(group_id: u64, req: &VoteRequest<C>) -> pb::VoteRequest {
    pb::VoteRequest {
        group_id,
        vote: Some(vote_to_pb(&req.vote)),
        last_log_id: opt_log_id_to_pb(req.last_log_id.as_ref()),
        leadership_transfer: req.leadership_transfer,
    }
}

pub(crate) fn vote_request_from_pb(req: pb::VoteRequest) -> Result<VoteRequest<C>, WireError> {
    Ok(VoteRequest {
        vote: vote_from_pb(req.vote, "VoteRequest.vote")?,
        last_log_id: opt_log_id_from_pb(req.last_log_id),
        leadership_transfer: req.leadership_transfer,
    })
}

pub(crate) fn vote_response_to_pb(resp: &VoteResponse<C>) -> pb::VoteResponse {
    pb::VoteResponse {
        vote: Some(vote_to_pb(&resp.vote)),
        vote_granted: resp.vote_granted,
        last_log_id: opt_log_id_to_pb(resp.last_log_id.as_ref()),
    }
}

pub(crate) fn vote_response_from_pb(resp: pb::VoteResponse) -> Result<VoteResponse<C>, WireError> {
    Ok(VoteResponse {
        vote: vote_from_pb(resp.vote, "VoteResponse.vote")?,
        vote_granted: resp.vote_granted,
        last_log_id: opt_log_id_from_pb(resp.last_log_id),
    })
}

pub(crate) fn snapshot_header_to_pb(
    group_id: u64,
    vote: &Vote,
    meta: &SnapshotMetaOf<C>,
    data_bytes: u64,
) -> pb::SnapshotHeader {
    pb::SnapshotHeader {
        group_id,
        vote: Some(vote_to_pb(vote)),
        last_log_id: opt_log_id_to_pb(meta.last_log_id.as_ref()),
        membership_log_id: opt_log_id_to_pb(meta.last_membership.log_id().as_ref()),
        membership: codec::encode_membership(meta.last_membership.membership()),
        data_bytes,
        retained: None,
    }
}

/// A retained range on the wire.
pub(crate) fn retained_to_pb(range: &RetainedRange) -> pb::RetainedRange {
    let id = |e: EntryId| pb::LogId { term: e.term, index: e.index };
    pb::RetainedRange { prev: Some(id(range.prev)), last: Some(id(range.last)) }
}

/// A retained range from the wire; it must end at the snapshot's last entry.
pub(crate) fn retained_from_pb(range: pb::RetainedRange, last: Option<&LogId>) -> Result<RetainedRange, WireError> {
    let id = |l: pb::LogId| EntryId::new(l.index, l.term);
    let prev = id(range.prev.ok_or(WireError::Missing("RetainedRange.prev"))?);
    let end = id(range.last.ok_or(WireError::Missing("RetainedRange.last"))?);
    if last.is_none_or(|l| (l.index, l.leader_id.term) != (end.index, end.term)) || prev.index >= end.index {
        return Err(WireError::Snapshot(format!("retained range {prev:?}..={end:?} does not end the snapshot")));
    }
    Ok(RetainedRange { prev, last: end })
}

/// The sender's vote and the snapshot's meta.
pub(crate) fn snapshot_header_from_pb(header: pb::SnapshotHeader) -> Result<(Vote, SnapshotMetaOf<C>), WireError> {
    let vote = vote_from_pb(header.vote, "SnapshotHeader.vote")?;
    let membership = decode_membership(&header.membership).ok_or(WireError::Membership)?;
    let meta = SnapshotMeta {
        last_log_id: opt_log_id_from_pb(header.last_log_id),
        last_membership: StoredMembership::new(opt_log_id_from_pb(header.membership_log_id), membership),
    };
    Ok((vote, meta))
}

fn decode_membership(payload: &Bytes) -> Option<crate::typ::Membership> {
    match payload.split_first() {
        Some((&KIND_MEMBERSHIP, body)) => codec::decode_membership(body),
        _ => None,
    }
}

pub(crate) fn snapshot_response_to_pb(resp: &SnapshotResponse<C>) -> pb::SnapshotResponse {
    pb::SnapshotResponse { vote: Some(vote_to_pb(&resp.vote)) }
}

pub(crate) fn snapshot_response_from_pb(resp: pb::SnapshotResponse) -> Result<SnapshotResponse<C>, WireError> {
    Ok(SnapshotResponse::new(vote_from_pb(resp.vote, "SnapshotResponse.vote")?))
}

pub(crate) fn transfer_request_to_pb(group_id: u64, req: &TransferLeaderRequest<C>) -> pb::TransferLeaderRequest {
    pb::TransferLeaderRequest {
        group_id,
        from_leader: Some(vote_to_pb(req.from_leader())),
        to_node_id: *req.to_node_id(),
        last_log_id: opt_log_id_to_pb(req.last_log_id()),
    }
}

pub(crate) fn transfer_request_from_pb(req: pb::TransferLeaderRequest) -> Result<TransferLeaderRequest<C>, WireError> {
    let from = vote_from_pb(req.from_leader, "TransferLeaderRequest.from_leader")?;
    Ok(TransferLeaderRequest::new(from, req.to_node_id, opt_log_id_from_pb(req.last_log_id)))
}

pub(crate) fn transfer_response_to_pb(resp: &TransferLeaderResponse<C>) -> pb::TransferLeaderResponse {
    use pb::transfer_leader_response::Result as R;
    let result = match resp {
        Ok(()) => R::Ok(pb::Success {}),
        Err(TransferLeaderError::VoteChanged { expected, actual }) => {
            R::VoteChanged(pb::VoteChanged { expected: Some(vote_to_pb(expected)), actual: Some(vote_to_pb(actual)) })
        }
        Err(TransferLeaderError::LogNotFlushed { expected, actual }) => R::LogNotFlushed(pb::LogNotFlushed {
            expected: opt_log_id_to_pb(expected.as_ref()),
            actual: opt_log_id_to_pb(actual.as_ref()),
        }),
    };
    pb::TransferLeaderResponse { result: Some(result) }
}

pub(crate) fn transfer_response_from_pb(
    resp: pb::TransferLeaderResponse,
) -> Result<TransferLeaderResponse<C>, WireError> {
    use pb::transfer_leader_response::Result as R;
    Ok(match resp.result.ok_or(WireError::Missing("TransferLeaderResponse.result"))? {
        R::Ok(_) => Ok(()),
        R::VoteChanged(v) => Err(TransferLeaderError::VoteChanged {
            expected: vote_from_pb(v.expected, "VoteChanged.expected")?,
            actual: vote_from_pb(v.actual, "VoteChanged.actual")?,
        }),
        R::LogNotFlushed(l) => Err(TransferLeaderError::LogNotFlushed {
            expected: opt_log_id_from_pb(l.expected),
            actual: opt_log_id_from_pb(l.actual),
        }),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::EntryPayload;
    use openraft::entry::RaftEntry as _;

    use super::*;
    use crate::typ::{Command, Membership, Node};

    fn membership() -> Membership {
        let nodes: BTreeMap<u64, Node> = (1..=3).map(|i| (i, Node { addr: format!("127.0.0.1:70{i}0") })).collect();
        Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes).unwrap()
    }

    #[test]
    fn append_requests_round_trip_without_copying_commands() {
        let command = Command::new(b"record batch");
        let req = AppendEntriesRequest::<C> {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(log_id(2, 9)),
            entries: vec![
                RaftEntry::new(log_id(3, 10), EntryPayload::Blank),
                RaftEntry::new(log_id(3, 11), EntryPayload::Normal(command.clone())),
                RaftEntry::new(log_id(3, 12), EntryPayload::Membership(membership())),
            ],
            leader_commit: None,
        };
        let wire = append_request_to_pb(7, &req);
        assert_eq!(wire.group_id, 7);
        assert_eq!(wire.entries[1].payload.as_ptr(), command.stored().as_ptr(), "payload shared, not copied");
        let back = append_request_from_pb(wire).unwrap();
        assert_eq!(back.vote, req.vote);
        assert_eq!((back.prev_log_id, back.leader_commit), (req.prev_log_id, req.leader_commit));
        assert_eq!(back.entries, req.entries);
    }

    #[test]
    fn responses_round_trip() {
        let results: [StreamAppendResult<C>; 4] = [
            Ok(None),
            Ok(Some(log_id(4, 100))),
            Err(StreamAppendError::Conflict(log_id(3, 50))),
            Err(StreamAppendError::HigherVote(Vote::new(9, 2))),
        ];
        for r in results {
            assert_eq!(stream_result_from_pb(stream_result_to_pb(&r)).unwrap(), r);
        }
        let votes = [VoteResponse::<C>::new(Vote::new(5, 3), Some(log_id(4, 7)), true)];
        for v in votes {
            assert_eq!(vote_response_from_pb(vote_response_to_pb(&v)).unwrap(), v);
        }
        let transfers: [TransferLeaderResponse<C>; 2] =
            [Ok(()), Err(TransferLeaderError::LogNotFlushed { expected: Some(log_id(1, 2)), actual: None })];
        for t in transfers {
            assert_eq!(transfer_response_from_pb(transfer_response_to_pb(&t)).unwrap(), t);
        }
    }

    #[test]
    fn snapshot_header_round_trips_and_rejects_a_bad_membership() {
        let meta = SnapshotMeta {
            last_log_id: Some(log_id(4, 300)),
            last_membership: StoredMembership::new(Some(log_id(1, 1)), membership()),
        };
        let vote = Vote::new_committed(4, 2);
        let header = snapshot_header_to_pb(7, &vote, &meta, 123);
        let (v, m) = snapshot_header_from_pb(header.clone()).unwrap();
        assert_eq!((v, m), (vote, meta));
        let bad = pb::SnapshotHeader { membership: header.membership.slice(1..), ..header };
        assert!(matches!(snapshot_header_from_pb(bad), Err(WireError::Membership)));
    }

    #[test]
    fn missing_fields_and_bad_entries_are_wire_errors() {
        let no_vote = pb::VoteRequest { group_id: 1, vote: None, last_log_id: None, leadership_transfer: false };
        assert!(matches!(vote_request_from_pb(no_vote), Err(WireError::Missing(_))));
        let bad_entry = pb::Entry { index: 5, term: 1, payload: Bytes::from_static(&[9]) };
        let err = entry_from_pb(bad_entry).unwrap_err();
        assert!(err.to_string().contains("entry 5"), "{err}");
        assert_eq!(RaftEntry::new_blank(log_id(1, 1)).index(), 1);
    }
}
