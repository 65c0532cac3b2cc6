//! The failure-injection suite's fsync log: an `LD_PRELOAD` library that wraps `fsync(2)` and
//! `fdatasync(2)` and, for each call that succeeds on a regular file, appends the file's size
//! and path to the log named by `SLUICE_JEPSEN_FSYNC_LOG`.
//!
//! Why: a SIGKILLed process loses nothing it wrote, because the page cache survives it; a power
//! loss loses everything not fsynced. To test the second, the suite kills a broker, then
//! truncates every file it appended to back to the size it had at its last successful fsync
//! (`sluice_jepsen::unfsynced`). This library is where those sizes come from; there is no lazyfs
//! here (jepsen/README.md, the `lose-unfsynced` fault).
//!
//! The size is taken *before* the real call: bytes another thread appends while the fsync runs
//! are not promised durable by it. The record is written after the call returned 0 and before
//! the wrapper returns, so the caller cannot have acted on an fsync (acknowledged a write) that
//! the log does not show yet. The log needs no fsync of its own: the suite simulates the power
//! loss of the broker, not of the machine that runs the suite.
//!
//! The log, one record per line:
//!
//! ```text
//! \n# pid <pid>\n          once, when a process first opens the log
//! <size> <path>\n          per successful fsync or fdatasync of a regular file
//! ```
//!
//! Each line is one `write(2)` to a file opened with `O_APPEND`, so lines from different threads
//! never interleave. A kill can still cut a record short; the next process's opening `\n`
//! then ends that partial line, so a record line directly followed by a `#` line is a cut one.
//!
//! What it is not: a model of the page cache. Writes through `mmap`, `O_DSYNC` files,
//! `sync_file_range`, `syncfs` and `sync` are not recorded (the broker's append-only files use
//! none of them). Files fsynced after they were unlinked (`(deleted)`) are not recorded either.
//!
//! If it cannot record an fsync that succeeded (the log cannot be opened or written, `/proc` is
//! missing), it aborts the process with a message on stderr: a silently missing record would make
//! the truncation throw away data that was fsynced, and the suite report a loss that is not one.
//!
//! Nothing on the fsync path allocates: the broker calls it from many threads, some inside
//! RocksDB. Without `SLUICE_JEPSEN_FSYNC_LOG` both functions only call the real ones.
//!
//! A slower disk, for benchmarks: with `SLUICE_JEPSEN_FSYNC_DELAY_US=N` every call returns N
//! microseconds after the real one did (`scripts/bench-vs-nats.sh`, `BENCH_FSYNC_DELAY_US`). It
//! models a disk whose every fsync takes longer, not its queueing: calls do not wait for each
//! other. A value that is not a number aborts the process, as a bad log does.

use std::ffi::{CStr, c_int, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, Ordering};

/// The environment variable naming the log.
const LOG_ENV: &CStr = c"SLUICE_JEPSEN_FSYNC_LOG";
/// The environment variable holding the added delay, in microseconds.
const DELAY_ENV: &CStr = c"SLUICE_JEPSEN_FSYNC_DELAY_US";
/// What `/proc/self/fd/<fd>` ends with when the file was unlinked.
const DELETED: &[u8] = b" (deleted)";
/// Room for one record: a size, a space, a path of up to `PATH_MAX` bytes, a newline.
const LINE_CAPACITY: usize = 20 + 1 + libc::PATH_MAX as usize + 1;

/// The C signature of `fsync` and `fdatasync`.
type SyncFn = unsafe extern "C" fn(c_int) -> c_int;

/// The real functions, found with `dlsym(RTLD_NEXT, ..)` on first use.
static REAL_FSYNC: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static REAL_FDATASYNC: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

/// The log's file descriptor, or `None` when `SLUICE_JEPSEN_FSYNC_LOG` is not set.
static LOG_FD: OnceLock<Option<c_int>> = OnceLock::new();
/// The delay added to each call, in microseconds (0 when `SLUICE_JEPSEN_FSYNC_DELAY_US` is unset).
static DELAY_US: OnceLock<u64> = OnceLock::new();

/// `fsync(2)`, recording the file's size when it succeeds.
///
/// # Safety
///
/// The contract of `fsync(2)`: any `fd` may be passed, errors are returned as -1 and `errno`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fsync(fd: c_int) -> c_int {
    logged_sync(fd, &REAL_FSYNC, c"fsync")
}

/// `fdatasync(2)`, recording the file's size when it succeeds.
///
/// # Safety
///
/// The contract of `fdatasync(2)`: any `fd` may be passed, errors are returned as -1 and `errno`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fdatasync(fd: c_int) -> c_int {
    logged_sync(fd, &REAL_FDATASYNC, c"fdatasync")
}

/// Calls the real function named `name` on `fd` and, if it succeeded and the log is on, appends
/// the record describing `fd` as it was before the call. `errno` is the real call's.
fn logged_sync(fd: c_int, real: &AtomicPtr<c_void>, name: &CStr) -> c_int {
    let caller_errno = errno();
    let real = resolve(real, name);
    let mut line = Line::new();
    let log = log_fd().filter(|_| describe(fd, &mut line));
    set_errno(caller_errno);
    // SAFETY: `real` is libc's own fsync or fdatasync, called with the caller's argument.
    let result = unsafe { real(fd) };
    let real_errno = errno();
    if let (0, Some(log)) = (result, log) {
        append(log, line.as_bytes());
    }
    pause(delay_us());
    set_errno(real_errno);
    result
}

/// The added delay, read from the environment on first use.
fn delay_us() -> u64 {
    *DELAY_US.get_or_init(|| {
        // SAFETY: as in `open_log`.
        let value = unsafe { libc::getenv(DELAY_ENV.as_ptr()) };
        if value.is_null() {
            return 0;
        }
        // SAFETY: a NUL-terminated string from the environment.
        let text = unsafe { CStr::from_ptr(value) };
        match text.to_str().ok().and_then(|t| t.parse().ok()) {
            Some(us) => us,
            None => fatal(b"SLUICE_JEPSEN_FSYNC_DELAY_US is not a number of microseconds"),
        }
    })
}

/// Sleeps `us` microseconds, through signals.
fn pause(us: u64) {
    let nanos = us.saturating_mul(1_000);
    let secs = libc::time_t::try_from(nanos / 1_000_000_000).unwrap_or(libc::time_t::MAX);
    let sub = libc::c_long::try_from(nanos % 1_000_000_000).expect("below one second");
    let mut left = libc::timespec { tv_sec: secs, tv_nsec: sub };
    while left.tv_sec > 0 || left.tv_nsec > 0 {
        let asked = left;
        // SAFETY: both pointers are to valid timespecs on this stack.
        if unsafe { libc::nanosleep(&asked, &mut left) } == 0 || errno() != libc::EINTR {
            return;
        }
    }
}

/// The next definition of `name` after this library: libc's.
fn resolve(slot: &AtomicPtr<c_void>, name: &CStr) -> SyncFn {
    let mut found = slot.load(Ordering::Relaxed);
    if found.is_null() {
        // SAFETY: `name` is NUL-terminated; RTLD_NEXT is a valid pseudo-handle in a shared object.
        found = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
        if found.is_null() {
            fatal(b"the real fsync or fdatasync is not found (dlsym)");
        }
        // Relaxed: racing threads store the same address; the code it points to is loaded.
        slot.store(found, Ordering::Relaxed);
    }
    // SAFETY: `found` is the address of libc's fsync or fdatasync, both `int f(int)`.
    unsafe { std::mem::transmute::<*mut c_void, SyncFn>(found) }
}

/// The log, opened on first use; `None` when `SLUICE_JEPSEN_FSYNC_LOG` is not set.
fn log_fd() -> Option<c_int> {
    *LOG_FD.get_or_init(open_log)
}

fn open_log() -> Option<c_int> {
    // SAFETY: a NUL-terminated name; the string returned is only read before anything could
    // change the environment again (the broker never sets variables).
    let path = unsafe { libc::getenv(LOG_ENV.as_ptr()) };
    if path.is_null() {
        return None;
    }
    let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC;
    // SAFETY: `path` is a NUL-terminated string from the environment; the mode is an int.
    let fd = unsafe { libc::open(path, flags, 0o644 as libc::c_uint) };
    if fd < 0 {
        fatal(b"cannot open the file named by SLUICE_JEPSEN_FSYNC_LOG");
    }
    // Ends a record a killed predecessor left half written, and says who writes from here on.
    let mut marker = Line::new();
    // SAFETY: getpid has no preconditions and cannot fail.
    let pid = unsafe { libc::getpid() };
    let fits = marker.push(b"\n# pid ") && marker.push_u64(pid.unsigned_abs().into()) && marker.push(b"\n");
    debug_assert!(fits, "a pid always fits");
    append(fd, marker.as_bytes());
    Some(fd)
}

/// Writes `<size> <path>\n` for `fd` into `line`; false when `fd` is not a regular file or the
/// file was unlinked (there is nothing to truncate then).
fn describe(fd: c_int, line: &mut Line) -> bool {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `stat` is a writable, properly sized struct; a bad fd only makes fstat fail.
    if unsafe { libc::fstat(fd, &mut stat) } != 0 || stat.st_mode & libc::S_IFMT != libc::S_IFREG {
        return false;
    }
    let mut link = Line::new();
    if !(link.push(b"/proc/self/fd/") && link.push_u64(fd.unsigned_abs().into()) && link.push(b"\0")) {
        fatal(b"cannot name /proc/self/fd/<fd>");
    }
    if !(line.push_u64(stat.st_size.unsigned_abs()) && line.push(b" ")) {
        fatal(b"cannot format a size");
    }
    let room = line.spare();
    // The last byte of the buffer is kept for the newline.
    let room_len = room.len() - 1;
    // SAFETY: `link` holds a NUL-terminated path; `room` is writable for `room_len` bytes.
    let len = unsafe { libc::readlink(link.as_bytes().as_ptr().cast(), room.as_mut_ptr().cast(), room_len) };
    let Ok(len) = usize::try_from(len) else {
        fatal(b"cannot read /proc/self/fd/<fd> (is /proc mounted?)");
    };
    if len == room_len {
        fatal(b"a fsynced file's path is too long for the log");
    }
    let path = &room[..len];
    if path.ends_with(DELETED) {
        return false;
    }
    if path.contains(&b'\n') {
        fatal(b"a fsynced file's path holds a newline, which the log cannot record");
    }
    line.len += len;
    line.push(b"\n")
}

/// Appends `bytes` to the log with one `write(2)`.
fn append(fd: c_int, bytes: &[u8]) {
    loop {
        // SAFETY: `bytes` is readable for its length.
        let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if usize::try_from(written) == Ok(bytes.len()) {
            return;
        }
        if written >= 0 || errno() != libc::EINTR {
            fatal(b"cannot write to the file named by SLUICE_JEPSEN_FSYNC_LOG");
        }
    }
}

/// Says why on stderr and aborts: see the crate documentation.
fn fatal(why: &[u8]) -> ! {
    let mut line = Line::new();
    // Truncated if too long; the message is best effort, the abort is not.
    let _ = line.push(b"sluice-jepsen-fsync-log: ") && line.push(why) && line.push(b"\n");
    // SAFETY: the buffer is readable for its length; a failed write changes nothing.
    unsafe { libc::write(libc::STDERR_FILENO, line.as_bytes().as_ptr().cast(), line.len) };
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno, valid for the thread's lifetime.
    unsafe { *libc::__errno_location() }
}

fn set_errno(value: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = value };
}

/// A line built on the stack: the fsync path does not allocate.
struct Line {
    buf: [u8; LINE_CAPACITY],
    len: usize,
}

impl Line {
    fn new() -> Line {
        Line { buf: [0; LINE_CAPACITY], len: 0 }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The unused rest of the buffer.
    fn spare(&mut self) -> &mut [u8] {
        &mut self.buf[self.len..]
    }

    /// Appends `bytes`; false (and nothing appended) when they do not fit.
    #[must_use]
    fn push(&mut self, bytes: &[u8]) -> bool {
        let Some(room) = self.buf.get_mut(self.len..self.len + bytes.len()) else {
            return false;
        };
        room.copy_from_slice(bytes);
        self.len += bytes.len();
        true
    }

    /// Appends `n` in decimal.
    #[must_use]
    fn push_u64(&mut self, mut n: u64) -> bool {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_delay_each_call_returns_that_much_later_with_the_real_outcome() {
        // The only test here that fsyncs: the delay is read once per process.
        // SAFETY: no other thread of this test binary reads the environment meanwhile.
        unsafe { std::env::set_var("SLUICE_JEPSEN_FSYNC_DELAY_US", "30000") };
        let file = tempfile::tempfile().expect("temp file");
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        let started = std::time::Instant::now();
        // SAFETY: a valid descriptor; the wrapper calls libc's fdatasync.
        assert_eq!(unsafe { fdatasync(fd) }, 0);
        assert!(started.elapsed() >= std::time::Duration::from_millis(30), "{:?}", started.elapsed());
        // SAFETY: -1 is never a descriptor: the real call fails with EBADF, which must come back.
        assert_eq!(unsafe { fsync(-1) }, -1);
        assert_eq!(errno(), libc::EBADF);
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        let mut line = Line::new();
        for n in [0, 7, 10, 4096, u64::MAX] {
            assert!(line.push_u64(n) && line.push(b" "));
        }
        assert_eq!(line.as_bytes(), format!("0 7 10 4096 {} ", u64::MAX).as_bytes());
    }

    #[test]
    fn a_push_that_does_not_fit_changes_nothing() {
        let mut line = Line::new();
        assert!(line.push(&[b'x'; LINE_CAPACITY - 1]));
        assert!(!line.push(b"ab"));
        assert_eq!(line.len, LINE_CAPACITY - 1);
        assert!(line.push(b"\n"));
        assert!(!line.push_u64(0));
    }
}
