//! The produce path's append with the topic metrics on and off: `Partition::append` (the call
//! the Produce handler makes) into a temporary directory, recording messages in / bytes in for
//! the topic, against the same append with no metrics. Batches of 16 KiB and of one 100-byte
//! record (where a fixed per-append cost would show most), and the counter increments alone.
//!
//! `cargo bench -p strom-broker --bench append` measures; `-- --test` runs each once (CI).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strom_broker::metrics::Metrics;
use strom_broker::replica_manager::Partition;
use strom_storage::testutil::make_batch;
use strom_storage::{Log, LogConfig};

const NOW_MS: i64 = 1_700_000_000_000;
/// The log is emptied after this many bytes, outside the timed part.
const MAX_LOG_BYTES: u64 = 256 * 1024 * 1024;

fn bench_append(c: &mut Criterion) {
    let metrics = Metrics::new();
    let mut g = c.benchmark_group("partition_append");
    for (size_name, records) in [("16KiB", 16 * 1024 / 112), ("1record", 1)] {
        let batch = make_batch(records, 100, NOW_MS);
        g.throughput(Throughput::Bytes(batch.len() as u64));
        for (mode, topic_metrics) in [
            ("metrics_off", None),
            ("metrics_on", Some(metrics.topic("bench"))),
        ] {
            let batch = batch.clone();
            let dir = tempfile::tempdir().expect("tempdir");
            let log = Log::open(dir.path(), LogConfig::default(), NOW_MS).expect("opens");
            let p = Partition::new("bench", Default::default(), 0, 0, log, topic_metrics);
            g.bench_function(format!("{size_name}/{mode}"), |b| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        if p.with_log(|l| l.size_bytes()) >= MAX_LOG_BYTES {
                            p.with_log(|l| l.truncate_to(0)).expect("truncates");
                        }
                        let t = Instant::now();
                        black_box(p.append(&batch, NOW_MS).expect("appends"));
                        spent += t.elapsed();
                    }
                    spent
                })
            });
        }
    }
    g.finish();
    // What metrics add to an append, alone: the two counter increments.
    let m = metrics.topic("bench");
    c.bench_function("topic_counters_only", |b| {
        b.iter(|| {
            m.messages_in.inc_by(black_box(1));
            m.bytes_in.inc_by(black_box(100));
        })
    });
}

criterion_group!(benches, bench_append);
criterion_main!(benches);
