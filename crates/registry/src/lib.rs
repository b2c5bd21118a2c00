//! strom's Schema Registry: Avro, Protobuf and JSON Schema subjects with compatibility rules,
//! kept in the compacted `_schemas` topic and served over a REST API that Confluent's
//! serializers speak.
//!
//! - [`format`]: parsing, canonical forms and reader/writer compatibility per format (pure);
//! - [`compat`]: the compatibility levels;
//! - [`log`]: the log the state lives in (the `_schemas` topic, or memory for tests);
//! - [`state`]: the state every instance derives from the log, and the record layout;
//! - [`registry`]: the operations; [`api`]: the REST API over them.
//!
//! The registry reaches the broker only through the Kafka protocol (strom-client), so it
//! runs beside any broker, in the broker's process or not.

pub mod api;
pub mod compat;
pub mod error;
pub mod format;
pub mod log;
pub mod registry;
pub mod state;

use std::sync::Arc;

pub use compat::Level;
pub use format::{Dependency, Parsed, SchemaType};
pub use registry::Registry;

/// Parses `schema.registry.listener`: `host:port` (an `http://` prefix is allowed); empty
/// means off.
pub fn parse_listener(value: &str) -> Result<Option<(String, u16)>, String> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let v = v.strip_prefix("http://").unwrap_or(v);
    let (host, port) = v
        .rsplit_once(':')
        .ok_or_else(|| format!("schema.registry.listener {value:?} is not host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("schema.registry.listener {value:?} has no valid port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    Ok(Some((host.to_string(), port)))
}

/// Serves the registry on `listener` until `shutdown` is set: reads the `_schemas` topic
/// through `client` (from the first request on; the topic is created by the first write)
/// and answers HTTP requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    client: Arc<strom_client::Client>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let log = log::KafkaLog::new(client, log::SCHEMAS_TOPIC);
    let registry = Registry::start_lazily(Arc::new(log), shutdown.clone());
    let app = api::router(registry);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
        .map_err(|e| e.to_string())
}
