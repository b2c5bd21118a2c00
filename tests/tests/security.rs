//! Listeners and security, driven by librdkafka: several named listeners with Metadata giving
//! each client the listener it came through, TLS with server and client certificates (generated
//! here with rcgen, never stored), SASL PLAIN and SCRAM, refused credentials and certificates.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use strom_e2e::{Strom, client_config, consumer_config};

/// A CA, a server certificate for 127.0.0.1/localhost and client certificates, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let (trusted, ca_pem) = ca("strom test CA");
        std::fs::write(dir.path().join("ca.pem"), ca_pem).unwrap();
        let (server_cert, server_key) = leaf(&trusted, "localhost", &["localhost", "127.0.0.1"]);
        std::fs::write(
            dir.path().join("server.pem"),
            format!("{server_cert}{server_key}"),
        )
        .unwrap();
        let (alice_cert, alice_key) = leaf(&trusted, "alice", &[]);
        std::fs::write(dir.path().join("alice.crt"), alice_cert).unwrap();
        std::fs::write(dir.path().join("alice.key"), alice_key).unwrap();
        // A client certificate from a CA the broker does not trust.
        let (rogue_ca, rogue_ca_pem) = ca("rogue CA");
        std::fs::write(dir.path().join("rogue-ca.pem"), rogue_ca_pem).unwrap();
        let (rogue_server, rogue_key) = leaf(&rogue_ca, "localhost", &["localhost", "127.0.0.1"]);
        std::fs::write(
            dir.path().join("rogue-server.pem"),
            format!("{rogue_server}{rogue_key}"),
        )
        .unwrap();
        let (bob_cert, bob_key) = leaf(&trusted, "bob", &[]);
        std::fs::write(dir.path().join("bob.crt"), bob_cert).unwrap();
        std::fs::write(dir.path().join("bob.key"), bob_key).unwrap();
        let (mallory_cert, mallory_key) = leaf(&rogue_ca, "alice", &[]);
        std::fs::write(dir.path().join("mallory.crt"), mallory_cert).unwrap();
        std::fs::write(dir.path().join("mallory.key"), mallory_key).unwrap();
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, prop: &str, name: &str) -> String {
        format!("{prop}={}", self.path(name).display())
    }
}

fn ca(cn: &str) -> (rcgen::Issuer<'static, rcgen::KeyPair>, String) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params.distinguished_name = dn(cn);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (rcgen::Issuer::new(params, key), cert.pem())
}

fn dn(cn: &str) -> rcgen::DistinguishedName {
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "strom-test");
    dn.push(rcgen::DnType::CommonName, cn);
    dn
}

fn leaf(issuer: &rcgen::Issuer<'_, rcgen::KeyPair>, cn: &str, sans: &[&str]) -> (String, String) {
    let mut params =
        rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.distinguished_name = dn(cn);
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn ssl_config(bootstrap: &str, pki: &Pki, client: Option<&str>) -> ClientConfig {
    let mut c = client_config(bootstrap);
    c.set("security.protocol", "ssl")
        .set("ssl.ca.location", pki.path("ca.pem").to_str().unwrap());
    if let Some(name) = client {
        c.set(
            "ssl.certificate.location",
            pki.path(&format!("{name}.crt")).to_str().unwrap(),
        )
        .set(
            "ssl.key.location",
            pki.path(&format!("{name}.key")).to_str().unwrap(),
        );
    }
    c
}

/// The brokers Metadata names, as (id, host, port), or the error of a client that cannot get
/// metadata within a few seconds.
fn brokers(config: &ClientConfig) -> Result<Vec<(i32, String, i32)>, KafkaError> {
    let c: BaseConsumer = config.create()?;
    let md = c.fetch_metadata(None, Duration::from_secs(4))?;
    Ok(md
        .brokers()
        .iter()
        .map(|b| (b.id(), b.host().to_string(), b.port()))
        .collect())
}

async fn produce(config: &ClientConfig, topic: &str, value: &str) -> Result<i64, KafkaError> {
    let mut config = config.clone();
    config.set("message.timeout.ms", "8000");
    let p: FutureProducer = config.create()?;
    p.send(
        FutureRecord::<(), _>::to(topic).payload(value),
        Duration::from_secs(8),
    )
    .await
    .map(|d| d.offset)
    .map_err(|(e, _)| e)
}

/// Values of partition 0 of `topic` read from the start, until `n` arrived or 15 s passed.
fn consume(config: &ClientConfig, topic: &str, n: usize) -> Vec<String> {
    let c: BaseConsumer = config.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while out.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    out
}

/// A consumer configuration with the connection settings of `config` (the same settings
/// `consumer_config` adds to a plain client configuration).
fn as_consumer(config: &ClientConfig) -> ClientConfig {
    let mut c = config.clone();
    c.set("group.id", "strom-e2e")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    c
}

#[tokio::test]
async fn named_listeners_advertise_the_listener_used_and_serve_tls() {
    let pki = Pki::new();
    let strom = Strom::start_listeners(
        &["PLAINTEXT", "SSL", "INTERNAL"],
        &[
            &pki.arg("ssl.keystore.location", "server.pem"),
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,INTERNAL:PLAINTEXT",
        ],
    );
    let plain = client_config(&strom.listener("PLAINTEXT"));
    let internal = client_config(&strom.listener("INTERNAL"));
    let ssl = ssl_config(&strom.listener("SSL"), &pki, None);
    let port = |name: &str| strom.listener_port(name) as i32;
    assert_eq!(
        brokers(&plain).unwrap(),
        vec![(1, "127.0.0.1".to_string(), port("PLAINTEXT"))]
    );
    assert_eq!(
        brokers(&internal).unwrap(),
        vec![(1, "127.0.0.1".to_string(), port("INTERNAL"))]
    );
    assert_eq!(
        brokers(&ssl).unwrap(),
        vec![(1, "127.0.0.1".to_string(), port("SSL"))]
    );

    // Records written over TLS are read over plaintext and the other way round.
    assert_eq!(produce(&ssl, "tls-topic", "over-tls").await.unwrap(), 0);
    assert_eq!(produce(&plain, "tls-topic", "over-plain").await.unwrap(), 1);
    let ssl_consumer = as_consumer(&ssl);
    assert_eq!(
        consume(&ssl_consumer, "tls-topic", 2),
        vec!["over-tls", "over-plain"]
    );
    assert_eq!(
        consume(
            &consumer_config(&strom.listener("PLAINTEXT")),
            "tls-topic",
            2
        ),
        vec!["over-tls", "over-plain"]
    );

    // A client that does not trust the broker's CA, and a plaintext client on the TLS port,
    // get no metadata.
    let mut untrusting = client_config(&strom.listener("SSL"));
    untrusting.set("security.protocol", "ssl").set(
        "ssl.ca.location",
        pki.path("rogue-ca.pem").to_str().unwrap(),
    );
    assert!(brokers(&untrusting).is_err());
    assert!(brokers(&client_config(&strom.listener("SSL"))).is_err());
    // The plaintext listener still works after those failures.
    assert!(brokers(&plain).is_ok());
}

#[tokio::test]
async fn advertised_listeners_override_per_listener() {
    let pki = Pki::new();
    let strom = Strom::start_listeners(
        &["PLAINTEXT", "SSL"],
        &[
            &pki.arg("ssl.keystore.location", "server.pem"),
            "advertised.listeners=PLAINTEXT://localhost:1234",
        ],
    );
    let md = brokers(&client_config(&strom.listener("PLAINTEXT"))).unwrap();
    assert_eq!(md, vec![(1, "localhost".to_string(), 1234)]);
    let md = brokers(&ssl_config(&strom.listener("SSL"), &pki, None)).unwrap();
    assert_eq!(
        md,
        vec![(
            1,
            "127.0.0.1".to_string(),
            strom.listener_port("SSL") as i32
        )]
    );
}

#[tokio::test]
async fn mutual_tls_requires_a_certificate_from_the_trusted_ca() {
    let pki = Pki::new();
    let strom = Strom::start_listeners(
        &["SSL"],
        &[
            &pki.arg("ssl.keystore.location", "server.pem"),
            &pki.arg("ssl.truststore.location", "ca.pem"),
            "ssl.client.auth=required",
        ],
    );
    let bootstrap = strom.listener("SSL");
    let alice = ssl_config(&bootstrap, &pki, Some("alice"));
    assert!(brokers(&alice).is_ok());
    assert_eq!(produce(&alice, "mtls", "hello").await.unwrap(), 0);
    let failures = || {
        let (_, m) = strom.admin_get("/metrics").expect("metrics");
        strom_e2e::metric_value(
            &m,
            "strom_authentication_failures_total",
            &[("listener", "SSL")],
        )
        .unwrap_or(-1.0)
    };
    assert_eq!(failures(), 0.0);
    // No certificate, or one from an untrusted CA with the same subject: refused.
    assert!(brokers(&ssl_config(&bootstrap, &pki, None)).is_err());
    assert!(brokers(&ssl_config(&bootstrap, &pki, Some("mallory"))).is_err());
    assert!(brokers(&alice).is_ok());
    // Each refused handshake counts as a failed authentication.
    assert!(failures() >= 2.0, "{}", failures());
}

fn sasl_config(
    bootstrap: &str,
    protocol: &str,
    mechanism: &str,
    user: &str,
    password: &str,
    pki: Option<&Pki>,
) -> ClientConfig {
    let mut c = client_config(bootstrap);
    c.set("security.protocol", protocol)
        .set("sasl.mechanisms", mechanism)
        .set("sasl.username", user)
        .set("sasl.password", password);
    if let Some(pki) = pki {
        c.set("ssl.ca.location", pki.path("ca.pem").to_str().unwrap());
    }
    c
}

fn scram_set(strom: &Strom, user: &str, password: &str, mechanism: &str) {
    let (ok, out, err) = strom.cli(&[
        "users",
        "scram",
        "set",
        user,
        "--password",
        password,
        "--mechanism",
        mechanism,
    ]);
    assert!(ok, "users scram set failed: {out}{err}");
}

#[tokio::test]
async fn sasl_plaintext_with_plain_and_scram() {
    let strom = Strom::start_listeners(
        &["PLAINTEXT", "SASL_PLAINTEXT"],
        &["sasl.plain.users=alice:alice-pw,dave:x:y"],
    );
    scram_set(&strom, "bob", "bob-pw", "SCRAM-SHA-256");
    scram_set(&strom, "carol", "carol-pw", "SCRAM-SHA-512");
    let (ok, out, _) = strom.cli(&["users", "scram", "describe"]);
    assert!(ok);
    assert!(
        out.contains("bob") && out.contains("SCRAM-SHA-256"),
        "{out}"
    );
    assert!(
        out.contains("carol") && out.contains("SCRAM-SHA-512"),
        "{out}"
    );
    // The password never reaches the broker's metadata log, only salted keys do.
    let log = std::fs::read(strom.data_dir().join("__cluster_metadata-0/metadata.log")).unwrap();
    assert!(!String::from_utf8_lossy(&log).contains("bob-pw"));

    let sasl = strom.listener("SASL_PLAINTEXT");
    let port = strom.listener_port("SASL_PLAINTEXT") as i32;
    let cfg = |mech: &str, user: &str, pw: &str| {
        sasl_config(&sasl, "sasl_plaintext", mech, user, pw, None)
    };
    for good in [
        cfg("PLAIN", "alice", "alice-pw"),
        cfg("PLAIN", "dave", "x:y"),
        cfg("SCRAM-SHA-256", "bob", "bob-pw"),
        cfg("SCRAM-SHA-512", "carol", "carol-pw"),
    ] {
        assert_eq!(
            brokers(&good).unwrap(),
            vec![(1, "127.0.0.1".to_string(), port)]
        );
    }
    let alice = cfg("PLAIN", "alice", "alice-pw");
    assert_eq!(
        produce(&alice, "sasl-topic", "from-alice").await.unwrap(),
        0
    );
    let bob = cfg("SCRAM-SHA-256", "bob", "bob-pw");
    assert_eq!(produce(&bob, "sasl-topic", "from-bob").await.unwrap(), 1);
    let carol = cfg("SCRAM-SHA-512", "carol", "carol-pw");
    assert_eq!(
        consume(&as_consumer(&carol), "sasl-topic", 2),
        vec!["from-alice", "from-bob"]
    );

    for bad in [
        cfg("PLAIN", "alice", "wrong"),
        cfg("PLAIN", "nobody", "alice-pw"),
        cfg("PLAIN", "bob", "bob-pw"), // a SCRAM user is not a PLAIN user
        cfg("SCRAM-SHA-256", "bob", "wrong"),
        cfg("SCRAM-SHA-256", "nobody", "bob-pw"),
        cfg("SCRAM-SHA-512", "bob", "bob-pw"), // no SHA-512 credential for bob
        client_config(&sasl),                  // no SASL at all
    ] {
        assert!(
            brokers(&bad).is_err(),
            "{:?} got in",
            bad.get("sasl.username")
        );
    }

    // Deleting the credential locks bob out.
    let (ok, out, err) = strom.cli(&[
        "users",
        "scram",
        "delete",
        "bob",
        "--mechanism",
        "SCRAM-SHA-256",
    ]);
    assert!(ok, "{out}{err}");
    assert!(brokers(&bob).is_err());
    let (ok, _, err) = strom.cli(&[
        "users",
        "scram",
        "delete",
        "bob",
        "--mechanism",
        "SCRAM-SHA-256",
    ]);
    assert!(!ok && err.contains("RESOURCE_NOT_FOUND"), "{err}");
    // Too few iterations are refused.
    let (ok, _, err) = strom.cli(&[
        "users",
        "scram",
        "set",
        "eve",
        "--password",
        "p",
        "--iterations",
        "100",
    ]);
    assert!(!ok && err.contains("UNACCEPTABLE_CREDENTIAL"), "{err}");
}

#[tokio::test]
async fn sasl_ssl_with_scram_and_plain() {
    let pki = Pki::new();
    let strom = Strom::start_listeners(
        &["PLAINTEXT", "SASL_SSL"],
        &[
            &pki.arg("ssl.keystore.location", "server.pem"),
            "sasl.plain.users=alice:alice-pw",
        ],
    );
    scram_set(&strom, "carol", "carol-pw", "SCRAM-SHA-512");
    let bootstrap = strom.listener("SASL_SSL");
    let carol = sasl_config(
        &bootstrap,
        "sasl_ssl",
        "SCRAM-SHA-512",
        "carol",
        "carol-pw",
        Some(&pki),
    );
    assert_eq!(
        brokers(&carol).unwrap(),
        vec![(
            1,
            "127.0.0.1".to_string(),
            strom.listener_port("SASL_SSL") as i32
        )]
    );
    assert_eq!(produce(&carol, "sasl-ssl", "secure").await.unwrap(), 0);
    let alice = sasl_config(
        &bootstrap,
        "sasl_ssl",
        "PLAIN",
        "alice",
        "alice-pw",
        Some(&pki),
    );
    assert_eq!(produce(&alice, "sasl-ssl", "secure-too").await.unwrap(), 1);
    assert!(
        brokers(&sasl_config(
            &bootstrap,
            "sasl_ssl",
            "SCRAM-SHA-512",
            "carol",
            "nope",
            Some(&pki)
        ))
        .is_err()
    );
    // SASL without TLS on the SASL_SSL port fails.
    assert!(
        brokers(&sasl_config(
            &bootstrap,
            "sasl_plaintext",
            "PLAIN",
            "alice",
            "alice-pw",
            None
        ))
        .is_err()
    );
}

#[tokio::test]
async fn client_certificate_subject_is_the_principal_for_acls() {
    certificate_principal_test("DEFAULT", "User:CN=alice,O=strom-test").await;
}

#[tokio::test]
async fn principal_mapping_rules_shorten_the_subject() {
    certificate_principal_test("RULE:^CN=([^,]*),O=strom-test$/$1/U,DEFAULT", "User:ALICE").await;
}

async fn certificate_principal_test(rules: &str, principal: &str) {
    let pki = Pki::new();
    let strom = Strom::start_listeners(
        &["PLAINTEXT", "SSL"],
        &[
            &pki.arg("ssl.keystore.location", "server.pem"),
            &pki.arg("ssl.truststore.location", "ca.pem"),
            "ssl.client.auth=required",
            "authorizer.class.name=strom",
            "super.users=User:ANONYMOUS",
            &format!("ssl.principal.mapping.rules={rules}"),
        ],
    );
    // The subject as RFC 2253 (last RDN first): CN=alice,O=strom-test.
    let (ok, out, err) = strom.cli(&[
        "acls",
        "add",
        "--principal",
        principal,
        "--operation",
        "Write",
        "--topic",
        "certs",
    ]);
    assert!(ok, "{out}{err}");
    let bootstrap = strom.listener("SSL");
    let alice = ssl_config(&bootstrap, &pki, Some("alice"));
    let bob = ssl_config(&bootstrap, &pki, Some("bob"));
    let (ok, _, _) = strom.cli(&["topics", "create", "certs"]);
    assert!(ok);
    assert_eq!(produce(&alice, "certs", "by-cert").await.unwrap(), 0);
    let denied = produce(&bob, "certs", "by-cert").await.unwrap_err();
    assert_eq!(
        denied.rdkafka_error_code(),
        Some(rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed)
    );
}

#[tokio::test]
async fn strom_cli_speaks_tls_and_sasl_with_command_config() {
    let pki = Pki::new();
    let strom = Strom::start_listeners(
        &["PLAINTEXT", "SASL_SSL"],
        &[
            &pki.arg("ssl.keystore.location", "server.pem"),
            "sasl.plain.users=admin:admin-pw",
            "authorizer.class.name=strom",
            "super.users=User:ANONYMOUS;User:admin",
        ],
    );
    scram_set(&strom, "carol", "carol-pw", "SCRAM-SHA-512");
    let ca = pki.path("ca.pem");
    let write = |name: &str, text: String| {
        let path = pki.path(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let admin = write(
        "admin.properties",
        format!(
            "security.protocol=SASL_SSL\nssl.truststore.location={}\nsasl.mechanism=PLAIN\nsasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" password=\"admin-pw\";\n",
            ca.display()
        ),
    );
    let carol = write(
        "carol.properties",
        format!(
            "security.protocol=SASL_SSL\nssl.ca.location={}\nsasl.mechanism=SCRAM-SHA-512\nsasl.username=carol\nsasl.password=carol-pw\n",
            ca.display()
        ),
    );
    let wrong = write(
        "wrong.properties",
        format!(
            "security.protocol=SASL_SSL\nssl.ca.location={}\nsasl.mechanism=SCRAM-SHA-512\nsasl.username=carol\nsasl.password=nope\n",
            ca.display()
        ),
    );
    let bootstrap = strom.listener("SASL_SSL");
    let cli = |config: &str, args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--bootstrap-server", &bootstrap, "--command-config", config]);
        strom.cli(&all)
    };
    let (ok, out, err) = cli(&admin, &["topics", "create", "cli-secure"]);
    assert!(ok, "admin over SASL_SSL: {out}{err}");
    let (ok, _, err) = cli(&carol, &["topics", "create", "carol-topic"]);
    assert!(!ok && err.contains("TOPIC_AUTHORIZATION_FAILED"), "{err}");
    let (ok, out, err) = cli(&carol, &["topics", "list"]);
    assert!(ok, "{err}");
    assert!(
        !out.contains("cli-secure"),
        "carol may not describe it: {out}"
    );
    let (ok, out, _) = cli(&admin, &["topics", "list"]);
    assert!(ok && out.contains("cli-secure"), "{out}");
    let (ok, _, err) = cli(&wrong, &["topics", "list"]);
    assert!(!ok && err.contains("SASL_AUTHENTICATION_FAILED"), "{err}");
}

#[test]
fn unauthenticated_sasl_clients_get_only_small_frames_and_the_sasl_apis() {
    use std::io::{Read, Write};
    let strom = Strom::start_listeners(&["SASL_PLAINTEXT"], &["sasl.plain.users=alice:pw"]);
    let connect = || {
        let s = std::net::TcpStream::connect(("127.0.0.1", strom.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    };
    let closed = |s: &mut std::net::TcpStream| {
        let mut b = [0u8; 64];
        matches!(s.read(&mut b), Ok(0) | Err(_))
    };
    // 1 MiB frame before authenticating (socket.request.max.bytes allows 100 MiB).
    let mut s = connect();
    s.write_all(&(1024 * 1024i32).to_be_bytes()).unwrap();
    assert!(
        closed(&mut s),
        "a large frame before SASL closes the connection"
    );
    // A Metadata v0 request before authenticating.
    let mut s = connect();
    let mut frame = 14i32.to_be_bytes().to_vec();
    frame.extend_from_slice(&3i16.to_be_bytes());
    frame.extend_from_slice(&0i16.to_be_bytes());
    frame.extend_from_slice(&1i32.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes());
    frame.extend_from_slice(&0i32.to_be_bytes());
    s.write_all(&frame).unwrap();
    assert!(closed(&mut s), "Metadata before SASL closes the connection");
    // A real client still logs in.
    let alice = sasl_config(
        &strom.bootstrap(),
        "sasl_plaintext",
        "PLAIN",
        "alice",
        "pw",
        None,
    );
    assert!(brokers(&alice).is_ok());
}

#[test]
fn server_certificate_is_reloaded_when_its_file_changes() {
    let pki = Pki::new();
    std::fs::copy(pki.path("server.pem"), pki.path("live.pem")).unwrap();
    let strom = Strom::start_listeners(&["SSL"], &[&pki.arg("ssl.keystore.location", "live.pem")]);
    let bootstrap = strom.listener("SSL");
    let trusting = |ca: &str| {
        let mut c = client_config(&bootstrap);
        c.set("security.protocol", "ssl")
            .set("ssl.ca.location", pki.path(ca).to_str().unwrap());
        c
    };
    assert!(brokers(&trusting("ca.pem")).is_ok());
    // Rotate to a certificate of another CA; a broken file in between changes nothing.
    std::fs::write(pki.path("live.pem"), "not a certificate").unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        brokers(&trusting("ca.pem")).is_ok(),
        "a bad file keeps the old certificate"
    );
    std::fs::copy(pki.path("rogue-server.pem"), pki.path("live.pem")).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    // The first handshake after the change may still get the old one (checked once a second).
    let deadline = Instant::now() + Duration::from_secs(10);
    while brokers(&trusting("rogue-ca.pem")).is_err() {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        brokers(&trusting("ca.pem")).is_err(),
        "the old certificate is gone"
    );
}

/// Sends one request (header v1, no client id) and reads its response frame; None when the
/// connection closed or nothing came within 5 s.
fn raw_request(
    s: &mut std::net::TcpStream,
    api_key: i16,
    version: i16,
    correlation_id: i32,
    body: &[u8],
) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    let mut frame = Vec::new();
    frame.extend_from_slice(&api_key.to_be_bytes());
    frame.extend_from_slice(&version.to_be_bytes());
    frame.extend_from_slice(&correlation_id.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes());
    frame.extend_from_slice(body);
    let mut out = (frame.len() as i32).to_be_bytes().to_vec();
    out.extend(frame);
    s.write_all(&out).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut size = [0u8; 4];
    s.read_exact(&mut size).ok()?;
    let mut resp = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
    s.read_exact(&mut resp).ok()?;
    Some(resp)
}

/// SaslHandshake v1 + SaslAuthenticate v0 with PLAIN; the SaslAuthenticate error code.
fn raw_plain_login(s: &mut std::net::TcpStream, user: &str, password: &str) -> i16 {
    let mut body = (5i16).to_be_bytes().to_vec();
    body.extend_from_slice(b"PLAIN");
    let r = raw_request(s, 17, 1, 1, &body).expect("SaslHandshake answered");
    assert_eq!(i16::from_be_bytes([r[4], r[5]]), 0, "handshake error code");
    let token = format!("\0{user}\0{password}");
    let mut body = (token.len() as i32).to_be_bytes().to_vec();
    body.extend_from_slice(token.as_bytes());
    let r = raw_request(s, 36, 0, 2, &body).expect("SaslAuthenticate answered");
    i16::from_be_bytes([r[4], r[5]])
}

#[test]
fn sessions_expire_unless_the_client_reauthenticates() {
    let strom = Strom::start_listeners(
        &["SASL_PLAINTEXT"],
        &[
            "sasl.plain.users=alice:pw,bob:pw",
            "connections.max.reauth.ms=1000",
        ],
    );
    let connect = || std::net::TcpStream::connect(("127.0.0.1", strom.port)).unwrap();
    let api_versions = |s: &mut std::net::TcpStream, id| raw_request(s, 18, 0, id, &[]);

    // Logs in, then lets the session run out: the next request closes the connection.
    let mut lazy = connect();
    assert_eq!(raw_plain_login(&mut lazy, "alice", "pw"), 0);
    assert!(api_versions(&mut lazy, 3).is_some());
    // Re-authenticating in time keeps a connection going past the first lifetime.
    let mut diligent = connect();
    assert_eq!(raw_plain_login(&mut diligent, "alice", "pw"), 0);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(raw_plain_login(&mut diligent, "alice", "pw"), 0);
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        api_versions(&mut lazy, 4).is_none(),
        "expired session must be closed"
    );
    assert!(
        api_versions(&mut diligent, 5).is_some(),
        "re-authenticated session goes on"
    );
    // Re-authenticating as someone else is refused.
    assert_eq!(raw_plain_login(&mut diligent, "bob", "pw"), 58);

    // One librdkafka producer keeps working across several lifetimes (it re-authenticates,
    // KIP-368, or reconnects; either way nothing is lost).
    let alice = sasl_config(
        &strom.bootstrap(),
        "sasl_plaintext",
        "PLAIN",
        "alice",
        "pw",
        None,
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let p: FutureProducer = alice
            .clone()
            .set("message.timeout.ms", "8000")
            .create()
            .unwrap();
        for (i, value) in ["a", "b", "c"].into_iter().enumerate() {
            let d = p
                .send(
                    FutureRecord::<(), _>::to("reauth").payload(value),
                    Duration::from_secs(8),
                )
                .await
                .map_err(|(e, _)| e)
                .unwrap();
            assert_eq!(d.offset, i as i64);
            tokio::time::sleep(Duration::from_millis(1300)).await;
        }
    });
}
