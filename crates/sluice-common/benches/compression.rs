//! Criterion benchmarks of compressed batches (docs/FORMAT.md, "Compressed batches"): what the
//! producer pays to build one, what the broker pays to validate one on produce (every record
//! read, values decompressed) and to judge one for a filter (metadata only), per codec.
//!
//! ```text
//! cargo bench -p sluice-common --bench compression
//! ```
//!
//! One batch of 256 JSON-like records of 1 KiB (a tag and one property each), 256 KiB of values;
//! throughput is in bytes of values per second on one core. Before the runs it prints each
//! codec's compressed size, and the size of the whole records section compressed as Kafka
//! does, for the cost of keeping keys, tags and properties plain.
//!
//! - `build/<codec>`: encoding and compressing the batch (the producer).
//! - `validate/<codec>`: parsing it and reading every record with its value (the broker on
//!   produce; a consumer).
//! - `metadata/<codec>`: reading keys, tags and properties only (a filter).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_common::record::{BatchBuilder, Compression, ProducerStamp, Record, RecordBatch};

const RECORDS: usize = 256;
const VALUE_BYTES: usize = 1024;

fn records() -> Vec<Record> {
    (0..RECORDS)
        .map(|i| {
            let mut v = format!(
                "{{\"event\":\"{}\",\"user_id\":{},\"visit\":\"v-{:08x}\",\"path\":\"/products/{}/reviews\",\"text\":\"",
                ["page_view", "click", "purchase"][i % 3],
                10_000 + i * 7919 % 90_000,
                (i as u32).wrapping_mul(2_654_435_761),
                i % 97
            );
            while v.len() < VALUE_BYTES - 2 {
                v.push_str(["lorem ", "ipsum ", "dolor ", "sit ", "amet "][v.len() % 5]);
            }
            v.truncate(VALUE_BYTES - 2);
            v.push_str("\"}");
            Record {
                key: Some(Bytes::from(format!("user-{}", i % 50))),
                tag: Some(format!("tag-{}", i % 10)),
                properties: vec![("n".into(), i.to_string())],
                ..Record::new(v, 1_700_000_000_000 + i as i64)
            }
        })
        .collect()
}

fn build(records: &[Record], codec: Compression) -> Bytes {
    let mut b = BatchBuilder::new(ProducerStamp::NONE, RECORDS * (VALUE_BYTES + 64)).compression(codec, 3);
    records.iter().for_each(|r| b.push(r));
    b.finish()
}

/// Compressed sizes: this layout's, and the whole records section's (Kafka's layout).
fn report_sizes(records: &[Record]) {
    let plain = build(records, Compression::None);
    for codec in Compression::ALL {
        let ours = build(records, codec).len();
        let whole = codec.compress(&plain[sluice_common::record::BATCH_HEADER_LEN..], 3).len();
        eprintln!("{codec:<7} batch {ours:>7} bytes of {:>7}; whole section compressed: {whole:>7}", plain.len());
    }
}

fn benches(c: &mut Criterion) {
    let records = records();
    report_sizes(&records);
    let mut group = c.benchmark_group("compression");
    group.throughput(Throughput::Bytes((RECORDS * VALUE_BYTES) as u64));
    for codec in Compression::ALL {
        let batch = RecordBatch::parse(build(&records, codec)).expect("a valid batch");
        group.bench_function(format!("build/{codec}"), |b| b.iter(|| build(black_box(&records), codec)));
        group.bench_function(format!("validate/{codec}"), |b| {
            b.iter(|| {
                RecordBatch::parse(black_box(batch.bytes().clone())).unwrap().records().filter(Result::is_ok).count()
            })
        });
        group.bench_function(format!("metadata/{codec}"), |b| {
            b.iter(|| black_box(&batch).metadata().filter(Result::is_ok).count())
        });
    }
    group.finish();
}

criterion_group!(compression, benches);
criterion_main!(compression);
