//! Delayed messages as producers and consumers see them (docs/DELAYS.md): the delivery time a
//! delayed record carries, and the id that names a pending one for cancellation.

use std::fmt;
use std::str::FromStr;

use crate::record::{DELIVER_AT_PROPERTY, RecordView};

/// The longest delay a broker accepts unless configured otherwise: 365 days.
pub const DEFAULT_MAX_DELAY_MS: u64 = 365 * 24 * 3600 * 1000;

/// A pending delayed message: its partition and the sequence number the partition gave it when
/// the delayed batch was committed (dense, from 0, like offsets). Written `partition-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DelayedId {
    /// The partition the message waits in, and is released to.
    pub partition: u32,
    /// Its number among the partition's delayed messages.
    pub seq: u64,
}

impl fmt::Display for DelayedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.partition, self.seq)
    }
}

impl FromStr for DelayedId {
    type Err = String;

    fn from_str(s: &str) -> Result<DelayedId, String> {
        let bad = || format!("delayed-message id {s:?} is not of the form PARTITION-SEQ (e.g. 3-1207)");
        let (p, q) = s.split_once('-').ok_or_else(bad)?;
        Ok(DelayedId { partition: p.parse().map_err(|_| bad())?, seq: q.parse().map_err(|_| bad())? })
    }
}

/// The delivery time of a delayed record: its [`DELIVER_AT_PROPERTY`], in ms since the Unix
/// epoch. `Err` says what is wrong (missing, twice, or not a number).
pub fn deliver_at_of(record: &RecordView) -> Result<u64, String> {
    let mut found = None;
    for (name, value) in record.properties() {
        if name == DELIVER_AT_PROPERTY {
            if found.is_some() {
                return Err(format!("a delayed record has the {DELIVER_AT_PROPERTY} property twice"));
            }
            let at = value.parse::<u64>().map_err(|_| {
                format!("{DELIVER_AT_PROPERTY} is {value:?}; it must be ms since the Unix epoch (a whole number)")
            })?;
            found = Some(at);
        }
    }
    found.ok_or_else(|| format!("a record of a delayed batch lacks the {DELIVER_AT_PROPERTY} property"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{BatchBuilder, ProducerStamp, Record, RecordBatch};

    fn view(props: &[(&str, &str)]) -> RecordView {
        let mut r = Record::new("v", 1);
        r.properties = props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut b = BatchBuilder::new(ProducerStamp::NONE, 64).delayed(true);
        b.push(&r);
        let batch = RecordBatch::parse(b.finish()).unwrap();
        assert!(batch.header().delayed);
        batch.records().next().unwrap().unwrap()
    }

    #[test]
    fn the_delivery_time_is_read_from_its_property_and_bad_ones_are_named() {
        assert_eq!(deliver_at_of(&view(&[("a", "b"), (DELIVER_AT_PROPERTY, "1700000000123")])), Ok(1_700_000_000_123));
        assert!(deliver_at_of(&view(&[("a", "b")])).unwrap_err().contains("lacks"));
        assert!(deliver_at_of(&view(&[(DELIVER_AT_PROPERTY, "-5")])).unwrap_err().contains("whole number"));
        let twice = [(DELIVER_AT_PROPERTY, "1"), (DELIVER_AT_PROPERTY, "2")];
        assert!(deliver_at_of(&view(&twice)).unwrap_err().contains("twice"));
    }

    #[test]
    fn ids_print_and_parse_as_partition_dash_seq() {
        let id = DelayedId { partition: 3, seq: 1207 };
        assert_eq!(id.to_string(), "3-1207");
        assert_eq!("3-1207".parse::<DelayedId>(), Ok(id));
        for bad in ["3", "x-1", "3-", "-4", "3-4-5"] {
            assert!(bad.parse::<DelayedId>().unwrap_err().contains("PARTITION-SEQ"), "{bad}");
        }
    }
}
