//! The producer's settings, read from Kafka's property names.

use std::time::Duration;

use strom_protocol::compression::Codec;

use crate::config::{CommonConfig, Properties, config_error};
use crate::error::ClientError;

/// How records without an explicit partition are spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionerKind {
    /// Keyed records by murmur2 of the key; keyless records sticky (`ignore_keys`: all records
    /// sticky).
    Default { ignore_keys: bool },
    /// Every record to the next partition in turn (Kafka's `RoundRobinPartitioner`).
    RoundRobin,
}

/// The producer's configuration.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub common: CommonConfig,
    /// `acks`: -1 (all), 0 or 1.
    pub acks: i16,
    /// `linger.ms`.
    pub linger: Duration,
    /// `batch.size` in bytes.
    pub batch_size: usize,
    /// `compression.type`.
    pub codec: Codec,
    /// `enable.idempotence`.
    pub idempotence: bool,
    /// `transactional.id`.
    pub transactional_id: Option<String>,
    /// `transaction.timeout.ms`.
    pub transaction_timeout: Duration,
    /// `delivery.timeout.ms`.
    pub delivery_timeout: Duration,
    /// `max.in.flight.requests.per.connection`.
    pub max_in_flight: usize,
    /// `buffer.memory` in bytes.
    pub buffer_memory: usize,
    /// `max.block.ms`.
    pub max_block: Duration,
    /// `max.request.size` in bytes.
    pub max_request_size: usize,
    /// `retries`.
    pub retries: u32,
    pub partitioner: PartitionerKind,
}

const PARTITIONER_DEFAULT: &str = "org.apache.kafka.clients.producer.internals.DefaultPartitioner";
const PARTITIONER_UNIFORM_STICKY: &str =
    "org.apache.kafka.clients.producer.UniformStickyPartitioner";
const PARTITIONER_ROUND_ROBIN: &str = "org.apache.kafka.clients.producer.RoundRobinPartitioner";

/// Java-client properties that have no meaning for this producer and are accepted as no-ops.
const IGNORED: &[&str] = &[
    "key.serializer",
    "value.serializer",
    "send.buffer.bytes",
    "receive.buffer.bytes",
    "reconnect.backoff.ms",
    "reconnect.backoff.max.ms",
    "connections.max.idle.ms",
    "metadata.max.idle.ms",
    "metrics.sample.window.ms",
    "metrics.num.samples",
    "metrics.recording.level",
    "metric.reporters",
    "interceptor.classes",
    "client.dns.lookup",
    "partitioner.adaptive.partitioning.enable",
    "partitioner.availability.timeout.ms",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.zstd.level",
    "enable.metrics.push",
];

impl ProducerConfig {
    /// Reads and checks the producer properties. Unknown properties and contradicting settings
    /// are refused, naming the property.
    pub fn from_properties(mut p: Properties) -> Result<ProducerConfig, ClientError> {
        let common = CommonConfig::read(&mut p, "strom-producer")?;
        let transactional_id = p.string("transactional.id");
        let idempotence_set = p.contains("enable.idempotence");
        let idempotence = p.bool("enable.idempotence", true)?;
        let acks_set = p.contains("acks");
        let acks = match p.one_of("acks", "all", &["all", "-1", "0", "1"])? {
            "all" | "-1" => -1,
            "0" => 0,
            _ => 1,
        };
        let in_flight_set = p.contains("max.in.flight.requests.per.connection");
        let max_in_flight = p.usize_in(
            "max.in.flight.requests.per.connection",
            5,
            1,
            i32::MAX as usize,
        )?;
        let linger = p.millis("linger.ms", 5, 0)?;
        if linger > Duration::from_secs(24 * 3600) {
            return Err(config_error(
                "linger.ms",
                &linger.as_millis().to_string(),
                "expected at most 86400000 (one day)",
            ));
        }
        let batch_size = p.usize_in("batch.size", 16_384, 0, 64 * 1024 * 1024)?;
        let codec = match p.one_of(
            "compression.type",
            "none",
            &["none", "gzip", "snappy", "lz4", "zstd"],
        )? {
            "gzip" => Codec::Gzip,
            "snappy" => Codec::Snappy,
            "lz4" => Codec::Lz4,
            "zstd" => Codec::Zstd,
            _ => Codec::None,
        };
        let delivery_timeout = p.millis("delivery.timeout.ms", 120_000, 1)?;
        let buffer_memory = p.usize_in("buffer.memory", 33_554_432, 1024, usize::MAX)?;
        let max_block = p.millis("max.block.ms", 60_000, 0)?;
        let max_request_size = p.usize_in("max.request.size", 1_048_576, 1, i32::MAX as usize)?;
        let retries = p.i64_in("retries", i32::MAX.into(), 0, i32::MAX.into())? as u32;
        let transaction_timeout = p.millis("transaction.timeout.ms", 60_000, 1)?;
        let ignore_keys = p.bool("partitioner.ignore.keys", false)?;
        let partitioner = match p.string("partitioner.class").as_deref() {
            None | Some(PARTITIONER_DEFAULT) => PartitionerKind::Default { ignore_keys },
            Some(PARTITIONER_UNIFORM_STICKY) => PartitionerKind::Default { ignore_keys: true },
            Some(PARTITIONER_ROUND_ROBIN) => PartitionerKind::RoundRobin,
            Some(other) => {
                return Err(config_error(
                    "partitioner.class",
                    other,
                    format!(
                        "expected {PARTITIONER_DEFAULT}, {PARTITIONER_UNIFORM_STICKY} or \
                         {PARTITIONER_ROUND_ROBIN} (no custom classes)"
                    ),
                ));
            }
        };
        p.accept_ignored(IGNORED);
        p.finish()?;

        // Idempotence is on by default; settings that contradict it turn it off when the user
        // did not ask for it explicitly, and are refused when they did.
        let mut idempotence = idempotence;
        if idempotence && !idempotence_set && transactional_id.is_none() {
            idempotence = acks == -1 && max_in_flight <= 5;
        }
        if idempotence {
            if acks != -1 {
                let acks_text = acks.to_string();
                return Err(config_error(
                    "acks",
                    &acks_text,
                    if acks_set {
                        "the idempotent producer needs acks=all; set enable.idempotence=false"
                    } else {
                        "the idempotent producer needs acks=all"
                    },
                ));
            }
            if max_in_flight > 5 {
                let _ = in_flight_set;
                return Err(config_error(
                    "max.in.flight.requests.per.connection",
                    &max_in_flight.to_string(),
                    "the idempotent producer allows at most 5 requests in flight",
                ));
            }
        }
        if transactional_id.is_some() && !idempotence {
            return Err(config_error(
                "enable.idempotence",
                "false",
                "a transactional.id needs enable.idempotence=true",
            ));
        }
        if max_request_size > buffer_memory {
            return Err(config_error(
                "max.request.size",
                &max_request_size.to_string(),
                format!("must not exceed buffer.memory ({buffer_memory})"),
            ));
        }
        Ok(ProducerConfig {
            common,
            acks,
            linger,
            batch_size,
            codec,
            idempotence,
            transactional_id,
            transaction_timeout,
            delivery_timeout,
            max_in_flight,
            buffer_memory,
            max_block,
            max_request_size,
            retries,
            partitioner,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<ProducerConfig, ClientError> {
        let mut all = vec![("bootstrap.servers", "127.0.0.1:9092")];
        all.extend_from_slice(pairs);
        ProducerConfig::from_properties(all.into_iter().collect())
    }

    fn refused(pairs: &[(&str, &str)], property: &str) -> String {
        match config(pairs) {
            Err(ClientError::Config {
                property: p,
                reason,
                ..
            }) => {
                assert_eq!(p, property, "{reason}");
                reason
            }
            other => panic!("expected a refusal of {property}, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_kafkas() {
        let c = config(&[]).unwrap();
        assert_eq!(c.acks, -1);
        assert_eq!(c.linger, Duration::from_millis(5));
        assert_eq!(c.batch_size, 16_384);
        assert_eq!(c.codec, Codec::None);
        assert!(c.idempotence);
        assert_eq!(c.delivery_timeout, Duration::from_millis(120_000));
        assert_eq!(c.max_in_flight, 5);
        assert_eq!(c.buffer_memory, 33_554_432);
        assert_eq!(c.max_block, Duration::from_millis(60_000));
        assert_eq!(c.max_request_size, 1_048_576);
        assert_eq!(
            c.partitioner,
            PartitionerKind::Default { ignore_keys: false }
        );
    }

    #[test]
    fn values_are_read() {
        let c = config(&[
            ("acks", "1"),
            ("enable.idempotence", "false"),
            ("compression.type", "zstd"),
            ("linger.ms", "0"),
            ("batch.size", "1000"),
            ("partitioner.ignore.keys", "true"),
            (
                "key.serializer",
                "org.apache.kafka.common.serialization.StringSerializer",
            ),
        ])
        .unwrap();
        assert_eq!((c.acks, c.codec, c.batch_size), (1, Codec::Zstd, 1000));
        assert!(!c.idempotence);
        assert_eq!(
            c.partitioner,
            PartitionerKind::Default { ignore_keys: true }
        );
        // Without an explicit enable.idempotence, acks=1 just turns idempotence off.
        assert!(!config(&[("acks", "1")]).unwrap().idempotence);
        assert_eq!(config(&[("acks", "-1")]).unwrap().acks, -1);
        assert_eq!(
            config(&[("acks", "0"), ("enable.idempotence", "false")])
                .unwrap()
                .acks,
            0
        );
    }

    #[test]
    fn contradictions_are_refused_naming_the_property() {
        refused(&[("enable.idempotence", "true"), ("acks", "1")], "acks");
        refused(&[("enable.idempotence", "true"), ("acks", "0")], "acks");
        refused(
            &[
                ("enable.idempotence", "true"),
                ("max.in.flight.requests.per.connection", "6"),
            ],
            "max.in.flight.requests.per.connection",
        );
        refused(
            &[("transactional.id", "tx"), ("enable.idempotence", "false")],
            "enable.idempotence",
        );
        refused(&[("transactional.id", "tx"), ("acks", "1")], "acks");
        refused(&[("linger.ms", "-1")], "linger.ms");
        refused(&[("linger.ms", "99999999999")], "linger.ms");
        refused(&[("batch.size", "-5")], "batch.size");
        refused(&[("batch.size", "999999999999")], "batch.size");
        refused(&[("acks", "2")], "acks");
        refused(&[("compression.type", "brotli")], "compression.type");
        refused(
            &[("partitioner.class", "com.example.Mine")],
            "partitioner.class",
        );
        refused(
            &[("max.in.flight.requests.per.connection", "0")],
            "max.in.flight.requests.per.connection",
        );
        let hint = refused(&[("lingr.ms", "5")], "lingr.ms");
        assert!(hint.contains("did you mean linger.ms"), "{hint}");
        refused(
            &[("buffer.memory", "2048"), ("max.request.size", "4096")],
            "max.request.size",
        );
    }
}
