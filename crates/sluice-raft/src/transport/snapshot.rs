//! Snapshots on the wire: the sender's side of `InstallSnapshot` and the receiver's assembly of
//! the chunks.
//!
//! ```text
//! SnapshotChunk{header: group_id, vote, last_log_id, membership, data_bytes, retained?}
//! SnapshotChunk{data: ≤ 1 MiB} *          (lengths add up to data_bytes)
//! SnapshotChunk{entries: whole entries} * (a partition's retained entries, prev+1 ..= last)
//!                                         ──► SnapshotResponse{vote}
//! ```
//!
//! A partition group's snapshot carries the entries retention keeps up to its last entry
//! (`partition::retained`): read from the sender's log one chunk at a time as the transport
//! takes them, and staged by the receiver in its log's directory as they arrive, so neither
//! holds the retained log in memory. The receiver makes the staging durable before it asks
//! openraft to install the snapshot, whose installation then adopts it into the log.
//!
//! Chunks are slices of the snapshot's `Bytes`, so sending copies nothing; the receiver keeps
//! a single chunk as is and concatenates several once. The send is bounded by progress, not
//! total time: each chunk must be taken by the transport, and the answer must arrive, within
//! `soft_ttl` of the previous step. `cancel` (openraft stopping the replication) ends it at once.
//! A chunk the fault plan stops (failure testing) ends the stream short, and the send fails
//! with that fault whatever the receiver made of it.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, stream};
use openraft::RPCTypes;
use openraft::errors::{ReplicationClosed, StreamingError};
use openraft::network::RPCOption;
use openraft::raft::SnapshotResponse;
use openraft::type_config::alias::SnapshotOf;
use sluice_storage::EntryId;
use tokio::time::Instant;
use tonic::Request;

use super::config::MAX_SNAPSHOT_CHUNK_BYTES;
use super::convert;
use super::error::WireError;
use super::faults::Fault;
use super::network::PeerNetwork;
use super::pb::{self, snapshot_chunk::Chunk};
use crate::partition::delay::transfer;
use crate::partition::{RetainedRange, RetainedReader, retained};
use crate::typ::{LogId, PartitionConfig, Vote};

type C = PartitionConfig;

/// Streams `snapshot` to the network's peer and returns the peer's answer.
pub(crate) async fn send(
    net: &PeerNetwork,
    vote: Vote,
    snapshot: SnapshotOf<C, Bytes>,
    cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
    option: RPCOption,
) -> Result<SnapshotResponse<C>, StreamingError<C>> {
    let call = net.call(RPCTypes::InstallSnapshot);
    let mut client = net.client(&call)?;
    let deadline = option.soft_ttl();
    let chunk_bytes =
        net.clients().config().snapshot_chunk_bytes.min(option.snapshot_chunk_size().unwrap_or(usize::MAX));
    let data = with_delay_rows(net, snapshot.snapshot).await.map_err(|e| call.unreachable(e))?;
    let mut header = convert::snapshot_header_to_pb(net.group_id(), &vote, &snapshot.meta, data.len() as u64);
    let retained = retained_reader(net, &data, snapshot.meta.last_log_id.as_ref());
    header.retained = retained.as_ref().map(|(_, range)| convert::retained_to_pb(range));
    let unread: Arc<Mutex<Option<String>>> = Arc::default();
    let entries = entry_chunks(retained.map(|(reader, _)| reader), chunk_bytes, Arc::clone(&unread));
    let progress = Arc::new(Mutex::new(Instant::now()));
    let touched = Arc::clone(&progress);
    let (faults, target) = (net.clients().faults().clone(), call.target);
    let broken: Arc<Mutex<Option<Fault>>> = Arc::default();
    let breaks = Arc::clone(&broken);
    let requests = stream::iter(chunks(header, data, chunk_bytes))
        .chain(entries)
        .take_while(move |_| {
            let fault = faults.check(target).err();
            *breaks.lock().expect("fault slot poisoned") = fault;
            std::future::ready(fault.is_none())
        })
        .inspect(move |_| *touched.lock().expect("progress poisoned") = Instant::now());
    let rpc = client.install_snapshot(Request::new(requests));
    tokio::pin!(rpc, cancel);
    let overdue_at = || *progress.lock().expect("progress poisoned") + deadline;
    loop {
        tokio::select! {
            closed = &mut cancel => return Err(StreamingError::Closed(closed)),
            result = &mut rpc => {
                if let Some(fault) = *broken.lock().expect("fault slot poisoned") {
                    return Err(fault.rpc_error(&call).into());
                }
                if let Some(why) = unread.lock().expect("read slot poisoned").take() {
                    return Err(call.unreachable(why).into());
                }
                let response = result.map_err(|status| call.failed(&status, deadline))?;
                let response = convert::snapshot_response_from_pb(response.into_inner());
                return response.map_err(|e| call.unreachable(e).into());
            }
            _ = tokio::time::sleep_until(overdue_at()) => {
                if overdue_at() <= Instant::now() {
                    return Err(call.timeout(deadline).into());
                }
            }
        }
    }
}

/// A partition snapshot's data with the group's delayed messages and schedules, read from the
/// delay store now (off the async threads: a large pending set takes a while); other data as is.
async fn with_delay_rows(net: &PeerNetwork, data: Bytes) -> Result<Bytes, String> {
    let Some(store) = net.delays().cloned() else { return Ok(data) };
    let group = net.group_id();
    tokio::task::spawn_blocking(move || transfer::with_rows(&data, &store, group))
        .await
        .map_err(|e| format!("reading the delay store for a snapshot: {e}"))?
        .map_err(|e| format!("reading the delay store for a snapshot: {e}"))
}

/// A reader of the retained entries a partition's snapshot carries, and their range; `None` for
/// other groups, or when there are none.
fn retained_reader(net: &PeerNetwork, data: &Bytes, last: Option<&LogId>) -> Option<(RetainedReader, RetainedRange)> {
    let (log, last) = net.log().zip(last)?;
    match retained::range_to_send(log, data, EntryId::new(last.index, last.leader_id.term)) {
        Ok(range) => range.map(|r| (RetainedReader::new(Arc::clone(log), r), r)),
        Err(e) => {
            tracing::warn!(group = net.group_id(), "sending a snapshot without retained entries: {e}");
            None
        }
    }
}

/// The retained entries as `entries` chunks, read one at a time as the transport takes them, so
/// at most one chunk is in memory. A failed read ends the stream and is left in `unread`.
fn entry_chunks(
    reader: Option<RetainedReader>,
    chunk_bytes: usize,
    unread: Arc<Mutex<Option<String>>>,
) -> impl futures_util::Stream<Item = pb::SnapshotChunk> + Send + 'static {
    let chunk_bytes = chunk_bytes.clamp(1, MAX_SNAPSHOT_CHUNK_BYTES);
    stream::unfold(reader, move |reader| {
        let unread = Arc::clone(&unread);
        async move {
            let mut reader = reader?;
            match reader.next_chunk(chunk_bytes) {
                Ok(Some(entries)) => Some((pb::SnapshotChunk { chunk: Some(Chunk::Entries(entries)) }, Some(reader))),
                Ok(None) => None,
                Err(e) => {
                    *unread.lock().expect("read slot poisoned") = Some(format!("reading retained entries: {e}"));
                    None
                }
            }
        }
    })
}

/// The header, then `data` in slices of at most `chunk_bytes` (and never above 1 MiB).
fn chunks(header: pb::SnapshotHeader, data: Bytes, chunk_bytes: usize) -> Vec<pb::SnapshotChunk> {
    let chunk_bytes = chunk_bytes.clamp(1, MAX_SNAPSHOT_CHUNK_BYTES);
    let mut out = Vec::with_capacity(1 + data.len().div_ceil(chunk_bytes));
    out.push(pb::SnapshotChunk { chunk: Some(Chunk::Header(header)) });
    let mut offset = 0;
    while offset < data.len() {
        let end = (offset + chunk_bytes).min(data.len());
        out.push(pb::SnapshotChunk { chunk: Some(Chunk::Data(data.slice(offset..end))) });
        offset = end;
    }
    out
}

/// The receiver's side: checks the chunks after the header and joins their data.
#[derive(Debug)]
pub(crate) struct Assembler {
    expected_bytes: u64,
    received_bytes: u64,
    chunks: Vec<Bytes>,
}

impl Assembler {
    /// For a snapshot whose header announces `data_bytes`; refuses more than `max_bytes`.
    pub(crate) fn new(data_bytes: u64, max_bytes: u64) -> Result<Assembler, WireError> {
        if data_bytes > max_bytes {
            return Err(WireError::Snapshot(format!("{data_bytes} bytes exceed the limit of {max_bytes}")));
        }
        Ok(Assembler { expected_bytes: data_bytes, received_bytes: 0, chunks: Vec::new() })
    }

    /// Takes the next message of the stream.
    pub(crate) fn push(&mut self, message: pb::SnapshotChunk) -> Result<(), WireError> {
        let data = match message.chunk {
            Some(Chunk::Data(data)) => data,
            Some(Chunk::Header(_)) => return Err(WireError::Snapshot("a second header".into())),
            Some(Chunk::Entries(_)) => return Err(WireError::Snapshot("retained entries without a range".into())),
            None => return Err(WireError::Missing("SnapshotChunk.chunk")),
        };
        if data.len() > MAX_SNAPSHOT_CHUNK_BYTES {
            return Err(WireError::Snapshot(format!("a chunk of {} bytes exceeds 1 MiB", data.len())));
        }
        self.received_bytes += data.len() as u64;
        if self.received_bytes > self.expected_bytes {
            let (got, want) = (self.received_bytes, self.expected_bytes);
            return Err(WireError::Snapshot(format!("{got} bytes received, header announced {want}")));
        }
        self.chunks.push(data);
        Ok(())
    }

    /// The snapshot data, once every announced byte arrived.
    pub(crate) fn finish(self) -> Result<Bytes, WireError> {
        if self.received_bytes != self.expected_bytes {
            let (got, want) = (self.received_bytes, self.expected_bytes);
            return Err(WireError::Snapshot(format!("stream ended after {got} of {want} bytes")));
        }
        Ok(match self.chunks.len() {
            0 => Bytes::new(),
            1 => self.chunks.into_iter().next().expect("one chunk"),
            _ => {
                let mut all = BytesMut::with_capacity(self.expected_bytes as usize);
                self.chunks.iter().for_each(|c| all.extend_from_slice(c));
                all.freeze()
            }
        })
    }
}

/// How long the receiver waits for the next snapshot chunk before giving up on the sender.
pub(crate) const RECEIVE_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> pb::SnapshotHeader {
        pb::SnapshotHeader { group_id: 7, data_bytes: 5, ..Default::default() }
    }

    #[test]
    fn chunks_slice_the_data_and_reassemble_to_it() {
        let data = Bytes::from((0..=255u8).cycle().take(2 * MAX_SNAPSHOT_CHUNK_BYTES + 10).collect::<Vec<u8>>());
        let sent = chunks(header(), data.clone(), usize::MAX);
        assert_eq!(sent.len(), 4, "header + 1 MiB + 1 MiB + 10 bytes");
        let mut assembler = Assembler::new(data.len() as u64, u64::MAX).unwrap();
        for chunk in sent.into_iter().skip(1) {
            assembler.push(chunk).unwrap();
        }
        assert_eq!(assembler.finish().unwrap(), data);
        let one = chunks(header(), data.slice(..10), 4);
        assert_eq!(one.len(), 4, "header + 4 + 4 + 2 bytes");
    }

    #[test]
    fn a_single_chunk_is_kept_without_copying() {
        let data = Bytes::from_static(b"hello");
        let mut assembler = Assembler::new(5, 5).unwrap();
        assembler.push(pb::SnapshotChunk { chunk: Some(Chunk::Data(data.clone())) }).unwrap();
        assert_eq!(assembler.finish().unwrap().as_ptr(), data.as_ptr());
    }

    #[test]
    fn out_of_order_oversized_and_short_streams_are_refused() {
        assert!(Assembler::new(10, 9).is_err(), "over the limit");
        let mut a = Assembler::new(5, 10).unwrap();
        assert!(a.push(pb::SnapshotChunk { chunk: Some(Chunk::Header(header())) }).is_err(), "second header");
        assert!(a.push(pb::SnapshotChunk { chunk: Some(Chunk::Data(Bytes::from_static(b"123456"))) }).is_err());
        let mut a = Assembler::new(5, 10).unwrap();
        a.push(pb::SnapshotChunk { chunk: Some(Chunk::Data(Bytes::from_static(b"123"))) }).unwrap();
        assert!(a.finish().is_err(), "cut short");
    }
}
