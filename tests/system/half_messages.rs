//! Half messages (RocketMQ's transactional messages) against three broker processes
//! (docs/TRANSACTIONS.md): committed ones become visible and rolled-back ones never do; one
//! whose producer dies is checked back with a restarted member of its group and committed —
//! and while no member is connected it waits, its attempts uncounted, instead of being
//! dropped; one whose checks stay unanswered is left undecided for an operator, who aborts it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_client::{
    CheckAnswer, Client, HalfCheck, HalfConfig, ProducerRecord, TopicConfig, TransactionChecker, TransactionInfo,
};
use sluice_system_tests::{Cluster, read_topic, within};

const TOPIC: &str = "half";
const GROUP: &str = "orders";
const LIMIT: Duration = Duration::from_secs(180);
/// Quick check-backs, so that a transaction runs out of them within the test.
const BROKER_CONFIG: &str =
    "[transactions]\ncheck_initial_backoff_ms = 300\ncheck_max_backoff_ms = 600\nmax_check_attempts = 3\n";

/// The application's record of how each local transaction ended, by transactional id.
#[derive(Default)]
struct Ledger(Mutex<HashMap<String, CheckAnswer>>);

impl TransactionChecker for Ledger {
    fn check(&self, half: &HalfCheck) -> CheckAnswer {
        self.0.lock().unwrap().get(&half.transactional_id).copied().unwrap_or(CheckAnswer::Unknown)
    }
}

fn records(label: &str) -> Vec<ProducerRecord> {
    (0..2).map(|p| ProducerRecord::new(TOPIC, format!("{label}-{p}")).partition(p)).collect()
}

/// Waits until `id`'s state passes `done`.
async fn wait_for(client: &Client, id: &str, what: &str, done: impl Fn(&TransactionInfo) -> bool) -> TransactionInfo {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let info = client.admin().describe_transaction(id).await.expect("describe");
        if done(&info) {
            return info;
        }
        assert!(Instant::now() < deadline, "{id} is not {what} after 40 s: {info:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_messages_are_checked_back_with_a_restarted_producer_and_never_dropped() {
    let mut cluster = Cluster::start_with(3, BROKER_CONFIG).await;
    within(LIMIT, "the half-messages test", async {
        let client = cluster.client().await;
        client.admin().create_topic(TOPIC, &TopicConfig::new(2, 3)).await.expect("create");
        client.admin().wait_for_leaders(TOPIC, Duration::from_secs(30)).await.expect("leaders");
        let ledger = Arc::new(Ledger::default());
        let config = HalfConfig { check_after: Duration::from_secs(1), ..HalfConfig::new(GROUP) };

        let first = client.half_producer(config.clone(), ledger.clone()).await.expect("half producer");
        first.send_half(records("committed")).await.expect("send").commit().await.expect("commit");
        first.send_half(records("rolled-back")).await.expect("send").rollback().await.expect("rollback");
        let orphan = first.send_half(records("checked")).await.expect("send");
        let orphan_id = orphan.transactional_id().to_owned();
        ledger.0.lock().unwrap().insert(orphan_id.clone(), CheckAnswer::Commit);
        drop((orphan, first));
        eprintln!("the producer of {orphan_id} is gone, its local transaction committed");

        tokio::time::sleep(Duration::from_secs(4)).await;
        let waiting = client.admin().describe_transaction(&orphan_id).await.expect("describe");
        assert_eq!(
            (waiting.state.as_str(), waiting.check_attempts, waiting.undecided),
            ("ONGOING", 0, false),
            "with no member of {GROUP} connected, the check-back waits uncounted: {waiting:?}"
        );

        let second = client.half_producer(config, ledger.clone()).await.expect("a restarted member");
        let decided =
            wait_for(&client, &orphan_id, "committed by its check-back", |t| t.state == "COMPLETE_COMMIT").await;
        assert_eq!(decided.ended_by, "CHECK_BACK", "{decided:?}");

        let unknown = second.send_half(records("undecided")).await.expect("send");
        let unknown_id = unknown.transactional_id().to_owned();
        drop(unknown);
        let undecided = wait_for(&client, &unknown_id, "undecided", |t| t.undecided).await;
        assert_eq!((undecided.state.as_str(), undecided.check_attempts), ("ONGOING", 3), "{undecided:?}");
        let listed = client.admin().list_transactions(false, true).await.expect("list");
        assert!(listed.iter().any(|t| t.transactional_id == unknown_id), "txn list --undecided shows it: {listed:?}");
        client.admin().end_transaction(&unknown_id, false).await.expect("an operator aborts it");

        let read = read_topic(&client, TOPIC, Duration::from_secs(30)).await;
        let values: BTreeSet<String> =
            read.values().flatten().map(|r| String::from_utf8_lossy(r.value()).into_owned()).collect();
        let expected: BTreeSet<String> =
            ["committed-0", "committed-1", "checked-0", "checked-1"].into_iter().map(String::from).collect();
        assert_eq!(values, expected, "exactly the committed and the checked-back half messages are visible");
    })
    .await;
    cluster.stop_all().await;
}
