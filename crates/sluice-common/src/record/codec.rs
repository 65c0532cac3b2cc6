//! Compression codecs of a batch's values (docs/FORMAT.md, "Compressed batches"). Pure: bytes
//! in, bytes out. Every codec works on one block whose uncompressed length the batch states, so
//! decompression writes into a buffer of exactly that size and a payload that would expand
//! past it — a decompression bomb — fails instead of allocating.

use std::io::{Read, Write};

/// The codec of a batch, in its header's `attrs` bits 0–2 (Kafka's numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Records are stored as they are.
    #[default]
    None,
    /// DEFLATE in a gzip member (RFC 1952).
    Gzip,
    /// Snappy's raw block format.
    Snappy,
    /// LZ4's block format.
    Lz4,
    /// A Zstandard frame.
    Zstd,
}

/// zstd's level when the producer does not choose one (the library's own default).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

impl Compression {
    /// Every codec, `None` first.
    pub const ALL: [Compression; 5] =
        [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

    /// The codec's number in a batch header.
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec numbered `id` in a batch header, if there is one.
    pub fn from_id(id: u8) -> Option<Compression> {
        Compression::ALL.into_iter().find(|c| c.id() == id)
    }

    /// The name configuration and the CLI use: `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// The codec named `name` (see [`Compression::name`]; `uncompressed` is Kafka's `none`).
    pub fn from_name(name: &str) -> Option<Compression> {
        match name {
            "uncompressed" => Some(Compression::None),
            _ => Compression::ALL.into_iter().find(|c| c.name() == name),
        }
    }

    /// Compresses `input` as one block; `level` is zstd's (1–22) and gzip's (0–9, clamped),
    /// ignored by the others.
    pub fn compress(self, input: &[u8], level: i32) -> Vec<u8> {
        match self {
            Compression::None => input.to_vec(),
            Compression::Gzip => {
                let level = flate2::Compression::new(level.clamp(0, 9) as u32);
                let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(input.len() / 2 + 64), level);
                encoder.write_all(input).expect("writing to a Vec cannot fail");
                encoder.finish().expect("writing to a Vec cannot fail")
            }
            Compression::Snappy => {
                snap::raw::Encoder::new().compress_vec(input).expect("snappy compresses any input below 4 GiB")
            }
            Compression::Lz4 => lz4_flex::block::compress(input),
            Compression::Zstd => zstd::bulk::compress(input, level.clamp(1, 22)).expect("zstd compresses any input"),
        }
    }

    /// Decompresses `input` into exactly `len` bytes; fails if it is corrupt, truncated, or
    /// holds more or less than `len` bytes.
    pub fn decompress(self, input: &[u8], len: usize) -> Result<Vec<u8>, CodecError> {
        let corrupt = |e: &dyn std::fmt::Display| CodecError::Corrupt { codec: self, reason: e.to_string() };
        let mut out = vec![0u8; len];
        let written = match self {
            Compression::None => {
                out.copy_from_slice(input.get(..len).ok_or(CodecError::Length { codec: self, expected: len })?);
                input.len()
            }
            Compression::Gzip => {
                // One byte more than expected, so an over-long payload is seen without inflating it.
                let mut decoder = flate2::read::GzDecoder::new(input).take(len as u64 + 1);
                let mut filled = 0;
                loop {
                    let into = if filled < len { &mut out[filled..] } else { &mut [0u8; 1][..] };
                    match decoder.read(into).map_err(|e| corrupt(&e))? {
                        0 => break filled,
                        _ if filled >= len => return Err(CodecError::Length { codec: self, expected: len }),
                        n => filled += n,
                    }
                }
            }
            Compression::Snappy => {
                let stated = snap::raw::decompress_len(input).map_err(|e| corrupt(&e))?;
                if stated != len {
                    return Err(CodecError::Length { codec: self, expected: len });
                }
                snap::raw::Decoder::new().decompress(input, &mut out).map_err(|e| corrupt(&e))?
            }
            Compression::Lz4 => lz4_flex::block::decompress_into(input, &mut out).map_err(|e| corrupt(&e))?,
            Compression::Zstd => {
                let mut decoder = zstd::bulk::Decompressor::new().map_err(|e| corrupt(&e))?;
                decoder.decompress_to_buffer(input, &mut out).map_err(|e| corrupt(&e))?
            }
        };
        if written != len {
            return Err(CodecError::Length { codec: self, expected: len });
        }
        Ok(out)
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a compressed block could not be decompressed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The codec refused the bytes.
    #[error("the {codec} block is corrupt: {reason}")]
    Corrupt {
        /// The codec.
        codec: Compression,
        /// What it said.
        reason: String,
    },
    /// The block does not hold exactly the length the batch states.
    #[error("the {codec} block does not hold the {expected} bytes the batch states")]
    Length {
        /// The codec.
        codec: Compression,
        /// What the batch states.
        expected: usize,
    },
}

/// A topic's compression policy (its `compression` setting): keep what the producer sent, or
/// have the broker store every batch with one codec (recompressing those that differ), as
/// Kafka's `compression.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TopicCompression {
    /// Batches are stored as the producer sent them. The default.
    #[default]
    Producer,
    /// Batches are stored with this codec.
    Codec(Compression),
}

impl TopicCompression {
    /// The setting's value: `producer`, or a codec's name.
    pub fn name(self) -> &'static str {
        match self {
            TopicCompression::Producer => "producer",
            TopicCompression::Codec(c) => c.name(),
        }
    }

    /// The policy named `name` (see [`TopicCompression::name`]).
    pub fn from_name(name: &str) -> Result<TopicCompression, String> {
        match name {
            "producer" => Ok(TopicCompression::Producer),
            other => Compression::from_name(other)
                .map(TopicCompression::Codec)
                .ok_or_else(|| format!("compression must be producer, none, gzip, snappy, lz4 or zstd, not {other:?}")),
        }
    }
}

impl std::fmt::Display for TopicCompression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..20_000)
            .flat_map(|i| format!("{{\"user\":{i},\"event\":\"click\",\"page\":\"/a/{}\"}}", i % 7).into_bytes())
            .collect()
    }

    #[test]
    fn every_codec_round_trips_and_compresses_repetitive_data() {
        let input = sample();
        for codec in Compression::ALL {
            let packed = codec.compress(&input, DEFAULT_ZSTD_LEVEL);
            if codec != Compression::None {
                assert!(packed.len() * 3 < input.len(), "{codec}: {} of {}", packed.len(), input.len());
            }
            assert_eq!(
                codec.decompress(&packed, input.len()).unwrap_or_else(|e| panic!("{codec}: {e}")),
                input,
                "{codec}"
            );
            assert!(codec.compress(&[], 3).len() < 64, "{codec}: an empty block is small");
            assert_eq!(
                codec.decompress(&codec.compress(&[], 3), 0).unwrap_or_else(|e| panic!("{codec}: {e}")),
                Vec::<u8>::new()
            );
        }
    }

    #[test]
    fn corrupt_truncated_and_mislabelled_blocks_are_refused() {
        let input = sample();
        for codec in Compression::ALL.into_iter().skip(1) {
            let packed = codec.compress(&input, 3);
            let truncated = &packed[..packed.len() / 2];
            assert!(codec.decompress(truncated, input.len()).is_err(), "{codec}: truncated");
            let mut flipped = packed.clone();
            for b in flipped.iter_mut().skip(8).step_by(7) {
                *b ^= 0x5a;
            }
            match codec.decompress(&flipped, input.len()) {
                Err(_) => {}
                Ok(out) => assert_ne!(out, input, "{codec}: corruption went unnoticed and unchanged"),
            }
            assert!(codec.decompress(&packed, input.len() - 1).is_err(), "{codec}: shorter than stated");
            assert!(codec.decompress(&packed, input.len() + 1).is_err(), "{codec}: longer than stated");
            assert!(codec.decompress(b"not compressed at all", 100).is_err(), "{codec}: garbage");
        }
    }

    #[test]
    fn a_bomb_is_refused_without_inflating_it() {
        let zeros = vec![0u8; 64 << 20];
        for codec in Compression::ALL.into_iter().skip(1) {
            let bomb = codec.compress(&zeros, 3);
            assert!(bomb.len() * 20 < zeros.len(), "{codec}: {} bytes", bomb.len());
            let e = codec.decompress(&bomb, 1024).expect_err(codec.name());
            assert!(matches!(e, CodecError::Length { .. } | CodecError::Corrupt { .. }), "{codec}: {e}");
        }
    }

    #[test]
    fn names_and_ids_round_trip() {
        for codec in Compression::ALL {
            assert_eq!(Compression::from_id(codec.id()), Some(codec));
            assert_eq!(Compression::from_name(codec.name()), Some(codec));
            assert_eq!(TopicCompression::from_name(codec.name()), Ok(TopicCompression::Codec(codec)));
        }
        assert_eq!(Compression::from_id(5), None);
        assert_eq!(TopicCompression::from_name("producer"), Ok(TopicCompression::Producer));
        assert!(TopicCompression::from_name("brotli").unwrap_err().contains("zstd"));
    }
}
