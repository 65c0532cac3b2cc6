//! One pass over the history that gathers what the write and group checks share: every send
//! with its outcome, and every read (poll or final drain) flattened to (partition, offset,
//! value). The delay workload's sends and reads are included: a delayed send has no
//! acknowledged place (it gets its offset when released), so only its value and a `fail` are
//! indexed; its reads are reads like any other. Of the txn workload's reads, those of its first
//! topic (`TxnSetup::topics[0]`, the topic the runner's probes write to and whose node copies
//! are recorded) are indexed, drains of either isolation included; its transactions are not
//! sends (the txn checks judge them).
//!
//! A send's acknowledgement level decides what its `ok` gives the checks: only an `all` ack
//! (committed) is a place (partition, offset) the value must be found at; a `leader` or `none`
//! one came before any commit, so it is kept apart (`early_ack`) and never compared with reads.

use std::collections::{BTreeMap, HashMap};

use super::Found;
use crate::history::{AckLevel, Event, Kind, Op};
use crate::report::Anomaly;

/// How one send (one unique value) ended.
#[derive(Debug, Default)]
pub(crate) struct Send<'a> {
    /// The value.
    pub value: &'a str,
    /// The producer process.
    pub process: u32,
    /// The level it was sent at, as invoked (`all` for a delayed send).
    pub level: AckLevel,
    /// Every `ok` completion of an `all` send: (partition, offset, event index). More than one
    /// is a bug the duplicate check reports if they disagree. Always empty for a delayed send
    /// and for a `leader` or `none` send.
    pub acks: Vec<(u32, u64, u64)>,
    /// The first `ok` completion of a `leader` or `none` send: (its partition if it named one,
    /// event index). Such a message may be lost, so this is only counted.
    pub early_ack: Option<(Option<u32>, u64)>,
    /// The `fail` completion, if any.
    pub fail: Option<u64>,
}

/// One (partition, offset, value) returned by a poll or the final drain.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Read<'a> {
    /// The event that returned it.
    pub event: u64,
    /// Where.
    pub partition: u32,
    /// Where.
    pub offset: u64,
    /// What.
    pub value: &'a str,
}

/// The sends and reads of a history.
#[derive(Debug, Default)]
pub(crate) struct Index<'a> {
    /// Every send, in the order they were invoked.
    pub sends: Vec<Send<'a>>,
    /// Position in `sends` of each value.
    pub by_value: HashMap<&'a str, usize>,
    /// Every read, in history order.
    pub reads: Vec<Read<'a>>,
    /// The highest offset anyone read, per partition.
    pub highest_read: BTreeMap<u32, u64>,
}

impl<'a> Index<'a> {
    /// Indexes `events`, reporting sends it cannot make sense of as malformed.
    pub fn build(events: &'a [Event], found: &mut Found) -> Index<'a> {
        let mut index = Index::default();
        // The txn workload's first topic, once its setup is seen.
        let mut txn_topic: Option<&str> = None;
        for event in events {
            match &event.op {
                Op::TxnSetup { topics, .. } => txn_topic = topics.first().map(String::as_str),
                Op::RetryPoll { reads, .. } if event.kind == Kind::Ok => {
                    for read in reads {
                        index.add_read(event.index, read.partition, read.offset, &read.value);
                    }
                }
                Op::TxnPoll { reads, .. } if event.kind == Kind::Ok => {
                    for read in reads.iter().filter(|r| Some(r.topic.as_str()) == txn_topic) {
                        index.add_read(event.index, read.partition, read.offset, &read.value);
                    }
                }
                Op::TxnDrain { topic, partition, reads, .. } if Some(topic.as_str()) == txn_topic => {
                    index.add_reads(event.index, *partition, reads);
                }
                Op::Send { value, partition, offset, acks } => {
                    index.add_send(event, value, *acks, (*partition, *offset), found);
                }
                Op::Poll { reads, .. } if event.kind == Kind::Ok => {
                    for (partition, entries) in reads {
                        index.add_reads(event.index, *partition, entries);
                    }
                }
                Op::FinalRead { partition, reads } => index.add_reads(event.index, *partition, reads),
                Op::DelaySend { value, .. } => index.add_delay_send(event, value, found),
                Op::DelayPoll { reads, .. } if event.kind == Kind::Ok => {
                    for read in reads {
                        index.add_read(event.index, read.partition, read.offset, &read.value);
                    }
                }
                _ => {}
            }
        }
        index
    }

    /// The send of `value`, if the history invoked one.
    pub fn send(&self, value: &str) -> Option<&Send<'a>> {
        self.by_value.get(value).map(|&i| &self.sends[i])
    }

    /// Every acknowledgement: (partition, offset, value, event index), in send order.
    pub fn acks(&self) -> impl Iterator<Item = (u32, u64, &'a str, u64)> + '_ {
        self.sends.iter().flat_map(|s| s.acks.iter().map(move |&(p, o, e)| (p, o, s.value, e)))
    }

    fn add_send(
        &mut self,
        event: &Event,
        value: &'a str,
        level: AckLevel,
        (partition, offset): (Option<u32>, Option<u64>),
        found: &mut Found,
    ) {
        let malformed = |reason: &str| Anomaly::Malformed { event: event.index, reason: reason.to_owned() };
        if event.kind == Kind::Invoke {
            if self.by_value.contains_key(value) {
                found.push(malformed(&format!("value {value:?} is sent twice; values must be unique")));
                return;
            }
            self.by_value.insert(value, self.sends.len());
            self.sends.push(Send { value, process: event.process, level, ..Send::default() });
            return;
        }
        let Some(&i) = self.by_value.get(value) else {
            found.push(malformed(&format!("send of {value:?} completes without an invocation")));
            return;
        };
        let send = &mut self.sends[i];
        if level != send.level {
            let (now, then) = (level.name(), send.level.name());
            found.push(malformed(&format!("send of {value:?} completes at acks {now}, invoked at acks {then}")));
        }
        // The invocation's level decides: it is what the producer was asked to do.
        match (event.kind, send.level.has_offset(), partition, offset) {
            (Kind::Ok, true, Some(p), Some(o)) => send.acks.push((p, o, event.index)),
            (Kind::Ok, true, _, _) => {
                found.push(malformed(&format!("ok send of {value:?} without partition and offset")))
            }
            // An offset given with an early ack is ignored: it is not committed, and another
            // value may take it after a leader change.
            (Kind::Ok, false, _, _) => {
                send.early_ack.get_or_insert((partition, event.index));
            }
            (Kind::Fail, ..) => send.fail = Some(event.index),
            _ => {}
        }
        if (!send.acks.is_empty() || send.early_ack.is_some()) && send.fail.is_some() {
            found.push(malformed(&format!("send of {value:?} completes both ok and fail")));
        }
    }

    /// A delayed send: its value (unique among every send) and whether it failed; its `ok`
    /// (a delayed id, no offset) is the delay check's business.
    fn add_delay_send(&mut self, event: &Event, value: &'a str, found: &mut Found) {
        let malformed = |reason: String| Anomaly::Malformed { event: event.index, reason };
        if event.kind == Kind::Invoke {
            if self.by_value.contains_key(value) {
                found.push(malformed(format!("value {value:?} is sent twice; values must be unique")));
                return;
            }
            self.by_value.insert(value, self.sends.len());
            self.sends.push(Send { value, process: event.process, ..Send::default() });
            return;
        }
        let Some(&i) = self.by_value.get(value) else {
            found.push(malformed(format!("delayed send of {value:?} completes without an invocation")));
            return;
        };
        if event.kind == Kind::Fail {
            self.sends[i].fail = Some(event.index);
        }
    }

    fn add_reads(&mut self, event: u64, partition: u32, entries: &'a [(u64, String)]) {
        for (offset, value) in entries {
            self.add_read(event, partition, *offset, value);
        }
    }

    fn add_read(&mut self, event: u64, partition: u32, offset: u64, value: &'a str) {
        self.reads.push(Read { event, partition, offset, value });
        let highest = self.highest_read.entry(partition).or_insert(offset);
        *highest = (*highest).max(offset);
    }
}
