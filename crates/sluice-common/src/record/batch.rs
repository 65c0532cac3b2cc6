//! The record batch: the unit a producer sends, Raft replicates as one entry, and a consumer
//! fetches. Pure codec, no I/O. `docs/FORMAT.md` draws the same layout.
//!
//! ```text
//! batch header, 54 bytes (format 2), then the records section
//! 0      4      5       6         8       12            20      22         26          34          42           46            54
//! | crc  | magic| attrs | reserved| count | producer_id | epoch | base_seq | first_ts_ms | max_ts_ms | records_len | tag_summary | records ...
//! | u32  | u8=2 | u8    | u16 = 0 | u32   | i64         | i16   | i32      | i64         | i64       | u32         | u64         |
//!   crc = CRC-32/IEEE (zlib's crc32) of bytes 4..end, stored little-endian like every integer;
//!   attrs bits 0-2: compression (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd; `compressed.rs` draws
//!   the records section of a compressed batch), bit 3: transactional, bit 4: control, bit 5:
//!   delayed (every record carries a `deliver_at` property, docs/DELAYS.md), bits 6-7 and
//!   `reserved` must be 0; producer_id -1 = no idempotence (then epoch and base_seq are -1 too).
//!   first_ts_ms is the first record's timestamp, max_ts_ms the largest (both checked on
//!   decode). The base offset is not in the batch: the partition assigns it when the batch is
//!   applied (docs/ARCHITECTURE.md, D2) and fetch responses carry it.
//!   tag_summary has bit crc32(tag) mod 64 set for each record's tag (0: no record has one), so
//!   a tag filter skips a batch holding none of its tags without reading it (docs/FILTERS.md).
//!   Format 1 is format 2 without tag_summary (a 46-byte header); it is still read.
//!
//! each record in the records section
//! | body_len uvarint | ts_delta zigzag varint | key_len+1 uvarint (0 = no key) | key |
//! | value_len uvarint | value | tag_len uvarint (0 = no tag) | tag (UTF-8) |
//! | property_count uvarint | (name_len uvarint, name, value_len uvarint, value)* |
//!   body_len counts the bytes after itself; ts_delta is relative to first_ts_ms.
//!   uvarint: unsigned LEB128, 7 bits a byte, low group first, at most 10 bytes (64 bits);
//!   zigzag varint: a 64-bit signed value n written as the uvarint (n << 1) ^ (n >> 63).
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::{CodecError, Compression};
use super::compressed;
use super::records::{RecordView, Records, Values};
use super::varint::{put_uvarint, uvarint_len, zigzag};
use crate::filter::tag_summary_bit;

/// Byte length of a batch header, as this build writes it.
pub const BATCH_HEADER_LEN: usize = 54;
/// Byte length of a format 1 header (no tag summary).
const BATCH_HEADER_LEN_V1: usize = 46;
/// Batch format version written by this build. Format 1 is read too.
pub const BATCH_MAGIC: u8 = 2;
const ATTR_COMPRESSION_MASK: u8 = 0b0000_0111;
const ATTR_TRANSACTIONAL: u8 = 0b0000_1000;
const ATTR_CONTROL: u8 = 0b0001_0000;
const ATTR_DELAYED: u8 = 0b0010_0000;
/// Attribute bits no format version has given a meaning yet. Refused rather than ignored, so a
/// later version can give them one without old readers silently misreading its batches.
const ATTR_RESERVED_MASK: u8 = 0b1100_0000;

/// The property that holds a delayed record's delivery time: ms since the Unix epoch, in
/// decimal. Every record of a delayed batch has it, and keeps it once released, so a consumer
/// can tell when the message was due.
pub const DELIVER_AT_PROPERTY: &str = "sluice.deliver_at";

/// Idempotent-producer identity of a batch (docs/ARCHITECTURE.md, D6). `NONE` when idempotence
/// is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProducerStamp {
    /// Producer id assigned by the cluster, or -1.
    pub producer_id: i64,
    /// Producer epoch; a newer epoch fences older instances of the same producer id.
    pub epoch: i16,
    /// Sequence number of the batch's first record in its partition, or -1.
    pub base_sequence: i32,
}

impl ProducerStamp {
    /// No idempotence: the batch is never deduplicated.
    pub const NONE: ProducerStamp = ProducerStamp { producer_id: -1, epoch: -1, base_sequence: -1 };

    /// Whether this batch takes part in deduplication.
    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0
    }
}

/// The fixed fields of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Number of records.
    pub count: u32,
    /// Idempotence identity.
    pub producer: ProducerStamp,
    /// Part of a transaction.
    pub transactional: bool,
    /// A control batch (transaction marker) rather than user records.
    pub control: bool,
    /// Delayed records: each becomes visible at the time its [`DELIVER_AT_PROPERTY`] names.
    pub delayed: bool,
    /// Compression of the records section.
    pub compression: Compression,
    /// Timestamp of the first record (in batch order, not the oldest); others are stored
    /// relative to it. 0 in an empty batch.
    pub first_timestamp_ms: i64,
    /// Largest record timestamp in the batch, exactly (the time index relies on it). Equal to
    /// `first_timestamp_ms` in an empty batch.
    pub max_timestamp_ms: i64,
    /// The bits of the records' tags ([`crate::filter::tag_summary_bit`]); `None` in a
    /// format 1 batch, which has no summary.
    pub tag_summary: Option<u64>,
}

impl BatchHeader {
    /// Bytes of the header (46 in format 1, 54 in format 2): where the records section starts.
    pub fn header_len(&self) -> usize {
        if self.tag_summary.is_some() { BATCH_HEADER_LEN } else { BATCH_HEADER_LEN_V1 }
    }
}

/// Why bytes are not a valid batch or record. Messages name the field and the byte position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Shorter than its header, or its records section length disagrees with its size.
    #[error("record batch is {actual} bytes; its header says {expected}")]
    Length {
        /// The length the header implies.
        expected: usize,
        /// The bytes present.
        actual: usize,
    },
    /// The checksum does not match: the batch was damaged in transit or at rest.
    #[error("record batch checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        /// The stored CRC.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// A batch format this build does not read.
    #[error("record batch format {0} is not supported (this build reads formats 1 and {BATCH_MAGIC})")]
    Magic(u8),
    /// `tag_summary` disagrees with the records' tags: a tag filter would skip matching
    /// messages.
    #[error(
        "record batch header says tag_summary {header:#018x} but its records' tags give {computed:#018x}: \
         set bit crc32(tag) mod 64 for each record's tag (docs/FORMAT.md)"
    )]
    TagSummary {
        /// The header's `tag_summary`.
        header: u64,
        /// The summary of the records' tags.
        computed: u64,
    },
    /// A compression codec this build does not implement.
    #[error("record batch uses compression codec {0}, which this build does not support")]
    Compression(u8),
    /// A compressed batch's section is not laid out as its prefix says.
    #[error("record batch is malformed: {0}")]
    Compressed(&'static str),
    /// A compressed batch's values do not decompress to what it states.
    #[error("record batch values: {0}")]
    Codec(#[from] CodecError),
    /// The header's reserved field (bytes 6-7) is not zero.
    #[error("record batch reserved field (bytes 6-7) is {0:#06x}; it must be 0")]
    Reserved(u16),
    /// An attribute bit that has no meaning yet is set.
    #[error("record batch attributes {0:#04x} set reserved bits 6-7 (mask 0xc0); they must be 0")]
    Attributes(u8),
    /// `first_ts_ms` is not the first record's timestamp (its ts_delta is not 0).
    #[error(
        "record batch header says first_ts_ms {header} but its first record is stamped {record}: \
         first_ts_ms must be the first record's timestamp (ts_delta 0)"
    )]
    FirstTimestamp {
        /// The header's `first_ts_ms`.
        header: i64,
        /// The first record's timestamp.
        record: i64,
    },
    /// `max_ts_ms` is not the largest record timestamp.
    #[error(
        "record batch header says max_ts_ms {header} but its newest record is stamped {newest}: \
         max_ts_ms must be the largest record timestamp, exactly (the time index relies on it)"
    )]
    MaxTimestamp {
        /// The header's `max_ts_ms`.
        header: i64,
        /// The largest record timestamp.
        newest: i64,
    },
    /// A record inside the batch is malformed.
    #[error("record {index} at byte {position} of the records section is malformed: {what}")]
    Record {
        /// The record's position in the batch.
        index: u32,
        /// Byte position within the records section.
        position: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// The batch holds more records than its header says, or fewer.
    #[error("record batch header says {header} records but the section holds {found}")]
    Count {
        /// The header's count.
        header: u32,
        /// Records found.
        found: u32,
    },
}

/// One message to send. Timestamps are milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Partitioning and compaction key.
    pub key: Option<Bytes>,
    /// The message body.
    pub value: Bytes,
    /// RocketMQ-style tag for broker-side filtering.
    pub tag: Option<String>,
    /// String headers.
    pub properties: Vec<(String, String)>,
    /// Create time, in ms since the Unix epoch.
    pub timestamp_ms: i64,
}

impl Record {
    /// A record with only a value.
    pub fn new(value: impl Into<Bytes>, timestamp_ms: i64) -> Record {
        Record { value: value.into(), timestamp_ms, ..Record::default() }
    }

    /// Bytes of this record's body (everything after its length prefix), given the batch's
    /// first timestamp.
    fn body_len(&self, first_ts: i64) -> usize {
        let key = self.key.as_ref().map_or(0, |k| k.len());
        let tag = self.tag.as_ref().map_or(0, |t| t.len());
        let props: usize = self
            .properties
            .iter()
            .map(|(k, v)| uvarint_len(k.len() as u64) + k.len() + uvarint_len(v.len() as u64) + v.len())
            .sum();
        uvarint_len(zigzag(self.timestamp_ms.wrapping_sub(first_ts)))
            + uvarint_len(self.key.as_ref().map_or(0, |k| k.len() as u64 + 1))
            + key
            + uvarint_len(self.value.len() as u64)
            + self.value.len()
            + uvarint_len(tag as u64)
            + tag
            + uvarint_len(self.properties.len() as u64)
            + props
    }

    /// Bytes this record adds to a batch.
    pub fn encoded_len(&self, first_ts: i64) -> usize {
        let body = self.body_len(first_ts);
        uvarint_len(body as u64) + body
    }
}

/// Builds one batch. The first record pushed sets the batch's first timestamp.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    count: u32,
    first_ts: Option<i64>,
    max_ts: i64,
    producer: ProducerStamp,
    transactional: bool,
    control: bool,
    delayed: bool,
    tag_summary: u64,
    compression: Compression,
    level: i32,
    /// A compressed batch's values, concatenated, until `finish` compresses them.
    values: Vec<u8>,
}

impl BatchBuilder {
    /// An empty batch for `producer`, with room for `capacity` bytes before it reallocates.
    pub fn new(producer: ProducerStamp, capacity: usize) -> BatchBuilder {
        let mut buf = BytesMut::with_capacity(capacity.max(BATCH_HEADER_LEN));
        buf.put_bytes(0, BATCH_HEADER_LEN);
        BatchBuilder {
            buf,
            count: 0,
            first_ts: None,
            max_ts: i64::MIN,
            producer,
            transactional: false,
            control: false,
            delayed: false,
            tag_summary: 0,
            compression: Compression::None,
            level: 0,
            values: Vec::new(),
        }
    }

    /// Compresses the batch's values with `codec` (`level`: zstd's 1–22 or gzip's 0–9; see
    /// [`Compression::compress`]). Set before the first push.
    pub fn compression(mut self, codec: Compression, level: i32) -> BatchBuilder {
        assert_eq!(self.count, 0, "the codec is chosen before the first record");
        self.compression = codec;
        self.level = level;
        self
    }

    /// Writes a value: into the records (uncompressed) or aside for `finish` to compress.
    fn put_value(&mut self, value: &[u8]) {
        put_uvarint(&mut self.buf, value.len() as u64);
        if self.compression == Compression::None {
            self.buf.put_slice(value);
        } else {
            self.values.extend_from_slice(value);
        }
    }

    /// A record's body length as written: without its value when the values are compressed.
    fn written_body(&self, body: usize, value_len: usize) -> usize {
        if self.compression == Compression::None { body } else { body - value_len }
    }

    /// Marks the batch as part of a transaction.
    pub fn transactional(mut self, yes: bool) -> BatchBuilder {
        self.transactional = yes;
        self
    }

    /// Marks the batch as a control batch (a transaction marker, see [`super::marker`]):
    /// written by brokers only, skipped by consumers.
    pub fn control(mut self, yes: bool) -> BatchBuilder {
        self.control = yes;
        self
    }

    /// Marks the batch as delayed: every record pushed must carry a [`DELIVER_AT_PROPERTY`].
    pub fn delayed(mut self, yes: bool) -> BatchBuilder {
        self.delayed = yes;
        self
    }

    /// Appends a record.
    pub fn push(&mut self, record: &Record) {
        let first = *self.first_ts.get_or_insert(record.timestamp_ms);
        let body = self.written_body(record.body_len(first), record.value.len());
        let b = &mut self.buf;
        put_uvarint(b, body as u64);
        put_uvarint(b, zigzag(record.timestamp_ms.wrapping_sub(first)));
        match &record.key {
            Some(k) => {
                put_uvarint(b, k.len() as u64 + 1);
                b.put_slice(k);
            }
            None => put_uvarint(b, 0),
        }
        self.put_value(&record.value);
        let b = &mut self.buf;
        let tag = record.tag.as_deref().unwrap_or("");
        put_uvarint(b, tag.len() as u64);
        b.put_slice(tag.as_bytes());
        if !tag.is_empty() {
            self.tag_summary |= tag_summary_bit(tag);
        }
        put_uvarint(b, record.properties.len() as u64);
        for (k, v) in &record.properties {
            put_uvarint(b, k.len() as u64);
            b.put_slice(k.as_bytes());
            put_uvarint(b, v.len() as u64);
            b.put_slice(v.as_bytes());
        }
        self.count += 1;
        self.max_ts = self.max_ts.max(record.timestamp_ms);
    }

    /// Appends a record decoded from another batch, copying its fields as they are encoded
    /// (a broker rebuilding a batch from the messages a filter kept).
    pub fn push_view(&mut self, record: &RecordView) {
        let first = *self.first_ts.get_or_insert(record.timestamp_ms);
        let ts = zigzag(record.timestamp_ms.wrapping_sub(first));
        let key_len = record.key.as_ref().map_or(0, |k| k.len() as u64 + 1);
        let body = uvarint_len(ts)
            + uvarint_len(key_len)
            + record.key.as_ref().map_or(0, Bytes::len)
            + uvarint_len(record.value.len() as u64)
            + record.value.len()
            + uvarint_len(record.tag.len() as u64)
            + record.tag.len()
            + uvarint_len(record.property_count)
            + record.properties.len();
        let body = self.written_body(body, record.value.len());
        let b = &mut self.buf;
        put_uvarint(b, body as u64);
        put_uvarint(b, ts);
        put_uvarint(b, key_len);
        if let Some(k) = &record.key {
            b.put_slice(k);
        }
        self.put_value(&record.value);
        let b = &mut self.buf;
        put_uvarint(b, record.tag.len() as u64);
        b.put_slice(&record.tag);
        put_uvarint(b, record.property_count);
        b.put_slice(&record.properties);
        if let Some(tag) = record.tag() {
            self.tag_summary |= tag_summary_bit(tag);
        }
        self.count += 1;
        self.max_ts = self.max_ts.max(record.timestamp_ms);
    }

    /// Records pushed so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Bytes the batch would take if finished now, uncompressed (compression only shrinks it,
    /// by as much as the values allow).
    pub fn len(&self) -> usize {
        self.buf.len() + self.values.len()
    }

    /// Whether no record has been pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Fills in the header and checksum and returns the encoded batch.
    pub fn finish(mut self) -> Bytes {
        if self.compression != Compression::None {
            let mut out = BytesMut::with_capacity(self.buf.len() + self.values.len() / 2 + compressed::PREFIX_LEN);
            out.put_slice(&self.buf[..BATCH_HEADER_LEN]);
            compressed::write_section(
                &mut out,
                &self.buf[BATCH_HEADER_LEN..],
                &self.values,
                self.compression,
                self.level,
            );
            self.buf = out;
        }
        let records_len = u32::try_from(self.buf.len() - BATCH_HEADER_LEN).expect("batch under 4 GiB");
        let first = self.first_ts.unwrap_or(0);
        let max = if self.count == 0 { first } else { self.max_ts };
        let attrs = if self.transactional { ATTR_TRANSACTIONAL } else { 0 }
            | if self.control { ATTR_CONTROL } else { 0 }
            | if self.delayed { ATTR_DELAYED } else { 0 }
            | self.compression.id();
        let mut h = &mut self.buf[4..BATCH_HEADER_LEN];
        h.put_u8(BATCH_MAGIC);
        h.put_u8(attrs);
        h.put_u16_le(0);
        h.put_u32_le(self.count);
        h.put_i64_le(self.producer.producer_id);
        h.put_i16_le(self.producer.epoch);
        h.put_i32_le(self.producer.base_sequence);
        h.put_i64_le(first);
        h.put_i64_le(max);
        h.put_u32_le(records_len);
        h.put_u64_le(self.tag_summary);
        let crc = crc32fast::hash(&self.buf[4..]);
        self.buf[..4].copy_from_slice(&crc.to_le_bytes());
        self.buf.freeze()
    }
}

/// A batch whose header and checksum have been verified. Records are decoded lazily, as
/// slices of the batch's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBatch {
    header: BatchHeader,
    bytes: Bytes,
}

impl RecordBatch {
    /// Verifies the header, length and checksum of `bytes`.
    pub fn parse(bytes: Bytes) -> Result<RecordBatch, BatchError> {
        let header = parse_header(&bytes)?;
        Ok(RecordBatch { header, bytes })
    }

    /// The batch's fixed fields.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The encoded batch, as stored and sent.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Decodes the records in order. The iterator yields an error (and then stops) at the first
    /// malformed record, or a first record not stamped `first_ts_ms`, and checks the record count
    /// and `max_ts_ms` when it reaches the end.
    pub fn records(&self) -> Records {
        self.records_with(true)
    }

    /// [`RecordBatch::records`] without the values (each record's `value` is empty): a compressed
    /// batch's keys, tags and properties are read without decompressing anything. For a filter.
    pub fn metadata(&self) -> Records {
        self.records_with(false)
    }

    /// The batch's length with its values uncompressed (its stored length if it is not
    /// compressed): what a reader must hold to decompress it.
    pub fn expanded_len(&self) -> Result<usize, BatchError> {
        if self.header.compression == Compression::None {
            return Ok(self.bytes.len());
        }
        let parts = compressed::split(&self.section())?;
        Ok(self.header.header_len() + compressed::PREFIX_LEN + parts.meta.len() + parts.values_len)
    }

    fn section(&self) -> Bytes {
        self.bytes.slice(self.header.header_len()..)
    }

    fn records_with(&self, with_values: bool) -> Records {
        let mut records = Records {
            section: self.section(),
            values: Values::Inline,
            pos: 0,
            index: 0,
            newest: self.header.first_timestamp_ms,
            header: self.header,
            done: false,
            failed: None,
        };
        if self.header.compression == Compression::None {
            return records;
        }
        let parts = match compressed::split(&records.section) {
            Ok(parts) => parts,
            Err(e) => {
                records.failed = Some(e);
                return records;
            }
        };
        records.section = parts.meta;
        records.values = match with_values {
            false => Values::Skipped,
            true => match self.header.compression.decompress(&parts.compressed, parts.values_len) {
                Ok(values) => Values::Separate { values: Bytes::from(values), pos: 0 },
                Err(e) => {
                    records.failed = Some(e.into());
                    Values::Skipped
                }
            },
        };
        records
    }
}

/// Reads and checks a batch header without copying the batch.
pub fn parse_header(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    header_of(bytes, true)
}

/// [`parse_header`] without the checksum, for bytes another checksum already covers (a
/// partition log's entry frames are checked when read): what a filter reads to skip a batch
/// without touching the rest of it.
pub fn peek_header(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    header_of(bytes, false)
}

fn header_of(bytes: &[u8], verify_checksum: bool) -> Result<BatchHeader, BatchError> {
    if bytes.len() < BATCH_HEADER_LEN_V1 {
        return Err(BatchError::Length { expected: BATCH_HEADER_LEN_V1, actual: bytes.len() });
    }
    let le32 = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let le64 = |at: usize| i64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let header_len = match bytes[4] {
        1 => BATCH_HEADER_LEN_V1,
        _ => BATCH_HEADER_LEN,
    };
    if bytes.len() < header_len {
        return Err(BatchError::Length { expected: header_len, actual: bytes.len() });
    }
    let expected = header_len + le32(42) as usize;
    if bytes.len() != expected {
        return Err(BatchError::Length { expected, actual: bytes.len() });
    }
    if verify_checksum {
        let (stored, computed) = (le32(0), crc32fast::hash(&bytes[4..]));
        if stored != computed {
            return Err(BatchError::Checksum { stored, computed });
        }
    }
    if !matches!(bytes[4], 1 | BATCH_MAGIC) {
        return Err(BatchError::Magic(bytes[4]));
    }
    let reserved = u16::from_le_bytes([bytes[6], bytes[7]]);
    if reserved != 0 {
        return Err(BatchError::Reserved(reserved));
    }
    let attrs = bytes[5];
    if attrs & ATTR_RESERVED_MASK != 0 {
        return Err(BatchError::Attributes(attrs));
    }
    let codec = attrs & ATTR_COMPRESSION_MASK;
    let compression = Compression::from_id(codec).ok_or(BatchError::Compression(codec))?;
    Ok(BatchHeader {
        count: le32(8),
        producer: ProducerStamp {
            producer_id: le64(12),
            epoch: i16::from_le_bytes([bytes[20], bytes[21]]),
            base_sequence: le32(22) as i32,
        },
        transactional: attrs & ATTR_TRANSACTIONAL != 0,
        control: attrs & ATTR_CONTROL != 0,
        delayed: attrs & ATTR_DELAYED != 0,
        compression,
        first_timestamp_ms: le64(26),
        max_timestamp_ms: le64(34),
        tag_summary: (header_len == BATCH_HEADER_LEN).then(|| le64(46) as u64),
    })
}
