//! Broker and topic configuration: Kafka's property names and defaults.
//!
//! One table ([`BROKER_CONFIGS`], [`TOPIC_CONFIGS`]) defines every supported property with its
//! default, type and documentation. Values come from, last one winning: the defaults, a TOML
//! file, `STROM_*` environment variables, `--set key=value` flags. Topic configs fall back to the
//! broker property they are named after (`retention.ms` -> `log.retention.ms`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use strom_storage::LogConfig;

/// The type of a property, used to validate values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Long {
        min: i64,
    },
    Int {
        min: i64,
    },
    Bool,
    /// A floating point number within [min, max].
    Double {
        min: i64,
        max: i64,
    },
    String,
    Choice(&'static [&'static str]),
    /// Comma-separated list whose items must each be one of the choices.
    ChoiceList(&'static [&'static str]),
}

/// One supported property.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: ConfigType,
    pub doc: &'static str,
}

const fn def(
    name: &'static str,
    default: &'static str,
    kind: ConfigType,
    doc: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        default,
        kind,
        doc,
    }
}

const LONG0: ConfigType = ConfigType::Long { min: 0 };
const LONG_ANY: ConfigType = ConfigType::Long { min: -1 };
const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];
const CONSUMER_ASSIGNORS: &[&str] = &[
    "uniform",
    "range",
    "org.apache.kafka.coordinator.group.assignor.UniformAssignor",
    "org.apache.kafka.coordinator.group.assignor.RangeAssignor",
];
const COMPRESSION_TYPES: &[&str] = &[
    "producer",
    "uncompressed",
    "none",
    "gzip",
    "snappy",
    "lz4",
    "zstd",
];
const CLEANUP_POLICIES: &[&str] = &["delete", "compact"];
const I64_MAX: &str = "9223372036854775807";
/// Java's Double.MAX_VALUE, Kafka's "unlimited" for byte rates.
const DOUBLE_MAX: &str = "1.7976931348623157E308";
const RATIO: ConfigType = ConfigType::Double { min: 0, max: 1 };

/// Defines [`BROKER_CONFIGS`] and [`BrokerSettings`] from one list, so that a property and its
/// typed field cannot drift apart: `field: Type = (name, default, kind, doc)`.
macro_rules! broker_properties {
    ($( $field:ident : $ty:ty = ($name:literal, $default:expr, $kind:expr, $doc:literal $(,)?) ),* $(,)?) => {
        pub const BROKER_CONFIGS: &[ConfigDef] = &[ $( def($name, $default, $kind, $doc) ),* ];

        /// The broker's properties parsed once into typed values, one field per property of
        /// [`BROKER_CONFIGS`] (the field is the property's name with `_` for `.` and `-`).
        /// Code reads settings from here, never by name: a misspelt field does not compile.
        #[derive(Debug, Clone)]
        pub struct BrokerSettings {
            $( #[doc = $doc] pub $field: $ty, )*
        }

        impl BrokerSettings {
            fn parse(values: &BTreeMap<&'static str, String>) -> Result<BrokerSettings, ConfigError> {
                Ok(BrokerSettings {
                    $( $field: <$ty as Setting>::parse(
                        $name,
                        values.get($name).map_or($default, String::as_str),
                    )?, )*
                })
            }

            /// Whether every field's Rust type fits its property's declared type.
            #[cfg(test)]
            fn types_match_the_table() -> Vec<&'static str> {
                let mut wrong = Vec::new();
                $( if !<$ty as Setting>::fits($kind) { wrong.push($name); } )*
                wrong
            }
        }
    };
}

/// A Rust type a property's value is parsed into.
trait Setting: Sized {
    fn parse(name: &str, raw: &str) -> Result<Self, ConfigError>;
    /// Whether this type holds values of `kind`.
    #[cfg(test)]
    fn fits(kind: ConfigType) -> bool;
}

fn number<T: std::str::FromStr>(name: &str, raw: &str) -> Result<T, ConfigError> {
    raw.trim()
        .parse()
        .map_err(|_| ConfigError::Invalid(format!("{name} must be a number, got {raw:?}")))
}

impl Setting for i64 {
    fn parse(name: &str, raw: &str) -> Result<Self, ConfigError> {
        number(name, raw)
    }
    #[cfg(test)]
    fn fits(kind: ConfigType) -> bool {
        matches!(kind, ConfigType::Long { .. })
    }
}

impl Setting for i32 {
    fn parse(name: &str, raw: &str) -> Result<Self, ConfigError> {
        number(name, raw)
    }
    #[cfg(test)]
    fn fits(kind: ConfigType) -> bool {
        matches!(kind, ConfigType::Int { .. })
    }
}

impl Setting for f64 {
    fn parse(name: &str, raw: &str) -> Result<Self, ConfigError> {
        number(name, raw)
    }
    #[cfg(test)]
    fn fits(kind: ConfigType) -> bool {
        matches!(kind, ConfigType::Double { .. })
    }
}

impl Setting for bool {
    fn parse(name: &str, raw: &str) -> Result<Self, ConfigError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(ConfigError::Invalid(format!(
                "{name} must be true or false, got {raw:?}"
            ))),
        }
    }
    #[cfg(test)]
    fn fits(kind: ConfigType) -> bool {
        kind == ConfigType::Bool
    }
}

impl Setting for String {
    fn parse(_: &str, raw: &str) -> Result<Self, ConfigError> {
        Ok(raw.trim().to_string())
    }
    #[cfg(test)]
    fn fits(kind: ConfigType) -> bool {
        matches!(kind, ConfigType::String | ConfigType::Choice(_))
    }
}

impl Setting for Vec<String> {
    fn parse(_: &str, raw: &str) -> Result<Self, ConfigError> {
        Ok(raw
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect())
    }
    #[cfg(test)]
    fn fits(kind: ConfigType) -> bool {
        matches!(kind, ConfigType::ChoiceList(_))
    }
}

// Broker properties: the one table. Each entry names the typed field of `BrokerSettings` that
// holds the property's value, its Rust type, and the property's name, default, type and
// documentation.
broker_properties! {
    node_id: i32 = (
        "node.id",
        "1",
        ConfigType::Int { min: 0 },
        "Id of this broker in the cluster.",
    ),
    process_roles: Vec<String> = (
        "process.roles",
        "broker,controller",
        ConfigType::ChoiceList(&["broker", "controller"]),
        "Roles of this process: broker, controller, or both (combined, the default). A controller is a voter of the metadata quorum when controller.quorum.voters names it.",
    ),
    controller_quorum_voters: String = (
        "controller.quorum.voters",
        "",
        ConfigType::String,
        "The metadata quorum as id@host:port,... (the quorum address of each controller). Empty: a single node keeping its metadata in a local log.",
    ),
    broker_rack: String = (
        "broker.rack",
        "",
        ConfigType::String,
        "Rack (or zone) of this broker; replicas of a partition are spread across racks.",
    ),
    broker_session_timeout_ms: i64 = (
        "broker.session.timeout.ms",
        "9000",
        ConfigType::Long { min: 1 },
        "A broker that has not heartbeated to the active controller for this long is fenced: its partitions get new leaders and it leaves every ISR.",
    ),
    broker_heartbeat_interval_ms: i64 = (
        "broker.heartbeat.interval.ms",
        "2000",
        ConfigType::Long { min: 1 },
        "Interval between a broker's heartbeats to the active controller.",
    ),
    replica_lag_time_max_ms: i64 = (
        "replica.lag.time.max.ms",
        "30000",
        ConfigType::Long { min: 1 },
        "A follower that has not caught up with the leader's log end for this long leaves the ISR.",
    ),
    replica_fetch_wait_max_ms: i32 = (
        "replica.fetch.wait.max.ms",
        "500",
        ConfigType::Int { min: 0 },
        "Longest time a follower's fetch waits at the leader for new data.",
    ),
    replica_fetch_max_bytes: i32 = (
        "replica.fetch.max.bytes",
        "1048576",
        ConfigType::Int { min: 0 },
        "Bytes a follower fetches per partition per request (at least one batch).",
    ),
    replica_fetch_response_max_bytes: i32 = (
        "replica.fetch.response.max.bytes",
        "10485760",
        ConfigType::Int { min: 0 },
        "Bytes a follower fetches per request.",
    ),
    replica_fetch_backoff_ms: i32 = (
        "replica.fetch.backoff.ms",
        "1000",
        ConfigType::Int { min: 0 },
        "Pause of a follower's fetcher after an error.",
    ),
    controlled_shutdown_enable: bool = (
        "controlled.shutdown.enable",
        "true",
        ConfigType::Bool,
        "On a clean shutdown, move leadership of this broker's partitions to other in-sync replicas before stopping.",
    ),
    auto_leader_rebalance_enable: bool = (
        "auto.leader.rebalance.enable",
        "true",
        ConfigType::Bool,
        "The active controller moves leadership back to each partition's preferred (first) replica when it is alive and in sync, every leader.imbalance.check.interval.seconds.",
    ),
    leader_imbalance_check_interval_seconds: i64 = (
        "leader.imbalance.check.interval.seconds",
        "300",
        ConfigType::Long { min: 1 },
        "How often the active controller looks for partitions not led by their preferred replica.",
    ),
    fault_injection_enable: bool = (
        "fault.injection.enable",
        "false",
        ConfigType::Bool,
        "strom, for tests only: lets PUT /v1/fault/network on the admin listener cut this broker off from the other brokers (quorum and replication traffic) and heal it, to test network partitions.",
    ),
    listeners: String = (
        "listeners",
        "PLAINTEXT://127.0.0.1:9092",
        ConfigType::String,
        "Addresses to listen on, as a comma-separated list of NAME://host:port; each name maps to a security protocol through listener.security.protocol.map.",
    ),
    advertised_listeners: String = (
        "advertised.listeners",
        "",
        ConfigType::String,
        "Addresses given to clients in Metadata, as NAME://host:port per listener; a listener not named here is advertised at its own address (a wildcard host as 127.0.0.1). A client is given the address of the listener it connected to.",
    ),
    listener_security_protocol_map: String = (
        "listener.security.protocol.map",
        "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
        ConfigType::String,
        "Security protocol of each listener name, as NAME:PROTOCOL pairs (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL).",
    ),
    ssl_keystore_type: String = (
        "ssl.keystore.type",
        "PEM",
        ConfigType::Choice(&["PEM"]),
        "Format of the server key and certificates; strom reads PEM only.",
    ),
    ssl_keystore_location: String = (
        "ssl.keystore.location",
        "",
        ConfigType::String,
        "PEM file holding the server certificate chain (leaf first) and its unencrypted private key (PKCS#8, PKCS#1 or SEC1), for SSL and SASL_SSL listeners; read again when it changes.",
    ),
    ssl_keystore_certificate_chain: String = (
        "ssl.keystore.certificate.chain",
        "",
        ConfigType::String,
        "The server certificate chain as inline PEM text (used when ssl.keystore.location is empty).",
    ),
    ssl_keystore_key: String = (
        "ssl.keystore.key",
        "",
        ConfigType::String,
        "The server private key as inline unencrypted PEM text (used when ssl.keystore.location is empty).",
    ),
    ssl_truststore_type: String = (
        "ssl.truststore.type",
        "PEM",
        ConfigType::Choice(&["PEM"]),
        "Format of the CA certificates that verify client certificates; strom reads PEM only.",
    ),
    ssl_truststore_location: String = (
        "ssl.truststore.location",
        "",
        ConfigType::String,
        "PEM file of CA certificates that client certificates must chain to (needed when ssl.client.auth is required or requested).",
    ),
    ssl_truststore_certificates: String = (
        "ssl.truststore.certificates",
        "",
        ConfigType::String,
        "CA certificates as inline PEM text (used when ssl.truststore.location is empty).",
    ),
    ssl_client_auth: String = (
        "ssl.client.auth",
        "none",
        ConfigType::Choice(&["required", "requested", "none"]),
        "Whether TLS clients must (required), may (requested) or do not present a certificate; a verified certificate's subject becomes the principal, as User:<RFC 2253 distinguished name>.",
    ),
    ssl_principal_mapping_rules: String = (
        "ssl.principal.mapping.rules",
        "DEFAULT",
        ConfigType::String,
        "How a client certificate's RFC 2253 subject becomes the principal name: RULE:pattern/replacement/[L|U] rules tried in order, DEFAULT keeps the whole subject.",
    ),
    sasl_enabled_mechanisms: Vec<String> = (
        "sasl.enabled.mechanisms",
        "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        ConfigType::ChoiceList(&["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]),
        "SASL mechanisms offered on SASL_PLAINTEXT and SASL_SSL listeners.",
    ),
    sasl_oauthbearer_jwks_endpoint_url: String = (
        "sasl.oauthbearer.jwks.endpoint.url",
        "",
        ConfigType::String,
        "OAUTHBEARER: JSON Web Key Set that signs accepted tokens, as a local file (file:///path or a path), read again when it changes. Empty accepts unsecured tokens (alg none), for development only.",
    ),
    sasl_oauthbearer_expected_audience: String = (
        "sasl.oauthbearer.expected.audience",
        "",
        ConfigType::String,
        "OAUTHBEARER: comma-separated audiences a token's aud claim must contain one of (empty: not checked).",
    ),
    sasl_oauthbearer_expected_issuer: String = (
        "sasl.oauthbearer.expected.issuer",
        "",
        ConfigType::String,
        "OAUTHBEARER: the iss claim a token must have (empty: not checked).",
    ),
    sasl_oauthbearer_sub_claim_name: String = (
        "sasl.oauthbearer.sub.claim.name",
        "sub",
        ConfigType::String,
        "OAUTHBEARER: the claim that names the principal (User:<value>).",
    ),
    sasl_oauthbearer_clock_skew_seconds: i32 = (
        "sasl.oauthbearer.clock.skew.seconds",
        "30",
        ConfigType::Int { min: 0 },
        "OAUTHBEARER: tolerance in seconds when checking a token's exp, nbf and iat.",
    ),
    sasl_plain_users: String = (
        "sasl.plain.users",
        "",
        ConfigType::String,
        "strom: users of the PLAIN mechanism as a comma-separated list of name:password (a password may hold colons, not commas).",
    ),
    sasl_plain_users_file: String = (
        "sasl.plain.users.file",
        "",
        ConfigType::String,
        "strom: a file of PLAIN users, one name:password per line (lines starting with # are ignored); read at start.",
    ),
    connection_failed_authentication_delay_ms: i32 = (
        "connection.failed.authentication.delay.ms",
        "100",
        ConfigType::Int { min: 0 },
        "Delay before a failed authentication is answered and its connection closed.",
    ),
    connections_max_reauth_ms: i64 = (
        "connections.max.reauth.ms",
        "0",
        LONG0,
        "Lifetime of a SASL session: clients are told it (SaslAuthenticate v1+) and must re-authenticate in time, or their next request closes the connection; 0 means sessions do not expire.",
    ),
    connections_max_idle_ms: i64 = (
        "connections.max.idle.ms",
        "600000",
        ConfigType::Long { min: 1 },
        "A connection that sends no request for this long is closed.",
    ),
    max_connections: i32 = (
        "max.connections",
        "2147483647",
        ConfigType::Int { min: 0 },
        "Most connections the broker holds over all listeners; further clients wait in the accept queue until one closes.",
    ),
    max_connections_per_ip: i32 = (
        "max.connections.per.ip",
        "2147483647",
        ConfigType::Int { min: 0 },
        "Most connections from one IP address; a connection beyond it is closed at once.",
    ),
    max_connections_per_ip_overrides: String = (
        "max.connections.per.ip.overrides",
        "",
        ConfigType::String,
        "Per-address exceptions to max.connections.per.ip, as a comma-separated list of ip:count.",
    ),
    authorizer_class_name: String = (
        "authorizer.class.name",
        "",
        ConfigType::String,
        "Any non-empty value turns on strom's built-in ACL authorizer (e.g. org.apache.kafka.metadata.authorizer.StandardAuthorizer); empty allows every operation.",
    ),
    super_users: String = (
        "super.users",
        "",
        ConfigType::String,
        "Principals allowed every operation, separated by semicolons (User:admin;User:CN=ops).",
    ),
    allow_everyone_if_no_acl_found: bool = (
        "allow.everyone.if.no.acl.found",
        "false",
        ConfigType::Bool,
        "With the authorizer on: whether a resource without any matching ACL is open to everyone.",
    ),
    strom_audit_admin_operations_enable: bool = (
        "strom.audit.admin.operations.enable",
        "false",
        ConfigType::Bool,
        "Log every admin operation (topics, partitions, records deletion, configs, ACLs, SCRAM credentials, client quotas, group and offset deletion) with principal, resource, request and result on the strom::audit log target; config values and credentials are not written.",
    ),
    schema_registry_listener: String = ("schema.registry.listener", "127.0.0.1:8081", ConfigType::String, "host:port of the Schema Registry's REST API (served by the strom binary beside the broker, through the Kafka protocol); empty turns it off."),
    admin_listener: String = (
        "admin.listener",
        "127.0.0.1:9644",
        ConfigType::String,
        "host:port of the admin HTTP listener (/metrics, /health/live, /health/ready, /v1/status, /v1/log-level); empty turns it off.",
    ),
    log_dirs: String = (
        "log.dirs",
        "./data",
        ConfigType::String,
        "Directory that holds the partition logs and the metadata log.",
    ),
    num_partitions: i32 = (
        "num.partitions",
        "1",
        ConfigType::Int { min: 1 },
        "Partitions of an automatically created topic, or of a created topic that names none.",
    ),
    default_replication_factor: i32 = (
        "default.replication.factor",
        "1",
        ConfigType::Int { min: 1 },
        "Replication factor of automatically created topics.",
    ),
    auto_create_topics_enable: bool = (
        "auto.create.topics.enable",
        "true",
        ConfigType::Bool,
        "Create a topic when a client asks for its metadata or produces to it.",
    ),
    socket_request_max_bytes: i32 = (
        "socket.request.max.bytes",
        "104857600",
        ConfigType::Int { min: 1 },
        "Largest request frame accepted; a larger one closes the connection.",
    ),
    fetch_memory_budget_bytes: i64 = (
        "fetch.memory.budget.bytes",
        "67108864",
        ConfigType::Long { min: 1 },
        "strom only: most bytes of record data that fetch responses on TLS connections hold in memory at once, over all connections (each borrows up to 256 KiB of it while it writes a response; plaintext connections send records with sendfile and need none).",
    ),
    message_max_bytes: i32 = (
        "message.max.bytes",
        "1048588",
        ConfigType::Int { min: 0 },
        "Largest record batch accepted (topic: max.message.bytes).",
    ),
    log_segment_bytes: i32 = (
        "log.segment.bytes",
        "1073741824",
        ConfigType::Int { min: 14 },
        "Size at which a log segment is rolled (topic: segment.bytes).",
    ),
    log_roll_ms: i64 = (
        "log.roll.ms",
        "604800000",
        ConfigType::Long { min: 1 },
        "Age at which a log segment is rolled (topic: segment.ms).",
    ),
    log_retention_ms: i64 = (
        "log.retention.ms",
        "604800000",
        LONG_ANY,
        "How long data is kept; -1 keeps it forever (topic: retention.ms).",
    ),
    log_retention_bytes: i64 = (
        "log.retention.bytes",
        "-1",
        LONG_ANY,
        "Size a partition may grow to before old segments go; -1 is unlimited (topic: retention.bytes).",
    ),
    log_retention_check_interval_ms: i64 = (
        "log.retention.check.interval.ms",
        "300000",
        ConfigType::Long { min: 1 },
        "How often retention is enforced.",
    ),
    log_flush_interval_messages: i64 = (
        "log.flush.interval.messages",
        I64_MAX,
        ConfigType::Long { min: 1 },
        "Records after which a partition is fsynced (topic: flush.messages); the default leaves it to the OS.",
    ),
    log_flush_interval_ms: i64 = (
        "log.flush.interval.ms",
        I64_MAX,
        LONG0,
        "Time after which a partition is fsynced (topic: flush.ms); the default leaves it to the OS.",
    ),
    log_index_interval_bytes: i32 = (
        "log.index.interval.bytes",
        "4096",
        ConfigType::Int { min: 0 },
        "Bytes of log between two offset index entries (topic: index.interval.bytes).",
    ),
    log_direct_writes: bool = (
        "log.direct.writes",
        "true",
        ConfigType::Bool,
        "strom only: append to the active segments with direct I/O, bypassing the page cache (a fraction of the CPU per produced byte; consumers that fall behind read from the disk). Where the file system refuses direct I/O, appends are buffered. false writes through the page cache as Apache Kafka does.",
    ),
    log_message_timestamp_type: String = (
        "log.message.timestamp.type",
        "CreateTime",
        ConfigType::Choice(TIMESTAMP_TYPES),
        "CreateTime keeps the producer's timestamps; LogAppendTime stamps the broker's clock (topic: message.timestamp.type).",
    ),
    log_cleanup_policy: Vec<String> = (
        "log.cleanup.policy",
        "delete",
        ConfigType::ChoiceList(CLEANUP_POLICIES),
        "delete: remove old segments by retention; compact: keep the latest record per key; or both (topic: cleanup.policy).",
    ),
    compression_type: String = (
        "compression.type",
        "producer",
        ConfigType::Choice(COMPRESSION_TYPES),
        "Compression of stored batches; producer keeps what the producer sent.",
    ),
    min_insync_replicas: i32 = (
        "min.insync.replicas",
        "1",
        ConfigType::Int { min: 1 },
        "Replicas that must acknowledge an acks=all write.",
    ),
    log_cleaner_delete_retention_ms: i64 = (
        "log.cleaner.delete.retention.ms",
        "86400000",
        LONG0,
        "How long tombstones are kept in compacted topics (topic: delete.retention.ms).",
    ),
    log_cleaner_threads: i32 = (
        "log.cleaner.threads",
        "1",
        ConfigType::Int { min: 0 },
        "Threads that compact logs with cleanup.policy=compact; 0 disables compaction.",
    ),
    log_cleaner_dedupe_buffer_size: i64 = (
        "log.cleaner.dedupe.buffer.size",
        "134217728",
        ConfigType::Long { min: 1 },
        "Memory for the key maps of all cleaner threads together.",
    ),
    log_cleaner_io_max_bytes_per_second: f64 = (
        "log.cleaner.io.max.bytes.per.second",
        DOUBLE_MAX,
        ConfigType::Double {
            min: 0,
            max: i64::MAX,
        },
        "Bytes per second all cleaner threads together may read plus write.",
    ),
    log_cleaner_backoff_ms: i64 = (
        "log.cleaner.backoff.ms",
        "15000",
        LONG0,
        "How long a cleaner thread sleeps when no log needs cleaning.",
    ),
    log_cleaner_min_cleanable_ratio: f64 = (
        "log.cleaner.min.cleanable.ratio",
        "0.5",
        RATIO,
        "Dirty share of a log above which it is compacted (topic: min.cleanable.dirty.ratio).",
    ),
    log_cleaner_min_compaction_lag_ms: i64 = (
        "log.cleaner.min.compaction.lag.ms",
        "0",
        LONG0,
        "Records younger than this are not compacted (topic: min.compaction.lag.ms).",
    ),
    log_cleaner_max_compaction_lag_ms: i64 = (
        "log.cleaner.max.compaction.lag.ms",
        I64_MAX,
        ConfigType::Long { min: 1 },
        "Records older than this are compacted whatever the dirty ratio (topic: max.compaction.lag.ms).",
    ),
    log_segment_delete_delay_ms: i64 = (
        "log.segment.delete.delay.ms",
        "60000",
        LONG0,
        "Delay before a deleted segment's files are removed (topic: file.delete.delay.ms).",
    ),
    unclean_leader_election_enable: bool = (
        "unclean.leader.election.enable",
        "false",
        ConfigType::Bool,
        "Allow an out-of-sync replica to become leader.",
    ),
    group_initial_rebalance_delay_ms: i32 = (
        "group.initial.rebalance.delay.ms",
        "3000",
        ConfigType::Int { min: 0 },
        "How long a new group waits for more members before its first rebalance completes.",
    ),
    group_min_session_timeout_ms: i32 = (
        "group.min.session.timeout.ms",
        "6000",
        ConfigType::Int { min: 0 },
        "Smallest session timeout a group member may ask for.",
    ),
    group_max_session_timeout_ms: i32 = (
        "group.max.session.timeout.ms",
        "1800000",
        ConfigType::Int { min: 0 },
        "Largest session timeout a group member may ask for.",
    ),
    group_max_size: i32 = (
        "group.max.size",
        "2147483647",
        ConfigType::Int { min: 1 },
        "Most members a consumer group may have.",
    ),
    group_consumer_session_timeout_ms: i32 = (
        "group.consumer.session.timeout.ms",
        "45000",
        ConfigType::Int { min: 1 },
        "Consumer protocol (KIP-848) groups: a member that does not heartbeat for this long is removed.",
    ),
    group_consumer_heartbeat_interval_ms: i32 = (
        "group.consumer.heartbeat.interval.ms",
        "5000",
        ConfigType::Int { min: 1 },
        "Consumer protocol groups: the heartbeat interval the coordinator gives members.",
    ),
    group_consumer_max_size: i32 = (
        "group.consumer.max.size",
        "2147483647",
        ConfigType::Int { min: 1 },
        "Consumer protocol groups: most members a group may have.",
    ),
    group_consumer_assignors: Vec<String> = (
        "group.consumer.assignors",
        "uniform,range",
        ConfigType::ChoiceList(CONSUMER_ASSIGNORS),
        "Consumer protocol groups: server-side assignors members may pick, the first being the default (short names or Kafka's class names).",
    ),
    offsets_topic_num_partitions: i32 = (
        "offsets.topic.num.partitions",
        "50",
        ConfigType::Int { min: 1 },
        "Partitions of __consumer_offsets (fixed once the topic exists).",
    ),
    offsets_topic_replication_factor: i32 = (
        "offsets.topic.replication.factor",
        "1",
        ConfigType::Int { min: 1 },
        "Replication factor of __consumer_offsets.",
    ),
    offsets_topic_segment_bytes: i32 = (
        "offsets.topic.segment.bytes",
        "104857600",
        ConfigType::Int { min: 14 },
        "Segment size of __consumer_offsets.",
    ),
    transaction_state_log_num_partitions: i32 = (
        "transaction.state.log.num.partitions",
        "50",
        ConfigType::Int { min: 1 },
        "Partitions of __transaction_state (fixed once the topic exists).",
    ),
    transaction_state_log_replication_factor: i32 = (
        "transaction.state.log.replication.factor",
        "1",
        ConfigType::Int { min: 1 },
        "Replication factor of __transaction_state.",
    ),
    transaction_state_log_min_isr: i32 = (
        "transaction.state.log.min.isr",
        "1",
        ConfigType::Int { min: 1 },
        "min.insync.replicas of __transaction_state.",
    ),
    transaction_state_log_segment_bytes: i32 = (
        "transaction.state.log.segment.bytes",
        "104857600",
        ConfigType::Int { min: 14 },
        "Segment size of __transaction_state.",
    ),
    transaction_max_timeout_ms: i32 = (
        "transaction.max.timeout.ms",
        "900000",
        ConfigType::Int { min: 1 },
        "Largest transaction timeout a producer may ask for.",
    ),
    transaction_version: i32 = (
        "transaction.version",
        "2",
        ConfigType::Int { min: 0 },
        "Transaction protocol finalized for clients (the transaction.version feature): 2 adds \
         partitions on the broker and bumps the producer epoch with every transaction (KIP-890); \
         0 or 1 keep clients on the classic protocol. A cluster offers at most 1 for now.",
    ),
    transaction_abort_timed_out_transaction_cleanup_interval_ms: i32 = (
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        "10000",
        ConfigType::Int { min: 1 },
        "How often transactions open past their timeout are looked for and aborted.",
    ),
    producer_id_expiration_ms: i32 = (
        "producer.id.expiration.ms",
        "86400000",
        ConfigType::Int { min: 1 },
        "How long a partition remembers an idle producer (for duplicate detection).",
    ),
    producer_id_expiration_check_interval_ms: i32 = (
        "producer.id.expiration.check.interval.ms",
        "600000",
        ConfigType::Int { min: 1 },
        "How often idle producers are forgotten.",
    ),
    offsets_retention_minutes: i32 = (
        "offsets.retention.minutes",
        "10080",
        ConfigType::Int { min: 1 },
        "How long committed offsets of an empty group are kept.",
    ),
    offsets_retention_check_interval_ms: i64 = (
        "offsets.retention.check.interval.ms",
        "600000",
        ConfigType::Long { min: 1 },
        "How often expired offsets are removed.",
    ),
    offsets_commit_timeout_ms: i32 = (
        "offsets.commit.timeout.ms",
        "5000",
        ConfigType::Int { min: 1 },
        "How long an offset commit (and a group's state write) waits for every in-sync replica of its __consumer_offsets partition before it fails with REQUEST_TIMED_OUT.",
    ),
    offset_metadata_max_bytes: i32 = (
        "offset.metadata.max.bytes",
        "4096",
        ConfigType::Int { min: 0 },
        "Largest metadata string of a committed offset.",
    ),
}

/// Topic properties and the broker property each falls back to.
pub const TOPIC_CONFIGS: &[(ConfigDef, &str)] = &[
    (
        def(
            "cleanup.policy",
            "delete",
            ConfigType::ChoiceList(CLEANUP_POLICIES),
            "delete or compact",
        ),
        "log.cleanup.policy",
    ),
    (
        def(
            "compression.type",
            "producer",
            ConfigType::Choice(COMPRESSION_TYPES),
            "Compression of stored batches",
        ),
        "compression.type",
    ),
    (
        def(
            "delete.retention.ms",
            "86400000",
            LONG0,
            "Tombstone retention in compacted topics",
        ),
        "log.cleaner.delete.retention.ms",
    ),
    (
        def(
            "file.delete.delay.ms",
            "60000",
            LONG0,
            "Delay before deleted segment files are removed",
        ),
        "log.segment.delete.delay.ms",
    ),
    (
        def(
            "flush.messages",
            I64_MAX,
            ConfigType::Long { min: 1 },
            "Records between fsyncs",
        ),
        "log.flush.interval.messages",
    ),
    (
        def("flush.ms", I64_MAX, LONG0, "Time between fsyncs"),
        "log.flush.interval.ms",
    ),
    (
        def(
            "index.interval.bytes",
            "4096",
            ConfigType::Int { min: 0 },
            "Bytes between offset index entries",
        ),
        "log.index.interval.bytes",
    ),
    (
        def(
            "max.compaction.lag.ms",
            I64_MAX,
            ConfigType::Long { min: 1 },
            "Longest time a record stays uncompacted",
        ),
        "log.cleaner.max.compaction.lag.ms",
    ),
    (
        def(
            "max.message.bytes",
            "1048588",
            ConfigType::Int { min: 0 },
            "Largest record batch",
        ),
        "message.max.bytes",
    ),
    (
        def(
            "message.timestamp.type",
            "CreateTime",
            ConfigType::Choice(TIMESTAMP_TYPES),
            "CreateTime or LogAppendTime",
        ),
        "log.message.timestamp.type",
    ),
    (
        def(
            "min.cleanable.dirty.ratio",
            "0.5",
            RATIO,
            "Dirty share that triggers compaction",
        ),
        "log.cleaner.min.cleanable.ratio",
    ),
    (
        def(
            "min.compaction.lag.ms",
            "0",
            LONG0,
            "Shortest time a record stays uncompacted",
        ),
        "log.cleaner.min.compaction.lag.ms",
    ),
    (
        def(
            "min.insync.replicas",
            "1",
            ConfigType::Int { min: 1 },
            "Replicas that must acknowledge acks=all",
        ),
        "min.insync.replicas",
    ),
    (
        def("retention.bytes", "-1", LONG_ANY, "Partition size limit"),
        "log.retention.bytes",
    ),
    (
        def(
            "retention.ms",
            "604800000",
            LONG_ANY,
            "How long data is kept",
        ),
        "log.retention.ms",
    ),
    (
        def(
            "segment.bytes",
            "1073741824",
            ConfigType::Int { min: 14 },
            "Segment roll size",
        ),
        "log.segment.bytes",
    ),
    (
        def(
            "segment.ms",
            "604800000",
            ConfigType::Long { min: 1 },
            "Segment roll age",
        ),
        "log.roll.ms",
    ),
    (
        def(
            "unclean.leader.election.enable",
            "false",
            ConfigType::Bool,
            "Allow out-of-sync leaders",
        ),
        "unclean.leader.election.enable",
    ),
];

/// Aliases Kafka accepts in broker files, mapped to the property they set and a multiplier.
const BROKER_ALIASES: &[(&str, &str, i64)] = &[
    ("log.retention.hours", "log.retention.ms", 3_600_000),
    ("log.retention.minutes", "log.retention.ms", 60_000),
    ("log.roll.hours", "log.roll.ms", 3_600_000),
    ("log.dir", "log.dirs", 1),
];

pub fn broker_def(name: &str) -> Option<&'static ConfigDef> {
    BROKER_CONFIGS.iter().find(|d| d.name == name)
}

pub fn topic_def(name: &str) -> Option<&'static (ConfigDef, &'static str)> {
    TOPIC_CONFIGS.iter().find(|(d, _)| d.name == name)
}

/// Checks a value against a property's type; the message explains what is wrong.
pub fn validate(def: &ConfigDef, value: &str) -> Result<(), String> {
    let v = value.trim();
    match def.kind {
        ConfigType::Long { min } | ConfigType::Int { min } => {
            let n: i64 = v
                .parse()
                .map_err(|_| format!("{} must be a number, got {value:?}", def.name))?;
            if matches!(def.kind, ConfigType::Int { .. }) && i32::try_from(n).is_err() {
                return Err(format!("{} must fit in 32 bits, got {n}", def.name));
            }
            if n < min {
                return Err(format!("{} must be at least {min}, got {n}", def.name));
            }
        }
        ConfigType::Double { min, max } => {
            let n: f64 = v
                .parse()
                .map_err(|_| format!("{} must be a number, got {value:?}", def.name))?;
            // A maximum of i64::MAX means no maximum (Kafka's Double.MAX_VALUE defaults).
            let within_max = max == i64::MAX || n <= max as f64;
            if !(n >= min as f64 && within_max) {
                return Err(format!(
                    "{} must be between {min} and {max}, got {n}",
                    def.name
                ));
            }
        }
        ConfigType::Bool => {
            if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") {
                return Err(format!("{} must be true or false, got {value:?}", def.name));
            }
        }
        ConfigType::String => {}
        ConfigType::Choice(choices) => {
            if !choices.iter().any(|c| c.eq_ignore_ascii_case(v)) {
                return Err(format!(
                    "{} must be one of {}, got {value:?}",
                    def.name,
                    choices.join(", ")
                ));
            }
        }
        ConfigType::ChoiceList(choices) => {
            for item in v.split(',') {
                if !choices.iter().any(|c| c.eq_ignore_ascii_case(item.trim())) {
                    return Err(format!(
                        "{} items must be among {}, got {value:?}",
                        def.name,
                        choices.join(", ")
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Errors while loading the broker configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("unknown property {0:?} (strom server --help lists them)")]
    Unknown(String),
    #[error("{0}")]
    Invalid(String),
}

/// The broker's effective properties.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    values: BTreeMap<&'static str, String>,
    /// Properties set explicitly (file, environment or flag), for DescribeConfigs' source field.
    explicit: BTreeMap<&'static str, String>,
    /// The same values, typed.
    settings: BrokerSettings,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        let values = BROKER_CONFIGS
            .iter()
            .map(|d| (d.name, d.default.to_string()))
            .collect();
        // The defaults are checked by a unit test (`every_default_parses`).
        let settings = BrokerSettings::parse(&values)
            .unwrap_or_else(|e| panic!("a default of the property table does not parse: {e}"));
        Self {
            values,
            explicit: BTreeMap::new(),
            settings,
        }
    }
}

impl BrokerConfig {
    /// Sets one property by name (aliases included), validating it.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let (name, value) = match BROKER_ALIASES.iter().find(|(a, _, _)| *a == name) {
            Some((_, target, 1)) => (*target, value.to_string()),
            Some((_, target, factor)) => {
                let n: i64 = value.trim().parse().map_err(|_| {
                    ConfigError::Invalid(format!("{name} must be a number, got {value:?}"))
                })?;
                (*target, n.saturating_mul(*factor).to_string())
            }
            None => (name, value.to_string()),
        };
        let def = broker_def(name).ok_or_else(|| ConfigError::Unknown(name.to_string()))?;
        validate(def, &value).map_err(ConfigError::Invalid)?;
        let previous = self.values.insert(def.name, value.trim().to_string());
        match BrokerSettings::parse(&self.values) {
            Ok(settings) => self.settings = settings,
            Err(e) => {
                if let Some(v) = previous {
                    self.values.insert(def.name, v);
                }
                return Err(e);
            }
        }
        self.explicit.insert(def.name, value.trim().to_string());
        Ok(())
    }

    /// Applies a TOML file. Keys may be quoted (`"log.retention.ms" = 1000`) or dotted
    /// (`log.retention.ms = 1000`, which TOML reads as nested tables).
    pub fn apply_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        let mut flat = Vec::new();
        flatten("", &toml::Value::Table(table), &mut flat);
        for (k, v) in flat {
            self.set(&k, &v)?;
        }
        Ok(())
    }

    /// Applies `STROM_<PROPERTY>` variables, e.g. `STROM_LOG_RETENTION_MS=1000`.
    pub fn apply_env(&mut self) -> Result<(), ConfigError> {
        for def in BROKER_CONFIGS {
            if let Ok(v) = std::env::var(env_name(def.name)) {
                self.set(def.name, &v)?;
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> &str {
        self.values.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn is_explicit(&self, name: &str) -> bool {
        self.explicit.contains_key(name)
    }

    /// Every property, typed.
    pub fn settings(&self) -> &BrokerSettings {
        &self.settings
    }

    /// The voters of `controller.quorum.voters` (id, address); empty for a single node.
    pub fn quorum_voters(&self) -> Result<Vec<(i32, String)>, String> {
        let text = self.get("controller.quorum.voters").trim();
        if text.is_empty() {
            return Ok(Vec::new());
        }
        text.split(',')
            .map(|v| {
                let v = v.trim();
                let (id, addr) = v
                    .split_once('@')
                    .ok_or_else(|| format!("quorum voter {v:?} is not id@host:port"))?;
                let id: i32 = id
                    .parse()
                    .map_err(|_| format!("quorum voter {v:?} has no numeric id"))?;
                if addr
                    .rsplit_once(':')
                    .is_none_or(|(_, p)| p.parse::<u16>().is_err())
                {
                    return Err(format!("quorum voter {v:?} has no host:port"));
                }
                Ok((id, addr.to_string()))
            })
            .collect()
    }

    pub fn node_id(&self) -> i32 {
        self.settings.node_id
    }

    pub fn log_dir(&self) -> PathBuf {
        PathBuf::from(
            self.get("log.dirs")
                .split(',')
                .next()
                .unwrap_or("./data")
                .trim(),
        )
    }

    /// All (name, value) pairs, in name order.
    pub fn entries(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.values.iter().map(|(k, v)| (*k, v.as_str()))
    }

    /// The effective value of a topic property given the topic's overrides.
    pub fn topic_value(&self, overrides: &BTreeMap<String, String>, name: &str) -> Option<String> {
        let (def, broker_name) = topic_def(name)?;
        Some(match overrides.get(name) {
            Some(v) => v.clone(),
            None if self.values.contains_key(broker_name) => self.get(broker_name).to_string(),
            None => def.default.to_string(),
        })
    }

    /// The storage settings of a partition log of a topic with these overrides.
    pub fn log_config(&self, overrides: &BTreeMap<String, String>) -> LogConfig {
        let n = |name: &str| -> i64 {
            self.topic_value(overrides, name)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        let policy: Vec<String> = self
            .topic_value(overrides, "cleanup.policy")
            .unwrap_or_default()
            .split(',')
            .map(|p| p.trim().to_ascii_lowercase())
            .collect();
        LogConfig {
            segment_bytes: n("segment.bytes").max(14) as u64,
            segment_ms: n("segment.ms").max(1),
            index_interval_bytes: n("index.interval.bytes").clamp(0, u32::MAX as i64) as u32,
            max_message_bytes: n("max.message.bytes").clamp(0, u32::MAX as i64) as u32,
            retention_ms: n("retention.ms"),
            retention_bytes: n("retention.bytes"),
            log_append_time: self
                .topic_value(overrides, "message.timestamp.type")
                .is_some_and(|v| v.eq_ignore_ascii_case("LogAppendTime")),
            flush_interval_messages: n("flush.messages").max(1) as u64,
            flush_interval_ms: n("flush.ms"),
            compact: policy.iter().any(|p| p == "compact"),
            cleanup_delete: policy.iter().any(|p| p == "delete"),
            delete_retention_ms: n("delete.retention.ms"),
            min_compaction_lag_ms: n("min.compaction.lag.ms"),
            max_compaction_lag_ms: n("max.compaction.lag.ms").max(1),
            min_cleanable_dirty_ratio: self
                .topic_value(overrides, "min.cleanable.dirty.ratio")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.5),
            direct_writes: self
                .get("log.direct.writes")
                .trim()
                .eq_ignore_ascii_case("true"),
        }
    }
}

/// Properties whose values are secrets: DescribeConfigs gives them without a value.
pub fn is_sensitive(name: &str) -> bool {
    matches!(name, "sasl.plain.users" | "ssl.keystore.key")
}

/// The environment variable that sets a property.
pub fn env_name(property: &str) -> String {
    format!(
        "STROM_{}",
        property.to_ascii_uppercase().replace(['.', '-'], "_")
    )
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        toml::Value::Array(items) => out.push((
            prefix.to_string(),
            items
                .iter()
                .map(|i| match i {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
        )),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// The text `strom server --help` shows after the flags: every property with its default.
pub fn properties_help() -> String {
    let mut s = String::from(
        "Broker properties (set in the TOML file, with --set NAME=VALUE, or as STROM_NAME env vars):\n",
    );
    for d in BROKER_CONFIGS {
        let default = if d.default.is_empty() {
            "\"\""
        } else {
            d.default
        };
        s.push_str(&format!(
            "  {:<34} default {:<28} {}\n",
            d.name, default, d.doc
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_env_flags_and_validation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strom.toml");
        std::fs::write(
            &path,
            "\"num.partitions\" = 3\nlog.retention.hours = 2\nlog.dirs = \"/tmp/x\"\nauto.create.topics.enable = false\n",
        )
        .unwrap();
        let mut c = BrokerConfig::default();
        c.apply_file(&path).unwrap();
        assert_eq!(c.settings().num_partitions, 3);
        assert_eq!(c.settings().log_retention_ms, 7_200_000);
        assert!(!c.settings().auto_create_topics_enable);
        assert_eq!(c.log_dir(), PathBuf::from("/tmp/x"));
        assert!(matches!(
            c.set("no.such", "1"),
            Err(ConfigError::Unknown(_))
        ));
        assert!(matches!(
            c.set("num.partitions", "zero"),
            Err(ConfigError::Invalid(_))
        ));
        assert!(matches!(
            c.set("log.message.timestamp.type", "Never"),
            Err(ConfigError::Invalid(_))
        ));
        assert_eq!(env_name("log.retention.ms"), "STROM_LOG_RETENTION_MS");
    }

    #[test]
    fn every_default_parses_and_every_field_has_its_propertys_type() {
        let values = BROKER_CONFIGS
            .iter()
            .map(|d| (d.name, d.default.to_string()))
            .collect();
        BrokerSettings::parse(&values).unwrap();
        assert_eq!(BrokerSettings::types_match_the_table(), Vec::<&str>::new());
        for d in BROKER_CONFIGS {
            validate(d, d.default).unwrap_or_else(|e| panic!("default of {}: {e}", d.name));
        }
    }

    #[test]
    fn set_values_reach_the_typed_settings_and_bad_ones_name_the_property() {
        let mut c = BrokerConfig::default();
        c.set("log.segment.bytes", "2048").unwrap();
        c.set("auto.create.topics.enable", "FALSE").unwrap();
        c.set("process.roles", "broker").unwrap();
        assert_eq!(c.settings().log_segment_bytes, 2048);
        assert!(!c.settings().auto_create_topics_enable);
        assert_eq!(c.settings().process_roles, vec!["broker".to_string()]);
        let e = c.set("log.segment.bytes", "1e9").unwrap_err().to_string();
        assert!(e.contains("log.segment.bytes") && e.contains("1e9"), "{e}");
        let e = c.set("num.network.threadz", "3").unwrap_err().to_string();
        assert!(e.contains("num.network.threadz"), "{e}");
        // A refused value leaves the previous one in force.
        assert_eq!(c.settings().log_segment_bytes, 2048);
    }

    #[test]
    fn topic_values_fall_back_to_broker_properties() {
        let mut c = BrokerConfig::default();
        c.set("log.retention.ms", "1000").unwrap();
        let mut o = BTreeMap::new();
        assert_eq!(c.topic_value(&o, "retention.ms").unwrap(), "1000");
        o.insert("retention.ms".to_string(), "5".to_string());
        assert_eq!(c.log_config(&o).retention_ms, 5);
        assert_eq!(c.log_config(&o).max_message_bytes, 1_048_588);
        assert!(c.topic_value(&o, "nope").is_none());
    }

    #[test]
    fn compaction_settings_reach_the_log_config() {
        let mut c = BrokerConfig::default();
        let l = c.log_config(&BTreeMap::new());
        assert!(!l.compact && l.cleanup_delete);
        assert_eq!(l.min_cleanable_dirty_ratio, 0.5);
        assert_eq!(l.max_compaction_lag_ms, i64::MAX);
        assert_eq!(l.delete_retention_ms, 86_400_000);
        c.set("log.cleaner.min.cleanable.ratio", "0.25").unwrap();
        assert!(c.set("log.cleaner.min.cleanable.ratio", "1.5").is_err());
        assert!(c.set("log.cleaner.io.max.bytes.per.second", "1e6").is_ok());
        let mut o = BTreeMap::new();
        o.insert("cleanup.policy".to_string(), "compact,delete".to_string());
        o.insert("min.compaction.lag.ms".to_string(), "5".to_string());
        let l = c.log_config(&o);
        assert!(l.compact && l.cleanup_delete);
        assert_eq!(l.min_cleanable_dirty_ratio, 0.25);
        assert_eq!(l.min_compaction_lag_ms, 5);
        o.insert("cleanup.policy".to_string(), "compact".to_string());
        let l = c.log_config(&o);
        assert!(l.compact && !l.cleanup_delete);
    }
}

/// The property tables of docs/configuration.md, rendered from the definitions above.
pub fn markdown_tables() -> String {
    let mut s =
        String::from("## Broker properties\n\n| property | default | meaning |\n|---|---|---|\n");
    for d in BROKER_CONFIGS {
        s.push_str(&format!("| `{}` | `{}` | {} |\n", d.name, d.default, d.doc));
    }
    s.push_str("\n## Topic properties\n\n| property | default | falls back to | meaning |\n|---|---|---|---|\n");
    for (d, broker) in TOPIC_CONFIGS {
        s.push_str(&format!(
            "| `{}` | `{}` | `{}` | {} |\n",
            d.name, d.default, broker, d.doc
        ));
    }
    s
}

#[cfg(test)]
mod doc_tests {
    /// docs/configuration.md must show exactly the supported properties; run with
    /// STROM_UPDATE_DOCS=1 to rewrite its generated part.
    #[test]
    fn configuration_doc_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
        let doc = std::fs::read_to_string(path).expect("docs/configuration.md");
        let (begin, end) = ("<!-- generated: properties -->\n", "<!-- end generated -->");
        let start = doc.find(begin).expect("begin marker") + begin.len();
        let stop = doc.find(end).expect("end marker");
        let tables = super::markdown_tables();
        if std::env::var("STROM_UPDATE_DOCS").is_ok() {
            std::fs::write(path, format!("{}{}{}", &doc[..start], tables, &doc[stop..])).unwrap();
            return;
        }
        assert_eq!(
            &doc[start..stop],
            tables,
            "docs/configuration.md is stale: run STROM_UPDATE_DOCS=1 cargo test -p strom-broker"
        );
    }
}
