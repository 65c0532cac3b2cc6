//! Transactions against three broker processes (docs/TRANSACTIONS.md): a `read_committed`
//! consumer sees each transaction over 4 partitions of 2 topics whole or not at all — committed
//! ones whole, aborted ones never — also when the coordinator's broker is SIGKILLed while a
//! commit writes its markers; a producer that dies mid-transaction is aborted by its timeout;
//! a new instance of a transactional id fences the old one, whose commit is then refused.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use sluice_client::{
    Client, ConsumerConfig, ErrorCode, Isolation, ProducerRecord, SeekTo, TopicConfig, TransactionalConfig,
    TransactionalProducer,
};
use sluice_system_tests::{Cluster, within};

const TOPICS: [&str; 2] = ["txn-a", "txn-b"];
const LIMIT: Duration = Duration::from_secs(240);

/// One transaction's records: `{label}-{i}` to each of the 4 partitions.
async fn send_four(producer: &mut TransactionalProducer, label: &str) {
    producer.begin().expect("begin");
    for (i, (topic, partition)) in TOPICS.iter().flat_map(|t| [(*t, 0), (*t, 1)]).enumerate() {
        let record = ProducerRecord::new(topic, format!("{label}-{i}")).partition(partition);
        producer.send(record).await.expect("send");
    }
}

/// Every value of both topics a consumer at `isolation` reads, up to the end offsets it sees
/// (the last stable offset for `read_committed`).
async fn read_all(client: &Client, isolation: Isolation) -> Vec<String> {
    let mut values = Vec::new();
    for topic in TOPICS {
        let config = ConsumerConfig { start: SeekTo::Earliest, isolation, ..ConsumerConfig::default() };
        let mut consumer = client.consumer(config).expect("consumer");
        consumer.assign(topic, &[]).await.expect("assign");
        let ends = consumer.end_offsets().await.expect("end offsets");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ends.iter().all(|(&p, &end)| end == 0 || consumer.position(p) >= Some(end)) {
            assert!(Instant::now() < deadline, "reading {topic} to {ends:?} took over 30 s");
            for r in consumer.poll(Duration::from_millis(500)).await.expect("poll") {
                values.push(String::from_utf8_lossy(r.value()).into_owned());
            }
        }
    }
    values
}

/// Waits until no transaction is open on any partition of either topic: the last stable
/// offset has caught up with the high watermark.
async fn wait_until_decided(client: &Client) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut open = Vec::new();
        for topic in TOPICS {
            match client.admin().describe_topic(topic).await {
                Ok(d) => open.extend(
                    d.partitions
                        .iter()
                        .filter(|p| p.last_stable_offset.as_ref().ok() != p.log_end_offset.as_ref().ok())
                        .map(|p| format!("{topic}/{}", p.partition)),
                ),
                Err(e) => open.push(format!("{topic}: {e}")),
            }
        }
        if open.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "transactions still open after 60 s on {open:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The labels of the transactions whose records were read, with how many of each.
fn by_label(values: &[String]) -> BTreeMap<String, usize> {
    let mut labels = BTreeMap::new();
    for v in values {
        let label = v.rsplit_once('-').map_or(v.as_str(), |(l, _)| l);
        *labels.entry(label.to_owned()).or_default() += 1;
    }
    labels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_are_all_or_nothing_through_a_coordinator_kill_timeouts_and_fencing() {
    // Checkpoints every 100 records: the coordinator killed below is replaced by one that
    // loads from a checkpoint, the log before it trimmed.
    let mut cluster = Cluster::start_with(3, "[transactions]\ncheckpoint_interval_records = 100\n").await;
    within(LIMIT, "the transactions test", async {
        let client = cluster.client().await;
        for topic in TOPICS {
            client.admin().create_topic(topic, &TopicConfig::new(2, 3)).await.expect("create");
            client.admin().wait_for_leaders(topic, Duration::from_secs(30)).await.expect("leaders");
        }
        let mut committed: BTreeSet<String> = BTreeSet::new();
        let mut never: BTreeSet<String> = BTreeSet::new();

        eprintln!("--- 40 transactions, every other one aborted");
        let mut producer = client.transactional_producer(TransactionalConfig::new("tx-main")).await.expect("init");
        for round in 0..40 {
            let label = format!("r{round}");
            send_four(&mut producer, &label).await;
            if round % 2 == 0 {
                producer.commit().await.expect("commit");
                committed.insert(label);
            } else {
                // Written first, so that the abort has something to hide.
                producer.flush().await.expect("flush");
                producer.abort().await.expect("abort");
                never.insert(label);
            }
        }

        eprintln!("--- a commit while its coordinator's broker is SIGKILLed");
        let coordinator = client.admin().describe_transaction("tx-main").await.expect("describe").coordinator;
        send_four(&mut producer, "killed").await;
        let commit = tokio::spawn(async move { (producer.commit().await, producer) });
        tokio::time::sleep(Duration::from_millis(3)).await;
        cluster.kill(coordinator);
        let (outcome, _producer) = commit.await.expect("the commit task");
        eprintln!("commit across the kill of broker {coordinator}: {outcome:?}");
        let acknowledged = outcome.is_ok();
        cluster.restart(coordinator);
        cluster.wait_ready().await;

        eprintln!("--- a producer that dies mid-transaction is aborted by its timeout");
        let short = TransactionalConfig {
            timeout: Duration::from_secs(2),
            max_batch_bytes: 1,
            ..TransactionalConfig::new("tx-dies")
        };
        let mut dying = client.transactional_producer(short).await.expect("init");
        send_four(&mut dying, "died").await;
        drop(dying);
        never.insert("died".into());

        eprintln!("--- a new instance fences the old one and aborts its open transaction");
        let eager = TransactionalConfig { max_batch_bytes: 1, ..TransactionalConfig::new("tx-fenced") };
        let mut old = client.transactional_producer(eager.clone()).await.expect("init");
        send_four(&mut old, "zombie").await;
        let mut new = client.transactional_producer(eager).await.expect("init a second instance");
        let refused = old.commit().await.expect_err("the fenced instance cannot commit");
        assert_eq!(refused.code(), Some(ErrorCode::ProducerFenced), "{refused}");
        never.insert("zombie".into());
        send_four(&mut new, "successor").await;
        new.commit().await.expect("the new instance commits");
        committed.insert("successor".into());

        wait_until_decided(&client).await;
        let seen = by_label(&read_all(&client, Isolation::ReadCommitted).await);
        for (label, n) in &seen {
            assert_eq!(*n, 4, "transaction {label} is torn: {n} of its 4 records are visible");
        }
        let visible: BTreeSet<String> = seen.keys().cloned().collect();
        let killed_visible = visible.contains("killed");
        eprintln!("the commit across the kill is {}", if killed_visible { "visible" } else { "not visible" });
        assert!(killed_visible || !acknowledged, "an acknowledged commit is not visible");
        if killed_visible {
            committed.insert("killed".into());
        }
        assert_eq!(visible, committed, "read_committed shows exactly the committed transactions");
        assert!(visible.is_disjoint(&never), "aborted, timed-out or fenced records are visible: {visible:?}");

        let everything = by_label(&read_all(&client, Isolation::ReadUncommitted).await);
        assert!(never.iter().all(|l| everything.contains_key(l)), "read_uncommitted shows what was aborted too");
    })
    .await;
    cluster.stop_all().await;
}
