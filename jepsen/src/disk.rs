//! The `disk-full` family's disks: with it, each node's data directory is a tmpfs of its own,
//! mounted by the runner (root only) before the brokers start, so that one node's disk can be
//! filled without touching the machine's or the other nodes'. [`Disks`] is the guard: dropping
//! it copies each node's data onto the run directory's own disk (where the other families
//! leave it) and unmounts the tmpfs; [`cleanup_leftovers`] unmounts what a crashed run left.
//!
//! A fault fills a node's tmpfs with a filler file next to the broker's own directories
//! (`<data dir>/jepsen-disk-filler`, which the broker never looks at) and the heal deletes it:
//!
//! ```text
//!  tmpfs of node N (≥ 256 MiB)
//!  ├── controller/, partitions/     the broker's data: ~80 MiB at start (RocksDB preallocates),
//!  │                                then a few MiB per minute of workload
//!  └── jepsen-disk-filler           disk-full: leaves 16 MiB free, below the 32 MiB threshold
//!                                   disk-full-enospc: written until ENOSPC, leaves 0 free
//! ```
//!
//! The brokers of such a run are configured for that disk ([`DiskGuard::TMPFS`]): a threshold
//! of 32 MiB, checked every 200 ms. Free space is what statvfs calls available (`stat -f`),
//! as the broker's guard reads it. Every step shells out (`mount`, `umount`, `stat`) with the
//! network's deadline per command, needing nothing but util-linux and coreutils.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::net;

/// The broker's free-space threshold in a disk-full run (`disk_min_free_bytes`): far below
/// the tmpfs, and far above what the workload writes in the [`CHECK_INTERVAL_MS`] it takes the
/// broker to notice.
pub const MIN_FREE_BYTES: u64 = 32 << 20;
/// How often the brokers of a disk-full run look at their free space, in ms.
pub const CHECK_INTERVAL_MS: u64 = 200;
/// What the `disk-full` fault leaves free: below the threshold, above zero.
pub const BELOW_THRESHOLD_FREE_BYTES: u64 = MIN_FREE_BYTES / 2;
const _: () = assert!(0 < BELOW_THRESHOLD_FREE_BYTES && BELOW_THRESHOLD_FREE_BYTES < MIN_FREE_BYTES);
/// The smallest tmpfs a node gets.
pub const MIN_TMPFS_BYTES: u64 = 256 << 20;
/// What one send of the workload costs each node's disk, with a margin: a 60 s run of the
/// default workload measured about 170 bytes (segment entry, index entries, the group's offset
/// commits); three times that.
pub const BYTES_PER_SEND: u64 = 512;
/// What a broker takes of its disk whatever the workload, with a margin: the controller's
/// RocksDB preallocates its write-ahead log and its manifest (4 MiB), and on tmpfs preallocated
/// space is taken space. Measured at start: 78 MB, 70.4 MiB of it the log (1.1 × 64 MiB, the
/// default column family's write buffer, which `sluice-raft`'s 4 MiB setting for its own column
/// families leaves as it is).
pub const FIXED_BYTES: u64 = 96 << 20;
/// The filler file, at the top of a node's tmpfs.
const FILLER: &str = "jepsen-disk-filler";
/// How much the filler grows per write.
const CHUNK_BYTES: usize = 1 << 20;

/// The brokers' disk guard settings (config keys `disk_min_free_bytes`,
/// `disk_min_free_percent`, `disk_check_interval_ms`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskGuard {
    /// Refuse writes below this many free bytes.
    pub min_free_bytes: u64,
    /// Refuse writes below this share of the disk free, in whole percent; the larger threshold
    /// wins.
    pub min_free_percent: u8,
    /// How often free space is looked at, in ms.
    pub check_interval_ms: u64,
}

impl DiskGuard {
    /// What suits the suite's tmpfs: 32 MiB, no percentage (5% of 256 MiB would be less
    /// anyway, and a percentage would move with the tmpfs size), every 200 ms.
    pub const TMPFS: DiskGuard =
        DiskGuard { min_free_bytes: MIN_FREE_BYTES, min_free_percent: 0, check_interval_ms: CHECK_INTERVAL_MS };

    /// The settings as lines of a broker's TOML config.
    pub fn config_lines(&self) -> String {
        format!(
            "disk_min_free_bytes = {}\ndisk_min_free_percent = {}\ndisk_check_interval_ms = {}\n",
            self.min_free_bytes, self.min_free_percent, self.check_interval_ms
        )
    }
}

/// The disks of a disk-full run: how large each node's tmpfs is, and the brokers' guard.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskSpec {
    /// Bytes of each node's tmpfs.
    pub tmpfs_bytes: u64,
    /// The brokers' guard settings.
    pub guard: DiskGuard,
}

impl DiskSpec {
    /// Disks for a workload of `sends` sends in all: [`MIN_TMPFS_BYTES`], or more when what a
    /// broker takes anyway ([`FIXED_BYTES`]), the data the sends leave on a node
    /// ([`BYTES_PER_SEND`]) and twice the threshold need it, so that the workload never brings
    /// a disk near its threshold by itself.
    pub fn for_sends(sends: u64) -> DiskSpec {
        let needed = (FIXED_BYTES + 2 * MIN_FREE_BYTES).saturating_add(sends.saturating_mul(BYTES_PER_SEND));
        let mib = 1 << 20;
        let tmpfs_bytes = (needed.div_ceil(mib).min(u64::MAX / mib) * mib).max(MIN_TMPFS_BYTES);
        DiskSpec { tmpfs_bytes, guard: DiskGuard::TMPFS }
    }
}

/// How full a fault makes a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// [`BELOW_THRESHOLD_FREE_BYTES`] free: the broker's guard refuses writes.
    BelowThreshold,
    /// Nothing free: the broker's appends fail with ENOSPC.
    Full,
}

/// One node's tmpfs.
#[derive(Debug)]
struct Disk {
    node: u64,
    dir: PathBuf,
    mounted: bool,
}

/// The tmpfs of every node. Dropping it saves their data to the run directory and unmounts
/// them; the brokers must be stopped first.
#[derive(Debug)]
pub struct Disks {
    disks: Vec<Disk>,
}

impl Disks {
    /// Mounts a tmpfs of `bytes` at each node's data directory (`(node, directory)`), which
    /// must be missing or empty. Fails with a clear message when not run as root; what was
    /// mounted before a failure is unmounted.
    pub fn mount(dirs: &[(u64, PathBuf)], bytes: u64) -> Result<Disks> {
        require_root()?;
        let mut disks = Disks { disks: Vec::new() };
        for (node, dir) in dirs {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let mut entries = fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
            if entries.next().is_some() {
                bail!("{} is not empty: the disk-full family mounts a tmpfs there; use a new --run-dir", dir.display());
            }
            let options = format!("size={bytes},mode=0755");
            let mut mount = Command::new("mount");
            mount.args(["-t", "tmpfs", "-o", &options, &source_name(*node)]).arg(dir);
            run(&mut mount).with_context(|| format!("mounting node {node}'s tmpfs"))?;
            disks.disks.push(Disk { node: *node, dir: dir.clone(), mounted: true });
        }
        Ok(disks)
    }

    /// Fills `node`'s disk as `fill` says and returns the bytes left free. The brokers write
    /// meanwhile, so `BelowThreshold` aims at its target and may land a little off it.
    pub fn fill(&self, node: u64, fill: Fill) -> Result<u64> {
        let dir = &self.disk(node)?.dir;
        let path = dir.join(FILLER);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let zeros = vec![0u8; CHUNK_BYTES];
        let mut left = match fill {
            Fill::BelowThreshold => free_bytes(dir)?.saturating_sub(BELOW_THRESHOLD_FREE_BYTES),
            Fill::Full => u64::MAX,
        };
        while left > 0 {
            let n = usize::try_from(left).map_or(CHUNK_BYTES, |left| left.min(CHUNK_BYTES));
            match file.write_all(&zeros[..n]) {
                Ok(()) => left -= n as u64,
                // What `Full` waits for; a broker that took the last bytes first ends
                // `BelowThreshold` early, and the free space returned says so.
                Err(e) if e.kind() == io::ErrorKind::StorageFull => break,
                Err(e) => return Err(e).with_context(|| format!("writing {}", path.display())),
            }
        }
        free_bytes(dir)
    }

    /// Deletes `node`'s filler, if it has one, and returns the bytes free then.
    pub fn empty(&self, node: u64) -> Result<u64> {
        let dir = &self.disk(node)?.dir;
        let path = dir.join(FILLER);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("deleting {}", path.display())),
        }
        free_bytes(dir)
    }

    /// The bytes free on `node`'s disk now.
    pub fn free(&self, node: u64) -> Result<u64> {
        free_bytes(&self.disk(node)?.dir)
    }

    /// The size of each node's tmpfs, in bytes (as statvfs reports it).
    pub fn size(&self, node: u64) -> Result<u64> {
        let (_, total) = statfs(&self.disk(node)?.dir)?;
        Ok(total)
    }

    fn disk(&self, node: u64) -> Result<&Disk> {
        self.disks.iter().find(|d| d.node == node).with_context(|| format!("node {node} has no tmpfs"))
    }
}

impl Drop for Disks {
    fn drop(&mut self) {
        for disk in &mut self.disks {
            if let Err(e) = save_and_unmount(disk) {
                eprintln!("unmounting node {}'s tmpfs at {}: {e:#}", disk.node, disk.dir.display());
            }
        }
    }
}

/// Copies the tmpfs's data (not the filler) next to it, unmounts it and puts the copy in its
/// place, so that the run directory keeps `node<N>/` as in the other families' runs. The data
/// is kept even when the copy fails half-way (in `node<N>.saved`); the unmount comes first.
fn save_and_unmount(disk: &mut Disk) -> Result<()> {
    if !disk.mounted {
        return Ok(());
    }
    let saved = disk.dir.with_extension("saved");
    // Deleting the filler first also gives the copy room on a disk that is itself small.
    let _ = fs::remove_file(disk.dir.join(FILLER));
    let copied = copy_tree(&disk.dir, &saved);
    run(Command::new("umount").arg(&disk.dir)).context("umount")?;
    disk.mounted = false;
    copied.with_context(|| format!("copying the data to {}", saved.display()))?;
    fs::remove_dir(&disk.dir).with_context(|| format!("removing the mount point {}", disk.dir.display()))?;
    fs::rename(&saved, &disk.dir).with_context(|| format!("renaming {} back", saved.display()))
}

/// Copies the directory tree `from` to `to` (regular files and directories: what a broker's
/// data directory holds).
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if entry.file_name() != FILLER {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Unmounts every tmpfs of this test network (`--net`) that a run left mounted, found by its
/// source name in `/proc/mounts` (`sj-disk-n1`, `sj7-disk-n1`, …). Their data is lost. A disk
/// still in use (by a broker that runs outside the namespaces) is not unmounted: an error.
pub fn cleanup_leftovers() -> Result<()> {
    let mounts = fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    for dir in our_mounts(&mounts, &net::prefix()) {
        run(Command::new("umount").arg(&dir)).with_context(|| format!("unmounting {dir}"))?;
        eprintln!("sluice-jepsen: unmounted a disk-full tmpfs left at {dir}");
    }
    Ok(())
}

/// The mount points of this suite's tmpfs in a `/proc/mounts` text, for network `prefix`.
fn our_mounts(mounts: &str, prefix: &str) -> Vec<String> {
    let ours = format!("{prefix}disk-n");
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (source, dir, kind) = (fields.next()?, fields.next()?, fields.next()?);
            (kind == "tmpfs" && source.starts_with(&ours)).then(|| unescape_mount_path(dir))
        })
        .collect()
}

/// `/proc/mounts` writes a space, tab, newline and backslash in a path as `\040`, `\011`,
/// `\012`, `\134`.
fn unescape_mount_path(path: &str) -> String {
    path.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// The source name of `node`'s tmpfs, which [`cleanup_leftovers`] recognises.
fn source_name(node: u64) -> String {
    format!("{}disk-n{node}", net::prefix())
}

/// Fails unless the process runs as root (mounting needs it).
pub fn require_root() -> Result<()> {
    if !net::is_root()? {
        bail!("the disk-full family needs root: it mounts a tmpfs as each node's data directory (run it with sudo)");
    }
    Ok(())
}

/// The bytes available on the file system holding `dir`.
fn free_bytes(dir: &Path) -> Result<u64> {
    Ok(statfs(dir)?.0)
}

/// (available, total) bytes of the file system holding `dir`, from `stat -f`: free blocks
/// available to unprivileged users and all blocks, each times the fundamental block size.
fn statfs(dir: &Path) -> Result<(u64, u64)> {
    let text = net::output(Command::new("stat").args(["-f", "-c", "%a %b %S"]).arg(dir))?;
    parse_statfs(&text).with_context(|| format!("stat -f {} printed {text:?}", dir.display()))
}

fn parse_statfs(text: &str) -> Option<(u64, u64)> {
    let numbers: Vec<u64> = text.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
    match numbers[..] {
        [available, blocks, block_size] => Some((available.checked_mul(block_size)?, blocks.checked_mul(block_size)?)),
        _ => None,
    }
}

fn run(command: &mut Command) -> Result<()> {
    net::run(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_is_written_as_broker_config_lines() {
        let lines = DiskGuard::TMPFS.config_lines();
        assert_eq!(lines, "disk_min_free_bytes = 33554432\ndisk_min_free_percent = 0\ndisk_check_interval_ms = 200\n");
    }

    #[test]
    fn the_tmpfs_grows_with_the_workload_and_never_shrinks_below_the_minimum() {
        assert_eq!(DiskSpec::for_sends(0).tmpfs_bytes, MIN_TMPFS_BYTES);
        // Two minutes of the default workload (2 producers × 200/s) fit the minimum.
        let minute = 60 * 2 * 200;
        assert_eq!(DiskSpec::for_sends(2 * minute).tmpfs_bytes, MIN_TMPFS_BYTES);
        // Ten minutes need a little more, an hour much more, rounded up to whole MiB.
        for sends in [10 * minute, 60 * minute] {
            let bytes = DiskSpec::for_sends(sends).tmpfs_bytes;
            let needed = FIXED_BYTES + 2 * MIN_FREE_BYTES + sends * BYTES_PER_SEND;
            assert!(needed <= bytes && bytes < needed + (1 << 20) && bytes.is_multiple_of(1 << 20), "{bytes}");
        }
        assert!(DiskSpec::for_sends(10 * minute).tmpfs_bytes < 300 << 20);
        assert!(DiskSpec::for_sends(u64::MAX).tmpfs_bytes.is_multiple_of(1 << 20), "no overflow");
    }

    #[test]
    fn leftover_mounts_are_found_by_their_source_on_this_network_only() {
        let mounts = "\
/dev/vda / ext4 rw,relatime 0 0
sj-disk-n1 /tmp/run\\040a/node1 tmpfs rw,size=262144k,mode=755 0 0
sj7-disk-n2 /tmp/run7/node2 tmpfs rw,size=262144k,mode=755 0 0
tmpfs /dev/shm tmpfs rw 0 0
sj-disk-n3 /tmp/not-a-tmpfs ext4 rw 0 0
";
        assert_eq!(our_mounts(mounts, "sj-"), ["/tmp/run a/node1"]);
        assert_eq!(our_mounts(mounts, "sj7-"), ["/tmp/run7/node2"]);
        assert!(our_mounts(mounts, "sj8-").is_empty());
    }

    #[test]
    fn statfs_output_is_read_as_bytes() {
        assert_eq!(parse_statfs("4096 65536 4096\n"), Some((4096 * 4096, 65536 * 4096)));
        assert_eq!(parse_statfs("1 2"), None);
        assert_eq!(parse_statfs("x 2 3"), None);
    }

    /// Root only: mounts two small disks, fills one to each level, empties it, and unmounts on
    /// drop, keeping the data in the run directory.
    #[test]
    #[ignore = "needs root"]
    fn disks_fill_below_the_threshold_or_completely_and_keep_their_data_when_dropped() {
        let run_dir = tempfile::tempdir().unwrap();
        let dirs: Vec<(u64, PathBuf)> = (1..=2).map(|n| (n, run_dir.path().join(format!("node{n}")))).collect();
        let disks = Disks::mount(&dirs, 64 << 20).unwrap();
        assert_eq!(disks.size(1).unwrap(), 64 << 20);
        fs::write(dirs[0].1.join("data"), b"kept").unwrap();
        let free = disks.fill(1, Fill::BelowThreshold).unwrap();
        assert!(free > 0 && free < MIN_FREE_BYTES, "{free}");
        assert!(disks.free(2).unwrap() > MIN_FREE_BYTES, "the other node's disk is untouched");
        assert_eq!(disks.fill(1, Fill::Full).unwrap(), 0);
        assert!(fs::write(dirs[0].1.join("more"), b"x").is_err(), "a full disk refuses writes");
        assert!(disks.empty(1).unwrap() > 60 << 20);
        assert!(disks.empty(1).is_ok(), "emptying twice is fine");
        disks.fill(2, Fill::Full).unwrap();
        drop(disks);
        let mounts = fs::read_to_string("/proc/mounts").unwrap();
        assert!(!mounts.contains(&run_dir.path().display().to_string()), "unmounted: {mounts}");
        assert_eq!(fs::read(dirs[0].1.join("data")).unwrap(), b"kept");
        assert!(!dirs[1].1.join(FILLER).exists(), "the filler is not kept");
    }
}
