//! `LogConfig`: the per-partition settings every storage layer reads (Kafka's topic configs).
//!
//! Plain data (`Send + Sync`, `Clone`); the log keeps its own copy, replaced whole by
//! `Log::update_config`.

/// Per-partition log settings, named after Kafka's topic configs, with Kafka's defaults.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// segment.bytes
    pub segment_bytes: u64,
    /// segment.ms
    pub segment_ms: i64,
    /// index.interval.bytes
    pub index_interval_bytes: u32,
    /// max.message.bytes
    pub max_message_bytes: u32,
    /// retention.ms; -1 = unlimited
    pub retention_ms: i64,
    /// retention.bytes; -1 = unlimited
    pub retention_bytes: i64,
    /// message.timestamp.type=LogAppendTime
    pub log_append_time: bool,
    /// flush.messages (log.flush.interval.messages)
    pub flush_interval_messages: u64,
    /// flush.ms (log.flush.interval.ms)
    pub flush_interval_ms: i64,
    /// cleanup.policy contains `compact`: the log cleaner keeps the latest record per key, and
    /// appends of records without a key are refused.
    pub compact: bool,
    /// cleanup.policy contains `delete`: retention.ms / retention.bytes delete old segments.
    pub cleanup_delete: bool,
    /// delete.retention.ms: how long a tombstone survives after the pass that first cleaned it.
    pub delete_retention_ms: i64,
    /// min.compaction.lag.ms: segments with records younger than this are not cleaned.
    pub min_compaction_lag_ms: i64,
    /// max.compaction.lag.ms: dirty records older than this make the log eligible whatever its
    /// dirty ratio; the active segment is rolled once it is that old.
    pub max_compaction_lag_ms: i64,
    /// min.cleanable.dirty.ratio
    pub min_cleanable_dirty_ratio: f64,
    /// log.direct.writes (strom only): appends to the active segment bypass the page cache
    /// (see the `direct` module); where the file system refuses, they are buffered.
    pub direct_writes: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1_073_741_824,
            segment_ms: 604_800_000,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            retention_ms: 604_800_000,
            retention_bytes: -1,
            log_append_time: false,
            flush_interval_messages: i64::MAX as u64,
            flush_interval_ms: i64::MAX,
            compact: false,
            cleanup_delete: true,
            delete_retention_ms: 86_400_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
            direct_writes: true,
        }
    }
}
