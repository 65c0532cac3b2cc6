//! Building the binaries under test once per test run.
//!
//! The test executable lives at `<target>[/<triple>]/<profile-dir>/deps/<name>`; the binaries
//! are built into the same target directory with the same profile (and target triple), so a
//! `cargo test --release` run tests release binaries and nothing is built twice.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

/// The binaries under test.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `sluice-broker`.
    pub broker: PathBuf,
    /// `sluice`, the CLI.
    pub cli: PathBuf,
    /// The directory holding both (what `SLUICE_BIN_DIR` names for the cluster scripts).
    pub dir: PathBuf,
}

/// Where cargo put the running test executable.
#[derive(Debug)]
struct Layout {
    target_dir: PathBuf,
    triple: Option<String>,
    profile: String,
    profile_dir: PathBuf,
}

static BUILT: OnceLock<Result<Binaries, String>> = OnceLock::new();

/// The repository root (the workspace holding this crate).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate sits in the workspace root")
}

/// Builds `sluice-broker` and `sluice` on the first call (later calls, from any thread, wait
/// for that build and share its outcome). Panics with cargo's output if the build fails.
pub fn binaries() -> &'static Binaries {
    match BUILT.get_or_init(build) {
        Ok(binaries) => binaries,
        Err(why) => panic!("{why}"),
    }
}

fn build() -> Result<Binaries, String> {
    let layout = layout()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut command = Command::new(&cargo);
    command
        .current_dir(workspace_root())
        .args(["build", "--locked", "--profile", &layout.profile, "--target-dir"])
        .arg(&layout.target_dir)
        .args(["-p", "sluice-broker", "-p", "sluice-cli", "--bins"]);
    if let Some(triple) = &layout.triple {
        command.args(["--target", triple]);
    }
    let started = Instant::now();
    let output = command.output().map_err(|e| format!("cannot run {}: {e}", cargo.to_string_lossy()))?;
    if !output.status.success() {
        return Err(format!(
            "building the binaries failed ({:?}, {}):\n{}",
            command,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    eprintln!("built sluice-broker and sluice ({}) in {:.1} s", layout.profile, started.elapsed().as_secs_f64());
    let binaries = Binaries {
        broker: layout.profile_dir.join("sluice-broker"),
        cli: layout.profile_dir.join("sluice"),
        dir: layout.profile_dir,
    };
    for bin in [&binaries.broker, &binaries.cli] {
        if !bin.is_file() {
            return Err(format!("cargo reported success but {} does not exist", bin.display()));
        }
    }
    Ok(binaries)
}

fn layout() -> Result<Layout, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the test executable: {e}"))?;
    let deps = exe.parent().filter(|d| d.file_name().is_some_and(|n| n == "deps"));
    let profile_dir = deps.and_then(Path::parent).ok_or_else(|| {
        format!("the test executable {} is not in a cargo `deps` directory; run it with cargo test", exe.display())
    })?;
    let dir_name = profile_dir.file_name().and_then(|n| n.to_str()).ok_or("a profile directory without a name")?;
    // Cargo names the dev profile's directory `debug`; every other profile's is its name.
    let profile = if dir_name == "debug" { "dev" } else { dir_name }.to_owned();
    let above = profile_dir.parent().ok_or("a profile directory at the file system root")?;
    // Cargo marks its target directory with CACHEDIR.TAG; a directory between it and the
    // profile's is a target triple (`--target`).
    let (target_dir, triple) = if above.join("CACHEDIR.TAG").exists() {
        (above.to_owned(), None)
    } else {
        let root = above.parent().filter(|r| r.join("CACHEDIR.TAG").exists()).unwrap_or(above);
        let triple = (root != above).then(|| above.file_name().map(|n| n.to_string_lossy().into_owned())).flatten();
        (root.to_owned(), triple)
    };
    Ok(Layout { target_dir, triple, profile, profile_dir: profile_dir.to_owned() })
}
