//! The log cleaner: `log.cleaner.threads` plain threads (never the async workers) compact the
//! partitions whose cleanup.policy includes `compact`, dirtiest first.
//!
//! Each thread repeatedly picks the hosted partition with the highest
//! [`Log::cleaning_priority`](strom_storage::Log::cleaning_priority) that no other thread is
//! cleaning, and cleans it in three steps: it prepares the pass with the partition's log locked
//! (a snapshot of the closed segments), builds the key map and writes the cleaned segments with
//! the lock released (appends and fetches go on), then locks again to swap them in. When no log
//! needs cleaning it sleeps `log.cleaner.backoff.ms`. The dedupe buffer and the I/O rate are
//! shared out evenly between the threads.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strom_storage::CleanerConfig;
use tokio::sync::watch;

use crate::config::BrokerConfig;
use crate::metrics::CleanerMetrics;
use crate::replica_manager::{Partition, ReplicaManager};

type Key = (String, i32);

/// State shared by the cleaner threads.
#[derive(Default)]
struct Shared {
    /// Partitions being cleaned now.
    busy: HashSet<Key>,
    /// Partitions whose last pass failed, and when to try again.
    failed_until: HashMap<Key, Instant>,
}

/// How long a partition whose pass failed is left alone.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60);

/// Starts the cleaner threads; they stop when `shutdown` turns true.
pub fn start(
    replicas: Arc<ReplicaManager>,
    metrics: Arc<CleanerMetrics>,
    config: &BrokerConfig,
    shutdown: watch::Receiver<bool>,
) {
    let threads = config.settings().log_cleaner_threads.max(0) as usize;
    if threads == 0 {
        return;
    }
    let dedupe = config.settings().log_cleaner_dedupe_buffer_size.max(1) as usize;
    let rate: f64 = config
        .get("log.cleaner.io.max.bytes.per.second")
        .parse()
        .unwrap_or(f64::MAX);
    let per_thread_rate = rate / threads as f64;
    let cleaner = CleanerConfig {
        dedupe_buffer_bytes: (dedupe / threads).max(1),
        io_max_bytes_per_second: (per_thread_rate < u64::MAX as f64)
            .then_some(per_thread_rate.max(1.0) as u64),
    };
    let backoff = Duration::from_millis(config.settings().log_cleaner_backoff_ms.max(0) as u64);
    let shared = Arc::new(Mutex::new(Shared::default()));
    for i in 0..threads {
        let (replicas, metrics, shutdown, shared, cleaner) = (
            replicas.clone(),
            metrics.clone(),
            shutdown.clone(),
            shared.clone(),
            cleaner.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name(format!("log-cleaner-{i}"))
            .spawn(move || run(&replicas, &metrics, &shutdown, &shared, &cleaner, backoff));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a log cleaner thread");
        }
    }
}

fn stopped(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow()
}

fn run(
    replicas: &ReplicaManager,
    metrics: &CleanerMetrics,
    shutdown: &watch::Receiver<bool>,
    shared: &Mutex<Shared>,
    cleaner: &CleanerConfig,
    backoff: Duration,
) {
    while !stopped(shutdown) {
        match pick(replicas, shared) {
            Some(partition) => {
                let key = (partition.topic.clone(), partition.index);
                let ok = clean(&partition, cleaner, metrics);
                let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
                s.busy.remove(&key);
                if !ok {
                    s.failed_until
                        .insert(key, Instant::now() + RETRY_AFTER_FAILURE);
                }
            }
            None => {
                // Sleep in small steps so that shutdown is noticed.
                let until = Instant::now() + backoff;
                while !stopped(shutdown) {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    std::thread::sleep(left.min(Duration::from_millis(100)));
                }
            }
        }
    }
}

/// The partition that most needs cleaning and that no other thread is cleaning; marks it busy.
fn pick(replicas: &ReplicaManager, shared: &Mutex<Shared>) -> Option<Arc<Partition>> {
    let now = crate::now_ms();
    let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
    let instant = Instant::now();
    s.failed_until.retain(|_, until| *until > instant);
    let mut best: Option<(f64, Arc<Partition>)> = None;
    for p in replicas.all() {
        let key = (p.topic.clone(), p.index);
        if s.busy.contains(&key) || s.failed_until.contains_key(&key) {
            continue;
        }
        if let Some(priority) = p.with_log(|l| l.cleaning_priority(now))
            && best.as_ref().is_none_or(|(b, _)| priority > *b)
        {
            best = Some((priority, p));
        }
    }
    let (_, p) = best?;
    s.busy.insert((p.topic.clone(), p.index));
    Some(p)
}

/// How a cleaning pass ended.
enum Pass {
    /// Nothing to clean after all.
    Nothing,
    /// The log changed meanwhile; the pass was dropped.
    Dropped,
    /// Cleaned: (bytes read, bytes written).
    Done(u64, u64),
    Failed,
}

/// One cleaning pass over `partition`, counted in `metrics`; false if it failed.
fn clean(partition: &Partition, cleaner: &CleanerConfig, metrics: &CleanerMetrics) -> bool {
    let started = Instant::now();
    let pass = clean_pass(partition, cleaner);
    let secs = started.elapsed().as_secs_f64();
    match pass {
        Pass::Nothing => true,
        Pass::Dropped => {
            metrics.time_seconds.inc_by(secs);
            true
        }
        Pass::Done(read, written) => {
            metrics.bytes_read.inc_by(read);
            metrics.bytes_written.inc_by(written);
            metrics.time_seconds.inc_by(secs);
            metrics.last_pass_seconds.set(secs);
            // Last, so that a scrape that sees the pass also sees what it did.
            metrics.passes.inc();
            true
        }
        Pass::Failed => {
            metrics.time_seconds.inc_by(secs);
            metrics.failures.inc();
            false
        }
    }
}

fn clean_pass(partition: &Partition, cleaner: &CleanerConfig) -> Pass {
    let started = Instant::now();
    let Some(mut task) = partition.with_log(|l| l.prepare_clean(crate::now_ms())) else {
        return Pass::Nothing;
    };
    if let Err(e) = task.run(cleaner) {
        task.discard();
        tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "log cleaning failed");
        return Pass::Failed;
    }
    match partition.with_log(|l| l.commit_clean(task)) {
        Ok(stats) if stats.aborted => {
            tracing::debug!(topic = %partition.topic, partition = partition.index, "log changed during cleaning; pass dropped");
            Pass::Dropped
        }
        Ok(stats) => {
            tracing::info!(
                topic = %partition.topic,
                partition = partition.index,
                cleaned_up_to = stats.cleaned_up_to,
                bytes_read = stats.bytes_read,
                bytes_written = stats.bytes_written,
                records_retained = stats.records_retained,
                tombstones_removed = stats.tombstones_removed,
                segments = stats.segments_after,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "cleaned log"
            );
            Pass::Done(stats.bytes_read, stats.bytes_written)
        }
        Err(e) => {
            tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "log cleaning failed");
            Pass::Failed
        }
    }
}
