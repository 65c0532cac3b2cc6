//! Builds histories by hand for the checker's tests: one call per operation, with invocation
//! and completion recorded as a real run would, one millisecond apart unless told otherwise.

use crate::history::{
    AckLevel, CancelResult, DelayRead, Event, Kind, LsoSample, Op, TxnOutcome, TxnPlan, TxnRead, TxnValue,
};
use crate::report::{Anomaly, AnomalyKind, Report};

/// The process number the runner records faults and final reads under.
const RUNNER: u32 = u32::MAX;

/// A history under construction.
#[derive(Debug, Default)]
pub(crate) struct History {
    /// The events so far.
    pub events: Vec<Event>,
    time_ns: u64,
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    /// Sets the clock: the next event happens at `ms` milliseconds.
    pub fn at_ms(&mut self, ms: u64) -> &mut History {
        self.time_ns = ms * 1_000_000;
        self
    }

    /// The index of the last event recorded.
    pub fn last(&self) -> u64 {
        self.events.len() as u64 - 1
    }

    /// Any event, as given.
    pub fn raw(&mut self, process: u32, kind: Kind, op: Op) -> &mut History {
        self.push(process, kind, op)
    }

    fn push(&mut self, process: u32, kind: Kind, op: Op) -> &mut History {
        let index = self.events.len() as u64;
        self.events.push(Event { index, time_ns: self.time_ns, process, kind, op, error: None });
        self.time_ns += 1_000_000;
        self
    }

    fn send(&mut self, process: u32, value: &str, kind: Kind, at: Option<(u32, u64)>) -> &mut History {
        self.push(process, Kind::Invoke, send_op(value, None, None, AckLevel::All));
        self.push(process, kind, send_op(value, at.map(|a| a.0), at.map(|a| a.1), AckLevel::All))
    }

    /// A send at `level` (`leader` or `none`) completed `ok` in `partition`, without an offset,
    /// as the producer records it.
    pub fn send_early(&mut self, process: u32, value: &str, level: AckLevel, partition: u32) -> &mut History {
        self.push(process, Kind::Invoke, send_op(value, None, None, level));
        self.push(process, Kind::Ok, send_op(value, Some(partition), None, level))
    }

    /// A send acknowledged at (`partition`, `offset`).
    pub fn send_ok(&mut self, process: u32, value: &str, partition: u32, offset: u64) -> &mut History {
        self.send(process, value, Kind::Ok, Some((partition, offset)))
    }

    /// The invocation of a send whose completion comes later ([`History::send_ack`]): a
    /// producer with several sends in flight.
    pub fn send_invoke(&mut self, process: u32, value: &str) -> &mut History {
        self.push(process, Kind::Invoke, send_op(value, None, None, AckLevel::All))
    }

    /// The acknowledgement of a send invoked by [`History::send_invoke`].
    pub fn send_ack(&mut self, process: u32, value: &str, partition: u32, offset: u64) -> &mut History {
        self.push(process, Kind::Ok, send_op(value, Some(partition), Some(offset), AckLevel::All))
    }

    /// A send that certainly failed.
    pub fn send_fail(&mut self, process: u32, value: &str) -> &mut History {
        self.send(process, value, Kind::Fail, None)
    }

    /// A send whose outcome is unknown.
    pub fn send_info(&mut self, process: u32, value: &str) -> &mut History {
        self.send(process, value, Kind::Info, None)
    }

    /// A poll that returned `reads`: per partition, (offset, value) pairs.
    pub fn poll(&mut self, process: u32, group: Option<&str>, reads: &[(u32, &[(u64, &str)])]) -> &mut History {
        let group = group.map(str::to_owned);
        self.push(process, Kind::Invoke, Op::Poll { group: group.clone(), reads: Vec::new() });
        let reads = reads.iter().map(|(p, entries)| (*p, owned(entries))).collect();
        self.push(process, Kind::Ok, Op::Poll { group, reads })
    }

    /// A poll that timed out: it may have consumed records nobody saw.
    pub fn poll_info(&mut self, process: u32, group: Option<&str>) -> &mut History {
        let group = group.map(str::to_owned);
        self.push(process, Kind::Invoke, Op::Poll { group: group.clone(), reads: Vec::new() });
        self.push(process, Kind::Info, Op::Poll { group, reads: Vec::new() })
    }

    /// A rebalance or seek: the consumer owns the partitions of `positions` and reads each from
    /// the position given.
    pub fn assign(&mut self, process: u32, group: Option<&str>, positions: &[(u32, u64)]) -> &mut History {
        let partitions = positions.iter().map(|p| p.0).collect();
        let op = Op::Assign { group: group.map(str::to_owned), partitions, positions: positions.to_vec() };
        self.push(process, Kind::Ok, op)
    }

    /// A group member's commit.
    pub fn commit(&mut self, process: u32, group: &str, offsets: &[(u32, u64)]) -> &mut History {
        let op = Op::Commit { group: group.into(), offsets: offsets.to_vec() };
        self.push(process, Kind::Invoke, op.clone());
        self.push(process, Kind::Ok, op)
    }

    /// A fault's `start` or `heal`.
    pub fn fault(&mut self, name: &str, phase: &str, nodes: &[u64]) -> &mut History {
        let op = Op::Fault { name: name.into(), phase: phase.into(), nodes: nodes.to_vec() };
        self.push(RUNNER, Kind::Info, op)
    }

    /// The final drain of one partition.
    pub fn final_read(&mut self, partition: u32, reads: &[(u64, &str)]) -> &mut History {
        self.push(RUNNER, Kind::Ok, Op::FinalRead { partition, reads: owned(reads) })
    }

    /// One node's copy of a partition.
    pub fn node_log(&mut self, node: u64, partition: u32, entries: &[(u64, &str)]) -> &mut History {
        self.push(RUNNER, Kind::Ok, Op::NodeLog { node, partition, entries: owned(entries) })
    }

    /// A group's members consume with a filter of `tags`.
    pub fn subscribe(&mut self, group: &str, tags: &[&str]) -> &mut History {
        let op = Op::Subscribe { group: group.into(), tags: tags.iter().map(|t| (*t).to_owned()).collect() };
        self.push(RUNNER, Kind::Ok, op)
    }

    /// A group's committed offsets after the run.
    pub fn final_committed(&mut self, group: &str, offsets: &[(u32, u64)]) -> &mut History {
        let op = Op::FinalCommitted { group: group.into(), offsets: offsets.to_vec() };
        self.push(RUNNER, Kind::Ok, op)
    }
}

/// The delay workload's operations.
impl History {
    /// The delay workload's parameters.
    pub fn delay_setup(&mut self, max_clock_skew_ms: u64, grace_ms: u64) -> &mut History {
        let op = Op::DelaySetup { max_clock_skew_ms, grace_ms, max_delay_ms: 5_000, cancel_percent: 20 };
        self.push(RUNNER, Kind::Ok, op)
    }

    /// The invocation of a delayed send due at `deliver_at_ms`.
    pub fn delay_send_invoke(&mut self, process: u32, value: &str, deliver_at_ms: u64) -> &mut History {
        self.push(process, Kind::Invoke, delay_send(value, deliver_at_ms, None))
    }

    /// A delayed send acknowledged with the id (`partition`, `seq`).
    pub fn delay_send_ok(
        &mut self,
        process: u32,
        value: &str,
        deliver_at_ms: u64,
        partition: u32,
        seq: u64,
    ) -> &mut History {
        self.delay_send_invoke(process, value, deliver_at_ms);
        self.push(process, Kind::Ok, delay_send(value, deliver_at_ms, Some((partition, seq))))
    }

    /// A delayed send whose outcome is unknown.
    pub fn delay_send_info(&mut self, process: u32, value: &str, deliver_at_ms: u64) -> &mut History {
        self.delay_send_invoke(process, value, deliver_at_ms);
        self.push(process, Kind::Info, delay_send(value, deliver_at_ms, None))
    }

    /// A delayed send that certainly failed.
    pub fn delay_send_fail(&mut self, process: u32, value: &str, deliver_at_ms: u64) -> &mut History {
        self.delay_send_invoke(process, value, deliver_at_ms);
        self.push(process, Kind::Fail, delay_send(value, deliver_at_ms, None))
    }

    /// An `ok` completion of a delayed send that lacks its id (a broken history).
    pub fn delay_send_ack_without_id(&mut self, process: u32, value: &str, deliver_at_ms: u64) -> &mut History {
        self.push(process, Kind::Ok, delay_send(value, deliver_at_ms, None))
    }

    /// A cancel of the message sent as `value` with the id (`partition`, `seq`): `ok` with
    /// `outcome`, or `info` (unknown) when `None`.
    pub fn cancel(
        &mut self,
        process: u32,
        value: &str,
        partition: u32,
        seq: u64,
        outcome: Option<CancelResult>,
    ) -> &mut History {
        let op = |outcome| Op::Cancel { value: value.into(), partition, seq, outcome };
        self.push(process, Kind::Invoke, op(None));
        self.push(process, if outcome.is_some() { Kind::Ok } else { Kind::Info }, op(outcome))
    }

    /// A delay consumer's poll returning at `received_ms` with `reads`: (partition, offset,
    /// value, deliver_at property).
    pub fn delay_poll(
        &mut self,
        process: u32,
        received_ms: u64,
        reads: &[(u32, u64, &str, Option<u64>)],
    ) -> &mut History {
        self.push(process, Kind::Invoke, Op::DelayPoll { received_ms: None, reads: Vec::new() });
        let reads = reads
            .iter()
            .map(|&(partition, offset, value, deliver_at_ms)| DelayRead {
                partition,
                offset,
                value: value.into(),
                deliver_at_ms,
            })
            .collect();
        self.push(process, Kind::Ok, Op::DelayPoll { received_ms: Some(received_ms), reads })
    }

    /// The delay consumers stopped at `at_ms`, `missing` messages short.
    pub fn delay_end(&mut self, at_ms: u64, missing: u64) -> &mut History {
        self.push(RUNNER, Kind::Ok, Op::DelayEnd { at_ms, missing })
    }
}

/// The txn workload's operations.
impl History {
    /// The txn workload's parameters: `topics` of `partitions` each, source topic `source` of
    /// `source_partitions`, group `g`, a timeout of `timeout_ms`, allowances of 2 s (no fault)
    /// and 20 s (after a heal).
    pub fn txn_setup(
        &mut self,
        topics: &[&str],
        partitions: u32,
        source: &str,
        source_partitions: u32,
        timeout_ms: u64,
    ) -> &mut History {
        let op = Op::TxnSetup {
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            partitions,
            source: source.into(),
            source_partitions,
            group: "g".into(),
            timeout_ms,
            lso_allowance_ms: 2_000,
            heal_allowance_ms: 20_000,
        };
        self.push(RUNNER, Kind::Ok, op)
    }

    /// A producer instance of `id` registered.
    pub fn txn_init(&mut self, process: u32, id: &str) -> &mut History {
        let op = Op::TxnInit { transactional_id: id.into() };
        self.push(process, Kind::Invoke, op.clone());
        self.push(process, Kind::Ok, op)
    }

    /// The invocation of transaction `label` writing `values`: (topic, partition, value).
    pub fn txn_invoke(
        &mut self,
        process: u32,
        label: &str,
        plan: TxnPlan,
        values: &[(&str, u32, &str)],
        offsets: &[(u32, u64)],
    ) -> &mut History {
        self.push(process, Kind::Invoke, txn_op(label, plan, values, offsets, None))
    }

    /// The completion of transaction `label` with `outcome` (`ok` committed, `info` unknown,
    /// `fail` otherwise).
    pub fn txn_done(
        &mut self,
        process: u32,
        label: &str,
        plan: TxnPlan,
        values: &[(&str, u32, &str)],
        offsets: &[(u32, u64)],
        outcome: TxnOutcome,
    ) -> &mut History {
        let kind = match outcome {
            TxnOutcome::Committed => Kind::Ok,
            TxnOutcome::Unknown => Kind::Info,
            _ => Kind::Fail,
        };
        self.push(process, kind, txn_op(label, plan, values, offsets, Some(outcome)))
    }

    /// A whole transaction of a writer (no offsets), invoked and completed.
    pub fn txn(
        &mut self,
        process: u32,
        label: &str,
        plan: TxnPlan,
        outcome: TxnOutcome,
        values: &[(&str, u32, &str)],
    ) -> &mut History {
        self.txn_invoke(process, label, plan, values, &[]);
        self.txn_done(process, label, plan, values, &[], outcome)
    }

    /// A reader's poll returning `reads`: (topic, partition, offset, value).
    pub fn txn_poll(&mut self, process: u32, reads: &[(&str, u32, u64, &str)]) -> &mut History {
        self.push(process, Kind::Invoke, Op::TxnPoll { reads: Vec::new() });
        let reads = reads
            .iter()
            .map(|&(topic, partition, offset, value)| TxnRead {
                topic: topic.into(),
                partition,
                offset,
                value: value.into(),
            })
            .collect();
        self.push(process, Kind::Ok, Op::TxnPoll { reads })
    }

    /// An LSO sample asked at the current time and answered 1 ms later: (topic, partition,
    /// lso, end).
    pub fn txn_lso(&mut self, process: u32, samples: &[(&str, u32, u64, u64)]) -> &mut History {
        self.push(process, Kind::Invoke, Op::TxnLso { partitions: Vec::new() });
        let partitions = samples
            .iter()
            .map(|&(topic, partition, lso, end)| LsoSample { topic: topic.into(), partition, lso, end })
            .collect();
        self.push(process, Kind::Ok, Op::TxnLso { partitions })
    }

    /// The clients' end.
    pub fn txn_end(&mut self, caught_up: bool, settled: bool) -> &mut History {
        self.push(RUNNER, Kind::Ok, Op::TxnEnd { caught_up, settled, unsettled: Vec::new(), open: Vec::new() })
    }

    /// The clients' end, the wait having given up on transactions still `open`.
    pub fn txn_end_open(&mut self, open: &[&str]) -> &mut History {
        let open: Vec<String> = open.iter().map(|o| (*o).to_owned()).collect();
        self.push(RUNNER, Kind::Ok, Op::TxnEnd { caught_up: true, settled: false, unsettled: open.clone(), open })
    }

    /// A final drain of a partition, `read_committed` or not.
    pub fn txn_drain(&mut self, topic: &str, partition: u32, committed: bool, reads: &[(u64, &str)]) -> &mut History {
        let end = reads.last().map_or(0, |r| r.0 + 1);
        let op = Op::TxnDrain { topic: topic.into(), partition, committed, end, reads: owned(reads) };
        self.push(RUNNER, Kind::Ok, op)
    }

    /// The processor's group's final committed offsets.
    pub fn txn_offsets(&mut self, offsets: &[(u32, u64)]) -> &mut History {
        self.push(RUNNER, Kind::Ok, Op::TxnOffsets { group: "g".into(), offsets: offsets.to_vec() })
    }
}

fn txn_op(
    label: &str,
    plan: TxnPlan,
    values: &[(&str, u32, &str)],
    offsets: &[(u32, u64)],
    outcome: Option<TxnOutcome>,
) -> Op {
    let values = values
        .iter()
        .map(|&(topic, partition, value)| TxnValue { topic: topic.into(), partition, value: value.into() })
        .collect();
    Op::Txn { label: label.into(), plan, values, offsets: offsets.to_vec(), outcome }
}

fn send_op(value: &str, partition: Option<u32>, offset: Option<u64>, acks: AckLevel) -> Op {
    Op::Send { value: value.into(), partition, offset, acks }
}

fn delay_send(value: &str, deliver_at_ms: u64, id: Option<(u32, u64)>) -> Op {
    Op::DelaySend { value: value.into(), deliver_at_ms, partition: id.map(|i| i.0), seq: id.map(|i| i.1) }
}

fn owned(entries: &[(u64, &str)]) -> Vec<(u64, String)> {
    entries.iter().map(|(o, v)| (*o, (*v).to_owned())).collect()
}

/// Asserts that `report` found exactly `count` instances of `kind` and nothing else, and
/// returns their examples.
pub(crate) fn only(report: &Report, kind: AnomalyKind, count: u64) -> Vec<Anomaly> {
    for other in AnomalyKind::ALL {
        let expected = if other == kind { count } else { 0 };
        assert_eq!(report.count(other), expected, "{} in\n{}", other.name(), report.to_json());
    }
    report.anomalies[&kind].examples.clone()
}
