//! Builders for valid RecordBatch v2 bytes, for tests and benchmarks across strom.

pub use crate::batch::ProducerFields;
use strom_codec::varint::put_varlong;

use crate::batch::{TRANSACTIONAL_ATTRIBUTE, assemble_batch};

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
    build_producer_batch(codec, base_timestamp, records, ProducerFields::NONE, false)
}

/// A batch from an idempotent (or, with `transactional`, a transactional) producer.
pub fn build_producer_batch(
    codec: u8,
    base_timestamp: i64,
    records: &[KeyValue<'_>],
    producer: ProducerFields,
    transactional: bool,
) -> Vec<u8> {
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
    let attributes = i16::from(codec)
        | if transactional {
            TRANSACTIONAL_ATTRIBUTE
        } else {
            0
        };
    assemble_batch(
        attributes,
        count - 1,
        base_timestamp,
        max_timestamp,
        producer,
        count,
        &body,
    )
}

/// Builds a batch of `records` records, each with no key and a `payload_len`-byte value, with
/// timestamps starting at `timestamp`.
pub fn make_batch(records: usize, payload_len: usize, timestamp: i64) -> Vec<u8> {
    let payload: Vec<u8> = (0..payload_len).map(|i| (i % 251) as u8).collect();
    let recs: Vec<KeyValue<'_>> = (0..records).map(|_| (None, Some(&payload[..]))).collect();
    build_batch(timestamp, &recs)
}
