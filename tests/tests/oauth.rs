//! SASL OAUTHBEARER: librdkafka logs in with an unsecured token (no JWKS configured) and with a
//! token signed by a key of the broker's JWKS file; the token's subject is the principal that
//! ACLs see. Refused tokens (unknown key, wrong audience, expired, unsecured when a JWKS is
//! configured) get the RFC 7628 error challenge and then SASL_AUTHENTICATION_FAILED. Keys are
//! generated at test time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rdkafka::ClientConfig;
use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use strom_client::{Connection, ConnectionConfig};
use strom_e2e::{Strom, client_config};
use strom_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use strom_protocol::{ApiKey, RequestKind, ResponseKind, str_bytes};

const SASL_AUTHENTICATION_FAILED: i16 = 58;

fn cli(strom: &Strom, args: &[&str]) {
    let (ok, out, err) = strom.cli(args);
    assert!(ok, "strom {args:?}: {out}{err}");
}

/// A broker with OAUTHBEARER on a SASL_PLAINTEXT listener, the authorizer on, alice allowed to
/// write `oauth-topic`, and the plaintext listener's anonymous principal a super user.
fn start(extra: &[&str]) -> Strom {
    let mut props = vec![
        "sasl.enabled.mechanisms=OAUTHBEARER",
        "authorizer.class.name=strom",
        "super.users=User:ANONYMOUS",
        "connection.failed.authentication.delay.ms=10",
        "connections.max.reauth.ms=600000",
    ];
    props.extend_from_slice(extra);
    let strom = Strom::start_listeners(&["PLAINTEXT", "SASL_PLAINTEXT"], &props);
    cli(&strom, &["topics", "create", "oauth-topic"]);
    cli(
        &strom,
        &[
            "acls",
            "add",
            "--principal",
            "User:alice",
            "--operation",
            "Write",
            "--topic",
            "oauth-topic",
        ],
    );
    strom
}

async fn produce<C: ClientContext + 'static>(
    producer: &FutureProducer<C>,
) -> Result<i64, RDKafkaErrorCode> {
    producer
        .send(
            FutureRecord::<(), _>::to("oauth-topic").payload("v"),
            Duration::from_secs(8),
        )
        .await
        .map(|d| d.offset)
        .map_err(|(e, _)| e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown))
}

fn oauth_client(strom: &Strom) -> ClientConfig {
    let mut c = client_config(&strom.listener("SASL_PLAINTEXT"));
    c.set("security.protocol", "sasl_plaintext")
        .set("sasl.mechanisms", "OAUTHBEARER")
        .set("message.timeout.ms", "8000");
    c
}

#[tokio::test]
async fn unsecured_tokens_name_the_principal() {
    let strom = start(&[]);
    let as_user = |name: &str| -> FutureProducer {
        oauth_client(&strom)
            .set("enable.sasl.oauthbearer.unsecure.jwt", "true")
            .set("sasl.oauthbearer.config", format!("principal={name}"))
            .create()
            .unwrap()
    };
    assert_eq!(produce(&as_user("alice")).await, Ok(0));
    assert_eq!(
        produce(&as_user("mallory")).await,
        Err(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
    // The strom CLI with Kafka's unsecured login option.
    let dir = tempfile::tempdir().unwrap();
    for (user, allowed) in [("alice", true), ("mallory", false)] {
        let props = dir.path().join(format!("{user}.properties"));
        std::fs::write(
            &props,
            format!(
                "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=OAUTHBEARER\n\
                 sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule \
                 required unsecuredLoginStringClaim_sub=\"{user}\";\n"
            ),
        )
        .unwrap();
        let out = cli_produce(&strom, &props);
        assert_eq!(
            out.status.success(),
            allowed,
            "{user}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `strom produce` of one record to oauth-topic over SASL_PLAINTEXT with the client
/// properties in `props`.
fn cli_produce(strom: &Strom, props: &std::path::Path) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(strom_e2e::strom_bin())
        .args(["produce", "--topic", "oauth-topic", "--command-config"])
        .arg(props)
        .args(["--bootstrap-server", &strom.listener("SASL_PLAINTEXT")])
        .env("STROM_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from-cli\n")
        .unwrap();
    child.wait_with_output().unwrap()
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An ES256 signing key with its JWK.
struct Signer {
    key: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

impl Signer {
    fn new(kid: &str) -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Signer {
            key,
            kid: kid.to_string(),
            rng,
        }
    }

    fn jwk(&self) -> Value {
        let point = self.key.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])})
    }

    fn token(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self.key.sign(&self.rng, signed.as_bytes()).unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

fn claims(sub: &str, audience: &str, exp_in_s: i64) -> Value {
    json!({"sub": sub, "iss": "https://idp.test", "aud": audience, "iat": now_s(),
        "exp": now_s() + exp_in_s})
}

/// A librdkafka context that hands out a fixed token.
struct FixedToken(String);

impl ClientContext for FixedToken {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        Ok(OAuthToken {
            token: self.0.clone(),
            principal_name: "ignored-by-the-broker".into(),
            lifetime_ms: (now_s() + 300) * 1000,
        })
    }
}

/// SaslHandshake OAUTHBEARER and one SaslAuthenticate with `token`; returns (error code,
/// server bytes, session lifetime) and the connection.
async fn login(strom: &Strom, token: &str) -> (i16, Vec<u8>, i64, Connection) {
    let mut c = Connection::connect(
        &strom.listener("SASL_PLAINTEXT"),
        ConnectionConfig::default(),
    )
    .await
    .unwrap();
    let ResponseKind::SaslHandshake(h) = c
        .send(
            ApiKey::SaslHandshake,
            1,
            RequestKind::SaslHandshake(
                SaslHandshakeRequest::default()
                    .with_mechanism(str_bytes("OAUTHBEARER".to_string())),
            ),
        )
        .await
        .unwrap()
    else {
        panic!("not a SaslHandshake response")
    };
    assert_eq!(h.error_code, 0);
    let message = format!("n,,\x01auth=Bearer {token}\x01\x01");
    let a = authenticate(&mut c, message.into_bytes()).await;
    (a.0, a.1, a.2, c)
}

async fn authenticate(c: &mut Connection, bytes: Vec<u8>) -> (i16, Vec<u8>, i64) {
    let ResponseKind::SaslAuthenticate(r) = c
        .send(
            ApiKey::SaslAuthenticate,
            2,
            RequestKind::SaslAuthenticate(
                SaslAuthenticateRequest::default().with_auth_bytes(bytes.into()),
            ),
        )
        .await
        .unwrap()
    else {
        panic!("not a SaslAuthenticate response")
    };
    (r.error_code, r.auth_bytes.to_vec(), r.session_lifetime_ms)
}

#[tokio::test]
async fn signed_tokens_are_checked_against_the_jwks() {
    let signer = Signer::new("key-1");
    let stranger = Signer::new("key-1"); // same key id, another key
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [signer.jwk()]}).to_string()).unwrap();
    let url = format!(
        "sasl.oauthbearer.jwks.endpoint.url=file://{}",
        jwks.display()
    );
    let strom = start(&[
        &url,
        "sasl.oauthbearer.expected.audience=strom",
        "sasl.oauthbearer.expected.issuer=https://idp.test",
    ]);

    // librdkafka with a signed token: alice may write.
    let good = signer.token(&claims("alice", "strom", 60));
    let p: FutureProducer<FixedToken> = oauth_client(&strom)
        .create_with_context(FixedToken(good.clone()))
        .unwrap();
    assert_eq!(produce(&p).await, Ok(0));

    // The same over the protocol: the session ends no later than the token.
    let (code, bytes, lifetime, _c) = login(&strom, &good).await;
    assert_eq!((code, bytes.as_slice()), (0, &b""[..]));
    assert!(
        lifetime > 0 && lifetime <= 60_000,
        "session lifetime {lifetime} ms for a token valid 60 s"
    );

    let failures = || {
        let (_, m) = strom.admin_get("/metrics").expect("metrics");
        strom_e2e::metric_value(
            &m,
            "strom_authentication_failures_total",
            &[("listener", "SASL_PLAINTEXT")],
        )
        .unwrap_or(-1.0)
    };
    assert_eq!(failures(), 0.0);
    // Refused tokens: the error challenge, then the failure once the client acknowledges it.
    let unsecured = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims("alice", "strom", 60).to_string())
    );
    for (what, token) in [
        ("another key", stranger.token(&claims("alice", "strom", 60))),
        (
            "wrong audience",
            signer.token(&claims("alice", "elsewhere", 60)),
        ),
        ("expired", signer.token(&claims("alice", "strom", -120))),
        ("unsecured", unsecured),
    ] {
        let (code, bytes, _, mut c) = login(&strom, &token).await;
        assert_eq!(code, 0, "{what}");
        let challenge: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(challenge["status"], "invalid_token", "{what}");
        let (code, _, _) = authenticate(&mut c, vec![1]).await;
        assert_eq!(code, SASL_AUTHENTICATION_FAILED, "{what}");
    }
    assert_eq!(failures(), 4.0);
    // The strom CLI logs in with a token file, and is refused with another key's token.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &good).unwrap();
    let props = dir.path().join("client.properties");
    std::fs::write(
        &props,
        format!(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=OAUTHBEARER\n\
             sasl.oauthbearer.token.endpoint.url=file://{}\n",
            token_file.display()
        ),
    )
    .unwrap();
    let out = cli_produce(&strom, &props);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&token_file, stranger.token(&claims("alice", "strom", 60))).unwrap();
    let out = cli_produce(&strom, &props);
    assert!(!out.status.success());

    let bad: FutureProducer<FixedToken> = oauth_client(&strom)
        .set("message.timeout.ms", "3000")
        .create_with_context(FixedToken(stranger.token(&claims("alice", "strom", 60))))
        .unwrap();
    assert!(produce(&bad).await.is_err());

    // A key added to the file is picked up without a restart.
    let mut keys = vec![signer.jwk(), stranger.jwk()];
    keys[1]["kid"] = "key-2".into();
    std::fs::write(&jwks, json!({ "keys": keys }).to_string()).unwrap();
    let stranger = Signer {
        kid: "key-2".into(),
        ..stranger
    };
    let token = stranger.token(&claims("alice", "strom", 60));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, bytes, _, _) = login(&strom, &token).await;
        if bytes.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new key was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
