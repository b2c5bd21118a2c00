//! TLS and SASL for strom's own client: the stream under a connection (plain TCP or TLS) and
//! the SASL login (PLAIN, SCRAM-SHA-256/512, OAUTHBEARER) after ApiVersions. Settings use the
//! client property names of Kafka and librdkafka (`security.protocol`, `ssl.truststore.location`
//! / `ssl.ca.location`, `ssl.keystore.location` or `ssl.certificate.location` +
//! `ssl.key.location`, `sasl.mechanism`, `sasl.username` / `sasl.password` or a
//! `sasl.jaas.config` with username="..." password="..."; for OAUTHBEARER a token file in
//! `sasl.oauthbearer.token.endpoint.url=file:///path` or `unsecuredLoginStringClaim_sub="..."`
//! in `sasl.jaas.config`).

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sha2::{Digest, Sha256, Sha512};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::error::ClientError;

/// The stream of a connection.
#[derive(Debug)]
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// SASL login settings.
#[derive(Debug, Clone)]
pub struct SaslLogin {
    pub mechanism: String,
    /// The user (for OAUTHBEARER: the subject of an unsecured token, or empty).
    pub username: String,
    /// The password, or for OAUTHBEARER the bearer token.
    pub password: String,
}

/// How connections are secured.
#[derive(Clone, Default)]
pub struct ClientSecurity {
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub sasl: Option<SaslLogin>,
}

impl std::fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecurity")
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl.as_ref().map(|s| &s.mechanism))
            .finish()
    }
}

fn invalid(message: String) -> ClientError {
    ClientError::InvalidArgument(message)
}

/// OAUTHBEARER login: the token of `sasl.oauthbearer.token.endpoint.url` when it names a file
/// (`file:///path`: a token issued beforehand), else an unsecured token for the subject of the
/// JAAS option `unsecuredLoginStringClaim_sub` (for brokers without a JWKS; lifetime
/// `unsecuredLoginLifetimeSeconds`, one hour by default).
fn oauthbearer_login(token_url: Option<String>, jaas: &str) -> Result<SaslLogin, ClientError> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    if let Some(url) = token_url {
        let path = url.strip_prefix("file://").ok_or_else(|| {
            invalid(format!(
                "sasl.oauthbearer.token.endpoint.url {url}: only file:// URLs are supported"
            ))
        })?;
        let token = std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("{path}: {e}")))?
            .trim()
            .to_string();
        return Ok(SaslLogin {
            mechanism: "OAUTHBEARER".into(),
            username: String::new(),
            password: token,
        });
    }
    let sub = jaas_option(jaas, "unsecuredLoginStringClaim_sub").ok_or_else(|| {
        invalid(
            "OAUTHBEARER needs sasl.oauthbearer.token.endpoint.url=file://... or \
             unsecuredLoginStringClaim_sub in sasl.jaas.config"
                .into(),
        )
    })?;
    let lifetime_s: u64 = jaas_option(jaas, "unsecuredLoginLifetimeSeconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(3600);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let escaped = sub.replace('\\', "\\\\").replace('"', "\\\"");
    let claims = format!(
        r#"{{"sub":"{escaped}","iat":{now},"exp":{}}}"#,
        now + lifetime_s
    );
    let token = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    );
    Ok(SaslLogin {
        mechanism: "OAUTHBEARER".into(),
        username: sub,
        password: token,
    })
}

/// A `key="value"` option of a JAAS line.
fn jaas_option(jaas: &str, key: &str) -> Option<String> {
    let at = jaas.find(&format!("{key}="))? + key.len() + 1;
    let rest = jaas[at..].strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

impl ClientSecurity {
    /// Builds the settings from client properties (a `--command-config` file).
    pub fn from_properties(p: &HashMap<String, String>) -> Result<ClientSecurity, ClientError> {
        let get = |k: &str| {
            p.get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let protocol = get("security.protocol")
            .unwrap_or_else(|| "PLAINTEXT".into())
            .to_ascii_uppercase();
        let (tls, sasl) = match protocol.as_str() {
            "PLAINTEXT" => (false, false),
            "SSL" => (true, false),
            "SASL_PLAINTEXT" => (false, true),
            "SASL_SSL" => (true, true),
            other => return Err(invalid(format!("unknown security.protocol {other:?}"))),
        };
        let mut out = ClientSecurity::default();
        if tls {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut roots = rustls::RootCertStore::empty();
            let ca = get("ssl.truststore.location")
                .or_else(|| get("ssl.ca.location"))
                .ok_or_else(|| {
                    invalid("TLS needs ssl.truststore.location (a PEM CA bundle)".into())
                })?;
            let pem = std::fs::read(&ca).map_err(|e| invalid(format!("{ca}: {e}")))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| invalid(format!("{ca}: {e}")))?;
                roots.add(cert).map_err(|e| invalid(format!("{ca}: {e}")))?;
            }
            let builder = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| invalid(format!("TLS: {e}")))?
                .with_root_certificates(roots);
            let cert_file =
                get("ssl.certificate.location").or_else(|| get("ssl.keystore.location"));
            let key_file = get("ssl.key.location").or_else(|| get("ssl.keystore.location"));
            let config = match (cert_file, key_file) {
                (Some(c), Some(k)) => {
                    let cpem = std::fs::read(&c).map_err(|e| invalid(format!("{c}: {e}")))?;
                    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cpem)
                        .collect::<Result<_, _>>()
                        .map_err(|e| invalid(format!("{c}: {e}")))?;
                    let kpem = std::fs::read(&k).map_err(|e| invalid(format!("{k}: {e}")))?;
                    let key = PrivateKeyDer::from_pem_slice(&kpem)
                        .map_err(|e| invalid(format!("{k}: {e}")))?;
                    builder
                        .with_client_auth_cert(chain, key)
                        .map_err(|e| invalid(format!("client certificate: {e}")))?
                }
                _ => builder.with_no_client_auth(),
            };
            out.tls = Some(Arc::new(config));
        }
        if sasl {
            let jaas = get("sasl.jaas.config").unwrap_or_default();
            let mechanism = get("sasl.mechanism")
                .or_else(|| get("sasl.mechanisms"))
                .unwrap_or_else(|| "PLAIN".into())
                .to_ascii_uppercase();
            if mechanism == "OAUTHBEARER" {
                out.sasl = Some(oauthbearer_login(
                    get("sasl.oauthbearer.token.endpoint.url"),
                    &jaas,
                )?);
                return Ok(out);
            }
            let username = get("sasl.username")
                .or_else(|| jaas_option(&jaas, "username"))
                .ok_or_else(|| invalid("SASL needs sasl.username (or sasl.jaas.config)".into()))?;
            let password = p
                .get("sasl.password")
                .cloned()
                .or_else(|| jaas_option(&jaas, "password"))
                .ok_or_else(|| invalid("SASL needs sasl.password (or sasl.jaas.config)".into()))?;
            if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&mechanism.as_str()) {
                return Err(invalid(format!("unsupported sasl.mechanism {mechanism}")));
            }
            out.sasl = Some(SaslLogin {
                mechanism,
                username,
                password,
            });
        }
        Ok(out)
    }

    /// Reads a Java-style properties file (`key=value` lines, `#` comments).
    pub fn from_file(path: &std::path::Path) -> Result<ClientSecurity, ClientError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        let mut props = HashMap::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            if let Some((k, v)) = line.split_once(['=', ':']) {
                props.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        ClientSecurity::from_properties(&props)
    }

    /// Wraps a connected socket in TLS when configured.
    pub async fn wrap(&self, tcp: TcpStream, addr: &str) -> Result<ClientStream, ClientError> {
        let Some(tls) = &self.tls else {
            return Ok(ClientStream::Plain(tcp));
        };
        let host = addr
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(addr)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let name = ServerName::try_from(host)
            .map_err(|e| invalid(format!("{addr}: not a TLS server name: {e}")))?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        Ok(ClientStream::Tls(Box::new(stream)))
    }
}

/// The client side of SCRAM (RFC 5802).
pub(crate) struct ScramClient {
    sha512: bool,
    password: String,
    nonce: String,
    client_first_bare: String,
    expected_server_signature: Vec<u8>,
}

impl ScramClient {
    pub fn new(mechanism: &str, username: &str, password: &str) -> ScramClient {
        let mut raw = [0u8; 18];
        getrandom::fill(&mut raw).expect("the OS random number generator works");
        let nonce = B64.encode(raw).replace(['+', '/', '='], "x");
        let user = username.replace('=', "=3D").replace(',', "=2C");
        ScramClient {
            sha512: mechanism == "SCRAM-SHA-512",
            password: password.to_string(),
            client_first_bare: format!("n={user},r={nonce}"),
            nonce,
            expected_server_signature: Vec::new(),
        }
    }

    fn hmac(&self, key: &[u8], data: &[u8]) -> Vec<u8> {
        if self.sha512 {
            let mut m = <hmac::Hmac<Sha512> as KeyInit>::new_from_slice(key).expect("any key");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        } else {
            let mut m = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
    }

    pub fn first_message(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// The client-final message for the server-first one.
    pub fn final_message(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ClientError> {
        let bad = || ClientError::UnexpectedResponse("malformed SCRAM server-first message".into());
        let text = std::str::from_utf8(server_first).map_err(|_| bad())?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attr in text.split(',') {
            if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v.to_string());
            } else if let Some(v) = attr.strip_prefix("s=") {
                salt = B64.decode(v).ok();
            } else if let Some(v) = attr.strip_prefix("i=") {
                iterations = v.parse::<u32>().ok();
            }
        }
        let (nonce, salt, iterations) = (
            nonce.ok_or_else(bad)?,
            salt.ok_or_else(bad)?,
            iterations.ok_or_else(bad)?,
        );
        if !nonce.starts_with(&self.nonce) || iterations == 0 || iterations > 1_000_000 {
            return Err(bad());
        }
        let salted = if self.sha512 {
            let mut out = vec![0u8; 64];
            pbkdf2::pbkdf2_hmac::<Sha512>(self.password.as_bytes(), &salt, iterations, &mut out);
            out
        } else {
            let mut out = vec![0u8; 32];
            pbkdf2::pbkdf2_hmac::<Sha256>(self.password.as_bytes(), &salt, iterations, &mut out);
            out
        };
        let client_key = self.hmac(&salted, b"Client Key");
        let stored_key = if self.sha512 {
            Sha512::digest(&client_key).to_vec()
        } else {
            Sha256::digest(&client_key).to_vec()
        };
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{},{text},{without_proof}", self.client_first_bare);
        let signature = self.hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = self.hmac(&salted, b"Server Key");
        self.expected_server_signature = self.hmac(&server_key, auth.as_bytes());
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server-final message (the server proves it knows the credential too).
    pub fn verify_server(&self, server_final: &[u8]) -> Result<(), ClientError> {
        let text = std::str::from_utf8(server_final).unwrap_or("");
        match text.strip_prefix("v=").and_then(|v| B64.decode(v).ok()) {
            Some(sig) if sig == self.expected_server_signature => Ok(()),
            _ => Err(ClientError::UnexpectedResponse(
                "the broker's SCRAM signature does not match".into(),
            )),
        }
    }
}
