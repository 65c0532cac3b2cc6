//! Running the `sluice` CLI (or any program) with a time limit, capturing what it printed.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::binaries::binaries;

/// How a finished program ended and what it printed.
#[derive(Debug)]
pub struct Output {
    /// Its exit status.
    pub status: ExitStatus,
    /// Standard output, as text (invalid UTF-8 replaced).
    pub stdout: String,
    /// Standard error, as text (invalid UTF-8 replaced).
    pub stderr: String,
}

impl Output {
    /// Panics, showing both streams, unless the program exited with status 0.
    pub fn assert_success(&self, what: &str) -> &Output {
        assert!(
            self.status.success(),
            "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless the program failed (non-zero exit) and said something on standard error
    /// containing every one of `needles`, ignoring case.
    pub fn assert_failure(&self, what: &str, needles: &[&str]) -> &Output {
        assert!(
            !self.status.success() && self.status.code().is_some(),
            "{what} should exit non-zero, but it ended with {}:\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        let said = self.stderr.to_lowercase();
        for needle in needles {
            assert!(
                said.contains(&needle.to_lowercase()),
                "{what}: stderr does not mention {needle:?}:\n{}",
                self.stderr
            );
        }
        self
    }
}

/// Runs `sluice --bootstrap BOOTSTRAP ARGS...`, feeding it `stdin`, and kills it if it has not
/// finished within `limit` (then panics with what it printed so far).
pub async fn sluice(bootstrap: &str, args: &[&str], stdin: Option<Vec<u8>>, limit: Duration) -> Output {
    let mut all = vec!["--bootstrap", bootstrap];
    all.extend_from_slice(args);
    run(&binaries().cli, &all, &[], stdin, limit).await
}

/// Runs `program ARGS...` with the extra environment `env`, feeding it `stdin` (or nothing),
/// and kills it if it has not finished within `limit` (then panics with what it printed).
pub async fn run<S: AsRef<OsStr>>(
    program: &Path,
    args: &[S],
    env: &[(&str, &OsStr)],
    stdin: Option<Vec<u8>>,
    limit: Duration,
) -> Output {
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let shown = format!("{command:?}");
    tokio::task::spawn_blocking(move || run_blocking(command, &shown, stdin, limit)).await.expect("the runner thread")
}

fn run_blocking(mut command: Command, shown: &str, stdin: Option<Vec<u8>>, limit: Duration) -> Output {
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    let mut input = child.stdin.take().expect("piped stdin");
    // Threads feed and drain the pipes, so a program blocked on a full pipe cannot hang us.
    let feeder = std::thread::spawn(move || {
        if let Some(bytes) = stdin {
            // The program may exit without reading everything (an error): not ours to report.
            let _ = input.write_all(&bytes);
        }
    });
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll a child process") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let (out, err) = (collect(stdout), collect(stderr));
            panic!("{shown} did not finish within {limit:?}; killed.\nstdout:\n{out}\nstderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = feeder.join();
    Output { status, stdout: collect(stdout), stderr: collect(stderr) }
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

fn collect(reader: JoinHandle<Vec<u8>>) -> String {
    String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned()
}

/// A `sluice` process running in the background (a consumer the test SIGKILLs), its standard
/// output going to a file; SIGKILLed when dropped, so a failing test leaves none behind.
#[derive(Debug)]
pub struct Background(std::process::Child);

impl Background {
    /// Starts `sluice --bootstrap BOOTSTRAP ARGS...` writing its standard output to `out`.
    pub fn start(bootstrap: &str, args: &[&str], out: &Path) -> Background {
        let stdout = std::fs::File::create(out).expect("the process's output file");
        let child = Command::new(&binaries().cli)
            .args(["--bootstrap", bootstrap])
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .expect("start sluice");
        Background(child)
    }

    /// SIGKILLs it and waits for it to end.
    pub fn kill(&mut self) {
        self.0.kill().expect("SIGKILL the process");
        self.0.wait().expect("reap it");
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (partition, offset) of each message `consume --output json` printed to `path` so far.
pub fn printed_positions(path: &Path) -> Vec<(u32, u64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|v| Some((u32::try_from(v["partition"].as_u64()?).ok()?, v["offset"].as_u64()?)))
        .collect()
}
