//! Messages and record batches: what producers send and consumers receive.

mod batch;
mod codec;
mod compressed;
pub mod marker;
mod records;
pub mod varint;

pub use batch::{
    BATCH_HEADER_LEN, BATCH_MAGIC, BatchBuilder, BatchError, BatchHeader, DELIVER_AT_PROPERTY, ProducerStamp, Record,
    RecordBatch, parse_header, peek_header,
};
pub use codec::{CodecError, Compression, DEFAULT_ZSTD_LEVEL, TopicCompression};
pub use compressed::MAX_VALUES_BYTES;
pub use records::{RecordView, Records};

#[cfg(test)]
mod compressed_tests;
#[cfg(test)]
mod golden_tests;
#[cfg(test)]
mod tests;
