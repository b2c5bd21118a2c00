//! Builders for valid RecordBatch v2 bytes, for tests and benchmarks across strom.

use crate::batch::{ATTRIBUTES_OFFSET, BATCH_HEADER_SIZE, CRC_OFFSET, LOG_OVERHEAD, crc32c};

fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// A record as (key, value); `None` is a null key or value.
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Builds a valid uncompressed v2 batch (base offset 0, producer id -1) whose records have
/// timestamps `base_timestamp + i`, with the given keys and values and no headers.
pub fn build_batch(base_timestamp: i64, records: &[KeyValue<'_>]) -> Vec<u8> {
    build_compressed_batch(0, base_timestamp, records)
}

/// Like [`build_batch`], with the records compressed by codec `codec` (0 none, 1 gzip,
/// 2 snappy, 3 lz4, 4 zstd).
pub fn build_compressed_batch(codec: u8, base_timestamp: i64, records: &[KeyValue<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut record = Vec::new();
    for (i, (key, value)) in records.iter().enumerate() {
        record.clear();
        record.push(0); // attributes
        put_varlong(&mut record, i as i64); // timestamp delta
        put_varlong(&mut record, i as i64); // offset delta
        put_bytes(&mut record, *key);
        put_bytes(&mut record, *value);
        put_varlong(&mut record, 0); // headers count
        put_varlong(&mut body, record.len() as i64);
        body.extend_from_slice(&record);
    }
    let body = crate::codec::compress(codec, &body).expect("known codec");
    let count = records.len() as i32;
    let max_timestamp = base_timestamp + i64::from(count.max(1) - 1);
    let mut out = Vec::with_capacity(BATCH_HEADER_SIZE + body.len());
    out.extend_from_slice(&0i64.to_be_bytes()); // base offset
    let batch_length = (BATCH_HEADER_SIZE - LOG_OVERHEAD + body.len()) as i32;
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    out.push(2); // magic
    out.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
    out.extend_from_slice(&i16::from(codec).to_be_bytes()); // attributes: the codec
    out.extend_from_slice(&(count - 1).to_be_bytes()); // last offset delta
    out.extend_from_slice(&base_timestamp.to_be_bytes());
    out.extend_from_slice(&max_timestamp.to_be_bytes());
    out.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    out.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    out.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&body);
    let crc = crc32c(&out[ATTRIBUTES_OFFSET..]);
    out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Builds a batch of `records` records, each with no key and a `payload_len`-byte value, with
/// timestamps starting at `timestamp`.
pub fn make_batch(records: usize, payload_len: usize, timestamp: i64) -> Vec<u8> {
    let payload: Vec<u8> = (0..payload_len).map(|i| (i % 251) as u8).collect();
    let recs: Vec<KeyValue<'_>> = (0..records).map(|_| (None, Some(&payload[..]))).collect();
    build_batch(timestamp, &recs)
}
