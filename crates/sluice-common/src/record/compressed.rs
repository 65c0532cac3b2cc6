//! The records section of a compressed batch (docs/FORMAT.md, "Compressed batches"): every
//! record's metadata — timestamp, key, tag, properties, and its value's length — stays plain,
//! and only the values, concatenated in record order, are compressed as one block.
//!
//! ```text
//! | meta_len u32 | values_len u32 | meta (meta_len bytes) | compressed values (the rest) |
//!   meta: the records as in an uncompressed batch, each without its value bytes (its
//!   body_len counts the bytes that remain); values_len: the values' total length, uncompressed
//! ```
//!
//! So a broker reads and filters a compressed batch's keys, tags and properties without
//! decompressing anything, and stores and serves it as it came. A batch that states more
//! uncompressed bytes than [`MAX_VALUES_BYTES`] is refused unread (a decompression bomb).

use bytes::{BufMut, Bytes, BytesMut};

use super::batch::BatchError;
use super::codec::Compression;

/// Bytes before the metadata: `meta_len` and `values_len`.
pub(super) const PREFIX_LEN: usize = 8;
/// The most value bytes a compressed batch may state: a reader refuses a larger claim before
/// decompressing. A broker bounds batches further by its `max_batch_bytes`.
pub const MAX_VALUES_BYTES: usize = 256 << 20;

/// The three parts of a compressed records section.
#[derive(Debug, Clone)]
pub(super) struct Parts {
    pub meta: Bytes,
    pub values_len: usize,
    pub compressed: Bytes,
}

/// Writes the section of `meta` and `values` compressed with `codec` at `level` after `out`'s
/// header.
pub(super) fn write_section(out: &mut BytesMut, meta: &[u8], values: &[u8], codec: Compression, level: i32) {
    let compressed = codec.compress(values, level);
    out.reserve(PREFIX_LEN + meta.len() + compressed.len());
    out.put_u32_le(u32::try_from(meta.len()).expect("batch under 4 GiB"));
    out.put_u32_le(u32::try_from(values.len()).expect("batch under 4 GiB"));
    out.put_slice(meta);
    out.put_slice(&compressed);
}

/// Splits a compressed records `section` into its parts, checking the lengths it states.
pub(super) fn split(section: &Bytes) -> Result<Parts, BatchError> {
    let bad = |what| Err(BatchError::Compressed(what));
    if section.len() < PREFIX_LEN {
        return bad("the compressed records section is shorter than its 8-byte prefix");
    }
    let le32 = |at: usize| u32::from_le_bytes(section[at..at + 4].try_into().expect("4 bytes")) as usize;
    let (meta_len, values_len) = (le32(0), le32(4));
    if meta_len > section.len() - PREFIX_LEN {
        return bad("meta_len runs past the end of the batch");
    }
    if values_len > MAX_VALUES_BYTES {
        return bad("values_len states more than 256 MiB of values (a decompression bomb?)");
    }
    let meta_end = PREFIX_LEN + meta_len;
    Ok(Parts { meta: section.slice(PREFIX_LEN..meta_end), values_len, compressed: section.slice(meta_end..) })
}
