//! Admin writes — `CreateTopic`, `DeleteTopic`, `InitProducer` — proposed to the controller group
//! (`AlterTopicConfig` is in `alter.rs`).
//! Clients may neither create nor delete internal topics (names starting with `__`).
//! Requests are checked here first, so a bad one is answered without a Raft round (the state
//! machine checks again when it applies, as every controller must refuse alike).

use sluice_common::TopicName;
use sluice_common::record::TopicCompression;
use sluice_controller::{Applied, ControllerCommand, ControllerReply, TopicConfig};
use sluice_proto::v1::{
    CreateTopicRequest, CreateTopicResponse, DeleteTopicRequest, DeleteTopicResponse, InitProducerResponse,
    TopicConfig as TopicConfigPb,
};
use sluice_proto::{Error, ErrorCode};

use super::errors::{error, rejected};
use super::{ADMIN_TIMEOUT, ClientService};

/// Topic names starting with this are the brokers' own.
const INTERNAL_PREFIX: &str = "__";
/// A topic's largest message when `CreateTopic` does not say.
const DEFAULT_MAX_MESSAGE_BYTES: u32 = 1024 * 1024;

impl ClientService {
    pub(super) async fn handle_create_topic(&self, request: CreateTopicRequest) -> CreateTopicResponse {
        let failed = |e: Error| CreateTopicResponse { error: Some(e), topic: None };
        if let Err(e) = TopicName::new(request.name.as_str()) {
            return failed(error(ErrorCode::InvalidTopicName, e.to_string()));
        }
        if let Err(e) = not_internal(&request.name, "created") {
            return failed(e);
        }
        let config = match topic_config(request.config) {
            Ok(c) => c,
            Err(e) => return failed(e),
        };
        let name = request.name;
        let what = format!("the creation of topic {name:?}");
        match self.propose(&ControllerCommand::CreateTopic { name: name.clone(), config }, &what).await {
            Ok(_) => {
                // The leader applied the command before answering: its metadata has the topic.
                let topic = self.controller.metadata().read(|m| m.topic(&name).cloned());
                CreateTopicResponse { error: Some(Error::ok()), topic: topic.map(|t| self.topic_metadata(&t)) }
            }
            Err(e) => failed(e),
        }
    }

    pub(super) async fn handle_delete_topic(&self, request: DeleteTopicRequest) -> DeleteTopicResponse {
        if let Err(e) = TopicName::new(request.name.as_str()) {
            return DeleteTopicResponse { error: Some(error(ErrorCode::InvalidTopicName, e.to_string())) };
        }
        if let Err(e) = not_internal(&request.name, "deleted") {
            return DeleteTopicResponse { error: Some(e) };
        }
        let what = format!("the deletion of topic {:?}", request.name);
        let outcome = self.propose(&ControllerCommand::DeleteTopic { name: request.name }, &what).await;
        DeleteTopicResponse { error: Some(outcome.err().unwrap_or_else(Error::ok)) }
    }

    pub(super) async fn handle_init_producer(&self) -> InitProducerResponse {
        match self.propose(&ControllerCommand::AllocateProducerId, "a producer id allocation").await {
            Ok(Applied::ProducerIdAllocated { producer_id }) => {
                InitProducerResponse { error: Some(Error::ok()), producer_id, epoch: 0 }
            }
            Ok(other) => InitProducerResponse {
                error: Some(error(
                    ErrorCode::Internal,
                    format!("the controller answered {other:?} to a producer id allocation"),
                )),
                ..InitProducerResponse::default()
            },
            Err(e) => InitProducerResponse { error: Some(e), ..InitProducerResponse::default() },
        }
    }

    /// Proposes `command` (`what` names it in messages) and waits at most [`ADMIN_TIMEOUT`].
    pub(super) async fn propose(&self, command: &ControllerCommand, what: &str) -> Result<Applied, Error> {
        match tokio::time::timeout(ADMIN_TIMEOUT, self.controller.propose(command)).await {
            Ok(Ok(ControllerReply::Applied(applied))) => Ok(applied),
            Ok(Ok(ControllerReply::Rejected(r))) => Err(rejected(r)),
            Ok(Err(e)) => Err(self.propose_failed(Some(e), what)),
            Err(_elapsed) => Err(self.propose_failed(None, what)),
        }
    }
}

/// `INVALID_TOPIC_NAME` for a name starting with `__`: those are the brokers' own topics
/// (`__consumer_offsets` holds every consumer group), which clients may read but neither create
/// nor delete.
pub(super) fn not_internal(name: &str, what: &str) -> Result<(), Error> {
    if !name.starts_with(INTERNAL_PREFIX) {
        return Ok(());
    }
    Err(error(
        ErrorCode::InvalidTopicName,
        format!(
            "topic {name:?} cannot be {what} by a client: names starting with {INTERNAL_PREFIX:?} are reserved for \
             the brokers' internal topics; choose another name"
        ),
    ))
}

/// The controller's topic config from the request's; `INVALID_REQUEST` for a missing required
/// field, `INVALID_CONFIG` for a value out of range.
fn topic_config(config: Option<TopicConfigPb>) -> Result<TopicConfig, Error> {
    let invalid = |m: &str| error(ErrorCode::InvalidRequest, m);
    let c =
        config.ok_or_else(|| invalid("the request has no config; set at least partitions and replication_factor"))?;
    if c.partitions == 0 {
        return Err(invalid("config.partitions is unset or 0; set the number of partitions (at least 1)"));
    }
    if c.replication_factor == 0 {
        return Err(invalid("config.replication_factor is unset or 0; set it (3 survives one broker failure)"));
    }
    let config = TopicConfig {
        partitions: c.partitions,
        replication_factor: c.replication_factor,
        retention_ms: c.retention_ms,
        retention_bytes: c.retention_bytes,
        max_message_bytes: c.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES),
        flush_interval_ms: c.flush_interval_ms,
        compression: compression(c.compression.as_deref())?.unwrap_or_default(),
    };
    config.validate().map_err(|e| error(ErrorCode::InvalidConfig, e.to_string()))?;
    Ok(config)
}

/// The compression a request names, if it names one; `INVALID_CONFIG` listing the valid names
/// for any other.
pub(super) fn compression(name: Option<&str>) -> Result<Option<TopicCompression>, Error> {
    name.map(TopicCompression::from_name)
        .transpose()
        .map_err(|e| error(ErrorCode::InvalidConfig, format!("invalid topic config: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pb(partitions: u32, replication_factor: u32) -> TopicConfigPb {
        TopicConfigPb { partitions, replication_factor, ..TopicConfigPb::default() }
    }

    #[test]
    fn missing_fields_are_invalid_requests_and_ranges_invalid_configs() {
        let code = |c: Option<TopicConfigPb>| topic_config(c).unwrap_err().error_code();
        assert_eq!(code(None), ErrorCode::InvalidRequest);
        assert_eq!(code(Some(pb(0, 3))), ErrorCode::InvalidRequest);
        assert_eq!(code(Some(pb(3, 0))), ErrorCode::InvalidRequest);
        assert_eq!(code(Some(pb(10_001, 3))), ErrorCode::InvalidConfig);
        let zero_retention = TopicConfigPb { retention_ms: Some(0), ..pb(1, 1) };
        let e = topic_config(Some(zero_retention)).unwrap_err();
        assert_eq!(e.error_code(), ErrorCode::InvalidConfig);
        assert!(e.message.contains("retention_ms"), "{}", e.message);
    }

    #[test]
    fn a_flush_interval_is_kept_and_checked_against_the_storage_limit() {
        assert_eq!(topic_config(Some(pb(1, 3))).unwrap().flush_interval_ms, None, "unset: fsync before ack");
        let set = TopicConfigPb { flush_interval_ms: Some(200), ..pb(1, 3) };
        assert_eq!(topic_config(Some(set)).unwrap().flush_interval_ms, Some(200));
        let zero = topic_config(Some(TopicConfigPb { flush_interval_ms: Some(0), ..pb(1, 3) })).unwrap_err();
        assert_eq!(zero.error_code(), ErrorCode::InvalidConfig);
        assert!(zero.message.contains("flush_interval_ms"), "{}", zero.message);
        // The controller accepts no interval the storage layer would shorten.
        assert_eq!(TopicConfig::MAX_FLUSH_INTERVAL_MS, sluice_storage::MAX_FLUSH_INTERVAL_MS);
    }

    #[test]
    fn internal_names_are_refused_with_a_clear_message() {
        let e = not_internal("__consumer_offsets", "created").unwrap_err();
        assert_eq!(e.error_code(), ErrorCode::InvalidTopicName);
        assert!(e.message.contains("cannot be created") && e.message.contains("reserved"), "{}", e.message);
        assert_eq!(not_internal("__x", "deleted").unwrap_err().error_code(), ErrorCode::InvalidTopicName);
        assert_eq!(not_internal("_single", "created"), Ok(()));
        assert_eq!(not_internal("orders__v2", "created"), Ok(()));
    }

    #[test]
    fn a_compression_is_kept_unset_means_producer_and_unknown_names_are_refused_listing_the_valid_ones() {
        assert_eq!(topic_config(Some(pb(1, 3))).unwrap().compression, TopicCompression::Producer);
        let zstd = TopicConfigPb { compression: Some("zstd".into()), ..pb(1, 3) };
        let expected = TopicCompression::Codec(sluice_common::record::Compression::Zstd);
        assert_eq!(topic_config(Some(zstd)).unwrap().compression, expected);
        let bad = topic_config(Some(TopicConfigPb { compression: Some("brotli".into()), ..pb(1, 3) })).unwrap_err();
        assert_eq!(bad.error_code(), ErrorCode::InvalidConfig);
        assert!(bad.message.contains("producer, none, gzip, snappy, lz4 or zstd"), "{}", bad.message);
    }

    #[test]
    fn unset_max_message_bytes_is_one_mib() {
        assert_eq!(topic_config(Some(pb(3, 3))).unwrap().max_message_bytes, 1024 * 1024);
        let set = TopicConfigPb { max_message_bytes: Some(100), ..pb(3, 3) };
        assert_eq!(topic_config(Some(set)).unwrap().max_message_bytes, 100);
    }
}
