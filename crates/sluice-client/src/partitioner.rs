//! Which partition a record goes to.
//!
//! - An explicit partition wins.
//! - A keyed record goes to `(murmur2(key) & 0x7fff_ffff) % partitions`: Kafka's default
//!   partitioner, bit for bit, so the same key lands on the same partition in Sluice and in
//!   Kafka, across client versions and processes (the hash has no per-process seed).
//! - Keyless records stick to one partition until `sticky_partition_bytes` of them went there,
//!   then move on to the next partition: Kafka's uniform sticky partitioner (KIP-794), without
//!   its load-based weighting. A producer's keyless records then fill one partition's batch at
//!   a time instead of adding one record to every partition's, so its batches are as large as
//!   with a single partition (fewer, larger requests and Raft entries), and over time every
//!   partition gets an equal share.

use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`): MurmurHash2, seed
/// `0x9747b28c`, little-endian 4-byte blocks.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Kafka hashes the length as a Java int; lengths past 2^31 cannot occur in a record.
    let mut h: u32 = SEED ^ data.len() as u32;
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes(block.try_into().expect("4-byte block"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        for (i, &byte) in tail.iter().enumerate().rev() {
            h ^= u32::from(byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition for `key` among `partitions` (which must be at least 1).
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key) as u32 & 0x7fff_ffff) % partitions
}

/// Hands out partitions to records without a key (see the module doc).
#[derive(Debug)]
pub(crate) struct Sticky {
    switch_bytes: usize,
    /// The partition counter (taken modulo the topic's partitions) and the bytes sent to it.
    state: Mutex<(u32, usize)>,
}

impl Sticky {
    /// Moves on after `switch_bytes` (at least one record per partition). Producers start at
    /// a random partition, so that several do not move in step.
    pub(crate) fn new(switch_bytes: usize) -> Sticky {
        let start = RandomState::new().hash_one(()) as u32;
        Sticky { switch_bytes, state: Mutex::new((start, 0)) }
    }

    /// The partition among `partitions` (at least 1) for a keyless record of `bytes`. A record
    /// counts at least one byte, so empty ones move on too.
    pub(crate) fn next(&self, partitions: u32, bytes: usize) -> u32 {
        let mut state = self.state.lock().expect("partitioner lock poisoned");
        let (current, sent) = &mut *state;
        if *sent >= self.switch_bytes {
            *current = current.wrapping_add(1);
            *sent = 0;
        }
        *sent += bytes.max(1);
        *current % partitions
    }
}

/// Picks the partition of one record of `bytes`.
pub(crate) fn choose(explicit: Option<u32>, key: Option<&[u8]>, partitions: u32, sticky: &Sticky, bytes: usize) -> u32 {
    match (explicit, key) {
        (Some(p), _) => p,
        (None, Some(key)) => partition_for_key(key, partitions),
        (None, None) => sticky.next(partitions, bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values Kafka's own `UtilsTest.testMurmur2` checks.
    #[test]
    fn murmur2_matches_kafka() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (data, expected) in cases {
            assert_eq!(murmur2(data), expected, "{:?}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn keys_map_to_stable_partitions() {
        // Pinned: changing these moves every keyed record to another partition.
        assert_eq!(partition_for_key(b"foobar", 12), (-790_332_482i32 as u32 & 0x7fff_ffff) % 12);
        assert_eq!(partition_for_key(b"order-17", 1), 0);
        for key in [&b"a"[..], b"order-17", b""] {
            assert_eq!(partition_for_key(key, 7), partition_for_key(key, 7));
        }
    }

    #[test]
    fn keys_spread_over_partitions() {
        let mut counts = [0u32; 8];
        for i in 0..8000 {
            counts[partition_for_key(format!("key-{i}").as_bytes(), 8) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
    }

    #[test]
    fn explicit_beats_key_beats_sticky() {
        let sticky = Sticky::new(300);
        assert_eq!(choose(Some(5), Some(b"foobar"), 12, &sticky, 100), 5);
        assert_eq!(choose(None, Some(b"foobar"), 12, &sticky, 100), partition_for_key(b"foobar", 12));
        // Three 100-byte records fill 300 bytes of one partition, then the next partition's turn.
        let turns: Vec<u32> = (0..9).map(|_| choose(None, None, 3, &sticky, 100)).collect();
        let first = turns[0];
        let expected: Vec<u32> = (0..9).map(|i| (first + i / 3) % 3).collect();
        assert_eq!(turns, expected);
    }

    #[test]
    fn keyless_records_spread_evenly_over_time() {
        let sticky = Sticky::new(16 * 1024);
        let mut counts = [0u32; 5];
        for _ in 0..(5 * 16 * 1024 / 128) * 20 {
            counts[sticky.next(5, 128) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c == counts[0]), "{counts:?}");
        let big = Sticky::new(16 * 1024);
        let turns: Vec<u32> = (0..3).map(|_| big.next(3, 1 << 20)).collect();
        assert_eq!(turns.iter().collect::<std::collections::BTreeSet<_>>().len(), 3, "a large record moves on at once");
        let empty = Sticky::new(2);
        let turns: Vec<u32> = (0..6).map(|_| empty.next(3, 0)).collect();
        assert_eq!(
            turns.iter().collect::<std::collections::BTreeSet<_>>().len(),
            3,
            "empty records move on too: {turns:?}"
        );
    }
}
