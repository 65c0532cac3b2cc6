//! What `sluice txn list|describe` print: a table and a detailed view for people, one JSON
//! shape for scripts (stable: the same object in `list` and `describe`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sluice_client::TransactionInfo;

/// The ID column is at least this wide, and grows to the longest id listed.
const MIN_ID_WIDTH: usize = 24;

/// A duration for people: `850ms`, `12.3s`, `60s`, `4m05s`, `2h03m`.
pub fn human_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..120_000 if ms.is_multiple_of(1000) => format!("{}s", ms / 1000),
        1_000..120_000 => format!("{:.1}s", ms as f64 / 1000.0),
        120_000..7_200_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// How long an open transaction has been open at `now_ms`; `None` for a closed one (its
/// `started_ms` is that of a transaction long ended).
pub fn age_ms(t: &TransactionInfo, now_ms: u64) -> Option<u64> {
    (t.is_open() && t.started_ms > 0).then(|| now_ms.saturating_sub(t.started_ms))
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}

fn yes_no(flag: bool) -> &'static str {
    if flag { "yes" } else { "no" }
}

/// `txn list` for people: one row per transactional id.
pub fn list_plain(transactions: &[TransactionInfo], now_ms: u64) -> String {
    if transactions.is_empty() {
        return "no transactions\n".to_owned();
    }
    let width = transactions.iter().map(|t| t.transactional_id.len()).max().unwrap_or(0).max(MIN_ID_WIDTH);
    let mut out = format!(
        "{:<width$} {:<15} {:>16} {:>10} {:>8} {:>8} {:<10} {:<9} {:>11}\n",
        "ID", "STATE", "PRODUCER/EPOCH", "PARTITIONS", "AGE", "TIMEOUT", "ENDED-BY", "UNDECIDED", "COORDINATOR"
    );
    for t in transactions {
        let _ = writeln!(
            out,
            "{:<width$} {:<15} {:>16} {:>10} {:>8} {:>8} {:<10} {:<9} {:>11}",
            t.transactional_id,
            t.state,
            format!("{}/{}", t.producer_id, t.epoch),
            t.partitions.len(),
            age_ms(t, now_ms).map_or_else(|| "-".to_owned(), human_ms),
            human_ms(u64::from(t.timeout_ms)),
            or_dash(&t.ended_by),
            yes_no(t.undecided),
            t.coordinator,
        );
    }
    out
}

/// The partitions by topic: `orders: 0,1,5`.
fn partitions_by_topic(t: &TransactionInfo) -> BTreeMap<&str, Vec<u32>> {
    let mut by_topic: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (topic, partition) in &t.partitions {
        by_topic.entry(topic).or_default().push(*partition);
    }
    by_topic.values_mut().for_each(|p| p.sort_unstable());
    by_topic
}

/// An RFC 3339 time with milliseconds, or the raw number if it is out of range.
fn time(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// `txn describe` for people.
pub fn describe_plain(t: &TransactionInfo, now_ms: u64) -> String {
    let mut out = String::new();
    let open = if t.is_open() { " (open)" } else { "" };
    let _ = writeln!(out, "transactional id  {}", t.transactional_id);
    let _ = writeln!(out, "state             {}{open}", t.state);
    let _ = writeln!(out, "producer          id {}, epoch {}", t.producer_id, t.epoch);
    let _ = writeln!(out, "coordinator       broker {}", t.coordinator);
    if let Some(age) = age_ms(t, now_ms) {
        let _ = writeln!(out, "started           {} ({} ago)", time(t.started_ms), human_ms(age));
    }
    let _ = writeln!(out, "timeout           {}", human_ms(u64::from(t.timeout_ms)));
    let _ = writeln!(out, "last ended by     {}", or_dash(&t.ended_by));
    if let Some(group) = &t.check_group {
        let _ = writeln!(out, "check group       {group} ({} check-backs sent)", t.check_attempts);
    }
    let _ = writeln!(out, "undecided         {}", yes_no(t.undecided));
    let _ = writeln!(out, "partitions        {}", t.partitions.len());
    for (topic, partitions) in partitions_by_topic(t) {
        let list = partitions.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let _ = writeln!(out, "  {topic}: {list}");
    }
    out
}

/// One transactional id in `txn list --output json` (an array of these) and `txn describe
/// --output json`. `age_ms` is null unless a transaction is open.
pub fn transaction_json(t: &TransactionInfo, now_ms: u64) -> serde_json::Value {
    let partitions: Vec<serde_json::Value> =
        t.partitions.iter().map(|(topic, p)| serde_json::json!({"topic": topic, "partition": p})).collect();
    serde_json::json!({
        "transactional_id": t.transactional_id,
        "state": t.state,
        "open": t.is_open(),
        "producer_id": t.producer_id,
        "epoch": t.epoch,
        "partitions": partitions,
        "started_ms": t.started_ms,
        "age_ms": age_ms(t, now_ms),
        "timeout_ms": t.timeout_ms,
        "ended_by": Some(t.ended_by.as_str()).filter(|e| !e.is_empty()),
        "undecided": t.undecided,
        "check_group": t.check_group,
        "check_attempts": t.check_attempts,
        "coordinator": t.coordinator,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_800_000_100_000;

    fn ongoing() -> TransactionInfo {
        TransactionInfo {
            transactional_id: "orders-writer".into(),
            producer_id: 4001,
            epoch: 7,
            state: "ONGOING".into(),
            partitions: vec![("orders".into(), 3), ("audit".into(), 0), ("orders".into(), 1)],
            started_ms: NOW - 12_300,
            timeout_ms: 60_000,
            check_group: None,
            check_attempts: 0,
            undecided: false,
            ended_by: "CLIENT".into(),
            coordinator: 2,
        }
    }

    fn completed() -> TransactionInfo {
        TransactionInfo {
            transactional_id: "billing".into(),
            state: "COMPLETE_ABORT".into(),
            partitions: vec![],
            started_ms: NOW - 3_600_000,
            ended_by: "TIMEOUT".into(),
            ..ongoing()
        }
    }

    #[test]
    fn durations_read_naturally() {
        let cases = [
            (0, "0ms"),
            (850, "850ms"),
            (1_000, "1s"),
            (12_300, "12.3s"),
            (60_000, "60s"),
            (119_999, "120.0s"),
            (120_000, "2m00s"),
            (245_000, "4m05s"),
            (7_380_000, "2h03m"),
        ];
        for (ms, text) in cases {
            assert_eq!(human_ms(ms), text, "{ms} ms");
        }
    }

    #[test]
    fn only_open_transactions_have_an_age() {
        assert_eq!(age_ms(&ongoing(), NOW), Some(12_300));
        assert_eq!(age_ms(&completed(), NOW), None);
        let decided = TransactionInfo { state: "PREPARE_COMMIT".into(), ..ongoing() };
        assert_eq!(age_ms(&decided, NOW), Some(12_300), "decided but not complete is still open");
        let ahead = TransactionInfo { started_ms: NOW + 5, ..ongoing() };
        assert_eq!(age_ms(&ahead, NOW), Some(0), "a coordinator clock ahead of ours is no negative age");
    }

    #[test]
    fn the_list_is_a_table_with_one_row_per_id() {
        let table = list_plain(&[completed(), ongoing()], NOW);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(
            header,
            ["ID", "STATE", "PRODUCER/EPOCH", "PARTITIONS", "AGE", "TIMEOUT", "ENDED-BY", "UNDECIDED", "COORDINATOR"]
        );
        let billing: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(billing, ["billing", "COMPLETE_ABORT", "4001/7", "0", "-", "60s", "TIMEOUT", "no", "2"]);
        let orders: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(orders, ["orders-writer", "ONGOING", "4001/7", "3", "12.3s", "60s", "CLIENT", "no", "2"]);
        let columns = |line: &str| line.find("STATE").or_else(|| line.find("ONGOING"));
        assert_eq!(columns(lines[0]), columns(lines[2]), "columns line up:\n{table}");
        assert_eq!(list_plain(&[], NOW), "no transactions\n");
    }

    #[test]
    fn a_long_id_widens_its_column() {
        let long = TransactionInfo { transactional_id: "x".repeat(40), ..ongoing() };
        let table = list_plain(&[long, completed()], NOW);
        let starts: Vec<usize> = table.lines().map(|l| l.find(['S', 'C', 'O']).unwrap()).collect();
        assert!(starts.iter().all(|&s| s == 41), "{table}");
    }

    #[test]
    fn an_undecided_half_transaction_shows_its_check_group() {
        let half = TransactionInfo {
            check_group: Some("payments".into()),
            check_attempts: 5,
            undecided: true,
            ended_by: String::new(),
            ..ongoing()
        };
        let row = list_plain(std::slice::from_ref(&half), NOW);
        assert!(
            row.lines().nth(1).unwrap().split_whitespace().eq([
                "orders-writer",
                "ONGOING",
                "4001/7",
                "3",
                "12.3s",
                "60s",
                "-",
                "yes",
                "2"
            ]
            .into_iter())
        );
        let view = describe_plain(&half, NOW);
        assert!(view.contains("check group       payments (5 check-backs sent)\n"), "{view}");
        assert!(view.contains("undecided         yes\n"), "{view}");
        assert!(view.contains("last ended by     -\n"), "{view}");
    }

    #[test]
    fn describe_lists_partitions_by_topic() {
        let view = describe_plain(&ongoing(), NOW);
        assert!(view.starts_with("transactional id  orders-writer\nstate             ONGOING (open)\n"), "{view}");
        assert!(view.contains("producer          id 4001, epoch 7\n"), "{view}");
        assert!(view.contains("started           2027-01-15T08:01:27.700Z (12.3s ago)\n"), "{view}");
        assert!(view.ends_with("partitions        3\n  audit: 0\n  orders: 1,3\n"), "{view}");
        assert!(!describe_plain(&completed(), NOW).contains("started"), "no start time for a closed one");
        assert!(!view.contains("check group"), "not a half transaction");
    }

    #[test]
    fn the_json_shape_is_stable() {
        assert_eq!(
            transaction_json(&ongoing(), NOW),
            json!({
                "transactional_id": "orders-writer", "state": "ONGOING", "open": true,
                "producer_id": 4001, "epoch": 7,
                "partitions": [
                    {"topic": "orders", "partition": 3}, {"topic": "audit", "partition": 0},
                    {"topic": "orders", "partition": 1}
                ],
                "started_ms": NOW - 12_300, "age_ms": 12_300, "timeout_ms": 60_000,
                "ended_by": "CLIENT", "undecided": false, "check_group": null, "check_attempts": 0,
                "coordinator": 2
            })
        );
        let closed = transaction_json(&completed(), NOW);
        assert_eq!((closed["open"].as_bool(), closed["age_ms"].is_null()), (Some(false), true));
        let never_ended = transaction_json(&TransactionInfo { ended_by: String::new(), ..ongoing() }, NOW);
        assert!(never_ended["ended_by"].is_null());
    }
}
