use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The kind of resource a config record applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConfigResource {
    Topic(String),
    Broker(i32),
}

/// One change to cluster metadata. The log is the sequence of these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// A broker joined (or re-registered with new endpoints).
    RegisterBroker {
        broker_id: i32,
        host: String,
        port: u16,
        rack: Option<String>,
    },
    /// A broker stopped heartbeating (or shut down): it leads nothing and is in no ISR until
    /// it registers again.
    FenceBroker { broker_id: i32 },
    /// A topic was created.
    Topic { name: String, topic_id: Uuid },
    /// A partition's placement and leadership (new or changed).
    Partition {
        topic_id: Uuid,
        partition: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        /// During a reassignment: replicas being added (in `replicas`, catching up) and
        /// being removed (in `replicas` until the new ones are in sync).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        adding: Vec<i32>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        removing: Vec<i32>,
    },
    /// A config was set (`value: Some`) or removed back to its default (`value: None`).
    Config {
        resource: ConfigResource,
        name: String,
        value: Option<String>,
    },
    /// A topic and all its partitions and configs were deleted.
    RemoveTopic { topic_id: Uuid },
    /// Producer ids `[first_producer_id, first_producer_id + size)` were handed to
    /// `broker_id`; the next block starts after them.
    ProducerIds {
        broker_id: i32,
        first_producer_id: i64,
        size: i64,
    },
    /// SCRAM credentials of a user for one mechanism (1 = SCRAM-SHA-256, 2 = SCRAM-SHA-512),
    /// created or replaced. The password itself is never stored.
    ScramCredential {
        user: String,
        mechanism: i8,
        salt: Vec<u8>,
        stored_key: Vec<u8>,
        server_key: Vec<u8>,
        iterations: i32,
    },
    /// The SCRAM credentials of a user for one mechanism were deleted.
    RemoveScramCredential { user: String, mechanism: i8 },
    /// An access control entry was added.
    Acl(AclBinding),
    /// An access control entry was removed.
    RemoveAcl(AclBinding),
    /// A client quota of an entity ((entity type, name or None for the default) pairs sorted
    /// by type: `client-id`, `user`) was set (`value: Some`) or removed.
    ClientQuota {
        entity: Vec<(String, Option<String>)>,
        key: String,
        value: Option<f64>,
    },
}

/// One access control entry bound to a resource pattern, with Kafka's numeric codes
/// (resource type, pattern type, operation, permission type).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission_type: i8,
}
