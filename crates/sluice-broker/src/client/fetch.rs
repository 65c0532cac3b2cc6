//! `Fetch` and `ListOffsets`: reads of committed data, served by the partition's leader.
//!
//! The high watermark is the partition state machine's next offset, published on a watch after
//! every applied run of entries: everything below it is committed and indexed. A fetch at the
//! high watermark waits on that watch (no polling) for at most its `max_wait_ms`, then reads
//! whole batches from the log as stored (`sluice_raft::partition::read_committed`).
//!
//! Transactions (docs/TRANSACTIONS.md): a `read_committed` fetch (the default) reads up to the
//! last stable offset, published on a third watch with the aborted ranges, and leaves out the
//! batches of aborted transactions and the markers; `read_uncommitted` reads to the high
//! watermark, everything as stored.
//!
//! The log start is the later of the first offset the log still holds and the one retention
//! set through Raft (published on the state machine's log start watch): between a trim being
//! applied and the replica purging its log, the trimmed offsets are already out of range.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_proto::v1::list_offsets_request::At;
use sluice_proto::v1::{FetchRequest, FetchResponse, FetchedBatch, Isolation, ListOffsetsRequest, ListOffsetsResponse};
use sluice_proto::{Error, ErrorCode};
use sluice_raft::partition::{CommittedBatch, LogStart, Stable, confirm_lease, read_committed};
use sluice_storage::{Log, StorageError};
use tokio::sync::watch;

use sluice_common::filter::Filter;

use super::errors::error;
use super::route::Led;
use super::{ClientService, DEFAULT_FETCH_MAX_BYTES, MAX_FETCH_MAX_BYTES, MAX_FETCH_WAIT};
use crate::filters::{Scan, ScanFailure, scan_committed};

/// What a partition holds: the first offset still stored, the last stable offset and the high
/// watermark.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    log_start: u64,
    last_stable: u64,
    high_watermark: u64,
}

/// A partition's high watermark, log start and last stable offset watches.
struct Watches {
    high_watermark: watch::Receiver<u64>,
    log_start: watch::Receiver<LogStart>,
    stable: watch::Receiver<Stable>,
}

impl Watches {
    /// The partition's bounds now.
    fn bounds(&mut self, log: &Log) -> Bounds {
        let high_watermark = *self.high_watermark.borrow_and_update();
        // Read after the high watermark, and never above it: the two watches are published
        // one after the other.
        let last_stable = self.stable.borrow().offset.min(high_watermark);
        Bounds::of(log, high_watermark, last_stable, self.log_start.borrow().offset)
    }

    /// What a read at `isolation` may return up to, and the aborted ranges it hides.
    fn visible(&mut self, log: &Log, isolation: Isolation) -> (Bounds, u64, Option<Stable>) {
        let bounds = self.bounds(log);
        match isolation {
            Isolation::ReadCommitted => (bounds, bounds.last_stable, Some(self.stable.borrow().clone())),
            Isolation::ReadUncommitted => (bounds, bounds.high_watermark, None),
        }
    }
}

impl Bounds {
    /// `retained` is the log start retention set (see the module doc).
    fn of(log: &Log, high_watermark: u64, last_stable: u64, retained: u64) -> Bounds {
        // Nothing indexed: empty, or everything trimmed by retention.
        let held = log.first_indexed_offset().unwrap_or(high_watermark);
        Bounds { log_start: held.max(retained).min(high_watermark), last_stable, high_watermark }
    }

    /// An OK answer carrying `batches`, continuing at `next_offset`.
    fn answer(self, batches: Vec<FetchedBatch>, next_offset: u64) -> FetchResponse {
        FetchResponse {
            error: Some(Error::ok()),
            batches,
            high_watermark: self.high_watermark,
            log_start_offset: self.log_start,
            next_offset: Some(next_offset),
            last_stable_offset: self.last_stable,
        }
    }

    fn out_of_range(self, led: &Led, offset: u64) -> FetchResponse {
        let Bounds { log_start, high_watermark, last_stable } = self;
        let message = format!(
            "offset {offset} is outside {}/{}'s offsets {log_start}..={high_watermark}; fetch from {log_start} \
             (earliest) or {high_watermark} (latest)",
            led.topic, led.partition
        );
        FetchResponse {
            error: Some(error(ErrorCode::OffsetOutOfRange, message)),
            batches: Vec::new(),
            high_watermark,
            log_start_offset: log_start,
            next_offset: None,
            last_stable_offset: last_stable,
        }
    }
}

impl ClientService {
    pub(super) async fn handle_fetch(&self, request: FetchRequest) -> FetchResponse {
        let started = Instant::now();
        let mut waited = Duration::ZERO;
        let response = self.fetch(request, &mut waited).await;
        let code = response.error.as_ref().map_or(ErrorCode::Ok, Error::error_code);
        self.metrics.fetch_answered(code, started.elapsed().saturating_sub(waited));
        response
    }

    /// Serves one fetch; `waited` is set to how long it waited for new data.
    async fn fetch(&self, request: FetchRequest, waited: &mut Duration) -> FetchResponse {
        let led = match self.led_partition(&request.topic, request.partition) {
            Ok(led) => led,
            Err(e) => return failed(e),
        };
        // Compiled before any wait, so a malformed expression is refused at once.
        let filter = match self.filters.get(&request.tag_filter, &request.sql_filter) {
            Ok(filter) => filter,
            Err(e) => return failed(error(ErrorCode::InvalidFilter, format!("{e} (docs/FILTERS.md)"))),
        };
        let mut watches = match self.watches(&led).await {
            Ok(w) => w,
            Err(e) => return failed(e),
        };
        let max_bytes = match request.max_bytes {
            0 => DEFAULT_FETCH_MAX_BYTES,
            n => (n as usize).min(MAX_FETCH_MAX_BYTES),
        };
        let wait = Duration::from_millis(u64::from(request.max_wait_ms)).min(MAX_FETCH_WAIT);
        let bounds = watches.bounds(&led.log);
        if request.offset < bounds.log_start || request.offset > bounds.high_watermark {
            return bounds.out_of_range(&led, request.offset);
        }
        let isolation = request.isolation();
        match filter {
            None => self.fetch_all(&led, (request.offset, isolation), &mut watches, max_bytes, wait, waited).await,
            Some(filter) => self.fetch_filtered(&led, &request, &filter, &mut watches, max_bytes, wait, waited).await,
        }
    }

    /// A fetch without a filter: whole batches as stored, less what `isolation` hides.
    async fn fetch_all(
        &self,
        led: &Led,
        (offset, isolation): (u64, Isolation),
        watches: &mut Watches,
        max_bytes: usize,
        wait: Duration,
        waited: &mut Duration,
    ) -> FetchResponse {
        let (mut bounds, mut end, mut hidden) = watches.visible(&led.log, isolation);
        if offset >= end && !wait.is_zero() {
            let wait_started = Instant::now();
            self.wait_visible(watches, isolation, offset, wait).await;
            (bounds, end, hidden) = watches.visible(&led.log, isolation);
            if offset < bounds.log_start {
                return bounds.out_of_range(led, offset);
            }
            *waited = wait_started.elapsed();
        }
        match read_committed(&led.log, offset, end, max_bytes) {
            Ok(batches) => {
                let bytes: usize = batches.iter().map(|b| b.batch.len()).sum();
                if bytes > 0 {
                    self.metrics.fetched(led.group_id, bytes, || self.partitions.group_ids());
                }
                let next_offset = batches.last().map_or(offset, |b| b.base_offset + u64::from(b.count));
                let batches = batches
                    .into_iter()
                    .filter(|b| !hides(hidden.as_ref(), b))
                    .map(|b| FetchedBatch { base_offset: b.base_offset, batch: b.batch, offset_deltas: Vec::new() })
                    .collect();
                bounds.answer(batches, next_offset)
            }
            // Retention trimmed the offset away while it was being read.
            Err(StorageError::Purged { .. }) => watches.bounds(&led.log).out_of_range(led, offset),
            Err(e) => failed(read_failed(led, offset, &e)),
        }
    }

    /// A fetch with a filter: the matching messages from `request.offset` on, waiting up to
    /// `wait` for one to be written if none is there yet (see [`crate::filters`]).
    #[allow(clippy::too_many_arguments)]
    async fn fetch_filtered(
        &self,
        led: &Led,
        request: &FetchRequest,
        filter: &Arc<Filter>,
        watches: &mut Watches,
        max_bytes: usize,
        wait: Duration,
        waited: &mut Duration,
    ) -> FetchResponse {
        let deadline = Instant::now() + wait;
        let isolation = request.isolation();
        let mut scan = Scan::new(request.offset);
        let bounds = loop {
            let (bounds, end, hidden) = watches.visible(&led.log, isolation);
            if scan.next_offset < bounds.log_start {
                return bounds.out_of_range(led, scan.next_offset);
            }
            scan.hidden = hidden;
            // Decoding and evaluating up to MAX_SCAN_BYTES takes milliseconds of CPU: off the
            // runtime's threads, which answer every other request of this broker.
            let (log, f) = (Arc::clone(&led.log), Arc::clone(filter));
            let scanned = tokio::task::spawn_blocking(move || {
                let outcome = scan_committed(&log, &f, &mut scan, end, max_bytes);
                (scan, outcome)
            })
            .await;
            let outcome;
            (scan, outcome) = scanned.expect("a filtered scan does not panic");
            match outcome {
                Ok(()) => {}
                Err(ScanFailure::Purged { offset }) => return watches.bounds(&led.log).out_of_range(led, offset),
                Err(ScanFailure::Read { offset, source }) => return failed(read_failed(led, offset, &source)),
                Err(ScanFailure::Corrupt(e)) => {
                    return failed(error(ErrorCode::Internal, format!("{}/{}: {e}", led.topic, led.partition)));
                }
            }
            // Waiting is for a consumer at the end: one that was moved past skipped messages
            // hears of it at once, or its last fetch of a partition would wait out max_wait.
            let now = Instant::now();
            let advanced = scan.next_offset > request.offset;
            if !scan.batches.is_empty() || advanced || now >= deadline {
                break bounds;
            }
            let end = self.wait_visible(watches, isolation, scan.next_offset, deadline - now).await;
            *waited += now.elapsed();
            if end <= scan.next_offset {
                break watches.bounds(&led.log);
            }
        };
        if scan.returned_bytes > 0 {
            self.metrics.fetched(led.group_id, scan.returned_bytes, || self.partitions.group_ids());
        }
        self.metrics.filtered(&request.group, &led.topic, &scan.stats);
        bounds.answer(scan.batches, scan.next_offset)
    }

    pub(super) async fn handle_list_offsets(&self, request: ListOffsetsRequest) -> ListOffsetsResponse {
        match self.list_offset(request).await {
            Ok(offset) => ListOffsetsResponse { error: Some(Error::ok()), offset },
            Err(e) => ListOffsetsResponse { error: Some(e), offset: 0 },
        }
    }

    async fn list_offset(&self, request: ListOffsetsRequest) -> Result<u64, Error> {
        let Some(at) = request.at else {
            return Err(error(ErrorCode::InvalidRequest, "set one of earliest, latest or timestamp_ms"));
        };
        let isolation = request.isolation();
        let led = self.led_partition(&request.topic, request.partition)?;
        let mut watches = self.watches(&led).await?;
        let (bounds, end, _) = watches.visible(&led.log, isolation);
        Ok(match at {
            At::Earliest(_) => bounds.log_start,
            At::Latest(_) => end,
            // The time index starts a batch at its newest timestamp: the batch found may hold
            // older messages too, which a consumer skips.
            At::TimestampMs(ts) => led
                .log
                .find_timestamp(ts)
                .map_or(bounds.high_watermark, |o| o.clamp(bounds.log_start, bounds.high_watermark)),
        })
    }

    /// The high watermark and log start watches of `led`'s partition, as its broker keeps them.
    /// A leader whose high watermark may lag what readers saw answers UNAVAILABLE instead
    /// (clients retry), once it has waited up to the read lease window for that to change: one
    /// elected so recently that it has not applied what it inherited (or whose core has not
    /// reported applying it yet, as right after answering a write), or
    /// one that cannot confirm it still leads (deposed while paused or cut off, it does not know
    /// yet). Read from it, an offset already consumed would look out of range, and "latest"
    /// would go backwards.
    async fn watches(&self, led: &Led) -> Result<Watches, Error> {
        if !confirm_lease(&led.raft, self.read_lease_window).await {
            return Err(error(
                ErrorCode::Unavailable,
                format!(
                    "{}/{}: broker {} cannot confirm it still leads (no majority answered); retry shortly",
                    led.topic, led.partition, self.node_id
                ),
            ));
        }
        if !self.partitions.leader_caught_up_within(led.group_id, self.read_lease_window).await {
            return Err(error(
                ErrorCode::Unavailable,
                format!(
                    "{}/{}: broker {} was just elected leader and is catching up on what is committed; retry shortly",
                    led.topic, led.partition, self.node_id
                ),
            ));
        }
        let found = self.partitions.high_watermark(led.group_id).zip(self.partitions.log_start(led.group_id));
        let Some(((high_watermark, log_start), stable)) = found.zip(self.partitions.stable(led.group_id)) else {
            return Err(error(
                ErrorCode::Unavailable,
                format!("{}/{} is stopping on broker {}; retry shortly", led.topic, led.partition, self.node_id),
            ));
        };
        Ok(Watches { high_watermark, log_start, stable })
    }

    /// Waits until what a read at `isolation` may return passes `offset` (the last stable
    /// offset for `read_committed`, the high watermark otherwise), for at most `wait`, or until
    /// the broker stops; returns that bound then.
    async fn wait_visible(&self, watches: &mut Watches, isolation: Isolation, offset: u64, wait: Duration) -> u64 {
        match isolation {
            Isolation::ReadUncommitted => self.wait_past(&mut watches.high_watermark, offset, wait).await,
            Isolation::ReadCommitted => {
                let mut stop = self.stop.clone();
                tokio::select! {
                    _ = tokio::time::timeout(wait, watches.stable.wait_for(|s| s.offset > offset)) => {}
                    _ = stop.wait_for(|stopped| *stopped) => {}
                }
                watches.stable.borrow().offset.min(*watches.high_watermark.borrow())
            }
        }
    }

    /// Waits until the high watermark passes `offset`, for at most `wait`, or until the broker
    /// stops; returns the high watermark then.
    async fn wait_past(&self, watermark: &mut watch::Receiver<u64>, offset: u64, wait: Duration) -> u64 {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = tokio::time::timeout(wait, watermark.wait_for(|hw| *hw > offset)) => {}
            _ = stop.wait_for(|stopped| *stopped) => {}
        }
        *watermark.borrow()
    }
}

/// Whether a `read_committed` read leaves `batch` out (see [`Stable::hides`]). A batch whose
/// header cannot be read is passed on: the consumer's checks report it.
fn hides(stable: Option<&Stable>, batch: &CommittedBatch) -> bool {
    let Some(stable) = stable else { return false };
    sluice_common::record::peek_header(&batch.batch).is_ok_and(|h| stable.hides(&h, batch.base_offset))
}

fn failed(e: Error) -> FetchResponse {
    FetchResponse { error: Some(e), ..FetchResponse::default() }
}

fn read_failed(led: &Led, offset: u64, e: &StorageError) -> Error {
    error(
        ErrorCode::Internal,
        format!(
            "reading {}/{} from offset {offset} failed: {e}; retry later (if it persists, this broker's storage \
             needs attention)",
            led.topic, led.partition
        ),
    )
}
