//! strom-client: a native async Rust client for the Kafka protocol, for strom and any
//! Kafka-compatible cluster. Its three APIs each have a page with an example:
//!
//! - [`producer`]: Kafka's producer (batching, compression, idempotence, retries,
//!   transactions), configured by Kafka's property names.
//! - [`consumer`]: reads partitions assigned by hand or by a consumer group (classic or KIP-848
//!   protocol), with pipelined fetches and committed offsets.
//! - [`admin`]: Kafka's admin client: topics, configs, groups and their offsets, partition
//!   offsets and records, ACLs, SCRAM users, quotas, reassignments, elections, log
//!   directories, transactions and the cluster. The `strom` CLI is built on it.
//!
//! Underneath:
//!
//! - [`Connection`]: one broker connection with framing, correlation ids, timeouts and API
//!   versions negotiated through ApiVersions.
//! - [`PipelinedConnection`]: several requests in flight on one connection, responses matched
//!   by correlation id (for throughput: the bench tool).
//! - [`Client`]: metadata, produce, fetch and list offsets, routed to partition leaders; the
//!   connection pool the admin client sends through.
//! - [`ClientError`]: i/o, protocol and timeout failures, and Kafka error codes by name, with
//!   the partition or resource they concern.

pub mod admin;
pub mod auth;
pub mod client;
pub mod config;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod pipeline;
pub mod producer;
#[cfg(test)]
mod test_peer;

pub use admin::cluster::{ClusterDescription, QuorumDescription, QuorumReplica};
pub(crate) use admin::groups;
pub use admin::groups::{
    CommittedOffsets, GroupDescription, GroupListing, GroupMember, decode_assignment,
};
pub use admin::replicas::{PartitionOutcome, Reassignment};
pub use admin::security::{Acl, AclFilterSpec, QuotaEntity, ScramUpsert};
pub use admin::transactions::{ActiveProducer, TransactionDescription, TransactionListing};
pub use admin::{Admin, AdminConfig};
pub use auth::{ClientSecurity, ClientStream, SaslLogin};
pub use client::{
    BrokerMetadata, Client, ClusterMetadata, ConfigEntry, FetchedRecords, PartitionMetadata,
    TopicId, TopicMetadata, config_source, offset_spec, versions,
};
pub use config::{CommonConfig, Properties};
pub use connection::{BrokerApiRange, Connection, ConnectionConfig, pick_version};
pub use error::{ClientError, error_description, error_name};
pub use pipeline::PipelinedConnection;
pub use producer::{Delivered, DeliveryFuture, Producer, ProducerConfig, Record};
pub use strom_protocol::compression::Codec;
pub use strom_protocol::records::{ConsumedRecord, ProducerRecord};
