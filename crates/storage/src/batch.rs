//! RecordBatch v2 layout: header parsing, validation of a producer's bytes, and the in-place
//! patches the broker applies before storing a batch.
//!
//! Header (big endian, 61 bytes):
//! baseOffset i64 @0, batchLength i32 @8, partitionLeaderEpoch i32 @12, magic i8 @16,
//! crc u32 @17 (CRC-32C over bytes @21..end), attributes i16 @21, lastOffsetDelta i32 @23,
//! baseTimestamp i64 @27, maxTimestamp i64 @35, producerId i64 @43, producerEpoch i16 @51,
//! baseSequence i32 @53, recordsCount i32 @57, then the records.
//!
//! Thread safety: functions over byte slices and `Copy` headers; nothing shared.

use crate::StorageError;

/// Size of the RecordBatch v2 header in bytes.
pub const BATCH_HEADER_SIZE: usize = 61;
/// Bytes that precede the batchLength-counted part of a batch (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;
/// The only record format strom stores.
pub const MAGIC_V2: i8 = 2;

pub(crate) const BASE_OFFSET_OFFSET: usize = 0;
pub(crate) const BATCH_LENGTH_OFFSET: usize = 8;
pub(crate) const LEADER_EPOCH_OFFSET: usize = 12;
pub(crate) const MAGIC_OFFSET: usize = 16;
pub(crate) const CRC_OFFSET: usize = 17;
pub(crate) const ATTRIBUTES_OFFSET: usize = 21;
pub(crate) const LAST_OFFSET_DELTA_OFFSET: usize = 23;
pub(crate) const BASE_TIMESTAMP_OFFSET: usize = 27;
pub(crate) const MAX_TIMESTAMP_OFFSET: usize = 35;
pub(crate) const PRODUCER_ID_OFFSET: usize = 43;
pub(crate) const PRODUCER_EPOCH_OFFSET: usize = 51;
pub(crate) const BASE_SEQUENCE_OFFSET: usize = 53;
pub(crate) const RECORDS_COUNT_OFFSET: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;
/// Highest compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
pub const MAX_COMPRESSION_CODEC: u8 = 4;

/// The parsed fixed header of a RecordBatch v2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl BatchHeader {
    /// Parses the 61-byte header at the start of `buf`. Only checks that enough bytes are there;
    /// see [`validate_batches`] for the full checks.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, StorageError> {
        if buf.len() < BATCH_HEADER_SIZE {
            return Err(StorageError::CorruptRecord(format!(
                "batch header needs {BATCH_HEADER_SIZE} bytes, got {}",
                buf.len()
            )));
        }
        Ok(BatchHeader {
            base_offset: i64_at(buf, BASE_OFFSET_OFFSET),
            batch_length: i32_at(buf, BATCH_LENGTH_OFFSET),
            partition_leader_epoch: i32_at(buf, LEADER_EPOCH_OFFSET),
            magic: buf[MAGIC_OFFSET] as i8,
            crc: i32_at(buf, CRC_OFFSET) as u32,
            attributes: i16_at(buf, ATTRIBUTES_OFFSET),
            last_offset_delta: i32_at(buf, LAST_OFFSET_DELTA_OFFSET),
            base_timestamp: i64_at(buf, BASE_TIMESTAMP_OFFSET),
            max_timestamp: i64_at(buf, MAX_TIMESTAMP_OFFSET),
            producer_id: i64_at(buf, PRODUCER_ID_OFFSET),
            producer_epoch: i16_at(buf, PRODUCER_EPOCH_OFFSET),
            base_sequence: i32_at(buf, BASE_SEQUENCE_OFFSET),
            records_count: i32_at(buf, RECORDS_COUNT_OFFSET),
        })
    }

    /// Total bytes of the batch on disk (batchLength + 12). Meaningful once the length was checked.
    pub fn total_size(&self) -> usize {
        (self.batch_length.max(0) as usize) + LOG_OVERHEAD
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd; 5..=7 are invalid).
    pub fn compression(&self) -> u8 {
        (self.attributes & COMPRESSION_MASK) as u8
    }

    /// Whether the batch timestamps are LogAppendTime (set by the broker).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// CRC-32C (Castagnoli), the checksum of RecordBatch v2.
pub fn crc32c(data: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32
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
    let crc = crc32c(&batch[ATTRIBUTES_OFFSET..total]);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// [`patch_log_append_time`] for a batch whose header is a separate copy: `header` is the
/// batch's first [`BATCH_HEADER_SIZE`] bytes, `body` the rest of the batch.
pub fn patch_log_append_time_split(header: &mut [u8], body: &[u8], now_ms: i64) {
    let attributes = i16_at(header, ATTRIBUTES_OFFSET) | TIMESTAMP_TYPE_BIT;
    header[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    header[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&now_ms.to_be_bytes());
    let mut digest = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
    digest.update(&header[ATTRIBUTES_OFFSET..BATCH_HEADER_SIZE]);
    digest.update(body);
    let crc = digest.finalize() as u32;
    header[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Writes `value` as a zigzag varint (up to 64 bits).
pub(crate) fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
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
#[allow(clippy::too_many_arguments)]
pub(crate) fn assemble_batch(
    attributes: i16,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer: ProducerFields,
    records_count: i32,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(BATCH_HEADER_SIZE + body.len());
    out.extend_from_slice(&0i64.to_be_bytes());
    let batch_length = (BATCH_HEADER_SIZE - LOG_OVERHEAD + body.len()) as i32;
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&last_offset_delta.to_be_bytes());
    out.extend_from_slice(&base_timestamp.to_be_bytes());
    out.extend_from_slice(&max_timestamp.to_be_bytes());
    out.extend_from_slice(&producer.producer_id.to_be_bytes());
    out.extend_from_slice(&producer.producer_epoch.to_be_bytes());
    out.extend_from_slice(&producer.base_sequence.to_be_bytes());
    out.extend_from_slice(&records_count.to_be_bytes());
    out.extend_from_slice(body);
    let crc = crc32c(&out[ATTRIBUTES_OFFSET..]);
    out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    out
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

/// Reads a zigzag varint (up to 64 bits) from `buf` at `*pos`, advancing `*pos`.
pub(crate) fn read_varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    let mut shift = 0u32;
    loop {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    Some(((value >> 1) as i64) ^ -((value & 1) as i64))
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

    #[test]
    fn crc32c_known_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }
}
