//! `group list|describe|reset`, and what they print: a JSON shape per command (`--output
//! json`, stable for scripts) and plain tables for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, Result};
use serde::Serialize;
use sluice_client::{Client, GroupDescription, GroupListing, MessageFilter, TopicPartition};

use crate::args::{GroupCommand, Output};
use crate::{print, print_json};

pub(crate) async fn run(client: &Client, command: GroupCommand) -> Result<()> {
    let admin = client.admin();
    match command {
        GroupCommand::List(o) => {
            let groups = admin.list_groups().await.context("cannot list the consumer groups")?;
            match o.output {
                Output::Json => print_json(&list_json(&groups))?,
                Output::Plain => print(&list_plain(&groups))?,
            }
        }
        GroupCommand::Describe { group, output: o } => {
            let description =
                admin.describe_group(&group).await.with_context(|| format!("cannot describe group {group}"))?;
            // What waits for a retry is the coordinator's to say; a broker without it says nothing.
            let retries = admin.describe_retries(&group).await.ok();
            match o.output {
                Output::Json => {
                    let mut json = describe_json(&description);
                    if let Some(r) = &retries {
                        json["retries"] = crate::group_retry::retries_json(r);
                    }
                    print_json(&json)?
                }
                Output::Plain => {
                    print(&describe_plain(&description))?;
                    if let Some(r) = &retries {
                        print(&crate::group_retry::retries_plain(r))?;
                    }
                }
            }
        }
        GroupCommand::Reset(a) => {
            let offsets = admin
                .reset_offsets(&a.group, &a.topic, a.to)
                .await
                .with_context(|| format!("cannot reset the offsets of group {} on topic {}", a.group, a.topic))?;
            print(&reset_plain(&a.topic, &offsets))?;
            eprintln!("reset group {} on topic {}: {} partitions", a.group, a.topic, offsets.len());
        }
        GroupCommand::SetRetry(a) => crate::group_retry::set_retry(&admin, &a).await?,
        GroupCommand::SetFilter(a) => {
            let filter = a.filter.filter()?;
            let said = filter_plain(filter.as_ref());
            admin
                .set_group_filter(&a.group, &a.topic, filter)
                .await
                .with_context(|| format!("cannot set the filter of group {} on topic {}", a.group, a.topic))?;
            eprintln!("group {} now consumes {} with {said}", a.group, a.topic);
        }
    }
    Ok(())
}

/// A filter for people: `--tag "A || B" --filter "x > 1"`, or `no filter`.
fn filter_plain(filter: Option<&MessageFilter>) -> String {
    let Some(f) = filter else { return "no filter".to_owned() };
    let mut parts = Vec::new();
    if !f.tag_expression().is_empty() {
        parts.push(format!("--tag {:?}", f.tag_expression()));
    }
    if !f.sql_expression().is_empty() {
        parts.push(format!("--filter {:?}", f.sql_expression()));
    }
    if parts.is_empty() { "no filter".to_owned() } else { parts.join(" ") }
}

#[derive(Debug, Serialize)]
struct ListingJson<'a> {
    group: &'a str,
    state: &'a str,
    members: u32,
}

/// `group list --output json`: an array of `{group, state, members}`.
pub fn list_json(groups: &[GroupListing]) -> serde_json::Value {
    let list: Vec<ListingJson<'_>> =
        groups.iter().map(|g| ListingJson { group: &g.group, state: &g.state, members: g.members }).collect();
    serde_json::to_value(list).expect("plain data serializes")
}

/// `group list` for people.
pub fn list_plain(groups: &[GroupListing]) -> String {
    let mut out = format!("{:<40} {:<12} {:>7}\n", "GROUP", "STATE", "MEMBERS");
    for g in groups {
        let _ = writeln!(out, "{:<40} {:<12} {:>7}", g.group, g.state, g.members);
    }
    out
}

/// Partitions as `{topic: [partition, ...]}`, in order.
fn by_topic(partitions: &[TopicPartition]) -> BTreeMap<&str, Vec<u32>> {
    let mut map: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for tp in partitions {
        map.entry(tp.topic()).or_default().push(tp.partition());
    }
    map
}

/// Partitions for people: `orders:0,1,2 refunds:4`, or `-`.
fn partitions_plain(partitions: &[TopicPartition]) -> String {
    let text: Vec<String> = by_topic(partitions)
        .into_iter()
        .map(|(topic, ps)| format!("{topic}:{}", ps.iter().map(u32::to_string).collect::<Vec<_>>().join(",")))
        .collect();
    if text.is_empty() { "-".to_owned() } else { text.join(" ") }
}

/// Milliseconds as seconds, to the millisecond.
fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// `group describe --output json`.
pub fn describe_json(d: &GroupDescription) -> serde_json::Value {
    let members: Vec<serde_json::Value> = d
        .members
        .iter()
        .map(|m| {
            serde_json::json!({
                "member_id": m.member_id,
                "instance_id": m.instance_id,
                "member_epoch": m.member_epoch,
                "client_host": m.client_host,
                "topics": m.topics,
                "assigned": by_topic(&m.assigned),
                "target": by_topic(&m.target),
            })
        })
        .collect();
    let partitions: Vec<serde_json::Value> = d
        .partitions
        .iter()
        .map(|p| {
            serde_json::json!({
                "topic": p.partition.topic(),
                "partition": p.partition.partition(),
                "member_id": p.member_id,
                "committed_offset": p.committed_offset,
                "end_offset": p.end_offset,
                "lag_messages": p.lag_messages,
                "lag_seconds": seconds(p.lag_ms),
                "instance_id": p.instance_id,
            })
        })
        .collect();
    serde_json::json!({
        "group": d.group,
        "state": d.state,
        "group_epoch": d.group_epoch,
        "broadcast": d.broadcast,
        "skipped": d.skipped,
        "coordinator": {"node_id": d.coordinator_id, "address": d.coordinator_address},
        "members": members,
        "partitions": partitions,
        "filters": d.filters.iter().map(|(topic, f)| (topic.clone(), serde_json::json!({
            "tag": f.tag_expression(),
            "sql": f.sql_expression(),
        }))).collect::<serde_json::Map<_, _>>(),
    })
}

/// `group describe` for people: a summary line, the members, then the partitions.
pub fn describe_plain(d: &GroupDescription) -> String {
    let mut out = format!(
        "group {}: {}, epoch {}, coordinator node {} ({}), {} members\n",
        d.group,
        d.state,
        d.group_epoch,
        d.coordinator_id,
        d.coordinator_address,
        d.members.len()
    );
    if d.broadcast {
        let _ = writeln!(out, "broadcast: every member reads every partition; positions are per instance");
    }
    for (topic, f) in &d.filters {
        let skipped = d.skipped.get(topic).copied().unwrap_or(0);
        let _ = writeln!(out, "filter on {topic}: {} (skipped {skipped} messages)", filter_plain(Some(f)));
    }
    if !d.members.is_empty() {
        let _ = writeln!(out, "\n{:<36} {:<20} {:>6} {:<21} ASSIGNED", "MEMBER", "INSTANCE", "EPOCH", "HOST");
        for m in &d.members {
            let mut assigned = partitions_plain(&m.assigned);
            if m.target != m.assigned {
                let _ = write!(assigned, " (moving to {})", partitions_plain(&m.target));
            }
            let instance = m.instance_id.as_deref().unwrap_or("-");
            let _ = writeln!(
                out,
                "{:<36} {:<20} {:>6} {:<21} {assigned}",
                m.member_id, instance, m.member_epoch, m.client_host
            );
        }
    }
    let _ = writeln!(
        out,
        "\n{:<24} {:>9} {:>14} {:>14} {:>10} {:>11} MEMBER",
        "TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "LAG-SECONDS"
    );
    for p in &d.partitions {
        let committed = p.committed_offset.map_or_else(|| "-".to_owned(), |o| o.to_string());
        let _ = writeln!(
            out,
            "{:<24} {:>9} {:>14} {:>14} {:>10} {:>11.3} {}",
            p.partition.topic(),
            p.partition.partition(),
            committed,
            p.end_offset,
            p.lag_messages,
            seconds(p.lag_ms),
            member_column(p)
        );
    }
    out
}

/// The MEMBER column: the owner, and in a broadcast group the instance the row is about.
fn member_column(p: &sluice_client::PartitionLag) -> String {
    let member = p.member_id.as_deref().unwrap_or("-");
    match &p.instance_id {
        Some(instance) => format!("{member} (instance {instance})"),
        None => member.to_owned(),
    }
}

/// `group reset`: the new offset of each partition.
pub fn reset_plain(topic: &str, offsets: &BTreeMap<u32, u64>) -> String {
    let mut out = format!("{:<24} {:>9} {:>14}\n", "TOPIC", "PARTITION", "OFFSET");
    for (partition, offset) in offsets {
        let _ = writeln!(out, "{topic:<24} {partition:>9} {offset:>14}");
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sluice_client::{GroupMemberDescription, PartitionLag};

    use super::*;

    fn description() -> GroupDescription {
        let tp = |p| TopicPartition::new("orders", p);
        GroupDescription {
            group: "billing".into(),
            state: "RECONCILING".into(),
            group_epoch: 4,
            coordinator_id: 2,
            coordinator_address: "127.0.0.1:9092".into(),
            members: vec![GroupMemberDescription {
                member_id: "m-1".into(),
                instance_id: None,
                member_epoch: 3,
                topics: vec!["orders".into()],
                assigned: vec![tp(0), tp(1)],
                target: vec![tp(0)],
                client_host: "127.0.0.1:50000".into(),
            }],
            filters: BTreeMap::from([("orders".to_owned(), MessageFilter::tags("paid").and_sql("price > 10"))]),
            partitions: vec![
                PartitionLag {
                    partition: tp(0),
                    committed_offset: Some(90),
                    end_offset: 100,
                    lag_messages: 10,
                    lag_ms: 2500,
                    member_id: Some("m-1".into()),
                    instance_id: None,
                },
                PartitionLag {
                    partition: tp(1),
                    committed_offset: None,
                    end_offset: 0,
                    lag_messages: 0,
                    lag_ms: 0,
                    member_id: None,
                    instance_id: None,
                },
            ],
            broadcast: false,
            skipped: BTreeMap::from([("orders".to_owned(), 40)]),
        }
    }

    #[test]
    fn describe_json_has_members_assignments_and_lag_in_messages_and_seconds() {
        let v = describe_json(&description());
        assert_eq!((v["group"].as_str(), v["group_epoch"].as_i64()), (Some("billing"), Some(4)));
        assert_eq!(v["coordinator"], json!({"node_id": 2, "address": "127.0.0.1:9092"}));
        assert_eq!(v["members"][0]["assigned"], json!({"orders": [0, 1]}));
        assert_eq!(v["members"][0]["target"], json!({"orders": [0]}));
        assert_eq!(v["members"][0]["instance_id"], json!(null));
        assert_eq!(
            v["partitions"][0],
            json!({"topic": "orders", "partition": 0, "member_id": "m-1", "committed_offset": 90,
                   "end_offset": 100, "lag_messages": 10, "lag_seconds": 2.5, "instance_id": null})
        );
        assert_eq!(v["filters"], json!({"orders": {"tag": "paid", "sql": "price > 10"}}));
        assert_eq!(v["broadcast"], json!(false));
        assert_eq!(v["partitions"][1]["committed_offset"], json!(null));
    }

    #[test]
    fn describe_plain_shows_moving_partitions_and_missing_commits() {
        let text = describe_plain(&description());
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("group billing: RECONCILING, epoch 4, coordinator node 2 (127.0.0.1:9092), 1 members")
        );
        assert!(text.contains("orders:0,1 (moving to orders:0)"), "{text}");
        let p1 = text.lines().find(|l| l.starts_with("orders") && l.contains(" - ")).expect("partition 1");
        assert!(p1.trim_end().ends_with('-'), "no member: {p1}");
        assert!(text.contains("2.500 m-1"), "{text}");
    }

    #[test]
    fn list_and_reset_print_one_row_each() {
        let groups = vec![GroupListing { group: "billing".into(), state: "EMPTY".into(), members: 0 }];
        assert_eq!(list_json(&groups), json!([{"group": "billing", "state": "EMPTY", "members": 0}]));
        assert!(list_plain(&groups).lines().nth(1).unwrap().starts_with("billing "));
        let reset = reset_plain("orders", &BTreeMap::from([(0, 5), (1, 7)]));
        assert_eq!(reset.lines().count(), 3);
        assert!(reset.lines().nth(2).unwrap().ends_with(" 7"));
    }
}
