//! Counters shared by the bench tasks, the live progress line and the final summary.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use crate::cli::common::{Output, print_json, table};

/// Highest latency the histograms hold, in microseconds (one hour); larger values are clamped.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Counters of one side of a bench (producers or consumers).
pub struct Stats {
    pub records: AtomicU64,
    /// Payload bytes (keys and values) for producers; record batch bytes for consumers.
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    latency_us: Mutex<Histogram<u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            latency_us: Mutex::new(
                Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds"),
            ),
        }
    }

    pub fn add(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// Records `count` samples of `latency`.
    pub fn latency(&self, latency: Duration, count: u64) {
        if count == 0 {
            return;
        }
        let us = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        if let Ok(mut h) = self.latency_us.lock() {
            let _ = h.record_n(us, count);
        }
    }

    /// Records several latency samples at once (one lock).
    pub fn latencies(&self, samples: impl IntoIterator<Item = (Duration, u64)>) {
        if let Ok(mut h) = self.latency_us.lock() {
            for (latency, count) in samples {
                if count > 0 {
                    let us = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
                    let _ = h.record_n(us, count);
                }
            }
        }
    }

    pub fn error(&self, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock()
            && first.is_none()
        {
            *first = Some(message);
        }
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|e| e.clone())
    }

    pub fn percentiles(&self) -> Option<Latency> {
        let h = self.latency_us.lock().ok()?;
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Latency {
            samples: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        })
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub samples: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn json(&self) -> Value {
        json!({
            "samples": self.samples,
            "mean": round3(self.mean_ms),
            "p50": round3(self.p50_ms),
            "p90": round3(self.p90_ms),
            "p99": round3(self.p99_ms),
            "p99.9": round3(self.p999_ms),
            "max": round3(self.max_ms),
        })
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

const MIB: f64 = 1024.0 * 1024.0;

/// The outcome of one side of a bench.
pub struct Side {
    pub name: &'static str,
    pub records: u64,
    pub bytes: u64,
    /// What `bytes` counts, for the reader.
    pub bytes_are: &'static str,
    pub elapsed: Duration,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Which latency the histogram holds, and its percentiles.
    pub latency: Option<(&'static str, Latency)>,
}

impl Side {
    pub fn from_stats(
        name: &'static str,
        stats: &Stats,
        elapsed: Duration,
        bytes_are: &'static str,
        latency_name: &'static str,
    ) -> Side {
        Side {
            name,
            records: stats.records(),
            bytes: stats.bytes.load(Ordering::Relaxed),
            bytes_are,
            elapsed,
            errors: stats.errors.load(Ordering::Relaxed),
            first_error: stats.first_error(),
            latency: stats.percentiles().map(|l| (latency_name, l)),
        }
    }

    fn secs(&self) -> f64 {
        self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.secs()
    }

    pub fn mib_per_sec(&self) -> f64 {
        self.bytes as f64 / MIB / self.secs()
    }

    fn json(&self) -> Value {
        json!({
            "records": self.records,
            "bytes": self.bytes,
            "bytes_are": self.bytes_are,
            "elapsed_secs": round3(self.elapsed.as_secs_f64()),
            "records_per_sec": self.records_per_sec().round(),
            "mib_per_sec": round3(self.mib_per_sec()),
            "errors": self.errors,
            "first_error": self.first_error,
            "latency_ms": self.latency.map(|(what, l)| {
                let mut v = l.json();
                v["of"] = json!(what);
                v
            }),
        })
    }
}

/// Prints the summary of a bench: a table per side, or one JSON document.
pub fn print_summary(
    output: Output,
    mode: &str,
    topic: &str,
    settings: Value,
    sides: &[Side],
) -> anyhow::Result<()> {
    if output == Output::Json {
        let mut doc = json!({ "mode": mode, "topic": topic, "settings": settings });
        for s in sides {
            doc[s.name] = s.json();
        }
        return print_json(&doc);
    }
    let mut t = table(vec![
        "",
        "records",
        "seconds",
        "records/s",
        "MiB/s",
        "errors",
    ]);
    for s in sides {
        t.add_row(vec![
            s.name.to_string(),
            s.records.to_string(),
            format!("{:.2}", s.elapsed.as_secs_f64()),
            format!("{:.0}", s.records_per_sec()),
            format!("{:.1}", s.mib_per_sec()),
            s.errors.to_string(),
        ]);
    }
    println!("{mode} bench on topic {topic:?}");
    println!("{t}");
    let with_latency: Vec<&Side> = sides.iter().filter(|s| s.latency.is_some()).collect();
    if !with_latency.is_empty() {
        let mut t = table(vec![
            "latency (ms)",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
            "mean",
            "samples",
        ]);
        for s in with_latency {
            let Some((what, l)) = s.latency else { continue };
            t.add_row(vec![
                what.to_string(),
                format!("{:.2}", l.p50_ms),
                format!("{:.2}", l.p90_ms),
                format!("{:.2}", l.p99_ms),
                format!("{:.2}", l.p999_ms),
                format!("{:.2}", l.max_ms),
                format!("{:.2}", l.mean_ms),
                l.samples.to_string(),
            ]);
        }
        println!("{t}");
    }
    for s in sides {
        println!("{}: MiB/s counts {}", s.name, s.bytes_are);
        if let Some(e) = &s.first_error {
            println!("{}: {} errors, the first: {e}", s.name, s.errors);
        }
    }
    Ok(())
}

/// A live progress line on standard error: records so far and the current rate. Hidden when
/// the output is JSON or standard error is not a terminal.
pub struct Progress {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// `sides`: (label, stats) pairs to show; `total`: records expected, when known.
    pub fn start(
        output: Output,
        total: Option<u64>,
        sides: Vec<(&'static str, std::sync::Arc<Stats>)>,
    ) -> Progress {
        let bar = match total {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        if output == Output::Json {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        let template = if total.is_some() {
            "{elapsed_precise} [{bar:30}] {percent:>3}% {msg}"
        } else {
            "{elapsed_precise} {spinner} {msg}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        let b = bar.clone();
        let task = tokio::spawn(async move {
            let mut last: Vec<u64> = vec![0; sides.len()];
            let mut last_at = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let now = Instant::now();
                let dt = now.duration_since(last_at).as_secs_f64().max(1e-9);
                last_at = now;
                let mut parts = Vec::new();
                for (i, (label, stats)) in sides.iter().enumerate() {
                    let n = stats.records();
                    let rate = (n - last[i].min(n)) as f64 / dt;
                    last[i] = n;
                    parts.push(format!("{label} {n} records, {rate:.0}/s"));
                    if i == 0 {
                        b.set_position(n);
                    }
                }
                b.set_message(parts.join(" | "));
            }
        });
        Progress { bar, task }
    }

    pub fn finish(self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}
