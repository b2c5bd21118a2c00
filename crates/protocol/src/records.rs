//! Building and reading RecordBatch v2 (magic 2) for clients and tools.
//!
//! The batch layout (header fields, CRC-32C over `attributes..end`, varints) is
//! `strom_codec::batch` and `strom_codec::varint`, shared with the storage crate; this module
//! encodes records into batches and decodes them. With a codec the records are compressed as
//! one blob.
//!
//! The encoder writes exactly one batch per call (idempotence off: producer id, epoch and base
//! sequence -1). The decoder reads the concatenated batches of a fetch response, skips control
//! batches and ignores a truncated batch at the end, which a fetch response may carry.

use bytes::Bytes;
use strom_codec::batch::{
    BATCH_LENGTH_OFFSET, BatchHeader, LAST_OFFSET_DELTA_OFFSET, LOG_OVERHEAD, MAGIC_V2, NewBatch,
    TRANSACTIONAL_BIT, compute_batch_crc, i32_at, i64_at,
};
use strom_codec::varint::{self, VarintError, put_varint, put_varlong};

use crate::ProtocolError;
use crate::compression::{self, Codec};

/// Bytes of the batch header, up to and including `recordsCount`.
pub const BATCH_HEADER_BYTES: usize = strom_codec::batch::BATCH_HEADER_SIZE;

/// CRC-32C (Castagnoli), as RecordBatch v2 uses it: the one in `strom_codec::batch`.
pub use strom_codec::batch::crc32c;

/// The most a single batch may decompress to.
pub const MAX_DECOMPRESSED_BYTES: usize = 256 * 1024 * 1024;

/// A record to write, before offsets are assigned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProducerRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    pub timestamp_ms: i64,
}

/// A record as read back from a batch, with its absolute offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub offset: i64,
    pub timestamp_ms: i64,
    /// True when the broker stamped the time (LogAppendTime), false for CreateTime.
    pub timestamp_type_log_append: bool,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

fn records_err(msg: impl Into<String>) -> ProtocolError {
    ProtocolError::Records(msg.into())
}

// ---------------------------------------------------------------------------------------------
// varints

fn varint_err(e: VarintError) -> ProtocolError {
    records_err(match e {
        VarintError::Truncated => "record runs past the end of its batch",
        VarintError::TooLong => "varint too long",
        VarintError::OutOfRange => "varint out of range",
    })
}

/// A cursor over a byte slice that reports truncation as an error.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.remaining() < n {
            return Err(records_err("record runs past the end of its batch"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<i32, ProtocolError> {
        varint::read_varint(self.buf, &mut self.pos).map_err(varint_err)
    }

    fn varlong(&mut self) -> Result<i64, ProtocolError> {
        varint::read_varlong(self.buf, &mut self.pos).map_err(varint_err)
    }

    /// A varint length followed by that many bytes; -1 means null.
    fn nullable_bytes(&mut self, data: &Bytes, what: &str) -> Result<Option<Bytes>, ProtocolError> {
        let len = self.varint()?;
        if len < -1 {
            return Err(records_err(format!("negative {what} length {len}")));
        }
        if len == -1 {
            return Ok(None);
        }
        let start = self.pos;
        self.take(len as usize)?;
        Ok(Some(data.slice(start..start + len as usize)))
    }
}

// ---------------------------------------------------------------------------------------------
// encoding

fn put_nullable(out: &mut Vec<u8>, v: Option<&[u8]>) -> Result<(), ProtocolError> {
    match v {
        None => put_varint(out, -1),
        Some(b) => {
            let len = i32::try_from(b.len()).map_err(|_| records_err("field over 2 GiB"))?;
            put_varint(out, len);
            out.extend_from_slice(b);
        }
    }
    Ok(())
}

fn encode_record(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    record: &ProducerRecord,
    offset_delta: i32,
    base_timestamp: i64,
) -> Result<(), ProtocolError> {
    scratch.clear();
    scratch.push(0); // attributes
    put_varlong(scratch, record.timestamp_ms.wrapping_sub(base_timestamp));
    put_varint(scratch, offset_delta);
    put_nullable(scratch, record.key.as_deref())?;
    put_nullable(scratch, record.value.as_deref())?;
    let header_count =
        i32::try_from(record.headers.len()).map_err(|_| records_err("too many headers"))?;
    put_varint(scratch, header_count);
    for (key, value) in &record.headers {
        put_nullable(scratch, Some(key.as_bytes()))?;
        put_nullable(scratch, value.as_deref())?;
    }
    let len = i32::try_from(scratch.len()).map_err(|_| records_err("record over 2 GiB"))?;
    put_varint(out, len);
    out.extend_from_slice(scratch);
    Ok(())
}

/// Encodes `records` as one RecordBatch v2 with base offset 0 (the broker assigns offsets),
/// CreateTime timestamps, no producer id, records compressed with `codec`.
pub fn encode_batch(records: &[ProducerRecord], codec: Codec) -> Result<Bytes, ProtocolError> {
    encode_producer_batch(records, codec, BatchProducer::NONE)
}

/// The producer fields of a batch: id, epoch, first sequence, and whether it is part of a
/// transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub transactional: bool,
}

impl BatchProducer {
    /// A batch from a producer without idempotence.
    pub const NONE: BatchProducer = BatchProducer {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        transactional: false,
    };
}

/// Like [`encode_batch`], with the producer fields of `producer`.
pub fn encode_producer_batch(
    records: &[ProducerRecord],
    codec: Codec,
    producer: BatchProducer,
) -> Result<Bytes, ProtocolError> {
    let Some(first) = records.first() else {
        return Err(records_err("a batch needs at least one record"));
    };
    let count = i32::try_from(records.len()).map_err(|_| records_err("too many records"))?;
    let base_timestamp = first.timestamp_ms;
    let max_timestamp = records
        .iter()
        .map(|r| r.timestamp_ms)
        .max()
        .unwrap_or(base_timestamp);

    let mut body = Vec::with_capacity(records.len() * 32);
    let mut scratch = Vec::with_capacity(64);
    for (i, record) in records.iter().enumerate() {
        encode_record(&mut body, &mut scratch, record, i as i32, base_timestamp)?;
    }
    let body = match codec {
        Codec::None => body,
        other => compression::compress(other, &body)?,
    };

    let fields = NewBatch {
        attributes: codec as i16
            | if producer.transactional {
                TRANSACTIONAL_BIT
            } else {
                0
            },
        last_offset_delta: count - 1,
        base_timestamp,
        max_timestamp,
        producer_id: producer.producer_id,
        producer_epoch: producer.producer_epoch,
        base_sequence: producer.base_sequence,
        records_count: count,
    };
    let batch = strom_codec::batch::assemble_batch(&fields, &body)
        .map_err(|e| records_err(e.to_string()))?;
    Ok(Bytes::from(batch))
}

// ---------------------------------------------------------------------------------------------
// decoding

/// Decodes concatenated record batches (a fetch response's `records`) into records.
///
/// Control batches (transaction markers) are skipped; a batch cut short at the end of `data` is
/// ignored; a CRC mismatch, a magic other than 2 or a malformed record is an error.
pub fn decode_batches(data: Bytes) -> Result<Vec<ConsumedRecord>, ProtocolError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while data.len() - pos >= LOG_OVERHEAD {
        let batch_length = i32_at(&data, pos + BATCH_LENGTH_OFFSET);
        if batch_length < (BATCH_HEADER_BYTES - LOG_OVERHEAD) as i32 {
            return Err(records_err(format!(
                "batch at byte {pos} has length {batch_length}, shorter than a batch header"
            )));
        }
        let end = pos + LOG_OVERHEAD + batch_length as usize;
        if end > data.len() {
            // A partial batch at the end of a fetch response.
            break;
        }
        decode_batch(data.slice(pos..end), &mut out)?;
        pos = end;
    }
    Ok(out)
}

/// The offset after the last complete batch in `data` (its base offset plus last offset delta
/// plus one), or None when `data` holds no complete batch. A reader resumes there, which skips
/// batches that held only control records.
pub fn batches_end_offset(data: &[u8]) -> Option<i64> {
    let mut pos = 0usize;
    let mut end_offset = None;
    while data.len() - pos >= BATCH_HEADER_BYTES {
        let batch_length = i32_at(data, pos + BATCH_LENGTH_OFFSET);
        if batch_length < (BATCH_HEADER_BYTES - LOG_OVERHEAD) as i32 {
            break;
        }
        let end = pos + LOG_OVERHEAD + batch_length as usize;
        if end > data.len() {
            break;
        }
        let base_offset = i64_at(data, pos);
        let last_offset_delta = i32_at(data, pos + LAST_OFFSET_DELTA_OFFSET);
        end_offset = Some(
            base_offset
                .saturating_add(i64::from(last_offset_delta))
                .saturating_add(1),
        );
        pos = end;
    }
    end_offset
}

/// Decodes one complete batch and appends its records to `out`.
fn decode_batch(batch: Bytes, out: &mut Vec<ConsumedRecord>) -> Result<(), ProtocolError> {
    // decode_batches hands over whole batches of at least a header.
    let header = BatchHeader::parse(&batch).map_err(|e| records_err(e.to_string()))?;
    let base_offset = header.base_offset;
    let magic = header.magic;
    if magic != MAGIC_V2 {
        return Err(records_err(format!(
            "batch at offset {base_offset} has magic {magic}; only RecordBatch v2 is supported"
        )));
    }
    let stored_crc = header.crc;
    let computed_crc = compute_batch_crc(&batch);
    if stored_crc != computed_crc {
        return Err(records_err(format!(
            "batch at offset {base_offset} is corrupt: CRC {stored_crc:#010x}, computed {computed_crc:#010x}"
        )));
    }
    if header.is_control() {
        return Ok(());
    }
    let codec_id = header.compression();
    let codec = Codec::from_id(codec_id).ok_or_else(|| {
        records_err(format!(
            "batch at offset {base_offset} has unknown codec {codec_id}"
        ))
    })?;
    let log_append = header.is_log_append_time();
    let base_timestamp = header.base_timestamp;
    let max_timestamp = header.max_timestamp;
    let count = header.records_count;
    if count < 0 {
        return Err(records_err(format!(
            "batch at offset {base_offset} has a negative record count {count}"
        )));
    }

    let records = match codec {
        Codec::None => batch.slice(BATCH_HEADER_BYTES..),
        other => Bytes::from(compression::decompress(
            other,
            &batch[BATCH_HEADER_BYTES..],
            MAX_DECOMPRESSED_BYTES,
        )?),
    };
    // Every record takes at least 7 bytes; refuse counts that cannot fit before allocating.
    if count as usize > records.len() / 7 + 1 {
        return Err(records_err(format!(
            "batch at offset {base_offset} claims {count} records in {} bytes",
            records.len()
        )));
    }
    out.reserve(count as usize);
    let mut r = Reader::new(&records);
    for _ in 0..count {
        let len = r.varint()?;
        if len < 0 {
            return Err(records_err(format!("negative record length {len}")));
        }
        let start = r.pos;
        let record_end = start + len as usize;
        if record_end > records.len() {
            return Err(records_err("record runs past the end of its batch"));
        }
        let mut rr = Reader {
            buf: &records[..record_end],
            pos: start,
        };
        let _attributes = rr.u8()?;
        let timestamp_delta = rr.varlong()?;
        let offset_delta = rr.varint()?;
        let key = rr.nullable_bytes(&records, "key")?;
        let value = rr.nullable_bytes(&records, "value")?;
        let header_count = rr.varint()?;
        if header_count < 0 || header_count as usize > rr.remaining() / 2 {
            return Err(records_err(format!("invalid header count {header_count}")));
        }
        let mut headers = Vec::with_capacity(header_count as usize);
        for _ in 0..header_count {
            let key = rr
                .nullable_bytes(&records, "header key")?
                .ok_or_else(|| records_err("null header key"))?;
            let key = String::from_utf8(key.to_vec())
                .map_err(|_| records_err("header key is not UTF-8"))?;
            let value = rr.nullable_bytes(&records, "header value")?;
            headers.push((key, value));
        }
        if rr.pos != record_end {
            return Err(records_err("record length does not match its fields"));
        }
        r.pos = record_end;
        out.push(ConsumedRecord {
            offset: base_offset.wrapping_add(i64::from(offset_delta)),
            timestamp_ms: if log_append {
                max_timestamp
            } else {
                base_timestamp.wrapping_add(timestamp_delta)
            },
            timestamp_type_log_append: log_append,
            key,
            value,
            headers,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use strom_codec::batch::{
        ATTRIBUTES_OFFSET, COMPRESSION_MASK as CODEC_MASK, CONTROL_BIT as CONTROL_FLAG, CRC_OFFSET,
        CRC_START, MAGIC_OFFSET, TIMESTAMP_TYPE_BIT as TIMESTAMP_TYPE_LOG_APPEND, i16_at as be_i16,
        i32_at as be_i32, i64_at as be_i64,
    };

    use super::*;
    use proptest::prelude::*;

    const ALL: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];

    fn sample() -> Vec<ProducerRecord> {
        vec![
            ProducerRecord {
                key: Some(Bytes::from_static(b"k1")),
                value: Some(Bytes::from_static(b"hello")),
                headers: vec![
                    ("trace".into(), Some(Bytes::from_static(b"abc"))),
                    ("empty".into(), None),
                ],
                timestamp_ms: 1_700_000_000_000,
            },
            ProducerRecord {
                key: None,
                value: None,
                headers: vec![],
                timestamp_ms: 1_699_999_999_000,
            },
            ProducerRecord {
                key: Some(Bytes::new()),
                value: Some(Bytes::from(vec![42u8; 5000])),
                headers: vec![],
                timestamp_ms: 1_700_000_000_500,
            },
        ]
    }

    fn check(records: &[ProducerRecord], decoded: &[ConsumedRecord], base_offset: i64) {
        assert_eq!(records.len(), decoded.len());
        for (i, (p, c)) in records.iter().zip(decoded).enumerate() {
            assert_eq!(c.offset, base_offset + i as i64);
            assert_eq!(c.timestamp_ms, p.timestamp_ms);
            assert!(!c.timestamp_type_log_append);
            assert_eq!(c.key, p.key);
            assert_eq!(c.value, p.value);
            assert_eq!(c.headers, p.headers);
        }
    }

    /// Sets the base offset and recomputes nothing: the base offset is outside the CRC.
    fn with_base_offset(batch: &Bytes, base: i64) -> Bytes {
        let mut b = BytesMut::from(&batch[..]);
        b[..8].copy_from_slice(&base.to_be_bytes());
        b.freeze()
    }

    #[test]
    fn round_trips_with_every_codec() {
        let records = sample();
        for codec in ALL {
            let batch = encode_batch(&records, codec).unwrap();
            assert_eq!(batch[MAGIC_OFFSET], 2);
            assert_eq!(be_i16(&batch, ATTRIBUTES_OFFSET) & CODEC_MASK, codec as i16);
            assert_eq!(be_i32(&batch, 8) as usize, batch.len() - LOG_OVERHEAD);
            assert_eq!(be_i32(&batch, 23), 2, "last offset delta");
            assert_eq!(be_i64(&batch, 35), 1_700_000_000_500, "max timestamp");
            let decoded = decode_batches(batch).unwrap();
            check(&records, &decoded, 0);
        }
    }

    #[test]
    fn reads_concatenated_batches_and_ignores_a_partial_tail() {
        let records = sample();
        let a = with_base_offset(&encode_batch(&records, Codec::None).unwrap(), 100);
        let b = with_base_offset(&encode_batch(&records[..1], Codec::Zstd).unwrap(), 103);
        let c = encode_batch(&records, Codec::Gzip).unwrap();
        let mut all = BytesMut::new();
        all.extend_from_slice(&a);
        all.extend_from_slice(&b);
        all.extend_from_slice(&c[..c.len() - 5]);
        let decoded = decode_batches(all.clone().freeze()).unwrap();
        assert_eq!(decoded.len(), 4);
        check(&records, &decoded[..3], 100);
        check(&records[..1], &decoded[3..], 103);

        // A tail shorter than the length prefix, or cut inside the header, is ignored too.
        for cut in [3, 11, 20, 60] {
            let mut t = BytesMut::from(&a[..]);
            t.extend_from_slice(&c[..cut]);
            assert_eq!(decode_batches(t.freeze()).unwrap().len(), 3, "cut {cut}");
        }
        assert!(decode_batches(Bytes::new()).unwrap().is_empty());
        assert_eq!(batches_end_offset(&all), Some(104));
        assert_eq!(batches_end_offset(&c[..60]), None);
    }

    #[test]
    fn rejects_a_crc_mismatch() {
        let batch = encode_batch(&sample(), Codec::None).unwrap();
        let mut bad = BytesMut::from(&batch[..]);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let err = decode_batches(bad.freeze()).unwrap_err();
        assert!(err.to_string().contains("CRC"), "{err}");
    }

    #[test]
    fn skips_control_batches_and_reads_log_append_time() {
        let records = sample();
        let batch = encode_batch(&records, Codec::Lz4).unwrap();
        let patch = |attrs: i16| {
            let mut b = BytesMut::from(&batch[..]);
            b[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attrs.to_be_bytes());
            let crc = crc32c(&b[CRC_START..]);
            b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
            b.freeze()
        };
        let control = patch(Codec::Lz4 as i16 | CONTROL_FLAG);
        assert!(decode_batches(control).unwrap().is_empty());

        let log_append = patch(Codec::Lz4 as i16 | TIMESTAMP_TYPE_LOG_APPEND);
        let decoded = decode_batches(log_append).unwrap();
        assert_eq!(decoded.len(), 3);
        for r in decoded {
            assert!(r.timestamp_type_log_append);
            assert_eq!(r.timestamp_ms, 1_700_000_000_500);
        }
    }

    #[test]
    fn rejects_other_magics_and_empty_batches() {
        let batch = encode_batch(&sample(), Codec::None).unwrap();
        let mut b = BytesMut::from(&batch[..]);
        b[MAGIC_OFFSET] = 1;
        assert!(decode_batches(b.freeze()).is_err());
        assert!(encode_batch(&[], Codec::None).is_err());
    }

    #[test]
    fn varints_match_kafka() {
        let mut out = Vec::new();
        put_varint(&mut out, -1);
        put_varint(&mut out, 300);
        put_varlong(&mut out, i64::MIN);
        assert_eq!(&out[..3], &[0x01, 0xd8, 0x04]);
        let mut r = Reader::new(&out);
        assert_eq!(r.varint().unwrap(), -1);
        assert_eq!(r.varint().unwrap(), 300);
        assert_eq!(r.varlong().unwrap(), i64::MIN);
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn kafka_protocol_decoder_reads_our_batches() {
        // An independent decoder (the generated crate's) agrees on every field.
        let records = sample();
        let batch = with_base_offset(&encode_batch(&records, Codec::None).unwrap(), 7);
        let mut buf = batch.clone();
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).unwrap();
        assert_eq!(set.records.len(), records.len());
        for (i, (p, r)) in records.iter().zip(&set.records).enumerate() {
            assert_eq!(r.offset, 7 + i as i64);
            assert_eq!(r.timestamp, p.timestamp_ms);
            assert_eq!(r.producer_id, -1);
            assert_eq!(r.key, p.key);
            assert_eq!(r.value, p.value);
            let headers: Vec<(String, Option<Bytes>)> = r
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            assert_eq!(headers, p.headers);
        }
    }

    #[test]
    fn corrupt_records_with_a_valid_crc_are_errors_not_panics() {
        let batch = encode_batch(&sample(), Codec::None).unwrap();
        for at in BATCH_HEADER_BYTES..batch.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = BytesMut::from(&batch[..]);
                b[at] ^= flip;
                let crc = crc32c(&b[CRC_START..]);
                b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
                let _ = decode_batches(b.freeze());
            }
        }
    }

    fn arb_bytes() -> impl Strategy<Value = Option<Bytes>> {
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from))
    }

    fn arb_record() -> impl Strategy<Value = ProducerRecord> {
        (
            arb_bytes(),
            arb_bytes(),
            proptest::collection::vec(("[a-z0-9.-]{0,12}", arb_bytes()), 0..4),
            0i64..4_000_000_000_000,
        )
            .prop_map(|(key, value, headers, timestamp_ms)| ProducerRecord {
                key,
                value,
                headers,
                timestamp_ms,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_records_round_trip(
            records in proptest::collection::vec(arb_record(), 1..40),
            codec_id in 0u8..5,
        ) {
            let codec = Codec::from_id(codec_id).unwrap();
            let batch = encode_batch(&records, codec).unwrap();
            let decoded = decode_batches(batch).unwrap();
            prop_assert_eq!(decoded.len(), records.len());
            for (i, (p, c)) in records.iter().zip(&decoded).enumerate() {
                prop_assert_eq!(c.offset, i as i64);
                prop_assert_eq!(c.timestamp_ms, p.timestamp_ms);
                prop_assert_eq!(&c.key, &p.key);
                prop_assert_eq!(&c.value, &p.value);
                prop_assert_eq!(&c.headers, &p.headers);
            }
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_batches(Bytes::from(data));
        }
    }
}
