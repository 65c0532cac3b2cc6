//! Availability, measured from the times of acknowledged sends: the longest stretch without
//! one, over the whole run and per fault window, and how long after each heal the first
//! acknowledgement came.
//!
//! The run's timeline of "acks" is the `ok` completions of sends at level `all` (not `leader`
//! or `none`: those answers come before any commit, and a leader about to be deposed may
//! still give them; their sends count in no window either), delayed sends' too (their
//! acknowledgement is the write the cluster must be available for; and committed
//! transactions, the txn workload's writes, whose `fail` and `info` count as failed and
//! unknown sends), bounded by the first send's
//! invocation and the last send's completion (so the final drain, which sends nothing, does
//! not count as an outage, while a cluster that never recovers does). A gap belongs to a
//! fault window if it overlaps it: acks at 1 s and 15 s around a fault from 2 s to 10 s give
//! that window a 14 s gap — the outage the clients saw, not only its part inside the window.

use super::Found;
use crate::history::{AckLevel, Event, Kind, Op};
use crate::report::{Anomaly, Availability, FaultWindow};

/// Measures availability; fault events it cannot pair up are reported as malformed.
pub(crate) fn measure(events: &[Event], found: &mut Found) -> Availability {
    let sends: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e.op, Op::Send { acks: AckLevel::All, .. } | Op::DelaySend { .. } | Op::Txn { .. }))
        .collect();
    let (Some(first), Some(last)) = (sends.iter().find(|e| e.kind == Kind::Invoke), sends.last()) else {
        return Availability { windows: windows(events, found), ..Availability::default() };
    };
    let mut points = vec![first.time_ns];
    points.extend(sends.iter().filter(|e| e.kind == Kind::Ok).map(|e| e.time_ns));
    points.push(last.time_ns);
    points.sort_unstable();
    let gaps: Vec<(u64, u64)> = points.windows(2).map(|w| (w[0], w[1])).collect();
    let (longest_gap_from_ns, longest_gap_ns) =
        gaps.iter().map(|&(from, to)| (from, to - from)).max_by_key(|&(_, gap)| gap).unwrap_or((0, 0));
    let mut windows = windows(events, found);
    let history_end = events.last().map_or(0, |e| e.time_ns);
    for window in &mut windows {
        fill(window, &gaps, &sends, history_end);
    }
    Availability { longest_gap_ns, longest_gap_from_ns, windows }
}

/// The fault windows, in start order: each heal closes the oldest open start of the same name,
/// preferring one with the same nodes.
fn windows(events: &[Event], found: &mut Found) -> Vec<FaultWindow> {
    let mut windows: Vec<FaultWindow> = Vec::new();
    for event in events {
        let Op::Fault { name, phase, nodes } = &event.op else { continue };
        match phase.as_str() {
            "start" => windows.push(FaultWindow {
                name: name.clone(),
                nodes: nodes.clone(),
                start_ns: event.time_ns,
                ..FaultWindow::default()
            }),
            "heal" => {
                let open = |w: &&mut FaultWindow| w.heal_ns.is_none() && w.name == *name;
                let mut candidates: Vec<&mut FaultWindow> = windows.iter_mut().filter(open).collect();
                let same_nodes = candidates.iter().position(|w| w.nodes == *nodes).unwrap_or(0);
                match candidates.get_mut(same_nodes) {
                    Some(window) => window.heal_ns = Some(event.time_ns),
                    None => found.push(Anomaly::Malformed {
                        event: event.index,
                        reason: format!("fault {name:?} heals without having started"),
                    }),
                }
            }
            other => found.push(Anomaly::Malformed {
                event: event.index,
                reason: format!("fault phase {other:?} is neither \"start\" nor \"heal\""),
            }),
        }
    }
    windows
}

/// Fills in one window's figures; a window never healed lasts to the end of the history.
fn fill(window: &mut FaultWindow, gaps: &[(u64, u64)], sends: &[&Event], history_end: u64) {
    let end = window.heal_ns.unwrap_or(history_end);
    window.longest_gap_ns = gaps
        .iter()
        .filter(|&&(from, to)| from <= end && to >= window.start_ns)
        .map(|&(from, to)| to - from)
        .max()
        .unwrap_or(0);
    let acks = sends.iter().filter(|e| e.kind == Kind::Ok).map(|e| e.time_ns);
    window.recovery_ns = window.heal_ns.and_then(|heal| acks.filter(|&t| t >= heal).min().map(|t| t - heal));
    for send in sends.iter().filter(|e| (window.start_ns..=end).contains(&e.time_ns)) {
        match send.kind {
            Kind::Ok => window.sends_ok += 1,
            Kind::Fail => window.sends_failed += 1,
            Kind::Info => window.sends_unknown += 1,
            Kind::Invoke => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{History, only};
    use crate::checker::check;
    use crate::report::{AnomalyKind, FaultWindow};

    const MS: u64 = 1_000_000;

    #[test]
    fn gaps_and_recovery_are_measured_per_fault_window() {
        let mut h = History::new();
        // Acks at 1, 3, 5 ms; a kill from 10 ms to 40 ms; sends fail at 20 and 30 ms; the
        // first ack after the heal lands at 48 ms (invoked at 47); a pause from 60 to 70 ms
        // during which acks keep coming at 62 and 66, then one more at 72.
        h.at_ms(0).send_ok(0, "a", 0, 0).at_ms(2).send_ok(0, "b", 0, 1).at_ms(4).send_ok(0, "c", 0, 2);
        h.at_ms(10).fault("kill", "start", &[2]);
        h.at_ms(19).send_fail(0, "x").at_ms(29).send_fail(0, "y");
        h.at_ms(40).fault("kill", "heal", &[2]);
        h.at_ms(47).send_ok(0, "d", 0, 3);
        h.at_ms(60).fault("pause", "start", &[1, 3]);
        h.at_ms(61).send_ok(0, "e", 0, 4).at_ms(65).send_ok(0, "f", 0, 5);
        h.at_ms(70).fault("pause", "heal", &[1, 3]);
        h.at_ms(71).send_ok(0, "g", 0, 6);
        h.at_ms(200).final_read(0, &[(0, "a"), (1, "b"), (2, "c"), (3, "d"), (4, "e"), (5, "f"), (6, "g")]);
        let report = check(&h.events);
        only(&report, AnomalyKind::Malformed, 0);
        let a = &report.availability;
        // 5 → 48 ms: the outage around the kill; the drain at 200 ms is not an outage.
        assert_eq!((a.longest_gap_ns, a.longest_gap_from_ns), (43 * MS, 5 * MS));
        let kill = FaultWindow {
            name: "kill".into(),
            nodes: vec![2],
            start_ns: 10 * MS,
            heal_ns: Some(40 * MS),
            longest_gap_ns: 43 * MS,
            recovery_ns: Some(8 * MS),
            sends_ok: 0,
            sends_failed: 2,
            sends_unknown: 0,
        };
        let pause = FaultWindow {
            name: "pause".into(),
            nodes: vec![1, 3],
            start_ns: 60 * MS,
            heal_ns: Some(70 * MS),
            longest_gap_ns: 14 * MS,
            recovery_ns: Some(2 * MS),
            sends_ok: 2,
            sends_failed: 0,
            sends_unknown: 0,
        };
        assert_eq!(a.windows, [kill, pause]);
    }

    #[test]
    fn a_fault_never_healed_lasts_to_the_end_and_has_no_recovery() {
        let mut h = History::new();
        h.at_ms(0).send_ok(0, "a", 0, 0).at_ms(5).fault("partition", "start", &[1]);
        h.at_ms(9).send_info(0, "b").at_ms(50).final_read(0, &[(0, "a")]);
        let report = check(&h.events);
        let window = &report.availability.windows[0];
        assert_eq!((window.heal_ns, window.recovery_ns, window.sends_unknown), (None, None, 1));
        // From the ack at 1 ms to the last send's completion at 10 ms.
        assert_eq!(window.longest_gap_ns, 9 * MS);
    }

    #[test]
    fn a_heal_without_a_start_is_malformed() {
        let mut h = History::new();
        h.fault("kill", "heal", &[1]).fault("kill", "stop", &[1]);
        only(&check(&h.events), AnomalyKind::Malformed, 2);
    }
}
