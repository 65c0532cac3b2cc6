//! The fault schedule: from a seed, the time limit and the chosen fault families, the same
//! list of fault windows every time (fault, when it starts, how long it holds; a quiet time
//! follows each heal). Random choices come from a small seeded PRNG ([`SplitMix64`]) so a run
//! is reproduced by passing its seed again; only "the leader" is resolved when the fault
//! starts, from the cluster's metadata at that moment.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Result, bail};

/// How long the cluster runs undisturbed before the first fault.
const WARM_UP: Duration = Duration::from_secs(5);
/// The shortest and longest time a fault holds, in ms. The shortest exceeds the partition
/// election timeout (1 s) and the node timeout (0.8 s) several times over, so that a pause
/// or a cut always makes the others give up on a node.
const HOLD_MS: (u64, u64) = (4_000, 10_000);
/// The shortest and longest quiet time after a heal, in ms: recovery is measured in it.
const QUIET_MS: (u64, u64) = (4_000, 8_000);
/// How long each phase of a flapping partition lasts, in ms (cut, heal, cut, …).
pub const FLAP_MS: u64 = 1_000;
/// How far the `clock` fault moves a node's wall clock, in seconds (either way).
const CLOCK_SKEW_S: (u64, u64) = (5, 120);

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast and good enough to pick faults; no new
/// dependency.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `[0, n)`; `n` must not be 0. (The modulo bias is irrelevant for picking
    /// among a handful of faults.)
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        self.next_u64() % n
    }

    /// A number in `[lo, hi]`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// A family of faults, as named on the command line (`--faults kill,partition,pause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    /// SIGKILL brokers (one, the leader of a partition, all), restart them at heal.
    Kill,
    /// SIGSTOP a broker (one, a leader) past the election timeout, SIGCONT at heal.
    Pause,
    /// Cut links with nftables: isolate one node or a leader, a bridge, one-way, flapping.
    Partition,
    /// Jump one broker's wall clock (libfaketime); the monotonic clock stays real.
    Clock,
    /// SIGKILL brokers (one, a leader, all) and drop what they wrote but had not fsynced, as
    /// a power loss would; restart them at heal.
    LoseUnfsynced,
    /// Make fsync and fdatasync fail with EIO on one broker (libfiu); it must stop, and is
    /// restarted healthy at heal.
    FsyncEio,
    /// Fill one broker's data disk (a tmpfs of its own): below its free-space threshold, or
    /// completely; it must keep running, and writes resume once the filler is deleted.
    DiskFull,
    /// Two faults at once on different nodes: pause + kill, partition + kill.
    Combined,
}

impl Family {
    /// Every family, in command-line order.
    pub const ALL: [Family; 8] = [
        Family::Kill,
        Family::Pause,
        Family::Partition,
        Family::Clock,
        Family::LoseUnfsynced,
        Family::FsyncEio,
        Family::DiskFull,
        Family::Combined,
    ];

    /// Its command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Family::Kill => "kill",
            Family::Pause => "pause",
            Family::Partition => "partition",
            Family::Clock => "clock",
            Family::LoseUnfsynced => "lose-unfsynced",
            Family::FsyncEio => "fsync-eio",
            Family::DiskFull => "disk-full",
            Family::Combined => "combined",
        }
    }
}

impl FromStr for Family {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Family> {
        match Family::ALL.iter().find(|f| f.name() == s) {
            Some(&f) => Ok(f),
            None => {
                let known: Vec<&str> = Family::ALL.iter().map(|f| f.name()).collect();
                bail!("unknown fault family {s:?}; known: {}", known.join(", "))
            }
        }
    }
}

/// Parses a comma-separated family list (`kill,partition`; `none` for a fault-free run, `all`
/// for every family), without duplicates, in the order given.
pub fn parse_families(list: &str) -> Result<Vec<Family>> {
    if list.trim() == "all" {
        return Ok(Family::ALL.to_vec());
    }
    let mut families = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if name == "none" {
            continue;
        }
        let family: Family = name.parse()?;
        if families.contains(&family) {
            bail!("fault family {name:?} is listed twice");
        }
        families.push(family);
    }
    Ok(families)
}

/// The most a broker's wall clock can be from the runner's in a run of `families`: the clock
/// fault's largest jump if it is among them, zero otherwise (every other fault leaves the
/// clocks alone, and the brokers run on the runner's machine).
pub fn max_clock_skew(families: &[Family]) -> Duration {
    if families.contains(&Family::Clock) { Duration::from_secs(CLOCK_SKEW_S.1) } else { Duration::ZERO }
}

/// One fault, with its targets chosen (except "the leader", chosen when it starts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL this node.
    KillOne(u64),
    /// SIGKILL the leader of a partition of the workload's topic.
    KillLeader,
    /// SIGKILL every node.
    KillAll,
    /// SIGSTOP this node.
    PauseOne(u64),
    /// SIGSTOP the leader of a partition.
    PauseLeader,
    /// Cut this node off from the others (with three nodes: the minority / majority split).
    IsolateOne(u64),
    /// Cut a partition's leader off from the others.
    IsolateLeader,
    /// Cut the link between the two nodes other than `bridge`, which still sees both.
    Bridge(u64),
    /// This node hears nothing from the others; they still hear it.
    OneWay(u64),
    /// Isolate this node, heal, isolate again, … every [`FLAP_MS`].
    Flap(u64),
    /// Move this node's wall clock by this many seconds.
    ClockSkew(u64, i64),
    /// SIGKILL this node and drop its un-fsynced writes.
    LoseOne(u64),
    /// SIGKILL the leader of a partition and drop its un-fsynced writes.
    LoseLeader,
    /// SIGKILL every node and drop every node's un-fsynced writes.
    LoseAll,
    /// fsync and fdatasync fail with EIO on this node.
    EioOne(u64),
    /// fsync and fdatasync fail with EIO on the leader of a partition.
    EioLeader,
    /// Fill this node's disk until its free space is below the broker's threshold, not zero.
    DiskFull(u64),
    /// Fill this node's disk completely: its writes fail with ENOSPC.
    DiskFullEnospc(u64),
    /// SIGSTOP the first node and SIGKILL the second.
    PauseKill(u64, u64),
    /// Cut the first node off from the others; half-way through the hold, SIGKILL the second.
    PartitionKill(u64, u64),
}

impl Fault {
    /// Its name in the history's fault events and in the summary.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::KillOne(_) => "kill",
            Fault::KillLeader => "kill-leader",
            Fault::KillAll => "kill-all",
            Fault::PauseOne(_) => "pause",
            Fault::PauseLeader => "pause-leader",
            Fault::IsolateOne(_) => "partition-one",
            Fault::IsolateLeader => "partition-leader",
            Fault::Bridge(_) => "partition-bridge",
            Fault::OneWay(_) => "partition-oneway",
            Fault::Flap(_) => "partition-flap",
            Fault::ClockSkew(..) => "clock-skew",
            Fault::LoseOne(_) => "lose-unfsynced",
            Fault::LoseLeader => "lose-unfsynced-leader",
            Fault::LoseAll => "lose-unfsynced-all",
            Fault::EioOne(_) => "fsync-eio",
            Fault::EioLeader => "fsync-eio-leader",
            Fault::DiskFull(_) => "disk-full",
            Fault::DiskFullEnospc(_) => "disk-full-enospc",
            Fault::PauseKill(..) => "pause+kill",
            Fault::PartitionKill(..) => "partition+kill",
        }
    }

    /// The faults of a family, with random targets drawn from `rng`.
    fn draw(family: Family, nodes: &[u64], rng: &mut SplitMix64) -> Fault {
        let node = rng.pick(nodes);
        match family {
            Family::Kill => rng.pick(&[Fault::KillOne(node), Fault::KillLeader, Fault::KillAll]),
            Family::Pause => rng.pick(&[Fault::PauseOne(node), Fault::PauseLeader]),
            Family::Partition => rng.pick(&[
                Fault::IsolateOne(node),
                Fault::IsolateLeader,
                Fault::Bridge(node),
                Fault::OneWay(node),
                Fault::Flap(node),
            ]),
            Family::Clock => {
                let secs = rng.between(CLOCK_SKEW_S.0, CLOCK_SKEW_S.1) as i64;
                Fault::ClockSkew(node, if rng.below(2) == 0 { secs } else { -secs })
            }
            Family::LoseUnfsynced => rng.pick(&[Fault::LoseOne(node), Fault::LoseLeader, Fault::LoseAll]),
            Family::FsyncEio => rng.pick(&[Fault::EioOne(node), Fault::EioLeader]),
            Family::DiskFull => rng.pick(&[Fault::DiskFull(node), Fault::DiskFullEnospc(node)]),
            Family::Combined => {
                let others: Vec<u64> = nodes.iter().copied().filter(|&n| n != node).collect();
                let other = if others.is_empty() { node } else { rng.pick(&others) };
                rng.pick(&[Fault::PauseKill(node, other), Fault::PartitionKill(node, other)])
            }
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::KillOne(n)
            | Fault::PauseOne(n)
            | Fault::IsolateOne(n)
            | Fault::OneWay(n)
            | Fault::Flap(n)
            | Fault::LoseOne(n)
            | Fault::EioOne(n)
            | Fault::DiskFull(n)
            | Fault::DiskFullEnospc(n) => write!(f, "{} n{n}", self.name()),
            Fault::PauseKill(a, b) => write!(f, "pause n{a} + kill n{b}"),
            Fault::PartitionKill(a, b) => write!(f, "partition n{a} + kill n{b}"),
            Fault::Bridge(n) => write!(f, "{} via n{n}", self.name()),
            Fault::ClockSkew(n, s) => write!(f, "{} n{n} {s:+}s", self.name()),
            Fault::KillLeader
            | Fault::KillAll
            | Fault::PauseLeader
            | Fault::IsolateLeader
            | Fault::LoseLeader
            | Fault::LoseAll
            | Fault::EioLeader => f.write_str(self.name()),
        }
    }
}

/// One fault window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// When the fault starts, from the start of the workload.
    pub at: Duration,
    /// The fault.
    pub fault: Fault,
    /// How long it holds before it heals.
    pub hold: Duration,
}

/// The windows of one run, in time order; they never overlap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The seed it was drawn from.
    pub seed: u64,
    /// The windows.
    pub windows: Vec<Window>,
}

impl Schedule {
    /// The schedule for `seed`: after a warm-up, fault windows (a random family among
    /// `families`, a random fault of it, a random hold) separated by random quiet times,
    /// every window healed before `time_limit`. No families: no windows.
    pub fn generate(seed: u64, time_limit: Duration, families: &[Family], nodes: &[u64]) -> Schedule {
        assert!(!nodes.is_empty(), "a schedule needs nodes");
        let mut rng = SplitMix64::new(seed);
        let mut windows = Vec::new();
        let mut at = WARM_UP;
        while !families.is_empty() {
            let fault = Fault::draw(rng.pick(families), nodes, &mut rng);
            let hold = Duration::from_millis(rng.between(HOLD_MS.0, HOLD_MS.1));
            if at + hold > time_limit {
                break;
            }
            windows.push(Window { at, fault, hold });
            at += hold + Duration::from_millis(rng.between(QUIET_MS.0, QUIET_MS.1));
        }
        Schedule { seed, windows }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "schedule for seed {}: {} fault windows", self.seed, self.windows.len())?;
        for w in &self.windows {
            writeln!(f, "  at {:>6.1}s for {:>4.1}s: {}", w.at.as_secs_f64(), w.hold.as_secs_f64(), w.fault)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: [u64; 3] = [1, 2, 3];

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // The reference implementation's first outputs for seed 0.
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        let families = [Family::Kill, Family::Partition, Family::Pause];
        let limit = Duration::from_secs(300);
        let a = Schedule::generate(42, limit, &families, &NODES);
        assert_eq!(a, Schedule::generate(42, limit, &families, &NODES));
        assert_ne!(a.windows, Schedule::generate(43, limit, &families, &NODES).windows);
        assert!(a.windows.len() >= 10, "{a}");
    }

    #[test]
    fn windows_stay_within_the_limit_and_do_not_overlap() {
        let limit = Duration::from_secs(120);
        for seed in 0..50 {
            let s = Schedule::generate(seed, limit, &Family::ALL, &NODES);
            assert!(!s.windows.is_empty());
            for pair in s.windows.windows(2) {
                assert!(pair[0].at + pair[0].hold + Duration::from_millis(QUIET_MS.0) <= pair[1].at, "{s}");
            }
            let last = s.windows.last().unwrap();
            assert!(last.at + last.hold <= limit, "{s}");
            assert!(s.windows.iter().all(|w| w.hold >= Duration::from_millis(HOLD_MS.0)));
        }
    }

    #[test]
    fn only_the_chosen_families_are_drawn() {
        let s = Schedule::generate(7, Duration::from_secs(600), &[Family::Pause], &NODES);
        assert!(s.windows.iter().all(|w| matches!(w.fault, Fault::PauseOne(_) | Fault::PauseLeader)), "{s}");
        let kinds: std::collections::BTreeSet<&str> = s.windows.iter().map(|w| w.fault.name()).collect();
        assert_eq!(kinds.len(), 2, "both pause faults appear in a long run: {s}");
        assert!(Schedule::generate(7, Duration::from_secs(600), &[], &NODES).windows.is_empty());
        assert!(Schedule::generate(7, Duration::from_secs(6), &Family::ALL, &NODES).windows.is_empty());
    }

    #[test]
    fn families_parse_and_bad_names_are_refused() {
        assert_eq!(parse_families("kill, partition,pause").unwrap(), [Family::Kill, Family::Partition, Family::Pause]);
        assert!(parse_families("none").unwrap().is_empty());
        let e = parse_families("kill,bogus").unwrap_err().to_string();
        let known = "known: kill, pause, partition, clock, lose-unfsynced, fsync-eio, disk-full, combined";
        assert!(e.contains("bogus") && e.contains(known), "{e}");
        assert_eq!(parse_families("all").unwrap(), Family::ALL);
        assert!(parse_families("kill,kill").unwrap_err().to_string().contains("twice"));
    }

    #[test]
    fn only_the_clock_family_skews_clocks_and_never_beyond_its_bound() {
        assert_eq!(max_clock_skew(&[Family::Kill, Family::Partition, Family::Combined]), Duration::ZERO);
        assert_eq!(max_clock_skew(&[Family::Kill, Family::Clock]), Duration::from_secs(120));
        let s = Schedule::generate(5, Duration::from_secs(3_600), &[Family::Clock], &NODES);
        let bound = max_clock_skew(&Family::ALL).as_secs();
        for w in &s.windows {
            let Fault::ClockSkew(_, secs) = w.fault else { panic!("{} is not a clock fault", w.fault) };
            assert!(secs.unsigned_abs() <= bound, "{s}");
        }
    }

    #[test]
    fn faults_print_their_targets() {
        assert_eq!(Fault::Bridge(2).to_string(), "partition-bridge via n2");
        assert_eq!(Fault::ClockSkew(1, -30).to_string(), "clock-skew n1 -30s");
        assert_eq!(Fault::KillAll.to_string(), "kill-all");
        assert_eq!(Fault::PartitionKill(1, 3).to_string(), "partition n1 + kill n3");
    }

    #[test]
    fn disk_full_faults_fill_one_node_to_either_level() {
        assert_eq!(parse_families("disk-full").unwrap(), [Family::DiskFull]);
        assert!(parse_families("all").unwrap().contains(&Family::DiskFull));
        let s = Schedule::generate(11, Duration::from_secs(600), &[Family::DiskFull], &NODES);
        let mut names = std::collections::BTreeSet::new();
        let mut targets = std::collections::BTreeSet::new();
        for w in &s.windows {
            match w.fault {
                Fault::DiskFull(n) | Fault::DiskFullEnospc(n) => targets.insert(n),
                other => panic!("{other} is not a disk-full fault"),
            };
            names.insert(w.fault.name());
        }
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["disk-full", "disk-full-enospc"], "{s}");
        assert_eq!(targets.into_iter().collect::<Vec<_>>(), NODES, "{s}");
        assert_eq!(Fault::DiskFullEnospc(2).to_string(), "disk-full-enospc n2");
        assert_eq!(Fault::DiskFull(3).to_string(), "disk-full n3");
    }

    #[test]
    fn combined_faults_hit_two_different_nodes() {
        let s = Schedule::generate(9, Duration::from_secs(600), &[Family::Combined], &NODES);
        assert!(!s.windows.is_empty());
        for w in &s.windows {
            match w.fault {
                Fault::PauseKill(a, b) | Fault::PartitionKill(a, b) => assert_ne!(a, b, "{s}"),
                other => panic!("{other} is not a combined fault"),
            }
        }
    }
}
