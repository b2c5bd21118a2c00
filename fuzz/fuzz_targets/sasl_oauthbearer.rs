//! OAUTHBEARER server side: an arbitrary client message (RFC 7628) whose bearer token is
//! checked as an unsecured token (mode byte even) or against a JWKS holding one P-256 key
//! (mode byte odd), as a SASL_* listener receives it before authentication.
//!
//! Input: mode byte | client message (the rest).
//!
//! Parsing and validation must succeed or fail without panicking; an unsecured token is only
//! accepted with a subject, and nothing is accepted against the JWKS without the key's
//! signature (which the fuzzer cannot make).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use strom_broker::BrokerConfig;
use strom_broker::security::oauth::{OAuthConfig, parse_client_message};

/// The public key of the ES256 example of RFC 7515 (appendix A.3).
const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;

fn configs() -> &'static (OAuthConfig, OAuthConfig, tempfile::TempDir) {
    static CONFIGS: OnceLock<(OAuthConfig, OAuthConfig, tempfile::TempDir)> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let unsecured = OAuthConfig::from_broker(&BrokerConfig::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, JWKS).unwrap();
        let mut c = BrokerConfig::default();
        c.set("sasl.oauthbearer.jwks.endpoint.url", path.to_str().unwrap())
            .unwrap();
        let signed = OAuthConfig::from_broker(&c).unwrap();
        (unsecured, signed, dir)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, message)) = data.split_first() else { return };
    let Ok((_authzid, token)) = parse_client_message(message) else { return };
    let (unsecured, signed, _) = configs();
    // A fixed clock: 2026-01-01.
    let now_ms = 1_767_225_600_000;
    if mode & 1 == 0 {
        if let Ok(valid) = unsecured.validate(&token, now_ms) {
            assert!(!valid.subject.trim().is_empty());
            assert!(valid.expires_at_ms.saturating_add(30_000) > now_ms);
        }
    } else {
        assert!(
            signed.validate(&token, now_ms).is_err(),
            "a token was accepted without the key's signature: {token:?}"
        );
    }
});
