//! Gauges computed from the broker's state when `/metrics` is scraped: partitions (offsets,
//! size, segments, cleaner state), partition health, groups by state and consumer lag.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Unit;

use strom_coordinator::group::GroupOffsets;
use strom_metadata::MetadataImage;

type Labels = Vec<(&'static str, String)>;
type IntFamily = Family<Labels, Gauge>;
type FloatFamily = Family<Labels, Gauge<f64, AtomicU64>>;

/// What the scrape-time gauges read from a running broker.
pub trait ScrapeSource: Send + Sync {
    fn node_id(&self) -> i32;
    fn image(&self) -> Arc<MetadataImage>;
    /// The partitions hosted here.
    fn partition_states(&self) -> Vec<PartitionState>;
    /// A topic's `min.insync.replicas`, from its configs and the broker's default.
    fn min_insync_replicas(&self, topic_configs: &BTreeMap<String, String>) -> usize;
    /// Groups with their state and committed offsets.
    fn group_offsets(&self) -> Vec<GroupOffsets>;
    /// The high watermark of a hosted partition.
    fn high_watermark(&self, topic: &str, partition: i32) -> Option<i64>;
    /// The timestamp of the record at `offset` (or the first one after the log start) of a
    /// hosted partition.
    fn timestamp_at(&self, topic: &str, partition: i32, offset: i64) -> Option<i64>;
}

/// The broker being scraped: set once its logs are recovered.
pub(super) type Source = Arc<OnceLock<Weak<dyn ScrapeSource>>>;

pub(super) struct BrokerCollector {
    pub broker: Source,
    pub started: Instant,
}

fn emit(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let e = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    metric.encode(e)
}

fn int(value: i64) -> Gauge {
    let g = Gauge::default();
    g.set(value);
    g
}

impl std::fmt::Debug for BrokerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrokerCollector")
    }
}

/// One partition's state as the scrape saw it.
pub struct PartitionState {
    pub topic: String,
    pub partition: i32,
    pub log_start: i64,
    pub log_end: i64,
    pub size: u64,
    pub segments: usize,
    /// (dirty ratio, last clean ms) for compacted logs.
    pub cleaner: Option<(f64, i64)>,
}

impl Collector for BrokerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        emit(
            &mut encoder,
            "uptime",
            "Time since the broker process started",
            Some(&Unit::Seconds),
            &Gauge::<f64, AtomicU64>::default().tap(self.started.elapsed().as_secs_f64()),
        )?;
        let build = Family::<Labels, Gauge>::default();
        build
            .get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_string())])
            .set(1);
        emit(
            &mut encoder,
            "build_info",
            "strom version (value 1)",
            None,
            &build,
        )?;
        let Some(broker) = self.broker.get().and_then(Weak::upgrade) else {
            // Still recovering logs: only process-level metrics.
            return Ok(());
        };
        let now = crate::now_ms();

        // Partitions hosted here.
        let mut states = broker.partition_states();
        states.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        let (leo, lso, size, segs) = (
            IntFamily::default(),
            IntFamily::default(),
            IntFamily::default(),
            IntFamily::default(),
        );
        let (dirty, last_clean) = (FloatFamily::default(), FloatFamily::default());
        for s in &states {
            let l: Labels = vec![
                ("topic", s.topic.clone()),
                ("partition", s.partition.to_string()),
            ];
            leo.get_or_create(&l).set(s.log_end);
            lso.get_or_create(&l).set(s.log_start);
            size.get_or_create(&l).set(s.size as i64);
            segs.get_or_create(&l).set(s.segments as i64);
            if let Some((ratio, last_ms)) = s.cleaner {
                dirty.get_or_create(&l).set(ratio);
                if last_ms >= 0 {
                    last_clean.get_or_create(&l).set(last_ms as f64 / 1000.0);
                }
            }
        }
        emit(
            &mut encoder,
            "partition_log_end_offset",
            "Offset after the last record of a partition (Kafka: Log LogEndOffset)",
            None,
            &leo,
        )?;
        emit(
            &mut encoder,
            "partition_log_start_offset",
            "First offset still readable in a partition (Kafka: Log LogStartOffset)",
            None,
            &lso,
        )?;
        emit(
            &mut encoder,
            "partition_size",
            "Bytes of a partition's segments (Kafka: Log Size)",
            Some(&Unit::Bytes),
            &size,
        )?;
        emit(
            &mut encoder,
            "partition_segments",
            "Segments of a partition (Kafka: Log NumLogSegments)",
            None,
            &segs,
        )?;
        emit(
            &mut encoder,
            "partition_dirty_ratio",
            "Share of a compacted partition's closed segment bytes not yet cleaned (Kafka: LogCleanerManager max-dirty-percent, per partition)",
            None,
            &dirty,
        )?;
        emit(
            &mut encoder,
            "partition_last_clean_timestamp",
            "When the log cleaner last completed a pass over a compacted partition, Unix time",
            Some(&Unit::Seconds),
            &last_clean,
        )?;

        // Partition health from the metadata image.
        let image = broker.image();
        let (mut hosted, mut led, mut under, mut under_min_isr, mut offline) = (0, 0, 0, 0, 0);
        for topic in image.topics.values() {
            let min_isr = broker.min_insync_replicas(&topic.configs);
            for p in &topic.partitions {
                if p.leader < 0 || image.brokers.get(&p.leader).is_none_or(|b| b.fenced) {
                    offline += 1;
                }
                if !p.replicas.contains(&broker.node_id()) {
                    continue;
                }
                hosted += 1;
                if p.leader == broker.node_id() {
                    led += 1;
                    if p.isr.len() < p.replicas.len() {
                        under += 1;
                    }
                    if p.isr.len() < min_isr {
                        under_min_isr += 1;
                    }
                }
            }
        }
        for (name, help, value) in [
            (
                "partitions",
                "Partitions hosted by this broker (Kafka: ReplicaManager PartitionCount)",
                hosted,
            ),
            (
                "leader_partitions",
                "Partitions this broker leads (Kafka: ReplicaManager LeaderCount)",
                led,
            ),
            (
                "under_replicated_partitions",
                "Led partitions whose in-sync replicas are fewer than their replicas (Kafka: ReplicaManager UnderReplicatedPartitions)",
                under,
            ),
            (
                "under_min_isr_partitions",
                "Led partitions with fewer in-sync replicas than min.insync.replicas (Kafka: ReplicaManager UnderMinIsrPartitionCount)",
                under_min_isr,
            ),
            (
                "offline_partitions",
                "Partitions without a live leader (Kafka: KafkaController OfflinePartitionsCount)",
                offline,
            ),
        ] {
            emit(&mut encoder, name, help, None, &int(value))?;
        }

        // Groups by state, and lag of every committed offset.
        let groups = broker.group_offsets();
        let by_state = IntFamily::default();
        for state in [
            "Empty",
            "PreparingRebalance",
            "CompletingRebalance",
            "Stable",
            "Dead",
        ] {
            drop(by_state.get_or_create(&vec![("state", state.to_string())]));
        }
        let (lag, lag_seconds, committed) = (
            IntFamily::default(),
            FloatFamily::default(),
            IntFamily::default(),
        );
        // Log end offsets looked up once per partition.
        let mut ends: BTreeMap<(String, i32), Option<i64>> = BTreeMap::new();
        for g in &groups {
            by_state
                .get_or_create(&vec![("state", g.state.to_string())])
                .inc();
            for (topic, partition, offset) in &g.offsets {
                let key = (topic.clone(), *partition);
                let offset = *offset;
                let end = *ends
                    .entry(key)
                    .or_insert_with(|| broker.high_watermark(topic, *partition));
                let Some(end) = end else { continue };
                let l: Labels = vec![
                    ("group", g.group_id.clone()),
                    ("topic", topic.clone()),
                    ("partition", partition.to_string()),
                ];
                let records = (end - offset.max(0)).max(0);
                lag.get_or_create(&l).set(records);
                committed.get_or_create(&l).set(offset);
                let seconds = if records == 0 {
                    0.0
                } else {
                    // The oldest record the group has not consumed: how long it has waited.
                    broker
                        .timestamp_at(topic, *partition, offset)
                        .map(|ts| ((now - ts).max(0)) as f64 / 1000.0)
                        .unwrap_or(0.0)
                };
                lag_seconds.get_or_create(&l).set(seconds);
            }
        }
        emit(
            &mut encoder,
            "groups",
            "Consumer groups by state (Kafka: GroupMetadataManager NumGroups<State>)",
            None,
            &by_state,
        )?;
        emit(
            &mut encoder,
            "consumer_group_committed_offset",
            "Offset committed by a group for a partition",
            None,
            &committed,
        )?;
        emit(
            &mut encoder,
            "consumer_group_lag",
            "Records between a group's committed offset and the partition's high watermark",
            None,
            &lag,
        )?;
        emit(
            &mut encoder,
            "consumer_group_lag",
            "Age of the oldest record a group has not consumed (0 when caught up)",
            Some(&Unit::Seconds),
            &lag_seconds,
        )?;
        Ok(())
    }
}

trait Tap {
    fn tap(self, v: f64) -> Self;
}

impl Tap for Gauge<f64, AtomicU64> {
    fn tap(self, v: f64) -> Self {
        self.set(v);
        self
    }
}
