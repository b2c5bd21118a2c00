//! The strom broker: listeners and connections, the request registry, one handler module per
//! API, and the replica manager that owns the partition logs.
//!
//! Data flow: a connection task reads frames, decodes them, and hands each request to the
//! registry, which dispatches to the API's handler; handlers read the metadata image and call
//! the replica manager; responses leave each connection in request order.

pub mod admin;
pub mod broker;
pub mod cluster;
pub mod config;
mod connection;
pub mod coordinators;
pub mod delayed;
mod handlers;
mod log_cleaner;
pub mod metrics;
mod metrics_source;
pub mod quota;
pub mod registry;
mod replica_fetcher;
pub mod replica_manager;
pub mod replication;
pub mod request;
pub mod security;
mod send;
mod startup;
mod topics;

pub use broker::{Broker, BrokerError};
pub use config::{BrokerConfig, ConfigError};
pub use startup::{BoundListener, listener_name, parse_listener};
pub use strom_coordinator::{group, txn};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
