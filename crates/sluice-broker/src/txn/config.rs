//! The `[transactions]` table of a broker's configuration (docs/TRANSACTIONS.md).

use serde::Deserialize;

use crate::config::ConfigError;

/// Transaction coordinators: the internal `__txn` topic, timeouts, and half-message check-back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TxnConfig {
    /// Partitions of `__txn`, which the controller leader creates on the first
    /// `FindTxnCoordinator`; a transactional id lives in one of them. Read only then. Default: 8.
    pub txn_partitions: u32,
    /// The timeout of a transaction whose producer does not choose one, in ms. Default: 60000.
    pub default_timeout_ms: u32,
    /// The longest timeout a producer may choose, in ms (Kafka's
    /// `transaction.max.timeout.ms`). Default: 900000 (15 minutes).
    pub max_timeout_ms: u32,
    /// The most open transactions one coordinator (one `__txn` partition) holds; beyond, a new
    /// transaction is refused TOO_MANY_TRANSACTIONS. Default: 10000.
    pub max_open_transactions: u32,
    /// A transactional id with no transaction for this long is forgotten, in ms (Kafka's
    /// `transactional.id.expiration.ms`). Default: 604800000 (7 days).
    pub transactional_id_expiration_ms: u64,
    /// The first pause between check-backs of a half transaction, in ms; it doubles with each
    /// attempt up to `check_max_backoff_ms`. Default: 5000.
    pub check_initial_backoff_ms: u64,
    /// The longest pause between check-backs, in ms. Default: 60000.
    pub check_max_backoff_ms: u64,
    /// Check-backs answered by a connected producer (or not answered by one) before a half
    /// transaction is left *undecided* for an operator; attempts while no producer of the group
    /// is connected do not count. Default: 15 (RocketMQ's `transactionCheckMax`).
    pub max_check_attempts: u32,
    /// After this many records have been written to a `__txn` partition since its last
    /// checkpoint, its coordinator rewrites every id's state and trims the log before it.
    /// Default: 10000.
    pub checkpoint_interval_records: u64,
}

impl Default for TxnConfig {
    fn default() -> TxnConfig {
        TxnConfig {
            txn_partitions: 8,
            default_timeout_ms: 60_000,
            max_timeout_ms: 900_000,
            max_open_transactions: 10_000,
            transactional_id_expiration_ms: 7 * 24 * 3_600_000,
            check_initial_backoff_ms: 5_000,
            check_max_backoff_ms: 60_000,
            max_check_attempts: 15,
            checkpoint_interval_records: 10_000,
        }
    }
}

impl TxnConfig {
    /// Checks every field; the error names the one at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(format!("transactions.{m}")));
        let max = sluice_controller::limits::MAX_PARTITIONS_PER_TOPIC;
        if self.txn_partitions == 0 || self.txn_partitions > max {
            return invalid(format!("txn_partitions is {}; use 1 to {max}", self.txn_partitions));
        }
        if self.default_timeout_ms == 0 || self.default_timeout_ms > self.max_timeout_ms {
            return invalid(format!(
                "default_timeout_ms ({}) must be at least 1 and at most max_timeout_ms ({})",
                self.default_timeout_ms, self.max_timeout_ms
            ));
        }
        if self.max_open_transactions == 0 || self.max_check_attempts == 0 {
            return invalid(format!(
                "max_open_transactions ({}) and max_check_attempts ({}) must be at least 1",
                self.max_open_transactions, self.max_check_attempts
            ));
        }
        if self.check_initial_backoff_ms == 0 || self.check_max_backoff_ms < self.check_initial_backoff_ms {
            return invalid(format!(
                "check_initial_backoff_ms ({}) must be at least 1 and at most check_max_backoff_ms ({})",
                self.check_initial_backoff_ms, self.check_max_backoff_ms
            ));
        }
        if self.checkpoint_interval_records < 100 {
            return invalid(format!(
                "checkpoint_interval_records is {}; use at least 100",
                self.checkpoint_interval_records
            ));
        }
        if self.transactional_id_expiration_ms == 0 {
            return invalid("transactional_id_expiration_ms is 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_each_bad_field_is_named() {
        assert!(TxnConfig::default().validate().is_ok());
        let error = |change: fn(&mut TxnConfig)| {
            let mut c = TxnConfig::default();
            change(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert!(error(|c| c.txn_partitions = 0).contains("transactions.txn_partitions is 0"));
        assert!(error(|c| c.default_timeout_ms = 1_000_000).contains("transactions.default_timeout_ms"));
        assert!(error(|c| c.max_check_attempts = 0).contains("max_check_attempts (0)"));
        assert!(error(|c| c.check_max_backoff_ms = 1).contains("check_initial_backoff_ms"));
    }
}
