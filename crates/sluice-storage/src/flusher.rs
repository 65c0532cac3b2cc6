//! Group commit: one thread per data directory turns many logs' "make my appends durable"
//! requests into as few fsyncs as possible (DESIGN D3).
//!
//! A request means "every write this log accepted before now must be durable". The flusher
//! takes all requests queued while its previous round ran, fsyncs each distinct log once (in
//! parallel across logs, since fsyncs of different files overlap in the device and the journal),
//! and then completes every request of the round. So under load one fsync covers every append
//! queued before it, and a caller waits at most for the fsync in flight plus its own.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::error::{Result, StorageError};
use crate::log::Log;

/// Called once the request's writes are durable, or with the error that stopped the log. It runs
/// on the flusher thread, so it must be quick (send on a channel, wake a task).
pub type FlushCallback = Box<dyn FnOnce(Result<()>) + Send>;

/// A group-commit flusher shared by every log on one data directory.
pub struct Flusher {
    shared: Arc<Queue>,
    thread: Option<JoinHandle<()>>,
}

struct Queue {
    state: Mutex<QueueState>,
    wake: Condvar,
}

#[derive(Default)]
struct QueueState {
    requests: Vec<(Arc<Log>, FlushCallback)>,
    stopping: bool,
}

impl Flusher {
    /// Starts the flusher thread. `max_parallel_syncs` bounds how many logs are fsynced at once
    /// in one round (at least 1).
    pub fn start(name: &str, max_parallel_syncs: usize) -> Flusher {
        let shared = Arc::new(Queue { state: Mutex::new(QueueState::default()), wake: Condvar::new() });
        let queue = Arc::clone(&shared);
        let parallel = max_parallel_syncs.max(1);
        let thread = std::thread::Builder::new()
            .name(format!("flush-{name}"))
            .spawn(move || run(&queue, parallel))
            .expect("spawning the flusher thread");
        Flusher { shared, thread: Some(thread) }
    }

    /// Asks for everything `log` has accepted so far to be made durable; `done` is called when it
    /// is. After [`Flusher::stop`] the request fails at once.
    pub fn request(&self, log: &Arc<Log>, done: FlushCallback) {
        let mut q = self.shared.state.lock().expect("flusher lock poisoned");
        if q.stopping {
            drop(q);
            done(Err(StorageError::Failed { path: log.dir().to_owned(), reason: "the flusher has stopped".into() }));
            return;
        }
        q.requests.push((Arc::clone(log), done));
        drop(q);
        self.shared.wake.notify_one();
    }

    /// Blocks until everything `log` has accepted so far is durable.
    pub fn flush(&self, log: &Arc<Log>) -> Result<()> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.request(log, Box::new(move |r| drop(tx.send(r))));
        rx.recv().expect("the flusher always completes a request")
    }

    /// Completes the queued requests and stops the thread.
    pub fn stop(&mut self) {
        self.shared.state.lock().expect("flusher lock poisoned").stopping = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            t.join().expect("flusher thread panicked");
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(queue: &Queue, parallel: usize) {
    loop {
        let batch = {
            let mut q = queue.state.lock().expect("flusher lock poisoned");
            while q.requests.is_empty() && !q.stopping {
                q = queue.wake.wait(q).expect("flusher lock poisoned");
            }
            if q.requests.is_empty() {
                return;
            }
            std::mem::take(&mut q.requests)
        };
        round(batch, parallel);
    }
}

/// One group commit: fsync each distinct log once, then complete every request.
fn round(batch: Vec<(Arc<Log>, FlushCallback)>, parallel: usize) {
    let mut by_log: HashMap<*const Log, (Arc<Log>, Vec<FlushCallback>)> = HashMap::new();
    for (log, done) in batch {
        by_log.entry(Arc::as_ptr(&log)).or_insert_with(|| (log, Vec::new())).1.push(done);
    }
    let (logs, callbacks): (Vec<Arc<Log>>, Vec<Vec<FlushCallback>>) = by_log.into_values().unzip();
    let results: Vec<std::result::Result<(), String>> = if logs.len() == 1 || parallel == 1 {
        logs.iter().map(|log| sync_one(log)).collect()
    } else {
        let chunk = logs.len().div_ceil(parallel);
        std::thread::scope(|scope| {
            let handles: Vec<_> = logs
                .chunks(chunk)
                .map(|part| scope.spawn(move || part.iter().map(|log| sync_one(log)).collect::<Vec<_>>()))
                .collect();
            handles.into_iter().flat_map(|h| h.join().expect("sync thread panicked")).collect()
        })
    };
    for ((log, callbacks), result) in logs.into_iter().zip(callbacks).zip(results) {
        for done in callbacks {
            done(result.clone().map_err(|reason| StorageError::Failed { path: log.dir().to_owned(), reason }));
        }
    }
}

fn sync_one(log: &Log) -> std::result::Result<(), String> {
    log.sync().map(drop).map_err(|e| e.to_string())
}
