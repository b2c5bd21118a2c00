//! Storage micro-benchmarks: batch validation (CRC-32C) of 1 MiB, `Log::append` of 1 MiB and
//! of 16 KiB batches into a temporary directory, an offset lookup (sparse index search plus
//! the scan to the batch), and `Log::read` of 1 MiB (file slices alone, and copied out as the
//! broker's fetch does today).
//!
//! `cargo bench -p strom-storage` measures; `cargo bench -p strom-storage -- --test` runs each
//! once (CI).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strom_storage::batch::validate_batches;
use strom_storage::testutil::make_batch;
use strom_storage::{Log, LogConfig};

const MIB: usize = 1024 * 1024;
const NOW_MS: i64 = 1_700_000_000_000;
/// Appends empty the log after this many bytes, outside the timed part, so a long run does
/// not fill the disk.
const MAX_LOG_BYTES: u64 = 256 * MIB as u64;

/// A batch of just under `bytes` bytes of 100-byte records (~111 bytes each once encoded).
fn batch_of(bytes: usize) -> Vec<u8> {
    make_batch(bytes / 112, 100, NOW_MS)
}

fn bench_validate(c: &mut Criterion) {
    let batch = batch_of(MIB);
    let mut g = c.benchmark_group("validate");
    g.throughput(Throughput::Bytes(batch.len() as u64));
    g.bench_function("crc32c_1MiB", |b| {
        b.iter(|| validate_batches(black_box(&batch), u32::MAX).expect("valid"))
    });
    g.finish();
}

fn bench_append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    for (name, size) in [("1MiB", MIB), ("16KiB", 16 * 1024)] {
        let mut batch = batch_of(size);
        g.throughput(Throughput::Bytes(batch.len() as u64));
        g.bench_function(name, |b| {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut log = Log::open(dir.path(), LogConfig::default(), NOW_MS).expect("opens");
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    if log.size_bytes() >= MAX_LOG_BYTES {
                        log.truncate_to(0).expect("truncates");
                    }
                    // Append patches offsets into the buffer in place; re-appending it is fine.
                    let t = Instant::now();
                    black_box(log.append(&mut batch, 0, NOW_MS).expect("appends"));
                    spent += t.elapsed();
                }
                spent
            })
        });
    }
    g.finish();
}

/// A log of 64 MiB in 16 KiB batches (one index entry per 4 KiB, Kafka's default).
fn filled_log(dir: &std::path::Path, batch_bytes: usize, total: usize) -> Log {
    let mut log = Log::open(dir, LogConfig::default(), NOW_MS).expect("opens");
    let mut batch = batch_of(batch_bytes);
    for _ in 0..total / batch.len() {
        log.append(&mut batch, 0, NOW_MS).expect("appends");
    }
    log
}

fn bench_read(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = filled_log(dir.path(), 16 * 1024, 64 * MIB);
    let end = log.log_end_offset();
    let mut g = c.benchmark_group("read");
    // Offsets spread over the log by a fixed stride so that lookups do not repeat.
    let mut next = 0i64;
    let stride = 7_919i64;
    g.bench_function("offset_lookup_64MiB_log", |b| {
        b.iter(|| {
            next = (next + stride) % end;
            // max_bytes 1 with min_one_batch: index search, scan to the batch, one slice.
            log.read(black_box(next), 1, i64::MAX, true).expect("reads")
        })
    });
    let one_mib = log.read(0, MIB as u32, i64::MAX, true).expect("reads");
    g.throughput(Throughput::Bytes(one_mib.total_bytes));
    g.bench_function("1MiB_slices", |b| {
        b.iter(|| {
            next = (next + stride) % (end / 2);
            log.read(black_box(next), MIB as u32, i64::MAX, true)
                .expect("reads")
        })
    });
    g.bench_function("1MiB_copied", |b| {
        b.iter(|| {
            next = (next + stride) % (end / 2);
            log.read(black_box(next), MIB as u32, i64::MAX, true)
                .expect("reads")
                .read_to_vec()
                .expect("copies")
        })
    });
    g.finish();
}

criterion_group!(benches, bench_validate, bench_append, bench_read);
criterion_main!(benches);
