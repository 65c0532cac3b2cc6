//! Reading a batch's records: [`Records`] decodes them in order, checking each, as
//! [`RecordView`]s that are slices of the batch's bytes (or of its decompressed values).

use bytes::Bytes;

use super::batch::{BatchError, BatchHeader, Record};
use super::varint::{get_uvarint, unzigzag};

/// One decoded record: every field is a slice of the batch's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    /// Create time, ms since the Unix epoch.
    pub timestamp_ms: i64,
    /// The key, if any.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Bytes,
    pub(super) tag: Bytes,
    pub(super) properties: Bytes,
    pub(super) property_count: u64,
}

impl RecordView {
    /// The tag, if any. Validated as UTF-8 when the record was decoded.
    pub fn tag(&self) -> Option<&str> {
        (!self.tag.is_empty()).then(|| std::str::from_utf8(&self.tag).expect("validated at decode"))
    }

    /// The properties (string headers), in order. Validated when the record was decoded.
    pub fn properties(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut rest: &[u8] = &self.properties;
        (0..self.property_count).map(move |_| {
            let k = take_str(&mut rest).expect("validated at decode");
            let v = take_str(&mut rest).expect("validated at decode");
            (k, v)
        })
    }

    /// Converts to an owned [`Record`].
    pub fn to_record(&self) -> Record {
        Record {
            key: self.key.clone(),
            value: self.value.clone(),
            tag: self.tag().map(str::to_owned),
            properties: self.properties().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// Iterator over a batch's records; see [`RecordBatch::records`].
#[derive(Debug)]
pub struct Records {
    /// The records (a compressed batch's metadata).
    pub(super) section: Bytes,
    pub(super) values: Values,
    pub(super) pos: usize,
    pub(super) index: u32,
    /// Largest timestamp decoded so far (`first_ts_ms` before the first record).
    pub(super) newest: i64,
    pub(super) header: BatchHeader,
    pub(super) done: bool,
    /// The batch could not be opened (its compressed section is bad): the first item.
    pub(super) failed: Option<BatchError>,
}

/// Where a record's value is.
#[derive(Debug)]
pub(super) enum Values {
    /// In the record (an uncompressed batch).
    Inline,
    /// In the decompressed values, from `pos` on.
    Separate { values: Bytes, pos: usize },
    /// Not read ([`RecordBatch::metadata`], or decompression failed).
    Skipped,
}

impl Iterator for Records {
    type Item = Result<RecordView, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Some(e) = self.failed.take() {
            self.done = true;
            return Some(Err(e));
        }
        if self.pos == self.section.len() {
            self.done = true;
            return self.check_end().err().map(Err);
        }
        let at = self.pos;
        let result = self
            .decode_one()
            .map_err(|what| BatchError::Record { index: self.index, position: at, what })
            .and_then(|view| self.check_timestamp(view));
        match &result {
            Ok(_) => self.index += 1,
            Err(_) => self.done = true,
        }
        Some(result)
    }
}

impl Records {
    /// The first record must carry `first_ts_ms` itself; later ones only move `newest`.
    fn check_timestamp(&mut self, view: RecordView) -> Result<RecordView, BatchError> {
        let header = self.header.first_timestamp_ms;
        if self.index == 0 && view.timestamp_ms != header {
            return Err(BatchError::FirstTimestamp { header, record: view.timestamp_ms });
        }
        self.newest = self.newest.max(view.timestamp_ms);
        Ok(view)
    }

    /// Checks, after the last record, what only the whole batch tells: the count and the
    /// newest timestamp. An understated `max_ts_ms` would make time look-ups skip the batch.
    fn check_end(&self) -> Result<(), BatchError> {
        if self.index != self.header.count {
            return Err(BatchError::Count { header: self.header.count, found: self.index });
        }
        if self.newest != self.header.max_timestamp_ms {
            return Err(BatchError::MaxTimestamp { header: self.header.max_timestamp_ms, newest: self.newest });
        }
        if let Values::Separate { values, pos } = &self.values
            && *pos != values.len()
        {
            return Err(BatchError::Compressed("the values hold more bytes than the records' value lengths"));
        }
        Ok(())
    }

    fn decode_one(&mut self) -> Result<RecordView, &'static str> {
        let (body_len, n) = get_uvarint(&self.section[self.pos..]).ok_or("bad length prefix")?;
        let start = self.pos + n;
        let end = usize::try_from(body_len).ok().and_then(|l| start.checked_add(l)).ok_or("length overflows")?;
        if end > self.section.len() {
            return Err("record runs past the end of the batch");
        }
        // A handle of its own (a reference count), so values can be taken while it is borrowed.
        let section = self.section.clone();
        let mut body: &[u8] = &section[start..end];
        let slice = |b: &[u8]| section.slice_ref(b);
        let (ts_delta, n) = get_uvarint(body).ok_or("bad timestamp")?;
        body = &body[n..];
        let (key_len, n) = get_uvarint(body).ok_or("bad key length")?;
        body = &body[n..];
        let key = match key_len {
            0 => None,
            l => Some(slice(take(&mut body, l - 1).ok_or("key runs past the record")?)),
        };
        let (value_len, n) = get_uvarint(body).ok_or("bad value length")?;
        body = &body[n..];
        let value = value_of(&mut self.values, &section, &mut body, value_len)?;
        let tag = take_str(&mut body).ok_or("bad tag")?;
        let tag = slice(tag.as_bytes());
        let (property_count, n) = get_uvarint(body).ok_or("bad property count")?;
        body = &body[n..];
        let props_start = body;
        for _ in 0..property_count {
            take_str(&mut body).ok_or("bad property name")?;
            take_str(&mut body).ok_or("bad property value")?;
        }
        if !body.is_empty() {
            return Err("trailing bytes in record");
        }
        let properties = slice(&props_start[..props_start.len() - body.len()]);
        self.pos = end;
        Ok(RecordView {
            timestamp_ms: self.header.first_timestamp_ms.wrapping_add(unzigzag(ts_delta)),
            key,
            value,
            tag,
            properties,
            property_count,
        })
    }
}

/// A record's value of `len` bytes: from `body` (a part of `section`) in an uncompressed batch,
/// else from the decompressed values (or empty, when they are not read).
fn value_of(values: &mut Values, section: &Bytes, body: &mut &[u8], len: u64) -> Result<Bytes, &'static str> {
    match values {
        Values::Inline => Ok(section.slice_ref(take(body, len).ok_or("value runs past the record")?)),
        Values::Separate { values, pos } => {
            let len = usize::try_from(len).map_err(|_| "value length overflows")?;
            let end = pos.checked_add(len).filter(|&e| e <= values.len()).ok_or("value runs past the values")?;
            let value = values.slice(*pos..end);
            *pos = end;
            Ok(value)
        }
        Values::Skipped => Ok(Bytes::new()),
    }
}

fn take<'a>(buf: &mut &'a [u8], len: u64) -> Option<&'a [u8]> {
    let len = usize::try_from(len).ok()?;
    if len > buf.len() {
        return None;
    }
    let (head, tail) = buf.split_at(len);
    *buf = tail;
    Some(head)
}

fn take_str<'a>(buf: &mut &'a [u8]) -> Option<&'a str> {
    let (len, n) = get_uvarint(buf)?;
    *buf = &buf[n..];
    std::str::from_utf8(take(buf, len)?).ok()
}
