//! The txn workload's checks (docs/TRANSACTIONS.md): what a transaction promises, judged from
//! how its producer saw it end, every `read_committed` read, the final drains and the
//! partitions' last stable offsets (LSO).
//!
//! A transaction *must abort* when its commit was never asked for (its abort answered OK, it
//! was abandoned, its instance was fenced, or a call failed first) or when a new instance of
//! its id had fenced it before its commit was asked for (the `fence` plan, whatever the old
//! instance's commit then answered). It *must commit* when its commit answered OK. Otherwise
//! (its commit was asked for and did not answer OK) its outcome is unknown: either, but all or
//! nothing.
//!
//! - **`aborted-read`**: a value of a transaction that must abort returned by a reader or by
//!   the final `read_committed` drain (one finding per transaction).
//! - **`torn`**: a reader returned a value of a transaction and read past the offset of another
//!   of its values (in another partition) without returning it: once a partition's LSO is past
//!   an offset, the transaction there is decided, so a committed transaction's value must come
//!   back. And a transaction of unknown outcome must be all or nothing in the final drain:
//!   some values there (or returned by a reader) and others missing is torn.
//! - **`lost-commit`**: a transaction that must commit with a value missing from the final
//!   `read_committed` drain.
//! - **`duplicate`**: a value at two places (topic, partition, offset) among every read,
//!   `read_uncommitted` drain included (each value is written once, by one idempotent
//!   transactional batch). Values of the first topic only are left to the write checks, which
//!   see its reads.
//! - **`garbage-read`**: a value read that no transaction wrote (and no probe), or read in
//!   another partition than its transaction wrote it to.
//! - **`not-exactly-once`**: the processor's outputs (`out:<source value>@<label>-<i>`) in the
//!   final `read_committed` drain, against its group's final committed offsets of the source
//!   topic: a source value below its partition's committed offset must have exactly one output,
//!   one at or above it none (offsets and outputs commit together). Checked only when the
//!   source, every partition of the transactional topics and the offsets were all read at the
//!   end.
//! - **`stuck-lso`**: every offset below a partition's end at one sample must be below its LSO
//!   by `timeout + 1 s + lso_allowance` after the sample: the transactions holding those
//!   offsets had begun by then, and their coordinator aborts each at its timeout (scanned every
//!   100 ms). A fault active in that time (or healed less than `heal_allowance` before it)
//!   extends it to `heal + timeout + 1 s + heal_allowance`, and a fault never healed leaves it
//!   unjudged. The first sample taken after that time must show the LSO there; one that shows
//!   it lower is a finding. Since the drain samples until every partition settled (or well past
//!   every such time), this also covers "after the heal, every LSO reaches its end in time".
//! - **`stuck-transaction`**: a transaction of the workload still open at its coordinator
//!   (`ONGOING`, or decided — `PREPARE_COMMIT`, `PREPARE_ABORT` — and not completed) when the
//!   runner's wait after the run gave up (`TxnEnd::open`): that wait lasts `timeout + 1 s +
//!   heal_allowance + 5 s` after every client stopped, itself after the last heal, so an open
//!   one should long have timed out and a decided one been completed. (Its LSO may be fine: a
//!   transaction whose markers are all written but whose completion was never recorded holds no
//!   partition back, but its id refuses every new producer instance.)
//!
//! A drain that is missing (the cluster did not serve in time) leaves the checks that need it
//! unjudged for its partition; `TxnStats::exactly_once_checked` says whether that check ran.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::Found;
use super::index::Index;
use crate::history::{Event, Kind, Op, TxnOutcome, TxnPlan, TxnValue};
use crate::report::{Anomaly, FaultWindow, TxnPlace, TxnStats};

const MS: u64 = 1_000_000;

/// What the timeout allows beyond itself: the coordinator's timeout scan (every 100 ms) and
/// the markers' writes.
pub(crate) const MARKER_SLACK_MS: u64 = 1_000;

/// The prefix of the processor's outputs.
pub const OUTPUT_PREFIX: &str = "out:";

/// The source value an output of the processor was made from: `out:<source>@<label>-<i>`.
pub fn source_of(output: &str) -> Option<&str> {
    output.strip_prefix(OUTPUT_PREFIX)?.rsplit_once('@').map(|(source, _)| source)
}

/// The workload's parameters.
#[derive(Debug, Default)]
struct Setup<'a> {
    topics: Vec<&'a str>,
    partitions: u32,
    source: &'a str,
    source_partitions: u32,
    timeout_ms: u64,
    lso_allowance_ms: u64,
    heal_allowance_ms: u64,
}

/// One transaction as its producer saw it.
#[derive(Debug)]
struct Txn<'a> {
    label: &'a str,
    plan: TxnPlan,
    values: &'a [TxnValue],
    /// `None` until completed (never completed: unknown).
    outcome: Option<TxnOutcome>,
    end_event: Option<u64>,
    processor: bool,
}

impl Txn<'_> {
    fn outcome(&self) -> TxnOutcome {
        self.outcome.unwrap_or(TxnOutcome::Unknown)
    }

    fn must_commit(&self) -> bool {
        self.outcome() == TxnOutcome::Committed
    }

    /// Its commit was never asked for, or a new instance had fenced it before.
    fn must_abort(&self) -> bool {
        self.outcome().must_abort() || self.plan == TxnPlan::Fence
    }
}

/// One record returned by a `read_committed` read (a reader, `process` set, or the final
/// drain), or by the `read_uncommitted` drain (`committed` false).
#[derive(Debug, Clone, Copy)]
struct Seen<'a> {
    process: Option<u32>,
    committed: bool,
    event: u64,
    topic: &'a str,
    partition: u32,
    offset: u64,
    value: &'a str,
}

/// One LSO sample of a partition.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// When it was asked for, and when it answered (ns since the run started).
    from_ns: u64,
    to_ns: u64,
    event: u64,
    lso: u64,
    end: u64,
}

/// Everything the txn checks need, gathered in one pass.
#[derive(Debug, Default)]
struct Txns<'a> {
    setup: Setup<'a>,
    txns: HashMap<&'a str, Txn<'a>>,
    /// Labels in invocation order.
    order: Vec<&'a str>,
    /// The transaction that wrote each value.
    owner: HashMap<&'a str, &'a str>,
    seen: Vec<Seen<'a>>,
    /// Drained partitions: (topic, partition, committed) → the drain's event.
    drained: HashMap<(&'a str, u32, bool), u64>,
    samples: BTreeMap<(&'a str, u32), Vec<Sample>>,
    group_offsets: Option<BTreeMap<u32, u64>>,
    end: Option<(bool, bool)>,
    /// The transactions still open when the wait gave up, with the `txn_end` event and its time.
    open_at_end: Vec<(&'a str, u64, u64)>,
    instances: u64,
    reader_reads: u64,
    lso_samples: u64,
    /// When each acknowledged commit completed, in history order.
    commits_ns: Vec<u64>,
    /// When the last transaction completed (the writers' end).
    last_txn_ns: u64,
}

/// Runs the txn checks and returns the workload's figures. `windows` are the fault windows.
pub(crate) fn check(events: &[Event], index: &Index<'_>, windows: &[FaultWindow], found: &mut Found) -> TxnStats {
    let txns = collect(events, found);
    let mut stats = TxnStats {
        timeout_ms: txns.setup.timeout_ms,
        instances: txns.instances,
        reader_reads: txns.reader_reads,
        lso_samples: txns.lso_samples,
        caught_up: txns.end.map(|e| e.0),
        settled: txns.end.map(|e| e.1),
        ..TxnStats::default()
    };
    aborted_reads(&txns, found);
    outcomes(&txns, found, &mut stats);
    torn_reads(&txns, found);
    duplicates(&txns, found);
    garbage(&txns, index, found);
    exactly_once(&txns, found, &mut stats);
    stuck_lso(&txns, windows, found, &mut stats);
    stuck_transactions(&txns, windows, found);
    stalled(&txns, windows, found);
    stats
}

fn collect<'a>(events: &'a [Event], found: &mut Found) -> Txns<'a> {
    let mut t = Txns::default();
    let malformed = |event: &Event, reason: String| Anomaly::Malformed { event: event.index, reason };
    let mut lso_asked: HashMap<u32, u64> = HashMap::new();
    for event in events {
        match &event.op {
            Op::TxnSetup {
                topics,
                partitions,
                source,
                source_partitions,
                timeout_ms,
                lso_allowance_ms,
                heal_allowance_ms,
                ..
            } => {
                t.setup = Setup {
                    topics: topics.iter().map(String::as_str).collect(),
                    partitions: *partitions,
                    source,
                    source_partitions: *source_partitions,
                    timeout_ms: *timeout_ms,
                    lso_allowance_ms: *lso_allowance_ms,
                    heal_allowance_ms: *heal_allowance_ms,
                };
            }
            Op::TxnInit { .. } if event.kind == Kind::Invoke => t.instances += 1,
            Op::Txn { label, plan, values, offsets, outcome } => {
                if event.kind == Kind::Invoke {
                    if t.txns.contains_key(label.as_str()) {
                        found.push(malformed(event, format!("transaction {label} is invoked twice")));
                        continue;
                    }
                    for v in values {
                        if let Some(other) = t.owner.insert(&v.value, label) {
                            let reason = format!("value {:?} is written by transactions {other} and {label}", v.value);
                            found.push(malformed(event, reason));
                        }
                    }
                    let processor = !offsets.is_empty() || values.iter().any(|v| source_of(&v.value).is_some());
                    t.order.push(label);
                    t.txns.insert(label, Txn { label, plan: *plan, values, outcome: None, end_event: None, processor });
                    continue;
                }
                let Some(txn) = t.txns.get_mut(label.as_str()) else {
                    found.push(malformed(event, format!("transaction {label} completes without an invocation")));
                    continue;
                };
                let outcome = outcome.unwrap_or(TxnOutcome::Unknown);
                let agrees = match event.kind {
                    Kind::Ok => outcome == TxnOutcome::Committed,
                    Kind::Fail => outcome.must_abort(),
                    Kind::Info => outcome == TxnOutcome::Unknown,
                    Kind::Invoke => true,
                };
                if !agrees {
                    let reason =
                        format!("transaction {label} completes {:?} with outcome {}", event.kind, outcome.name());
                    found.push(malformed(event, reason));
                }
                txn.outcome = Some(outcome);
                txn.end_event = Some(event.index);
                if event.kind == Kind::Ok {
                    t.commits_ns.push(event.time_ns);
                }
                t.last_txn_ns = t.last_txn_ns.max(event.time_ns);
            }
            Op::TxnPoll { reads } if event.kind == Kind::Ok => {
                for r in reads {
                    t.reader_reads += 1;
                    t.seen.push(Seen {
                        process: Some(event.process),
                        committed: true,
                        event: event.index,
                        topic: &r.topic,
                        partition: r.partition,
                        offset: r.offset,
                        value: &r.value,
                    });
                }
            }
            Op::TxnLso { .. } if event.kind == Kind::Invoke => {
                lso_asked.insert(event.process, event.time_ns);
            }
            Op::TxnLso { partitions } if event.kind == Kind::Ok => {
                t.lso_samples += 1;
                let from_ns = lso_asked.remove(&event.process).unwrap_or(event.time_ns);
                for s in partitions {
                    let sample = Sample { from_ns, to_ns: event.time_ns, event: event.index, lso: s.lso, end: s.end };
                    t.samples.entry((&s.topic, s.partition)).or_default().push(sample);
                }
            }
            Op::TxnEnd { caught_up, settled, open, .. } => {
                t.end = Some((*caught_up, *settled));
                t.open_at_end = open.iter().map(|o| (o.as_str(), event.index, event.time_ns)).collect();
            }
            Op::TxnDrain { topic, partition, committed, reads, .. } => {
                // A later drain of the same partition replaces an earlier one.
                if t.drained.insert((topic, *partition, *committed), event.index).is_some() {
                    t.seen.retain(|s| {
                        s.process.is_some() || (s.topic, s.partition, s.committed) != (topic, *partition, *committed)
                    });
                }
                for (offset, value) in reads {
                    t.seen.push(Seen {
                        process: None,
                        committed: *committed,
                        event: event.index,
                        topic,
                        partition: *partition,
                        offset: *offset,
                        value,
                    });
                }
            }
            Op::TxnOffsets { offsets, .. } => t.group_offsets = Some(offsets.iter().copied().collect()),
            _ => {}
        }
    }
    t
}

impl<'a> Txns<'a> {
    /// The transaction that wrote `value`, if any.
    fn owner_of(&self, value: &str) -> Option<&Txn<'a>> {
        self.owner.get(value).and_then(|label| self.txns.get(label))
    }

    /// Whether the final `read_committed` drain read `topic`'s `partition`.
    fn drained(&self, topic: &str, partition: u32) -> bool {
        self.drained.contains_key(&(topic, partition, true))
    }

    /// The values the final `read_committed` drain holds.
    fn final_values(&self) -> HashSet<&'a str> {
        self.seen.iter().filter(|s| s.committed && s.process.is_none()).map(|s| s.value).collect()
    }

    /// Every `read_committed` read: the readers' and the final drain's.
    fn committed_reads(&self) -> impl Iterator<Item = &Seen<'a>> {
        self.seen.iter().filter(|s| s.committed)
    }
}

/// Values of transactions that must abort, read committed: one finding per transaction.
fn aborted_reads(t: &Txns<'_>, found: &mut Found) {
    let mut reported = HashSet::new();
    for s in t.committed_reads() {
        let Some(txn) = t.owner_of(s.value) else { continue };
        if txn.must_abort() && reported.insert(txn.label) {
            found.push(Anomaly::TxnAbortedRead {
                label: txn.label.to_owned(),
                outcome: txn.outcome(),
                end_event: txn.end_event.unwrap_or(0),
                value: s.value.to_owned(),
                topic: s.topic.to_owned(),
                partition: s.partition,
                offset: s.offset,
                read_event: s.event,
            });
        }
    }
}

/// Per transaction, against the final `read_committed` drain: committed ones whole
/// (`lost-commit`), unknown ones all or nothing (`torn`); and the outcome counts.
fn outcomes(t: &Txns<'_>, found: &mut Found, stats: &mut TxnStats) {
    let final_values = t.final_values();
    let read_by_readers: HashSet<&str> = t.seen.iter().filter(|s| s.process.is_some()).map(|s| s.value).collect();
    let in_log: HashSet<&str> = t.seen.iter().filter(|s| !s.committed).map(|s| s.value).collect();
    for label in &t.order {
        let txn = &t.txns[label];
        stats.transactions += 1;
        stats.processor_transactions += u64::from(txn.processor);
        stats.values += txn.values.len() as u64;
        match txn.outcome() {
            TxnOutcome::Committed => stats.committed += 1,
            TxnOutcome::Aborted => stats.aborted += 1,
            TxnOutcome::Abandoned => stats.abandoned += 1,
            TxnOutcome::Fenced => stats.fenced += 1,
            TxnOutcome::Failed => stats.failed += 1,
            TxnOutcome::Unknown => stats.unknown += 1,
        }
        stats.visible += txn.values.iter().filter(|v| final_values.contains(v.value.as_str())).count() as u64;
        if txn.must_abort() {
            stats.must_abort_values += txn.values.len() as u64;
            stats.aborted_in_log += txn.values.iter().filter(|v| in_log.contains(v.value.as_str())).count() as u64;
        }
        // Only values of drained partitions are judged.
        let judged: Vec<&TxnValue> = txn.values.iter().filter(|v| t.drained(&v.topic, v.partition)).collect();
        let (present, missing): (Vec<&TxnValue>, Vec<&TxnValue>) =
            judged.iter().partition(|v| final_values.contains(v.value.as_str()));
        if txn.must_commit() && !missing.is_empty() {
            found.push(Anomaly::LostCommit {
                label: txn.label.to_owned(),
                commit_event: txn.end_event.unwrap_or(0),
                fenced_first: txn.plan == TxnPlan::Fence,
                missing: missing.into_iter().cloned().collect(),
                visible: present.len() as u64,
            });
            continue;
        }
        if txn.outcome() != TxnOutcome::Unknown || txn.must_abort() || judged.is_empty() {
            continue;
        }
        let seen: BTreeSet<&str> = txn
            .values
            .iter()
            .map(|v| v.value.as_str())
            .filter(|v| final_values.contains(v) || read_by_readers.contains(v))
            .collect();
        if missing.is_empty() {
            stats.unknown_committed += 1;
        } else if seen.is_empty() {
            stats.unknown_aborted += 1;
        } else {
            found.push(Anomaly::TornFinal {
                label: txn.label.to_owned(),
                end_event: txn.end_event.unwrap_or(0),
                visible: seen.into_iter().map(str::to_owned).collect(),
                missing: missing.iter().map(|v| v.value.clone()).collect(),
            });
        }
    }
}

/// A reader that returned a value of a transaction and read past another of its values
/// without returning it: one finding per transaction.
fn torn_reads(t: &Txns<'_>, found: &mut Found) {
    // Where each value is, from any read (the read_uncommitted drain holds them all).
    let mut place: HashMap<&str, (&str, u32, u64)> = HashMap::new();
    for s in &t.seen {
        place.entry(s.value).or_insert((s.topic, s.partition, s.offset));
    }
    // Per reader: the values it returned (with the first poll) and the highest offset it
    // returned per partition (with its poll).
    let mut returned: BTreeMap<u32, HashMap<&str, u64>> = BTreeMap::new();
    let mut highest: HashMap<(u32, &str, u32), (u64, u64)> = HashMap::new();
    for s in t.seen.iter().filter(|s| s.committed) {
        let Some(process) = s.process else { continue };
        returned.entry(process).or_default().entry(s.value).or_insert(s.event);
        let top = highest.entry((process, s.topic, s.partition)).or_insert((s.offset, s.event));
        if s.offset > top.0 {
            *top = (s.offset, s.event);
        }
    }
    for label in &t.order {
        let txn = &t.txns[label];
        if txn.must_abort() {
            continue; // any read of it is an aborted read
        }
        'readers: for (&process, values) in &returned {
            let Some((seen, &seen_event)) = txn.values.iter().find_map(|v| values.get_key_value(v.value.as_str()))
            else {
                continue;
            };
            for v in txn.values.iter().filter(|v| !values.contains_key(v.value.as_str())) {
                let Some(&(topic, partition, offset)) = place.get(v.value.as_str()) else { continue };
                if (topic, partition) != (v.topic.as_str(), v.partition) {
                    continue; // garbage, reported as such
                }
                let Some(&(passed_offset, passed_event)) = highest.get(&(process, topic, partition)) else { continue };
                if passed_offset > offset {
                    found.push(Anomaly::TornRead {
                        label: txn.label.to_owned(),
                        process,
                        seen: (*seen).to_owned(),
                        seen_event,
                        missed: v.value.clone(),
                        topic: topic.to_owned(),
                        partition,
                        offset,
                        passed_offset,
                        passed_event,
                    });
                    break 'readers;
                }
            }
        }
    }
}

/// Values at two places of the log; those of the first topic alone are the write checks'.
fn duplicates(t: &Txns<'_>, found: &mut Found) {
    let primary = t.setup.topics.first().copied();
    let mut places: HashMap<&str, BTreeMap<(&str, u32, u64), u64>> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for s in &t.seen {
        let at = places.entry(s.value).or_insert_with(|| {
            order.push(s.value);
            BTreeMap::new()
        });
        let first = at.entry((s.topic, s.partition, s.offset)).or_insert(s.event);
        *first = (*first).min(s.event);
    }
    for value in order {
        let at = &places[value];
        if at.len() < 2 || at.keys().all(|(topic, _, _)| Some(*topic) == primary) {
            continue;
        }
        let places = at
            .iter()
            .map(|(&(topic, partition, offset), &event)| TxnPlace { topic: topic.to_owned(), partition, offset, event })
            .collect();
        found.push(Anomaly::TxnDuplicate { value: value.to_owned(), places });
    }
}

/// Values of the transactional topics no transaction wrote (nor a probe), or read elsewhere
/// than written: one finding per value.
fn garbage(t: &Txns<'_>, index: &Index<'_>, found: &mut Found) {
    let mut reported = HashSet::new();
    for s in t.seen.iter().filter(|s| s.topic != t.setup.source) {
        let written_to = match t.owner_of(s.value) {
            Some(txn) => {
                let v = txn.values.iter().find(|v| v.value == s.value).expect("the owner wrote it");
                if (v.topic.as_str(), v.partition) == (s.topic, s.partition) {
                    continue;
                }
                Some((v.topic.clone(), v.partition))
            }
            None if index.send(s.value).is_some() => continue,
            None => None,
        };
        if reported.insert(s.value) {
            found.push(Anomaly::TxnGarbage {
                value: s.value.to_owned(),
                topic: s.topic.to_owned(),
                partition: s.partition,
                offset: s.offset,
                event: s.event,
                written_to,
            });
        }
    }
}

/// Each source value below its partition's committed offset has exactly one output in the
/// final `read_committed` drain; every other has none.
fn exactly_once(t: &Txns<'_>, found: &mut Found, stats: &mut TxnStats) {
    let setup = &t.setup;
    let sources_drained = (0..setup.source_partitions).all(|p| t.drained(setup.source, p));
    let outputs_drained =
        setup.topics.iter().all(|topic| (0..setup.partitions).all(|p| t.drained(topic, p))) && !setup.topics.is_empty();
    let sources: Vec<&Seen<'_>> =
        t.seen.iter().filter(|s| s.committed && s.process.is_none() && s.topic == setup.source).collect();
    stats.sources = sources.len() as u64;
    let Some(committed) = &t.group_offsets else { return };
    if !sources_drained || !outputs_drained || setup.source_partitions == 0 {
        return;
    }
    stats.exactly_once_checked = true;
    let mut outputs: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for s in t.seen.iter().filter(|s| s.committed && s.process.is_none() && s.topic != setup.source) {
        if let Some(source) = source_of(s.value) {
            outputs.entry(source).or_default().insert(s.value);
        }
    }
    for s in sources {
        let due = committed.get(&s.partition).is_some_and(|&c| s.offset < c);
        stats.consumed += u64::from(due);
        let outs = outputs.remove(s.value).unwrap_or_default();
        if outs.len() != usize::from(due) {
            found.push(Anomaly::NotExactlyOnce {
                source: s.value.to_owned(),
                partition: Some(s.partition),
                offset: Some(s.offset),
                committed: committed.get(&s.partition).copied(),
                outputs: outs.into_iter().map(str::to_owned).collect(),
            });
        }
    }
    let mut left: Vec<(&str, BTreeSet<&str>)> = outputs.into_iter().collect();
    left.sort_unstable();
    for (source, outs) in left {
        found.push(Anomaly::NotExactlyOnce {
            source: source.to_owned(),
            partition: None,
            offset: None,
            committed: None,
            outputs: outs.into_iter().map(str::to_owned).collect(),
        });
    }
}

/// Offsets held above a partition's LSO longer than allowed (see the module's comment).
fn stuck_lso(t: &Txns<'_>, windows: &[FaultWindow], found: &mut Found, stats: &mut TxnStats) {
    let setup = &t.setup;
    let quiet_ns = (setup.timeout_ms + MARKER_SLACK_MS + setup.lso_allowance_ms) * MS;
    let after_heal_ns = (setup.timeout_ms + MARKER_SLACK_MS + setup.heal_allowance_ms) * MS;
    let heal_allowance_ns = setup.heal_allowance_ms * MS;
    let deadline = |s: &Sample| -> Option<u64> {
        let mut deadline = s.to_ns + quiet_ns;
        for w in windows {
            if w.start_ns > deadline {
                break; // windows come in start order
            }
            let heal = w.heal_ns?;
            if heal + heal_allowance_ns >= s.from_ns {
                deadline = deadline.max(heal + after_heal_ns);
            }
        }
        Some(deadline)
    };
    let mut longest_ns = 0;
    for (&(topic, partition), list) in &t.samples {
        let mut i = 0;
        while i < list.len() {
            let s = list[i];
            if s.lso >= s.end {
                i += 1;
                continue;
            }
            if let Some(caught) = list[i + 1..].iter().find(|x| x.lso >= s.end) {
                longest_ns = longest_ns.max(caught.to_ns.saturating_sub(s.from_ns));
            }
            let Some(due) = deadline(&s) else {
                i += 1;
                continue;
            };
            let Some(k) = list[i + 1..].iter().position(|x| x.from_ns >= due).map(|k| i + 1 + k) else {
                i += 1;
                continue;
            };
            if list[k].lso >= s.end {
                i += 1;
                continue;
            }
            found.push(Anomaly::StuckLso {
                topic: topic.to_owned(),
                partition,
                lso: s.lso,
                end: s.end,
                since_event: s.event,
                seen_event: list[k].event,
                lso_then: list[k].lso,
                waited_ms: (list[k].from_ns - s.to_ns) / MS,
                allowed_ms: (due - s.to_ns) / MS,
            });
            // One finding per stretch: go on once the LSO got there.
            i = list[k..].iter().position(|x| x.lso >= s.end).map_or(list.len(), |j| k + j);
        }
    }
    stats.longest_lso_lag_ms = longest_ns / MS;
}

/// Transactions still open at their coordinator when the runner's wait gave up: at least
/// `timeout + 1 s + heal_allowance + 5 s` after the last heal, every writer and the processor
/// stopped, so each had long had to end by its timeout or its decision.
fn stuck_transactions(t: &Txns<'_>, windows: &[FaultWindow], found: &mut Found) {
    let last_heal = windows.iter().filter_map(|w| w.heal_ns).max();
    for &(transaction, event, time_ns) in &t.open_at_end {
        found.push(Anomaly::StuckTransaction {
            transaction: transaction.to_owned(),
            event,
            after_heal_ms: last_heal.map(|h| time_ns.saturating_sub(h) / MS),
        });
    }
}

/// Stretches with no fault active — from a heal plus its allowance to the next fault, from the
/// first transaction to the first fault, from the last heal's allowance to the writers' end —
/// at least `timeout + allowance` long in which no transaction committed. The writers commit
/// most of their transactions every few hundred ms, so one such stretch means the workload
/// stopped making progress: safe, but not live.
fn stalled(t: &Txns<'_>, windows: &[FaultWindow], found: &mut Found) {
    let Some(&first) = t.commits_ns.first() else { return };
    let allowance_ns = t.setup.heal_allowance_ms * MS;
    let longest_ns = (t.setup.timeout_ms + t.setup.heal_allowance_ms) * MS;
    let mut quiet_from = first;
    let mut stretches = Vec::new();
    for w in windows {
        stretches.push((quiet_from, w.start_ns));
        let Some(heal) = w.heal_ns else { return };
        quiet_from = quiet_from.max(heal + allowance_ns);
    }
    stretches.push((quiet_from, t.last_txn_ns));
    for (from, to) in stretches {
        if to <= from || to - from < longest_ns {
            continue;
        }
        let committed = t.commits_ns.iter().any(|&c| c > from && c <= to);
        if !committed {
            found.push(Anomaly::Stalled { from_ms: from / MS, to_ms: to / MS });
        }
    }
}

#[cfg(test)]
mod tests;
