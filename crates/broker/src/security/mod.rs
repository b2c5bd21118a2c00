//! Listeners, TLS, SASL authentication and the session state of one connection.

pub mod acl;
pub mod audit;
pub mod limits;
pub mod listener;
pub mod oauth;
pub mod principal;
pub mod sasl;
pub mod scram;
pub mod tls;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub use listener::{ListenerSpec, SecurityProtocol};

/// The principal of a connection that has not authenticated as anyone.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// What one connection is: the listener it came through, its peer, and who it authenticated as.
pub struct Session {
    pub listener: Arc<ListenerSpec>,
    pub peer: SocketAddr,
    pub(crate) auth: Mutex<AuthState>,
}

/// Authentication state of a connection.
pub(crate) struct AuthState {
    pub principal: String,
    /// Requests other than ApiVersions and the SASL ones are served only when true.
    pub authenticated: bool,
    /// A failed authentication: the connection answers, waits and closes.
    pub failed: bool,
    pub sasl: sasl::SaslStage,
    /// When the SASL session ends unless the client re-authenticates
    /// (`connections.max.reauth.ms`).
    pub expires_at: Option<std::time::Instant>,
}

impl Session {
    /// A new session; `tls_principal` is the principal from the client certificate, if any.
    pub fn new(
        listener: Arc<ListenerSpec>,
        peer: SocketAddr,
        tls_principal: Option<String>,
    ) -> Session {
        let authenticated = !listener.protocol.uses_sasl();
        Session {
            listener,
            peer,
            auth: Mutex::new(AuthState {
                principal: tls_principal.unwrap_or_else(|| ANONYMOUS.to_string()),
                authenticated,
                failed: false,
                sasl: sasl::SaslStage::Start,
                expires_at: None,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, AuthState> {
        self.auth.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `User:name` (or `User:<distinguished name>` for a TLS client certificate).
    pub fn principal(&self) -> String {
        self.state().principal.clone()
    }

    pub fn authenticated(&self) -> bool {
        self.state().authenticated
    }

    pub fn auth_failed(&self) -> bool {
        self.state().failed
    }

    /// Whether the SASL session has outlived `connections.max.reauth.ms` without
    /// re-authenticating.
    pub fn expired(&self) -> bool {
        self.state()
            .expires_at
            .is_some_and(|t| std::time::Instant::now() >= t)
    }
}
