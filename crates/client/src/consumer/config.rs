//! Consumer settings, read from Kafka's property names.
//!
//! | property | default | |
//! |---|---|---|
//! | `bootstrap.servers` | (required) | with `client.id`, timeouts and `security.protocol`, `ssl.*`, `sasl.*` as for every client |
//! | `group.id` | none | needed for `subscribe` and committed offsets |
//! | `group.instance.id` | none | static membership |
//! | `group.protocol` | `classic` | `consumer` selects KIP-848 where the coordinator offers it |
//! | `group.remote.assignor` | broker's choice | the coordinator's assignor under `consumer` |
//! | `partition.assignment.strategy` | `range,cooperative-sticky` | `range`, `roundrobin`, `cooperative-sticky` or Kafka's class names |
//! | `session.timeout.ms` | 45000 | |
//! | `heartbeat.interval.ms` | 3000 | below `session.timeout.ms` |
//! | `max.poll.interval.ms` | 300000 | also the rebalance timeout |
//! | `enable.auto.commit` | true with a `group.id` | |
//! | `auto.commit.interval.ms` | 5000 | |
//! | `auto.offset.reset` | `latest` | `earliest`, `latest`, `none` |
//! | `isolation.level` | `read_uncommitted` | `read_committed` hides aborted transactions |
//! | `fetch.min.bytes` | 1 | |
//! | `fetch.max.bytes` | 52428800 | per fetch request |
//! | `fetch.max.wait.ms` | 500 | |
//! | `max.partition.fetch.bytes` | 1048576 | |
//! | `max.poll.records` | 500 | |
//!
//! Accepted and ignored (no meaning here): see `IGNORED` below, e.g. `key.deserializer`,
//! `value.deserializer`, `check.crcs`, `client.rack`.

use std::time::Duration;

use crate::config::{CommonConfig, Properties, config_error};
use crate::error::ClientError;

/// Which group protocol a consumer speaks (`group.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupProtocol {
    /// JoinGroup/SyncGroup/Heartbeat, with the assignment computed by the group leader.
    Classic,
    /// ConsumerGroupHeartbeat (KIP-848), with the assignment computed by the coordinator. Falls
    /// back to the classic protocol when the coordinator does not offer it.
    Consumer,
}

/// Where a partition without a valid position starts (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
    /// Fail the poll instead.
    None,
}

/// Which records a consumer sees (`isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationLevel {
    ReadUncommitted,
    /// Only committed transactional records, up to the last stable offset.
    ReadCommitted,
}

impl IsolationLevel {
    pub(crate) fn wire(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
}

/// A client-side partition assignor of the classic protocol (`partition.assignment.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignorKind {
    Range,
    RoundRobin,
    CooperativeSticky,
}

impl AssignorKind {
    /// The protocol name members advertise in JoinGroup (Kafka's names, so that members of
    /// other clients can share the group).
    pub fn protocol_name(self) -> &'static str {
        match self {
            AssignorKind::Range => "range",
            AssignorKind::RoundRobin => "roundrobin",
            AssignorKind::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// Whether members keep their partitions through a rebalance and give up only those that
    /// move (incremental cooperative rebalancing).
    pub fn is_cooperative(self) -> bool {
        matches!(self, AssignorKind::CooperativeSticky)
    }

    /// Parses a short name or a Java class name.
    pub fn parse(name: &str) -> Option<AssignorKind> {
        let short = name.rsplit('.').next().unwrap_or(name).to_ascii_lowercase();
        match short.as_str() {
            "range" | "rangeassignor" => Some(AssignorKind::Range),
            "roundrobin" | "roundrobinassignor" => Some(AssignorKind::RoundRobin),
            "cooperative-sticky" | "cooperativestickyassignor" => {
                Some(AssignorKind::CooperativeSticky)
            }
            _ => None,
        }
    }

    pub fn from_protocol_name(name: &str) -> Option<AssignorKind> {
        AssignorKind::parse(name)
    }
}

/// Everything a [`crate::consumer::Consumer`] is configured with.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub common: CommonConfig,
    /// `group.id`: needed for subscriptions and committed offsets.
    pub group_id: Option<String>,
    /// `group.instance.id`: a static member keeps its assignment across restarts.
    pub group_instance_id: Option<String>,
    pub group_protocol: GroupProtocol,
    /// `group.remote.assignor`: the coordinator's assignor under the consumer protocol.
    pub remote_assignor: Option<String>,
    /// In order of preference.
    pub assignors: Vec<AssignorKind>,
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub max_poll_interval: Duration,
    pub enable_auto_commit: bool,
    pub auto_commit_interval: Duration,
    pub auto_offset_reset: OffsetReset,
    pub isolation_level: IsolationLevel,
    pub fetch_min_bytes: i32,
    pub fetch_max_bytes: i32,
    pub fetch_max_wait: Duration,
    pub max_partition_fetch_bytes: i32,
    pub max_poll_records: usize,
}

/// Properties of Kafka's consumer that have no meaning here and are accepted and ignored.
const IGNORED: &[&str] = &[
    "key.deserializer",
    "value.deserializer",
    "check.crcs",
    "client.rack",
    "receive.buffer.bytes",
    "send.buffer.bytes",
    "reconnect.backoff.ms",
    "reconnect.backoff.max.ms",
    "connections.max.idle.ms",
    "default.api.timeout.ms",
    "exclude.internal.topics",
    "allow.auto.create.topics",
    "metrics.sample.window.ms",
    "metrics.num.samples",
    "metrics.recording.level",
    "metric.reporters",
    "interceptor.classes",
    "client.dns.lookup",
];

impl ConsumerConfig {
    /// Reads the consumer's properties; unknown or ill-typed ones are refused, naming the
    /// property.
    pub fn from_properties(mut p: Properties) -> Result<ConsumerConfig, ClientError> {
        let common = CommonConfig::read(&mut p, "strom-consumer")?;
        let group_id = p.string("group.id");
        let group_instance_id = p.string("group.instance.id");
        if group_instance_id.is_some() && group_id.is_none() {
            return Err(config_error(
                "group.instance.id",
                group_instance_id.as_deref().unwrap_or(""),
                "needs group.id",
            ));
        }
        let group_protocol =
            match p.one_of("group.protocol", "classic", &["classic", "consumer"])? {
                "consumer" => GroupProtocol::Consumer,
                _ => GroupProtocol::Classic,
            };
        let remote_assignor = p.string("group.remote.assignor");
        let strategy_raw = p.string_or("partition.assignment.strategy", "range,cooperative-sticky");
        let mut assignors = Vec::new();
        for name in strategy_raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let a = AssignorKind::parse(name).ok_or_else(|| {
                config_error(
                    "partition.assignment.strategy",
                    &strategy_raw,
                    format!(
                        "unknown assignor {name:?}: expected range, roundrobin or cooperative-sticky"
                    ),
                )
            })?;
            if !assignors.contains(&a) {
                assignors.push(a);
            }
        }
        if assignors.is_empty() {
            return Err(config_error(
                "partition.assignment.strategy",
                &strategy_raw,
                "names no assignor",
            ));
        }
        let session_timeout = p.millis("session.timeout.ms", 45_000, 1)?;
        let heartbeat_interval = p.millis("heartbeat.interval.ms", 3_000, 1)?;
        if heartbeat_interval >= session_timeout {
            return Err(config_error(
                "heartbeat.interval.ms",
                &heartbeat_interval.as_millis().to_string(),
                "must be lower than session.timeout.ms",
            ));
        }
        let max_poll_interval = p.millis("max.poll.interval.ms", 300_000, 1)?;
        let enable_auto_commit = p.bool("enable.auto.commit", group_id.is_some())?;
        if enable_auto_commit && group_id.is_none() && p.contains("enable.auto.commit") {
            return Err(config_error("enable.auto.commit", "true", "needs group.id"));
        }
        let auto_commit_interval = p.millis("auto.commit.interval.ms", 5_000, 0)?;
        let auto_offset_reset = match p.one_of(
            "auto.offset.reset",
            "latest",
            &["earliest", "latest", "none"],
        )? {
            "earliest" => OffsetReset::Earliest,
            "none" => OffsetReset::None,
            _ => OffsetReset::Latest,
        };
        let isolation_level = match p.one_of(
            "isolation.level",
            "read_uncommitted",
            &["read_uncommitted", "read_committed"],
        )? {
            "read_committed" => IsolationLevel::ReadCommitted,
            _ => IsolationLevel::ReadUncommitted,
        };
        let fetch_min_bytes = p.i32_in("fetch.min.bytes", 1, 0, i32::MAX)?;
        let fetch_max_bytes = p.i32_in("fetch.max.bytes", 52_428_800, 1, i32::MAX)?;
        let fetch_max_wait = p.millis("fetch.max.wait.ms", 500, 0)?;
        if fetch_max_wait > Duration::from_millis(i32::MAX as u64) {
            return Err(config_error(
                "fetch.max.wait.ms",
                &fetch_max_wait.as_millis().to_string(),
                "too large",
            ));
        }
        let max_partition_fetch_bytes =
            p.i32_in("max.partition.fetch.bytes", 1_048_576, 1, i32::MAX)?;
        let max_poll_records = p.usize_in("max.poll.records", 500, 1, i32::MAX as usize)?;
        p.accept_ignored(IGNORED);
        p.finish()?;
        Ok(ConsumerConfig {
            common,
            group_id,
            group_instance_id,
            group_protocol,
            remote_assignor,
            assignors,
            session_timeout,
            heartbeat_interval,
            max_poll_interval,
            enable_auto_commit,
            auto_commit_interval,
            auto_offset_reset,
            isolation_level,
            fetch_min_bytes,
            fetch_max_bytes,
            fetch_max_wait,
            max_partition_fetch_bytes,
            max_poll_records,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<ConsumerConfig, ClientError> {
        let mut all = vec![("bootstrap.servers", "127.0.0.1:9092")];
        all.extend_from_slice(pairs);
        ConsumerConfig::from_properties(all.into_iter().collect())
    }

    #[test]
    fn defaults_follow_kafka() {
        let c = read(&[("group.id", "g")]).unwrap();
        assert_eq!(c.group_protocol, GroupProtocol::Classic);
        assert_eq!(
            c.assignors,
            vec![AssignorKind::Range, AssignorKind::CooperativeSticky]
        );
        assert_eq!(c.session_timeout, Duration::from_secs(45));
        assert_eq!(c.auto_offset_reset, OffsetReset::Latest);
        assert!(c.enable_auto_commit);
        assert_eq!(c.max_poll_records, 500);
        let c = read(&[]).unwrap();
        assert!(!c.enable_auto_commit, "no group, no automatic commits");
    }

    #[test]
    fn assignors_by_short_or_class_name() {
        let c = read(&[(
            "partition.assignment.strategy",
            "org.apache.kafka.clients.consumer.CooperativeStickyAssignor, roundrobin",
        )])
        .unwrap();
        assert_eq!(
            c.assignors,
            vec![AssignorKind::CooperativeSticky, AssignorKind::RoundRobin]
        );
        let e = read(&[("partition.assignment.strategy", "sticky-ish")]).unwrap_err();
        assert!(
            e.to_string().contains("partition.assignment.strategy"),
            "{e}"
        );
    }

    #[test]
    fn bad_properties_are_refused_by_name() {
        for (k, v) in [
            ("group.protocol", "fancy"),
            ("auto.offset.reset", "smallest"),
            ("isolation.level", "serializable"),
            ("max.poll.records", "0"),
            ("fetch.max.wait.ms", "soon"),
            ("enable.auto.commit", "yes"),
            ("session.timeout.msx", "10"),
        ] {
            let e = read(&[("group.id", "g"), (k, v)]).unwrap_err().to_string();
            assert!(e.contains(k), "{k}: {e}");
        }
        let e = read(&[("group.instance.id", "i")]).unwrap_err().to_string();
        assert!(e.contains("group.instance.id"), "{e}");
        let e = read(&[("heartbeat.interval.ms", "50000")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("heartbeat.interval.ms"), "{e}");
    }
}
