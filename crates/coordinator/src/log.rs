//! The port through which a coordinator keeps its state: append to and read from the internal
//! partitions this broker leads, wait for replication, and ask the controller for what only
//! it can give (an internal topic, a block of producer ids).
//!
//! The broker implements it over its replica manager and metadata log; unit tests implement it
//! in memory.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strom_metadata::MetadataImage;
use strom_protocol::records::BatchProducer;
use strom_storage::ControlType;

pub use strom_codec::ids::{BrokerId, LeaderEpoch, Offset, ProducerId};

/// A future the port returns (boxed, so the trait stays object safe).
pub type PortFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An internal topic a coordinator asks the controller to create when it first needs it.
#[derive(Debug, Clone)]
pub struct InternalTopic {
    pub name: &'static str,
    pub partitions: i32,
    pub replication_factor: i32,
    pub configs: BTreeMap<String, String>,
}

/// What a coordinator needs from the broker that hosts it. Errors are Kafka error codes, as
/// the coordinator hands them on to clients.
pub trait CoordinatorLog: Send + Sync {
    /// This broker's id.
    fn node_id(&self) -> BrokerId;

    /// The current metadata image.
    fn image(&self) -> Arc<MetadataImage>;

    /// Whether this broker hosts a replica of `topic`-`partition`.
    fn hosts(&self, topic: &str, partition: i32) -> bool;

    /// The leader epoch of `topic`-`partition` if this broker leads it, else `None`.
    fn leader_epoch(&self, topic: &str, partition: i32) -> Option<LeaderEpoch>;

    /// The partitions of `topic` this broker leads.
    fn led_partitions(&self, topic: &str) -> Vec<i32>;

    /// Whether the broker runs alone, without a quorum (every partition is local).
    fn single_node(&self) -> bool;

    /// Appends (key, value) records as one uncompressed batch with `producer`'s fields, as
    /// leader; returns the log end offset after the batch.
    fn append(
        &self,
        topic: &str,
        partition: i32,
        records: &[(Bytes, Option<Bytes>)],
        producer: BatchProducer,
    ) -> Result<Offset, i16>;

    /// Appends a transaction marker for `producer_id`, as leader.
    fn append_marker(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        kind: ControlType,
    ) -> Result<(), i16>;

    /// Waits until every in-sync replica of `topic`-`partition` has what is below `end`:
    /// NOT_LEADER_OR_FOLLOWER if the leadership moves meanwhile, REQUEST_TIMED_OUT after
    /// `timeout`.
    fn wait_replicated(
        &self,
        topic: &str,
        partition: i32,
        end: Offset,
        timeout: Duration,
    ) -> PortFuture<'_, Result<(), i16>>;

    /// Reads the whole partition from its log start, handing `f` chunks of whole batches.
    fn read_all(&self, topic: &str, partition: i32, f: &mut dyn FnMut(Bytes));

    /// Creates an internal topic unless it exists.
    fn ensure_topic(&self, topic: InternalTopic) -> PortFuture<'_, Result<(), i16>>;

    /// Takes a block of `size` producer ids from the metadata log; returns its first id.
    fn allocate_producer_ids(&self, size: i64) -> PortFuture<'_, Result<ProducerId, i16>>;
}
