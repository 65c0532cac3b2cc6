//! Byte layouts of the segment file: its header and the entry frame. Pure codec, no I/O.
//! `docs/FORMAT.md` draws the same layouts; keep the two in step. All integers little-endian.
//!
//! ```text
//! segment header (32 bytes)
//! 0        4         6        8              16             24        28         32
//! | magic  | version | flags  | base_index   | created_ms   | crc     | reserved |
//! | "SLSG" | u16 = 1 | u16    | u64          | i64          | u32     | u32 = 0  |
//!   crc = crc32(bytes 0..24); flags bit 0 = SEALED: set only after the segment's data and
//!   indexes are durable, so recovery knows a bad frame there is corruption, not a torn write
//!
//! entry frame (24-byte header + payload), repeated until the end of the file
//! 0        4        8            16           24
//! | crc    | len    | index      | term       | payload (len bytes) ... |
//! | u32    | u32    | u64        | u64        |                         |
//!   crc = crc32(bytes 4..24 ++ payload): it covers the length, so a torn length is caught too
//! ```

use bytes::{Buf, BufMut};

/// First four bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 4] = *b"SLSG";
/// Segment format version written by this code.
pub const SEGMENT_VERSION: u16 = 1;
/// Length of the segment file header.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Length of an entry frame's header; the payload follows it.
pub const ENTRY_HEADER_LEN: usize = 24;

/// Header flag: the segment is complete and durable (see the module doc).
const FLAG_SEALED: u16 = 1;

/// The parsed segment file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Index of the first entry the segment may hold (also its file name).
    pub base_index: u64,
    /// Wall-clock creation time, for rolling by age.
    pub created_ms: i64,
    /// The segment was rolled past and then made durable with its indexes.
    pub sealed: bool,
}

impl SegmentHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        let mut b = &mut out[..];
        b.put_slice(&SEGMENT_MAGIC);
        b.put_u16_le(SEGMENT_VERSION);
        b.put_u16_le(if self.sealed { FLAG_SEALED } else { 0 });
        b.put_u64_le(self.base_index);
        b.put_i64_le(self.created_ms);
        let crc = crc32fast::hash(&out[..24]);
        out[24..28].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a header; the error says which check failed.
    pub fn decode(raw: &[u8]) -> Result<SegmentHeader, String> {
        if raw.len() < SEGMENT_HEADER_LEN {
            return Err(format!("header is {} bytes, expected {SEGMENT_HEADER_LEN}", raw.len()));
        }
        if raw[..4] != SEGMENT_MAGIC {
            return Err(format!("bad magic {:02x?}, not a Sluice segment", &raw[..4]));
        }
        let mut b = &raw[4..24];
        let version = b.get_u16_le();
        if version != SEGMENT_VERSION {
            return Err(format!("segment format version {version}; this build reads {SEGMENT_VERSION}"));
        }
        let flags = b.get_u16_le();
        let header =
            SegmentHeader { base_index: b.get_u64_le(), created_ms: b.get_i64_le(), sealed: flags & FLAG_SEALED != 0 };
        let crc = u32::from_le_bytes(raw[24..28].try_into().expect("4 bytes"));
        if crc != crc32fast::hash(&raw[..24]) {
            return Err("header checksum mismatch".into());
        }
        Ok(header)
    }
}

/// The fixed part of an entry frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryHeader {
    /// Checksum over the rest of the header and the payload.
    pub crc: u32,
    /// Payload length in bytes.
    pub len: u32,
    /// Raft log index.
    pub index: u64,
    /// Raft term.
    pub term: u64,
}

impl EntryHeader {
    /// Builds the header for `payload`, computing its checksum.
    pub fn for_payload(index: u64, term: u64, payload: &[u8]) -> EntryHeader {
        let len = u32::try_from(payload.len()).expect("payload length checked against max_entry_bytes");
        let mut h = EntryHeader { crc: 0, len, index, term };
        h.crc = h.checksum(payload);
        h
    }

    /// Writes the 24 header bytes to `out`.
    pub fn encode_into(&self, out: &mut impl BufMut) {
        out.put_u32_le(self.crc);
        out.put_u32_le(self.len);
        out.put_u64_le(self.index);
        out.put_u64_le(self.term);
    }

    /// Reads a header from the first 24 bytes of `raw`, which must be that long.
    pub fn decode(raw: &[u8]) -> EntryHeader {
        let mut b = &raw[..ENTRY_HEADER_LEN];
        EntryHeader { crc: b.get_u32_le(), len: b.get_u32_le(), index: b.get_u64_le(), term: b.get_u64_le() }
    }

    /// The checksum this header should carry for `payload`: CRC of header bytes 4..24 (length,
    /// index, term) followed by the payload.
    pub fn checksum(&self, payload: &[u8]) -> u32 {
        let mut covered = [0u8; ENTRY_HEADER_LEN - 4];
        covered[..4].copy_from_slice(&self.len.to_le_bytes());
        covered[4..12].copy_from_slice(&self.index.to_le_bytes());
        covered[12..].copy_from_slice(&self.term.to_le_bytes());
        let mut h = crc32fast::Hasher::new();
        h.update(&covered);
        h.update(payload);
        h.finalize()
    }

    /// Total bytes the frame occupies on disk.
    pub fn frame_len(&self) -> u64 {
        ENTRY_HEADER_LEN as u64 + u64::from(self.len)
    }
}

/// Why the bytes at some position are not a valid next entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes remain than the header or the payload needs (a torn write at the tail).
    Truncated,
    /// The header's length exceeds the configured maximum: garbage, or a torn length.
    TooLong(u32),
    /// The entry is not the one that must come next.
    WrongIndex {
        /// The index that must come next.
        expected: u64,
        /// The index found.
        found: u64,
    },
    /// The checksum does not match.
    BadChecksum,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Truncated => f.write_str("entry is cut short"),
            FrameError::TooLong(n) => write!(f, "entry length {n} exceeds max_entry_bytes"),
            FrameError::WrongIndex { expected, found } => {
                write!(f, "entry index {found} where {expected} was expected")
            }
            FrameError::BadChecksum => f.write_str("entry checksum mismatch"),
        }
    }
}

/// Parses and checks the frame at the start of `buf`, expected to hold entry `expected_index`.
/// Returns the header; the payload is `buf[ENTRY_HEADER_LEN..frame_len]`.
pub fn check_frame(buf: &[u8], expected_index: u64, max_entry_bytes: u32) -> Result<EntryHeader, FrameError> {
    if buf.len() < ENTRY_HEADER_LEN {
        return Err(FrameError::Truncated);
    }
    let h = EntryHeader::decode(buf);
    if h.len > max_entry_bytes {
        return Err(FrameError::TooLong(h.len));
    }
    let end = ENTRY_HEADER_LEN + h.len as usize;
    if buf.len() < end {
        return Err(FrameError::Truncated);
    }
    // The frame is contiguous here, so one pass covers header and payload.
    if crc32fast::hash(&buf[4..end]) != h.crc {
        return Err(FrameError::BadChecksum);
    }
    if h.index != expected_index {
        return Err(FrameError::WrongIndex { expected: expected_index, found: h.index });
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_header_round_trips_and_rejects_every_single_byte_flip() {
        let h = SegmentHeader { base_index: 12345, created_ms: 1_700_000_000_000, sealed: false };
        let raw = h.encode();
        assert_eq!(SegmentHeader::decode(&raw), Ok(h));
        let sealed = SegmentHeader { sealed: true, ..h };
        assert_eq!(SegmentHeader::decode(&sealed.encode()), Ok(sealed));
        for i in 0..28 {
            let mut bad = raw;
            bad[i] ^= 0x40;
            assert!(SegmentHeader::decode(&bad).is_err(), "flip at byte {i} accepted");
        }
        for cut in 0..SEGMENT_HEADER_LEN {
            assert!(SegmentHeader::decode(&raw[..cut]).is_err());
        }
    }

    #[test]
    fn frame_round_trips_and_every_cut_or_flip_is_caught() {
        let payload = b"hello, sluice";
        let h = EntryHeader::for_payload(7, 3, payload);
        let mut frame = Vec::new();
        h.encode_into(&mut frame);
        frame.extend_from_slice(payload);
        assert_eq!(check_frame(&frame, 7, 1024), Ok(h));
        assert_eq!(h.frame_len() as usize, frame.len());
        for cut in 0..frame.len() {
            assert_eq!(check_frame(&frame[..cut], 7, 1024), Err(FrameError::Truncated), "cut {cut}");
        }
        for i in 0..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x01;
            assert!(check_frame(&bad, 7, 1024).is_err(), "flip at byte {i} accepted");
        }
        assert_eq!(check_frame(&frame, 8, 1024), Err(FrameError::WrongIndex { expected: 8, found: 7 }));
        assert_eq!(check_frame(&frame, 7, 4), Err(FrameError::TooLong(13)));
    }
}
