//! Recurring schedules in the delay store: a named message and a cadence (cron or interval,
//! `sluice_common::schedule`), fired by the partition's leader like a due delayed message, one
//! fire entry at a time (docs/DELAYS.md, "Recurring schedules").
//!
//! ```text
//! 's' group | name               next_due_ms u64 LE | cadence_len u16 LE | cadence | one-record batch
//! 'f' group | due_ms u64 | name  (empty)
//! ```

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rocksdb::{Direction, IteratorMode, ReadOptions};

use super::store::{DelayStore, FIRE, SCHEDULE, StoreBatch, be64, db_error, key};

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRow {
    /// When it fires next, ms since the Unix epoch.
    pub next_due_ms: u64,
    /// Its cadence, as `Cadence::encode` wrote it.
    pub cadence: String,
    /// The message each fire produces, as a one-record batch.
    pub batch: Bytes,
}

impl ScheduleRow {
    /// The stored form.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(10 + self.cadence.len() + self.batch.len());
        b.put_u64_le(self.next_due_ms);
        b.put_u16_le(self.cadence.len() as u16);
        b.put_slice(self.cadence.as_bytes());
        b.put_slice(&self.batch);
        b.freeze()
    }

    /// Reads the stored form.
    pub fn decode(raw: &Bytes) -> Option<ScheduleRow> {
        let mut b = &raw[..];
        if b.len() < 10 {
            return None;
        }
        let next_due_ms = b.get_u64_le();
        let len = b.get_u16_le() as usize;
        let cadence = std::str::from_utf8(b.get(..len)?).ok()?.to_owned();
        Some(ScheduleRow { next_due_ms, cadence, batch: raw.slice(10 + len..) })
    }
}

fn schedule_key(group: u64, name: &str) -> Vec<u8> {
    let mut k = key(SCHEDULE, group, &[]);
    k.extend_from_slice(name.as_bytes());
    k
}

fn fire_key(group: u64, due_ms: u64, name: &str) -> Vec<u8> {
    let mut k = key(FIRE, group, &[due_ms]);
    k.extend_from_slice(name.as_bytes());
    k
}

impl DelayStore {
    /// Schedule `name` of `group`.
    pub fn schedule(&self, group: u64, name: &str) -> io::Result<Option<ScheduleRow>> {
        let raw = self.db.get(schedule_key(group, name)).map_err(|e| db_error("read", &self.path, e))?;
        Ok(raw.and_then(|v| ScheduleRow::decode(&Bytes::from(v))))
    }

    /// Every schedule of `group`, by name.
    pub fn schedules(&self, group: u64) -> io::Result<Vec<(String, ScheduleRow)>> {
        let mut read = ReadOptions::default();
        read.set_iterate_upper_bound(key(SCHEDULE, group + 1, &[]));
        let start = key(SCHEDULE, group, &[]);
        let mut out = Vec::new();
        for item in self.db.iterator_opt(IteratorMode::From(&start, Direction::Forward), read) {
            let (k, v) = item.map_err(|e| db_error("read", &self.path, e))?;
            let name = String::from_utf8_lossy(&k[9..]).into_owned();
            if let Some(row) = ScheduleRow::decode(&Bytes::from(v.into_vec())) {
                out.push((name, row));
            }
        }
        Ok(out)
    }

    /// Schedules of `group` due at or before `up_to_ms`: `(due_ms, name)`, earliest first.
    pub fn due_fires(&self, group: u64, up_to_ms: u64, limit: usize) -> io::Result<Vec<(u64, String)>> {
        let mut read = ReadOptions::default();
        read.set_iterate_upper_bound(match up_to_ms.checked_add(1) {
            Some(end) => key(FIRE, group, &[end]),
            None => key(FIRE, group + 1, &[]),
        });
        let start = key(FIRE, group, &[]);
        let mut out = Vec::new();
        for item in self.db.iterator_opt(IteratorMode::From(&start, Direction::Forward), read).take(limit) {
            let (k, _) = item.map_err(|e| db_error("read", &self.path, e))?;
            out.push((be64(&k[9..17]), String::from_utf8_lossy(&k[17..]).into_owned()));
        }
        Ok(out)
    }
}

impl StoreBatch<'_> {
    /// Adds or replaces schedule `name`.
    pub fn put_schedule(&mut self, name: &str, row: &ScheduleRow) {
        self.batch.put(schedule_key(self.group, name), row.encode());
        self.batch.put(fire_key(self.group, row.next_due_ms, name), []);
    }

    /// Removes schedule `name`, whose next fire is `due_ms`.
    pub fn remove_schedule(&mut self, name: &str, due_ms: u64) {
        self.batch.delete(schedule_key(self.group, name));
        self.batch.delete(fire_key(self.group, due_ms, name));
    }
}
