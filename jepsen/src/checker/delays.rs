//! The delay workload's checks (docs/DELAYS.md): what a delayed message promises, judged from
//! its send (value, delivery time, delayed id), the cancels of it and every receipt of it.
//!
//! - **Released at most once**: one value at two places is a `duplicate`, found by the write
//!   checks (`writes.rs`), which see the delay reads too. A place read again (a re-poll, a
//!   second consumer) is the same place, not a second release.
//! - **Never early** (`early-release`): each message's first receipt, by the runner's wall
//!   clock, must not come before its delivery time less the allowed clock skew
//!   (`DelaySetup::max_clock_skew_ms`: 0 unless the clock fault moved a broker's clock, since
//!   a leader releases by its own clock).
//! - **Never lost** (`lost-delayed`): every acknowledged message is received, unless a cancel
//!   of it answered `Cancelled` or ended unknown (`info`: it may have taken effect). A cancel
//!   that answered `AlreadyDelivered` is no excuse: such a message must be received too.
//! - **Cancel and release exclude each other** (`cancelled-delivered`): a message whose cancel
//!   answered `Cancelled` is never received.
//! - **Nothing made up** (`garbage-read`): every value read was sent (a delayed send, or a
//!   plain one such as the runner's probes), and a delayed one carries the delivery time it was
//!   sent with. A failed send that is read is an `aborted-read` (the write checks again).
//!
//! Whether the consumers read long enough is the runner's concern: it keeps them reading until
//! every expected message arrived or well past the latest delivery time, and records when they
//! stopped (`DelayEnd`), which a `lost-delayed` finding shows.

use std::collections::{BTreeMap, HashMap};

use super::Found;
use super::index::Index;
use crate::history::{CancelResult, Event, Kind, Op};
use crate::report::{Anomaly, DelayStats, Lateness};

/// How a delayed send ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// No completion (yet).
    Pending,
    /// Acknowledged with this id, at this event.
    Acked { partition: u32, seq: u64, event: u64 },
    /// Certainly not written.
    Failed,
    /// Unknown.
    Unknown,
}

/// One delayed send.
#[derive(Debug)]
struct Sent {
    deliver_at_ms: u64,
    outcome: Outcome,
}

/// What the cancels of one message answered: the first event of each answer.
#[derive(Debug, Default, Clone, Copy)]
struct Cancels {
    cancelled: Option<u64>,
    delivered: Option<u64>,
    unknown: Option<u64>,
}

/// The first receipt of one place.
#[derive(Debug, Clone, Copy)]
struct Receipt<'a> {
    value: &'a str,
    deliver_at_ms: Option<u64>,
    received_ms: u64,
    event: u64,
}

/// Everything the delay checks need, gathered in one pass.
#[derive(Debug, Default)]
struct Delays<'a> {
    max_clock_skew_ms: u64,
    sends: HashMap<&'a str, Sent>,
    /// Values in invocation order, for a stable report.
    order: Vec<&'a str>,
    cancels: HashMap<&'a str, Cancels>,
    /// Cancels invoked.
    cancels_invoked: u64,
    /// Every place read, with its first receipt.
    places: BTreeMap<(u32, u64), Receipt<'a>>,
    /// Records read in all.
    reads: u64,
    read_until_ms: Option<u64>,
}

/// Runs the delay checks and returns the workload's figures.
pub(crate) fn check(events: &[Event], index: &Index<'_>, found: &mut Found) -> DelayStats {
    let delays = collect(events, found);
    // Each value's first receipt (over every place it was read at), in place order.
    let mut first: HashMap<&str, ((u32, u64), Receipt<'_>)> = HashMap::new();
    for (&place, &receipt) in &delays.places {
        let earliest = first.entry(receipt.value).or_insert((place, receipt));
        if receipt.received_ms < earliest.1.received_ms {
            *earliest = (place, receipt);
        }
    }
    garbage(&delays, index, found);
    early(&delays, &first, found);
    cancelled_delivered(&delays, &first, found);
    let expected = lost(&delays, &first, found);
    stats(&delays, &first, expected)
}

fn collect<'a>(events: &'a [Event], found: &mut Found) -> Delays<'a> {
    let mut delays = Delays::default();
    let malformed = |event: &Event, reason: String| Anomaly::Malformed { event: event.index, reason };
    for event in events {
        match &event.op {
            Op::DelaySetup { max_clock_skew_ms, .. } => delays.max_clock_skew_ms = *max_clock_skew_ms,
            Op::DelaySend { value, deliver_at_ms, partition, seq } => {
                if event.kind == Kind::Invoke {
                    if !delays.sends.contains_key(value.as_str()) {
                        delays.order.push(value);
                        delays.sends.insert(value, Sent { deliver_at_ms: *deliver_at_ms, outcome: Outcome::Pending });
                    }
                    continue;
                }
                // A completion without an invocation is reported by the index.
                let Some(sent) = delays.sends.get_mut(value.as_str()) else { continue };
                if *deliver_at_ms != sent.deliver_at_ms {
                    let reason = format!("delayed send of {value:?} completes with another deliver_at than invoked");
                    found.push(malformed(event, reason));
                }
                sent.outcome = match (event.kind, partition, seq) {
                    (Kind::Ok, Some(partition), Some(seq)) => {
                        Outcome::Acked { partition: *partition, seq: *seq, event: event.index }
                    }
                    (Kind::Ok, ..) => {
                        let reason = format!("ok delayed send of {value:?} without its delayed id");
                        found.push(malformed(event, reason));
                        Outcome::Unknown
                    }
                    (Kind::Fail, ..) => Outcome::Failed,
                    _ => Outcome::Unknown,
                };
            }
            Op::Cancel { value, partition, seq, outcome } => {
                let acked = delays.sends.get(value.as_str()).map(|s| s.outcome);
                match acked {
                    Some(Outcome::Acked { partition: p, seq: s, .. }) if (p, s) == (*partition, *seq) => {}
                    _ => {
                        let reason = format!("cancel of {value:?} as {partition}-{seq}, not its acknowledged id");
                        found.push(malformed(event, reason));
                        continue;
                    }
                }
                let cancels = delays.cancels.entry(value).or_default();
                let answer = match (event.kind, outcome) {
                    (Kind::Invoke, _) => {
                        delays.cancels_invoked += 1;
                        continue;
                    }
                    (Kind::Ok, Some(CancelResult::Cancelled)) => &mut cancels.cancelled,
                    (Kind::Ok, Some(CancelResult::AlreadyDelivered)) => &mut cancels.delivered,
                    (Kind::Ok, None) => {
                        found.push(malformed(event, format!("ok cancel of {value:?} without its outcome")));
                        &mut cancels.unknown
                    }
                    // A cancel that failed may have been carried out by an earlier attempt
                    // inside the client: unknown, like `info`.
                    (Kind::Fail | Kind::Info, _) => &mut cancels.unknown,
                };
                answer.get_or_insert(event.index);
            }
            Op::DelayPoll { received_ms, reads } if event.kind == Kind::Ok => {
                let Some(received_ms) = *received_ms else {
                    found.push(malformed(event, "ok delay poll without its receipt time".to_owned()));
                    continue;
                };
                for read in reads {
                    delays.reads += 1;
                    let receipt = Receipt {
                        value: &read.value,
                        deliver_at_ms: read.deliver_at_ms,
                        received_ms,
                        event: event.index,
                    };
                    // A place keeps its first receipt; one holding two values is the write
                    // checks' `inconsistent-offsets`.
                    let place = delays.places.entry((read.partition, read.offset)).or_insert(receipt);
                    if receipt.value == place.value && received_ms < place.received_ms {
                        *place = receipt;
                    }
                }
            }
            Op::DelayEnd { at_ms, .. } => delays.read_until_ms = Some(*at_ms),
            _ => {}
        }
    }
    delays
}

/// Values nobody sent, and delayed ones read with another delivery time: one finding per
/// value (its first place) and per place, respectively.
fn garbage(delays: &Delays<'_>, index: &Index<'_>, found: &mut Found) {
    let mut reported = std::collections::HashSet::new();
    for (&(partition, offset), receipt) in &delays.places {
        match delays.sends.get(receipt.value) {
            Some(sent) if receipt.deliver_at_ms != Some(sent.deliver_at_ms) => {
                found.push(Anomaly::DeliverAtMismatch {
                    value: receipt.value.to_owned(),
                    partition,
                    offset,
                    sent_ms: sent.deliver_at_ms,
                    read_ms: receipt.deliver_at_ms,
                    event: receipt.event,
                });
            }
            Some(_) => {}
            // A plain send (the runner's probes): the write checks judge it.
            None if index.send(receipt.value).is_some() => {}
            None => {
                if reported.insert(receipt.value) {
                    found.push(Anomaly::UnsentRead {
                        value: receipt.value.to_owned(),
                        partition,
                        offset,
                        event: receipt.event,
                    });
                }
            }
        }
    }
}

/// Messages whose first receipt came before their delivery time less the skew allowed.
fn early(delays: &Delays<'_>, first: &HashMap<&str, ((u32, u64), Receipt<'_>)>, found: &mut Found) {
    let skew = delays.max_clock_skew_ms;
    for value in &delays.order {
        let (Some(sent), Some(&((partition, offset), receipt))) = (delays.sends.get(value), first.get(value)) else {
            continue;
        };
        if receipt.received_ms.saturating_add(skew) < sent.deliver_at_ms {
            found.push(Anomaly::EarlyRelease {
                value: (*value).to_owned(),
                partition,
                offset,
                deliver_at_ms: sent.deliver_at_ms,
                received_ms: receipt.received_ms,
                max_clock_skew_ms: skew,
                event: receipt.event,
            });
        }
    }
}

/// Messages received although a cancel answered `Cancelled`.
fn cancelled_delivered(delays: &Delays<'_>, first: &HashMap<&str, ((u32, u64), Receipt<'_>)>, found: &mut Found) {
    for value in &delays.order {
        let Some(cancel_event) = delays.cancels.get(value).and_then(|c| c.cancelled) else { continue };
        let Some(&((partition, offset), receipt)) = first.get(value) else { continue };
        found.push(Anomaly::CancelledDelivered {
            value: (*value).to_owned(),
            partition,
            offset,
            cancel_event,
            read_event: receipt.event,
            received_ms: receipt.received_ms,
        });
    }
}

/// Acknowledged messages that must have been received and were not; returns how many must
/// have been.
fn lost(delays: &Delays<'_>, first: &HashMap<&str, ((u32, u64), Receipt<'_>)>, found: &mut Found) -> u64 {
    let mut expected = 0;
    for value in &delays.order {
        let Some(sent) = delays.sends.get(value) else { continue };
        let Outcome::Acked { partition, seq, event } = sent.outcome else { continue };
        let cancels = delays.cancels.get(value).copied().unwrap_or_default();
        let excused = cancels.cancelled.is_some() || (cancels.unknown.is_some() && cancels.delivered.is_none());
        if excused {
            continue;
        }
        expected += 1;
        if !first.contains_key(value) {
            found.push(Anomaly::LostDelayed {
                value: (*value).to_owned(),
                partition,
                seq,
                deliver_at_ms: sent.deliver_at_ms,
                ack_event: event,
                already_delivered_event: cancels.delivered,
                read_until_ms: delays.read_until_ms,
            });
        }
    }
    expected
}

fn stats(delays: &Delays<'_>, first: &HashMap<&str, ((u32, u64), Receipt<'_>)>, expected: u64) -> DelayStats {
    let mut stats = DelayStats {
        max_clock_skew_ms: delays.max_clock_skew_ms,
        sent: delays.sends.len() as u64,
        cancels: delays.cancels_invoked,
        expected,
        reads: delays.reads,
        read_until_ms: delays.read_until_ms,
        ..DelayStats::default()
    };
    for sent in delays.sends.values() {
        match sent.outcome {
            Outcome::Acked { .. } => {
                stats.acked += 1;
                stats.latest_deliver_at_ms = stats.latest_deliver_at_ms.max(Some(sent.deliver_at_ms));
            }
            Outcome::Failed => stats.failed += 1,
            Outcome::Unknown | Outcome::Pending => stats.unknown += 1,
        }
    }
    for cancels in delays.cancels.values() {
        stats.cancelled += u64::from(cancels.cancelled.is_some());
        stats.already_delivered += u64::from(cancels.delivered.is_some());
        stats.cancels_unknown +=
            u64::from(cancels.unknown.is_some() && cancels.cancelled.is_none() && cancels.delivered.is_none());
    }
    let mut lateness: Vec<i64> = delays
        .order
        .iter()
        .filter_map(|value| {
            let (sent, (_, receipt)) = (delays.sends.get(value)?, first.get(value)?);
            Some(i64::try_from(i128::from(receipt.received_ms) - i128::from(sent.deliver_at_ms)).unwrap_or(i64::MAX))
        })
        .collect();
    stats.received = lateness.len() as u64;
    lateness.sort_unstable();
    stats.lateness = (!lateness.is_empty()).then(|| Lateness {
        min_ms: lateness[0],
        p50_ms: percentile(&lateness, 50),
        p99_ms: percentile(&lateness, 99),
        max_ms: lateness[lateness.len() - 1],
    });
    stats
}

/// The `p`th percentile of sorted, non-empty `values`, by nearest rank.
pub(super) fn percentile(values: &[i64], p: usize) -> i64 {
    let rank = (values.len() * p).div_ceil(100).max(1);
    values[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{History, only};
    use super::percentile;
    use crate::checker::check;
    use crate::history::{CancelResult, WorkloadKind};
    use crate::report::{Anomaly, AnomalyKind, Lateness};

    /// Wall-clock ms of the hand-made histories' first delivery time.
    const T: u64 = 1_700_000_000_000;

    /// Three producers' worth of delayed messages over two partitions: cancels that win, that
    /// lose to the release, that end unknown; unknown and failed sends never seen; re-polls and
    /// a second consumer reading the same places; the node logs agreeing.
    fn clean_history() -> History {
        let mut h = History::new();
        h.delay_setup(0, 30_000);
        h.delay_send_ok(0, "a", T, 0, 0).delay_send_ok(1, "b", T + 100, 1, 0).delay_send_ok(0, "c", T + 200, 0, 1);
        h.delay_send_ok(1, "d", T + 300, 1, 1).delay_send_ok(0, "e", T + 400, 0, 2);
        h.delay_send_info(1, "f", T + 500).delay_send_fail(0, "g", T + 600).delay_send_info(1, "h", T + 700);
        // "c" cancelled in time; "d" released first; "e"'s cancel timed out and did not take.
        h.cancel(2, "c", 0, 1, Some(CancelResult::Cancelled));
        h.cancel(2, "d", 1, 1, Some(CancelResult::AlreadyDelivered));
        h.cancel(2, "e", 0, 2, None);
        h.fault("kill", "start", &[2]).fault("kill", "heal", &[2]);
        h.delay_poll(3, T + 5, &[(0, 0, "a", Some(T))]);
        h.delay_poll(3, T + 350, &[(1, 0, "b", Some(T + 100)), (1, 1, "d", Some(T + 300))]);
        // A re-poll after a reconnect, and a second consumer: the same places again, later.
        h.delay_poll(3, T + 900, &[(0, 0, "a", Some(T)), (0, 1, "e", Some(T + 400))]);
        h.delay_poll(4, T + 2_000, &[(0, 0, "a", Some(T)), (0, 1, "e", Some(T + 400)), (1, 2, "h", Some(T + 700))]);
        h.delay_poll(4, T + 2_100, &[(1, 0, "b", Some(T + 100)), (1, 1, "d", Some(T + 300))]);
        h.delay_end(T + 40_000, 0);
        h.node_log(1, 0, &[(0, "a"), (1, "e")]).node_log(2, 0, &[(0, "a")]).node_log(3, 0, &[(0, "a"), (1, "e")]);
        h.node_log(1, 1, &[(0, "b"), (1, "d"), (2, "h")]);
        h
    }

    #[test]
    fn a_delay_run_with_cancels_unknowns_and_rereads_is_clean() {
        let report = check(&clean_history().events);
        assert_eq!(report.workload, WorkloadKind::Delay);
        only(&report, AnomalyKind::LostDelayed, 0);
        assert!(report.is_clean());
        // Only the delay workload's kinds are listed.
        assert!(report.anomalies.contains_key(&AnomalyKind::EarlyRelease));
        assert!(!report.anomalies.contains_key(&AnomalyKind::GroupLost));
        let d = report.delay.clone().unwrap();
        assert_eq!((d.sent, d.acked, d.failed, d.unknown), (8, 5, 1, 2));
        assert_eq!((d.cancels, d.cancelled, d.already_delivered, d.cancels_unknown), (3, 1, 1, 1));
        // a, b, d must arrive ("e" may, and did; "c" must not).
        assert_eq!((d.expected, d.received, d.reads), (3, 5, 10));
        // a 5, b 250, d 50, e 500, h 1300 ms late.
        assert_eq!(d.lateness, Some(Lateness { min_ms: 5, p50_ms: 250, p99_ms: 1_300, max_ms: 1_300 }));
        assert_eq!((d.read_until_ms, d.latest_deliver_at_ms), (Some(T + 40_000), Some(T + 400)));
        let windows = &report.availability.windows;
        assert_eq!((windows.len(), windows[0].name.as_str()), (1, "kill"));
        let summary = report.summary(Some(3));
        assert!(summary.starts_with("CLEAN  (seed 3"), "{summary}");
        assert!(summary.contains("delayed sends: 8 invoked, 5 acknowledged, 1 failed, 2 unknown"), "{summary}");
        assert!(summary.contains("cancels: 3 invoked, 1 cancelled, 1 already delivered, 1 unknown"), "{summary}");
        assert!(summary.contains("p99 1300ms, max 1300ms"), "{summary}");
        assert!(summary.contains("consumers stopped 39600 ms after the latest acknowledged deliver_at"), "{summary}");
        assert!(summary.contains("early-release") && !summary.contains("group-lost"), "{summary}");
    }

    #[test]
    fn a_message_at_two_offsets_was_released_twice() {
        let mut h = clean_history();
        // "b" again, at another offset of its partition (the same place twice is fine).
        h.delay_poll(3, T + 3_000, &[(1, 3, "b", Some(T + 100))]);
        let dup = only(&check(&h.events), AnomalyKind::Duplicate, 1);
        let Anomaly::Duplicate { value, places } = &dup[0] else { panic!("{dup:?}") };
        let at: Vec<(u32, u64)> = places.iter().map(|p| (p.partition, p.offset)).collect();
        assert_eq!((value.as_str(), at), ("b", vec![(1, 0), (1, 3)]));
    }

    #[test]
    fn a_message_received_before_its_time_was_released_early() {
        let mut h = History::new();
        h.delay_setup(0, 30_000).delay_send_ok(0, "a", T + 1_000, 0, 0).delay_send_ok(0, "b", T, 0, 1);
        // "a" first read 1 ms early by one consumer, later by another; "b" exactly on time.
        h.delay_poll(3, T, &[(0, 0, "a", Some(T + 1_000)), (0, 1, "b", Some(T))]);
        let first = h.last();
        h.delay_poll(4, T + 1_500, &[(0, 0, "a", Some(T + 1_000))]);
        h.delay_poll(3, T + 999, &[(0, 0, "a", Some(T + 1_000))]);
        let early = only(&check(&h.events), AnomalyKind::EarlyRelease, 1);
        assert_eq!(
            early[0],
            Anomaly::EarlyRelease {
                value: "a".into(),
                partition: 0,
                offset: 0,
                deliver_at_ms: T + 1_000,
                received_ms: T,
                max_clock_skew_ms: 0,
                event: first,
            }
        );
    }

    #[test]
    fn the_clock_faults_skew_excuses_an_early_release_within_it() {
        let history = |skew_ms: u64| {
            let mut h = History::new();
            h.delay_setup(skew_ms, 30_000).delay_send_ok(0, "a", T + 60_000, 0, 0);
            h.delay_poll(3, T, &[(0, 0, "a", Some(T + 60_000))]);
            h
        };
        assert!(check(&history(120_000).events).is_clean());
        assert!(check(&history(60_000).events).is_clean());
        let early = only(&check(&history(59_999).events), AnomalyKind::EarlyRelease, 1);
        assert!(matches!(early[0], Anomaly::EarlyRelease { max_clock_skew_ms: 59_999, .. }), "{early:?}");
        let summary = check(&history(120_000).events).summary(None);
        assert!(summary.contains("min -60000ms") && summary.contains("clock skew allowed 120000ms"), "{summary}");
    }

    #[test]
    fn an_acknowledged_message_never_received_is_lost_unless_cancelled_or_maybe_cancelled() {
        let mut h = History::new();
        h.delay_setup(0, 30_000);
        h.delay_send_ok(0, "kept", T, 0, 0).delay_send_ok(0, "cancelled", T, 0, 1);
        h.delay_send_ok(0, "maybe", T, 0, 2).delay_send_ok(0, "delivered", T, 0, 3);
        h.delay_send_ok(0, "maybe-then-delivered", T, 0, 4);
        let ack = h.last();
        h.cancel(2, "cancelled", 0, 1, Some(CancelResult::Cancelled)).cancel(2, "maybe", 0, 2, None);
        h.cancel(2, "delivered", 0, 3, Some(CancelResult::AlreadyDelivered));
        let delivered = h.last();
        h.cancel(2, "maybe-then-delivered", 0, 4, None);
        h.cancel(2, "maybe-then-delivered", 0, 4, Some(CancelResult::AlreadyDelivered));
        h.delay_end(T + 31_000, 3);
        let report = check(&h.events);
        let lost = only(&report, AnomalyKind::LostDelayed, 3);
        let values: Vec<&str> = lost
            .iter()
            .map(|a| match a {
                Anomaly::LostDelayed { value, .. } => value.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(values, ["kept", "delivered", "maybe-then-delivered"]);
        assert_eq!(
            lost[2],
            Anomaly::LostDelayed {
                value: "maybe-then-delivered".into(),
                partition: 0,
                seq: 4,
                deliver_at_ms: T,
                ack_event: ack,
                already_delivered_event: Some(ack + 10),
                read_until_ms: Some(T + 31_000),
            }
        );
        assert!(matches!(&lost[1], Anomaly::LostDelayed { already_delivered_event: Some(e), .. } if *e == delivered));
        assert!(lost[0].describe().contains("read until 31000 ms after it was due"), "{}", lost[0].describe());
        assert_eq!(report.delay.unwrap().expected, 3);
    }

    #[test]
    fn a_message_read_after_its_cancel_answered_cancelled_was_delivered_anyway() {
        let mut h = History::new();
        h.delay_setup(0, 30_000).delay_send_ok(0, "a", T, 0, 0).delay_send_ok(0, "b", T, 0, 1);
        h.cancel(2, "a", 0, 0, Some(CancelResult::Cancelled));
        let cancel = h.last();
        h.cancel(2, "b", 0, 1, Some(CancelResult::AlreadyDelivered));
        h.delay_poll(3, T + 10, &[(0, 0, "b", Some(T)), (0, 1, "a", Some(T))]);
        let read = h.last();
        let bad = only(&check(&h.events), AnomalyKind::CancelledDelivered, 1);
        assert_eq!(
            bad[0],
            Anomaly::CancelledDelivered {
                value: "a".into(),
                partition: 0,
                offset: 1,
                cancel_event: cancel,
                read_event: read,
                received_ms: T + 10,
            }
        );
    }

    #[test]
    fn a_value_never_sent_or_with_another_delivery_time_is_garbage() {
        let mut h = History::new();
        h.delay_setup(0, 30_000).delay_send_ok(0, "a", T, 0, 0).delay_send_ok(0, "b", T, 0, 1);
        // A runner's probe, sent plain: no garbage.
        h.send_ok(u32::MAX - 1, "probe-0", 0, 2);
        h.delay_poll(
            3,
            T + 10,
            &[(0, 0, "a", Some(T + 1)), (0, 1, "b", None), (0, 2, "probe-0", None), (0, 3, "zzz", Some(T))],
        );
        h.delay_poll(3, T + 20, &[(0, 3, "zzz", Some(T))]);
        let garbage = only(&check(&h.events), AnomalyKind::GarbageRead, 3);
        assert!(
            matches!(&garbage[0], Anomaly::DeliverAtMismatch { value, sent_ms: T, read_ms: Some(r), .. } if value == "a" && *r == T + 1),
            "{garbage:?}"
        );
        assert!(matches!(&garbage[1], Anomaly::DeliverAtMismatch { read_ms: None, offset: 1, .. }), "{garbage:?}");
        assert!(matches!(&garbage[2], Anomaly::UnsentRead { value, offset: 3, .. } if value == "zzz"), "{garbage:?}");
    }

    #[test]
    fn a_failed_delayed_send_that_is_read_is_an_aborted_read() {
        let mut h = History::new();
        h.delay_setup(0, 30_000).delay_send_fail(0, "a", T);
        let fail = h.last();
        h.delay_poll(3, T + 10, &[(0, 0, "a", Some(T))]);
        let aborted = only(&check(&h.events), AnomalyKind::AbortedRead, 1);
        assert!(matches!(aborted[0], Anomaly::AbortedRead { fail_event, offset: 0, .. } if fail_event == fail));
    }

    #[test]
    fn two_values_at_one_place_and_diverging_replicas_are_found_in_delay_runs_too() {
        let mut h = History::new();
        h.delay_setup(0, 30_000).delay_send_ok(0, "a", T, 0, 0).delay_send_ok(0, "b", T, 0, 1);
        h.delay_poll(3, T + 10, &[(0, 0, "a", Some(T)), (0, 1, "b", Some(T))]);
        h.delay_poll(4, T + 10, &[(0, 0, "b", Some(T))]);
        let report = check(&h.events);
        assert_eq!(report.count(AnomalyKind::InconsistentOffsets), 1);
        let mut h = History::new();
        h.delay_setup(0, 30_000).delay_send_ok(0, "a", T, 0, 0).delay_send_ok(0, "b", T, 0, 1);
        h.delay_poll(3, T + 10, &[(0, 0, "a", Some(T)), (0, 1, "b", Some(T))]);
        h.node_log(1, 0, &[(0, "a"), (1, "b")]).node_log(2, 0, &[(0, "b"), (1, "a")]);
        only(&check(&h.events), AnomalyKind::Divergence, 2);
    }

    #[test]
    fn a_cancel_naming_another_id_and_an_ok_without_an_id_are_malformed() {
        let mut h = History::new();
        h.delay_setup(0, 30_000).delay_send_ok(0, "a", T, 0, 0).delay_send_ok(0, "b", T, 0, 1);
        h.cancel(2, "a", 0, 1, Some(CancelResult::Cancelled));
        h.delay_send_invoke(0, "c", T).delay_send_ack_without_id(0, "c", T);
        h.delay_poll(3, T + 10, &[(0, 0, "a", Some(T)), (0, 1, "b", Some(T))]);
        // Two for the cancel (invoke and ok), one for the ack.
        only(&check(&h.events), AnomalyKind::Malformed, 3);
    }

    #[test]
    fn percentiles_are_by_nearest_rank() {
        let values: Vec<i64> = (1..=200).collect();
        assert_eq!((percentile(&values, 50), percentile(&values, 99), percentile(&values, 100)), (100, 198, 200));
        assert_eq!((percentile(&[7], 50), percentile(&[7], 99)), (7, 7));
    }
}
