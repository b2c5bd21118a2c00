//! The broker as the metrics' scrape-time gauges see it ([`ScrapeSource`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use strom_coordinator::group::GroupOffsets;
use strom_metadata::MetadataImage;

use crate::broker::Broker;
use crate::metrics::{PartitionState, ScrapeSource};

impl ScrapeSource for Broker {
    fn node_id(&self) -> i32 {
        self.node_id
    }

    fn image(&self) -> Arc<MetadataImage> {
        Broker::image(self)
    }

    fn partition_states(&self) -> Vec<PartitionState> {
        self.replicas
            .all()
            .iter()
            .map(|p| {
                p.with_log(|l| PartitionState {
                    topic: p.topic.clone(),
                    partition: p.index,
                    log_start: l.log_start_offset(),
                    log_end: l.log_end_offset(),
                    size: l.size_bytes(),
                    segments: l.segment_count(),
                    cleaner: l
                        .config()
                        .compact
                        .then(|| (l.dirty_ratio(), l.last_clean_ms())),
                })
            })
            .collect()
    }

    fn min_insync_replicas(&self, topic_configs: &BTreeMap<String, String>) -> usize {
        self.config
            .topic_value(topic_configs, "min.insync.replicas")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
    }

    fn group_offsets(&self) -> Vec<GroupOffsets> {
        self.groups.offsets_snapshot()
    }

    fn high_watermark(&self, topic: &str, partition: i32) -> Option<i64> {
        self.replicas
            .get(topic, partition)
            .map(|p| p.high_watermark())
    }

    fn timestamp_at(&self, topic: &str, partition: i32, offset: i64) -> Option<i64> {
        self.replicas.get(topic, partition).and_then(|p| {
            p.with_log(|log| {
                let from = offset.max(log.log_start_offset());
                log.timestamp_at(from).ok().flatten()
            })
        })
    }
}
