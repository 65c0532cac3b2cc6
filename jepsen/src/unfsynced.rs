//! Losing un-fsynced writes, as a power loss would: after a broker was SIGKILLed (which by
//! itself loses nothing, the page cache survives the process), [`lose_unfsynced`] truncates the
//! files it appended to back to the size they had at their last successful fsync.
//!
//! The sizes come from the node's fsync log, written inside the broker by the preload library
//! `jepsen/fsync-log` (`SLUICE_JEPSEN_FSYNC_LOG`): one `<size> <path>` line per successful
//! `fsync`/`fdatasync` of a regular file, the size taken before the call, and a `# pid <pid>`
//! line, preceded by an empty line, each time a broker process starts writing to it. The log
//! is kept for the node's whole run: it holds the durable sizes of files synced by the broker's
//! earlier lives too.
//!
//! This models the loss of appended data only, which is what the broker's append-only files
//! (segment data, RocksDB's write-ahead log) risk. Files written in place through `mmap` (the
//! segment indexes) keep their content; their size is cut like any other file's.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};

/// What [`lose_unfsynced`] threw away.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loss {
    /// Every file truncated, by path: its size before and after.
    pub files: BTreeMap<PathBuf, Truncation>,
}

/// One truncated file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    /// Its size when the broker died.
    pub size_before: u64,
    /// Its durable size, which it has now.
    pub size_after: u64,
}

impl Loss {
    /// How many files were truncated.
    pub fn files_truncated(&self) -> usize {
        self.files.len()
    }

    /// How many bytes the truncations dropped in all.
    pub fn bytes_dropped(&self) -> u64 {
        self.files.values().map(|t| t.size_before - t.size_after).sum()
    }
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} files truncated, {} bytes dropped", self.files_truncated(), self.bytes_dropped())
    }
}

/// Truncates every regular file under `data_dir` that grew past its durable size, as read from
/// `fsync_log`, back to that size, and fsyncs it so the loss lasts. Call it while the broker is
/// dead (killed and reaped) and before it is restarted.
///
/// - A file's durable size is the largest size the log records for its path. Concurrent fsyncs
///   may log out of order; the largest only ever keeps more bytes, which a crash may also do,
///   never fewer than an fsync promised.
/// - A file the log never names was never fsynced. It is truncated to 0 if its name ends in
///   `.log`: segment data files and RocksDB write-ahead logs (both `<n>.log`), which are only
///   appended to. Any other such file is left alone: the broker's other files (RocksDB's
///   `CURRENT` and `OPTIONS-*`, Sluice's `vote` state file) are written under a temporary name,
///   fsynced there and renamed, so their content *was* fsynced, under another name. RocksDB's
///   info log is `LOG`/`LOG.old.*`, which the rule leaves alone too.
/// - A file smaller than its durable size is left alone (the broker truncated it since).
/// - Paths in the log outside `data_dir` are ignored: the run directory holds several nodes.
///
/// A missing log means nothing was ever fsynced. A log whose last line has no newline ends in a
/// record the kill cut short; that line is skipped, and so is a cut record that the next broker
/// process ended with its opening empty line. Any other malformed line is an error naming it.
pub fn lose_unfsynced(fsync_log: &Path, data_dir: &Path) -> Result<Loss> {
    let durable = read_fsync_log(fsync_log)?;
    // The log holds the kernel's names for files (/proc/self/fd): absolute, without symlinks.
    let data_dir = data_dir.canonicalize().with_context(|| format!("cannot resolve {}", data_dir.display()))?;
    let mut loss = Loss::default();
    for (path, size_before) in regular_files(&data_dir)? {
        let size_after = match durable.get(&path) {
            Some(&size) => size,
            None if path.extension() == Some(OsStr::new("log")) => 0,
            None => continue,
        };
        if size_before > size_after {
            truncate(&path, size_after)?;
            loss.files.insert(path, Truncation { size_before, size_after });
        }
    }
    Ok(loss)
}

/// The durable size of every file the log names; empty when there is no log.
fn read_fsync_log(path: &Path) -> Result<HashMap<PathBuf, u64>> {
    match fs::read(path) {
        Ok(raw) => parse_fsync_log(&raw).with_context(|| format!("fsync log {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashMap::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read the fsync log {}", path.display())),
    }
}

fn parse_fsync_log(raw: &[u8]) -> Result<HashMap<PathBuf, u64>> {
    // Whatever follows the last newline is a record the kill cut short.
    let complete = raw.iter().rposition(|&b| b == b'\n').map_or(&[][..], |end| &raw[..end]);
    let lines: Vec<&[u8]> = complete.split(|&b| b == b'\n').collect();
    let mut durable = HashMap::new();
    for (i, line) in lines.iter().enumerate() {
        let is_marker = |line: &[u8]| line.starts_with(b"#");
        // A record directly followed by a process's marker was cut short and ended by the
        // marker's leading newline (a complete record is followed by that empty line).
        if line.is_empty() || is_marker(line) || lines.get(i + 1).is_some_and(|next| is_marker(next)) {
            continue;
        }
        let (size, path) = parse_record(line)
            .ok_or_else(|| anyhow!("line {}: not `<size> <path>`: {:?}", i + 1, String::from_utf8_lossy(line)))?;
        let max = durable.entry(path).or_insert(size);
        *max = size.max(*max);
    }
    Ok(durable)
}

/// `<size> <path>`: a decimal size, one space, an absolute path (which may hold spaces).
fn parse_record(line: &[u8]) -> Option<(u64, PathBuf)> {
    let space = line.iter().position(|&b| b == b' ')?;
    let (size, path) = (&line[..space], &line[space + 1..]);
    if size.is_empty() || !size.iter().all(u8::is_ascii_digit) || !path.starts_with(b"/") {
        return None;
    }
    let size = std::str::from_utf8(size).ok()?.parse().ok()?;
    Some((size, PathBuf::from(OsStr::from_bytes(path))))
}

/// Every regular file under `dir`, recursively (symlinks are not followed), with its size.
fn regular_files(dir: &Path) -> Result<Vec<(PathBuf, u64)>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let path = entry.path();
            let file_type = entry.file_type().with_context(|| format!("cannot stat {}", path.display()))?;
            if file_type.is_dir() {
                pending.push(path);
            } else if file_type.is_file() {
                let size = entry.metadata().with_context(|| format!("cannot stat {}", path.display()))?.len();
                files.push((path, size));
            }
        }
    }
    Ok(files)
}

/// Cuts `path` to `size` bytes and fsyncs it, so the rest of the run sees the loss too.
fn truncate(path: &Path, size: u64) -> Result<()> {
    let file = OpenOptions::new().write(true).open(path).with_context(|| format!("cannot open {}", path.display()))?;
    file.set_len(size).with_context(|| format!("cannot truncate {} to {size} bytes", path.display()))?;
    file.sync_all().with_context(|| format!("cannot fsync {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data directory and a log next to it, as in a run directory.
    struct Fixture {
        _root: tempfile::TempDir,
        log: PathBuf,
        data: PathBuf,
        outside: PathBuf,
    }

    impl Fixture {
        fn new() -> Fixture {
            let root = tempfile::tempdir().unwrap();
            let base = root.path().canonicalize().unwrap();
            let (data, outside) = (base.join("node1"), base.join("node2"));
            fs::create_dir_all(data.join("partitions/t-0")).unwrap();
            fs::create_dir_all(&outside).unwrap();
            Fixture { log: base.join("node1.fsync"), data, outside, _root: root }
        }

        /// Writes `len` bytes to `name` under the data directory and returns its path.
        fn file(&self, name: &str, len: usize) -> PathBuf {
            let path = self.data.join(name);
            fs::write(&path, vec![7; len]).unwrap();
            path
        }

        fn log(&self, text: &str) {
            fs::write(&self.log, text).unwrap();
        }

        fn lose(&self) -> Result<Loss> {
            lose_unfsynced(&self.log, &self.data)
        }
    }

    fn len(path: &Path) -> u64 {
        fs::metadata(path).unwrap().len()
    }

    #[test]
    fn given_several_syncs_when_losing_should_keep_the_largest_size() {
        let fx = Fixture::new();
        let seg = fx.file("partitions/t-0/00000000000000000000.log", 50);
        fx.log(&format!("\n# pid 1\n10 {0}\n30 {0}\n20 {0}\n", seg.display()));

        let loss = fx.lose().unwrap();

        assert_eq!(len(&seg), 30);
        assert_eq!(loss.files[&seg], Truncation { size_before: 50, size_after: 30 });
        assert_eq!(loss.to_string(), "1 files truncated, 20 bytes dropped");
    }

    #[test]
    fn given_files_never_synced_when_losing_should_empty_only_the_log_files() {
        let fx = Fixture::new();
        let wal = fx.file("000012.log", 40);
        let seg = fx.file("partitions/t-0/00000000000000000100.log", 60);
        let vote = fx.file("partitions/t-0/vote", 24);
        let current = fx.file("CURRENT", 16);
        let info_log = fx.file("LOG", 300);
        fx.log("");

        let loss = fx.lose().unwrap();

        assert_eq!((len(&wal), len(&seg)), (0, 0));
        assert_eq!((len(&vote), len(&current), len(&info_log)), (24, 16, 300));
        assert_eq!((loss.files_truncated(), loss.bytes_dropped()), (2, 100));
    }

    #[test]
    fn given_a_file_at_or_below_its_durable_size_when_losing_should_leave_it() {
        let fx = Fixture::new();
        let shrunk = fx.file("00000000000000000000.log", 10);
        let synced = fx.file("00000000000000000500.log", 25);
        fx.log(&format!("40 {}\n25 {}\n", shrunk.display(), synced.display()));

        let loss = fx.lose().unwrap();

        assert_eq!((len(&shrunk), len(&synced)), (10, 25));
        assert_eq!(loss, Loss::default());
    }

    #[test]
    fn given_files_outside_the_data_dir_when_losing_should_leave_them() {
        let fx = Fixture::new();
        let other = fx.outside.join("00000000000000000000.log");
        fs::write(&other, [1; 30]).unwrap();
        fx.log(&format!("5 {}\n", other.display()));

        let loss = fx.lose().unwrap();

        assert_eq!(len(&other), 30);
        assert_eq!(loss.files_truncated(), 0);
    }

    #[test]
    fn given_no_log_when_losing_should_treat_nothing_as_synced() {
        let fx = Fixture::new();
        let seg = fx.file("partitions/t-0/00000000000000000000.log", 8);
        let vote = fx.file("partitions/t-0/vote", 24);

        let loss = fx.lose().unwrap();

        assert_eq!((len(&seg), len(&vote)), (0, 24));
        assert_eq!(loss.to_string(), "1 files truncated, 8 bytes dropped");
    }

    #[test]
    fn given_records_cut_by_a_kill_when_losing_should_skip_them() {
        let fx = Fixture::new();
        let seg = fx.file("00000000000000000000.log", 90);
        let vote = fx.file("vote", 24);
        // Cut short and ended by the next process's marker; then cut short at the very end.
        fx.log(&format!("10 {0}\n12 {1}\n# pid 2\n20 {0}\n\n# pid 3\n80 {0}", seg.display(), vote.display()));

        fx.lose().unwrap();

        assert_eq!((len(&seg), len(&vote)), (20, 24));
    }

    #[test]
    fn given_a_malformed_line_when_losing_should_fail_naming_it() {
        for bad in ["size /p", "12", "12 relative/path", " 12 /p", "99999999999999999999999 /p"] {
            let fx = Fixture::new();
            let seg = fx.file("00000000000000000000.log", 9);
            fx.log(&format!("# pid 1\n3 {}\n{bad}\n\n# pid 2\n", seg.display()));

            let err = format!("{:#}", fx.lose().unwrap_err());

            assert!(err.contains("line 3") && err.contains(bad) && err.contains("node1.fsync"), "{err}");
            assert_eq!(len(&seg), 9, "nothing is truncated after a bad log");
        }
    }

    #[test]
    fn given_a_missing_data_dir_when_losing_should_fail_naming_it() {
        let fx = Fixture::new();
        let err = format!("{:#}", lose_unfsynced(&fx.log, &fx.data.join("absent")).unwrap_err());
        assert!(err.contains("absent"), "{err}");
    }
}
