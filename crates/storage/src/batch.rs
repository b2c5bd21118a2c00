//! What storage does with RecordBatch v2 bytes: validation of a producer's bytes, the in-place
//! patches the broker applies before storing a batch, and transaction markers. The layout
//! itself (field offsets, CRC-32C and its range, the parsed [`BatchHeader`]) is
//! `strom_codec::batch`, shared with the protocol crate and re-exported here.
//!
//! Thread safety: functions over byte slices and `Copy` headers; nothing shared.

use crate::StorageError;

pub(crate) use strom_codec::batch::{
    ATTRIBUTES_OFFSET, BASE_OFFSET_OFFSET, BATCH_LENGTH_OFFSET, CRC_OFFSET, LEADER_EPOCH_OFFSET,
    MAGIC_OFFSET, MAX_TIMESTAMP_OFFSET, RECORDS_COUNT_OFFSET,
};
#[cfg(test)]
pub(crate) use strom_codec::batch::{
    BASE_SEQUENCE_OFFSET, LAST_OFFSET_DELTA_OFFSET, PRODUCER_EPOCH_OFFSET, PRODUCER_ID_OFFSET,
};
pub use strom_codec::batch::{
    BATCH_HEADER_SIZE, BatchHeader, LOG_OVERHEAD, MAGIC_V2, MAX_COMPRESSION_CODEC, crc32c,
};
use strom_codec::batch::{
    CONTROL_BIT, Crc32c, NewBatch, TIMESTAMP_TYPE_BIT, TRANSACTIONAL_BIT, i16_at, i32_at,
    write_batch_crc,
};
use strom_codec::varint::put_varlong;

impl From<strom_codec::batch::ShortHeader> for StorageError {
    fn from(e: strom_codec::batch::ShortHeader) -> Self {
        StorageError::CorruptRecord(e.to_string())
    }
}

/// Checks the framing of the batch at the start of `buf`: magic, length and CRC. Returns the
/// header; the batch occupies `header.total_size()` bytes of `buf`.
pub(crate) fn check_batch_frame(buf: &[u8]) -> Result<BatchHeader, StorageError> {
    if buf.len() <= MAGIC_OFFSET {
        return Err(StorageError::CorruptRecord(format!(
            "{} trailing bytes are too short for a batch",
            buf.len()
        )));
    }
    let magic = buf[MAGIC_OFFSET] as i8;
    if magic != MAGIC_V2 {
        return Err(if magic == 0 || magic == 1 {
            StorageError::UnsupportedMagic(magic)
        } else {
            StorageError::CorruptRecord(format!("invalid magic {magic}"))
        });
    }
    let header = BatchHeader::parse(buf)?;
    let min_length = (BATCH_HEADER_SIZE - LOG_OVERHEAD) as i32;
    if header.batch_length < min_length {
        return Err(StorageError::CorruptRecord(format!(
            "batch length {} is below the minimum {min_length}",
            header.batch_length
        )));
    }
    let total = header.total_size();
    if total > buf.len() {
        return Err(StorageError::CorruptRecord(format!(
            "batch of {total} bytes but only {} bytes available",
            buf.len()
        )));
    }
    let computed = crc32c(&buf[ATTRIBUTES_OFFSET..total]);
    if computed != header.crc {
        return Err(StorageError::CorruptRecord(format!(
            "crc mismatch at base offset {}: stored {:#010x}, computed {computed:#010x}",
            header.base_offset, header.crc
        )));
    }
    Ok(header)
}

/// Splits a producer's records bytes into batches and validates each one. Returns the headers
/// in order; batch `i` starts at the sum of the `total_size()` of the batches before it.
pub fn validate_batches(
    buf: &[u8],
    max_message_bytes: u32,
) -> Result<Vec<BatchHeader>, StorageError> {
    if buf.is_empty() {
        return Err(StorageError::InvalidRecord("no record batches".into()));
    }
    let mut headers = Vec::new();
    let mut pos = 0usize;
    while pos < buf.len() {
        let rest = &buf[pos..];
        // Size before CRC so an oversized batch reports MESSAGE_TOO_LARGE cheaply.
        if rest.len() >= BATCH_HEADER_SIZE && rest[MAGIC_OFFSET] as i8 == MAGIC_V2 {
            let len = i32_at(rest, BATCH_LENGTH_OFFSET);
            if len >= 0 {
                let total = len as usize + LOG_OVERHEAD;
                if total <= rest.len() && total > max_message_bytes as usize {
                    return Err(StorageError::MessageTooLarge {
                        size: total,
                        max: max_message_bytes,
                    });
                }
            }
        }
        let header = check_batch_frame(rest)?;
        let total = header.total_size();
        if total > max_message_bytes as usize {
            return Err(StorageError::MessageTooLarge {
                size: total,
                max: max_message_bytes,
            });
        }
        if header.records_count <= 0 {
            return Err(StorageError::InvalidRecord(format!(
                "invalid record count {}",
                header.records_count
            )));
        }
        if header.last_offset_delta != header.records_count - 1 {
            return Err(StorageError::InvalidRecord(format!(
                "last offset delta {} does not match record count {}",
                header.last_offset_delta, header.records_count
            )));
        }
        if header.compression() > MAX_COMPRESSION_CODEC {
            return Err(StorageError::InvalidRecord(format!(
                "unknown compression codec {}",
                header.compression()
            )));
        }
        headers.push(header);
        pos += total;
    }
    Ok(headers)
}

/// Sets the base offset of a batch. Outside the CRC range: the CRC stays valid.
pub fn patch_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET_OFFSET..BASE_OFFSET_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Sets the partition leader epoch of a batch. Outside the CRC range: the CRC stays valid.
pub fn patch_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[LEADER_EPOCH_OFFSET..LEADER_EPOCH_OFFSET + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Marks a batch as LogAppendTime with `now_ms` as its max timestamp, and recomputes the CRC.
/// `batch` must hold exactly one whole batch (or at least its full length).
pub fn patch_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes = i16_at(batch, ATTRIBUTES_OFFSET) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&now_ms.to_be_bytes());
    let total =
        (i32_at(batch, BATCH_LENGTH_OFFSET).max(0) as usize + LOG_OVERHEAD).min(batch.len());
    write_batch_crc(&mut batch[..total]);
}

/// [`patch_log_append_time`] for a batch whose header is a separate copy: `header` is the
/// batch's first [`BATCH_HEADER_SIZE`] bytes, `body` the rest of the batch.
pub fn patch_log_append_time_split(header: &mut [u8], body: &[u8], now_ms: i64) {
    let attributes = i16_at(header, ATTRIBUTES_OFFSET) | TIMESTAMP_TYPE_BIT;
    header[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    header[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&now_ms.to_be_bytes());
    let mut digest = Crc32c::new();
    digest.update(&header[ATTRIBUTES_OFFSET..BATCH_HEADER_SIZE]);
    digest.update(body);
    let crc = digest.finish();
    header[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// The producer fields of a batch header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerFields {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl ProducerFields {
    /// The fields of a batch from a producer without idempotence.
    pub const NONE: ProducerFields = ProducerFields {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    };
}

/// Assembles a batch (base offset 0, leader epoch -1) around `body`, the encoded (and possibly
/// compressed) records, and computes its CRC.
pub(crate) fn assemble_batch(
    attributes: i16,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer: ProducerFields,
    records_count: i32,
    body: &[u8],
) -> Vec<u8> {
    let fields = NewBatch {
        attributes,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id: producer.producer_id,
        producer_epoch: producer.producer_epoch,
        base_sequence: producer.base_sequence,
        records_count,
    };
    strom_codec::batch::assemble_batch(&fields, body)
        .expect("batches built by storage are far below 2 GiB")
}

/// Attribute bits of a transaction marker batch.
pub const CONTROL_ATTRIBUTES: i16 = TRANSACTIONAL_BIT | CONTROL_BIT;
/// Attribute bit of a transactional batch.
pub const TRANSACTIONAL_ATTRIBUTE: i16 = TRANSACTIONAL_BIT;

/// Builds a transaction marker: a control batch holding one control record whose key is
/// (version 0, `control_type`) and whose value is (version 0, `coordinator_epoch`).
pub fn build_control_batch(
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    control_type: i16,
    timestamp: i64,
) -> Vec<u8> {
    let mut record = vec![0u8]; // attributes
    put_varlong(&mut record, 0); // timestamp delta
    put_varlong(&mut record, 0); // offset delta
    put_varlong(&mut record, 4);
    record.extend_from_slice(&0i16.to_be_bytes());
    record.extend_from_slice(&control_type.to_be_bytes());
    put_varlong(&mut record, 6);
    record.extend_from_slice(&0i16.to_be_bytes());
    record.extend_from_slice(&coordinator_epoch.to_be_bytes());
    put_varlong(&mut record, 0); // headers
    let mut body = Vec::with_capacity(record.len() + 2);
    put_varlong(&mut body, record.len() as i64);
    body.extend_from_slice(&record);
    let producer = ProducerFields {
        producer_id,
        producer_epoch,
        base_sequence: -1,
    };
    assemble_batch(
        CONTROL_ATTRIBUTES,
        0,
        timestamp,
        timestamp,
        producer,
        1,
        &body,
    )
}

/// The (control type, coordinator epoch) of the control batch `batch` (uncompressed, whole):
/// the type (0 abort, 1 commit) from its first record's key, the epoch from its value.
pub fn control_record(batch: &[u8]) -> Option<(i16, i32)> {
    let mut pos = BATCH_HEADER_SIZE;
    read_varlong(batch, &mut pos)?; // record length
    pos += 1; // attributes
    read_varlong(batch, &mut pos)?; // timestamp delta
    read_varlong(batch, &mut pos)?; // offset delta
    let key_len = usize::try_from(read_varlong(batch, &mut pos)?).ok()?;
    let key = batch.get(pos..pos + key_len)?;
    pos += key_len;
    let kind = i16::from_be_bytes(key.get(2..4)?.try_into().ok()?);
    let value_len = usize::try_from(read_varlong(batch, &mut pos)?).unwrap_or(0);
    let coordinator_epoch = batch
        .get(pos + 2..pos + value_len.min(6))
        .and_then(|b| b.try_into().ok())
        .map_or(-1, i32::from_be_bytes);
    Some((kind, coordinator_epoch))
}

/// Reads a zigzag varlong from `buf` at `*pos`, advancing `*pos`; `None` when truncated or
/// too long.
pub(crate) fn read_varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
    strom_codec::varint::read_varlong(buf, pos).ok()
}

/// For an uncompressed batch, yields (offset, timestamp) of each record, stopping at the first
/// malformed record. `batch` holds the whole batch.
pub(crate) fn record_timestamps(batch: &[u8], header: &BatchHeader) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let end = header.total_size().min(batch.len());
    let mut pos = BATCH_HEADER_SIZE;
    for _ in 0..header.records_count.max(0) {
        let Some(len) = read_varlong(batch, &mut pos) else {
            break;
        };
        let record_end = pos.saturating_add(len.max(0) as usize);
        if len < 0 || record_end > end {
            break;
        }
        pos += 1; // attributes
        let (Some(ts_delta), Some(offset_delta)) =
            (read_varlong(batch, &mut pos), read_varlong(batch, &mut pos))
        else {
            break;
        };
        out.push((
            header.base_offset + offset_delta,
            header.base_timestamp.wrapping_add(ts_delta),
        ));
        pos = record_end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{build_batch, make_batch};

    #[test]
    fn parses_a_built_batch() {
        let b = build_batch(1000, &[(Some(b"k"), Some(b"v")), (None, Some(b"value2"))]);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.magic, 2);
        assert_eq!(h.records_count, 2);
        assert_eq!(h.last_offset_delta, 1);
        assert_eq!(h.total_size(), b.len());
        assert_eq!(h.base_timestamp, 1000);
        assert_eq!(h.compression(), 0);
        assert!(!h.is_log_append_time() && !h.is_transactional() && !h.is_control());
        let hs = validate_batches(&b, 1 << 20).unwrap();
        assert_eq!(hs, vec![h]);
        assert_eq!(record_timestamps(&b, &h), vec![(0, 1000), (1, 1001)]);
    }

    #[test]
    fn split_log_append_time_patch_matches_the_in_place_one() {
        let mut whole = build_batch(1000, &[(Some(b"k"), Some(b"v")), (None, Some(b"value2"))]);
        let mut header = whole[..BATCH_HEADER_SIZE].to_vec();
        patch_log_append_time_split(&mut header, &whole[BATCH_HEADER_SIZE..], 99_999);
        patch_log_append_time(&mut whole, 99_999);
        assert_eq!(header, whole[..BATCH_HEADER_SIZE]);
        validate_batches(&whole, 1 << 20).unwrap();
    }

    #[test]
    fn validates_several_batches() {
        let mut buf = make_batch(3, 10, 5);
        buf.extend(make_batch(1, 100, 6));
        let hs = validate_batches(&buf, 1 << 20).unwrap();
        assert_eq!(hs.len(), 2);
        assert_eq!(hs[0].records_count, 3);
        assert_eq!(hs[1].records_count, 1);
    }

    #[test]
    fn rejects_empty_input() {
        assert!(matches!(
            validate_batches(&[], 100),
            Err(StorageError::InvalidRecord(_))
        ));
    }

    #[test]
    fn rejects_bad_crc() {
        let mut b = make_batch(2, 10, 5);
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert!(matches!(
            validate_batches(&b, 1 << 20),
            Err(StorageError::CorruptRecord(_))
        ));
    }

    #[test]
    fn rejects_bad_magic() {
        let mut b = make_batch(2, 10, 5);
        b[MAGIC_OFFSET] = 1;
        assert!(matches!(
            validate_batches(&b, 1 << 20),
            Err(StorageError::UnsupportedMagic(1))
        ));
        b[MAGIC_OFFSET] = 7;
        assert!(matches!(
            validate_batches(&b, 1 << 20),
            Err(StorageError::CorruptRecord(_))
        ));
    }

    #[test]
    fn rejects_bad_length() {
        let b = make_batch(2, 10, 5);
        // Truncated body.
        assert!(matches!(
            validate_batches(&b[..b.len() - 1], 1 << 20),
            Err(StorageError::CorruptRecord(_))
        ));
        // Short header.
        assert!(matches!(
            validate_batches(&b[..30], 1 << 20),
            Err(StorageError::CorruptRecord(_))
        ));
        // Length below the header size.
        let mut small = b.clone();
        small[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4].copy_from_slice(&10i32.to_be_bytes());
        assert!(matches!(
            validate_batches(&small, 1 << 20),
            Err(StorageError::CorruptRecord(_))
        ));
        // Negative length.
        let mut neg = b.clone();
        neg[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            validate_batches(&neg, 1 << 20),
            Err(StorageError::CorruptRecord(_))
        ));
        // Trailing garbage after a valid batch.
        let mut trailing = b.clone();
        trailing.extend_from_slice(&[1, 2, 3]);
        assert!(matches!(
            validate_batches(&trailing, 1 << 20),
            Err(StorageError::CorruptRecord(_))
        ));
    }

    #[test]
    fn rejects_too_large() {
        let b = make_batch(2, 100, 5);
        match validate_batches(&b, 100) {
            Err(StorageError::MessageTooLarge { size, max }) => {
                assert_eq!(size, b.len());
                assert_eq!(max, 100);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(validate_batches(&b, b.len() as u32).is_ok());
    }

    fn rewrite_field(b: &mut [u8], at: usize, bytes: &[u8]) {
        b[at..at + bytes.len()].copy_from_slice(bytes);
        let crc = crc32c(&b[ATTRIBUTES_OFFSET..]);
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn rejects_invalid_counts_and_codec() {
        let b = make_batch(3, 10, 5);
        let mut wrong_delta = b.clone();
        rewrite_field(
            &mut wrong_delta,
            LAST_OFFSET_DELTA_OFFSET,
            &5i32.to_be_bytes(),
        );
        assert!(matches!(
            validate_batches(&wrong_delta, 1 << 20),
            Err(StorageError::InvalidRecord(_))
        ));
        let mut zero = b.clone();
        rewrite_field(&mut zero, RECORDS_COUNT_OFFSET, &0i32.to_be_bytes());
        assert!(matches!(
            validate_batches(&zero, 1 << 20),
            Err(StorageError::InvalidRecord(_))
        ));
        let mut codec = b.clone();
        rewrite_field(&mut codec, ATTRIBUTES_OFFSET, &5i16.to_be_bytes());
        assert!(matches!(
            validate_batches(&codec, 1 << 20),
            Err(StorageError::InvalidRecord(_))
        ));
    }

    #[test]
    fn patches_keep_or_fix_the_crc() {
        let mut b = make_batch(2, 10, 5);
        patch_base_offset(&mut b, 42);
        patch_leader_epoch(&mut b, 7);
        let h = validate_batches(&b, 1 << 20).unwrap()[0];
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.last_offset(), 43);
        assert_eq!(h.partition_leader_epoch, 7);
        patch_log_append_time(&mut b, 123_456);
        let h = validate_batches(&b, 1 << 20).unwrap()[0];
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 123_456);
        assert_eq!(h.crc, crc32c(&b[ATTRIBUTES_OFFSET..]));
    }
}
