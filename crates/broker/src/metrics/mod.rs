//! Broker metrics, exposed in Prometheus text format by the admin listener.
//!
//! Counters and histograms that move on the request path live here as prometheus-client
//! handles created once (per API at start-up, per topic when its first partition is opened) and
//! cached where they are used, so that recording is an atomic add, never a map lookup. Gauges
//! that describe state (partition offsets and sizes, groups, consumer lag) are computed from the
//! broker when `/metrics` is scraped ([`scrape`]), so they cost nothing between scrapes.
//! docs/operations.md maps every metric to its Kafka counterpart.

mod scrape;

pub use scrape::{PartitionState, ScrapeSource};

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    request: &'static str,
}

/// An error code as a label value: its protocol name, written only when scraped.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct ErrorName(i16);

impl EncodeLabelValue for ErrorName {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(&strom_protocol::error_code::name(self.0))
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    request: &'static str,
    error: ErrorName,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaLabels {
    quota: &'static str,
}

/// The request counter of one API, and its latency histograms once it has been used (only
/// APIs that clients call show up with histograms).
pub struct ApiMetrics {
    name: &'static str,
    requests: Counter,
    latency: OnceLock<ApiLatency>,
}

/// Latency histograms of one API, by stage.
struct ApiLatency {
    queue: Histogram,
    local: Histogram,
    remote: Histogram,
    response_queue: Histogram,
    response_send: Histogram,
    total: Histogram,
}

/// When a request reached each stage; filled in by the connection as it goes.
#[derive(Clone, Copy, Debug)]
pub struct RequestTiming {
    pub api_key: i16,
    /// The frame's bytes were read from the socket.
    pub received: Instant,
    /// The handler started.
    pub started: Instant,
    /// The response was ready (handled and encoded).
    pub completed: Instant,
    /// Time the handler spent waiting for other work (long-poll fetches, rebalances).
    pub remote: Duration,
}

/// Counters of one topic, cloned into each of its partitions.
#[derive(Clone, Debug)]
pub struct TopicMetrics {
    pub messages_in: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub failed_produce_requests: Counter,
}

/// Counters of the log cleaner.
#[derive(Clone, Debug, Default)]
pub struct CleanerMetrics {
    pub passes: Counter,
    pub failures: Counter,
    pub bytes_read: Counter,
    pub bytes_written: Counter,
    pub time_seconds: Counter<f64, AtomicU64>,
    /// Duration of the last completed pass, in seconds.
    pub last_pass_seconds: Gauge<f64, AtomicU64>,
}

/// Every metric of one broker, in its own registry (several brokers in one process do not mix).
pub struct Metrics {
    registry: Registry,
    apis: Vec<Option<ApiMetrics>>,
    /// queue, local, remote, response queue, response send, total.
    latency: [Family<RequestLabels, Histogram>; 6],
    errors: Family<ErrorLabels, Counter>,
    messages_in: Family<TopicLabels, Counter>,
    bytes_in: Family<TopicLabels, Counter>,
    bytes_out: Family<TopicLabels, Counter>,
    failed_produce: Family<TopicLabels, Counter>,
    connections: Family<ListenerLabels, Gauge>,
    connections_created: Family<ListenerLabels, Counter>,
    auth_failures: Family<ListenerLabels, Counter>,
    throttle_seconds: Family<QuotaLabels, Counter<f64, AtomicU64>>,
    pub cleaner: Arc<CleanerMetrics>,
    broker: scrape::Source,
    started: Instant,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn latency_family() -> Family<RequestLabels, Histogram> {
    // 100 µs .. ~13 s, doubling.
    Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 2.0, 18)))
}

impl Metrics {
    /// Metrics with a request counter for each of `apis` (`Metrics::new`, beside the API
    /// registry, passes the APIs this broker implements).
    pub fn for_apis(apis: &[strom_protocol::ApiKey]) -> Metrics {
        let mut registry = Registry::with_prefix("strom");
        let requests = Family::<RequestLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let [queue, local, remote, response_queue, response_send, total] =
            std::array::from_fn(|_| latency_family());
        registry.register(
            "requests",
            "Requests received, by API (Kafka: RequestMetrics RequestsPerSec)",
            requests.clone(),
        );
        registry.register(
            "request_errors",
            "Error codes in responses, by API and error (Kafka: RequestMetrics ErrorsPerSec)",
            errors.clone(),
        );
        for (name, help, h) in [
            (
                "request_queue_time",
                "Time a request waited before its handler started (Kafka: RequestQueueTimeMs)",
                &queue,
            ),
            (
                "request_local_time",
                "Time the handler worked on a request (Kafka: LocalTimeMs)",
                &local,
            ),
            (
                "request_remote_time",
                "Time a request waited for other work: long-poll fetches, rebalances (Kafka: RemoteTimeMs)",
                &remote,
            ),
            (
                "response_queue_time",
                "Time a response waited for the connection's writer (Kafka: ResponseQueueTimeMs)",
                &response_queue,
            ),
            (
                "response_send_time",
                "Time writing a response to the socket (Kafka: ResponseSendTimeMs)",
                &response_send,
            ),
            (
                "request_total_time",
                "Time from a request's arrival to its response written (Kafka: TotalTimeMs)",
                &total,
            ),
        ] {
            registry.register_with_unit(name, help, Unit::Seconds, h.clone());
        }
        let implemented = apis;
        let max_key = implemented.iter().map(|k| *k as i16).max().unwrap_or(0) as usize;
        let mut apis: Vec<Option<ApiMetrics>> = (0..=max_key).map(|_| None).collect();
        for &key in implemented {
            let name: &'static str = api_name(key);
            let l = RequestLabels { request: name };
            apis[key as i16 as usize] = Some(ApiMetrics {
                name,
                requests: requests.get_or_create_owned(&l),
                latency: OnceLock::new(),
            });
        }
        let latency = [queue, local, remote, response_queue, response_send, total];
        let messages_in = Family::<TopicLabels, Counter>::default();
        let bytes_in = Family::<TopicLabels, Counter>::default();
        let bytes_out = Family::<TopicLabels, Counter>::default();
        let failed_produce = Family::<TopicLabels, Counter>::default();
        registry.register(
            "topic_messages_in",
            "Records appended by produce requests, by topic (Kafka: BrokerTopicMetrics MessagesInPerSec)",
            messages_in.clone(),
        );
        registry.register_with_unit(
            "topic_in",
            "Record batch bytes appended by produce requests, by topic (Kafka: BrokerTopicMetrics BytesInPerSec)",
            Unit::Bytes,
            bytes_in.clone(),
        );
        registry.register_with_unit(
            "topic_out",
            "Record batch bytes returned to fetches, by topic (Kafka: BrokerTopicMetrics BytesOutPerSec)",
            Unit::Bytes,
            bytes_out.clone(),
        );
        registry.register(
            "topic_failed_produce_requests",
            "Partition appends of produce requests that failed, by topic (Kafka: BrokerTopicMetrics FailedProduceRequestsPerSec)",
            failed_produce.clone(),
        );
        let connections = Family::<ListenerLabels, Gauge>::default();
        let connections_created = Family::<ListenerLabels, Counter>::default();
        let auth_failures = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "connections",
            "Open client connections, by listener (Kafka: socket-server-metrics connection-count)",
            connections.clone(),
        );
        registry.register(
            "connections_created",
            "Client connections accepted, by listener (Kafka: socket-server-metrics connection-creation-total)",
            connections_created.clone(),
        );
        registry.register(
            "authentication_failures",
            "Failed authentications, by listener (Kafka: socket-server-metrics failed-authentication-total)",
            auth_failures.clone(),
        );
        let throttle_seconds = Family::<QuotaLabels, Counter<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "throttle_time",
            "Time responses were throttled by quotas, by quota type (Kafka: Produce/Fetch/Request/ControllerMutation throttle-time)",
            Unit::Seconds,
            throttle_seconds.clone(),
        );
        for quota in ["produce", "fetch", "request", "controller_mutation"] {
            drop(throttle_seconds.get_or_create(&QuotaLabels { quota }));
        }
        let cleaner = Arc::new(CleanerMetrics::default());
        registry.register(
            "log_cleaner_passes",
            "Completed log cleaning passes",
            cleaner.passes.clone(),
        );
        registry.register(
            "log_cleaner_failures",
            "Log cleaning passes that failed",
            cleaner.failures.clone(),
        );
        registry.register_with_unit(
            "log_cleaner_read",
            "Bytes read by the log cleaner",
            Unit::Bytes,
            cleaner.bytes_read.clone(),
        );
        registry.register_with_unit(
            "log_cleaner_written",
            "Bytes written by the log cleaner",
            Unit::Bytes,
            cleaner.bytes_written.clone(),
        );
        registry.register_with_unit(
            "log_cleaner_time",
            "Time spent in log cleaning passes",
            Unit::Seconds,
            cleaner.time_seconds.clone(),
        );
        registry.register_with_unit(
            "log_cleaner_last_pass_time",
            "Duration of the last log cleaning pass (Kafka: LogCleaner max-clean-time-secs, for one pass)",
            Unit::Seconds,
            cleaner.last_pass_seconds.clone(),
        );
        let broker = Arc::new(OnceLock::new());
        let started = Instant::now();
        registry.register_collector(Box::new(scrape::BrokerCollector {
            broker: broker.clone(),
            started,
        }));
        Metrics {
            registry,
            apis,
            latency,
            errors,
            messages_in,
            bytes_in,
            bytes_out,
            failed_produce,
            connections,
            connections_created,
            auth_failures,
            throttle_seconds,
            cleaner,
            broker,
            started,
        }
    }

    /// Lets the scrape-time gauges read this broker. Called once by `Broker::open`.
    pub fn attach(&self, source: Weak<dyn ScrapeSource>) {
        let _ = self.broker.set(source);
    }

    /// When these metrics were created (the process start, for the binary).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The metrics of an API, if strom implements it.
    pub fn api(&self, api_key: i16) -> Option<&ApiMetrics> {
        self.apis.get(usize::try_from(api_key).ok()?)?.as_ref()
    }

    /// Counts a request as it arrives.
    pub fn request_received(&self, api_key: i16) {
        if let Some(m) = self.api(api_key) {
            m.requests.inc();
        }
    }

    /// Counts the error codes of a response (NONE included): `codes` hands each code of the
    /// response to the function it is given (the API registry knows where they are).
    pub fn response_errors(&self, api_key: i16, codes: impl FnOnce(&mut dyn FnMut(i16))) {
        let Some(m) = self.api(api_key) else {
            return;
        };
        // A handful of distinct codes per response at most; tally them without allocating.
        let mut tally: [(i16, u64); 8] = [(0, 0); 8];
        let mut used = 0;
        codes(&mut |code| {
            if let Some(slot) = tally[..used].iter_mut().find(|(c, _)| *c == code) {
                slot.1 += 1;
            } else if used < tally.len() {
                tally[used] = (code, 1);
                used += 1;
            } else {
                self.errors
                    .get_or_create(&ErrorLabels {
                        request: m.name,
                        error: ErrorName(code),
                    })
                    .inc();
            }
        });
        for (code, n) in &tally[..used] {
            self.errors
                .get_or_create(&ErrorLabels {
                    request: m.name,
                    error: ErrorName(*code),
                })
                .inc_by(*n);
        }
    }

    /// Records the time a request spent in each stage; `sent` is when its response was written.
    pub fn request_done(&self, t: &RequestTiming, response_dequeued: Instant, sent: Instant) {
        let Some(api) = self.api(t.api_key) else {
            return;
        };
        let m = api.latency.get_or_init(|| {
            let l = RequestLabels { request: api.name };
            let [queue, local, remote, response_queue, response_send, total] =
                std::array::from_fn(|i| self.latency[i].get_or_create_owned(&l));
            ApiLatency {
                queue,
                local,
                remote,
                response_queue,
                response_send,
                total,
            }
        });
        let secs = |d: Duration| d.as_secs_f64();
        let handling = t.completed.saturating_duration_since(t.started);
        m.queue
            .observe(secs(t.started.saturating_duration_since(t.received)));
        m.local.observe(secs(handling.saturating_sub(t.remote)));
        m.remote.observe(secs(t.remote.min(handling)));
        m.response_queue.observe(secs(
            response_dequeued.saturating_duration_since(t.completed),
        ));
        m.response_send
            .observe(secs(sent.saturating_duration_since(response_dequeued)));
        m.total
            .observe(secs(sent.saturating_duration_since(t.received)));
    }

    /// The counters of `topic`, created on first use.
    pub fn topic(&self, topic: &str) -> TopicMetrics {
        let l = TopicLabels {
            topic: topic.to_string(),
        };
        TopicMetrics {
            messages_in: self.messages_in.get_or_create_owned(&l),
            bytes_in: self.bytes_in.get_or_create_owned(&l),
            bytes_out: self.bytes_out.get_or_create_owned(&l),
            failed_produce_requests: self.failed_produce.get_or_create_owned(&l),
        }
    }

    /// Forgets the counters of a deleted topic.
    pub fn remove_topic(&self, topic: &str) {
        let l = TopicLabels {
            topic: topic.to_string(),
        };
        self.messages_in.remove(&l);
        self.bytes_in.remove(&l);
        self.bytes_out.remove(&l);
        self.failed_produce.remove(&l);
    }

    /// Counts an accepted connection on `listener` until the returned guard is dropped.
    pub fn connection_opened(&self, listener: &str) -> ConnectionGuard {
        let l = ListenerLabels {
            listener: listener.to_string(),
        };
        self.connections_created.get_or_create(&l).inc();
        let gauge = self.connections.get_or_create_owned(&l);
        // Present (at 0) from the first connection on.
        drop(self.auth_failures.get_or_create(&l));
        gauge.inc();
        ConnectionGuard { gauge }
    }

    /// Counts a failed authentication on `listener`: SASL credentials refused, or a TLS
    /// handshake that failed (an untrusted or missing client certificate among others).
    pub fn authentication_failed(&self, listener: &str) {
        self.auth_failures
            .get_or_create(&ListenerLabels {
                listener: listener.to_string(),
            })
            .inc();
    }

    /// Makes the per-listener series exist before the first connection.
    pub fn declare_listener(&self, listener: &str) {
        let l = ListenerLabels {
            listener: listener.to_string(),
        };
        drop(self.connections.get_or_create(&l));
        drop(self.connections_created.get_or_create(&l));
        drop(self.auth_failures.get_or_create(&l));
    }

    /// Adds throttle time for a quota type (`produce`, `fetch`, `request`,
    /// `controller_mutation`).
    pub fn throttled(&self, quota: &'static str, time: Duration) {
        self.throttle_seconds
            .get_or_create(&QuotaLabels { quota })
            .inc_by(time.as_secs_f64());
    }

    /// Every metric in the text exposition format (OpenMetrics 1.0, which Prometheus reads).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(64 * 1024);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            let _ = writeln!(out, "# encoding failed");
        }
        out
    }
}

/// Decrements the open-connections gauge when the connection ends.
pub struct ConnectionGuard {
    gauge: Gauge,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Accumulates the remote (waiting) time of one request; handlers add to it.
#[derive(Debug, Default)]
pub struct RemoteTime(AtomicU64);

impl RemoteTime {
    pub fn add(&self, d: Duration) {
        self.0
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    pub fn get(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

/// The API's name as Kafka's `request` label writes it (`Produce`, `FindCoordinator`).
fn api_name(key: strom_protocol::ApiKey) -> &'static str {
    // The Debug name of the key is the Kafka name; leak it once per implemented API at start-up
    // (a fixed, small set) so labels are `&'static str`.
    static NAMES: OnceLock<std::sync::Mutex<Vec<(i16, &'static str)>>> = OnceLock::new();
    let names = NAMES.get_or_init(Default::default);
    let mut names = names.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, n)) = names.iter().find(|(k, _)| *k == key as i16) {
        return n;
    }
    let n: &'static str = Box::leak(format!("{key:?}").into_boxed_str());
    names.push((key as i16, n));
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metrics for the few APIs these tests use.
    fn test_metrics() -> Metrics {
        use strom_protocol::ApiKey;
        Metrics::for_apis(&[
            ApiKey::Produce,
            ApiKey::Fetch,
            ApiKey::Metadata,
            ApiKey::ApiVersions,
        ])
    }
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn errors_are_counted_per_partition_by_name() {
        let m = test_metrics();
        // A Produce response with five partitions.
        m.request_received(0);
        m.response_errors(0, |f| [0i16, 0, 3, 0, 87].into_iter().for_each(f));
        let text = m.encode();
        assert_eq!(
            sample(&text, "strom_requests_total{request=\"Produce\"}"),
            Some(1.0)
        );
        let errors = |e: &str| {
            sample(
                &text,
                &format!("strom_request_errors_total{{request=\"Produce\",error=\"{e}\"}}"),
            )
        };
        assert_eq!(errors("NONE"), Some(3.0));
        assert_eq!(errors("UNKNOWN_TOPIC_OR_PARTITION"), Some(1.0));
        assert_eq!(errors("INVALID_RECORD"), Some(1.0));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn request_stages_add_up() {
        let m = test_metrics();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let timing = RequestTiming {
            api_key: 1,
            received: t0,
            started: t0 + ms(2),
            completed: t0 + ms(12),
            remote: ms(6),
        };
        m.request_done(&timing, t0 + ms(13), t0 + ms(15));
        let text = m.encode();
        let sum = |h: &str| {
            sample(
                &text,
                &format!("strom_{h}_seconds_sum{{request=\"Fetch\"}}"),
            )
        };
        let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-6;
        assert!(close(sum("request_queue_time"), 0.002));
        assert!(close(sum("request_local_time"), 0.004));
        assert!(close(sum("request_remote_time"), 0.006));
        assert!(close(sum("response_queue_time"), 0.001));
        assert!(close(sum("response_send_time"), 0.002));
        assert!(close(sum("request_total_time"), 0.015));
        // Histograms of an API show up with its first request only.
        assert!(!text.contains("strom_request_total_time_seconds_count{request=\"Produce\"}"));
    }

    #[test]
    fn topic_counters_are_shared_and_removed_with_the_topic() {
        let m = test_metrics();
        let a = m.topic("t");
        let b = m.topic("t");
        a.messages_in.inc_by(2);
        b.messages_in.inc_by(3);
        let text = m.encode();
        assert_eq!(
            sample(&text, "strom_topic_messages_in_total{topic=\"t\"}"),
            Some(5.0)
        );
        m.remove_topic("t");
        assert!(!m.encode().contains("topic=\"t\""));
    }

    #[test]
    fn connections_are_counted_while_open() {
        let m = test_metrics();
        let guard = m.connection_opened("PLAINTEXT");
        let _other = m.connection_opened("PLAINTEXT");
        drop(guard);
        let text = m.encode();
        assert_eq!(
            sample(&text, "strom_connections{listener=\"PLAINTEXT\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "strom_connections_created_total{listener=\"PLAINTEXT\"}"
            ),
            Some(2.0)
        );
    }
}
