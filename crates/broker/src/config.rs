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

/// Broker properties.
pub const BROKER_CONFIGS: &[ConfigDef] = &[
    def(
        "node.id",
        "1",
        ConfigType::Int { min: 0 },
        "Id of this broker in the cluster.",
    ),
    def(
        "process.roles",
        "broker,controller",
        ConfigType::ChoiceList(&["broker", "controller"]),
        "Roles of this process: broker, controller, or both (combined, the default). A controller is a voter of the metadata quorum when controller.quorum.voters names it.",
    ),
    def(
        "controller.quorum.voters",
        "",
        ConfigType::String,
        "The metadata quorum as id@host:port,... (the quorum address of each controller). Empty: a single node keeping its metadata in a local log.",
    ),
    def(
        "broker.rack",
        "",
        ConfigType::String,
        "Rack (or zone) of this broker; replicas of a partition are spread across racks.",
    ),
    def(
        "broker.session.timeout.ms",
        "9000",
        ConfigType::Long { min: 1 },
        "A broker that has not heartbeated to the active controller for this long is fenced: its partitions get new leaders and it leaves every ISR.",
    ),
    def(
        "broker.heartbeat.interval.ms",
        "2000",
        ConfigType::Long { min: 1 },
        "Interval between a broker's heartbeats to the active controller.",
    ),
    def(
        "replica.lag.time.max.ms",
        "30000",
        ConfigType::Long { min: 1 },
        "A follower that has not caught up with the leader's log end for this long leaves the ISR.",
    ),
    def(
        "replica.fetch.wait.max.ms",
        "500",
        ConfigType::Int { min: 0 },
        "Longest time a follower's fetch waits at the leader for new data.",
    ),
    def(
        "replica.fetch.max.bytes",
        "1048576",
        ConfigType::Int { min: 0 },
        "Bytes a follower fetches per partition per request (at least one batch).",
    ),
    def(
        "replica.fetch.response.max.bytes",
        "10485760",
        ConfigType::Int { min: 0 },
        "Bytes a follower fetches per request.",
    ),
    def(
        "replica.fetch.backoff.ms",
        "1000",
        ConfigType::Int { min: 0 },
        "Pause of a follower's fetcher after an error.",
    ),
    def(
        "controlled.shutdown.enable",
        "true",
        ConfigType::Bool,
        "On a clean shutdown, move leadership of this broker's partitions to other in-sync replicas before stopping.",
    ),
    def(
        "auto.leader.rebalance.enable",
        "true",
        ConfigType::Bool,
        "The active controller moves leadership back to each partition's preferred (first) replica when it is alive and in sync, every leader.imbalance.check.interval.seconds.",
    ),
    def(
        "leader.imbalance.check.interval.seconds",
        "300",
        ConfigType::Long { min: 1 },
        "How often the active controller looks for partitions not led by their preferred replica.",
    ),
    def(
        "fault.injection.enable",
        "false",
        ConfigType::Bool,
        "strom, for tests only: lets PUT /v1/fault/network on the admin listener cut this broker off from the other brokers (quorum and replication traffic) and heal it, to test network partitions.",
    ),
    def(
        "listeners",
        "PLAINTEXT://127.0.0.1:9092",
        ConfigType::String,
        "Addresses to listen on, as a comma-separated list of NAME://host:port; each name maps to a security protocol through listener.security.protocol.map.",
    ),
    def(
        "advertised.listeners",
        "",
        ConfigType::String,
        "Addresses given to clients in Metadata, as NAME://host:port per listener; a listener not named here is advertised at its own address (a wildcard host as 127.0.0.1). A client is given the address of the listener it connected to.",
    ),
    def(
        "listener.security.protocol.map",
        "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
        ConfigType::String,
        "Security protocol of each listener name, as NAME:PROTOCOL pairs (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL).",
    ),
    def(
        "ssl.keystore.type",
        "PEM",
        ConfigType::Choice(&["PEM"]),
        "Format of the server key and certificates; strom reads PEM only.",
    ),
    def(
        "ssl.keystore.location",
        "",
        ConfigType::String,
        "PEM file holding the server certificate chain (leaf first) and its unencrypted private key (PKCS#8, PKCS#1 or SEC1), for SSL and SASL_SSL listeners; read again when it changes.",
    ),
    def(
        "ssl.keystore.certificate.chain",
        "",
        ConfigType::String,
        "The server certificate chain as inline PEM text (used when ssl.keystore.location is empty).",
    ),
    def(
        "ssl.keystore.key",
        "",
        ConfigType::String,
        "The server private key as inline unencrypted PEM text (used when ssl.keystore.location is empty).",
    ),
    def(
        "ssl.truststore.type",
        "PEM",
        ConfigType::Choice(&["PEM"]),
        "Format of the CA certificates that verify client certificates; strom reads PEM only.",
    ),
    def(
        "ssl.truststore.location",
        "",
        ConfigType::String,
        "PEM file of CA certificates that client certificates must chain to (needed when ssl.client.auth is required or requested).",
    ),
    def(
        "ssl.truststore.certificates",
        "",
        ConfigType::String,
        "CA certificates as inline PEM text (used when ssl.truststore.location is empty).",
    ),
    def(
        "ssl.client.auth",
        "none",
        ConfigType::Choice(&["required", "requested", "none"]),
        "Whether TLS clients must (required), may (requested) or do not present a certificate; a verified certificate's subject becomes the principal, as User:<RFC 2253 distinguished name>.",
    ),
    def(
        "ssl.principal.mapping.rules",
        "DEFAULT",
        ConfigType::String,
        "How a client certificate's RFC 2253 subject becomes the principal name: RULE:pattern/replacement/[L|U] rules tried in order, DEFAULT keeps the whole subject.",
    ),
    def(
        "sasl.enabled.mechanisms",
        "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        ConfigType::ChoiceList(&["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]),
        "SASL mechanisms offered on SASL_PLAINTEXT and SASL_SSL listeners.",
    ),
    def(
        "sasl.oauthbearer.jwks.endpoint.url",
        "",
        ConfigType::String,
        "OAUTHBEARER: JSON Web Key Set that signs accepted tokens, as a local file (file:///path or a path), read again when it changes. Empty accepts unsecured tokens (alg none), for development only.",
    ),
    def(
        "sasl.oauthbearer.expected.audience",
        "",
        ConfigType::String,
        "OAUTHBEARER: comma-separated audiences a token's aud claim must contain one of (empty: not checked).",
    ),
    def(
        "sasl.oauthbearer.expected.issuer",
        "",
        ConfigType::String,
        "OAUTHBEARER: the iss claim a token must have (empty: not checked).",
    ),
    def(
        "sasl.oauthbearer.sub.claim.name",
        "sub",
        ConfigType::String,
        "OAUTHBEARER: the claim that names the principal (User:<value>).",
    ),
    def(
        "sasl.oauthbearer.clock.skew.seconds",
        "30",
        ConfigType::Int { min: 0 },
        "OAUTHBEARER: tolerance in seconds when checking a token's exp, nbf and iat.",
    ),
    def(
        "sasl.plain.users",
        "",
        ConfigType::String,
        "strom: users of the PLAIN mechanism as a comma-separated list of name:password (a password may hold colons, not commas).",
    ),
    def(
        "sasl.plain.users.file",
        "",
        ConfigType::String,
        "strom: a file of PLAIN users, one name:password per line (lines starting with # are ignored); read at start.",
    ),
    def(
        "connection.failed.authentication.delay.ms",
        "100",
        ConfigType::Int { min: 0 },
        "Delay before a failed authentication is answered and its connection closed.",
    ),
    def(
        "connections.max.reauth.ms",
        "0",
        LONG0,
        "Lifetime of a SASL session: clients are told it (SaslAuthenticate v1+) and must re-authenticate in time, or their next request closes the connection; 0 means sessions do not expire.",
    ),
    def(
        "connections.max.idle.ms",
        "600000",
        ConfigType::Long { min: 1 },
        "A connection that sends no request for this long is closed.",
    ),
    def(
        "max.connections",
        "2147483647",
        ConfigType::Int { min: 0 },
        "Most connections the broker holds over all listeners; further clients wait in the accept queue until one closes.",
    ),
    def(
        "max.connections.per.ip",
        "2147483647",
        ConfigType::Int { min: 0 },
        "Most connections from one IP address; a connection beyond it is closed at once.",
    ),
    def(
        "max.connections.per.ip.overrides",
        "",
        ConfigType::String,
        "Per-address exceptions to max.connections.per.ip, as a comma-separated list of ip:count.",
    ),
    def(
        "authorizer.class.name",
        "",
        ConfigType::String,
        "Any non-empty value turns on strom's built-in ACL authorizer (e.g. org.apache.kafka.metadata.authorizer.StandardAuthorizer); empty allows every operation.",
    ),
    def(
        "super.users",
        "",
        ConfigType::String,
        "Principals allowed every operation, separated by semicolons (User:admin;User:CN=ops).",
    ),
    def(
        "allow.everyone.if.no.acl.found",
        "false",
        ConfigType::Bool,
        "With the authorizer on: whether a resource without any matching ACL is open to everyone.",
    ),
    def(
        "strom.audit.admin.operations.enable",
        "false",
        ConfigType::Bool,
        "Log every admin operation (topics, partitions, records deletion, configs, ACLs, SCRAM credentials, client quotas, group and offset deletion) with principal, resource, request and result on the strom::audit log target; config values and credentials are not written.",
    ),
    def(
        "admin.listener",
        "127.0.0.1:9644",
        ConfigType::String,
        "host:port of the admin HTTP listener (/metrics, /health/live, /health/ready, /v1/status, /v1/log-level); empty turns it off.",
    ),
    def(
        "log.dirs",
        "./data",
        ConfigType::String,
        "Directory that holds the partition logs and the metadata log.",
    ),
    def(
        "num.partitions",
        "1",
        ConfigType::Int { min: 1 },
        "Partitions of an automatically created topic, or of a created topic that names none.",
    ),
    def(
        "default.replication.factor",
        "1",
        ConfigType::Int { min: 1 },
        "Replication factor of automatically created topics.",
    ),
    def(
        "auto.create.topics.enable",
        "true",
        ConfigType::Bool,
        "Create a topic when a client asks for its metadata or produces to it.",
    ),
    def(
        "socket.request.max.bytes",
        "104857600",
        ConfigType::Int { min: 1 },
        "Largest request frame accepted; a larger one closes the connection.",
    ),
    def(
        "fetch.memory.budget.bytes",
        "67108864",
        ConfigType::Long { min: 1 },
        "strom only: most bytes of record data that fetch responses on TLS connections hold in memory at once, over all connections (each borrows up to 256 KiB of it while it writes a response; plaintext connections send records with sendfile and need none).",
    ),
    def(
        "message.max.bytes",
        "1048588",
        ConfigType::Int { min: 0 },
        "Largest record batch accepted (topic: max.message.bytes).",
    ),
    def(
        "log.segment.bytes",
        "1073741824",
        ConfigType::Int { min: 14 },
        "Size at which a log segment is rolled (topic: segment.bytes).",
    ),
    def(
        "log.roll.ms",
        "604800000",
        ConfigType::Long { min: 1 },
        "Age at which a log segment is rolled (topic: segment.ms).",
    ),
    def(
        "log.retention.ms",
        "604800000",
        LONG_ANY,
        "How long data is kept; -1 keeps it forever (topic: retention.ms).",
    ),
    def(
        "log.retention.bytes",
        "-1",
        LONG_ANY,
        "Size a partition may grow to before old segments go; -1 is unlimited (topic: retention.bytes).",
    ),
    def(
        "log.retention.check.interval.ms",
        "300000",
        ConfigType::Long { min: 1 },
        "How often retention is enforced.",
    ),
    def(
        "log.flush.interval.messages",
        I64_MAX,
        ConfigType::Long { min: 1 },
        "Records after which a partition is fsynced (topic: flush.messages); the default leaves it to the OS.",
    ),
    def(
        "log.flush.interval.ms",
        I64_MAX,
        LONG0,
        "Time after which a partition is fsynced (topic: flush.ms); the default leaves it to the OS.",
    ),
    def(
        "log.index.interval.bytes",
        "4096",
        ConfigType::Int { min: 0 },
        "Bytes of log between two offset index entries (topic: index.interval.bytes).",
    ),
    def(
        "log.direct.writes",
        "true",
        ConfigType::Bool,
        "strom only: append to the active segments with direct I/O, bypassing the page cache (a fraction of the CPU per produced byte; consumers that fall behind read from the disk). Where the file system refuses direct I/O, appends are buffered. false writes through the page cache as Apache Kafka does.",
    ),
    def(
        "log.message.timestamp.type",
        "CreateTime",
        ConfigType::Choice(TIMESTAMP_TYPES),
        "CreateTime keeps the producer's timestamps; LogAppendTime stamps the broker's clock (topic: message.timestamp.type).",
    ),
    def(
        "log.cleanup.policy",
        "delete",
        ConfigType::ChoiceList(CLEANUP_POLICIES),
        "delete: remove old segments by retention; compact: keep the latest record per key; or both (topic: cleanup.policy).",
    ),
    def(
        "compression.type",
        "producer",
        ConfigType::Choice(COMPRESSION_TYPES),
        "Compression of stored batches; producer keeps what the producer sent.",
    ),
    def(
        "min.insync.replicas",
        "1",
        ConfigType::Int { min: 1 },
        "Replicas that must acknowledge an acks=all write.",
    ),
    def(
        "log.cleaner.delete.retention.ms",
        "86400000",
        LONG0,
        "How long tombstones are kept in compacted topics (topic: delete.retention.ms).",
    ),
    def(
        "log.cleaner.threads",
        "1",
        ConfigType::Int { min: 0 },
        "Threads that compact logs with cleanup.policy=compact; 0 disables compaction.",
    ),
    def(
        "log.cleaner.dedupe.buffer.size",
        "134217728",
        ConfigType::Long { min: 1 },
        "Memory for the key maps of all cleaner threads together.",
    ),
    def(
        "log.cleaner.io.max.bytes.per.second",
        DOUBLE_MAX,
        ConfigType::Double {
            min: 0,
            max: i64::MAX,
        },
        "Bytes per second all cleaner threads together may read plus write.",
    ),
    def(
        "log.cleaner.backoff.ms",
        "15000",
        LONG0,
        "How long a cleaner thread sleeps when no log needs cleaning.",
    ),
    def(
        "log.cleaner.min.cleanable.ratio",
        "0.5",
        RATIO,
        "Dirty share of a log above which it is compacted (topic: min.cleanable.dirty.ratio).",
    ),
    def(
        "log.cleaner.min.compaction.lag.ms",
        "0",
        LONG0,
        "Records younger than this are not compacted (topic: min.compaction.lag.ms).",
    ),
    def(
        "log.cleaner.max.compaction.lag.ms",
        I64_MAX,
        ConfigType::Long { min: 1 },
        "Records older than this are compacted whatever the dirty ratio (topic: max.compaction.lag.ms).",
    ),
    def(
        "log.segment.delete.delay.ms",
        "60000",
        LONG0,
        "Delay before a deleted segment's files are removed (topic: file.delete.delay.ms).",
    ),
    def(
        "unclean.leader.election.enable",
        "false",
        ConfigType::Bool,
        "Allow an out-of-sync replica to become leader.",
    ),
    def(
        "group.initial.rebalance.delay.ms",
        "3000",
        ConfigType::Int { min: 0 },
        "How long a new group waits for more members before its first rebalance completes.",
    ),
    def(
        "group.min.session.timeout.ms",
        "6000",
        ConfigType::Int { min: 0 },
        "Smallest session timeout a group member may ask for.",
    ),
    def(
        "group.max.session.timeout.ms",
        "1800000",
        ConfigType::Int { min: 0 },
        "Largest session timeout a group member may ask for.",
    ),
    def(
        "group.max.size",
        "2147483647",
        ConfigType::Int { min: 1 },
        "Most members a consumer group may have.",
    ),
    def(
        "group.consumer.session.timeout.ms",
        "45000",
        ConfigType::Int { min: 1 },
        "Consumer protocol (KIP-848) groups: a member that does not heartbeat for this long is removed.",
    ),
    def(
        "group.consumer.heartbeat.interval.ms",
        "5000",
        ConfigType::Int { min: 1 },
        "Consumer protocol groups: the heartbeat interval the coordinator gives members.",
    ),
    def(
        "group.consumer.max.size",
        "2147483647",
        ConfigType::Int { min: 1 },
        "Consumer protocol groups: most members a group may have.",
    ),
    def(
        "group.consumer.assignors",
        "uniform,range",
        ConfigType::ChoiceList(CONSUMER_ASSIGNORS),
        "Consumer protocol groups: server-side assignors members may pick, the first being the default (short names or Kafka's class names).",
    ),
    def(
        "offsets.topic.num.partitions",
        "50",
        ConfigType::Int { min: 1 },
        "Partitions of __consumer_offsets (fixed once the topic exists).",
    ),
    def(
        "offsets.topic.replication.factor",
        "1",
        ConfigType::Int { min: 1 },
        "Replication factor of __consumer_offsets.",
    ),
    def(
        "offsets.topic.segment.bytes",
        "104857600",
        ConfigType::Int { min: 14 },
        "Segment size of __consumer_offsets.",
    ),
    def(
        "transaction.state.log.num.partitions",
        "50",
        ConfigType::Int { min: 1 },
        "Partitions of __transaction_state (fixed once the topic exists).",
    ),
    def(
        "transaction.state.log.replication.factor",
        "1",
        ConfigType::Int { min: 1 },
        "Replication factor of __transaction_state.",
    ),
    def(
        "transaction.state.log.min.isr",
        "1",
        ConfigType::Int { min: 1 },
        "min.insync.replicas of __transaction_state.",
    ),
    def(
        "transaction.state.log.segment.bytes",
        "104857600",
        ConfigType::Int { min: 14 },
        "Segment size of __transaction_state.",
    ),
    def(
        "transaction.max.timeout.ms",
        "900000",
        ConfigType::Int { min: 1 },
        "Largest transaction timeout a producer may ask for.",
    ),
    def(
        "transaction.version",
        "2",
        ConfigType::Int { min: 0 },
        "Transaction protocol finalized for clients (the transaction.version feature): 2 adds \
         partitions on the broker and bumps the producer epoch with every transaction (KIP-890); \
         0 or 1 keep clients on the classic protocol.",
    ),
    def(
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        "10000",
        ConfigType::Int { min: 1 },
        "How often transactions open past their timeout are looked for and aborted.",
    ),
    def(
        "producer.id.expiration.ms",
        "86400000",
        ConfigType::Int { min: 1 },
        "How long a partition remembers an idle producer (for duplicate detection).",
    ),
    def(
        "producer.id.expiration.check.interval.ms",
        "600000",
        ConfigType::Int { min: 1 },
        "How often idle producers are forgotten.",
    ),
    def(
        "offsets.retention.minutes",
        "10080",
        ConfigType::Int { min: 1 },
        "How long committed offsets of an empty group are kept.",
    ),
    def(
        "offsets.retention.check.interval.ms",
        "600000",
        ConfigType::Long { min: 1 },
        "How often expired offsets are removed.",
    ),
    def(
        "offset.metadata.max.bytes",
        "4096",
        ConfigType::Int { min: 0 },
        "Largest metadata string of a committed offset.",
    ),
];

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
            if !(n >= min as f64 && n <= max as f64) {
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
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            values: BROKER_CONFIGS
                .iter()
                .map(|d| (d.name, d.default.to_string()))
                .collect(),
            explicit: BTreeMap::new(),
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
        self.values.insert(def.name, value.trim().to_string());
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

    pub fn get_i64(&self, name: &str) -> i64 {
        self.get(name).parse().unwrap_or(0)
    }

    pub fn get_bool(&self, name: &str) -> bool {
        self.get(name).eq_ignore_ascii_case("true")
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
        self.get_i64("node.id") as i32
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
        assert_eq!(c.get_i64("num.partitions"), 3);
        assert_eq!(c.get_i64("log.retention.ms"), 7_200_000);
        assert!(!c.get_bool("auto.create.topics.enable"));
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
