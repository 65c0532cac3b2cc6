//! Recurring message schedules: when a schedule fires, as pure arithmetic on milliseconds since
//! the Unix epoch. The caller owns the clock, so that every Raft replica computes the same fire
//! times from the same log.

use chrono::DateTime;
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// The shortest interval an [`Cadence::Every`] accepts.
pub const MIN_INTERVAL_MS: u64 = 100;

/// The time zone a cron expression is read in when none is given.
pub const DEFAULT_TZ: &str = "UTC";

/// When a recurring schedule fires. Build one with [`Cadence::cron`] or [`Cadence::every`],
/// which validate; a hand-built cadence that would not pass them never fires.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Cadence {
    /// A cron expression with seconds, `sec min hour dom mon dow [year]`, read in a time zone.
    Cron {
        /// The expression, its fields separated by single spaces.
        expr: String,
        /// An IANA time zone name, such as `UTC` or `Europe/Berlin`.
        tz: String,
    },
    /// A fixed interval: fires at `anchor_ms + k * interval_ms` for every k >= 0.
    Every {
        /// Milliseconds between fires, at least [`MIN_INTERVAL_MS`].
        interval_ms: u64,
        /// The first fire, in ms since the Unix epoch.
        anchor_ms: u64,
    },
}

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression does not parse.
    #[error(
        "invalid cron expression {expr:?}: {reason} \
         (expected `sec min hour dom mon dow`, optionally followed by a year)"
    )]
    InvalidCron {
        /// The expression as given.
        expr: String,
        /// What the parser objected to.
        reason: String,
    },
    /// The cron expression parses but matches no instant from 1970 on.
    #[error("cron expression {expr:?} never fires")]
    NeverFires {
        /// The expression as given.
        expr: String,
    },
    /// The time zone is not in the IANA database this build carries.
    #[error("unknown time zone {tz:?}: expected an IANA name such as \"UTC\" or \"Europe/Berlin\"")]
    UnknownTimeZone {
        /// The name as given.
        tz: String,
    },
    /// The interval is shorter than [`MIN_INTERVAL_MS`].
    #[error("interval of {interval_ms} ms is below the minimum of {min_ms} ms")]
    IntervalTooShort {
        /// The interval as given.
        interval_ms: u64,
        /// [`MIN_INTERVAL_MS`].
        min_ms: u64,
    },
    /// The text is not a cadence as [`Cadence::encode`] writes it.
    #[error("cannot decode schedule {input:?}: {reason}")]
    BadEncoding {
        /// The text as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Cadence {
    /// A cron cadence read in time zone `tz` (default [`DEFAULT_TZ`]). The seconds field is
    /// required, so that what a field means never depends on how many fields there are.
    pub fn cron(expr: &str, tz: Option<&str>) -> Result<Cadence, ScheduleError> {
        // Normalised so that the encoding stays on one line and round-trips byte for byte.
        let expr = expr.split_whitespace().collect::<Vec<_>>().join(" ");
        let tz = tz.unwrap_or(DEFAULT_TZ);
        let zone = parse_tz(tz)?;
        let cron = parse_cron(&expr)?;
        // A schedule that can never fire is almost certainly a typo (`0 0 0 31 2 *`); better
        // refused now than silently idle. Fires before 1970 are out of reach of the u64 API anyway.
        if next_cron_fire(&cron, zone, 0).is_none() {
            return Err(ScheduleError::NeverFires { expr });
        }
        Ok(Cadence::Cron { expr, tz: tz.to_owned() })
    }

    /// A fixed-interval cadence whose first fire is `anchor_ms`.
    pub fn every(interval_ms: u64, anchor_ms: u64) -> Result<Cadence, ScheduleError> {
        if interval_ms < MIN_INTERVAL_MS {
            return Err(ScheduleError::IntervalTooShort { interval_ms, min_ms: MIN_INTERVAL_MS });
        }
        Ok(Cadence::Every { interval_ms, anchor_ms })
    }

    /// The first fire time strictly after `after_ms` (ms since the Unix epoch); `None` if the
    /// cadence never fires again (a cron year range that has passed, or past the year 5000).
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        match self {
            Cadence::Every { interval_ms, anchor_ms } => {
                if *interval_ms == 0 {
                    return None;
                }
                if after_ms < *anchor_ms {
                    return Some(*anchor_ms);
                }
                let k = (after_ms - anchor_ms) / interval_ms + 1;
                k.checked_mul(*interval_ms)?.checked_add(*anchor_ms)
            }
            Cadence::Cron { expr, tz } => {
                let cron = parse_cron(expr).ok()?;
                let zone = parse_tz(tz).ok()?;
                next_cron_fire(&cron, zone, after_ms)
            }
        }
    }

    /// A stable one-line text form: `cron|TZ|EXPR` or `every|INTERVAL_MS|ANCHOR_MS`. The
    /// expression comes last because it holds spaces; it can never hold `|`.
    pub fn encode(&self) -> String {
        match self {
            Cadence::Cron { expr, tz } => format!("cron|{tz}|{expr}"),
            Cadence::Every { interval_ms, anchor_ms } => format!("every|{interval_ms}|{anchor_ms}"),
        }
    }

    /// Reads what [`Cadence::encode`] wrote and a replica stored, without the constructors'
    /// search for a first fire (which a stored cadence passed when it was created): a Raft
    /// replica applying a fire must not spend milliseconds re-validating.
    pub fn decode_stored(s: &str) -> Result<Cadence, ScheduleError> {
        match s.strip_prefix("cron|").and_then(|rest| rest.split_once('|')) {
            Some((tz, expr)) => Ok(Cadence::Cron { expr: expr.to_owned(), tz: tz.to_owned() }),
            None => Cadence::decode(s),
        }
    }

    /// Reads what [`Cadence::encode`] wrote, validating it as the constructors do.
    pub fn decode(s: &str) -> Result<Cadence, ScheduleError> {
        let bad = |reason: &str| ScheduleError::BadEncoding { input: s.to_owned(), reason: reason.to_owned() };
        let (kind, rest) = s.split_once('|').ok_or_else(|| bad("expected `cron|TZ|EXPR` or `every|MS|ANCHOR`"))?;
        match kind {
            "cron" => {
                let (tz, expr) = rest.split_once('|').ok_or_else(|| bad("expected `cron|TZ|EXPR`"))?;
                Cadence::cron(expr, Some(tz))
            }
            "every" => {
                let (interval, anchor) = rest.split_once('|').ok_or_else(|| bad("expected `every|MS|ANCHOR`"))?;
                let number = |t: &str| {
                    // u64::from_str takes a leading `+`, which encode never writes.
                    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    t.parse::<u64>().ok()
                };
                let interval_ms = number(interval).ok_or_else(|| bad("the interval is not a whole number of ms"))?;
                let anchor_ms = number(anchor).ok_or_else(|| bad("the anchor is not a whole number of ms"))?;
                Cadence::every(interval_ms, anchor_ms)
            }
            _ => Err(bad("the kind must be `cron` or `every`")),
        }
    }
}

/// The fire time to schedule after handling the fire due at `due_ms` at `now_ms`. Fires missed
/// in between (downtime, a slow leader) collapse into the one just handled, so a schedule comes
/// back with one fire rather than a storm of catch-up fires. Taking the later of the two also
/// covers a `now_ms` behind `due_ms` (a new leader's clock), which must not fire `due_ms` again.
pub fn next_fire(cadence: &Cadence, due_ms: u64, now_ms: u64) -> Option<u64> {
    cadence.next_after(due_ms.max(now_ms))
}

fn parser() -> CronParser {
    CronParser::builder().seconds(Seconds::Required).year(Year::Optional).build()
}

fn parse_cron(expr: &str) -> Result<Cron, ScheduleError> {
    parser().parse(expr).map_err(|e| ScheduleError::InvalidCron { expr: expr.to_owned(), reason: e.to_string() })
}

fn parse_tz(tz: &str) -> Result<Tz, ScheduleError> {
    tz.parse::<Tz>().map_err(|_| ScheduleError::UnknownTimeZone { tz: tz.to_owned() })
}

fn next_cron_fire(cron: &Cron, zone: Tz, after_ms: u64) -> Option<u64> {
    // Cron fires on whole seconds: searching exclusively from the floor of `after_ms` skips a
    // fire at that second, which is at or before `after_ms`, and finds the next one.
    let start = DateTime::from_timestamp(i64::try_from(after_ms / 1000).ok()?, 0)?.with_timezone(&zone);
    let next = cron.find_next_occurrence(&start, false).ok()?;
    let next_ms = u64::try_from(next.timestamp()).ok()?.checked_mul(1000)?;
    // The contract callers loop on: a fire that did not advance would spin a scheduler.
    (next_ms > after_ms).then_some(next_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOUR: u64 = 3_600_000;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> u64 {
        let t = chrono::NaiveDate::from_ymd_opt(y, mo, d).unwrap().and_hms_opt(h, mi, s).unwrap();
        u64::try_from(t.and_utc().timestamp_millis()).unwrap()
    }

    /// Every fire in `[from, to)`.
    fn fires(c: &Cadence, from: u64, to: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut t = from - 1;
        while let Some(next) = c.next_after(t).filter(|&n| n < to) {
            out.push(next);
            t = next;
        }
        out
    }

    fn berlin(expr: &str) -> Cadence {
        Cadence::cron(expr, Some("Europe/Berlin")).unwrap()
    }

    #[test]
    fn every_fires_at_anchor_plus_multiples_strictly_after() {
        let a = 1_700_000_000_000;
        let c = Cadence::every(500, a).unwrap();
        assert_eq!(c.next_after(0), Some(a));
        assert_eq!(c.next_after(a - 1), Some(a));
        assert_eq!(c.next_after(a), Some(a + 500));
        assert_eq!(c.next_after(a + 499), Some(a + 500));
        assert_eq!(c.next_after(a + 500), Some(a + 1000));
        assert_eq!(c.next_after(a + 1234), Some(a + 1500));
        let far = Cadence::every(u64::MAX / 2, u64::MAX / 2).unwrap();
        assert_eq!(far.next_after(u64::MAX - 1), None);
    }

    #[test]
    fn every_refuses_intervals_below_the_minimum() {
        let err = Cadence::every(99, 0).unwrap_err();
        assert_eq!(err, ScheduleError::IntervalTooShort { interval_ms: 99, min_ms: 100 });
        assert_eq!(err.to_string(), "interval of 99 ms is below the minimum of 100 ms");
        assert!(Cadence::every(0, 0).is_err());
        assert!(Cadence::every(100, 0).is_ok());
        assert_eq!(Cadence::Every { interval_ms: 0, anchor_ms: 5 }.next_after(10), None);
    }

    #[test]
    fn cron_every_five_minutes_in_utc() {
        let c = Cadence::cron("0 */5 * * * *", None).unwrap();
        assert_eq!(c, Cadence::Cron { expr: "0 */5 * * * *".into(), tz: "UTC".into() });
        assert_eq!(at(2026, 1, 1, 0, 5, 0), 1_767_225_900_000);
        assert_eq!(c.next_after(at(2026, 1, 1, 0, 0, 0)), Some(at(2026, 1, 1, 0, 5, 0)));
        assert_eq!(c.next_after(at(2026, 1, 1, 0, 5, 0) - 1), Some(at(2026, 1, 1, 0, 5, 0)));
        assert_eq!(c.next_after(at(2026, 1, 1, 0, 4, 59) + 999), Some(at(2026, 1, 1, 0, 5, 0)));
        assert_eq!(c.next_after(at(2026, 1, 1, 0, 5, 0)), Some(at(2026, 1, 1, 0, 10, 0)));
        assert_eq!(c.next_after(at(2026, 1, 1, 0, 5, 0) + 1), Some(at(2026, 1, 1, 0, 10, 0)));
        assert_eq!(c.next_after(at(2026, 12, 31, 23, 58, 0)), Some(at(2027, 1, 1, 0, 0, 0)));
    }

    #[test]
    fn cron_seconds_and_years() {
        let c = Cadence::cron("15,45 * * * * *", None).unwrap();
        assert_eq!(c.next_after(at(2026, 5, 1, 12, 0, 0)), Some(at(2026, 5, 1, 12, 0, 15)));
        assert_eq!(c.next_after(at(2026, 5, 1, 12, 0, 15)), Some(at(2026, 5, 1, 12, 0, 45)));
        assert_eq!(c.next_after(at(2026, 5, 1, 12, 0, 15) + 500), Some(at(2026, 5, 1, 12, 0, 45)));
        assert_eq!(c.next_after(at(2026, 5, 1, 12, 0, 45)), Some(at(2026, 5, 1, 12, 1, 15)));
        let leap = Cadence::cron("0 0 0 29 2 *", None).unwrap();
        assert_eq!(leap.next_after(at(2025, 3, 1, 0, 0, 0)), Some(at(2028, 2, 29, 0, 0, 0)));
        let once = Cadence::cron("0 0 9 1 1 * 2027", Some("Europe/Berlin")).unwrap();
        assert_eq!(once.next_after(at(2026, 6, 1, 0, 0, 0)), Some(at(2027, 1, 1, 8, 0, 0)));
        assert_eq!(once.next_after(at(2027, 1, 1, 8, 0, 0)), None);
    }

    #[test]
    fn bad_cron_input_is_refused_naming_it() {
        let err = Cadence::cron("0 */5 * * *", None).unwrap_err();
        assert!(matches!(&err, ScheduleError::InvalidCron { expr, .. } if expr == "0 */5 * * *"));
        let msg = err.to_string();
        assert!(msg.contains("\"0 */5 * * *\"") && msg.contains("6 or 7 fields"), "{msg}");
        let err = Cadence::cron("61 * * * * *", None).unwrap_err();
        assert!(matches!(err, ScheduleError::InvalidCron { .. }), "{err}");
        assert!(matches!(Cadence::cron("", None), Err(ScheduleError::InvalidCron { .. })));
        let err = Cadence::cron("0 0 0 31 2 *", None).unwrap_err();
        assert_eq!(err.to_string(), "cron expression \"0 0 0 31 2 *\" never fires");
        let err = Cadence::cron("0 * * * * *", Some("Mars/Olympus_Mons")).unwrap_err();
        assert_eq!(err, ScheduleError::UnknownTimeZone { tz: "Mars/Olympus_Mons".into() });
        assert!(err.to_string().contains("\"Mars/Olympus_Mons\""), "{err}");
    }

    #[test]
    fn daily_fire_in_the_spring_forward_gap_moves_to_the_end_of_the_gap() {
        // 2026-03-29 in Berlin: 02:00 CET jumps to 03:00 CEST (01:00 UTC), so 02:30 never exists.
        // croner fires a fixed time that falls in the gap at the first instant after it.
        let c = berlin("0 30 2 * * *");
        let got = fires(&c, at(2026, 3, 27, 0, 0, 0), at(2026, 3, 31, 0, 0, 0));
        let want = [
            at(2026, 3, 27, 1, 30, 0), // 02:30 CET
            at(2026, 3, 28, 1, 30, 0), // 02:30 CET
            at(2026, 3, 29, 1, 0, 0),  // 03:00 CEST, the gap's end
            at(2026, 3, 30, 0, 30, 0), // 02:30 CEST: back on cadence
        ];
        assert_eq!(got, want);
        assert_eq!(want[2], 1_774_746_000_000);
    }

    #[test]
    fn daily_fire_in_the_fall_back_overlap_fires_once() {
        // 2026-10-25 in Berlin: 03:00 CEST falls back to 02:00 CET (01:00 UTC), so 02:30 happens
        // at 00:30 and at 01:30 UTC. croner fires a fixed time once, at the first of the two.
        let c = berlin("0 30 2 * * *");
        let got = fires(&c, at(2026, 10, 24, 0, 0, 0), at(2026, 10, 27, 0, 0, 0));
        let want = [
            at(2026, 10, 24, 0, 30, 0), // 02:30 CEST
            at(2026, 10, 25, 0, 30, 0), // the first 02:30, CEST
            at(2026, 10, 26, 1, 30, 0), // 02:30 CET
        ];
        assert_eq!(got, want);
        assert_eq!(want[1], 1_792_888_200_000);
        // Between the two 02:30s (02:00 CET, after the fall-back) the day's fire has happened.
        assert_eq!(c.next_after(at(2026, 10, 25, 1, 0, 0)), Some(at(2026, 10, 26, 1, 30, 0)));
    }

    #[test]
    fn hourly_fires_every_real_hour_across_both_transitions() {
        let c = berlin("0 0 * * * *");
        for day in [(3, 29), (10, 25)] {
            let from = at(2026, day.0, day.1, 0, 0, 0);
            let got = fires(&c, from, from + 24 * HOUR);
            let want: Vec<u64> = (0..24).map(|h| from + h * HOUR).collect();
            assert_eq!(got, want, "UTC day 2026-{:02}-{:02}", day.0, day.1);
        }
        // The local days have 23 and 25 hours, and so as many fires.
        assert_eq!(fires(&c, at(2026, 3, 28, 23, 0, 0), at(2026, 3, 29, 22, 0, 0)).len(), 23);
        assert_eq!(fires(&c, at(2026, 10, 24, 22, 0, 0), at(2026, 10, 25, 23, 0, 0)).len(), 25);
    }

    #[test]
    fn next_fire_collapses_missed_fires_into_one() {
        let t = 1_700_000_000_000;
        let c = Cadence::every(1000, t).unwrap();
        assert_eq!(next_fire(&c, t, t + 10_500), Some(t + 11_000));
        assert_eq!(next_fire(&c, t, t), Some(t + 1000));
        // A handler whose clock is behind the due time must not get the same fire again.
        assert_eq!(next_fire(&c, t + 5000, t + 1000), Some(t + 6000));
        let hourly = Cadence::cron("0 0 * * * *", None).unwrap();
        let due = at(2026, 2, 1, 10, 0, 0);
        assert_eq!(next_fire(&hourly, due, at(2026, 2, 1, 13, 20, 0)), Some(at(2026, 2, 1, 14, 0, 0)));
    }

    #[test]
    fn encode_decode_round_trips() {
        let every = Cadence::every(500, 1_700_000_000_000).unwrap();
        assert_eq!(every.encode(), "every|500|1700000000000");
        let cron = Cadence::cron(" 0  */5 * * * *\n", None).unwrap();
        assert_eq!(cron.encode(), "cron|UTC|0 */5 * * * *");
        let cadences = [
            every,
            cron,
            berlin("0 30 2 * * MON-FRI"),
            berlin("@hourly"),
            Cadence::cron("0 0 9 1 1 * 2027", Some("America/New_York")).unwrap(),
        ];
        for c in cadences {
            assert_eq!(Cadence::decode(&c.encode()), Ok(c.clone()), "{}", c.encode());
        }
        for bad in ["", "cron|UTC", "every|500", "every|abc|1", "every|+500|1", "every|500|", "daily|x|y"] {
            let err = Cadence::decode(bad).unwrap_err();
            assert!(matches!(&err, ScheduleError::BadEncoding { input, .. } if input == bad), "{bad}: {err}");
        }
        assert!(matches!(Cadence::decode("every|50|0"), Err(ScheduleError::IntervalTooShort { .. })));
        assert!(matches!(Cadence::decode("cron|Nowhere|0 * * * * *"), Err(ScheduleError::UnknownTimeZone { .. })));
        assert!(matches!(Cadence::decode("cron|UTC|0 * * * *"), Err(ScheduleError::InvalidCron { .. })));
    }

    proptest! {
        #[test]
        fn every_next_is_after_and_within_one_interval(
            interval in MIN_INTERVAL_MS..=10_000_000_000u64,
            anchor in 0..=2_000_000_000_000u64,
            t in 0..=4_000_000_000_000u64,
        ) {
            let c = Cadence::every(interval, anchor).unwrap();
            let next = c.next_after(t).unwrap();
            prop_assert!(next > t);
            if t >= anchor {
                prop_assert!(next - t <= interval);
                prop_assert_eq!((next - anchor) % interval, 0);
            } else {
                prop_assert_eq!(next, anchor);
            }
        }

        #[test]
        fn berlin_daily_is_after_within_a_day_and_stable(t in at(2026, 1, 1, 0, 0, 0)..at(2027, 1, 1, 0, 0, 0)) {
            let c = berlin("0 30 2 * * *");
            let next = c.next_after(t).unwrap();
            // 25 h: the longest gap between two fires, over the fall-back day.
            prop_assert!(next > t && next - t <= 25 * HOUR, "{} -> {}", t, next);
            prop_assert_eq!(next % 1000, 0);
            // Asking again from any earlier point that still follows the previous fire finds it.
            prop_assert_eq!(c.next_after(next - 1), Some(next));
        }
    }
}
