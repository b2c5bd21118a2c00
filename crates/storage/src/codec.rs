//! Record batch compression codecs, by Kafka's codec ids (attributes bits 0-2), for the two
//! places the storage crate must look inside compressed batches: the key check on append to a
//! compacted log and the log cleaner, which decompresses, filters and recompresses with the
//! batch's own codec.
//!
//! The storage crate cannot depend on strom-protocol, so this mirrors its codec module: snappy
//! is written with xerial framing (as the Java client does) and read in both framings; lz4 is
//! the LZ4 frame format with independent 64 KiB blocks.

use std::io::{Read, Write};

use crate::StorageError;

pub(crate) const NONE: u8 = 0;
const GZIP: u8 = 1;
const SNAPPY: u8 = 2;
const LZ4: u8 = 3;
const ZSTD: u8 = 4;

/// Upper bound on the decompressed size of one batch's records.
pub(crate) const MAX_DECOMPRESSED: usize = 256 * 1024 * 1024;

const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_BLOCK: usize = 32 * 1024;

fn err(codec: u8, e: impl std::fmt::Display) -> StorageError {
    StorageError::CorruptRecord(format!("codec {codec}: {e}"))
}

/// Compresses `data` with codec `codec`.
pub(crate) fn compress(codec: u8, data: &[u8]) -> Result<Vec<u8>, StorageError> {
    match codec {
        NONE => Ok(data.to_vec()),
        GZIP => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(data).map_err(|e| err(codec, e))?;
            enc.finish().map_err(|e| err(codec, e))
        }
        SNAPPY => {
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
        LZ4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            enc.write_all(data).map_err(|e| err(codec, e))?;
            enc.finish().map_err(|e| err(codec, e))
        }
        ZSTD => zstd::bulk::compress(data, 3).map_err(|e| err(codec, e)),
        other => Err(StorageError::InvalidRecord(format!(
            "unknown compression codec {other}"
        ))),
    }
}

/// Decompresses `data` written with codec `codec`, refusing output beyond `max_bytes`.
pub(crate) fn decompress(
    codec: u8,
    data: &[u8],
    max_bytes: usize,
) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::new();
    let limit = max_bytes as u64 + 1;
    match codec {
        NONE => out.extend_from_slice(data),
        GZIP => {
            flate2::read::GzDecoder::new(data)
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|e| err(codec, e))?;
        }
        SNAPPY => {
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
        LZ4 => {
            lz4_flex::frame::FrameDecoder::new(data)
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|e| err(codec, e))?;
        }
        ZSTD => {
            zstd::stream::read::Decoder::new(data)
                .map_err(|e| err(codec, e))?
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|e| err(codec, e))?;
        }
        other => {
            return Err(StorageError::InvalidRecord(format!(
                "unknown compression codec {other}"
            )));
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

    #[test]
    fn every_codec_round_trips_and_bounds_output() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8).collect();
        for codec in 0..=4u8 {
            let packed = compress(codec, &data).unwrap();
            assert_eq!(
                decompress(codec, &packed, data.len()).unwrap(),
                data,
                "{codec}"
            );
            assert!(decompress(codec, &packed, 1000).is_err(), "{codec}");
        }
        assert!(compress(5, &data).is_err());
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(decompress(SNAPPY, &raw, data.len()).unwrap(), data);
    }
}
