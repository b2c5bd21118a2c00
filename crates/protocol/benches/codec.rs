//! Codec micro-benchmarks: decoding a Produce request carrying 8 batches of 1 MiB (the broker's
//! hot path before `Log::append`), and encoding/decoding a RecordBatch of 1 MiB.
//!
//! `cargo bench -p strom-protocol` measures; `cargo bench -p strom-protocol -- --test` runs each
//! once (CI).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strom_protocol::compression::Codec;
use strom_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use strom_protocol::messages::{RequestHeader, TopicName};
use strom_protocol::records::{ProducerRecord, decode_batches, encode_batch};
use strom_protocol::{ApiKey, RequestKind, decode_request, encode_request, str_bytes};

const MIB: usize = 1024 * 1024;

/// Records of `value_len` bytes (random letters, like kafka-producer-perf-test), enough to fill
/// about `bytes` bytes of batch.
fn records(bytes: usize, value_len: usize) -> Vec<ProducerRecord> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let value: Vec<u8> = (0..value_len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'A' + (x % 26) as u8
        })
        .collect();
    let value = Bytes::from(value);
    // ~value_len + 10 bytes per record once encoded.
    (0..bytes / (value_len + 10))
        .map(|i| ProducerRecord {
            key: None,
            value: Some(value.clone()),
            headers: Vec::new(),
            timestamp_ms: 1_700_000_000_000 + i as i64,
        })
        .collect()
}

fn produce_frame(partitions: usize, batch: &Bytes) -> Bytes {
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(str_bytes("bench"));
    topic.partition_data = (0..partitions)
        .map(|p| {
            let mut pd = PartitionProduceData::default();
            pd.index = p as i32;
            pd.records = Some(batch.clone());
            pd
        })
        .collect();
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 30_000;
    req.topic_data = vec![topic];
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(9)
        .with_correlation_id(7)
        .with_client_id(Some(str_bytes("bench")));
    let frame = encode_request(&header, &RequestKind::Produce(req)).expect("encodes");
    // The broker decodes the frame without its 4-byte size prefix.
    Bytes::from(frame).slice(4..)
}

fn bench_produce_request(c: &mut Criterion) {
    let batch = encode_batch(&records(MIB, 100), Codec::None).expect("encodes");
    let frame = produce_frame(8, &batch);
    let mut g = c.benchmark_group("produce_request");
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("decode_8x1MiB", |b| {
        b.iter(|| decode_request(black_box(frame.clone())).expect("decodes"))
    });
    g.finish();
}

fn bench_record_batch(c: &mut Criterion) {
    let recs = records(MIB, 100);
    let batch = encode_batch(&recs, Codec::None).expect("encodes");
    let lz4 = encode_batch(&recs, Codec::Lz4).expect("encodes");
    let mut g = c.benchmark_group("record_batch_1MiB_100B_records");
    g.throughput(Throughput::Bytes(batch.len() as u64));
    g.bench_function("encode_none", |b| {
        b.iter(|| encode_batch(black_box(&recs), Codec::None).expect("encodes"))
    });
    g.bench_function("decode_none", |b| {
        b.iter(|| decode_batches(black_box(batch.clone())).expect("decodes"))
    });
    g.bench_function("encode_lz4", |b| {
        b.iter(|| encode_batch(black_box(&recs), Codec::Lz4).expect("encodes"))
    });
    g.bench_function("decode_lz4", |b| {
        b.iter(|| decode_batches(black_box(lz4.clone())).expect("decodes"))
    });
    g.finish();
}

criterion_group!(benches, bench_produce_request, bench_record_batch);
criterion_main!(benches);
