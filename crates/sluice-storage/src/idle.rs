//! [`IdleCloser`]: closes the `.log` descriptors of segments nobody has used for a while.
//!
//! One per [`SegmentCache`](crate::SegmentCache), so one per data directory. Every segment's
//! [`LogFile`] is registered with it when it is opened (the active segment's included). A thread
//! sweeps them every `idle` interval: a file used since the previous sweep is left open (its use
//! flag is cleared), one unused for a whole interval is closed, unless it holds writes not yet
//! fdatasynced. So a file closes between `idle` and `2 × idle` after its last use, and a busy one
//! never does: a partition being written pays no reopen per append, only one after each idle
//! spell. The thread starts with the first registered file and ends with the cache.
//!
//! Marking a use is one relaxed store to a flag of the file's own, so the append and read paths
//! take no shared lock and read no clock for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::log_file::LogFile;

/// How long a segment's `.log` file may go unused before it is closed, by default: 10 s.
pub const DEFAULT_IDLE_CLOSE: Duration = Duration::from_secs(10);

/// Closes unused `.log` descriptors (see the module doc).
pub(crate) struct IdleCloser {
    /// `None`: never close.
    idle: Option<Duration>,
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    closed: AtomicU64,
    reopened: AtomicU64,
}

#[derive(Default)]
struct State {
    files: Vec<Weak<LogFile>>,
    /// How many of `files` were live at the last pruning: the list is pruned again once it has
    /// doubled, so files opened and dropped between sweeps (cold reads) cannot grow it unbounded.
    live_at_prune: usize,
    started: bool,
    stopping: bool,
}

impl IdleCloser {
    /// A closer that closes files unused for `idle` (`None`: never).
    pub fn new(idle: Option<Duration>) -> IdleCloser {
        let shared = Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            closed: AtomicU64::new(0),
            reopened: AtomicU64::new(0),
        };
        IdleCloser { idle, shared: Arc::new(shared) }
    }

    /// The idle time after which files close; `None`: never.
    pub fn idle(&self) -> Option<Duration> {
        self.idle
    }

    /// Watches `file`, starting the sweeping thread if it is the first. Without an idle time
    /// files are still watched, for [`IdleCloser::sweep`] (tests sweep by hand).
    pub fn watch(&self, file: &Arc<LogFile>) {
        let mut state = self.shared.lock();
        state.files.push(Arc::downgrade(file));
        if state.files.len() >= 2 * state.live_at_prune + 64 {
            state.files.retain(|f| f.strong_count() > 0);
            state.live_at_prune = state.files.len();
        }
        if let Some(idle) = self.idle
            && !state.started
        {
            state.started = true;
            let shared = Arc::clone(&self.shared);
            let spawned = std::thread::Builder::new().name("sluice-idle-close".into()).spawn(move || shared.run(idle));
            if let Err(e) = spawned {
                // Files then stay open, as they did before idle closing: not worth failing a log.
                tracing::warn!("starting the thread that closes idle segment files: {e}");
            }
        }
    }

    /// One sweep now (the thread makes one every `idle`): returns how many files it closed.
    pub fn sweep(&self) -> usize {
        self.shared.sweep()
    }

    pub fn count_reopen(&self) {
        self.shared.reopened.fetch_add(1, Ordering::Relaxed);
    }

    /// Descriptors closed for being idle, and reopened after it, so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.shared.closed.load(Ordering::Relaxed), self.shared.reopened.load(Ordering::Relaxed))
    }
}

impl Drop for IdleCloser {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_all();
    }
}

impl Shared {
    fn run(&self, idle: Duration) {
        loop {
            let deadline = Instant::now() + idle;
            let mut state = self.lock();
            loop {
                if state.stopping {
                    return;
                }
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                state = self.wake.wait_timeout(state, deadline - now).expect("idle closer lock poisoned").0;
            }
            drop(state);
            let closed = self.sweep();
            if closed > 0 {
                tracing::debug!(closed, "closed idle segment files");
            }
        }
    }

    /// Closes every watched file that went unused since the previous sweep, and forgets the
    /// files dropped meanwhile. The files are closed outside the lock: a close is a system call.
    fn sweep(&self) -> usize {
        let live: Vec<Arc<LogFile>> = {
            let mut state = self.lock();
            let live: Vec<_> = state.files.iter().filter_map(Weak::upgrade).collect();
            state.files.retain(|f| f.strong_count() > 0);
            state.live_at_prune = state.files.len();
            live
        };
        let closed = live.iter().filter_map(|f| f.take_if_idle()).count();
        self.closed.fetch_add(closed as u64, Ordering::Relaxed);
        closed
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("idle closer lock poisoned")
    }
}
