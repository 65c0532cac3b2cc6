//! The log workload's acknowledgement levels: one SDK producer per level a process sends at (a
//! producer's level holds for all its batches), and each send's level drawn from the run's
//! seed, so that a replay sends the same values at the same levels.

use sluice_client::{Acks, Client, Producer};
use tokio::time::Instant;

use super::WorkloadConfig;
use super::producer::start_at;
use crate::history::AckLevel;
use crate::schedule::SplitMix64;

/// Mixed into the seed of each producer process's levels ("acklevel").
const SALT: u64 = 0x6163_6b6c_6576_656c;

/// Draws each send's level: `leader_percent` % `leader`, `none_percent` % `none`, the rest
/// `all`.
#[derive(Debug)]
pub(super) struct Levels {
    rng: SplitMix64,
    leader: u64,
    none: u64,
}

impl Levels {
    /// The levels of process `process`'s sends.
    pub(super) fn new(config: &WorkloadConfig, process: u32) -> Levels {
        let rng = SplitMix64::new(config.seed ^ SALT ^ u64::from(process).rotate_left(32));
        let (leader, none) = config.level_shares();
        Levels { rng, leader: leader.into(), none: none.into() }
    }

    /// The next send's level.
    pub(super) fn next(&mut self) -> AckLevel {
        let roll = self.rng.below(100);
        if roll < self.leader {
            AckLevel::Leader
        } else if roll < self.leader + self.none {
            AckLevel::None
        } else {
            AckLevel::All
        }
    }
}

/// A producer process's producers, one per level with a share of its sends.
pub(super) struct Producers(Vec<(AckLevel, Producer)>);

impl Producers {
    /// Creates them; `None` if the controller did not give them ids by `until`.
    pub(super) async fn start(
        client: &Client,
        process: u32,
        config: &WorkloadConfig,
        until: Instant,
    ) -> Option<Producers> {
        let (leader, none) = config.level_shares();
        let all = 100u32.saturating_sub(leader.saturating_add(none));
        let shares = [(AckLevel::All, all), (AckLevel::Leader, leader), (AckLevel::None, none)];
        let mut producers = Vec::new();
        for (level, _) in shares.into_iter().filter(|&(_, share)| share > 0) {
            producers.push((level, start_at(client, process, level, until).await?));
        }
        Some(Producers(producers))
    }

    /// The producer of `level`, which [`Levels::next`] draws only if it has a share.
    pub(super) fn of(&self, level: AckLevel) -> &Producer {
        let found = self.0.iter().find(|(l, _)| *l == level);
        &found.expect("a level is drawn only if it has a share, and so a producer").1
    }

    /// Says what the SDK only counted: failures of `none` batches after they went on their way
    /// (the history has them as `ok`; the checker counts those never read).
    pub(super) fn log_failures(&self, process: u32) {
        for (level, producer) in &self.0 {
            let (batches, records) = (producer.failed_batches(), producer.failed_records());
            tracing::info!(process, acks = level.name(), batches, records, "producer failures counted by the SDK");
        }
    }
}

/// The SDK's name for a level.
pub(super) fn sdk_acks(level: AckLevel) -> Acks {
    match level {
        AckLevel::All => Acks::All,
        AckLevel::Leader => Acks::Leader,
        AckLevel::None => Acks::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_seed_and_the_shares() {
        let config = WorkloadConfig { seed: 5, ..WorkloadConfig::default() };
        let draw = |config: &WorkloadConfig, process| {
            let mut levels = Levels::new(config, process);
            (0..10_000).map(|_| levels.next()).collect::<Vec<_>>()
        };
        assert_eq!(draw(&config, 0), draw(&config, 0));
        assert_ne!(draw(&config, 0), draw(&config, 1));
        let drawn = draw(&config, 0);
        let share = |level| drawn.iter().filter(|&&l| l == level).count();
        assert!((6_600..7_400).contains(&share(AckLevel::All)), "{}", share(AckLevel::All));
        assert!((1_200..1_800).contains(&share(AckLevel::Leader)), "{}", share(AckLevel::Leader));
        assert!((1_200..1_800).contains(&share(AckLevel::None)), "{}", share(AckLevel::None));
        let only_all = WorkloadConfig { leader_percent: 0, none_percent: 0, ..config };
        assert!(draw(&only_all, 0).iter().all(|&l| l == AckLevel::All));
        assert_eq!(sdk_acks(AckLevel::Leader).as_str(), AckLevel::Leader.name());
    }
}
