//! SASL OAUTHBEARER (RFC 7628): the client sends a bearer token, a JSON Web Token whose
//! subject becomes the principal `User:<sub>`.
//!
//! Without `sasl.oauthbearer.jwks.endpoint.url`, tokens are unsecured JWS (`alg` "none", no
//! signature), as Kafka's default server handler accepts: for development only. With it, the
//! token must be signed (RS256/384/512, PS256/384/512, ES256/384) by a key of that JSON Web Key
//! Set, a local file (`file:///path` or a path) read again when it changes, and its `iss` and
//! `aud` must match `sasl.oauthbearer.expected.issuer` / `.expected.audience` when those are set.
//! Either way the token needs the subject claim (`sasl.oauthbearer.sub.claim.name`) and an
//! `exp` in the future; `nbf` and `iat` must not be in the future, all within
//! `sasl.oauthbearer.clock.skew.seconds`.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature;
use serde_json::Value;

use crate::config::BrokerConfig;

/// What the server answers an unacceptable token with (RFC 7628 section 3.2.2); the client
/// then sends a single 0x01 and the exchange fails.
pub const INVALID_TOKEN_CHALLENGE: &[u8] = br#"{"status":"invalid_token"}"#;

/// OAUTHBEARER settings.
pub struct OAuthConfig {
    jwks: Option<Jwks>,
    expected_audience: Vec<String>,
    expected_issuer: Option<String>,
    sub_claim: String,
    clock_skew_s: f64,
}

/// A valid token: who it names and until when (ms since the epoch).
#[derive(Debug, Clone, PartialEq)]
pub struct ValidToken {
    pub subject: String,
    pub expires_at_ms: i64,
}

/// A JSON Web Key Set kept from a file.
struct Jwks {
    path: PathBuf,
    state: Mutex<JwksState>,
}

struct JwksState {
    keys: Vec<Jwk>,
    modified: Option<SystemTime>,
    checked: Instant,
}

#[derive(Debug, Clone)]
struct Jwk {
    kid: Option<String>,
    key: PublicKey,
}

#[derive(Debug, Clone)]
enum PublicKey {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed point (0x04 || x || y) on P-256 or P-384.
    Ec {
        curve: Curve,
        point: Vec<u8>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Curve {
    P256,
    P384,
}

fn b64(s: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| format!("bad base64url: {e}"))
}

/// Big-endian integer bytes without leading zeros.
fn unsigned(mut b: Vec<u8>) -> Vec<u8> {
    let zeros = b.iter().take_while(|x| **x == 0).count();
    b.drain(..zeros.min(b.len().saturating_sub(1)));
    b
}

/// The keys of a JWKS document; keys of other types, curves or uses are skipped.
fn parse_jwks(text: &str) -> Result<Vec<Jwk>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("no \"keys\" array")?;
    let mut out = Vec::new();
    for k in keys {
        let field = |name: &str| k.get(name).and_then(Value::as_str);
        if field("use").is_some_and(|u| u != "sig") {
            continue;
        }
        let key = match field("kty") {
            Some("RSA") => match (field("n"), field("e")) {
                (Some(n), Some(e)) => PublicKey::Rsa {
                    n: unsigned(b64(n)?),
                    e: unsigned(b64(e)?),
                },
                _ => return Err("RSA key without n or e".into()),
            },
            Some("EC") => {
                let (curve, len) = match field("crv") {
                    Some("P-256") => (Curve::P256, 32),
                    Some("P-384") => (Curve::P384, 48),
                    _ => continue,
                };
                let (Some(x), Some(y)) = (field("x"), field("y")) else {
                    return Err("EC key without x or y".into());
                };
                let (x, y) = (b64(x)?, b64(y)?);
                if x.len() != len || y.len() != len {
                    return Err("EC key coordinates of the wrong length".into());
                }
                let mut point = vec![4u8];
                point.extend(x);
                point.extend(y);
                PublicKey::Ec { curve, point }
            }
            _ => continue,
        };
        out.push(Jwk {
            kid: field("kid").map(str::to_string),
            key,
        });
    }
    Ok(out)
}

impl Jwks {
    fn load(path: PathBuf) -> Result<Jwks, String> {
        let (keys, modified) = Jwks::read(&path)?;
        Ok(Jwks {
            path,
            state: Mutex::new(JwksState {
                keys,
                modified,
                checked: Instant::now(),
            }),
        })
    }

    fn read(path: &PathBuf) -> Result<(Vec<Jwk>, Option<SystemTime>), String> {
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("JWKS file {}: {e}", path.display()))?;
        let keys = parse_jwks(&text).map_err(|e| format!("JWKS file {}: {e}", path.display()))?;
        Ok((keys, modified))
    }

    /// The keys, read again when the file changed (checked at most once a second; a file that
    /// does not load keeps the previous keys).
    fn keys(&self) -> Vec<Jwk> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.checked.elapsed() >= Duration::from_secs(1) {
            state.checked = Instant::now();
            let modified = std::fs::metadata(&self.path)
                .and_then(|m| m.modified())
                .ok();
            if modified != state.modified {
                match Jwks::read(&self.path) {
                    Ok((keys, modified)) => {
                        tracing::info!(path = %self.path.display(), keys = keys.len(), "JWKS reloaded");
                        state.keys = keys;
                        state.modified = modified;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "JWKS not reloaded; keeping the previous keys")
                    }
                }
            }
        }
        state.keys.clone()
    }
}

/// Verifies a JWS signature over `signed` with `key` for the algorithm `alg`.
fn verify(alg: &str, key: &PublicKey, signed: &[u8], sig: &[u8]) -> bool {
    match key {
        PublicKey::Rsa { n, e } => {
            let params: &signature::RsaParameters = match alg {
                "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
                "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
                "PS384" => &signature::RSA_PSS_2048_8192_SHA384,
                "PS512" => &signature::RSA_PSS_2048_8192_SHA512,
                _ => return false,
            };
            signature::RsaPublicKeyComponents { n, e }
                .verify(params, signed, sig)
                .is_ok()
        }
        PublicKey::Ec { curve, point } => {
            let params = match (alg, curve) {
                ("ES256", Curve::P256) => &signature::ECDSA_P256_SHA256_FIXED,
                ("ES384", Curve::P384) => &signature::ECDSA_P384_SHA384_FIXED,
                _ => return false,
            };
            signature::UnparsedPublicKey::new(params, point)
                .verify(signed, sig)
                .is_ok()
        }
    }
}

impl OAuthConfig {
    pub fn from_broker(config: &BrokerConfig) -> Result<OAuthConfig, String> {
        let url = config
            .get("sasl.oauthbearer.jwks.endpoint.url")
            .trim()
            .to_string();
        let jwks = if url.is_empty() {
            None
        } else if let Some(path) = url.strip_prefix("file://") {
            Some(Jwks::load(PathBuf::from(path))?)
        } else if url.contains("://") {
            return Err(format!(
                "sasl.oauthbearer.jwks.endpoint.url {url}: only local files (file:///path) are supported"
            ));
        } else {
            Some(Jwks::load(PathBuf::from(url))?)
        };
        let issuer = config
            .get("sasl.oauthbearer.expected.issuer")
            .trim()
            .to_string();
        Ok(OAuthConfig {
            jwks,
            expected_audience: config
                .get("sasl.oauthbearer.expected.audience")
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            expected_issuer: (!issuer.is_empty()).then_some(issuer),
            sub_claim: config
                .get("sasl.oauthbearer.sub.claim.name")
                .trim()
                .to_string(),
            clock_skew_s: config.settings().sasl_oauthbearer_clock_skew_seconds.max(0) as f64,
        })
    }

    /// Checks a token at `now_ms`; the reason it is refused otherwise (for the log only).
    pub fn validate(&self, token: &str, now_ms: i64) -> Result<ValidToken, String> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("the token is not a compact JWS (three dot-separated parts)".into());
        };
        let header: Value = serde_json::from_slice(&b64(h)?)
            .map_err(|e| format!("token header is not JSON: {e}"))?;
        let claims: Value = serde_json::from_slice(&b64(p)?)
            .map_err(|e| format!("token claims are not JSON: {e}"))?;
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
        match &self.jwks {
            None => {
                if alg != "none" || !s.is_empty() {
                    return Err(format!(
                        "alg {alg:?}: without sasl.oauthbearer.jwks.endpoint.url only unsecured tokens (alg none) are accepted"
                    ));
                }
            }
            Some(jwks) => {
                if alg == "none" {
                    return Err("unsecured token (alg none) refused: tokens must be signed".into());
                }
                let sig = b64(s)?;
                let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
                let kid = header.get("kid").and_then(Value::as_str);
                let keys = jwks.keys();
                let ok = keys
                    .iter()
                    .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
                    .any(|k| verify(alg, &k.key, signed, &sig));
                if !ok {
                    return Err(format!(
                        "no key of the JWKS verifies the signature (alg {alg}, kid {kid:?})"
                    ));
                }
            }
        }
        self.check_claims(&claims, now_ms)
    }

    fn check_claims(&self, claims: &Value, now_ms: i64) -> Result<ValidToken, String> {
        let now = now_ms as f64 / 1000.0;
        let skew = self.clock_skew_s;
        let time = |name: &str| claims.get(name).and_then(Value::as_f64);
        let exp = time("exp").ok_or("no exp claim")?;
        if exp + skew <= now {
            return Err(format!("token expired at {exp}"));
        }
        if let Some(nbf) = time("nbf")
            && nbf - skew > now
        {
            return Err(format!("token not valid before {nbf}"));
        }
        if let Some(iat) = time("iat")
            && iat - skew > now
        {
            return Err(format!("token issued in the future ({iat})"));
        }
        if let Some(want) = &self.expected_issuer
            && claims.get("iss").and_then(Value::as_str) != Some(want.as_str())
        {
            return Err(format!("issuer is not {want}"));
        }
        if !self.expected_audience.is_empty() {
            let aud: Vec<&str> = match claims.get("aud") {
                Some(Value::String(a)) => vec![a.as_str()],
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !aud
                .iter()
                .any(|a| self.expected_audience.iter().any(|e| e == a))
            {
                return Err(format!("audience {aud:?} is not expected"));
            }
        }
        let subject = claims
            .get(&self.sub_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| format!("no {} claim", self.sub_claim))?;
        Ok(ValidToken {
            subject: subject.to_string(),
            expires_at_ms: (exp * 1000.0) as i64,
        })
    }
}

/// The client's first message (RFC 7628): `n,[a=authzid],` 0x01 `auth=Bearer <token>` 0x01
/// (other key=value pairs, such as SASL extensions, are ignored) 0x01. Returns the
/// authorization id, if any, and the token.
pub fn parse_client_message(bytes: &[u8]) -> Result<(Option<String>, String), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "OAUTHBEARER message is not UTF-8")?;
    let mut parts = text.split('\x01');
    let gs2 = parts.next().unwrap_or("");
    let rest = gs2
        .strip_prefix("n,")
        .or_else(|| gs2.strip_prefix("y,"))
        .ok_or("OAUTHBEARER message does not start with a GS2 header")?;
    let authzid = match rest.strip_suffix(',') {
        Some("") => None,
        Some(a) => Some(
            a.strip_prefix("a=")
                .ok_or("bad authorization id in the GS2 header")?
                .replace("=2C", ",")
                .replace("=3D", "="),
        ),
        None => return Err("bad GS2 header".into()),
    };
    let mut token = None;
    for kv in parts {
        if kv.is_empty() {
            continue;
        }
        if let Some(v) = kv.strip_prefix("auth=") {
            let (scheme, t) = v
                .split_once(' ')
                .ok_or("auth value is not 'Bearer <token>'")?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(format!("auth scheme {scheme} is not Bearer"));
            }
            token = Some(t.trim().to_string());
        }
    }
    let token = token.ok_or("no auth=Bearer in the OAUTHBEARER message")?;
    Ok((authzid, token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    fn enc(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    fn config(
        jwks: Option<&str>,
        audience: &str,
        issuer: &str,
    ) -> (OAuthConfig, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = BrokerConfig::default();
        if let Some(doc) = jwks {
            let path = dir.path().join("jwks.json");
            std::fs::write(&path, doc).unwrap();
            c.set(
                "sasl.oauthbearer.jwks.endpoint.url",
                &format!("file://{}", path.display()),
            )
            .unwrap();
        }
        c.set("sasl.oauthbearer.expected.audience", audience)
            .unwrap();
        c.set("sasl.oauthbearer.expected.issuer", issuer).unwrap();
        (OAuthConfig::from_broker(&c).unwrap(), dir)
    }

    const NOW_MS: i64 = 1_800_000_000_000;

    fn claims(sub: &str, exp_in_s: i64) -> Value {
        serde_json::json!({"sub": sub, "exp": NOW_MS / 1000 + exp_in_s, "iat": NOW_MS / 1000,
            "iss": "https://issuer.test", "aud": ["strom", "other"]})
    }

    #[test]
    fn unsecured_tokens_without_a_jwks() {
        let (c, _d) = config(None, "", "");
        let header = enc(&serde_json::json!({"alg": "none"}));
        let token = format!("{header}.{}.", enc(&claims("alice", 60)));
        let ok = c.validate(&token, NOW_MS).unwrap();
        assert_eq!(ok.subject, "alice");
        assert_eq!(ok.expires_at_ms, NOW_MS + 60_000);
        // Expired (beyond the 30 s skew), no subject, signed: refused.
        let expired = format!("{header}.{}.", enc(&claims("alice", -31)));
        assert!(c.validate(&expired, NOW_MS).is_err());
        let within_skew = format!("{header}.{}.", enc(&claims("alice", -29)));
        assert!(c.validate(&within_skew, NOW_MS).is_ok());
        let no_sub = format!("{header}.{}.", enc(&serde_json::json!({"exp": 2e9})));
        assert!(c.validate(&no_sub, NOW_MS).is_err());
        let rs = enc(&serde_json::json!({"alg": "RS256"}));
        assert!(
            c.validate(&format!("{rs}.{}.c2ln", enc(&claims("a", 60))), NOW_MS)
                .is_err()
        );
        assert!(c.validate("not-a-token", NOW_MS).is_err());
    }

    #[test]
    fn signed_tokens_against_a_jwks() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = key.public_key().as_ref();
        let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
            "use": "sig", "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65])}]});
        let (c, _d) = config(Some(&jwks.to_string()), "strom", "https://issuer.test");
        let sign = |header: Value, claims: Value| {
            let signed = format!("{}.{}", enc(&header), enc(&claims));
            let sig = key.sign(&rng, signed.as_bytes()).unwrap();
            format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
        };
        let es = serde_json::json!({"alg": "ES256", "kid": "k1"});
        let good = sign(es.clone(), claims("alice", 300));
        assert_eq!(c.validate(&good, NOW_MS).unwrap().subject, "alice");
        // A changed payload breaks the signature.
        let mut parts: Vec<&str> = good.split('.').collect();
        let other = enc(&claims("mallory", 300));
        parts[1] = &other;
        assert!(c.validate(&parts.join("."), NOW_MS).is_err());
        // Unknown key id, wrong audience or issuer, expired, unsecured: refused.
        let unknown = sign(
            serde_json::json!({"alg": "ES256", "kid": "k2"}),
            claims("a", 300),
        );
        assert!(c.validate(&unknown, NOW_MS).is_err());
        let mut wrong_aud = claims("a", 300);
        wrong_aud["aud"] = "elsewhere".into();
        assert!(c.validate(&sign(es.clone(), wrong_aud), NOW_MS).is_err());
        let mut wrong_iss = claims("a", 300);
        wrong_iss["iss"] = "https://evil.test".into();
        assert!(c.validate(&sign(es.clone(), wrong_iss), NOW_MS).is_err());
        assert!(
            c.validate(&sign(es.clone(), claims("a", -100)), NOW_MS)
                .is_err()
        );
        let none = format!(
            "{}.{}.",
            enc(&serde_json::json!({"alg": "none"})),
            enc(&claims("a", 300))
        );
        assert!(c.validate(&none, NOW_MS).is_err());
        // The algorithm must fit the key.
        let rs = sign(
            serde_json::json!({"alg": "RS256", "kid": "k1"}),
            claims("a", 300),
        );
        assert!(c.validate(&rs, NOW_MS).is_err());
    }

    /// The RS256 and ES256 examples of RFC 7515 (appendices A.2 and A.3), whose claims name
    /// the issuer `joe` and expire at 1300819380.
    #[test]
    fn rfc7515_example_signatures_verify() {
        const PAYLOAD: &str = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        const RS256: &str = "eyJhbGciOiJSUzI1NiJ9";
        const RS256_SIG: &str = "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
        const N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
        const ES256: &str = "eyJhbGciOiJFUzI1NiJ9";
        const ES256_SIG: &str = "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
        let jwks = serde_json::json!({"keys": [
            {"kty": "RSA", "n": N, "e": "AQAB"},
            {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]});
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, jwks.to_string()).unwrap();
        let mut c = BrokerConfig::default();
        c.set("sasl.oauthbearer.jwks.endpoint.url", path.to_str().unwrap())
            .unwrap();
        c.set("sasl.oauthbearer.sub.claim.name", "iss").unwrap();
        let c = OAuthConfig::from_broker(&c).unwrap();
        let before_expiry = 1_300_819_000_000;
        for token in [
            format!("{RS256}.{PAYLOAD}.{RS256_SIG}"),
            format!("{ES256}.{PAYLOAD}.{ES256_SIG}"),
        ] {
            let ok = c.validate(&token, before_expiry).unwrap();
            assert_eq!(ok.subject, "joe");
            assert_eq!(ok.expires_at_ms, 1_300_819_380_000);
            assert!(c.validate(&token, 1_300_819_380_000 + 31_000).is_err());
        }
        // One bit off in the RSA signature.
        let bad = format!(
            "{RS256}.{PAYLOAD}.dC4hiUPoj9Eetdgtv3hF80EGrhuB{}",
            &RS256_SIG[28..]
        );
        assert!(c.validate(&bad, before_expiry).is_err());
    }

    #[test]
    fn client_messages() {
        assert_eq!(
            parse_client_message(b"n,,\x01auth=Bearer abc.def.\x01\x01").unwrap(),
            (None, "abc.def.".to_string())
        );
        assert_eq!(
            parse_client_message(b"n,a=alice,\x01host=h\x01auth=Bearer t\x01\x01").unwrap(),
            (Some("alice".to_string()), "t".to_string())
        );
        assert!(parse_client_message(b"n,,\x01\x01").is_err());
        assert!(parse_client_message(b"auth=Bearer t").is_err());
        assert!(parse_client_message(b"n,,\x01auth=Basic dXNlcg==\x01\x01").is_err());
    }
}
