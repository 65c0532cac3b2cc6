//! Delayed messages and a recurring schedule (docs/DELAYS.md): three messages due in 2, 4 and
//! 6 seconds, the middle one cancelled; a schedule firing every second; a consumer printing
//! each message as it becomes visible, with how late it came.
//!
//! Start the cluster (`scripts/start-cluster.sh`), then:
//!
//! ```sh
//! cargo run -p sluice-client --example delayed            # topic "example-reminders"
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_client::{
    Cadence, Client, ClientConfig, ConsumerConfig, ErrorCode, ProducerConfig, ProducerRecord, SeekTo, TopicConfig,
};

#[tokio::main]
async fn main() -> Result<(), sluice_client::Error> {
    let topic = std::env::args().nth(1).unwrap_or_else(|| "example-reminders".to_owned());
    let client = Client::connect(ClientConfig::from_env()).await?;
    let admin = client.admin();
    match admin.create_topic(&topic, &TopicConfig::new(3, 3)).await {
        Err(e) if e.code() != Some(ErrorCode::TopicExists) => return Err(e),
        _ => {}
    }
    admin.wait_for_leaders(&topic, Duration::from_secs(10)).await?;

    // Read from the end: only what becomes visible from now on.
    let config = ConsumerConfig { start: SeekTo::Latest, ..ConsumerConfig::default() };
    let mut consumer = client.consumer(config)?;
    consumer.assign(&topic, &[]).await?;

    let producer = client.producer(ProducerConfig::default()).await?;
    let mut ids = Vec::new();
    for seconds in [2, 4, 6] {
        let record =
            ProducerRecord::new(topic.as_str(), format!("due in {seconds} s")).delay(Duration::from_secs(seconds));
        // Acknowledged once replicated; the offset comes when it is released.
        let written = producer.send(record).await?;
        let id = written.delayed_id.expect("a delayed record has an id");
        println!("sent \"due in {seconds} s\" as delayed message {id}");
        ids.push(id);
    }
    let outcome = admin.cancel_delayed(&topic, ids[1]).await?;
    println!("cancelled {}: {outcome:?}", ids[1]);
    let pending = admin.list_delayed(&topic, 10).await?;
    println!("{} pending: {:?}", pending.pending, pending.messages.iter().map(|m| m.id).collect::<Vec<_>>());

    let tick = ProducerRecord::new(topic.as_str(), "tick");
    match admin.create_schedule("example-tick", &Cadence::Every(Duration::from_secs(1)), &tick).await {
        Err(e) if e.code() != Some(ErrorCode::ScheduleExists) => return Err(e),
        _ => println!("schedule example-tick fires every second"),
    }

    let until = tokio::time::Instant::now() + Duration::from_secs(8);
    while tokio::time::Instant::now() < until {
        for record in consumer.poll(Duration::from_millis(500)).await? {
            let due: Option<u64> =
                record.properties().find(|(k, _)| *k == "sluice.deliver_at").and_then(|(_, v)| v.parse().ok());
            let late = due.map(|due| now_ms().saturating_sub(due));
            println!(
                "{}/{} offset {}: {} (due {due:?}, read {late:?} ms after)",
                record.topic(),
                record.partition(),
                record.offset(),
                String::from_utf8_lossy(record.value()),
            );
        }
    }
    admin.delete_schedule(&topic, "example-tick").await?;
    println!("schedule example-tick deleted");
    producer.close().await;
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
