//! Sluice as an operator runs it: `sluice-broker` processes on loopback, spoken to by the SDK
//! and the `sluice` CLI (docs/TESTING.md).
//!
//! - `sdk`: 100,000 keyed messages through three brokers come back once each, in dense
//!   per-partition offsets.
//! - `failover`: a partition leader SIGKILLed mid-write loses no acknowledged message and
//!   duplicates none; restarted, it catches up to replicas identical to the others'.
//! - `broadcast`: every instance of a broadcast group reads every message; one SIGKILLed and
//!   restarted resumes from its own committed offsets.
//! - `filters`: tag and SQL filters — a consumer receives exactly the matching messages of
//!   100,000, in offset order, through the SDK and the CLI.
//! - `delays`: 10,000 delayed messages due over 20 s, a partition leader SIGKILLed while they
//!   wait: each is consumed once and none early; cancelled ones never appear.
//! - `transactions`: transactions over 4 partitions of 2 topics are all-or-nothing for a
//!   `read_committed` consumer, across a SIGKILL of the coordinator's broker during a commit;
//!   aborted, timed-out and fenced ones are never seen.
//! - `exactly_once`: a consume-transform-produce processor writing its outputs and offsets in
//!   transactions, dropped mid-transaction and replaced, outputs every input exactly once.
//! - `half_messages`: half messages commit and roll back; one whose producer died is checked
//!   back with a restarted member (and waits, uncounted, while none is connected); one never
//!   answered is left undecided for an operator.
//! - `compression`: a producer per codec (gzip, snappy, lz4, zstd) and an uncompressed one on
//!   one topic; assign-mode and group consumers read every message once with all its fields;
//!   tag and SQL filters over the compressed batches deliver exactly the matching messages.
//! - `cli`: `topic create`, `produce`, `consume`, `topic describe` and `cluster status` round
//!   trip with JSON output.
//! - `groups`: consumer groups — members share partitions exactly once, hand them over when
//!   one closes or crashes (redelivering only what was not committed), static members come
//!   back without a rebalance, zombies cannot commit, and the CLI's `group` commands.
//! - `groups_kill`: a group member process and then the group's coordinator broker are
//!   SIGKILLed; partitions move to the survivors, the same members and committed offsets carry
//!   on under a new coordinator, and every message is consumed.
//! - `disk_failure`: fsync failing with EIO (libfiu) on a broker stops it with status 1; the
//!   other two go on acknowledging, nothing acknowledged is lost, and the broker restarted on
//!   a healthy disk catches up. The same when the controller's store is hit first.
//! - `idle_reads`: RF-1 partitions left idle for longer than the read lease answer reads at
//!   once, on `sluice-broker --dev` and on three brokers; the `--dev` default log stays quiet.
//! - `capacity`: brokers with a low open-file limit refuse a topic beyond their file budget
//!   with INSUFFICIENT_CAPACITY, keep running, and come back from a full restart.
//! - `acks`: messages acknowledged under `acks=leader` may be lost to a SIGKILL of the leader
//!   right after it acknowledged them (counted), are never read twice, while `acks=all` ones
//!   in the same run all survive; oneway sends to a dead cluster return at once and are
//!   counted as failures.
//! - `rolling_restart`: each broker in turn stopped with SIGTERM and started again under a
//!   continuous producer and a group member: no send fails, nothing is lost or duplicated, and
//!   the longest time without an acknowledgement stays short (controlled shutdown).
//! - `bad_input`: unknown topics, invalid names, oversize messages and unreachable brokers give
//!   a clear error and a non-zero exit.
//! - `cli_retries`: `sluice consume --exec` nacks what its command fails, into the dead-letter
//!   queue after the group's attempts; `dlq list` shows each once, `dlq redrive` brings them
//!   back once.
//! - `retries`: 10,000 messages through a group worker that fails some three times and some
//!   always, with the group's coordinator and a partition leader SIGKILLed: retries come on
//!   their attempt and never before their backoff, exhausted messages reach the dead-letter
//!   queue once, and a redrive delivers them once; in a key-ordered group with a poison key,
//!   no message of a key is delivered after a later one of its key.
//! - `idempotence`: a producer idle past `producer_id_expiration_ms`, which its partition then
//!   forgets, and a group's dead-letter writer idle as long, carry on under new producer ids
//!   without an error; nothing is lost or written twice.
//! - `scripts`: `scripts/start-cluster.sh` starts one cluster, once; `scripts/stop-cluster.sh`
//!   stops exactly it. It uses the fixed ports of `cluster-configs/`; every other test uses
//!   free ports.

mod acks;
mod bad_input;
mod broadcast;
mod capacity;
mod cli;
mod cli_retries;
mod compression;
mod delays;
mod disk_failure;
mod exactly_once;
mod failover;
mod filters;
mod groups;
mod groups_kill;
mod half_messages;
mod idempotence;
mod idle_reads;
mod retries;
mod rolling_restart;
mod scripts;
mod sdk;
mod transactions;
