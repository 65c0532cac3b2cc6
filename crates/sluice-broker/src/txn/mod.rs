//! Transactions, broker side (docs/TRANSACTIONS.md).

mod config;

pub use config::TxnConfig;
