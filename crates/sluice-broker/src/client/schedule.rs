//! Recurring schedules in the client API (docs/DELAYS.md, "Schedules"): `CreateSchedule`,
//! `DeleteSchedule`, `ListSchedules`, each on the leader of the schedule's partition.

use std::time::Duration;

use sluice_common::record::{BatchBuilder, ProducerStamp, RecordBatch};
use sluice_common::schedule::Cadence;
use sluice_proto::v1::{
    CreateScheduleRequest, CreateScheduleResponse, DeleteScheduleRequest, DeleteScheduleResponse, ListSchedulesRequest,
    ListSchedulesResponse, ScheduleInfo,
};
use sluice_proto::{Error, ErrorCode};
use sluice_raft::Reply;
use sluice_raft::partition::{PartitionCommand, WriteError, reject};

use super::ClientService;
use super::errors::error;
use crate::delays::wall_clock_ms;

/// The longest a schedule change waits for its commit.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest schedule name.
const MAX_NAME_BYTES: usize = 200;

impl ClientService {
    pub(super) async fn handle_create_schedule(&self, request: CreateScheduleRequest) -> CreateScheduleResponse {
        match self.create_schedule(request).await {
            Ok(first_due_ms) => CreateScheduleResponse { error: Some(Error::ok()), first_due_ms },
            Err(e) => CreateScheduleResponse { error: Some(e), first_due_ms: 0 },
        }
    }

    async fn create_schedule(&self, request: CreateScheduleRequest) -> Result<u64, Error> {
        check_name(&request.name)?;
        let led = self.led_partition(&request.topic, request.partition)?;
        let now = wall_clock_ms();
        let cadence = match (request.cron.is_empty(), request.every_ms) {
            (false, 0) => Cadence::cron(&request.cron, Some(request.time_zone.as_str()).filter(|tz| !tz.is_empty())),
            (true, every) if every > 0 => Cadence::every(every, now + every),
            _ => return Err(error(ErrorCode::InvalidSchedule, "give either a cron expression or an interval")),
        }
        .map_err(|e| error(ErrorCode::InvalidSchedule, e.to_string()))?;
        let first_due_ms = cadence
            .next_after(now)
            .ok_or_else(|| error(ErrorCode::InvalidSchedule, format!("{} never fires after now", cadence.encode())))?;
        let record = one_record(&request.record)?;
        let delays = self.partitions.delays().ok_or_else(|| error(ErrorCode::Internal, "no delay store".to_owned()))?;
        let command = PartitionCommand::schedule(&request.name, first_due_ms, &cadence.encode(), &record);
        self.commit_schedule_change(delays, &led, command).await.map(|()| first_due_ms)
    }

    pub(super) async fn handle_delete_schedule(&self, request: DeleteScheduleRequest) -> DeleteScheduleResponse {
        let deleted = async {
            let led = self.led_partition(&request.topic, request.partition)?;
            let delays =
                self.partitions.delays().ok_or_else(|| error(ErrorCode::Internal, "no delay store".to_owned()))?;
            // Not beside a fire: it is built from the schedule as it was.
            self.commit_schedule_change(delays, &led, PartitionCommand::unschedule(&request.name)).await
        };
        DeleteScheduleResponse { error: Some(deleted.await.err().unwrap_or_else(Error::ok)) }
    }

    async fn commit_schedule_change(
        &self,
        delays: &crate::delays::Delays,
        led: &super::route::Led,
        command: sluice_raft::Command,
    ) -> Result<(), Error> {
        let name = format!("{}/{}", led.topic, led.partition);
        match delays.write_serialised(led.group_id, &led.raft, command, COMMIT_TIMEOUT).await {
            Some(Ok(Reply::Done)) => Ok(()),
            Some(Ok(Reply::Rejected { code: reject::SCHEDULE_EXISTS, message })) => {
                Err(error(ErrorCode::ScheduleExists, format!("{name}: {message}")))
            }
            Some(Ok(Reply::Rejected { code: reject::UNKNOWN_SCHEDULE, message })) => {
                Err(error(ErrorCode::UnknownSchedule, format!("{name}: {message}")))
            }
            Some(Ok(other)) => Err(error(ErrorCode::Internal, format!("{name} answered {other:?}"))),
            Some(Err(WriteError::NotLeader { leader })) => Err(self.not_leader(&led.topic, led.partition, leader)),
            Some(Err(e)) => Err(error(ErrorCode::Unavailable, format!("{name}: {e}; retry"))),
            None => Err(error(
                ErrorCode::Timeout,
                format!("{name}: not committed within {COMMIT_TIMEOUT:?}; it may still be: list the schedules"),
            )),
        }
    }

    pub(super) async fn handle_list_schedules(&self, request: ListSchedulesRequest) -> ListSchedulesResponse {
        let listed = async {
            let led = self.led_partition(&request.topic, request.partition)?;
            if !self.partitions.leader_caught_up_within(led.group_id, Duration::from_secs(2)).await {
                return Err(error(ErrorCode::Unavailable, "the leader is catching up; retry".to_owned()));
            }
            let delays =
                self.partitions.delays().ok_or_else(|| error(ErrorCode::Internal, "no delay store".to_owned()))?;
            let rows = delays
                .store()
                .schedules(led.group_id)
                .map_err(|e| error(ErrorCode::Internal, format!("reading schedules: {e}")))?;
            Ok(rows.into_iter().map(|(name, row)| describe(name, &row)).collect())
        };
        match listed.await {
            Ok(schedules) => ListSchedulesResponse { error: Some(Error::ok()), schedules },
            Err(e) => ListSchedulesResponse { error: Some(e), schedules: Vec::new() },
        }
    }
}

/// The request's record: a batch of exactly one valid record, rebuilt without producer fields.
fn one_record(raw: &[u8]) -> Result<bytes::Bytes, Error> {
    let invalid = |what: String| error(ErrorCode::InvalidRequest, what);
    let batch = RecordBatch::parse(bytes::Bytes::copy_from_slice(raw)).map_err(|e| invalid(e.to_string()))?;
    let mut records = batch.records();
    let record = match (records.next(), records.next()) {
        (Some(Ok(record)), None) => record,
        (Some(Err(e)), _) => return Err(invalid(e.to_string())),
        _ => return Err(invalid("a schedule's record batch must hold exactly one record".to_owned())),
    };
    let mut one = BatchBuilder::new(ProducerStamp::NONE, raw.len());
    one.push_view(&record);
    Ok(one.finish())
}

fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        return Ok(());
    }
    Err(error(
        ErrorCode::InvalidRequest,
        format!("schedule name {name:?}: use 1 to {MAX_NAME_BYTES} of [A-Za-z0-9._-]"),
    ))
}

fn describe(name: String, row: &sluice_raft::partition::delay::ScheduleRow) -> ScheduleInfo {
    let view = RecordBatch::parse(row.batch.clone()).ok().and_then(|b| b.records().next()?.ok());
    ScheduleInfo {
        name,
        cadence: row.cadence.clone(),
        next_due_ms: row.next_due_ms,
        key: view.as_ref().and_then(|v| v.key.clone()),
        tag: view.as_ref().and_then(|v| v.tag().map(str::to_owned)),
        value_bytes: view.map_or(0, |v| v.value.len() as u32),
    }
}
