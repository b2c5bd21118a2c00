//! What a handler knows of a request besides its body: its header, version, peer and
//! session, and the time it spent waiting on other work.

use std::net::SocketAddr;
use std::sync::Arc;

use strom_protocol::messages::RequestHeader;

/// What a handler knows of the request besides its body.
pub struct RequestContext {
    pub header: RequestHeader,
    pub api_version: i16,
    pub peer: SocketAddr,
    /// Time the handler spent waiting on other work, for the request latency metrics.
    pub remote: crate::metrics::RemoteTime,
    /// The connection's listener and authenticated principal.
    pub session: Arc<crate::security::Session>,
}

impl RequestContext {
    /// The client id of the request header ("" when there is none).
    pub fn client_id(&self) -> &str {
        self.header
            .client_id
            .as_ref()
            .map(|c| c.as_str())
            .unwrap_or("")
    }
}
