//! Half messages, RocketMQ's transactional messages (docs/TRANSACTIONS.md): an order is
//! published only if the local transaction that records it commits. One half message is
//! committed, one rolled back, and one left to the check-back: the checker answers from the
//! "database" where the local transaction stored the half message's transactional id.
//!
//! Start the cluster (`scripts/start-cluster.sh`), then:
//!
//! ```sh
//! cargo run -p sluice-client --example half_message
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_client::{
    CheckAnswer, Client, ClientConfig, ErrorCode, HalfCheck, HalfConfig, ProducerRecord, TopicConfig,
    TransactionChecker,
};

const TOPIC: &str = "example-orders";

/// Stands for the application's database: which local transactions committed.
#[derive(Default)]
struct Orders(Mutex<HashMap<String, bool>>);

impl TransactionChecker for Orders {
    fn check(&self, half: &HalfCheck) -> CheckAnswer {
        let answer = match self.0.lock().unwrap().get(&half.transactional_id) {
            Some(true) => CheckAnswer::Commit,
            Some(false) => CheckAnswer::Rollback,
            None => CheckAnswer::Unknown,
        };
        println!("check-back {} (attempt {}): {answer:?}", half.transactional_id, half.attempt);
        answer
    }
}

#[tokio::main]
async fn main() -> Result<(), sluice_client::Error> {
    let client = Client::connect(ClientConfig::from_env()).await?;
    match client.admin().create_topic(TOPIC, &TopicConfig::new(3, 3)).await {
        Err(e) if e.code() != Some(ErrorCode::TopicExists) => return Err(e),
        _ => {}
    }
    client.admin().wait_for_leaders(TOPIC, Duration::from_secs(10)).await?;
    let orders = Arc::new(Orders::default());
    let config = HalfConfig { check_after: Duration::from_secs(2), ..HalfConfig::new("example-order-service") };
    let producer = client.half_producer(config, orders.clone()).await?;

    for (order, local_commit) in [("order-1", true), ("order-2", false)] {
        let half = producer.send_half(vec![ProducerRecord::new(TOPIC, format!("{order} placed"))]).await?;
        // The local transaction records the half message's id with its own data.
        orders.0.lock().unwrap().insert(half.transactional_id().to_owned(), local_commit);
        if local_commit {
            half.commit().await?
        } else {
            half.rollback().await?
        }
        println!("{order}: {}", if local_commit { "committed" } else { "rolled back" });
    }

    let half = producer.send_half(vec![ProducerRecord::new(TOPIC, "order-3 placed")]).await?;
    let id = half.transactional_id().to_owned();
    orders.0.lock().unwrap().insert(id.clone(), true);
    drop(half); // as if the process died before committing: the brokers will ask
    println!("order-3 left to the check-back; waiting for it");
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let state = client.admin().describe_transaction(&id).await?;
        if state.state == "COMPLETE_COMMIT" {
            println!("order-3 committed by its check-back ({})", state.ended_by);
            return Ok(());
        }
    }
    println!("order-3 is still open: see `sluice txn describe {id}`");
    Ok(())
}
