//! Which partition a record goes to.
//!
//! - An explicit partition wins.
//! - A keyed record goes to `(murmur2(key) & 0x7fff_ffff) % partitions`: Kafka's default
//!   partitioner, bit for bit, so the same key lands on the same partition in Sluice and in
//!   Kafka, across client versions and processes (the hash has no per-process seed).
//! - A keyless record goes round-robin over the partitions.

use std::sync::atomic::{AtomicU32, Ordering};

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

/// Hands out partitions in turn to records without a key.
#[derive(Debug, Default)]
pub(crate) struct RoundRobin {
    next: AtomicU32,
}

impl RoundRobin {
    /// The next partition among `partitions` (at least 1).
    pub(crate) fn next(&self, partitions: u32) -> u32 {
        self.next.fetch_add(1, Ordering::Relaxed) % partitions
    }
}

/// Picks the partition of one record.
pub(crate) fn choose(explicit: Option<u32>, key: Option<&[u8]>, partitions: u32, round_robin: &RoundRobin) -> u32 {
    match (explicit, key) {
        (Some(p), _) => p,
        (None, Some(key)) => partition_for_key(key, partitions),
        (None, None) => round_robin.next(partitions),
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
    fn explicit_beats_key_beats_round_robin() {
        let rr = RoundRobin::default();
        assert_eq!(choose(Some(5), Some(b"foobar"), 12, &rr), 5);
        assert_eq!(choose(None, Some(b"foobar"), 12, &rr), partition_for_key(b"foobar", 12));
        let turns: Vec<u32> = (0..6).map(|_| choose(None, None, 3, &rr)).collect();
        assert_eq!(turns, [0, 1, 2, 0, 1, 2]);
    }
}
