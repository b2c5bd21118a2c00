//! SASL on SASL_PLAINTEXT and SASL_SSL listeners: SaslHandshake picks a mechanism, then
//! SaslAuthenticate carries its messages. PLAIN checks users from the configuration; SCRAM
//! checks credentials stored as metadata records; OAUTHBEARER checks a JSON Web Token
//! (`oauth.rs`).

use std::collections::HashMap;

use strom_metadata::MetadataImage;
use strom_protocol::error_code as ec;
use subtle::ConstantTimeEq;

use super::Session;
use super::scram::{Credential, ScramExchange, ScramMechanism};
use crate::config::BrokerConfig;

/// SASL settings of the broker.
pub struct SaslConfig {
    /// Enabled mechanisms, in configuration order.
    pub mechanisms: Vec<String>,
    plain_users: HashMap<String, String>,
    /// OAUTHBEARER settings, when the mechanism is enabled.
    oauth: Option<super::oauth::OAuthConfig>,
    /// Key for the made-up salts of users that do not exist.
    fake_salt_key: [u8; 32],
}

/// Where a connection's SASL exchange is.
#[derive(Debug, Default)]
pub(crate) enum SaslStage {
    /// Waiting for SaslHandshake.
    #[default]
    Start,
    /// A mechanism was chosen; waiting for its first SaslAuthenticate.
    Chosen(String),
    /// SCRAM: the server-first message was sent; waiting for the client-final one.
    Scram(Box<ScramExchange>),
    /// OAUTHBEARER: the token was refused and the error challenge sent; the client's next
    /// message (0x01) ends the exchange with the failure.
    OAuthRefused(String),
}

/// The message of every failed authentication: it never says which part was wrong.
pub fn failure_message(mechanism: &str) -> String {
    format!(
        "Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"
    )
}

impl SaslConfig {
    pub fn from_broker(config: &BrokerConfig) -> Result<SaslConfig, String> {
        let mechanisms: Vec<String> = config
            .get("sasl.enabled.mechanisms")
            .split(',')
            .map(|m| m.trim().to_ascii_uppercase())
            .filter(|m| !m.is_empty())
            .collect();
        let oauth = if mechanisms.iter().any(|m| m == "OAUTHBEARER") {
            Some(super::oauth::OAuthConfig::from_broker(config)?)
        } else {
            None
        };
        let mut plain_users = HashMap::new();
        for item in config.get("sasl.plain.users").split(',') {
            add_user(&mut plain_users, item, "sasl.plain.users")?;
        }
        let file = config.get("sasl.plain.users.file").trim();
        if !file.is_empty() {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("sasl.plain.users.file {file}: {e}"))?;
            for line in text.lines() {
                if !line.trim_start().starts_with('#') {
                    add_user(&mut plain_users, line, "sasl.plain.users.file")?;
                }
            }
        }
        let mut fake_salt_key = [0u8; 32];
        getrandom::fill(&mut fake_salt_key).map_err(|e| format!("random: {e}"))?;
        Ok(SaslConfig {
            mechanisms,
            plain_users,
            oauth,
            fake_salt_key,
        })
    }

    fn enabled(&self, mechanism: &str) -> bool {
        self.mechanisms.iter().any(|m| m == mechanism)
    }

    /// Checks a PLAIN password in constant time for users that exist.
    fn plain_ok(&self, user: &str, password: &str) -> bool {
        match self.plain_users.get(user) {
            Some(expected) => bool::from(expected.as_bytes().ct_eq(password.as_bytes())),
            None => false,
        }
    }
}

fn add_user(users: &mut HashMap<String, String>, item: &str, source: &str) -> Result<(), String> {
    let item = item.trim();
    if item.is_empty() {
        return Ok(());
    }
    let (user, password) = item.split_once(':').ok_or_else(|| {
        format!(
            "{source}: entry {:?} is not name:password",
            item.split(':').next().unwrap_or("")
        )
    })?;
    if user.is_empty() {
        return Err(format!("{source}: empty user name"));
    }
    users.insert(user.to_string(), password.to_string());
    Ok(())
}

impl Session {
    /// SaslHandshake: the error code (NONE, UNSUPPORTED_SASL_MECHANISM or ILLEGAL_SASL_STATE).
    pub fn sasl_handshake(&self, config: &SaslConfig, mechanism: &str) -> i16 {
        if !self.listener.protocol.uses_sasl() {
            return ec::ILLEGAL_SASL_STATE;
        }
        let mut state = self.state();
        if matches!(state.sasl, SaslStage::Scram(_) | SaslStage::OAuthRefused(_)) {
            return ec::ILLEGAL_SASL_STATE;
        }
        if !config.enabled(mechanism) {
            return ec::UNSUPPORTED_SASL_MECHANISM;
        }
        state.sasl = SaslStage::Chosen(mechanism.to_string());
        ec::NONE
    }

    /// SaslAuthenticate: the bytes to send back and the session's lifetime in ms (0: no
    /// limit), or an error code and message. A failure marks the session failed, so the
    /// connection answers after a delay and closes.
    pub fn sasl_authenticate(
        &self,
        config: &SaslConfig,
        image: &MetadataImage,
        auth_bytes: &[u8],
        reauth_ms: i64,
    ) -> Result<(Vec<u8>, i64), (i16, String)> {
        let now_ms = crate::now_ms();
        // A token ends the session when it expires, if sooner than connections.max.reauth.ms.
        let mut token_expiry_ms: Option<i64> = None;
        let mut state = self.state();
        let stage = std::mem::take(&mut state.sasl);
        let (result, mechanism) = match stage {
            SaslStage::Start => {
                state.failed = true;
                return Err((
                    ec::ILLEGAL_SASL_STATE,
                    "SaslAuthenticate before SaslHandshake".into(),
                ));
            }
            SaslStage::Chosen(m) if m == "PLAIN" => {
                let result = plain(config, auth_bytes).map(|user| (user, Vec::new()));
                (result, m)
            }
            SaslStage::Chosen(m) if m == "OAUTHBEARER" => {
                let checked = config
                    .oauth
                    .as_ref()
                    .ok_or_else(|| "OAUTHBEARER is not configured".to_string())
                    .and_then(|o| {
                        let (authzid, token) = super::oauth::parse_client_message(auth_bytes)?;
                        let valid = o.validate(&token, now_ms)?;
                        if authzid.as_ref().is_some_and(|a| *a != valid.subject) {
                            return Err("authorization id differs from the token's subject".into());
                        }
                        Ok(valid)
                    });
                match checked {
                    Ok(valid) => {
                        token_expiry_ms = Some(valid.expires_at_ms);
                        (Ok((valid.subject, Vec::new())), m)
                    }
                    Err(reason) => {
                        // RFC 7628: an error challenge first; the failure follows the client's
                        // answer to it.
                        tracing::info!(peer = %self.peer, listener = %self.listener.name, mechanism = %m, %reason, "SASL authentication failed");
                        state.sasl = SaslStage::OAuthRefused(reason);
                        return Ok((super::oauth::INVALID_TOKEN_CHALLENGE.to_vec(), 0));
                    }
                }
            }
            SaslStage::OAuthRefused(reason) => {
                state.failed = true;
                tracing::debug!(peer = %self.peer, %reason, "OAUTHBEARER exchange ends in failure");
                return Err((
                    ec::SASL_AUTHENTICATION_FAILED,
                    failure_message("OAUTHBEARER"),
                ));
            }
            SaslStage::Chosen(m) => {
                let Some(mech) = ScramMechanism::from_name(&m) else {
                    state.failed = true;
                    return Err((ec::ILLEGAL_SASL_STATE, format!("mechanism {m}")));
                };
                let started = ScramExchange::start(
                    mech,
                    auth_bytes,
                    |user| {
                        image
                            .scram_credentials
                            .get(&(user.to_string(), mech.code()))
                            .map(|c| Credential {
                                salt: c.salt.clone(),
                                stored_key: c.stored_key.clone(),
                                server_key: c.server_key.clone(),
                                iterations: c.iterations,
                            })
                    },
                    |user| {
                        let mut salt = mech.hmac(&config.fake_salt_key, user.as_bytes());
                        salt.truncate(16);
                        salt
                    },
                );
                match started {
                    Ok((exchange, reply)) => {
                        state.sasl = SaslStage::Scram(Box::new(exchange));
                        return Ok((reply, 0));
                    }
                    Err(e) => (Err(e), m),
                }
            }
            SaslStage::Scram(exchange) => {
                let user = exchange.user().to_string();
                let m = exchange_mechanism_name(&exchange);
                (exchange.finish(auth_bytes).map(|reply| (user, reply)), m)
            }
        };
        match result {
            Ok((user, _)) if state.authenticated && state.principal != format!("User:{user}") => {
                tracing::info!(peer = %self.peer, %user, previous = %state.principal, "re-authentication as another principal refused");
                state.failed = true;
                Err((
                    ec::SASL_AUTHENTICATION_FAILED,
                    "re-authentication must keep the principal".into(),
                ))
            }
            Ok((user, reply)) => {
                tracing::debug!(peer = %self.peer, %user, %mechanism, "SASL authentication succeeded");
                state.principal = format!("User:{user}");
                state.authenticated = true;
                let lifetime_ms = match token_expiry_ms {
                    Some(exp) if reauth_ms > 0 => reauth_ms.min((exp - now_ms).max(1)),
                    _ => reauth_ms.max(0),
                };
                state.expires_at = (lifetime_ms > 0).then(|| {
                    std::time::Instant::now() + std::time::Duration::from_millis(lifetime_ms as u64)
                });
                Ok((reply, lifetime_ms))
            }
            Err(reason) => {
                tracing::info!(peer = %self.peer, listener = %self.listener.name, %mechanism, %reason, "SASL authentication failed");
                state.failed = true;
                Err((ec::SASL_AUTHENTICATION_FAILED, failure_message(&mechanism)))
            }
        }
    }
}

fn exchange_mechanism_name(exchange: &ScramExchange) -> String {
    exchange.mechanism().name().to_string()
}

/// PLAIN (RFC 4616): `authzid NUL authcid NUL password`; the user name on success.
fn plain(config: &SaslConfig, bytes: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "PLAIN message is not UTF-8")?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("PLAIN message is not authzid NUL user NUL password".into());
    };
    if !authzid.is_empty() && authzid != user {
        return Err("PLAIN authorization id differs from the user".into());
    }
    if config.plain_ok(user, password) {
        Ok(user.to_string())
    } else {
        Err(format!("wrong password or unknown user {user:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_users_from_config() {
        let mut c = BrokerConfig::default();
        c.set("sasl.plain.users", "alice:a:b:c, bob:pw").unwrap();
        let s = SaslConfig::from_broker(&c).unwrap();
        assert_eq!(plain(&s, b"\0alice\0a:b:c").unwrap(), "alice");
        assert_eq!(plain(&s, b"bob\0bob\0pw").unwrap(), "bob");
        assert!(plain(&s, b"\0bob\0nope").is_err());
        assert!(plain(&s, b"\0carol\0pw").is_err());
        assert!(plain(&s, b"x\0bob\0pw").is_err());
        assert!(plain(&s, b"\0bob").is_err());
        c.set("sasl.plain.users", "nocolon").unwrap();
        assert!(SaslConfig::from_broker(&c).is_err());
    }
}
