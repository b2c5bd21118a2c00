//! Errors of the client, with Kafka error codes mapped to their protocol names.

use strom_protocol::ProtocolError;
use strom_protocol::error_code;

/// Everything a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("{what} timed out after {timeout_ms} ms")]
    Timeout { what: String, timeout_ms: u64 },
    /// The broker answered with a Kafka error code.
    #[error("{message} ({name})")]
    Kafka {
        code: i16,
        name: &'static str,
        message: String,
    },
    /// The broker does not support any version of an API that this client can speak.
    #[error(
        "the broker does not support {api} in a version this client speaks (broker {broker_min}-{broker_max}, client {client_min}-{client_max})"
    )]
    UnsupportedVersion {
        api: String,
        broker_min: i16,
        broker_max: i16,
        client_min: i16,
        client_max: i16,
    },
    /// The broker answered with something that does not fit the request.
    #[error("unexpected response: {0}")]
    UnexpectedResponse(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// A client property was refused at construction: unknown, of the wrong type, out of
    /// range, or contradicting another setting.
    #[error("invalid configuration {property}={value:?}: {reason}")]
    Config {
        property: String,
        value: String,
        reason: String,
    },
    /// The broker refused a produce (or another partition request) with a Kafka error code:
    /// which partition, which error.
    #[error("{message} ({name})")]
    Partition {
        topic: String,
        partition: i32,
        code: i16,
        name: &'static str,
        message: String,
    },
    /// An admin request was refused for one resource: which resource (`topic "orders"`,
    /// `group "g"`, `broker 1`, `user "alice"`...), which Kafka error.
    #[error("{message} ({name})")]
    Resource {
        resource: String,
        code: i16,
        name: &'static str,
        message: String,
    },
    /// A record was not delivered within `delivery.timeout.ms`.
    #[error(
        "partition {partition} of topic {topic:?}: record not delivered within delivery.timeout.ms ({timeout_ms} ms){}",
        last_error.as_ref().map(|e| format!("; last error: {e}")).unwrap_or_default()
    )]
    DeliveryTimeout {
        topic: String,
        partition: i32,
        timeout_ms: u64,
        last_error: Option<String>,
    },
    /// The producer's buffer (`buffer.memory`) stayed full, or the topic's metadata did not
    /// arrive, for `max.block.ms`.
    #[error("{what} for {waited_ms} ms (max.block.ms)")]
    MaxBlock { what: String, waited_ms: u64 },
    /// A record larger than a producer limit (`max.request.size` or `buffer.memory`).
    #[error("a record of {size} bytes is larger than {property}={limit}")]
    RecordTooLarge {
        size: usize,
        limit: usize,
        property: &'static str,
    },
    /// A record was not delivered, for a reason that is not a Kafka error code of its own
    /// (retries used up after lost answers, a batch that may already be written and is not sent
    /// twice, a transaction aborted before the record was sent).
    #[error("partition {partition} of topic {topic:?}: {reason}")]
    NotDelivered {
        topic: String,
        partition: i32,
        reason: String,
        retriable: bool,
    },
    /// The client was closed; nothing more can be sent with it.
    #[error("the {0} is closed")]
    Closed(&'static str),
}

impl ClientError {
    /// A Kafka error for `code` about `subject` (e.g. `topic "orders"`), with the broker's
    /// message appended when it sent one.
    pub fn kafka(code: i16, subject: &str, broker_message: Option<&str>) -> ClientError {
        let description = error_description(code);
        let mut message = format!("{subject} {description}");
        // The broker's message is appended when it says more than the description does.
        let adds_something =
            |m: &&str| !m.is_empty() && !m.to_ascii_lowercase().contains(description);
        if let Some(m) = broker_message.map(str::trim).filter(adds_something) {
            message.push_str(": ");
            message.push_str(m);
        }
        ClientError::Kafka {
            code,
            name: error_name(code),
            message,
        }
    }

    /// A Kafka error about one resource of an admin request (`subject` names it, e.g.
    /// `topic "orders"`), with the broker's message appended when it says more.
    pub fn resource(code: i16, subject: &str, broker_message: Option<&str>) -> ClientError {
        let message = match ClientError::kafka(code, subject, broker_message) {
            ClientError::Kafka { message, .. } => message,
            _ => subject.to_string(),
        };
        ClientError::Resource {
            resource: subject.to_string(),
            code,
            name: error_name(code),
            message,
        }
    }

    /// The resource an admin error concerns (`topic "orders"`, `group "g"`...), when the
    /// broker refused one; partition errors name theirs with [`ClientError::topic_partition`].
    pub fn resource_name(&self) -> Option<&str> {
        match self {
            ClientError::Resource { resource, .. } => Some(resource),
            _ => None,
        }
    }

    /// A Kafka error about one partition of a topic.
    pub fn partition(
        code: i16,
        topic: &str,
        partition: i32,
        broker_message: Option<&str>,
    ) -> ClientError {
        let subject = format!("partition {partition} of topic {topic:?}");
        let message = match ClientError::kafka(code, &subject, broker_message) {
            ClientError::Kafka { message, .. } => message,
            _ => subject,
        };
        ClientError::Partition {
            topic: topic.to_string(),
            partition,
            code,
            name: error_name(code),
            message,
        }
    }

    /// The Kafka error code, when this is a Kafka error.
    pub fn kafka_code(&self) -> Option<i16> {
        match self {
            ClientError::Kafka { code, .. }
            | ClientError::Partition { code, .. }
            | ClientError::Resource { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The Kafka error name (e.g. `NOT_ENOUGH_REPLICAS`), when this is a Kafka error.
    pub fn error_name(&self) -> Option<&'static str> {
        match self {
            ClientError::Kafka { name, .. }
            | ClientError::Partition { name, .. }
            | ClientError::Resource { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The topic and partition the error concerns, when it concerns one.
    pub fn topic_partition(&self) -> Option<(&str, i32)> {
        match self {
            ClientError::Partition {
                topic, partition, ..
            }
            | ClientError::DeliveryTimeout {
                topic, partition, ..
            }
            | ClientError::NotDelivered {
                topic, partition, ..
            } => Some((topic.as_str(), *partition)),
            _ => None,
        }
    }

    /// Whether trying the same call again later may succeed: transient network and broker
    /// conditions (a leader moving, too few in-sync replicas, timeouts, a full buffer) are;
    /// refusals (authorization, invalid records or configuration, a fenced producer, a closed
    /// client) are not.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Connect { .. }
            | ClientError::Io(_)
            | ClientError::Timeout { .. }
            | ClientError::DeliveryTimeout { .. }
            | ClientError::MaxBlock { .. } => true,
            ClientError::Kafka { code, .. }
            | ClientError::Partition { code, .. }
            | ClientError::Resource { code, .. } => is_retriable_code(*code),
            ClientError::NotDelivered { retriable, .. } => *retriable,
            ClientError::Protocol(_)
            | ClientError::UnsupportedVersion { .. }
            | ClientError::UnexpectedResponse(_)
            | ClientError::InvalidArgument(_)
            | ClientError::Config { .. }
            | ClientError::RecordTooLarge { .. }
            | ClientError::Closed(_) => false,
        }
    }
}

/// Kafka error codes that describe a transient condition: the request may succeed if retried
/// (the codes Kafka's clients treat as retriable).
pub fn is_retriable_code(code: i16) -> bool {
    matches!(
        code,
        2 // CORRUPT_MESSAGE
        | 3 // UNKNOWN_TOPIC_OR_PARTITION
        | 5 // LEADER_NOT_AVAILABLE
        | 6 // NOT_LEADER_OR_FOLLOWER
        | 7 // REQUEST_TIMED_OUT
        | 8 // BROKER_NOT_AVAILABLE
        | 9 // REPLICA_NOT_AVAILABLE
        | 13 // NETWORK_EXCEPTION
        | 14 // COORDINATOR_LOAD_IN_PROGRESS
        | 15 // COORDINATOR_NOT_AVAILABLE
        | 16 // NOT_COORDINATOR
        | 19 // NOT_ENOUGH_REPLICAS
        | 20 // NOT_ENOUGH_REPLICAS_AFTER_APPEND
        | 41 // NOT_CONTROLLER
        | 51 // CONCURRENT_TRANSACTIONS
        | 56 // KAFKA_STORAGE_ERROR
        | 74 // FENCED_LEADER_EPOCH
        | 75 // UNKNOWN_LEADER_EPOCH
        | 78 // OFFSET_NOT_AVAILABLE
        | 80 // PREFERRED_LEADER_NOT_AVAILABLE
        | 83 // ELIGIBLE_LEADERS_NOT_AVAILABLE
        | 88 // UNSTABLE_OFFSET_COMMIT
        | 89 // THROTTLING_QUOTA_EXCEEDED
        | 100 // UNKNOWN_TOPIC_ID
        | 108 // NEW_LEADER_ELECTED
    )
}

/// `Ok(())` for error code 0, else the Kafka error about `subject`.
pub fn check(code: i16, subject: &str, broker_message: Option<&str>) -> Result<(), ClientError> {
    if code == error_code::NONE {
        Ok(())
    } else {
        Err(ClientError::kafka(code, subject, broker_message))
    }
}

/// `Ok(())` for error code 0, else the admin error about the resource `subject`.
pub fn check_resource(
    code: i16,
    subject: &str,
    broker_message: Option<&str>,
) -> Result<(), ClientError> {
    if code == error_code::NONE {
        Ok(())
    } else {
        Err(ClientError::resource(code, subject, broker_message))
    }
}

/// A short phrase that completes "topic "x" ..." for the common codes.
pub fn error_description(code: i16) -> &'static str {
    match code {
        error_code::UNKNOWN_TOPIC_OR_PARTITION => "does not exist",
        error_code::UNKNOWN_TOPIC_ID => "does not exist (unknown topic id)",
        error_code::TOPIC_ALREADY_EXISTS => "already exists",
        error_code::INVALID_PARTITIONS => "has an invalid number of partitions",
        error_code::INVALID_REPLICATION_FACTOR => "has an invalid replication factor",
        error_code::INVALID_REPLICA_ASSIGNMENT => "has an invalid replica assignment",
        error_code::INVALID_CONFIG => "has an invalid configuration",
        error_code::INVALID_TOPIC_EXCEPTION => "is not a valid topic name",
        error_code::OFFSET_OUT_OF_RANGE => "has no records at the requested offset",
        error_code::LEADER_NOT_AVAILABLE => "has no leader available right now",
        error_code::NOT_LEADER_OR_FOLLOWER => "is not led by this broker",
        error_code::MESSAGE_TOO_LARGE => "received a batch larger than allowed",
        error_code::RECORD_LIST_TOO_LARGE => "received a record list larger than allowed",
        error_code::NOT_ENOUGH_REPLICAS => "has fewer in-sync replicas than min.insync.replicas",
        error_code::CORRUPT_MESSAGE => "received a corrupt batch",
        error_code::INVALID_RECORD => "received an invalid record",
        error_code::INVALID_TIMESTAMP => "received an invalid timestamp",
        error_code::INVALID_REQUIRED_ACKS => "received an invalid acks value",
        error_code::POLICY_VIOLATION => "violates a broker policy",
        error_code::UNSUPPORTED_COMPRESSION_TYPE => "does not accept this compression type",
        error_code::REQUEST_TIMED_OUT => "timed out on the broker",
        error_code::RESOURCE_NOT_FOUND => "does not exist",
        error_code::UNSUPPORTED_VERSION => "uses an API version the broker does not support",
        error_code::KAFKA_STORAGE_ERROR => "hit a storage error on the broker",
        error_code::THROTTLING_QUOTA_EXCEEDED => "was throttled by a quota",
        41 => "was sent to a broker that is not the controller",
        57 => "names a log directory the broker does not have",
        60 => "is being reassigned already",
        85 => "has no reassignment in progress",
        84 => "already has its preferred leader",
        73 => "cannot be deleted: topic deletion is disabled",
        29 => "is not authorized",
        _ => "failed",
    }
}

/// The protocol name of a Kafka error code, e.g. `UNKNOWN_TOPIC_OR_PARTITION` for 3.
pub fn error_name(code: i16) -> &'static str {
    match code {
        -1 => "UNKNOWN_SERVER_ERROR",
        0 => "NONE",
        1 => "OFFSET_OUT_OF_RANGE",
        2 => "CORRUPT_MESSAGE",
        3 => "UNKNOWN_TOPIC_OR_PARTITION",
        4 => "INVALID_FETCH_SIZE",
        5 => "LEADER_NOT_AVAILABLE",
        6 => "NOT_LEADER_OR_FOLLOWER",
        7 => "REQUEST_TIMED_OUT",
        8 => "BROKER_NOT_AVAILABLE",
        9 => "REPLICA_NOT_AVAILABLE",
        10 => "MESSAGE_TOO_LARGE",
        11 => "STALE_CONTROLLER_EPOCH",
        12 => "OFFSET_METADATA_TOO_LARGE",
        13 => "NETWORK_EXCEPTION",
        14 => "COORDINATOR_LOAD_IN_PROGRESS",
        15 => "COORDINATOR_NOT_AVAILABLE",
        16 => "NOT_COORDINATOR",
        17 => "INVALID_TOPIC_EXCEPTION",
        18 => "RECORD_LIST_TOO_LARGE",
        19 => "NOT_ENOUGH_REPLICAS",
        20 => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        21 => "INVALID_REQUIRED_ACKS",
        22 => "ILLEGAL_GENERATION",
        23 => "INCONSISTENT_GROUP_PROTOCOL",
        24 => "INVALID_GROUP_ID",
        25 => "UNKNOWN_MEMBER_ID",
        26 => "INVALID_SESSION_TIMEOUT",
        27 => "REBALANCE_IN_PROGRESS",
        28 => "INVALID_COMMIT_OFFSET_SIZE",
        29 => "TOPIC_AUTHORIZATION_FAILED",
        30 => "GROUP_AUTHORIZATION_FAILED",
        31 => "CLUSTER_AUTHORIZATION_FAILED",
        32 => "INVALID_TIMESTAMP",
        33 => "UNSUPPORTED_SASL_MECHANISM",
        34 => "ILLEGAL_SASL_STATE",
        35 => "UNSUPPORTED_VERSION",
        36 => "TOPIC_ALREADY_EXISTS",
        37 => "INVALID_PARTITIONS",
        38 => "INVALID_REPLICATION_FACTOR",
        39 => "INVALID_REPLICA_ASSIGNMENT",
        40 => "INVALID_CONFIG",
        41 => "NOT_CONTROLLER",
        42 => "INVALID_REQUEST",
        43 => "UNSUPPORTED_FOR_MESSAGE_FORMAT",
        44 => "POLICY_VIOLATION",
        45 => "OUT_OF_ORDER_SEQUENCE_NUMBER",
        46 => "DUPLICATE_SEQUENCE_NUMBER",
        47 => "INVALID_PRODUCER_EPOCH",
        48 => "INVALID_TXN_STATE",
        49 => "INVALID_PRODUCER_ID_MAPPING",
        50 => "INVALID_TRANSACTION_TIMEOUT",
        51 => "CONCURRENT_TRANSACTIONS",
        52 => "TRANSACTION_COORDINATOR_FENCED",
        53 => "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
        54 => "SECURITY_DISABLED",
        55 => "OPERATION_NOT_ATTEMPTED",
        56 => "KAFKA_STORAGE_ERROR",
        57 => "LOG_DIR_NOT_FOUND",
        58 => "SASL_AUTHENTICATION_FAILED",
        59 => "UNKNOWN_PRODUCER_ID",
        60 => "REASSIGNMENT_IN_PROGRESS",
        61 => "DELEGATION_TOKEN_AUTH_DISABLED",
        62 => "DELEGATION_TOKEN_NOT_FOUND",
        63 => "DELEGATION_TOKEN_OWNER_MISMATCH",
        64 => "DELEGATION_TOKEN_REQUEST_NOT_ALLOWED",
        65 => "DELEGATION_TOKEN_AUTHORIZATION_FAILED",
        66 => "DELEGATION_TOKEN_EXPIRED",
        67 => "INVALID_PRINCIPAL_TYPE",
        68 => "NON_EMPTY_GROUP",
        69 => "GROUP_ID_NOT_FOUND",
        70 => "FETCH_SESSION_ID_NOT_FOUND",
        71 => "INVALID_FETCH_SESSION_EPOCH",
        72 => "LISTENER_NOT_FOUND",
        73 => "TOPIC_DELETION_DISABLED",
        74 => "FENCED_LEADER_EPOCH",
        75 => "UNKNOWN_LEADER_EPOCH",
        76 => "UNSUPPORTED_COMPRESSION_TYPE",
        77 => "STALE_BROKER_EPOCH",
        78 => "OFFSET_NOT_AVAILABLE",
        79 => "MEMBER_ID_REQUIRED",
        80 => "PREFERRED_LEADER_NOT_AVAILABLE",
        81 => "GROUP_MAX_SIZE_REACHED",
        82 => "FENCED_INSTANCE_ID",
        83 => "ELIGIBLE_LEADERS_NOT_AVAILABLE",
        84 => "ELECTION_NOT_NEEDED",
        85 => "NO_REASSIGNMENT_IN_PROGRESS",
        86 => "GROUP_SUBSCRIBED_TO_TOPIC",
        87 => "INVALID_RECORD",
        88 => "UNSTABLE_OFFSET_COMMIT",
        89 => "THROTTLING_QUOTA_EXCEEDED",
        90 => "PRODUCER_FENCED",
        91 => "RESOURCE_NOT_FOUND",
        92 => "DUPLICATE_RESOURCE",
        93 => "UNACCEPTABLE_CREDENTIAL",
        94 => "INCONSISTENT_VOTER_SET",
        95 => "INVALID_UPDATE_VERSION",
        96 => "FEATURE_UPDATE_FAILED",
        97 => "PRINCIPAL_DESERIALIZATION_FAILURE",
        98 => "SNAPSHOT_NOT_FOUND",
        99 => "POSITION_OUT_OF_RANGE",
        100 => "UNKNOWN_TOPIC_ID",
        101 => "DUPLICATE_BROKER_REGISTRATION",
        102 => "BROKER_ID_NOT_REGISTERED",
        103 => "INCONSISTENT_TOPIC_ID",
        104 => "INCONSISTENT_CLUSTER_ID",
        105 => "TRANSACTIONAL_ID_NOT_FOUND",
        106 => "FETCH_SESSION_TOPIC_ID_ERROR",
        107 => "INELIGIBLE_REPLICA",
        108 => "NEW_LEADER_ELECTED",
        109 => "OFFSET_MOVED_TO_TIERED_STORAGE",
        110 => "FENCED_MEMBER_EPOCH",
        111 => "UNRELEASED_INSTANCE_ID",
        112 => "UNSUPPORTED_ASSIGNOR",
        113 => "STALE_MEMBER_EPOCH",
        114 => "MISMATCHED_ENDPOINT_TYPE",
        115 => "UNSUPPORTED_ENDPOINT_TYPE",
        116 => "UNKNOWN_CONTROLLER_ID",
        117 => "UNKNOWN_SUBSCRIPTION_ID",
        118 => "TELEMETRY_TOO_LARGE",
        119 => "INVALID_REGISTRATION",
        120 => "TRANSACTION_ABORTABLE",
        121 => "INVALID_RECORD_STATE",
        122 => "SHARE_SESSION_NOT_FOUND",
        123 => "INVALID_SHARE_SESSION_EPOCH",
        124 => "FENCED_STATE_EPOCH",
        125 => "INVALID_VOTER_KEY",
        126 => "DUPLICATE_VOTER",
        127 => "VOTER_NOT_FOUND",
        128 => "INVALID_REGULAR_EXPRESSION",
        129 => "REBOOTSTRAP_REQUIRED",
        _ => "UNKNOWN_ERROR_CODE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_protocol_constants() {
        for (code, name) in [
            (
                error_code::UNKNOWN_TOPIC_OR_PARTITION,
                "UNKNOWN_TOPIC_OR_PARTITION",
            ),
            (error_code::TOPIC_ALREADY_EXISTS, "TOPIC_ALREADY_EXISTS"),
            (error_code::INVALID_PARTITIONS, "INVALID_PARTITIONS"),
            (error_code::INVALID_CONFIG, "INVALID_CONFIG"),
            (error_code::OFFSET_OUT_OF_RANGE, "OFFSET_OUT_OF_RANGE"),
            (
                error_code::INVALID_TOPIC_EXCEPTION,
                "INVALID_TOPIC_EXCEPTION",
            ),
            (error_code::NOT_LEADER_OR_FOLLOWER, "NOT_LEADER_OR_FOLLOWER"),
            (error_code::UNKNOWN_TOPIC_ID, "UNKNOWN_TOPIC_ID"),
            (error_code::UNKNOWN_SERVER_ERROR, "UNKNOWN_SERVER_ERROR"),
        ] {
            assert_eq!(error_name(code), name);
        }
        assert_eq!(error_name(9999), "UNKNOWN_ERROR_CODE");
    }

    #[test]
    fn kafka_errors_read_well() {
        let e = ClientError::kafka(error_code::UNKNOWN_TOPIC_OR_PARTITION, "topic \"x\"", None);
        assert_eq!(
            e.to_string(),
            "topic \"x\" does not exist (UNKNOWN_TOPIC_OR_PARTITION)"
        );
        assert_eq!(e.kafka_code(), Some(3));
        let e = ClientError::kafka(
            error_code::INVALID_CONFIG,
            "topic \"x\"",
            Some("Invalid value abc for configuration retention.ms"),
        );
        assert_eq!(
            e.to_string(),
            "topic \"x\" has an invalid configuration: Invalid value abc for configuration retention.ms (INVALID_CONFIG)"
        );
        assert!(check(0, "topic \"x\"", Some("ignored")).is_ok());
        // A broker message that repeats the description is not repeated.
        let e = ClientError::kafka(
            error_code::TOPIC_ALREADY_EXISTS,
            "topic \"x\"",
            Some("Topic 'x' already exists."),
        );
        assert_eq!(
            e.to_string(),
            "topic \"x\" already exists (TOPIC_ALREADY_EXISTS)"
        );
    }

    #[test]
    fn partition_errors_name_the_partition_and_say_if_retriable() {
        let e = ClientError::partition(error_code::NOT_ENOUGH_REPLICAS, "t", 3, None);
        assert_eq!(e.topic_partition(), Some(("t", 3)));
        assert_eq!(e.error_name(), Some("NOT_ENOUGH_REPLICAS"));
        assert!(e.is_retriable());
        assert!(e.to_string().contains("partition 3 of topic \"t\""), "{e}");
        let e = ClientError::partition(error_code::MESSAGE_TOO_LARGE, "t", 0, Some("big"));
        assert!(!e.is_retriable());
        assert_eq!(e.error_name(), Some("MESSAGE_TOO_LARGE"));
        assert!(!ClientError::partition(90, "t", 0, None).is_retriable()); // PRODUCER_FENCED
        assert!(!ClientError::Closed("producer").is_retriable());
        assert!(
            ClientError::MaxBlock {
                what: "x".into(),
                waited_ms: 1
            }
            .is_retriable()
        );
    }
}
