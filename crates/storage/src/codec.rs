//! Record batch compression, by Kafka's codec ids (attributes bits 0-2), for the two places
//! the storage crate must look inside compressed batches: the key check on append to a
//! compacted log and the log cleaner, which decompresses, filters and recompresses with the
//! batch's own codec. The codecs themselves are `strom-codec`'s.

use strom_codec::Codec;

use crate::StorageError;

pub(crate) const NONE: u8 = 0;

/// Upper bound on the decompressed size of one batch's records.
pub(crate) const MAX_DECOMPRESSED: usize = 256 * 1024 * 1024;

fn codec(id: u8) -> Result<Codec, StorageError> {
    Codec::from_id(id)
        .ok_or_else(|| StorageError::CorruptRecord(format!("unknown compression codec {id}")))
}

fn err(id: u8, e: strom_codec::CodecError) -> StorageError {
    StorageError::CorruptRecord(format!("codec {id}: {e}"))
}

/// Compresses `data` with codec `id`.
pub(crate) fn compress(id: u8, data: &[u8]) -> Result<Vec<u8>, StorageError> {
    strom_codec::compress(codec(id)?, data).map_err(|e| err(id, e))
}

/// Decompresses `data` written with codec `id`, refusing output beyond `max_bytes`.
pub(crate) fn decompress(id: u8, data: &[u8], max_bytes: usize) -> Result<Vec<u8>, StorageError> {
    strom_codec::decompress(codec(id)?, data, max_bytes).map_err(|e| err(id, e))
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
    }
}
