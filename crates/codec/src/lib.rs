//! The RecordBatch v2 layout and its compression codecs: the lowest crate of strom, shared by
//! the protocol layer (building and reading batches for clients) and the storage layer
//! (validating, stamping and storing them, looking inside compressed batches for key checks
//! and the log cleaner).
//!
//! - [`batch`]: header field offsets, attribute bits, CRC-32C and its range, the parsed header,
//!   batch assembly. The one place the layout is written down.
//! - [`varint`]: the varints of the records inside a batch.
//! - this module: the compression codecs, by Kafka's codec ids (attributes bits 0-2).
//!
//! snappy: strom writes the xerial framing that the Java client uses and reads both xerial
//! frames and raw snappy (as librdkafka sends). lz4: the LZ4 frame format with independent
//! 64 KiB blocks, which every Kafka client reads.

use std::io::{Read, Write};

pub mod batch;
pub mod ids;
pub mod varint;

/// A codec failed: corrupt input, an unknown codec, or output over the limit.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

/// A compression codec as stored in a batch's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Codec {
    pub fn from_id(id: u8) -> Option<Codec> {
        Some(match id {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            _ => return None,
        })
    }

    /// Parses Kafka's `compression.type` names (`none`, `gzip`, `snappy`, `lz4`, `zstd`).
    pub fn from_name(name: &str) -> Option<Codec> {
        Some(match name.to_ascii_lowercase().as_str() {
            "none" | "uncompressed" => Codec::None,
            "gzip" => Codec::Gzip,
            "snappy" => Codec::Snappy,
            "lz4" => Codec::Lz4,
            "zstd" => Codec::Zstd,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

fn err(codec: Codec, e: impl std::fmt::Display) -> CodecError {
    CodecError(format!("{}: {e}", codec.name()))
}

const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_BLOCK: usize = 32 * 1024;

/// Compresses `data` with `codec`.
pub fn compress(codec: Codec, data: &[u8]) -> Result<Vec<u8>, CodecError> {
    match codec {
        Codec::None => Ok(data.to_vec()),
        Codec::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(data).map_err(|e| err(codec, e))?;
            enc.finish().map_err(|e| err(codec, e))
        }
        Codec::Snappy => {
            let mut out = Vec::with_capacity(data.len() / 2 + 32);
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut enc = snap::raw::Encoder::new();
            for chunk in data.chunks(XERIAL_BLOCK) {
                let block = enc.compress_vec(chunk).map_err(|e| err(codec, e))?;
                out.extend_from_slice(&(block.len() as i32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            Ok(out)
        }
        Codec::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            enc.write_all(data).map_err(|e| err(codec, e))?;
            enc.finish().map_err(|e| err(codec, e))
        }
        Codec::Zstd => zstd::bulk::compress(data, 3).map_err(|e| err(codec, e)),
    }
}

/// Decompresses `data` written with `codec`, refusing output beyond `max_bytes`.
pub fn decompress(codec: Codec, data: &[u8], max_bytes: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    let limit = max_bytes as u64 + 1;
    match codec {
        Codec::None => out.extend_from_slice(data),
        Codec::Gzip => {
            flate2::read::GzDecoder::new(data)
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|e| err(codec, e))?;
        }
        Codec::Snappy => {
            if data.len() >= 16 && &data[..8] == XERIAL_MAGIC {
                let mut rest = &data[16..];
                let mut dec = snap::raw::Decoder::new();
                while !rest.is_empty() {
                    if rest.len() < 4 {
                        return Err(err(codec, "truncated xerial block header"));
                    }
                    let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
                    if len < 0 || rest.len() < 4 + len as usize {
                        return Err(err(codec, "truncated xerial block"));
                    }
                    let block = &rest[4..4 + len as usize];
                    let n = snap::raw::decompress_len(block).map_err(|e| err(codec, e))?;
                    if out.len() + n > max_bytes {
                        return Err(err(codec, "decompressed size over the limit"));
                    }
                    out.extend_from_slice(&dec.decompress_vec(block).map_err(|e| err(codec, e))?);
                    rest = &rest[4 + len as usize..];
                }
            } else {
                let n = snap::raw::decompress_len(data).map_err(|e| err(codec, e))?;
                if n > max_bytes {
                    return Err(err(codec, "decompressed size over the limit"));
                }
                out = snap::raw::Decoder::new()
                    .decompress_vec(data)
                    .map_err(|e| err(codec, e))?;
            }
        }
        Codec::Lz4 => {
            lz4_flex::frame::FrameDecoder::new(data)
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|e| err(codec, e))?;
        }
        Codec::Zstd => {
            zstd::stream::read::Decoder::new(data)
                .map_err(|e| err(codec, e))?
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|e| err(codec, e))?;
        }
    }
    if out.len() > max_bytes {
        return Err(err(codec, "decompressed size over the limit"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn every_codec_round_trips(data in proptest::collection::vec(any::<u8>(), 0..200_000)) {
            for codec in ALL {
                let packed = compress(codec, &data).unwrap();
                prop_assert_eq!(decompress(codec, &packed, data.len()).unwrap(), data.clone());
            }
        }
    }

    #[test]
    fn reads_raw_snappy_and_refuses_bombs() {
        let data = vec![7u8; 100_000];
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(decompress(Codec::Snappy, &raw, 100_000).unwrap(), data);
        for codec in ALL {
            let packed = compress(codec, &data).unwrap();
            assert!(decompress(codec, &packed, 1000).is_err(), "{codec:?}");
        }
    }
}
