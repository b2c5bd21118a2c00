//! SCRAM-SHA-256/512 server side: an arbitrary client-first message, then an arbitrary
//! client-final message, as a SASL_* listener receives them before authentication.
//!
//! Input: mode byte (even = SHA-256, odd = SHA-512) | client-first length (u8) | client-first |
//! client-final (the rest).
//!
//! Both steps must succeed or fail without panicking; a proof can only be accepted for the
//! known user.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use strom_broker::security::scram::{Credential, ScramExchange, ScramMechanism};
use strom_fuzz::{take_be, take_bytes};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let mechanism = if mode & 1 == 0 {
        ScramMechanism::Sha256
    } else {
        ScramMechanism::Sha512
    };
    let first_len = take_be(&mut rest, 1) as usize;
    let first = take_bytes(&mut rest, first_len);
    let salt = b"fuzz-salt".to_vec();
    // The key derivation is slow by design: once per mechanism, not per input.
    static KEYS: [OnceLock<(Vec<u8>, Vec<u8>)>; 2] = [OnceLock::new(), OnceLock::new()];
    let (stored_key, server_key) = KEYS[usize::from(mode & 1)]
        .get_or_init(|| mechanism.keys(&mechanism.salted_password(b"secret", b"fuzz-salt", 4096)))
        .clone();
    let lookup = |user: &str| {
        (user == "alice").then(|| Credential {
            salt: salt.clone(),
            stored_key: stored_key.clone(),
            server_key: server_key.clone(),
            iterations: 4096,
        })
    };
    let Ok((exchange, _server_first)) =
        ScramExchange::start(mechanism, first, lookup, |_| b"made-up".to_vec())
    else {
        return;
    };
    let user = exchange.user().to_string();
    if exchange.finish(rest).is_ok() {
        assert_eq!(user, "alice", "a proof was accepted for an unknown user");
    }
});
