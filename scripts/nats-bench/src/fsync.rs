//! The disk's own fsync latency: what an fsync-before-ack broker pays at least once per ack.
//!
//! Appends `--block-bytes` to a new file and fdatasyncs it, `--count` times (`--interval`
//! apart), timing each append plus fdatasync. The file grows with every append, as a log segment does, so each
//! fdatasync also writes the file's new size: the same work as a broker's log append.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::FsyncArgs;
use crate::summary::{Summary, record};

/// Removes the probe file however the run ends.
struct ProbeFile(PathBuf);

impl Drop for ProbeFile {
    fn drop(&mut self) {
        // The file is scratch; failing to remove it leaves only a small file behind.
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the probe and returns its summary (one "message" per synced block).
pub fn run(args: &FsyncArgs) -> Result<Summary> {
    let probe = ProbeFile(probe_path(&args.dir));
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&probe.0)
        .with_context(|| format!("cannot create the probe file {}", probe.0.display()))?;
    let block = vec![0x5a_u8; usize::try_from(args.block_bytes)?];
    let mut summary = Summary::new("fsync", "append+fdatasync")?;
    let start = Instant::now();
    for _ in 0..args.count {
        if start.elapsed() >= args.max_duration {
            break;
        }
        let began = Instant::now();
        append_and_sync(&mut file, &block).with_context(|| format!("append+fdatasync on {}", probe.0.display()))?;
        record(&mut summary.latency_us, began.elapsed());
        summary.messages += 1;
        summary.bytes += args.block_bytes;
        if !args.interval.is_zero() {
            std::thread::sleep(args.interval);
        }
    }
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

fn append_and_sync(file: &mut File, block: &[u8]) -> std::io::Result<()> {
    file.write_all(block)?;
    // `sync_data` is fdatasync(2) on Linux.
    file.sync_data()
}

fn probe_path(dir: &Path) -> PathBuf {
    dir.join(format!(".fsync-probe-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Output;
    use std::time::Duration;

    #[test]
    fn times_every_block_and_removes_its_file() {
        let dir = std::env::temp_dir().join(format!("nats-bench-fsync-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let args = FsyncArgs {
            dir: dir.clone(),
            count: 5,
            block_bytes: 512,
            interval: Duration::from_millis(1),
            max_duration: Duration::from_secs(30),
            output: Output::Json,
        };
        let summary = run(&args).unwrap();
        assert_eq!((summary.messages, summary.bytes, summary.errors), (5, 2560, 0));
        assert_eq!(summary.latency_us.len(), 5);
        assert!(!probe_path(&dir).exists(), "the probe file is removed");
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn a_missing_directory_is_a_clear_error() {
        let args = FsyncArgs {
            dir: "/nonexistent/nats-bench".into(),
            count: 1,
            block_bytes: 1,
            interval: Duration::ZERO,
            max_duration: Duration::from_secs(1),
            output: Output::Plain,
        };
        let error = format!("{:#}", run(&args).unwrap_err());
        assert!(error.contains("cannot create the probe file /nonexistent/nats-bench"), "{error}");
    }
}
