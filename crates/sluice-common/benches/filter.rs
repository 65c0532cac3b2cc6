//! Criterion benchmarks of subscription filters (docs/FILTERS.md): what evaluating one message
//! costs the broker at fetch.
//!
//! ```text
//! cargo bench -p sluice-common --bench filter
//! ```
//!
//! Every case evaluates a batch of 1,000 records of 100-byte values, each with a tag (one of
//! 10) and three properties (`price`, `region`, `n`), decoded from one encoded batch as a fetch
//! does; throughput is in records (evaluations) per second on one core.
//!
//! - `decode/1000`: decoding the records alone, the floor under every filter.
//! - `sql3/1000`: `price > 100 AND region IN ('eu', 'us') AND n <> 7`, three predicates.
//! - `tags/1000`: the tag expression `tag-3 || tag-7`.
//! - `compile/sql3`: compiling the three-predicate expression (once per subscription).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_common::filter::Filter;
use sluice_common::record::{BatchBuilder, ProducerStamp, Record, RecordBatch};

const RECORDS: usize = 1000;
const SQL3: &str = "price > 100 AND region IN ('eu', 'us') AND n <> 7";

fn batch() -> RecordBatch {
    let mut builder = BatchBuilder::new(ProducerStamp::NONE, RECORDS * 160);
    for i in 0..RECORDS {
        let record = Record {
            tag: Some(format!("tag-{}", i % 10)),
            properties: vec![
                ("price".into(), ((i * 7919) % 1000).to_string()),
                ("region".into(), ["eu", "us", "apac"][i % 3].into()),
                ("n".into(), i.to_string()),
            ],
            ..Record::new(Bytes::from(vec![b'x'; 100]), 1_700_000_000_000 + i as i64)
        };
        builder.push(&record);
    }
    RecordBatch::parse(builder.finish()).expect("a valid batch")
}

fn count_matches(batch: &RecordBatch, filter: &Filter) -> usize {
    batch.records().filter(|r| filter.matches(r.as_ref().expect("valid")).unwrap_or(false)).count()
}

fn benches(c: &mut Criterion) {
    let batch = batch();
    let sql = Filter::compile("", SQL3).unwrap().unwrap();
    let tags = Filter::compile("tag-3 || tag-7", "").unwrap().unwrap();
    let mut group = c.benchmark_group("filter");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("decode/1000", |b| b.iter(|| black_box(&batch).records().filter(Result::is_ok).count()));
    group.bench_function("sql3/1000", |b| b.iter(|| count_matches(black_box(&batch), &sql)));
    group.bench_function("tags/1000", |b| b.iter(|| count_matches(black_box(&batch), &tags)));
    group.throughput(Throughput::Elements(1));
    group.bench_function("compile/sql3", |b| b.iter(|| Filter::compile("", black_box(SQL3))));
    group.finish();
}

criterion_group!(filter, benches);
criterion_main!(filter);
