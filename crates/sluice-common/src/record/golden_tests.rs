//! The cross-language conformance check: the golden batches of
//! `tests/data/golden_batches.txt` (whose header comment gives its syntax) decode to the records
//! they describe, those records encode to the same bytes, and the annotated dump in
//! `docs/FORMAT.md` is the first of them, at the offsets it names.

use bytes::Bytes;

use super::*;

const GOLDEN: &str = include_str!("../../tests/data/golden_batches.txt");
const FORMAT_MD: &str = include_str!("../../../../docs/FORMAT.md");

/// One batch of the golden file.
#[derive(Debug, Default)]
struct Golden {
    name: String,
    header: Vec<(String, String)>,
    records: Vec<Record>,
    bytes: Vec<u8>,
}

impl Golden {
    fn field(&self, name: &str) -> &str {
        let found = self.header.iter().find(|(k, _)| k == name);
        &found.unwrap_or_else(|| panic!("batch {}: no header field {name}", self.name)).1
    }

    fn int<T: std::str::FromStr>(&self, name: &str) -> T {
        self.field(name).parse().unwrap_or_else(|_| panic!("batch {}: {name} is not a number", self.name))
    }

    fn stamp(&self) -> ProducerStamp {
        ProducerStamp {
            producer_id: self.int("producer_id"),
            epoch: self.int("epoch"),
            base_sequence: self.int("base_seq"),
        }
    }
}

fn unhex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits in {s:?}");
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).expect("hex digits"))
        .collect()
}

fn fields(line: &str) -> Vec<(String, String)> {
    line.split_whitespace()
        .map(|f| f.split_once('=').unwrap_or_else(|| panic!("{f:?} is not name=value")))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn utf8(hex: &str) -> String {
    String::from_utf8(unhex(hex)).expect("UTF-8")
}

fn record(line: &str) -> Record {
    let mut r = Record::default();
    for (k, v) in fields(line) {
        match (k.as_str(), v.as_str()) {
            ("ts", v) => r.timestamp_ms = v.parse().expect("a timestamp"),
            ("key", "-") | ("tag", "-") => {}
            ("key", v) => r.key = Some(Bytes::from(unhex(v))),
            ("value", v) => r.value = Bytes::from(unhex(v)),
            ("tag", v) => r.tag = Some(utf8(v)),
            ("prop", v) => {
                let (name, value) = v.split_once(':').expect("prop=<name>:<value>");
                r.properties.push((utf8(name), utf8(value)));
            }
            (other, _) => panic!("unknown record field {other}"),
        }
    }
    r
}

fn golden_batches() -> Vec<Golden> {
    let mut batches: Vec<Golden> = Vec::new();
    for line in GOLDEN.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
        if kind == "batch" {
            batches.push(Golden { name: rest.to_owned(), ..Golden::default() });
            continue;
        }
        let batch = batches.last_mut().expect("`batch` comes first");
        match kind {
            "header" => batch.header = fields(rest),
            "record" => batch.records.push(record(rest)),
            "hex" => batch.bytes.extend(unhex(rest)),
            other => panic!("unknown golden line kind {other}"),
        }
    }
    batches
}

#[test]
fn golden_batches_decode_to_their_records_and_encode_to_their_bytes() {
    let batches = golden_batches();
    let names: Vec<&str> = batches.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["minimal", "idempotent", "newest-first", "format-1"]);
    for g in &batches {
        let name = &g.name;
        let batch = RecordBatch::parse(Bytes::from(g.bytes.clone())).unwrap_or_else(|e| panic!("{name}: {e}"));
        let h = batch.header();
        let crc = u32::from_le_bytes(g.bytes[..4].try_into().unwrap());
        assert_eq!(format!("{crc:#010x}"), g.field("crc"), "{name}: crc");
        let magic = g.header.iter().find(|(k, _)| k == "magic").map_or(BATCH_MAGIC, |_| g.int("magic"));
        assert_eq!(g.bytes[4], magic, "{name}: magic");
        assert_eq!(g.bytes[5], g.int::<u8>("attrs"), "{name}: attrs");
        assert_eq!((h.transactional, h.control, h.compression), (false, false, Compression::None), "{name}");
        assert_eq!(h.count, g.int::<u32>("count"), "{name}: count");
        assert_eq!(h.count as usize, g.records.len(), "{name}: one record line per record");
        assert_eq!(h.producer, g.stamp(), "{name}: producer fields");
        assert_eq!(h.first_timestamp_ms, g.int::<i64>("first_ts_ms"), "{name}: first_ts_ms");
        assert_eq!(h.max_timestamp_ms, g.int::<i64>("max_ts_ms"), "{name}: max_ts_ms");
        assert_eq!(g.bytes.len() - h.header_len(), g.int::<usize>("records_len"), "{name}: records_len");
        let summary = h.tag_summary.map(|s| format!("{s:#018x}"));
        let expected = g.header.iter().find(|(k, _)| k == "tag_summary").map(|(_, v)| v.clone());
        assert_eq!(summary, expected, "{name}: tag_summary");
        let decoded: Vec<Record> =
            batch.records().map(|r| r.unwrap_or_else(|e| panic!("{name}: {e}")).to_record()).collect();
        assert_eq!(decoded, g.records, "{name}: records");
        if magic == BATCH_MAGIC {
            let tags = g.records.iter().filter_map(|r| r.tag.as_deref());
            let summary = tags.fold(0, |s, t| s | crate::filter::tag_summary_bit(t));
            assert_eq!(Some(summary), h.tag_summary, "{name}: the summary of its tags");
            let mut builder = BatchBuilder::new(g.stamp(), 0);
            g.records.iter().for_each(|r| builder.push(r));
            assert_eq!(builder.finish().to_vec(), g.bytes, "{name}: encoding its records gives its bytes");
        }
    }
}

/// The dump under "A golden batch, byte by byte": `offset | bytes | field` rows.
fn format_md_dump() -> Vec<(usize, Vec<u8>)> {
    let section = FORMAT_MD.split_once("### A golden batch, byte by byte").expect("the section exists").1;
    let block = section.split_once("```text\n").expect("a text block").1.split_once("```").expect("closed").0;
    block
        .lines()
        .filter_map(|line| {
            let mut columns = line.split('|').map(str::trim);
            let offset = columns.next()?.parse().ok()?;
            Some((offset, unhex(columns.next().expect("a bytes column"))))
        })
        .collect()
}

#[test]
fn the_annotated_dump_in_format_md_is_the_minimal_golden_batch() {
    let minimal = golden_batches().into_iter().find(|b| b.name == "minimal").expect("the minimal batch");
    let mut position = 0;
    let mut dumped = Vec::new();
    for (offset, bytes) in format_md_dump() {
        assert_eq!(offset, position, "the row at offset {offset} follows the previous one");
        position += bytes.len();
        dumped.extend(bytes);
    }
    assert_eq!(dumped, minimal.bytes);
}
