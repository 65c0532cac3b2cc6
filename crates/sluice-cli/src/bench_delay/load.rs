//! The senders and the reader of `sluice bench delay`.

use super::*;

/// Counters for the progress line.
#[derive(Default)]
pub(super) struct Progress {
    pub(super) acknowledged: AtomicU64,
    pub(super) received: AtomicU64,
}

/// Prints a progress line to standard error every second until aborted.
pub(super) fn report_progress(progress: Arc<Progress>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
        let (mut last_acked, mut last_received) = (0, 0);
        loop {
            tick.tick().await;
            let acked = progress.acknowledged.load(Ordering::Relaxed);
            let received = progress.received.load(Ordering::Relaxed);
            eprintln!(
                "[{:>4}s] {acked} delayed messages acknowledged, {received} released and read; last second: {} acks/s, {} read/s",
                start.elapsed().as_secs(),
                acked - last_acked,
                received - last_received,
            );
            (last_acked, last_received) = (acked, received);
        }
    })
}

/// When each delayed message is due.
#[derive(Debug, Clone, Copy)]
pub(super) enum Due {
    /// This many ms after it is sent.
    After(u64),
    /// At this time, ms since the Unix epoch.
    At(u64),
}

/// One producer sending `count` copies of a record, paced or as fast as acknowledged.
pub(super) struct Sender {
    pub(super) client: Client,
    /// What is sent, its due time added.
    pub(super) record: ProducerRecord,
    /// Delayed (when), or plain.
    pub(super) due: Option<Due>,
    pub(super) count: u64,
    /// Messages per second; `None`: as fast as the window allows.
    pub(super) rate: Option<u32>,
    /// No message is offered this long after the sender started.
    pub(super) run_for: Option<Duration>,
    pub(super) max_in_flight: usize,
    /// Set to stop offering; set by the sender itself on a failed delivery.
    pub(super) stop: Arc<AtomicBool>,
    /// Counts acknowledgements, if given.
    pub(super) progress: Option<Arc<Progress>>,
    /// Files each acknowledgement's latency under the phase current when it was offered.
    pub(super) phase: Option<Arc<AtomicUsize>>,
}

/// What a [`Sender`] measured.
#[derive(Debug)]
pub(super) struct Sent {
    pub(super) offered: u64,
    pub(super) acknowledged: u64,
    pub(super) errors: u64,
    pub(super) first_error: Option<String>,
    /// Send-to-acknowledgement latency per phase (one phase without `Sender::phase`).
    pub(super) latency_us: Vec<Histogram<u64>>,
    /// From the first offer to the last acknowledgement.
    pub(super) seconds: f64,
}

impl Sent {
    pub(super) fn new(phases: usize) -> Result<Sent> {
        Ok(Sent {
            offered: 0,
            acknowledged: 0,
            errors: 0,
            first_error: None,
            latency_us: (0..phases).map(|_| new_histogram()).collect::<Result<_>>()?,
            seconds: 0.0,
        })
    }

    pub(super) fn rate(&self) -> f64 {
        self.acknowledged as f64 / self.seconds.max(1e-9)
    }
}

impl Sender {
    /// The next message: the record, due as `due` says.
    pub(super) fn next_record(&self) -> ProducerRecord {
        let record = self.record.clone();
        match self.due {
            None => record,
            Some(Due::At(at)) => record.deliver_at(at),
            Some(Due::After(ms)) => record.deliver_at(now_ms() + ms),
        }
    }

    pub(super) async fn run(self) -> Result<Sent> {
        let producer = self.client.producer(ProducerConfig::default()).await?;
        let producer = &producer;
        let mut sent = Sent::new(if self.phase.is_some() { PHASES } else { 1 })?;
        let mut pending = FuturesUnordered::new();
        let start = Instant::now();
        let tokio_start = tokio::time::Instant::now();
        let until = self.run_for.map(|d| start + d);
        loop {
            let more = sent.offered < self.count
                && !self.stop.load(Ordering::Relaxed)
                && until.is_none_or(|t| Instant::now() < t);
            if !more && pending.is_empty() {
                break;
            }
            let window_open = more && pending.len() < self.max_in_flight;
            let on_time = self.rate.is_none_or(|rate| sent.offered < scheduled(start.elapsed(), rate));
            let next_slot = tokio_start + self.rate.map_or(Duration::ZERO, |rate| slot(sent.offered, rate));
            tokio::select! {
                biased;
                Some((phase, latency, result)) = pending.next(), if !pending.is_empty() => {
                    self.count(&mut sent, phase, latency, result);
                }
                // An async block, so the record is only made when it is offered.
                (offered_at, delivery) = async { (Instant::now(), producer.enqueue(self.next_record()).await) },
                    if window_open && on_time =>
                {
                    let phase = self.phase.as_ref().map_or(0, |p| p.load(Ordering::Relaxed));
                    let delivery = delivery?;
                    pending.push(async move {
                        let result = delivery.wait().await;
                        (phase, offered_at.elapsed(), result)
                    });
                    sent.offered += 1;
                }
                () = tokio::time::sleep_until(next_slot), if window_open && !on_time => {}
            }
        }
        sent.seconds = start.elapsed().as_secs_f64();
        producer.close().await;
        Ok(sent)
    }

    pub(super) fn count(
        &self,
        sent: &mut Sent,
        phase: usize,
        latency: Duration,
        result: sluice_client::Result<RecordMetadata>,
    ) {
        match result {
            Ok(_) => {
                sent.acknowledged += 1;
                if let Some(progress) = &self.progress {
                    progress.acknowledged.fetch_add(1, Ordering::Relaxed);
                }
                crate::bench::record_latency(&mut sent.latency_us[phase], latency);
            }
            Err(e) => {
                sent.errors += 1;
                if sent.first_error.is_none() {
                    eprintln!("stopping: {e}");
                    sent.first_error = Some(e.to_string());
                }
                self.stop.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Reads every partition of a topic from where they ended at the start, counting the run's
/// released messages.
pub(super) struct Reader {
    pub(super) consumer: Consumer,
    /// The run id every one of the run's values starts with.
    pub(super) marker: Bytes,
    /// How many to read: unknown (`u64::MAX`) until the sending is over.
    pub(super) expected: Arc<AtomicU64>,
    pub(super) deadline: Instant,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) progress: Arc<Progress>,
}

/// What the [`Reader`] measured.
#[derive(Debug)]
pub(super) struct Received {
    pub(super) received: u64,
    /// Read before their due time (none should be).
    pub(super) early: u64,
    /// The most any of them was early, µs.
    pub(super) max_early_us: u64,
    /// Messages of the run without a readable due time (none should be).
    pub(super) undated: u64,
    /// Other messages on the topic (another run's).
    pub(super) foreign: u64,
    /// Receive time minus due time, µs.
    pub(super) lateness_us: Histogram<u64>,
    pub(super) first: Option<Instant>,
    pub(super) last: Option<Instant>,
    pub(super) releases: Releases,
}

/// Messages read per second since the reader started.
#[derive(Debug, Default)]
pub(super) struct Releases {
    pub(super) per_second: Vec<u64>,
}

impl Releases {
    pub(super) fn add(&mut self, second: usize, messages: u64) {
        if self.per_second.len() <= second {
            self.per_second.resize(second + 1, 0);
        }
        self.per_second[second] += messages;
    }

    /// The most read in one second.
    pub(super) fn peak(&self) -> u64 {
        self.per_second.iter().copied().max().unwrap_or(0)
    }
}

impl Received {
    /// Messages read per second from the first to the last.
    pub(super) fn rate(&self) -> f64 {
        match (self.first, self.last) {
            (Some(first), Some(last)) if last > first => self.received as f64 / (last - first).as_secs_f64(),
            _ => 0.0,
        }
    }
}

impl Reader {
    /// Assigns every partition of `topic` at its current end.
    pub(super) async fn open(
        client: &Client,
        topic: &str,
        marker: Bytes,
        deadline: Instant,
        progress: Arc<Progress>,
    ) -> Result<Reader> {
        let mut consumer = client.consumer(ConsumerConfig::default())?;
        consumer.assign(topic, &[]).await?;
        for partition in consumer.assignment() {
            consumer.seek(partition, SeekTo::Latest).await?;
        }
        Ok(Reader {
            consumer,
            marker,
            expected: Arc::new(AtomicU64::new(u64::MAX)),
            deadline,
            stop: Arc::default(),
            progress,
        })
    }

    pub(super) async fn run(mut self) -> Result<Received> {
        let mut received = Received {
            received: 0,
            early: 0,
            max_early_us: 0,
            undated: 0,
            foreign: 0,
            lateness_us: new_histogram()?,
            first: None,
            last: None,
            releases: Releases::default(),
        };
        let start = Instant::now();
        while received.received < self.expected.load(Ordering::Relaxed)
            && Instant::now() < self.deadline
            && !self.stop.load(Ordering::Relaxed)
        {
            let records = self.consumer.poll(POLL_WAIT).await?;
            if records.is_empty() {
                continue;
            }
            let (now, now_us) = (Instant::now(), now_us());
            let before = received.received;
            for record in &records {
                if !record.value().starts_with(&self.marker) {
                    received.foreign += 1;
                    continue;
                }
                received.received += 1;
                let Some(due_ms) = deliver_at_ms(record.properties()) else {
                    received.undated += 1;
                    continue;
                };
                let lateness_us = now_us - i64::try_from(due_ms).unwrap_or(i64::MAX).saturating_mul(1000);
                match u64::try_from(lateness_us) {
                    Ok(us) => crate::bench::record_latency(&mut received.lateness_us, Duration::from_micros(us)),
                    Err(_) => {
                        received.early += 1;
                        received.max_early_us = received.max_early_us.max(lateness_us.unsigned_abs());
                    }
                }
            }
            let read = received.received - before;
            if read > 0 {
                received.first.get_or_insert(now);
                received.last = Some(now);
                received.releases.add((now - start).as_secs() as usize, read);
                self.progress.received.fetch_add(read, Ordering::Relaxed);
            }
        }
        Ok(received)
    }
}

/// A [`Reader`] running in its own task.
pub(super) struct ReaderTask {
    pub(super) expected: Arc<AtomicU64>,
    pub(super) task: tokio::task::JoinHandle<Result<Received>>,
}

impl ReaderTask {
    pub(super) fn spawn(reader: Reader) -> ReaderTask {
        ReaderTask { expected: Arc::clone(&reader.expected), task: tokio::spawn(reader.run()) }
    }

    /// Tells the reader how many messages it reads in all, and waits until it has (or its
    /// deadline passed, or it was stopped).
    pub(super) async fn finish(self, expected: u64) -> Result<Received> {
        self.expected.store(expected, Ordering::Relaxed);
        self.task.await.context("the reading task panicked")?
    }
}

/// Sleeps until `at`, or until `stop` is set.
pub(super) async fn wait_until(at: Instant, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= at {
            return;
        }
        tokio::time::sleep((at - now).min(Duration::from_millis(100))).await;
    }
}
