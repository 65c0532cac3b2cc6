//! Group administration on [`Admin`]: list the groups, describe one (members, assignment,
//! committed offsets, lag), and reset a group's offsets while it has no live members.

use crate::Isolation;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Instant;

use futures_util::future::join_all;
use sluice_common::TopicName;
use sluice_proto::{ErrorCode, error_of, v1};

use super::book::from_proto;
use super::coordinator::{Coordinator, Failure, Groups, Kind, attempt_at};
use crate::admin::Admin;
use crate::client::{Answer, Client, unknown_topic};
use crate::config::{SeekTo, check_group_id};
use crate::error::{Error, Result};
use crate::filter::MessageFilter;
use crate::topic_partition::TopicPartition;

/// The member id and epoch of an administrative commit (no member: accepted only while the
/// group has no live members).
const ADMIN_MEMBER_EPOCH: i32 = -1;

/// One group, as [`Admin::list_groups`] reports it.
///
/// ```no_run
/// # async fn example(admin: sluice_client::Admin) -> sluice_client::Result<()> {
/// let empty: Vec<_> = admin.list_groups().await?.into_iter().filter(|g| g.members == 0).collect();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group's id.
    pub group: String,
    /// `EMPTY` (no members), `STABLE` (every member has reached the group's assignment) or
    /// `RECONCILING` (partitions are moving).
    pub state: String,
    /// Live members.
    pub members: u32,
}

/// A group in detail, as [`Admin::describe_group`] reports it.
///
/// ```no_run
/// # async fn example(admin: sluice_client::Admin) -> sluice_client::Result<()> {
/// let d = admin.describe_group("billing").await?;
/// println!("{} members at group epoch {}, coordinated by node {}", d.members.len(), d.group_epoch, d.coordinator_id);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group's id.
    pub group: String,
    /// `EMPTY`, `STABLE` or `RECONCILING` (see [`GroupListing::state`]).
    pub state: String,
    /// Grows with every membership or subscription change.
    pub group_epoch: i32,
    /// The coordinating broker's node id.
    pub coordinator_id: u64,
    /// The coordinating broker's client address.
    pub coordinator_address: String,
    /// Live members, as the coordinator lists them.
    pub members: Vec<GroupMemberDescription>,
    /// Every partition of the subscribed topics and every partition with a committed offset.
    pub partitions: Vec<PartitionLag>,
    /// The filter the group consumes each topic with (docs/FILTERS.md), by topic; topics
    /// consumed unfiltered are absent.
    pub filters: BTreeMap<String, MessageFilter>,
    /// Whether the group consumes in broadcast mode (every member every partition).
    pub broadcast: bool,
    /// Messages the group's filters skipped, per topic, as its members reported them since
    /// its coordinator took it over (a statistic, not replicated).
    pub skipped: BTreeMap<String, u64>,
}

/// One member of a described group.
///
/// ```no_run
/// # async fn example(admin: sluice_client::Admin) -> sluice_client::Result<()> {
/// for m in admin.describe_group("billing").await?.members {
///     println!("{} from {} owns {:?}", m.member_id, m.client_host, m.assigned);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMemberDescription {
    /// The member's id.
    pub member_id: String,
    /// A static member's instance id.
    pub instance_id: Option<String>,
    /// The group epoch whose assignment the member has reached.
    pub member_epoch: i32,
    /// The topics it subscribes to.
    pub topics: Vec<String>,
    /// What it owns now.
    pub assigned: Vec<TopicPartition>,
    /// What it will own once the rebalance completes.
    pub target: Vec<TopicPartition>,
    /// The address its heartbeats come from.
    pub client_host: String,
}

/// One partition of a described group: how far the group has committed and how far behind
/// the end that is.
///
/// ```no_run
/// # async fn example(admin: sluice_client::Admin) -> sluice_client::Result<()> {
/// let behind: u64 = admin.describe_group("billing").await?.partitions.iter().map(|p| p.lag_messages).sum();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The partition.
    pub partition: TopicPartition,
    /// The group's committed offset (the next to read); `None`: nothing committed.
    pub committed_offset: Option<u64>,
    /// The partition's high watermark: the offset the next message will get.
    pub end_offset: u64,
    /// Messages between the committed offset (or the log start) and the end.
    pub lag_messages: u64,
    /// Age of the first message not yet consumed, in milliseconds (0 when caught up).
    pub lag_ms: u64,
    /// The member that owns it, if any.
    pub member_id: Option<String>,
    /// In a broadcast group: the instance whose position this is (a row per instance and
    /// partition); `None` otherwise.
    pub instance_id: Option<String>,
}

impl Admin {
    /// Every group of the cluster: each broker lists the groups it coordinates, and the
    /// lists are merged (in name order).
    ///
    /// ```no_run
    /// # async fn example(client: sluice_client::Client) -> sluice_client::Result<()> {
    /// for group in client.admin().list_groups().await? {
    ///     println!("{} {} {} members", group.group, group.state, group.members);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let client = self.client();
        let metadata = client.refresh_metadata().await?;
        let deadline = Instant::now() + client.config().operation_timeout;
        let brokers: Vec<String> = metadata.brokers.values().filter(|b| b.live).map(|b| b.address.clone()).collect();
        let answers = join_all(brokers.iter().map(|address| {
            ask_broker::<Groups, _, _, _>(client, address, deadline, |mut rpc| async move {
                rpc.list_groups(v1::ListGroupsRequest {}).await
            })
        }))
        .await;
        let mut lists = Vec::with_capacity(answers.len());
        for answer in answers {
            lists.push(answer?.groups);
        }
        Ok(merge_listings(lists))
    }

    /// A group's members, their assignments, and per partition the committed offset, the end
    /// offset and the lag, asked of the group's coordinator. Fails with
    /// [`ErrorCode::GroupNotFound`] if the group has neither members nor committed offsets.
    ///
    /// ```no_run
    /// # async fn example(client: sluice_client::Client) -> sluice_client::Result<()> {
    /// let group = client.admin().describe_group("billing").await?;
    /// for p in &group.partitions {
    ///     println!("{} lag {} messages, {} ms", p.partition, p.lag_messages, p.lag_ms);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        check_group_id("group", group)?;
        let client = self.client();
        let coordinator = Coordinator::new(client.clone(), group);
        let deadline = Instant::now() + client.config().operation_timeout;
        let answer = coordinator
            .call("DescribeGroup", deadline, |mut rpc| {
                let request = v1::DescribeGroupRequest { group: group.to_owned() };
                async move { rpc.describe_group(request).await }
            })
            .await?;
        Ok(description_of(answer))
    }

    /// Changes the filter `group` consumes `topic` with (docs/FILTERS.md); `None` consumes
    /// every message. Members of a group all consume a topic with its filter: one joining
    /// with another is refused [`ErrorCode::FilterMismatch`]. The filter can be changed only
    /// while no member of the group consumes the topic, else [`ErrorCode::GroupNotEmpty`]:
    /// stop the consumers, change it, start them with the new filter.
    ///
    /// ```no_run
    /// # async fn example(client: sluice_client::Client) -> sluice_client::Result<()> {
    /// use sluice_client::MessageFilter;
    /// client.admin().set_group_filter("billing", "orders", Some(MessageFilter::tags("paid"))).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_group_filter(&self, group: &str, topic: &str, filter: Option<MessageFilter>) -> Result<()> {
        check_group_id("group", group)?;
        TopicName::new(topic).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let filter = filter.unwrap_or_default();
        filter.validate()?;
        let request = v1::SetGroupFilterRequest {
            group: group.to_owned(),
            filter: Some(v1::TopicFilter {
                topic: topic.to_owned(),
                tag_filter: filter.tag_expression().to_owned(),
                sql_filter: filter.sql_expression().to_owned(),
            }),
        };
        let client = self.client();
        let coordinator = Coordinator::new(client.clone(), group);
        let deadline = Instant::now() + client.config().operation_timeout;
        coordinator
            .call("SetGroupFilter", deadline, |mut rpc| {
                let request = request.clone();
                async move { rpc.set_group_filter(request).await }
            })
            .await
            .map(drop)
    }

    /// Sets `group`'s committed offsets of every partition of `topic` to `to`, resolved per
    /// partition now (an explicit offset is kept within what the partition holds). Returns
    /// the new offset of each partition.
    ///
    /// Only a group without live members can be reset: otherwise it fails with
    /// [`ErrorCode::GroupNotEmpty`] and nothing changes. Stop its consumers first.
    ///
    /// ```no_run
    /// # async fn example(client: sluice_client::Client) -> sluice_client::Result<()> {
    /// use sluice_client::SeekTo;
    /// let offsets = client.admin().reset_offsets("billing", "orders", SeekTo::Earliest).await?;
    /// println!("{offsets:?}");
    /// # Ok(()) }
    /// ```
    pub async fn reset_offsets(&self, group: &str, topic: &str, to: SeekTo) -> Result<BTreeMap<u32, u64>> {
        check_group_id("group", group)?;
        TopicName::new(topic).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let client = self.client();
        let metadata = client.refresh_metadata().await?;
        let info = metadata.topics.get(topic).cloned().ok_or_else(|| unknown_topic(topic))?;
        let resolved = join_all(info.partitions.iter().map(|p| resolve(client, topic, p.partition, to))).await;
        let mut offsets = BTreeMap::new();
        for (p, offset) in info.partitions.iter().zip(resolved) {
            offsets.insert(p.partition, offset?);
        }
        let request = v1::CommitOffsetsRequest {
            group: group.to_owned(),
            member_id: String::new(),
            member_epoch: ADMIN_MEMBER_EPOCH,
            offsets: offsets
                .iter()
                .map(|(&partition, &offset)| v1::OffsetToCommit {
                    topic: topic.to_owned(),
                    partition,
                    offset,
                    metadata: String::new(),
                })
                .collect(),
        };
        let coordinator = Coordinator::new(client.clone(), group);
        let deadline = Instant::now() + client.config().operation_timeout;
        let committed = coordinator
            .call("CommitOffsets", deadline, |mut rpc| {
                let request = request.clone();
                async move { rpc.commit_offsets(request).await }
            })
            .await;
        match committed {
            Ok(_) => Ok(offsets),
            Err(e) if e.code() == Some(ErrorCode::GroupNotEmpty) => Err(Error::broker(
                ErrorCode::GroupNotEmpty,
                format!("group {group} has live members; its offsets can be reset only while none is running"),
            )),
            Err(e) => Err(e),
        }
    }
}

/// The offset `to` means for one partition; an explicit offset is clamped to the log.
async fn resolve(client: &Client, topic: &str, partition: u32, to: SeekTo) -> Result<u64> {
    match to {
        SeekTo::Offset(offset) => {
            let (start, end) = tokio::join!(
                client.list_offset(topic, partition, SeekTo::Earliest, Isolation::ReadUncommitted),
                client.list_offset(topic, partition, SeekTo::Latest, Isolation::ReadUncommitted)
            );
            let start = start?;
            Ok(offset.clamp(start, end?.max(start)))
        }
        other => client.list_offset(topic, partition, other, Isolation::ReadUncommitted).await,
    }
}

/// Sends `op` to the broker at `address` (not to a coordinator) until it is answered with
/// anything but a retriable error, or `deadline` passes.
pub(crate) async fn ask_broker<K, R, F, Fut>(client: &Client, address: &str, deadline: Instant, mut op: F) -> Result<R>
where
    K: Kind,
    R: Answer,
    F: FnMut(K::Rpc) -> Fut,
    Fut: Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
{
    let started = Instant::now();
    let mut backoff = client.config().retry_backoff_min;
    loop {
        let error = match attempt_at::<K, R, F, Fut>(client, address, &mut op).await {
            Ok(answer) => {
                let error = error_of(answer.error());
                if error.is_ok() {
                    return Ok(answer);
                }
                if !error.error_code().is_retriable() {
                    return Err(Error::from_proto(&error));
                }
                Error::from_proto(&error)
            }
            Err(Failure::Fatal(error)) => return Err(error),
            Err(retry) => retry.into_error(),
        };
        if Instant::now() + backoff >= deadline {
            let operation = format!("asking broker {address} about its {}", K::SERVES);
            return Err(Error::Timeout { operation, elapsed: started.elapsed(), last: Box::new(error) });
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(client.config().retry_backoff_max);
    }
}

/// One list from the brokers' lists, in name order. While a group's coordinator moves two
/// brokers may both list it; the listing with more members is the live one.
fn merge_listings(lists: Vec<Vec<v1::GroupListing>>) -> Vec<GroupListing> {
    let mut merged: BTreeMap<String, GroupListing> = BTreeMap::new();
    for listing in lists.into_iter().flatten() {
        let entry = GroupListing { group: listing.group, state: listing.state, members: listing.members };
        match merged.get(&entry.group) {
            Some(seen) if seen.members >= entry.members => {}
            _ => {
                merged.insert(entry.group.clone(), entry);
            }
        }
    }
    merged.into_values().collect()
}

fn description_of(answer: v1::DescribeGroupResponse) -> GroupDescription {
    let coordinator = answer.coordinator.unwrap_or_default();
    let list = |lists: &[v1::TopicPartitions]| from_proto(lists).into_iter().collect::<Vec<_>>();
    GroupDescription {
        group: answer.group,
        state: answer.state,
        group_epoch: answer.group_epoch,
        coordinator_id: coordinator.node_id,
        coordinator_address: coordinator.client_address,
        members: answer
            .members
            .into_iter()
            .map(|m| GroupMemberDescription {
                assigned: list(&m.assigned),
                target: list(&m.target),
                member_id: m.member_id,
                instance_id: m.instance_id,
                member_epoch: m.member_epoch,
                topics: m.topics,
                client_host: m.client_host,
            })
            .collect(),
        partitions: answer
            .partitions
            .into_iter()
            .map(|p| PartitionLag {
                partition: TopicPartition::new(p.topic, p.partition),
                committed_offset: p.committed_offset,
                end_offset: p.end_offset,
                lag_messages: p.lag_messages,
                lag_ms: p.lag_ms,
                member_id: p.member_id,
                instance_id: Some(p.instance_id).filter(|i| !i.is_empty()),
            })
            .collect(),
        broadcast: answer.broadcast,
        skipped: answer.skipped.into_iter().map(|c| (c.topic, c.count)).collect(),
        filters: answer
            .filters
            .into_iter()
            .filter(|f| !(f.tag_filter.is_empty() && f.sql_filter.is_empty()))
            .map(|f| (f.topic, MessageFilter::tags(f.tag_filter).and_sql(f.sql_filter)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(group: &str, members: u32) -> v1::GroupListing {
        v1::GroupListing { group: group.into(), state: "STABLE".into(), members }
    }

    #[test]
    fn listings_from_every_broker_merge_by_name_keeping_the_live_one() {
        let merged = merge_listings(vec![
            vec![listing("b", 0), listing("a", 2)],
            vec![listing("b", 3)],
            vec![],
            vec![listing("a", 1)],
        ]);
        let seen: Vec<(&str, u32)> = merged.iter().map(|g| (g.group.as_str(), g.members)).collect();
        assert_eq!(seen, [("a", 2), ("b", 3)]);
    }

    #[test]
    fn descriptions_keep_members_assignments_and_lag() {
        let tps = |p: &[u32]| vec![v1::TopicPartitions { topic: "t".into(), partitions: p.to_vec() }];
        let answer = v1::DescribeGroupResponse {
            error: None,
            group: "g".into(),
            state: "RECONCILING".into(),
            group_epoch: 7,
            coordinator: Some(v1::BrokerAddress { node_id: 2, client_address: "h:2".into() }),
            members: vec![v1::GroupMember {
                member_id: "m1".into(),
                instance_id: Some("i1".into()),
                member_epoch: 6,
                topics: vec!["t".into()],
                assigned: tps(&[1, 0]),
                target: tps(&[0]),
                client_host: "127.0.0.1".into(),
            }],
            partitions: vec![v1::PartitionLag {
                topic: "t".into(),
                partition: 1,
                committed_offset: None,
                end_offset: 9,
                lag_messages: 9,
                lag_ms: 1500,
                member_id: Some("m1".into()),
                instance_id: String::new(),
            }],
            broadcast: false,
            skipped: vec![v1::TopicCount { topic: "t".into(), count: 12 }],
            filters: vec![
                v1::TopicFilter { topic: "t".into(), tag_filter: "a || b".into(), sql_filter: "x > 1".into() },
                v1::TopicFilter { topic: "u".into(), tag_filter: String::new(), sql_filter: String::new() },
            ],
        };
        let d = description_of(answer);
        assert_eq!(d.filters.len(), 1, "a topic pinned unfiltered is not listed");
        assert_eq!(d.skipped["t"], 12);
        assert_eq!(d.filters["t"], MessageFilter::tags("a || b").and_sql("x > 1"));
        assert_eq!((d.group.as_str(), d.state.as_str(), d.group_epoch), ("g", "RECONCILING", 7));
        assert_eq!((d.coordinator_id, d.coordinator_address.as_str()), (2, "h:2"));
        let m = &d.members[0];
        assert_eq!(m.assigned, [TopicPartition::new("t", 0), TopicPartition::new("t", 1)], "in order");
        assert_eq!((m.target.len(), m.instance_id.as_deref(), m.member_epoch), (1, Some("i1"), 6));
        let p = &d.partitions[0];
        assert_eq!(
            (p.partition.to_string(), p.committed_offset, p.lag_messages, p.lag_ms),
            ("t/1".into(), None, 9, 1500)
        );
    }
}
