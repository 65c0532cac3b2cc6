//! End to end: this test binary runs itself again as a child process under `LD_PRELOAD` of the
//! built library, the child fsyncs and fdatasyncs files, and the log it leaves is checked.
//!
//! The library is the one cargo built next to this binary (`target/<profile>/`).

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Set for the child: the directory it writes its files in.
const CHILD_DIR_ENV: &str = "SLUICE_JEPSEN_FSYNC_LOG_TEST_CHILD";
/// The child's name as a test, to run it alone.
const CHILD_TEST: &str = "child_process";
/// How long the child may take.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn given_a_log_when_files_are_synced_should_record_each_size_before_the_sync() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("fsync.log");
    let work = dir.path().join("work");
    // A record a killed predecessor left half written: the child's marker must end it.
    fs::write(&log, "5 /cut/sho").unwrap();

    let pid = run_child(&work, Some(&log));

    let data = work.canonicalize().unwrap().join("data");
    let expected = format!("5 /cut/sho\n# pid {pid}\n100 {0}\n123 {0}\n", data.display());
    assert_eq!(fs::read_to_string(&log).unwrap(), expected);
}

#[test]
fn given_no_log_variable_when_files_are_synced_should_pass_through() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");

    // The child checks every result and errno itself; nothing else may appear.
    run_child(&work, None);

    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["work"]);
}

/// What the tests above run in a child process, under the library.
#[test]
#[ignore = "the child process of the other tests; does nothing on its own"]
fn child_process() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let dir = Path::new(&dir);
    fs::create_dir_all(dir).unwrap();

    // Synced twice, at 100 and 123 bytes, then 7 bytes more that are never synced.
    let mut data = File::create(dir.join("data")).unwrap();
    data.write_all(&[1; 100]).unwrap();
    with_errno(libc::EXDEV, || data.sync_data().unwrap());
    data.write_all(&[2; 23]).unwrap();
    with_errno(libc::EXDEV, || data.sync_all().unwrap());
    data.write_all(&[3; 7]).unwrap();

    // Not recorded: a directory, and a file that no longer has a name.
    File::open(dir).unwrap().sync_all().unwrap();
    let mut gone = File::create(dir.join("gone")).unwrap();
    gone.write_all(b"gone").unwrap();
    fs::remove_file(dir.join("gone")).unwrap();
    gone.sync_data().unwrap();

    // A failed call keeps the real errno.
    for sync in [libc::fsync, libc::fdatasync] {
        // SAFETY: fsync and fdatasync accept any fd; -1 only makes them fail.
        assert_eq!(unsafe { sync(-1) }, -1);
        assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EBADF));
    }
}

/// Runs `sync` with `errno` set to `value` and checks the wrapper left it so.
fn with_errno(value: i32, sync: impl FnOnce()) {
    // SAFETY: this thread's errno, valid for the thread's lifetime.
    unsafe { *libc::__errno_location() = value };
    sync();
    assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(value), "errno changed by a successful sync");
}

/// Runs [`child_process`] under the library, writing in `work` and logging to `log`; returns its
/// pid once it exited successfully.
fn run_child(work: &Path, log: Option<&Path>) -> u32 {
    let exe = std::env::current_exe().unwrap();
    let mut command = Command::new(&exe);
    command.args(["--exact", CHILD_TEST, "--ignored", "--nocapture", "--test-threads=1"]);
    command.env("LD_PRELOAD", library(&exe)).env(CHILD_DIR_ENV, work);
    match log {
        Some(log) => command.env("SLUICE_JEPSEN_FSYNC_LOG", log),
        None => command.env_remove("SLUICE_JEPSEN_FSYNC_LOG"),
    };
    // Piped, read after the exit: the child writes a few lines only.
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let pid = child.id();
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the child process did not exit within {CHILD_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(status.success(), "the child process failed: {status}\n{stderr}");
    // The child really ran the test, not zero tests.
    assert!(work.join("data").exists(), "the child process did not run {CHILD_TEST}");
    pid
}

/// The library, built by cargo next to this test binary (`target/<profile>/deps/<test>`):
/// `cargo test` builds a cdylib's tests but not the cdylib itself, so this builds it (once per
/// test process; cargo makes a second call a no-op).
fn library(exe: &Path) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let profile_dir = exe.parent().and_then(Path::parent).unwrap();
            let target_dir = profile_dir.parent().unwrap();
            let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
                Some("debug") => "dev",
                Some(name) => name,
                None => panic!("no profile directory above {}", exe.display()),
            };
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-p", "sluice-jepsen-fsync-log", "--profile", profile, "--target-dir"])
                .arg(target_dir)
                .status()
                .expect("running cargo");
            assert!(status.success(), "building sluice-jepsen-fsync-log failed: {status}");
            let library = profile_dir.join("libsluice_jepsen_fsync_log.so");
            assert!(library.exists(), "cargo built the library but {} is missing", library.display());
            library
        })
        .clone()
}
