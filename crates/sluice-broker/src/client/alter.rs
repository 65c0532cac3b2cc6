//! `AlterTopicConfig`: a topic's retention, message size limit or compression changed while it
//! runs, proposed to the controller group like the other admin writes (`admin.rs`).
//!
//! Nothing else has to happen on the brokers: each reads these settings from its applied
//! metadata when it uses them — `max_message_bytes` on every produce (`route.rs`), retention
//! on every metadata change (`Partitions::reconcile` hands it to each hosted log) — so a
//! change takes effect on a broker as soon as it has applied the command.

use sluice_common::TopicName;
use sluice_controller::{Applied, ConfigChange, ControllerCommand, TopicConfigChanges};
use sluice_proto::v1::{AlterTopicConfigRequest, AlterTopicConfigResponse, TopicConfigChanges as ChangesPb};
use sluice_proto::{Error, ErrorCode};

use super::ClientService;
use super::admin::{compression, not_internal};
use super::errors::error;
use super::metadata::config_pb;

impl ClientService {
    pub(super) async fn handle_alter_topic_config(&self, request: AlterTopicConfigRequest) -> AlterTopicConfigResponse {
        let failed = |e: Error| AlterTopicConfigResponse { error: Some(e), ..AlterTopicConfigResponse::default() };
        if let Err(e) = TopicName::new(request.name.as_str()) {
            return failed(error(ErrorCode::InvalidTopicName, e.to_string()));
        }
        if let Err(e) = not_internal(&request.name, "altered") {
            return failed(e);
        }
        let changes = match changes(request.changes) {
            Ok(c) => c,
            Err(e) => return failed(e),
        };
        let name = request.name;
        let what = format!("the change of topic {name:?}'s settings");
        match self.propose(&ControllerCommand::AlterTopicConfig { name: name.clone(), changes }, &what).await {
            Ok(Applied::TopicConfigAltered { previous, .. }) => {
                // The leader applied the command before answering: its metadata has the change.
                let topic = self.controller.metadata().read(|m| m.topic(&name).cloned());
                AlterTopicConfigResponse {
                    error: Some(Error::ok()),
                    topic: topic.map(|t| self.topic_metadata(&t)),
                    previous: Some(config_pb(&previous)),
                }
            }
            Ok(other) => failed(error(
                ErrorCode::Internal,
                format!("the controller answered {other:?} to {what}; are all brokers the same version?"),
            )),
            Err(e) => failed(e),
        }
    }
}

/// The controller's changes from the request's, checked as the state machine will check them
/// (the topic's own values aside), so a bad request is answered without a Raft round:
/// `INVALID_REQUEST` for no changes at all or a value given with its clear flag,
/// `INVALID_CONFIG` for a setting that cannot be altered or an unknown compression.
fn changes(changes: Option<ChangesPb>) -> Result<TopicConfigChanges, Error> {
    let none = || error(ErrorCode::InvalidRequest, "the request has no changes; set at least one setting to alter");
    let c = changes.ok_or_else(none)?;
    let changes = TopicConfigChanges {
        retention_ms: change("retention_ms", c.retention_ms, c.clear_retention_ms)?,
        retention_bytes: change("retention_bytes", c.retention_bytes, c.clear_retention_bytes)?,
        max_message_bytes: c.max_message_bytes,
        compression: compression(c.compression.as_deref())?,
        partitions: c.partitions,
        replication_factor: c.replication_factor,
        flush_interval_ms: c.flush_interval_ms,
    };
    if changes.is_empty() {
        return Err(none());
    }
    changes.check().map_err(|e| error(ErrorCode::InvalidConfig, e.to_string()))?;
    Ok(changes)
}

/// One optional setting's change: a value, a clear, neither, or (refused) both.
fn change(setting: &str, value: Option<u64>, clear: bool) -> Result<Option<ConfigChange<u64>>, Error> {
    match (value, clear) {
        (None, false) => Ok(None),
        (Some(v), false) => Ok(Some(ConfigChange::Set(v))),
        (None, true) => Ok(Some(ConfigChange::Clear)),
        (Some(v), true) => Err(error(
            ErrorCode::InvalidRequest,
            format!("{setting} is set to {v} and cleared in one request; give one or the other"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use sluice_common::record::{Compression, TopicCompression};

    use super::*;

    fn refused(c: ChangesPb) -> Error {
        changes(Some(c)).unwrap_err()
    }

    #[test]
    fn requested_changes_become_the_controllers() {
        let c = ChangesPb {
            clear_retention_ms: true,
            retention_bytes: Some(4096),
            max_message_bytes: Some(100),
            compression: Some("lz4".into()),
            ..ChangesPb::default()
        };
        let expected = TopicConfigChanges {
            retention_ms: Some(ConfigChange::Clear),
            retention_bytes: Some(ConfigChange::Set(4096)),
            max_message_bytes: Some(100),
            compression: Some(TopicCompression::Codec(Compression::Lz4)),
            ..TopicConfigChanges::default()
        };
        assert_eq!(changes(Some(c)), Ok(expected));
    }

    #[test]
    fn empty_or_contradictory_requests_are_invalid_requests() {
        assert_eq!(changes(None).unwrap_err().error_code(), ErrorCode::InvalidRequest);
        assert_eq!(refused(ChangesPb::default()).error_code(), ErrorCode::InvalidRequest);
        let both = refused(ChangesPb { retention_ms: Some(5), clear_retention_ms: true, ..ChangesPb::default() });
        assert_eq!(both.error_code(), ErrorCode::InvalidRequest);
        assert!(both.message.contains("retention_ms is set to 5 and cleared"), "{}", both.message);
    }

    #[test]
    fn fixed_settings_and_unknown_codecs_are_invalid_configs_saying_why() {
        let partitions = refused(ChangesPb { partitions: Some(6), ..ChangesPb::default() });
        assert_eq!(partitions.error_code(), ErrorCode::InvalidConfig);
        assert!(partitions.message.contains("partitions cannot be altered"), "{}", partitions.message);
        let flush =
            refused(ChangesPb { flush_interval_ms: Some(6), max_message_bytes: Some(1), ..ChangesPb::default() });
        assert!(flush.message.contains("flush_interval_ms cannot be altered"), "{}", flush.message);
        let codec = refused(ChangesPb { compression: Some("brotli".into()), ..ChangesPb::default() });
        assert_eq!(codec.error_code(), ErrorCode::InvalidConfig);
        assert!(codec.message.contains("producer, none, gzip, snappy, lz4 or zstd"), "{}", codec.message);
    }
}
