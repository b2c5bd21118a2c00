//! The RecordBatch v2 (magic 2) layout, written down once for the protocol and storage crates:
//! header field offsets, attribute bits, the CRC-32C and the range it covers, the parsed
//! header, and the assembly of a batch around its records.
//!
//! ```text
//! offset  field                 type
//!      0  baseOffset            i64
//!      8  batchLength           i32   bytes after this field
//!     12  partitionLeaderEpoch  i32
//!     16  magic                 i8    = 2
//!     17  crc                   u32   CRC-32C of bytes 21..end
//!     21  attributes            i16   bits 0-2 codec, 3 LogAppendTime, 4 transactional, 5 control
//!     23  lastOffsetDelta       i32
//!     27  baseTimestamp         i64
//!     35  maxTimestamp          i64
//!     43  producerId            i64
//!     51  producerEpoch         i16
//!     53  baseSequence          i32
//!     57  recordsCount          i32
//!     61  records...
//! ```
//!
//! All integers are big endian. Everything before `attributes` (base offset, length, leader
//! epoch, magic, the CRC itself) is outside the CRC, so the broker can set the base offset and
//! leader epoch without recomputing it. The records inside use the varints of [`crate::varint`].
//!
//! Thread safety: constants, `Copy` values and functions over byte slices; nothing shared.

/// Size of the RecordBatch v2 header in bytes, up to and including `recordsCount`.
pub const BATCH_HEADER_SIZE: usize = 61;
/// Bytes that precede the batchLength-counted part of a batch (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;
/// The only record format strom reads and writes.
pub const MAGIC_V2: i8 = 2;

pub const BASE_OFFSET_OFFSET: usize = 0;
pub const BATCH_LENGTH_OFFSET: usize = 8;
pub const LEADER_EPOCH_OFFSET: usize = 12;
pub const MAGIC_OFFSET: usize = 16;
pub const CRC_OFFSET: usize = 17;
pub const ATTRIBUTES_OFFSET: usize = 21;
pub const LAST_OFFSET_DELTA_OFFSET: usize = 23;
pub const BASE_TIMESTAMP_OFFSET: usize = 27;
pub const MAX_TIMESTAMP_OFFSET: usize = 35;
pub const PRODUCER_ID_OFFSET: usize = 43;
pub const PRODUCER_EPOCH_OFFSET: usize = 51;
pub const BASE_SEQUENCE_OFFSET: usize = 53;
pub const RECORDS_COUNT_OFFSET: usize = 57;
/// Where the CRC-covered part of a batch starts: the `attributes` field, to the batch's end.
pub const CRC_START: usize = ATTRIBUTES_OFFSET;

/// Attribute bits 0-2: the compression codec id (see [`crate::Codec`]).
pub const COMPRESSION_MASK: i16 = 0x07;
/// Attribute bit 3: timestamps are LogAppendTime (set by the broker), else CreateTime.
pub const TIMESTAMP_TYPE_BIT: i16 = 0x08;
/// Attribute bit 4: the batch is part of a transaction.
pub const TRANSACTIONAL_BIT: i16 = 0x10;
/// Attribute bit 5: the batch holds a control record (a transaction marker).
pub const CONTROL_BIT: i16 = 0x20;
/// Highest compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
pub const MAX_COMPRESSION_CODEC: u8 = 4;

/// CRC-32C (Castagnoli), the checksum of RecordBatch v2 (and of strom's own metadata log
/// frames and producer snapshots).
pub fn crc32c(data: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32
}

/// [`crc32c`] computed piece by piece: the checksum of everything given to `update`.
pub struct Crc32c(crc_fast::Digest);

impl Crc32c {
    pub fn new() -> Crc32c {
        Crc32c(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi))
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(&self) -> u32 {
        self.0.finalize() as u32
    }
}

impl Default for Crc32c {
    fn default() -> Self {
        Crc32c::new()
    }
}

/// The CRC a whole batch should carry: over `batch[CRC_START..]`. `batch` must be at least a
/// header long and hold exactly one batch.
pub fn compute_batch_crc(batch: &[u8]) -> u32 {
    crc32c(&batch[CRC_START..])
}

/// Computes the CRC of `batch` (exactly one whole batch) and stores it in the header.
pub fn write_batch_crc(batch: &mut [u8]) {
    let crc = compute_batch_crc(batch);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// The big-endian i16 at `at` (panics when `b` is too short).
pub fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

/// The big-endian i32 at `at` (panics when `b` is too short).
pub fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The big-endian i64 at `at` (panics when `b` is too short).
pub fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// A buffer too short for a batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("batch header needs {BATCH_HEADER_SIZE} bytes, got {0}")]
pub struct ShortHeader(pub usize);

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

impl BatchHeader {
    /// Parses the 61-byte header at the start of `buf`. Only checks that enough bytes are
    /// there: magic, length and CRC are the reader's to check.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, ShortHeader> {
        if buf.len() < BATCH_HEADER_SIZE {
            return Err(ShortHeader(buf.len()));
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

    /// Total bytes of the batch (batchLength + 12). Meaningful once the length was checked.
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

/// The header fields of a batch being built (base offset 0 and leader epoch -1 until the
/// broker assigns them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewBatch {
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

/// A batch over 2 GiB, which `batchLength` cannot express.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("batch over 2 GiB")]
pub struct BatchTooLarge;

/// Assembles a batch (base offset 0, leader epoch -1) around `body`, the encoded (and possibly
/// compressed) records, and computes its CRC.
pub fn assemble_batch(fields: &NewBatch, body: &[u8]) -> Result<Vec<u8>, BatchTooLarge> {
    let total = BATCH_HEADER_SIZE + body.len();
    let batch_length = i32::try_from(total - LOG_OVERHEAD).map_err(|_| BatchTooLarge)?;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&0i64.to_be_bytes());
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&fields.attributes.to_be_bytes());
    out.extend_from_slice(&fields.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&fields.base_timestamp.to_be_bytes());
    out.extend_from_slice(&fields.max_timestamp.to_be_bytes());
    out.extend_from_slice(&fields.producer_id.to_be_bytes());
    out.extend_from_slice(&fields.producer_epoch.to_be_bytes());
    out.extend_from_slice(&fields.base_sequence.to_be_bytes());
    out.extend_from_slice(&fields.records_count.to_be_bytes());
    out.extend_from_slice(body);
    write_batch_crc(&mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        let mut digest = Crc32c::new();
        for part in [&b"1234"[..], b"", b"56789"] {
            digest.update(part);
        }
        assert_eq!(digest.finish(), 0xe306_9283);
    }

    #[test]
    fn assembles_and_parses_a_header() {
        let fields = NewBatch {
            attributes: TRANSACTIONAL_BIT | 3,
            last_offset_delta: 4,
            base_timestamp: 1000,
            max_timestamp: 1004,
            producer_id: 7,
            producer_epoch: 2,
            base_sequence: 10,
            records_count: 5,
        };
        let batch = assemble_batch(&fields, b"records").unwrap();
        assert_eq!(batch.len(), BATCH_HEADER_SIZE + 7);
        let h = BatchHeader::parse(&batch).unwrap();
        assert_eq!(h.total_size(), batch.len());
        assert_eq!(
            (h.base_offset, h.partition_leader_epoch, h.magic),
            (0, -1, MAGIC_V2)
        );
        assert_eq!(h.crc, compute_batch_crc(&batch));
        assert_eq!(h.compression(), 3);
        assert!(h.is_transactional() && !h.is_control() && !h.is_log_append_time());
        assert_eq!(
            (h.last_offset(), h.base_timestamp, h.max_timestamp),
            (4, 1000, 1004)
        );
        assert_eq!(
            (
                h.producer_id,
                h.producer_epoch,
                h.base_sequence,
                h.records_count
            ),
            (7, 2, 10, 5)
        );
        assert_eq!(BatchHeader::parse(&batch[..60]), Err(ShortHeader(60)));
    }
}
