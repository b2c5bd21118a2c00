//! Cluster metadata as a log of records.
//!
//! Every change to what the cluster is (a broker registers, a topic is created, a partition gets
//! a leader, a config changes, a topic is deleted) is a [`MetadataRecord`] appended to the
//! metadata log. Applying the records in order to an empty [`MetadataImage`] gives the current
//! image; brokers read only images. A single node keeps the log in a local file
//! ([`LocalMetadataLog`]); a replicated quorum implements the same [`MetadataLog`] trait.

mod image;
mod local_log;
pub mod quorum;
mod record;

pub use image::{
    BrokerInfo, MetadataDelta, MetadataImage, PartitionInfo, QuotaEntity, ScramCredentialInfo,
    TopicInfo,
};
pub use local_log::LocalMetadataLog;
pub use record::{AclBinding, ConfigResource, MetadataRecord};
pub use uuid::Uuid;

/// Errors of the metadata layer.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata log I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("metadata log is corrupt at byte {position}: {reason}")]
    Corrupt { position: u64, reason: String },
    #[error("cannot encode metadata record: {0}")]
    Encode(String),
    /// This quorum member is not the leader; the leader's id when known.
    #[error("not the metadata leader (leader: {0:?})")]
    NotLeader(Option<u64>),
    #[error("metadata quorum: {0}")]
    Quorum(String),
    /// The records no longer fit the metadata (another change came first); the caller may
    /// look again and retry.
    #[error("metadata changed meanwhile: {0}")]
    Conflict(String),
}

/// An ordered, durable log of metadata records with the image it leads to.
pub trait MetadataLog: Send + Sync {
    /// Appends records atomically (all or none), durably, and returns the image after them.
    fn append(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<std::sync::Arc<MetadataImage>, MetadataError>;
    /// The image after every record appended so far.
    fn image(&self) -> std::sync::Arc<MetadataImage>;
}
