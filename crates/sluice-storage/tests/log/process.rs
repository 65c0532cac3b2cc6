//! Two processes and one log directory: the test binary runs itself again as a child that tries
//! to open the directory the parent holds, and reports the outcome by its exit code.

use std::path::Path;
use std::process::Command;

use sluice_storage::{Log, StorageError};

use super::support::{entries, open, small_config};

/// Names the directory the child should try to open; the child test does nothing without it.
const DIR_VAR: &str = "SLUICE_STORAGE_LOCK_PROBE_DIR";
/// The child's full test path, for `--exact`.
const CHILD_TEST: &str = "process::lock_probe_child";

/// Exit codes of the child.
const OPENED: i32 = 20;
const LOCKED: i32 = 21;
const OTHER_ERROR: i32 = 22;

/// The child side: when `DIR_VAR` is set, tries to open that directory, prints the outcome and
/// exits with a code saying whether it was refused as `Locked`. A no-op in a normal test run.
#[test]
fn lock_probe_child() {
    let Some(dir) = std::env::var_os(DIR_VAR) else { return };
    let code = match Log::open(&dir, small_config()) {
        Ok(log) => {
            println!("lock probe: opened, last entry {:?}", log.last_id());
            OPENED
        }
        Err(e @ StorageError::Locked { .. }) => {
            println!("lock probe: refused: {e}");
            LOCKED
        }
        Err(e) => {
            println!("lock probe: failed: {e}");
            OTHER_ERROR
        }
    };
    std::process::exit(code);
}

/// Runs this test binary as a child that probes `dir`, and returns its exit code.
fn probe(dir: &Path) -> i32 {
    let exe = std::env::current_exe().expect("path of the test binary");
    let out = Command::new(exe)
        .args(["--exact", CHILD_TEST, "--nocapture"])
        .env(DIR_VAR, dir)
        .output()
        .expect("run the child process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("lock probe:"), "the child did not run the probe: {stdout}");
    out.status.code().unwrap_or_else(|| panic!("the child was killed: {:?}", out.status))
}

/// Checks that a second process cannot open a log directory while this one holds it, and can
/// once it is closed (the lock goes with the handle, not with a file left behind).
#[test]
fn given_a_log_held_by_this_process_another_process_should_be_refused_until_it_is_closed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path(), &small_config());
    log.append(&entries(1..11, 1)).expect("append");
    assert_eq!(probe(dir.path()), LOCKED, "the child must be refused while the parent holds the log");
    let again = Log::open(dir.path(), small_config()).expect_err("a second handle in this process");
    assert!(matches!(&again, StorageError::Locked { path } if path == dir.path()), "{again:?}");
    assert!(again.to_string().contains(&dir.path().display().to_string()), "{again}");
    drop(log);
    assert_eq!(probe(dir.path()), OPENED, "the child must open the log once the parent closed it");
    assert!(dir.path().join("LOCK").exists(), "the lock file stays; only the lock is released");
}
