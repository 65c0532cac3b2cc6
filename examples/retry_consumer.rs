//! A worker with retries (docs/RETRIES.md): joins the group `example-retry` on the topic
//! `example-orders` with a retry policy of 4 attempts, 1 s doubling, and key order; treats a
//! value containing `fail` as a transient failure (nacked: retried after the backoff, then
//! dead-lettered in `example-retry.dlq`) and one containing `poison` as permanent (rejected
//! straight to the dead-letter queue). Everything else is processed, and acknowledged by
//! polling again. Runs until Ctrl-C, then commits and leaves the group.
//!
//! ```sh
//! printf 'ok\nfail\npoison\n' | sluice produce example-orders --key customer-1
//! cargo run -p sluice-client --example retry_consumer
//! sluice dlq list --group example-retry       # the poison one at once, the failing one later
//! ```

use std::time::Duration;

use sluice_client::{Backoff, Client, ClientConfig, ConsumedRecord, GroupConsumerConfig, OffsetReset, RetryPolicy};

/// What processing a record came to.
enum Outcome {
    Done,
    TryAgain(String),
    Never(String),
}

fn process(record: &ConsumedRecord) -> Outcome {
    let value = String::from_utf8_lossy(record.value());
    if value.contains("poison") {
        Outcome::Never(format!("cannot ever process {value:?}"))
    } else if value.contains("fail") {
        Outcome::TryAgain(format!("the service behind {value:?} is down"))
    } else {
        Outcome::Done
    }
}

#[tokio::main]
async fn main() -> Result<(), sluice_client::Error> {
    let client = Client::connect(ClientConfig::from_env()).await?;
    // The group's policy: the first member that names one sets it; a member naming another is
    // refused (RETRY_POLICY_MISMATCH), so every member of a group agrees.
    let retry = RetryPolicy {
        backoff: Backoff::Exponential { initial_ms: 1_000, multiplier: 2.0, max_ms: 60_000, jitter: 0.2 },
        max_attempts: 4,
    };
    let config = GroupConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        retry: Some(retry),
        // A failing message holds back the later messages of its key only.
        key_ordered: true,
        ..GroupConsumerConfig::new("example-retry")
    };
    let mut consumer = client.group_consumer(config)?;
    consumer.subscribe(&["example-orders"]).await?;
    println!("member {} of group {}; Ctrl-C to stop", consumer.member_id(), consumer.group());
    loop {
        let records = tokio::select! {
            records = consumer.poll(Duration::from_secs(1)) => records?,
            _ = tokio::signal::ctrl_c() => break,
        };
        for record in &records {
            let place =
                format!("{}/{}@{} attempt {}", record.topic(), record.partition(), record.offset(), record.attempt());
            // Nacks and rejects are noted here and sent in one batch before the next commit.
            match process(record) {
                Outcome::Done => println!("{place}: done"),
                Outcome::TryAgain(why) => {
                    println!("{place}: {why}; retrying later");
                    consumer.nack_because(record, None, why)?;
                }
                Outcome::Never(why) => {
                    println!("{place}: {why}; to the dead-letter queue");
                    consumer.reject(record, why)?;
                }
            }
        }
    }
    consumer.close().await
}
