//! The coordinators of strom: consumer groups with their committed offsets
//! ([`group::GroupCoordinator`]) and producer ids with transactions
//! ([`txn::TransactionCoordinator`]).
//!
//! Each coordinator is a state machine over its own internal log partitions
//! (`__consumer_offsets`, `__transaction_state`). It reads and writes them only through the
//! [`CoordinatorLog`] port, which the broker's replica manager implements. Nothing here knows
//! the broker, its connections or its handlers: handlers call into a coordinator and map its
//! answers to Kafka responses.

pub mod group;
pub mod log;
pub mod txn;

pub use log::{BrokerId, CoordinatorLog, InternalTopic, LeaderEpoch, Offset, ProducerId};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
