//! Messages and record batches: what producers send and consumers receive.

mod batch;
pub mod marker;
pub mod varint;

pub use batch::{
    BATCH_HEADER_LEN, BATCH_MAGIC, BatchBuilder, BatchError, BatchHeader, Compression, DELIVER_AT_PROPERTY,
    ProducerStamp, Record, RecordBatch, RecordView, Records, parse_header, peek_header,
};

#[cfg(test)]
mod golden_tests;
#[cfg(test)]
mod tests;
